"""The socket scanner over the real /proc: a server and a client in two network namespaces
joined by a veth pair (10.250.x addresses inside those namespaces only; the root namespace
gets neither an address nor a route), and real TCP connections from one to the other."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.model import SocketConnection
from agent.sniffer.sockets import ScanResult, SocketScanner

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2"),
]

SERVER_PORT = 5432
CLIENT_HOSTNAME = "frontend-7d9f8c-x2kq"

# Run inside the namespaces: serve (connect) N times, say so on stdout, hold the sockets until
# stdin closes.
SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(512)
print("listening", flush=True)
held = [s.accept()[0] for _ in range(int(sys.argv[2]))]
print("accepted", flush=True)
sys.stdin.read()
"""
CLIENT = """
import socket, sys
target = (sys.argv[1], int(sys.argv[2]))
held = [socket.create_connection(target, timeout=10) for _ in range(int(sys.argv[3]))]
print(",".join(str(c.getsockname()[1]) for c in held), flush=True)
sys.stdin.read()
"""


@dataclass
class Pair:
    client_ip: str
    server_ip: str
    client_ports: list[int]
    processes: list[subprocess.Popen[str]]


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def spawn(netns: str, code: str, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def read_line(proc: subprocess.Popen[str]) -> str:
    """The process's next stdout line. A hung child fails the test through pytest's timeout;
    a dead one gives "" at once."""
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


@pytest.fixture
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    """Namespaces, processes and connections (1, or ``indirect`` parametrization's count)."""
    count = str(getattr(request, "param", 1))
    tag = os.getpid() % 100_000
    server_ns, client_ns = f"nmtest-sock-{tag}-s", f"nmtest-sock-{tag}-c"
    subnet = f"10.250.{tag % 250}"
    procs: list[subprocess.Popen[str]] = []
    try:
        ip("netns", "add", server_ns)
        ip("netns", "add", client_ns)
        # Both veth ends are created directly inside the two namespaces.
        ip("-n", client_ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", server_ns)
        for netns, last in ((client_ns, 1), (server_ns, 2)):
            ip("-n", netns, "link", "set", "lo", "up")
            ip("-n", netns, "addr", "add", f"{subnet}.{last}/24", "dev", "eth0")
            ip("-n", netns, "link", "set", "eth0", "up")

        base_env = {k: v for k, v in os.environ.items() if k != "HOSTNAME"}
        server = spawn(server_ns, SERVER, str(SERVER_PORT), count, env=base_env)
        procs.append(server)
        assert read_line(server) == "listening"
        client = spawn(
            client_ns,
            CLIENT,
            f"{subnet}.2",
            str(SERVER_PORT),
            count,
            env={**base_env, "HOSTNAME": CLIENT_HOSTNAME},
        )
        procs.append(client)
        client_ports = [int(port) for port in read_line(client).split(",")]
        assert read_line(server) == "accepted"
        yield Pair(f"{subnet}.1", f"{subnet}.2", client_ports, procs)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        for netns in (server_ns, client_ns):
            subprocess.run(["ip", "netns", "del", netns], check=False, capture_output=True)


def ours(result: ScanResult, pair: Pair) -> list[SocketConnection]:
    """Observations touching our addresses (other tests' namespaces may be on the host too)."""
    addresses = {pair.client_ip, pair.server_ip}
    return [o for o in result.observations if {o.client_ip, o.server_ip} & addresses]


def test_scan_finds_the_connection_once_with_direction_and_client_hostname(pair: Pair) -> None:
    scanner = SocketScanner(Path("/proc"))
    # The connection is up before the fixture returns (connect() returned and the server
    # accepted); the deadline only covers /proc catching up, which should be immediate.
    deadline = time.monotonic() + 10
    while True:
        now = time.time()
        result = scanner.scan(now)
        found = ours(result, pair)
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.05)

    assert found == [
        SocketConnection(
            client_ip=pair.client_ip,
            client_port=pair.client_ports[0],
            server_ip=pair.server_ip,
            server_port=SERVER_PORT,
            seen_at=now,
            client_hostname=CLIENT_HOSTNAME,
        )
    ]
    assert result.namespaces >= 2
    assert result.established_sockets >= 2  # both ends, one in each namespace
    assert result.parse_errors == 0


def test_scan_no_longer_reports_a_closed_connection(pair: Pair) -> None:
    scanner = SocketScanner(Path("/proc"))
    assert len(ours(scanner.scan(time.time()), pair)) == 1
    # Killing both ends closes the sockets; then nothing of ours is established.
    for proc in pair.processes:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while ours(scanner.scan(time.time()), pair):
        assert time.monotonic() < deadline, "connection still reported after both ends were killed"
        time.sleep(0.05)


@pytest.mark.parametrize("pair", [300], indirect=True)
def test_scan_reads_tables_of_many_pages_completely(pair: Pair) -> None:
    """300 connections: each namespace's table is ~11 pages, read in page-sized pieces."""
    result = SocketScanner(Path("/proc")).scan(time.time())
    found = ours(result, pair)
    assert sorted((o.client_ip, o.client_port, o.server_ip, o.server_port) for o in found) == sorted(
        (pair.client_ip, port, pair.server_ip, SERVER_PORT) for port in pair.client_ports
    )
    assert {o.client_hostname for o in found} == {CLIENT_HOSTNAME}
    assert result.parse_errors == 0
