"""HTTP transports: the default one (``requests``) against real sockets on 127.0.0.1 — a refused
connection, a server that never answers, a redirect not followed — and the in-process ASGI one
(tests/support/transports.py) against the mapper's real app. The cloud's in-process transport is
tested with the cloud (tests/cloud/test_cloud_transport.py)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent.mapperclient import (
    HttpMapperClient,
    MapperRejected,
    MapperUnavailable,
    Request,
    RequestsTransport,
    TransportError,
    TransportTimeout,
)
from tests.support.mapper_app import InProcessMapper
from tests.support.transports import AsgiTransport

# --------------------------------------------------------------------------- requests, real sockets


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/redirect":
            self.send_response(307)
            self.send_header("Location", "/echo")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Echo-Auth", self.headers.get("Authorization", ""))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def echo() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_requests_transport_sends_bytes_and_lowercases_answer_headers(echo: str) -> None:
    transport = RequestsTransport()
    try:
        response = transport(Request("POST", f"{echo}/echo", {"Authorization": "Bearer x"}, b'{"q":1}', 5.0))
    finally:
        transport.close()
    assert (response.status, response.body) == (200, b'{"q":1}')
    assert response.headers["x-echo-auth"] == "Bearer x"
    assert response.headers["content-type"] == "application/json"


def test_requests_transport_does_not_follow_redirects(echo: str) -> None:
    transport = RequestsTransport()
    try:
        response = transport(Request("POST", f"{echo}/redirect", {}, b"{}", 5.0))
    finally:
        transport.close()
    assert (response.status, response.headers["location"]) == (307, "/echo")
    with pytest.raises(MapperRejected, match="HTTP 307"):
        HttpMapperClient(f"{echo}/redirect", "t", 5.0).execute("{ health }", {})


def test_a_refused_connection_is_a_transport_error() -> None:
    with socket.socket() as probe:  # a port nobody listens on: bound, never listening
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/query"
        with pytest.raises(TransportError, match="ConnectionError"):
            RequestsTransport()(Request("POST", url, {}, b"{}", 5.0))
        with pytest.raises(MapperUnavailable, match="ConnectionError"):
            HttpMapperClient(url, "t", 5.0).execute("{ health }", {})


def test_a_server_that_never_answers_is_a_timeout() -> None:
    with socket.socket() as silent:  # accepts connections (the backlog), never reads or answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/query"
        started = time.monotonic()
        with pytest.raises(TransportTimeout, match=r"no answer within 0.3s"):
            RequestsTransport()(Request("POST", url, {}, b"{}", 0.3))
        assert time.monotonic() - started < 5
        with pytest.raises(MapperUnavailable, match=r"no answer within 0.3s"):
            HttpMapperClient(url, "t", 0.3).execute("{ health }", {})


# ------------------------------------------------------------------ the mapper's ASGI app, in process


def test_asgi_transport_serves_the_mapper_app_with_its_lifespan() -> None:
    with InProcessMapper("tok") as mapper:
        client = HttpMapperClient(mapper.url, "", 5.0, transport=mapper.transport)
        assert client.execute("{ health }", {}) == {"health": True}
        with pytest.raises(MapperRejected, match="HTTP 401"):
            client.execute("mutation { resetCapture }", {})
        health = mapper.transport(Request("GET", "http://mapper.in-process:9090/healthz"))
        assert (health.status, health.headers["content-type"]) == (200, "application/json")
        assert health.headers["content-length"] == str(len(health.body))
        workers = [t for t in threading.enumerate() if t.name.startswith("mapper-reports")]
        assert workers
    assert not any(t.is_alive() for t in workers)  # the lifespan's shutdown stopped the report queue
    with pytest.raises(TransportError, match="not running"):
        mapper.transport(Request("GET", "http://mapper.in-process:9090/healthz"))


def test_asgi_transport_times_out_a_slow_app() -> None:
    release = threading.Event()

    async def slow(scope: dict[str, object], receive: object, send: object) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()  # type: ignore[operator]
                await send({"type": f"{message['type']}.complete"})  # type: ignore[operator]
                if message["type"] == "lifespan.shutdown":
                    return
        while not release.is_set():
            await asyncio.sleep(0.01)

    with AsgiTransport(slow) as transport:
        with pytest.raises(TransportTimeout, match=r"0\.2s"):
            transport(Request("POST", "http://slow.test/", {}, b"", 0.2))
        release.set()
