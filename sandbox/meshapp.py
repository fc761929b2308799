"""The Istio tutorial's workloads: ``python -m sandbox.meshapp server|client ...``.

``server --port 8080`` is a small HTTP API on ``127.0.0.1`` (its sidecar, :mod:`sandbox.istiosidecar`,
is the way in: the Service targets the sidecar's inbound port): ``GET /api/cart`` answers 200 with
the cart, ``POST /api/orders/<number>`` 201 with the order, anything else 404.
``client --proxy 127.0.0.1:15001 --call "GET http://server/api/cart?user=<1-5>" ...`` sends each
call every few seconds through its own sidecar as an HTTP proxy; ``<a-b>`` in a URL becomes a
random number from a to b at each call. Each request served or answer received is one line on
stdout, the container's log. SIGTERM stops either with exit status 0.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import random
import re
import sys
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from sandbox.programs import host_port_argument, stop_on_signals

log = logging.getLogger("sandbox.meshapp")

TIMEOUT = 5.0
_RANDOM = re.compile(r"<(\d+)-(\d+)>")
_ORDER = re.compile(r"^/api/orders/(\d+)$")
METHODS = frozenset({"GET", "POST", "PUT", "DELETE"})


def fill_call(url: str, rng: random.Random) -> str:
    """``url`` with each ``<a-b>`` replaced by a random number from a to b."""
    return _RANDOM.sub(lambda m: str(rng.randint(int(m.group(1)), int(m.group(2)))), url)


def answer(method: str, path: str) -> tuple[int, dict[str, Any]]:
    """The server's (status, JSON body) for a request."""
    route = urlsplit(path).path
    if method == "GET" and route == "/api/cart":
        return 200, {"items": [{"sku": "OLJCESPC7Z", "quantity": 1}]}
    if method == "POST" and (order := _ORDER.match(route)):
        return 201, {"order": int(order.group(1)), "status": "created"}
    return 404, {"error": f"no route for {method} {route}"}


class _Api(BaseHTTPRequestHandler):
    server_version = "mesh-server/1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        code, doc = answer(self.command, self.path)
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: object) -> None:
        log.info("served %s", format % args)


def run_server(port: int, stop: threading.Event) -> int:
    server = ThreadingHTTPServer(("127.0.0.1", port), _Api)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True).start()
    log.info("server listening on 127.0.0.1:%d", port)
    stop.wait()
    server.shutdown()
    server.server_close()
    return 0


def send(proxy: tuple[str, int], method: str, url: str) -> str:
    """One request through the HTTP proxy at ``proxy``; its status, or the error."""
    parts = urlsplit(url)
    body = json.dumps({"item": "OLJCESPC7Z", "quantity": 1}).encode() if method == "POST" else None
    headers = {"Host": parts.netloc, "User-Agent": "mesh-client/1"}
    if body:
        headers["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection(*proxy, timeout=TIMEOUT)
    try:
        conn.request(method, url, body=body, headers=headers)  # absolute-form: a proxy request
        response = conn.getresponse()
        response.read()
    except (OSError, http.client.HTTPException) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()
    return f"HTTP {response.status}"


def run_client(proxy: tuple[str, int], calls: Sequence[str], interval: float, stop: threading.Event) -> int:
    rng = random.Random()  # noqa: S311  # request variety, not security
    while not stop.is_set():
        for call in calls:
            method, url = call.split(" ", 1)
            url = fill_call(url, rng)
            log.info("%s %s -> %s", method, url, send(proxy, method, url))
        stop.wait(interval * rng.uniform(0.9, 1.1))  # jitter: clients do not call in lockstep
    return 0


def _call_arg(value: str) -> str:
    method, _, url = value.partition(" ")
    if method not in METHODS or not url.startswith("http://"):
        raise argparse.ArgumentTypeError(f"expected '<METHOD> http://host/path', got {value!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.meshapp", description=__doc__.splitlines()[0])
    roles = parser.add_subparsers(dest="role", required=True)
    roles.add_parser("server", help="the HTTP API").add_argument("--port", type=int, default=8080)
    client = roles.add_parser("client", help="calls through the sidecar")
    client.add_argument("--proxy", type=host_port_argument, required=True, metavar="HOST:PORT")
    client.add_argument("--call", action="append", required=True, type=_call_arg, metavar="'METHOD URL'")
    client.add_argument("--interval", type=float, default=2.5, metavar="SECONDS")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(message)s")
    stop = stop_on_signals(lambda signum: log.info("signal %d, stopping", signum))
    if args.role == "server":
        return run_server(args.port, stop)
    return run_client(args.proxy, args.call, args.interval, stop)


if __name__ == "__main__":
    sys.exit(main())
