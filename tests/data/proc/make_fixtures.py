"""Regenerate the captured ``/proc/<pid>/net/tcp{,6}`` files in this directory (needs root and ``ip``).

    sudo .venv/bin/python tests/data/proc/make_fixtures.py

It creates two throwaway network namespaces joined by a veth pair (removed afterwards, and
nothing is added to the root namespace): a "client" namespace (10.250.7.1, fd00:250:7::1) and
a "server" namespace (10.250.7.2, fd00:250:7::2). A process in each opens real sockets, with
the client ports fixed so tests can name them; then the client's and server's tables are
copied byte for byte into ``client_tcp``, ``client_tcp6``, ``server_tcp``, ``server_tcp6``.
``tests/unit/sniffer/test_sniffer_sockets.py`` asserts what the parser must make of each file,
so regenerate both together.

Server namespace: listeners on 0.0.0.0:5432 and dual-stack [::]:6379, accepting.
Client namespace, by client port:
    40001  127.0.0.1 -> 127.0.0.1:8080           loopback, both ends in tcp
    40002  127.0.0.1 -> dual-stack [::]:9090      client end in tcp, server end in tcp6 as ::ffff:127.0.0.1
    40003  [::1] -> [::1]:9443                    IPv6 loopback
    40004  10.250.7.1 -> 10.250.7.2:5432          to the server namespace
    40005  [fd00:250:7::1] -> [fd00:250:7::2]:6379
    40006  10.250.7.1 -> 10.250.7.2:6379          IPv4 to the dual-stack listener (::ffff: at the server)
    40007  127.0.0.1 -> 127.0.0.1:8081            closed by the client: left in TIME_WAIT
    40008  127.0.0.1 -> 127.0.0.1:7000            established, then the listener closed
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLIENT_NS, SERVER_NS = f"nmtest-sock-fxc-{os.getpid()}", f"nmtest-sock-fxs-{os.getpid()}"


def listener(family: socket.AddressFamily, address: str, port: int, v6only: bool = True) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
    sock.bind((address, port))
    sock.listen(16)
    return sock


def connect(family: socket.AddressFamily, source: str, port: int, target: tuple[str, int]) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((source, port))
    sock.settimeout(5)
    sock.connect(target)
    return sock


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.01)


def server_role() -> None:
    v4 = listener(socket.AF_INET, "0.0.0.0", 5432)
    dual = listener(socket.AF_INET6, "::", 6379, v6only=False)
    print("ready", flush=True)
    kept = [v4.accept()[0], dual.accept()[0], dual.accept()[0]]
    print("accepted", flush=True)
    sys.stdin.read()  # keep every socket open until the parent has copied the tables
    del kept


def client_role() -> None:
    v6, v4 = socket.AF_INET6, socket.AF_INET
    kept = []
    for family, address, port, v6only, source, client_port, target in [
        (v4, "127.0.0.1", 8080, True, "127.0.0.1", 40001, ("127.0.0.1", 8080)),
        (v6, "::", 9090, False, "127.0.0.1", 40002, ("127.0.0.1", 9090)),
        (v6, "::1", 9443, True, "::1", 40003, ("::1", 9443)),
    ]:
        lsock = listener(family, address, port, v6only)
        kept += [lsock, connect(v4 if source.count(".") == 3 else v6, source, client_port, target)]
        kept.append(lsock.accept()[0])
    kept.append(connect(v4, "10.250.7.1", 40004, ("10.250.7.2", 5432)))
    kept.append(connect(v6, "fd00:250:7::1", 40005, ("fd00:250:7::2", 6379)))
    kept.append(connect(v4, "10.250.7.1", 40006, ("10.250.7.2", 6379)))

    closing = listener(v4, "127.0.0.1", 8081)
    active = connect(v4, "127.0.0.1", 40007, ("127.0.0.1", 8081))
    passive = closing.accept()[0]
    active.close()  # the side that closes first is the one left in TIME_WAIT
    assert passive.recv(1) == b""
    passive.close()
    closing.close()
    wait_for(lambda: ":9C47 0100007F:1F91 06 " in Path("/proc/self/net/tcp").read_text(), "TIME_WAIT")

    orphan = listener(v4, "127.0.0.1", 7000)
    kept += [connect(v4, "127.0.0.1", 40008, ("127.0.0.1", 7000)), orphan.accept()[0]]
    orphan.close()
    print("ready", flush=True)
    sys.stdin.read()
    del kept


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True)


def start(netns: str, role: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, __file__, role],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError(f"{role} did not start")
    return proc


def main() -> None:
    procs: list[subprocess.Popen[str]] = []
    ip("netns", "add", CLIENT_NS)
    try:
        ip("netns", "add", SERVER_NS)
        # Created inside the client namespace with its peer inside the server namespace:
        # the root namespace never sees either end.
        ip("-n", CLIENT_NS, "link", "add", "fx0", "type", "veth", "peer", "name", "fx0", "netns", SERVER_NS)
        for netns, last in ((CLIENT_NS, 1), (SERVER_NS, 2)):
            ip("-n", netns, "link", "set", "lo", "up")
            ip("-n", netns, "addr", "add", f"10.250.7.{last}/24", "dev", "fx0")
            ip("-n", netns, "addr", "add", f"fd00:250:7::{last}/64", "dev", "fx0", "nodad")
            ip("-n", netns, "link", "set", "fx0", "up")
        server = start(SERVER_NS, "--server")
        procs.append(server)
        client = start(CLIENT_NS, "--client")
        procs.append(client)
        assert server.stdout is not None
        if server.stdout.readline().strip() != "accepted":
            raise RuntimeError("server did not accept")
        for proc, name in ((client, "client"), (server, "server")):
            for table in ("tcp", "tcp6"):
                (HERE / f"{name}_{table}").write_bytes(Path(f"/proc/{proc.pid}/net/{table}").read_bytes())
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        for netns in (CLIENT_NS, SERVER_NS):
            subprocess.run(["ip", "netns", "del", netns], check=False)


if __name__ == "__main__":
    if sys.argv[1:] == ["--server"]:
        server_role()
    elif sys.argv[1:] == ["--client"]:
        client_role()
    else:
        main()
