"""Benchmark: what finding the owners (and pods) of the node namespace's client sockets adds to a scan.

    sudo .venv/bin/python bench/bench_socket_owners.py

Sets up a "node" network namespace ``nmbench-own-node`` and a "pod" namespace ``nmbench-own-pod``
joined by a veth pair, with 40 processes in the node namespace (hostNetwork pods and node
processes), each holding 25 client connections to a server in the pod namespace and 250 other
descriptors (files: a node's processes hold far more descriptors than sockets): 1,000 client
sockets among ~11,000 descriptors. Then times, with the processes alive, a whole-``/proc``
``SocketScanner.scan()``:

* baseline: without owner lookups (the node namespace given as one that does not exist);
* cold: a new scanner each time, so every owner is looked for (the first scan, or a scan after
  every connection was replaced);
* steady: the same scanner scanning again (owners remembered; only new sockets cost a walk).

The last line printed is ``socket_owners: cold <r>x, steady <r>x the time of a scan without owner
lookups (<ms> ms / <ms> ms vs <ms> ms; 1,000 client sockets, 40 processes)``. Clean-up: a
``finally`` kills the processes and deletes the namespaces (also on SIGTERM); a killed run's
namespaces are deleted by the next.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent.sniffer.sockets import SocketScanner  # noqa: E402 - needs the repo on sys.path first

NODE, POD = "nmbench-own-node", "nmbench-own-pod"
PROCESSES = 40
CONNECTIONS = 25  # per process
FILES = 250  # other descriptors per process
CLIENT_SOCKETS = PROCESSES * CONNECTIONS
REPETITIONS = 7
PORT = 7000

SERVER = """
import resource, socket, sys
n = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[2])))
s.listen(n)
print("listening", flush=True)
held = [s.accept()[0] for _ in range(n)]
sys.stdin.read()
"""
CLIENT = """
import socket, sys
held = [socket.create_connection((sys.argv[1], int(sys.argv[2]))) for _ in range(int(sys.argv[3]))]
files = [open("/dev/null") for _ in range(int(sys.argv[4]))]
print("ready", flush=True)
sys.stdin.read()
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def delete_namespaces() -> None:
    for netns in (NODE, POD):
        subprocess.run(["ip", "netns", "del", netns], check=False, capture_output=True)


def start(procs: list[subprocess.Popen[str]]) -> None:
    """Fills ``procs`` as it goes, so the caller can stop those started if one fails."""
    ip("netns", "add", NODE)
    ip("netns", "add", POD)
    ip("-n", NODE, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", POD)
    for netns, last in ((NODE, 1), (POD, 2)):
        ip("-n", netns, "link", "set", "lo", "up")
        ip("-n", netns, "addr", "add", f"10.252.0.{last}/24", "dev", "eth0")
        ip("-n", netns, "link", "set", "eth0", "up")

    def spawn(netns: str, code: str, *args: str) -> subprocess.Popen[str]:
        cmd = ["ip", "netns", "exec", netns, sys.executable, "-c", code, *args]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        return proc

    server = spawn(POD, SERVER, str(CLIENT_SOCKETS), str(PORT))
    assert server.stdout is not None
    if server.stdout.readline().strip() != "listening":
        raise RuntimeError("the server did not start")
    clients = [
        spawn(NODE, CLIENT, "10.252.0.2", str(PORT), str(CONNECTIONS), str(FILES)) for _ in range(PROCESSES)
    ]
    for client in clients:
        assert client.stdout is not None
        if client.stdout.readline().strip() != "ready":
            raise RuntimeError(f"a client did not start (exit {client.poll()})")


def timed(scanner: SocketScanner) -> float:
    start = time.perf_counter()
    scanner.scan(time.time())
    return time.perf_counter() - start


def measure() -> None:
    st = Path(f"/run/netns/{NODE}").stat()
    node = (st.st_dev, st.st_ino)
    nowhere = (-1, -1)  # no namespace has this key: the scan without owner lookups
    check = SocketScanner(Path("/proc"), node_namespace=node).scan(time.time())
    print(
        f"{check.node_client_sockets} client sockets of the node namespace, "
        f"{check.owner_links_read} fd links read to find their owners"
    )
    if check.node_client_sockets < CLIENT_SOCKETS:
        raise SystemExit(f"expected >= {CLIENT_SOCKETS} client sockets in the node namespace")
    steady_scanner = SocketScanner(Path("/proc"), node_namespace=node)
    baseline_scanner = SocketScanner(Path("/proc"), node_namespace=nowhere)
    steady_scanner.scan(time.time())
    baseline_scanner.scan(time.time())
    baseline: list[float] = []
    cold: list[float] = []
    steady: list[float] = []
    for _ in range(REPETITIONS):  # interleaved, so drift on the machine hits all three alike
        baseline.append(timed(baseline_scanner))
        cold.append(timed(SocketScanner(Path("/proc"), node_namespace=node)))
        steady.append(timed(steady_scanner))
    for name, times in (("baseline", baseline), ("cold", cold), ("steady", steady)):
        print(f"{name} ms:", " ".join(f"{t * 1000:.1f}" for t in times))
    base_ms, cold_ms, steady_ms = (statistics.median(t) * 1000 for t in (baseline, cold, steady))
    print(
        f"socket_owners: cold {cold_ms / base_ms:.2f}x, steady {steady_ms / base_ms:.2f}x the time of a "
        f"scan without owner lookups ({cold_ms:.1f} ms / {steady_ms:.1f} ms vs {base_ms:.1f} ms; "
        f"{CLIENT_SOCKETS:,} client sockets, {PROCESSES} processes)"
    )


def main() -> int:
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below
    procs: list[subprocess.Popen[str]] = []
    delete_namespaces()  # left over from a run that was killed before its clean-up
    try:
        start(procs)
        measure()
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()
        delete_namespaces()
    return 0


if __name__ == "__main__":
    sys.exit(main())
