"""uvicorn's h11 protocol with a deadline on reading each request, for both HTTP servers.

uvicorn (0.55) times out only idle keep-alive connections: a peer that opens a connection and
sends half a request head, or a body slower than a trickle, holds it forever. The mapper's API
(:mod:`agent.mapper.__main__`, producers and CLIs in the cluster) and the cloud's local server
(:mod:`cloud_functions.localserver`) pass :func:`read_deadline_protocol` as uvicorn's ``http``
protocol: a request (head and body) must arrive within the deadline, or the connection is closed
(408 first when part of it came). Answering takes as long as it takes.
"""

from __future__ import annotations

import asyncio
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("agent.httpdeadline")

_TIMED_OUT = b'{"error":{"code":"request_timeout","message":"the request did not arrive in time"}}'
_TIMED_OUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    + b"content-length: %d\r\n\r\n" % len(_TIMED_OUT)
    + _TIMED_OUT
)


class _ReadDeadline(H11Protocol):
    """h11 under uvicorn, with a deadline on reading each request (head and body)."""

    read_timeout = 30.0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # the first request is due from the start (uvicorn waits forever for it)

    def data_received(self, data: bytes) -> None:
        if self._deadline is None:  # the first bytes of a request after an idle keep-alive spell
            self._arm()
        super().data_received(data)
        self._disarm_once_read()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # A pipelined request may have been half read while the previous one was answered.
        if self.conn.their_state is h11.SEND_BODY and self._deadline is None:
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.read_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _disarm_once_read(self) -> None:
        """Once the request is read to its end, its answer takes as long as it takes."""
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            self._disarm()

    def _timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        started = self.conn.their_state is h11.SEND_BODY or bool(self.conn.trailing_data[0])
        if started and self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            # Part of a request came and nothing was answered yet: say why the connection ends.
            self.transport.write(_TIMED_OUT_RESPONSE)
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "?"
        log.info("request not received in time; closing: client=%s started=%s", client, started)
        self.transport.close()


def read_deadline_protocol(timeout: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing a connection whose request does not arrive within
    ``timeout`` s (with 408 when part of it did)."""
    return type("ReadDeadlineProtocol", (_ReadDeadline,), {"read_timeout": timeout})
