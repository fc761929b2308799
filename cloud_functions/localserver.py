"""The local server: uvicorn (HTTP/1.1 by h11, on one asyncio loop) serving the ASGI front
(:class:`~cloud_functions.localfront.CloudFront`) on a socket bound here, in front of a backend
(:mod:`cloud_functions.workerpool`: worker processes, or a callable on threads for tests).

:class:`ServerSettings` holds what bounds a connection: headers (``max_header_bytes``: h11 answers
400 past it), each request's head and body (``request_timeout``, counted from its first byte, or
from the connection's start: uvicorn itself times out only idle keep-alive connections, so
:func:`read_deadline_protocol` adds this), the pause between requests (``keep_alive_timeout``),
bodies (``max_body_bytes``) and the tenants (:class:`~cloud_functions.ratelimit.TenantLimits`).
A stalled connection costs a timer, not a thread.

:class:`CloudServer` serves until :meth:`~CloudServer.shutdown` (from another thread) or, when
serving on the main thread, SIGINT/SIGTERM (uvicorn's handlers); open connections finish their
answer first, or are cut at once (``cut_connections``: an outage, for tests).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from dataclasses import dataclass, field

import uvicorn

from agent.httpdeadline import read_deadline_protocol
from cloud_functions.localfront import CloudFront
from cloud_functions.ratelimit import TenantLimits
from cloud_functions.workerpool import Backend

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 16 * 1024 * 1024


def default_workers() -> int:
    """One worker per CPU, and at least two: one tenant's long request must leave one free."""
    return max(2, os.cpu_count() or 2)


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8800  # 0: any free port (CloudServer.server_port says which)
    workers: int = field(default_factory=default_workers)
    max_body_bytes: int = MAX_REQUEST_BYTES
    max_header_bytes: int = 64 * 1024
    request_timeout: float = 30.0
    keep_alive_timeout: int = 5
    shutdown_timeout: int = 10  # seconds open requests get to finish when the server stops
    limit_tenants: bool = True
    rate: float = 50.0  # requests a second per tenant
    burst: int = 100

    def tenant_limits(self) -> TenantLimits | None:
        """The per-tenant limits (None: none); a tenant may use all workers but one."""
        if not self.limit_tenants:
            return None
        return TenantLimits(self.rate, self.burst, in_flight=max(1, self.workers - 1))


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on (host, port), re-bindable at once after a stop (SO_REUSEADDR)."""
    family, *_ = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    return socket.create_server((host, port), family=family, backlog=2048)


class CloudServer:
    """The front, under uvicorn, on a socket bound at construction (so :attr:`server_port` is
    known before serving). :meth:`serve_forever` blocks (main thread or its own);
    :meth:`server_close` closes the socket and the backend."""

    def __init__(self, settings: ServerSettings, backend: Backend) -> None:
        self.settings = settings
        self.backend = backend
        self.front = CloudFront(backend, settings.max_body_bytes, settings.tenant_limits())
        self.socket = listening_socket(settings.host, settings.port)
        self.server_address: tuple[str, int] = self.socket.getsockname()[:2]
        config = uvicorn.Config(
            self.front,
            http=read_deadline_protocol(settings.request_timeout),
            interface="asgi3",
            lifespan="off",
            ws="none",
            log_config=None,  # the program's logging configuration stands
            access_log=False,  # the app logs each request
            proxy_headers=False,  # sourceIp is the peer's address: no header can say otherwise
            server_header=False,
            timeout_keep_alive=settings.keep_alive_timeout,
            timeout_graceful_shutdown=settings.shutdown_timeout,
            h11_max_incomplete_event_size=settings.max_header_bytes,
        )
        self._uvicorn = uvicorn.Server(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._serving = threading.Event()
        self._stopped = threading.Event()

    @property
    def server_port(self) -> int:
        return self.server_address[1]

    @property
    def connections(self) -> int:
        """Connections open now."""
        return len(self._uvicorn.server_state.connections)

    def serve_forever(self) -> None:
        """Serve until :meth:`shutdown` (or, on the main thread, SIGINT/SIGTERM)."""
        self._serving.set()
        try:
            asyncio.run(self._serve())
        finally:
            self._stopped.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._uvicorn.serve(sockets=[self.socket])

    def request_stop(self) -> None:
        """Ask the server to stop (safe from a signal handler); :meth:`serve_forever` returns."""
        self._uvicorn.should_exit = True

    def shutdown(self, cut_connections: bool = False, timeout: float = 30.0) -> None:
        """Stop serving and wait until :meth:`serve_forever` has returned. Open requests are
        answered first (up to ``shutdown_timeout``), unless ``cut_connections``: every open
        connection is then closed at once, mid-request or not."""
        self.request_stop()
        loop = self._loop
        if cut_connections and loop is not None:
            loop.call_soon_threadsafe(self._cut_connections)
        if self._serving.is_set():
            self._stopped.wait(timeout)

    def _cut_connections(self) -> None:
        for connection in list(self._uvicorn.server_state.connections):
            connection.transport.abort()

    def server_close(self) -> None:
        self.socket.close()
        self.backend.close()
