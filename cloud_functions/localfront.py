"""The local server's ASGI app: each HTTP request (as uvicorn parsed it) → an API Gateway v2
event (:func:`~cloud_functions.gatewayevents.http_event`) → a backend's answer
(:mod:`cloud_functions.workerpool`) → the HTTP response
(:func:`~cloud_functions.gatewayevents.response_parts`).

Before a request reaches a worker, the front answers itself:

* ``400`` to a request with both ``Transfer-Encoding`` and ``Content-Length`` (the framing
  request smuggling relies on; RFC 9112 §6.1), and closes the connection;
* ``413`` to a body over ``max_body_bytes``, as soon as its ``Content-Length`` or the chunks read
  so far say so (the rest is never read: the connection is closed);
* ``429`` with ``Retry-After`` when the request's tenant is over its rate or has too many
  requests in flight (:mod:`cloud_functions.ratelimit`); the public pages (``/``, ``/healthz``,
  ``/openapi.json``, the console's files) are never limited;
* ``503`` when no worker can answer (one died: new ones are starting).

Malformed HTTP (an invalid ``Content-Length``, oversized headers …) never gets here: h11, under
uvicorn, refuses it with ``400``. Every error body is ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from cloud_functions.gatewayevents import http_event, response_parts
from cloud_functions.handlers import json_error
from cloud_functions.handlers.console import CONSOLE_PREFIX
from cloud_functions.ratelimit import LimitKeys, TenantLimiter, TenantLimits
from cloud_functions.workerpool import Backend, WorkersUnavailable

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

UNLIMITED_PATHS = frozenset({"/", "/healthz", "/openapi.json"})
"""Public pages: cheap, tokenless, and what a liveness probe must always reach; and the console's
files (under :data:`~cloud_functions.handlers.console.CONSOLE_PREFIX`), which a page load fetches
several at once."""
_HOP_BY_HOP = frozenset({"connection", "content-length", "keep-alive", "transfer-encoding"})
_NO_BODY_STATUSES = frozenset({204, 304})


def _unlimited(path: str) -> bool:
    return path in UNLIMITED_PATHS or path.startswith(CONSOLE_PREFIX)


class _ClientGone(Exception):
    """The client closed the connection (or it timed out) before the body was read."""


class _BodyTooLarge(Exception):
    pass


@dataclass(frozen=True)
class _Reply:
    status: int
    headers: Sequence[tuple[str, str]]
    body: bytes
    close: bool = False  # answered before the request was read to its end: close the connection


def _error(status: int, code: str, message: str, *, close: bool = False, retry_after: str = "") -> _Reply:
    """An error answered by the front itself, in the app's own form (:func:`json_error`)."""
    extra = {"Retry-After": retry_after} if retry_after else None
    return _Reply(*response_parts(json_error(status, code, message, extra)), close)


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The whole body (chunked or not: uvicorn has de-framed it), or :class:`_BodyTooLarge` as
    soon as more than ``limit`` bytes have come."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


class CloudFront:
    """The ASGI app (``http`` scopes only: the server runs without lifespan and websockets)."""

    def __init__(self, backend: Backend, max_body_bytes: int, limits: TenantLimits | None) -> None:
        self.backend = backend
        self.max_body_bytes = max_body_bytes
        self.limiter = TenantLimiter(limits) if limits is not None else None
        self.keys = LimitKeys()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        reply = await self._reply(scope, receive)
        if reply is None:
            return
        headers = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in reply.headers
            if name.lower() not in _HOP_BY_HOP
        ]
        if reply.status not in _NO_BODY_STATUSES:
            headers.append((b"content-length", str(len(reply.body)).encode()))
        if reply.close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})

    async def _reply(self, scope: Scope, receive: Receive) -> _Reply | None:
        """The reply to the request (None: the client is gone, nothing to send)."""
        raw_headers: list[tuple[bytes, bytes]] = list(scope["headers"])
        names = {name for name, _ in raw_headers}  # uvicorn lower-cases them
        if b"transfer-encoding" in names and b"content-length" in names:
            message = "send Transfer-Encoding or Content-Length, not both"
            return _error(400, "bad_request", message, close=True)
        declared = next((int(value) for name, value in raw_headers if name == b"content-length"), 0)
        too_large = f"request bodies are limited to {self.max_body_bytes} bytes"
        if declared > self.max_body_bytes:  # h11 has checked it is one decimal number
            return _error(413, "payload_too_large", too_large, close=True)
        try:
            body = await _read_body(receive, self.max_body_bytes)
        except _BodyTooLarge:
            return _error(413, "payload_too_large", too_large, close=True)
        except _ClientGone:
            return None
        headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in raw_headers]
        target = bytes(scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        if scope.get("query_string"):
            target += "?" + bytes(scope["query_string"]).decode("latin-1")
        client = scope.get("client")
        event = http_event(scope["method"], target, headers, body, client[0] if client else "")
        return await self._answer(event)

    async def _answer(self, event: dict[str, Any]) -> _Reply:
        key = token_hash = ""
        if self.limiter is not None and not _unlimited(event["rawPath"]):
            source = str(event["requestContext"]["http"]["sourceIp"])
            key, token_hash = self.keys.key(event["headers"].get("authorization"), source)
            refusal = self.limiter.admit(key)
            if refusal is not None:
                message = (
                    f"over {self.limiter.limits.rate:g} requests a second"
                    if refusal.reason == "rate"
                    else f"at most {self.limiter.limits.in_flight} requests at once"
                )
                return _error(429, "rate_limited", message, retry_after=refusal.retry_after_header)
        try:
            answer = await self.backend.answer(event)
        except WorkersUnavailable as error:
            return _error(503, "unavailable", str(error), retry_after="1")
        finally:
            if key and self.limiter is not None:
                self.limiter.release(key)
        status, headers, body = response_parts(answer.response)
        if key:
            self.keys.learn(token_hash, answer.tenant, status)
        return _Reply(status, headers, body)
