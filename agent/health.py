"""A producer's probe and scrape endpoint (the sniffer's, the watchers'): ``/healthz`` and
``/metrics`` over HTTP.

Kubernetes' liveness probe reads ``/healthz``: 200 ``ok`` while ``is_healthy()`` is true (each
``__main__`` passes a callable that checks its threads are alive), 503 otherwise, so a producer
whose capture, scraper or reporter died is restarted. A mapper that is down does not make a
producer unhealthy: restarting would lose the pending observations its reporter is keeping for
it. ``/metrics`` serves the process's :class:`agent.metrics.Metrics` as Prometheus text. The
server is the standard library's threading HTTP server, in a daemon thread of its own.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from agent.metrics import CONTENT_TYPE, Metrics
from agent.settings import parse_address

log = logging.getLogger("agent.health")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], metrics: Metrics, is_healthy: Callable[[], bool]) -> None:
        self.metrics = metrics
        self.is_healthy = is_healthy
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "network-mapper"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            healthy = self.server.is_healthy()
            self._send(
                200 if healthy else 503, "text/plain; charset=utf-8", "ok\n" if healthy else "unhealthy\n"
            )
        elif path == "/metrics":
            self._send(200, CONTENT_TYPE, self.server.metrics.render())
        else:
            self._send(404, "text/plain; charset=utf-8", "not found\n")

    def _send(self, status: int, content_type: str, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        # Probes and scrapes arrive every few seconds: keep them out of the INFO log.
        log.debug("served client=%s %s", self.client_address[0], format % args)


class HealthServer:
    """Serves ``/healthz`` and ``/metrics`` on ``address`` (``host:port``; port 0 picks one)."""

    def __init__(self, address: str, metrics: Metrics, is_healthy: Callable[[], bool]) -> None:
        self._address = parse_address(address)
        self._metrics = metrics
        self._is_healthy = is_healthy
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and serve in a daemon thread. Raises OSError when the address is taken."""
        if self._server is not None:
            raise RuntimeError("health server already started")
        self._server = _Server(self._address, self._metrics, self._is_healthy)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            name="health",
            kwargs={"poll_interval": 0.2},
            daemon=True,
        )
        self._thread.start()
        log.info("health endpoint listening url=%s", self.url)

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None
        log.info("health endpoint stopped")

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("health server not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self._address[0]
        if host in {"0.0.0.0", "::"}:
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def __enter__(self) -> HealthServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
