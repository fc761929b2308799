"""The supervisor's control endpoint, for tests and the demo: outages and container restarts.

``POST /pods/<namespace>/<name-prefix>/pause`` stops that pod's containers and keeps them
stopped; ``.../resume`` starts them again (each comes back as a restart). ``.../restart`` restarts
the pod's first container at once, ``.../restart/<container>`` the named one; it answers once the
new container instance runs (its restart count up, its old log kept as the previous log). 200 when
a pod matched and the action was done, 404 otherwise. Served on 127.0.0.1 (port in the state
file's ``forwards["control"]``) by :mod:`sandbox.supervisor`, which owns the processes;
:func:`send` is the client (``python -m sandbox restart ...`` uses it).

``POST /traffic/<namespace>/<workload>/stop`` (``.../start``) makes the workload stop (start) its
periodic calls; ``POST /traffic/<namespace>/<client>/add/<server>`` makes the client call the server's
Service's first port every few seconds (``.../remove/<server>`` ends that call)
(:mod:`sandbox.trafficcontrol`); 200 when done, 404 otherwise;
:func:`traffic` is the client (``python -m sandbox traffic ...``).

``POST /helm/test`` runs the release's ``helm test`` pods to completion; 200 when every one
succeeded, 500 otherwise, with the report (each pod's phase and output) as the body;
:func:`helm_test` is its client (``python -m sandbox helm-test``).
"""

from __future__ import annotations

import http.client
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote

log = logging.getLogger(__name__)

Action = Callable[[str, str, str, str | None], bool]
"""(namespace, pod name prefix, "pause" | "resume" | "restart", container or None) → done."""

HelmTest = Callable[[], tuple[bool, str]]
"""Run the release's test hooks → (all succeeded, report)."""

Traffic = Callable[[str, str, str, str | None], bool]
"""(namespace, workload, "stop" | "start" | "add" | "remove", server for add and remove) → done."""

ACTIONS = frozenset({"pause", "resume", "restart"})
TRAFFIC_ACTIONS = frozenset({"stop", "start", "add", "remove"})
PAIR_ACTIONS = frozenset({"add", "remove"})  # these name a server too
_TIMEOUT = 30.0  # a restart waits for the new instance; the supervisor gives up after 10 s
_HELM_TEST_TIMEOUT = 180.0  # the supervisor gives each test pod 120 s


def parse_path(path: str) -> tuple[str, str, str, str | None] | None:
    """``/pods/<ns>/<prefix>/<action>[/<container>]`` → its parts; None when malformed."""
    parts = [unquote(p) for p in path.strip("/").split("/")]
    if len(parts) not in (4, 5) or parts[0] != "pods" or parts[3] not in ACTIONS:
        return None
    if len(parts) == 5 and parts[3] != "restart":
        return None  # pause and resume act on the whole pod
    return parts[1], parts[2], parts[3], parts[4] if len(parts) == 5 else None


def parse_traffic_path(path: str) -> tuple[str, str, str, str | None] | None:
    """``/traffic/<ns>/<workload>/<stop|start>`` or ``/traffic/<ns>/<client>/<add|remove>/<server>`` →
    its parts."""
    parts = [unquote(p) for p in path.strip("/").split("/")]
    if len(parts) < 4 or parts[0] != "traffic" or parts[3] not in TRAFFIC_ACTIONS or not all(parts):
        return None
    if (parts[3] in PAIR_ACTIONS) != (len(parts) == 5) or len(parts) > 5:
        return None
    return parts[1], parts[2], parts[3], parts[4] if len(parts) == 5 else None


def serve(action: Action, helm_test: HelmTest, traffic: Traffic | None = None) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path == "/helm/test":
                passed, report = helm_test()
                body = report.encode()
                self.send_response(200 if passed else 500)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            if self.path.startswith("/traffic/"):
                asked = parse_traffic_path(self.path)
                ok = asked is not None and traffic is not None and traffic(*asked)
            else:
                parsed = parse_path(self.path)
                ok = parsed is not None and action(*parsed)
            self.send_response(200 if ok else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            log.info("control %s", format % args)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="control", daemon=True).start()
    return server


def _post(port: int, parts: tuple[str, ...]) -> bool:
    """POST to the supervisor on 127.0.0.1:``port`` at ``/<parts quoted>``; True on 200 (done)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=_TIMEOUT)
    try:
        conn.request("POST", "/" + "/".join(quote(p, safe="") for p in parts))
        response = conn.getresponse()
        response.read()
        return response.status == 200
    finally:
        conn.close()


def send(port: int, namespace: str, prefix: str, action: str, container: str | None = None) -> bool:
    """Ask the supervisor listening on 127.0.0.1:``port``; True when it did it."""
    return _post(port, ("pods", namespace, prefix, action, *([container] if container else [])))


def helm_test(port: int) -> tuple[bool, str]:
    """Ask the supervisor on 127.0.0.1:``port`` to run ``helm test``; (all passed, report)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=_HELM_TEST_TIMEOUT)
    try:
        conn.request("POST", "/helm/test")
        response = conn.getresponse()
        return response.status == 200, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def traffic(port: int, namespace: str, workload: str, action: str, server: str | None = None) -> bool:
    """Ask the supervisor on 127.0.0.1:``port`` for a traffic change; True when it was made."""
    return _post(port, ("traffic", namespace, workload, action, *([server] if server else [])))
