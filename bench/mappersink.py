"""The mapper's stand-in for the sniffer benches: an HTTP server that accepts every mutation.

The sniffer under measurement reports to it (its reports and status) and gets ``true`` for each
field, so the benches measure the sniffer, not a mapper.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Sink(BaseHTTPRequestHandler):
    """Answers ``{"data": {<the mutation's field>: true}}`` to every POST."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        field = body["query"].split("{", 2)[1].split("(")[0].strip()
        data = json.dumps({"data": {field: True}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def sink_server(port: int = 0) -> ThreadingHTTPServer:
    """A stand-in mapper on 127.0.0.1:``port`` (0: any free port); the caller serves it."""
    return ThreadingHTTPServer(("127.0.0.1", port), Sink)
