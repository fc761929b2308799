"""The local server over real sockets, as ``network-mapper-cloud`` runs it (``serve()``: uvicorn in
front of two worker processes), with small bounds so each is reached quickly: HTTP/1.1 framing
(chunked bodies, smuggling, invalid Content-Length, oversize bodies), read timeouts, one tenant's
long request not blocking others, and per-tenant rate limits."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import requests
from cloud_handler_support import demo_edges

from cloud_functions.local import serve
from cloud_functions.localserver import CloudServer, ServerSettings

MAX_BODY = 64 * 1024
READ_TIMEOUT = 1.5
KEEP_ALIVE = 1
RATE, BURST = 5.0, 10
SETTINGS = ServerSettings(
    workers=2,
    max_body_bytes=MAX_BODY,
    request_timeout=READ_TIMEOUT,
    keep_alive_timeout=KEEP_ALIVE,
    rate=RATE,
    burst=BURST,
)


@dataclass(frozen=True)
class Tenant:
    id: str
    owner: str
    ingest: str
    read: str


@dataclass(frozen=True)
class Cloud:
    server: CloudServer
    url: str
    port: int
    db: Path
    admin: str
    tenants: dict[str, Tenant]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _tenant(url: str, admin: str, name: str) -> Tenant:
    with requests.Session() as http:
        made = http.post(f"{url}/v1/tenants", json={"name": name}, headers=auth(admin), timeout=10).json()
        owner = made["ownerToken"]
        base = f"{url}/v1/tenants/{made['tenantId']}"
        cluster = http.post(f"{base}/clusters", json={"name": "c"}, headers=auth(owner), timeout=10).json()
        read = http.post(f"{base}/tokens", json={"role": "read"}, headers=auth(owner), timeout=10).json()
    return Tenant(made["tenantId"], owner, cluster["ingestToken"], read["token"])


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    tmp = tmp_path_factory.mktemp("local-server")
    server = serve("127.0.0.1:0", tmp / "cloud.db", tmp / "admin.token", SETTINGS)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    admin = (tmp / "admin.token").read_text().strip()
    try:
        # One tenant per role in the tests below, made here: the admin's own bucket holds BURST.
        tenants = {name: _tenant(url, admin, name) for name in ("slow", "other", "noisy", "quiet", "chunks")}
        yield Cloud(server, url, server.server_port, tmp / "cloud.db", admin, tenants)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


# --------------------------------------------------------------------------- raw HTTP


def connect(cloud: Cloud, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", cloud.port), timeout=timeout)


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def read_reply(stream: BinaryIO) -> Reply:
    """One response from the connection's buffered reader: framed by Content-Length (the front's
    answers), chunks, or the end of the connection (h11's own 400s)."""
    status_line = stream.readline()
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    headers: dict[str, str] = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while size := int(stream.readline().split(b";")[0], 16):
            body += stream.read(size)
            stream.readline()
        stream.readline()  # the empty trailer section
    elif "content-length" in headers:
        body = stream.read(int(headers["content-length"]))
    else:
        body = stream.read()
    return Reply(int(status_line.split()[1]), headers, body)


def closed(stream: BinaryIO) -> bool:
    """The server closed the connection (EOF, nothing more sent)."""
    return stream.read(1) == b""


def request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def tenant_names(cloud: Cloud) -> list[str]:
    with sqlite3.connect(cloud.db) as db:
        return [name for (name,) in db.execute("SELECT name FROM tenants")]


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        threading.Event().wait(0.01)


def healthy(cloud: Cloud) -> bool:
    return requests.get(f"{cloud.url}/healthz", timeout=5).json() == {"status": "ok"}


# --------------------------------------------------------------------------- framing


def test_a_chunked_body_is_read_whole(cloud: Cloud) -> None:
    tenant = cloud.tenants["chunks"]
    body = json.dumps({"batchId": "chunked-1", "anonymized": False, "edges": demo_edges()}).encode()
    parts = [body[:1], body[1:700], body[700:701], body[701:]]  # uneven, one of a single byte
    headers = auth(tenant.ingest) | {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    with connect(cloud) as sock, sock.makefile("rb") as stream:
        sock.sendall(request("POST", "/v1/ingest", headers, chunked(*parts)))
        reply = read_reply(stream)
    assert reply.status == 200, reply.body
    assert reply.json() == {"stored": True, "edgesWritten": len(demo_edges())}
    graph = requests.get(f"{cloud.url}/v1/graph", headers=auth(tenant.read), timeout=10).json()
    assert len(graph["edges"]) == len(demo_edges())


def test_a_request_inside_a_chunked_body_is_not_executed(cloud: Cloud) -> None:
    smuggled = request(
        "POST",
        "/v1/tenants",
        auth(cloud.admin) | {"Content-Type": "application/json", "Content-Length": "20"},
        b'{"name":"smuggled"}\n',
    )
    # A server framing by Content-Length alone would read "NN\r\n" as the body and run what follows.
    outer = request("POST", "/v1/ingest", {"Transfer-Encoding": "chunked"}, chunked(smuggled))
    then = request("GET", "/healthz", {})
    with connect(cloud) as sock, sock.makefile("rb") as stream:
        sock.sendall(outer + then)
        first, second = read_reply(stream), read_reply(stream)
    assert first.status == 401, "the smuggled text was the outer request's body (and it had no token)"
    assert second.status == 200 and second.json() == {"status": "ok"}, "the next request came next"
    assert "smuggled" not in tenant_names(cloud)


def test_transfer_encoding_with_content_length_is_refused_and_the_connection_closed(cloud: Cloud) -> None:
    smuggled = request(
        "POST", "/v1/tenants", auth(cloud.admin) | {"Content-Length": "19"}, b'{"name":"smuggled"}'
    )
    body = chunked(smuggled)
    headers = {"Content-Length": "4", "Transfer-Encoding": "chunked"}  # CL covers the chunk size only
    with connect(cloud) as sock, sock.makefile("rb") as stream:
        sock.sendall(request("POST", "/v1/ingest", headers, body))
        reply = read_reply(stream)
        assert reply.status == 400 and reply.json()["error"]["code"] == "bad_request"
        assert reply.headers["connection"] == "close"
        assert closed(stream)
    assert "smuggled" not in tenant_names(cloud)


@pytest.mark.parametrize(
    "lengths",
    [["abc"], ["-1"], ["5", "6"], ["5, 6"], ["1e3"]],
    ids=["letters", "negative", "two-values", "a-list", "exponent"],
)
def test_an_invalid_content_length_is_a_400_and_the_server_serves_on(
    cloud: Cloud, lengths: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    raw = request("POST", "/v1/ingest", {}).replace(
        b"\r\n\r\n", b"".join(b"\r\nContent-Length: " + v.encode() for v in lengths) + b"\r\n\r\n"
    )
    with connect(cloud) as sock, sock.makefile("rb") as stream:
        sock.sendall(raw + b"hello")
        reply = read_reply(stream)
        assert reply.status == 400
        assert closed(stream)
    assert healthy(cloud)
    assert not [r for r in caplog.records if r.exc_info], "refused without a traceback"


def test_a_declared_oversize_body_is_a_413_before_it_is_sent(cloud: Cloud) -> None:
    headers = {"Content-Type": "application/json", "Content-Length": str(MAX_BODY + 1)}
    with connect(cloud, timeout=5) as sock, sock.makefile("rb") as stream:
        sock.sendall(request("POST", "/v1/ingest", headers))  # and not one byte of the body
        reply = read_reply(stream)
        assert reply.status == 413 and reply.json()["error"]["code"] == "payload_too_large"
        assert closed(stream)


def test_a_chunked_body_is_refused_once_it_grows_past_the_limit(cloud: Cloud) -> None:
    headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    part = b"x" * 8192
    with connect(cloud, timeout=5) as sock, sock.makefile("rb") as stream:
        sock.sendall(request("POST", "/v1/ingest", headers))
        for _ in range(MAX_BODY // len(part) + 1):  # one chunk past the limit; no last chunk ever
            sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        reply = read_reply(stream)
        assert reply.status == 413 and reply.json()["error"]["code"] == "payload_too_large"
        assert closed(stream)


def test_a_body_at_the_limit_reaches_the_app(cloud: Cloud) -> None:
    body = b"{}" + b" " * (MAX_BODY - 2)
    headers = auth(cloud.tenants["chunks"].ingest) | {"Content-Type": "application/json"}
    reply = requests.post(f"{cloud.url}/v1/ingest", data=body, headers=headers, timeout=10)
    assert reply.status_code == 422, reply.text  # the app's answer: {} is no batch


# --------------------------------------------------------------------------- timeouts


def test_stalled_connections_are_closed_in_time_and_hold_no_thread(cloud: Cloud) -> None:
    threads_before = threading.active_count()
    opened = time.monotonic()
    silent = [connect(cloud) for _ in range(3)]  # not one byte
    half_head = [connect(cloud) for _ in range(10)]
    for sock in half_head:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")  # the head never ends
    half_body = connect(cloud)
    half_body.sendall(request("POST", "/v1/ingest", {"Content-Length": "100"}, b"0123456789"))
    stalled = [*silent, *half_head, half_body]
    try:
        wait_until(lambda: cloud.server.connections >= len(stalled), 5, "the connections accepted")
        assert healthy(cloud), "others are served meanwhile (on a connection accepted after them)"
        assert threading.active_count() == threads_before, "a stalled connection costs no thread"
        for sock in stalled:
            with sock.makefile("rb") as stream:
                if sock in silent:
                    assert closed(stream)
                else:
                    reply = read_reply(stream)
                    assert reply.status == 408 and reply.json()["error"]["code"] == "request_timeout"
                    assert closed(stream)
        assert time.monotonic() - opened < READ_TIMEOUT + 3
    finally:
        for sock in stalled:
            sock.close()


def test_an_idle_keep_alive_connection_is_closed(cloud: Cloud) -> None:
    with connect(cloud) as sock, sock.makefile("rb") as stream:
        sock.sendall(request("GET", "/healthz", {}))
        assert read_reply(stream).status == 200
        answered = time.monotonic()
        assert closed(stream)
        assert time.monotonic() - answered < KEEP_ALIVE + 3


# --------------------------------------------------------------------------- tenants


def test_a_long_request_of_one_tenant_blocks_neither_others_nor_healthz(cloud: Cloud) -> None:
    slow, other = cloud.tenants["slow"], cloud.tenants["other"]
    batch = {"anonymized": False, "edges": demo_edges()}
    for tenant, batch_id in ((slow, "first"), (other, "only")):
        reply = requests.post(
            f"{cloud.url}/v1/ingest",
            json=batch | {"batchId": batch_id},
            headers=auth(tenant.ingest),
            timeout=10,
        )
        assert reply.status_code == 200, reply.text
    slow_key, _ = cloud.server.front.keys.key(f"Bearer {slow.ingest}", "127.0.0.1")
    assert slow_key == f"tenant:{slow.id}", "the front has learnt the token's tenant from the answer"
    limiter = cloud.server.front.limiter
    assert limiter is not None
    result: dict[str, Any] = {}

    def slow_ingest() -> None:
        result["reply"] = requests.post(
            f"{cloud.url}/v1/ingest",
            json=batch | {"batchId": "second"},
            headers=auth(slow.ingest),
            timeout=30,
        )

    # The test takes the store's write lock: the slow tenant's ingest waits for it in its worker
    # (a writer's busy wait, as behind another process's long write), for as long as the test says.
    holder = sqlite3.connect(cloud.db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    waiting = threading.Thread(target=slow_ingest)
    try:
        waiting.start()
        wait_until(lambda: limiter.in_flight(slow_key) == 1, 5, "the slow ingest to reach a worker")
        started = time.monotonic()
        assert healthy(cloud)
        graph = requests.get(f"{cloud.url}/v1/graph", headers=auth(other.read), timeout=5)
        assert graph.status_code == 200 and len(graph.json()["edges"]) == len(demo_edges())
        # The owner token made the tenant's cluster: the front knows its tenant, and refuses it.
        again = requests.get(
            f"{cloud.url}/v1/tenants/{slow.id}/clusters", headers=auth(slow.owner), timeout=5
        )
        assert again.status_code == 429 and again.headers["Retry-After"] == "1", "one in flight per tenant"
        assert waiting.is_alive(), "answered while the slow request still ran"
        assert time.monotonic() - started < 3
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        waiting.join(30)
    assert result["reply"].status_code == 200, result["reply"].text
    assert result["reply"].json()["stored"] is True


def test_a_tenant_over_its_rate_gets_429_and_others_do_not(cloud: Cloud) -> None:
    noisy, quiet = cloud.tenants["noisy"], cloud.tenants["quiet"]
    with requests.Session() as http:
        statuses: list[int] = []
        refused = None
        while refused is None:
            assert len(statuses) < 10 * BURST, f"never limited: {statuses}"
            reply = http.get(f"{cloud.url}/v1/graph", headers=auth(noisy.read), timeout=10)
            statuses.append(reply.status_code)
            if reply.status_code == 429:
                refused = reply
        assert set(statuses[:-1]) == {200} and len(statuses) > BURST // 2, "a burst is admitted first"
        assert refused.json()["error"]["code"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) >= 1
        # Every token of the tenant counts against the same bucket: the owner token is limited too.
        # It may get the token or two refilled since (RATE a second, on a loaded machine), but not
        # a bucket of its own (BURST answers before the first 429).
        admitted = 0
        while admitted < BURST:
            owner = http.get(
                f"{cloud.url}/v1/tenants/{noisy.id}/clusters", headers=auth(noisy.owner), timeout=10
            )
            if owner.status_code == 429:
                break
            admitted += 1
        assert admitted < BURST // 2, f"the owner token had a bucket of its own ({admitted} admitted)"
        assert http.get(f"{cloud.url}/v1/graph", headers=auth(quiet.read), timeout=10).status_code == 200
        assert http.get(f"{cloud.url}/healthz", timeout=10).status_code == 200
