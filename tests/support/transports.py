"""HTTP transports (``agent.mapperclient.Transport``) that call an app in this process.

Requests come from the product's own HTTP clients (:class:`agent.mapperclient.HttpMapperClient`,
:class:`agent.mapper.uploader.HttpCloudClient`) given one of these as ``transport=``; they go to
the real app, with no socket in between:

* :class:`AsgiTransport`: an ASGI app, e.g. the mapper's API (``agent.mapper.api.create_app``).
  The app runs on an event loop of its own, in a thread, as under uvicorn: its lifespan starts
  with :meth:`~AsgiTransport.start` and ends with :meth:`~AsgiTransport.close`, and a request
  that gets no answer within its ``timeout`` raises :class:`~agent.mapperclient.TransportTimeout`.
* :class:`CloudTransport`: the cloud's Lambda handler (``cloud_functions.handlers.CloudApp``);
  each request becomes the API Gateway HTTP API v2 event it would produce
  (``cloud_functions.gatewayevents.http_event``, the local server's own builder), the handler's answer
  the response.
* :class:`RecordingTransport`: in front of another transport; keeps every exchange, and can
  answer a status itself (a failing proxy in front of the app) or refuse to connect (an outage).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import re
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from agent.mapperclient import Request, Response, Transport, TransportError, TransportTimeout
from cloud_functions.gatewayevents import http_event, response_parts
from cloud_functions.handlers import CloudApp

log = logging.getLogger("tests.support.transports")

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Message, Receive, Send], Awaitable[None]]

LIFESPAN_TIMEOUT = 15.0
_FIRST_FIELD = re.compile(r"\{\s*([A-Za-z_]\w*)")


def _headers(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Header pairs → one lower-case name each (repeated headers joined with ", ")."""
    joined: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        joined[key] = f"{joined[key]}, {value}" if key in joined else value
    return joined


class AsgiTransport:
    """``with AsgiTransport(app) as transport: HttpMapperClient(url, token, 5.0, transport)``."""

    def __init__(self, app: Any, client: tuple[str, int] = ("127.0.0.1", 50123)) -> None:
        self._app: AsgiApp = app
        self._client = client
        self._state: dict[str, Any] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="asgi-transport", daemon=True)
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message] = asyncio.Queue()
        self._lifespan: concurrent.futures.Future[None] | None = None

    # ------------------------------------------------------------------ lifespan

    def start(self) -> AsgiTransport:
        """Start the loop and the app's lifespan (its startup must complete)."""
        self._thread.start()
        self._lifespan = asyncio.run_coroutine_threadsafe(self._run_lifespan(), self._loop)
        self._lifespan_step("lifespan.startup")
        return self

    def close(self) -> None:
        """The app's lifespan shutdown, then stop the loop."""
        if self._lifespan is not None:
            self._lifespan_step("lifespan.shutdown")
            self._lifespan.result(LIFESPAN_TIMEOUT)
            self._lifespan = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(LIFESPAN_TIMEOUT)
            self._loop.close()

    async def _run_lifespan(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self._state}
        try:
            await self._app(scope, self._to_app.get, self._from_app.put)
        except Exception as exc:  # an app without lifespan support, or a broken one: say so, not hang
            await self._from_app.put({"type": "lifespan.failed", "message": repr(exc)})
            raise

    def _lifespan_step(self, message: str) -> None:
        async def step() -> Message:
            await self._to_app.put({"type": message})
            return await self._from_app.get()

        reply = asyncio.run_coroutine_threadsafe(step(), self._loop).result(LIFESPAN_TIMEOUT)
        if reply["type"] != f"{message}.complete":
            raise RuntimeError(f"the app's {message} failed: {reply.get('message', reply)}")

    def __enter__(self) -> AsgiTransport:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ requests

    def __call__(self, request: Request) -> Response:
        if self._lifespan is None:
            raise TransportError("ConnectionError: the in-process app is not running")
        future = asyncio.run_coroutine_threadsafe(self._exchange(request), self._loop)
        try:
            return future.result(request.timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TransportTimeout(f"no answer within {request.timeout}s") from None

    async def _exchange(self, request: Request) -> Response:
        url = urlsplit(request.url)
        host = url.hostname or "localhost"
        port = url.port or (443 if url.scheme == "https" else 80)
        headers = {name.lower(): value for name, value in request.headers.items()}
        headers.setdefault("host", url.netloc or host)
        headers["content-length"] = str(len(request.body))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": request.method.upper(),
            "scheme": url.scheme or "http",
            "path": unquote(url.path or "/"),
            "raw_path": (url.path or "/").encode(),
            "query_string": url.query.encode(),
            "root_path": "",
            "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
            "client": self._client,
            "server": (host, port),
            "state": dict(self._state),
        }
        answered = asyncio.Event()
        body_read = False
        status: int | None = None
        reply_headers: list[tuple[str, str]] = []
        chunks: list[bytes] = []

        async def receive() -> Message:
            nonlocal body_read
            if not body_read:
                body_read = True
                return {"type": "http.request", "body": request.body, "more_body": False}
            await answered.wait()  # the client hangs up once it has its answer
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                reply_headers.extend(
                    (k.decode("latin-1"), v.decode("latin-1")) for k, v in message["headers"]
                )
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))
                if not message.get("more_body", False):
                    answered.set()

        try:
            await self._app(scope, receive, send)
        except Exception as exc:
            if status is None or not answered.is_set():
                raise TransportError(f"the app failed before answering: {exc!r}") from exc
            # As a server does: the client has its (error) answer; the failure is logged here.
            log.exception("the in-process app raised after answering %s %s", request.method, request.url)
        finally:
            answered.set()
        if status is None:
            raise TransportError("the app returned without answering")
        return Response(status, _headers(reply_headers), b"".join(chunks))


class CloudTransport:
    """The cloud's :class:`CloudApp` as a transport: the request's path and query go to the
    handler's routes; ``timeout`` is not enforced (the handler runs in the calling thread)."""

    def __init__(self, app: CloudApp, source_ip: str = "10.0.0.1") -> None:
        self.app = app
        self.source_ip = source_ip

    def __call__(self, request: Request) -> Response:
        url = urlsplit(request.url)
        target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        headers = [("Host", url.netloc or "localhost"), *request.headers.items()]
        event = http_event(request.method, target, headers, request.body, self.source_ip)
        status, reply_headers, body = response_parts(self.app(event, None))
        return Response(status, _headers(reply_headers), body)


@dataclass(frozen=True)
class Exchange:
    request: Request
    response: Response | None  # None: the transport raised (no answer)

    @property
    def operation(self) -> str:
        """A GraphQL request's first field (``reportCaptureResults`` ...); ``""`` for others."""
        try:
            query = json.loads(self.request.body)["query"]
        except (ValueError, KeyError, TypeError):
            return ""
        found = _FIRST_FIELD.search(str(query))
        return found.group(1) if found else ""


class RecordingTransport:
    """Sends through ``inner`` (which may be replaced: a restarted app) and records every exchange.

    ``fail_with(status, times)`` makes it answer ``status`` itself for the next ``times`` requests
    (None: until told otherwise), as a proxy in front of a failing app would; status 0 means no
    answer at all (:class:`~agent.mapperclient.TransportError`, a connection refused).
    """

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self._lock = threading.Lock()
        self._exchanges: list[Exchange] = []
        self._fail_status: int | None = None
        self._fail_times: int | None = None

    def fail_with(self, status: int | None, times: int | None = None) -> None:
        with self._lock:
            self._fail_status, self._fail_times = status, times

    def _failure(self) -> int | None:
        with self._lock:
            if self._fail_status is None:
                return None
            status = self._fail_status
            if self._fail_times is not None:
                self._fail_times -= 1
                if self._fail_times <= 0:
                    self._fail_status = self._fail_times = None
            return status

    def __call__(self, request: Request) -> Response:
        status = self._failure()
        try:
            if status == 0:
                raise TransportError("ConnectionRefusedError: injected by the test")
            if status is not None:
                response = Response(status, {"content-type": "application/json"}, b'{"errors":[]}')
            else:
                response = self.inner(request)
        except TransportError:
            self._record(Exchange(request, None))
            raise
        self._record(Exchange(request, response))
        return response

    def _record(self, exchange: Exchange) -> None:
        with self._lock:
            self._exchanges.append(exchange)

    def exchanges(self) -> list[Exchange]:
        with self._lock:
            return list(self._exchanges)

    def count(self, status: int) -> int:
        """Exchanges answered with ``status`` (0: not answered)."""
        return sum(1 for e in self.exchanges() if (e.response.status if e.response else 0) == status)

    def operations(self) -> list[str]:
        """The GraphQL operation of each exchange, in order."""
        return [e.operation for e in self.exchanges()]
