"""The pods' programs as real subprocesses on 127.0.0.1: servers answer, calls and holds happen."""

from __future__ import annotations

import http.client
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEADLINE = 5.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Workload:
    """A ``python -m sandbox.workloads`` subprocess whose stdout lines are collected as they come."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sandbox.workloads", *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._new: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._new.put(line.rstrip("\n"))

    def matching(self, pattern: str) -> list[re.Match[str]]:
        while not self._new.empty():
            self.lines.append(self._new.get_nowait())
        return [m for m in map(re.compile(pattern).search, self.lines) if m]

    def wait_for(self, pattern: str, count: int = 1, timeout: float = DEADLINE) -> list[re.Match[str]]:
        deadline = time.monotonic() + timeout
        while len(found := self.matching(pattern)) < count:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"no {count}x {pattern!r} in output:\n" + "\n".join(self.matching("")))
            time.sleep(0.02)
        return found

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=DEADLINE)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def workloads() -> Iterator[list[Workload]]:
    started: list[Workload] = []
    yield started
    for workload in started:
        workload.kill()


class Target:
    """An HTTP server in the test that records (path, client port) of every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, int]] = []
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                target.requests.append((self.path, self.client_address[1]))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def wait_for_requests(self, path: str, count: int) -> list[int]:
        deadline = time.monotonic() + DEADLINE
        while len(ports := [port for p, port in self.requests if p == path]) < count:
            assert time.monotonic() < deadline, f"target saw {self.requests}"
            time.sleep(0.02)
        return ports


@pytest.fixture
def target() -> Iterator[Target]:
    server = Target()
    yield server
    server.server.shutdown()
    server.server.server_close()


def http_get(port: int, path: str = "/", host: str | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path, headers={"Host": host} if host else {})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def test_service_serves_calls_by_name_and_holds_one_redis_connection(
    workloads: list[Workload], target: Target
) -> None:
    redis_port, service_port = free_port(), free_port()
    redis = Workload("redis", "--port", str(redis_port))
    workloads.append(redis)
    redis.wait_for(rf"redis listening on 0.0.0.0:{redis_port}")
    service = Workload(
        "service",
        "--port",
        str(service_port),
        "--call",
        f"http://localhost:{target.port}/from-service",  # a name: resolved on every call
        "--interval",
        "0.1",
        "--hold",
        f"localhost:{redis_port}",
        "--hold-interval",
        "0.1",
    )
    workloads.append(service)
    service.wait_for(rf"service listening on 0.0.0.0:{service_port}")

    status, body = http_get(service_port, "/hello")
    assert status == 200
    assert "ok from" in body

    # Every call is a new connection (a new client port), as the sniffer needs to see SYNs.
    client_ports = target.wait_for_requests("/from-service", 3)
    assert len(set(client_ports)) == len(client_ports)
    service.wait_for(r"call http://localhost:\d+/from-service -> HTTP 204 via 127\.0\.0\.1:\d+")

    # The hold: one connection, several PINGs on it.
    pings = redis.wait_for(r"redis PING from (\S+)", count=3)
    assert len({m.group(1) for m in pings}) == 1
    assert [m.group(1) for m in redis.matching(r"redis connection from (\S+)")] == [pings[0].group(1)]
    service.wait_for(r"hold localhost:\d+ PING -> \+PONG")

    assert service.terminate() == 0
    redis.wait_for(rf"redis connection from {re.escape(pings[0].group(1))} closed")
    assert redis.terminate() == 0


def test_service_survives_failing_calls_and_a_late_redis(workloads: list[Workload]) -> None:
    closed_port, redis_port = free_port(), free_port()
    service = Workload(
        "service",
        "--port",
        str(free_port()),
        "--call",
        f"127.0.0.1:{closed_port}",
        "--interval",
        "0.1",
        "--hold",
        f"127.0.0.1:{redis_port}",
        "--hold-interval",
        "0.1",
    )
    workloads.append(service)
    service.wait_for(rf"call 127\.0\.0\.1:{closed_port} -> ConnectionRefusedError", count=2)
    service.wait_for(rf"hold 127\.0\.0\.1:{redis_port}: .*reconnecting")
    redis = Workload("redis", "--port", str(redis_port))
    workloads.append(redis)
    redis.wait_for(r"redis PING from", count=2)
    assert service.terminate() == 0
    assert redis.terminate() == 0


def test_redis_answers_ping_and_rejects_other_commands(workloads: list[Workload]) -> None:
    port = free_port()
    redis = Workload("redis", "--port", str(port))
    workloads.append(redis)
    redis.wait_for("redis listening")
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock, sock.makefile("rb") as replies:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        assert replies.readline() == b"+PONG\r\n"
        sock.sendall(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
        assert replies.readline().startswith(b"-ERR")
        sock.sendall(b"PING\r\n")  # inline form, as redis-cli sends it
        assert replies.readline() == b"+PONG\r\n"
    assert redis.terminate() == 0


def test_internet_answers_any_host(workloads: list[Workload]) -> None:
    port = free_port()
    internet = Workload("internet", "--port", str(port))
    workloads.append(internet)
    internet.wait_for("service listening")
    status, body = http_get(port, "/v1/charge", host="api.example.com")
    assert status == 200
    assert "api.example.com /v1/charge" in body
    assert internet.terminate() == 0


def test_job_calls_once_and_exits_zero(target: Target) -> None:
    job = subprocess.run(
        [sys.executable, "-m", "sandbox.workloads", "job", "--call", f"http://localhost:{target.port}/job"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert job.returncode == 0, job.stdout + job.stderr
    assert [path for path, _ in target.requests] == ["/job"]
    assert "call http://localhost" in job.stdout


def test_job_fails_when_every_attempt_fails() -> None:
    job = subprocess.run(
        [
            sys.executable,
            "-m",
            "sandbox.workloads",
            "job",
            "--call",
            f"127.0.0.1:{free_port()}",
            "--attempts",
            "1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert job.returncode == 1
    assert "ConnectionRefusedError" in job.stdout
