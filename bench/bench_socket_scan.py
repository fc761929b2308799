"""Benchmark: the sniffer's /proc socket scan against ``ss`` on 50,000 sockets in 50 namespaces.

    sudo .venv/bin/python bench/bench_socket_scan.py

Sets up 50 network namespaces ``nmbench-<i>``, each with one process holding a listener on
127.0.0.1 and 500 connections to it (1,000 ESTABLISHED sockets per namespace, 50,000 in all),
then times, with the processes alive:

* ours: one ``SocketScanner(Path("/proc")).scan()`` over the whole ``/proc``;
* baseline: ``ip netns exec nmbench-<i> ss -tanH`` for the 50 namespaces, one after the other,

a few repetitions each, interleaved, and compares the medians. The last line printed is
``socket_scan: <ratio>x the time of ss (<ours> ms vs <ss> ms for 50,000 sockets in 50 namespaces)``.

Our scan covers every namespace on the machine, as it would on a node: the 50, the root
namespace and whatever else runs here (it prints how many), so it does more than the baseline.
Clean-up: a ``finally`` kills the processes and deletes the namespaces (also on SIGTERM); if
the benchmark is killed outright, the processes still exit (their stdin closes) and the next
run deletes the namespaces left behind.
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

NAMESPACES = 50
CONNECTIONS_PER_NAMESPACE = 500  # each is two ESTABLISHED sockets: client end and accepted end
SOCKETS = NAMESPACES * CONNECTIONS_PER_NAMESPACE * 2
REPETITIONS = 5

# One per namespace: a listener on 127.0.0.1, N connections to it, all accepted; holds them
# until its stdin closes. It needs 2N+1 descriptors, so it raises its own RLIMIT_NOFILE.
WORKER = """
import resource, socket, sys
n = int(sys.argv[1])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = 2 * n + 64
if soft < want:
    want = want if hard == resource.RLIM_INFINITY else min(want, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(n + 16)
port = listener.getsockname()[1]
clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
accepted = [listener.accept()[0] for _ in range(n)]
print("ready", flush=True)
sys.stdin.read()
"""


def netns_name(i: int) -> str:
    return f"nmbench-{i}"


def delete_namespaces() -> None:
    existing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    names = {line.split()[0] for line in existing.splitlines() if line.strip()}
    for i in range(NAMESPACES):
        if netns_name(i) in names:
            subprocess.run(["ip", "netns", "del", netns_name(i)], check=False)


def start_workers(workers: list[subprocess.Popen[str]]) -> None:
    """Fills ``workers`` as it goes, so the caller can stop those started if one fails."""
    for i in range(NAMESPACES):
        subprocess.run(["ip", "netns", "add", netns_name(i)], check=True)
        subprocess.run(["ip", "-n", netns_name(i), "link", "set", "lo", "up"], check=True)
        workers.append(
            subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    netns_name(i),
                    sys.executable,
                    "-c",
                    WORKER,
                    str(CONNECTIONS_PER_NAMESPACE),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    for i, worker in enumerate(workers):
        assert worker.stdout is not None
        if worker.stdout.readline().strip() != "ready":
            raise RuntimeError(f"worker in {netns_name(i)} did not start (exit {worker.poll()})")


def stop_workers(workers: list[subprocess.Popen[str]]) -> None:
    for worker in workers:
        worker.kill()
    for worker in workers:
        worker.wait()


def run_ss() -> int:
    """The baseline, once: ss in every namespace in turn. Returns ESTABLISHED sockets listed."""
    established = 0
    for i in range(NAMESPACES):
        out = subprocess.run(
            ["ip", "netns", "exec", netns_name(i), "ss", "-tanH"], capture_output=True, text=True, check=True
        ).stdout
        established += sum(1 for line in out.splitlines() if line.startswith("ESTAB"))
    return established


def measure() -> None:
    scanner = SocketScanner(Path("/proc"))
    # Warm-up, and the sanity checks: both sides must see every socket.
    result = scanner.scan(time.time())
    ss_established = run_ss()
    print(
        f"ours: {result.namespaces} namespaces, {result.processes} processes, "
        f"{result.established_sockets} ESTABLISHED sockets, {len(result.observations)} connections, "
        f"{result.parse_errors} parse errors; ss: {ss_established} ESTABLISHED sockets"
    )
    if result.established_sockets < SOCKETS or ss_established < SOCKETS:
        raise SystemExit(f"expected >= {SOCKETS} ESTABLISHED sockets on both sides")

    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(REPETITIONS):
        start = time.perf_counter()
        scanner.scan(time.time())
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        run_ss()
        theirs.append(time.perf_counter() - start)
    print("ours ms:", " ".join(f"{t * 1000:.0f}" for t in ours))
    print("ss ms:  ", " ".join(f"{t * 1000:.0f}" for t in theirs))
    ours_ms = statistics.median(ours) * 1000
    ss_ms = statistics.median(theirs) * 1000
    print(
        f"socket_scan: {ours_ms / ss_ms:.2f}x the time of ss ({ours_ms:.0f} ms vs {ss_ms:.0f} ms "
        f"for {SOCKETS:,} sockets in {NAMESPACES} namespaces)"
    )


def main() -> int:
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below
    workers: list[subprocess.Popen[str]] = []
    delete_namespaces()  # left over from a run that was killed before its clean-up
    try:
        setup = time.perf_counter()
        start_workers(workers)
        took = time.perf_counter() - setup
        print(f"set up {NAMESPACES} namespaces and {SOCKETS:,} sockets in {took:.1f} s")
        measure()
    finally:
        stop_workers(workers)
        delete_namespaces()
    return 0


if __name__ == "__main__":
    sys.exit(main())
