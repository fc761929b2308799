"""uvicorn's HTTP protocols (h11, httptools) with a deadline on reading each request.

uvicorn (0.55) times out only idle keep-alive connections: a peer that opens a connection and
sends half a request head, or a body slower than a trickle, holds it forever. The mapper's API
(:mod:`agent.mapper.__main__`, producers and CLIs in the cluster) and the cloud's local server
(:mod:`cloud_functions.localserver`) pass :func:`read_deadline_protocol` as uvicorn's ``http``
protocol (the mapper's on httptools, the cloud's on h11): a request (head and body) must arrive
within the deadline, or the connection is closed (408 first when part of it came). Answering
takes as long as it takes.
"""

from __future__ import annotations

import asyncio
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("agent.httpdeadline")

_TIMED_OUT = b'{"error":{"code":"request_timeout","message":"the request did not arrive in time"}}'
_TIMED_OUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    + b"content-length: %d\r\n\r\n" % len(_TIMED_OUT)
    + _TIMED_OUT
)


class _Deadline:
    """The deadline itself, for either parser: armed when a request is due, disarmed once it is
    read; on expiry, 408 when part of the request came and nothing was answered, then close."""

    read_timeout = 30.0
    _deadline: asyncio.TimerHandle | None = None
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    client: tuple[str, int] | None

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.read_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _partly_read(self) -> bool:
        """Part of a request came, not all of it."""
        raise NotImplementedError

    def _unanswered(self) -> bool:
        """Nothing of an answer to the request being read was sent yet."""
        raise NotImplementedError

    def _timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        started = self._partly_read()
        if started and self._unanswered():
            # Part of a request came and nothing was answered yet: say why the connection ends.
            self.transport.write(_TIMED_OUT_RESPONSE)
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "?"
        log.info("request not received in time; closing: client=%s started=%s", client, started)
        self.transport.close()


class _ReadDeadline(_Deadline, H11Protocol):
    """h11 under uvicorn, with a deadline on reading each request (head and body)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # the first request is due from the start (uvicorn waits forever for it)

    def data_received(self, data: bytes) -> None:
        if self._deadline is None:  # the first bytes of a request after an idle keep-alive spell
            self._arm()
        super().data_received(data)
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):  # read to its end
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # A pipelined request may have been half read while the previous one was answered.
        if self.conn.their_state is h11.SEND_BODY and self._deadline is None:
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _partly_read(self) -> bool:
        return self.conn.their_state is h11.SEND_BODY or bool(self.conn.trailing_data[0])

    def _unanswered(self) -> bool:
        return self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE)


class _ReadDeadlineHttpTools(_Deadline, HttpToolsProtocol):
    """httptools (llhttp, in C) under uvicorn, with the same deadline: for the mapper's API, where
    thousands of small reports a second made h11's pure-Python parsing a third of the cost."""

    _in_message = False  # a request's first byte was parsed and its end not yet

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._deadline is None:
            self._arm()
        super().data_received(data)
        if not self._in_message:  # read to its end (or nothing begun: a keep-alive wait)
            self._disarm()

    def on_message_begin(self) -> None:
        self._in_message = True
        super().on_message_begin()

    def on_message_complete(self) -> None:
        self._in_message = False
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._in_message and self._deadline is None:
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _partly_read(self) -> bool:
        return self._in_message

    def _unanswered(self) -> bool:
        cycle = self.cycle
        return cycle is None or cycle.response_complete or not cycle.response_started


def read_deadline_protocol(timeout: float, parser: str = "h11") -> type[asyncio.Protocol]:
    """uvicorn's ``parser`` protocol (``h11`` or ``httptools``), closing a connection whose request
    does not arrive within ``timeout`` s (with 408 when part of it did)."""
    base: type[_Deadline] = _ReadDeadlineHttpTools if parser == "httptools" else _ReadDeadline
    return type("ReadDeadlineProtocol", (base,), {"read_timeout": timeout})
