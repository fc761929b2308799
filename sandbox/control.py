"""The supervisor's control endpoint, for tests that need an outage: pause and resume a pod.

``POST /pods/<namespace>/<name-prefix>/pause`` stops that pod's process and keeps it
stopped; ``.../resume`` starts it again. Served on 127.0.0.1 (port in the state file's
``forwards["control"]``) by :mod:`sandbox.supervisor`, which owns the processes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)

Action = Callable[[str, str, str], bool]
"""(namespace, pod name prefix, "pause" | "resume") → whether a pod matched."""


def serve(action: Action) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            parts = self.path.strip("/").split("/")
            ok = (
                len(parts) == 4
                and parts[0] == "pods"
                and parts[3] in {"pause", "resume"}
                and action(parts[1], parts[2], parts[3])
            )
            self.send_response(200 if ok else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            log.info("control %s", format % args)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, name="control", daemon=True).start()
    return server
