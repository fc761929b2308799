"""Benchmark: end-to-end ``reportCaptureResults`` ingest over HTTP, per CPU-second of the mapper,
against resolution alone.

    .venv/bin/python bench/bench_ingest.py [--batches 20] [--batch-size 10000] [--senders 8]

A synthetic cluster (100 client pods, 50 Services) is built the same way in two places:

* over HTTP: the real API app (``agent.mapper.api.create_app``) under uvicorn in a child process,
  with the real resolver and the real SQLite edge store in a temp dir; this process POSTs
  ``--batches`` bodies of ``--batch-size`` DNS destinations each (the sniffer's document, bodies
  encoded before the clock starts), from ``--senders`` concurrent clients as several nodes would,
  and the clock stops when every report is acknowledged (acknowledged means committed to the
  store). A "mapper busy" answer is retried, as the sniffer does. The figure is observations per
  CPU-second of the server process (its utime + stime from ``/proc``), so the load generator
  sharing the machine does not count; per wall second is printed beside it.
* resolution alone (the baseline, measured in the same run): the same observations, as
  ``DnsAnswer`` objects, through ``Resolver.resolve`` in this process, nothing stored; and, for
  reference, resolved and recorded batch by batch straight into a fresh store.

So the ratio is what everything else costs on top of resolution: HTTP, JSON, decoding,
conversion, the queue, coalescing and storage. The last lines printed are
``resolver: <M>k obs/s on the same observations`` and
``ingest: <N>k observations/s over HTTP per mapper CPU-second (<ratio>x the resolver)``; goal >= 0.8x.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import requests  # noqa: E402
from procfigures import cpu_seconds  # noqa: E402 - bench/: run as `python bench/<file>.py`

from agent.mapper import gcpolicy  # noqa: E402 - needs the repo on sys.path first
from agent.mapper.cluster import ClusterState  # noqa: E402
from agent.mapper.resolver import Resolver  # noqa: E402
from agent.mapper.store import EdgeStore  # noqa: E402
from agent.model import DnsAnswer  # noqa: E402

CLIENTS, SERVICES = 100, 50
T0 = datetime(2024, 6, 1, tzinfo=UTC).timestamp()
CAPTURE = (
    "mutation reportCaptureResults($results: CaptureResults!) { reportCaptureResults(results: $results) }"
)
TOKEN = "bench-token"


def cluster() -> ClusterState:
    state, at = ClusterState(), T0 - 86400
    created = "2024-05-01T00:00:00Z"
    for i in range(CLIENTS):
        state.apply(
            "ADDED",
            "Pod",
            {
                "metadata": {
                    "namespace": "bench",
                    "name": f"client-{i}",
                    "uid": f"c{i}",
                    "labels": {"app": f"app-{i % SERVICES}"},
                    "creationTimestamp": created,
                    "ownerReferences": [
                        {
                            "kind": "StatefulSet",
                            "name": f"app-{i % SERVICES}",
                            "uid": f"s{i % SERVICES}",
                            "controller": True,
                        }
                    ],
                },
                "spec": {"nodeName": "node-1"},
                "status": {
                    "podIP": f"10.1.{i // 250}.{i % 250 + 1}",
                    "hostIP": "192.168.0.1",
                    "startTime": created,
                    "phase": "Running",
                },
            },
            at,
        )
    for s in range(SERVICES):
        state.apply(
            "ADDED",
            "Service",
            {
                "metadata": {
                    "namespace": "bench",
                    "name": f"svc-{s}",
                    "uid": f"svc{s}",
                    "creationTimestamp": created,
                },
                "spec": {"clusterIP": f"10.96.0.{s + 1}", "selector": {"app": f"app-{s}"}},
            },
            at,
        )
    return state


def destination(i: int) -> tuple[str, str]:
    """(name, IP) of the i-th destination: half cluster Services, half Internet names."""
    if i % 2:
        s = i % SERVICES
        return f"svc-{s}.bench.svc.cluster.local", f"10.96.0.{s + 1}"
    return f"host-{i}.example.com", f"203.0.{(i // 250) % 250}.{i % 250 + 1}"


def batch(number: int, size: int) -> list[tuple[str, str, str, float]]:
    """``size`` distinct (source IP, name, IP, time) DNS sightings."""
    per_client = size // CLIENTS
    seen = T0 + number
    out = []
    for c in range(CLIENTS):
        src = f"10.1.{c // 250}.{c % 250 + 1}"
        for d in range(per_client):
            name, ip = destination(c * per_client + d)
            out.append((src, name, ip, seen))
    return out


def body(entries: list[tuple[str, str, str, float]]) -> bytes:
    stamp = datetime.fromtimestamp(entries[0][3], tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    by_source: dict[str, list[dict[str, Any]]] = {}
    for src, name, ip, _ in entries:
        by_source.setdefault(src, []).append(
            {"destination": name, "destinationIP": ip, "TTL": 30, "lastSeen": stamp}
        )
    results = [{"srcIp": s, "srcHostname": "", "destinations": d} for s, d in by_source.items()]
    return json.dumps({"query": CAPTURE, "variables": {"results": {"results": results}}}).encode()


# --------------------------------------------------------------------------- the server (child)


def serve(data_dir: Path, port_file: Path) -> None:
    import uvicorn

    from agent.mapper.api import create_app
    from agent.mapper.settings import ApiSettings

    state = cluster()
    gcpolicy.settle()  # as the mapper does once its cluster state is listed
    store = EdgeStore(data_dir / "edges.db")
    settings = ApiSettings(token=TOKEN, max_body_bytes=64 << 20)
    app = create_app(settings, store, Resolver(state, "cluster.local"), state)
    from agent.httpdeadline import read_deadline_protocol

    # served as agent.mapper.__main__ serves it: httptools under the read deadline, on uvloop
    http = read_deadline_protocol(30.0, "httptools")
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", http=http, loop="uvloop")
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    port_file.write_text(str(server.servers[0].sockets[0].getsockname()[1]))
    sys.stdin.read()  # until the parent closes our stdin
    server.should_exit = True


# --------------------------------------------------------------------------- the two paths


def over_http(bodies: list[bytes], senders: int, tmp: Path) -> tuple[float, float]:
    """(wall seconds, mapper CPU seconds) to have every body acknowledged."""
    port_file = tmp / "port"
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(tmp / "http"), str(port_file)], stdin=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            if child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port_file.read_text()}"
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        pending = list(reversed(bodies))
        lock = threading.Lock()
        busy = [0]

        def send() -> None:
            with requests.Session() as session:
                while True:
                    with lock:
                        if not pending:
                            return
                        data = pending.pop()
                    while True:
                        reply = session.post(f"{base}/query", data=data, headers=headers, timeout=120)
                        reply.raise_for_status()
                        if "errors" not in reply.json():
                            break
                        busy[0] += 1  # "mapper busy, retry"
                        time.sleep(0.05)

        cpu, started = cpu_seconds(child.pid), time.perf_counter()
        threads = [threading.Thread(target=send) for _ in range(senders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed, cpu = time.perf_counter() - started, cpu_seconds(child.pid) - cpu
        if busy[0]:
            print(f"  (retried {busy[0]} busy answers)")
        return elapsed, cpu
    finally:
        child.stdin.close()  # type: ignore[union-attr]
        child.wait(30)


def observations_of(batches: list[list[tuple[str, str, str, float]]]) -> list[list[DnsAnswer]]:
    return [
        [DnsAnswer(src, 0, "", name, (ip,), seen, (), 30) for src, name, ip, seen in entries]
        for entries in batches
    ]


def resolution_only(batches: list[list[tuple[str, str, str, float]]]) -> float:
    """CPU seconds to resolve every observation (nothing stored): the rate the API is held to."""
    resolver = Resolver(cluster(), "cluster.local")
    observations = observations_of(batches)
    gcpolicy.settle()  # the same process settings as the server's
    started = time.process_time()
    for obs in observations:
        for o in obs:
            resolver.resolve(o)
    return time.process_time() - started


def in_process(batches: list[list[tuple[str, str, str, float]]], tmp: Path) -> float:
    state = cluster()
    resolver = Resolver(state, "cluster.local")
    observations = observations_of(batches)
    with EdgeStore(tmp / "inproc" / "edges.db") as store:
        started = time.perf_counter()
        for obs in observations:
            store.record([edge for o in obs for edge in resolver.resolve(o)])
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--serve", nargs=2, metavar=("DATA_DIR", "PORT_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), Path(args.serve[1]))
        return
    batches = [batch(n, args.batch_size) for n in range(args.batches)]
    total = sum(len(b) for b in batches)
    bodies = [body(b) for b in batches]
    print(
        f"{args.batches} batches of {args.batch_size} DNS sightings ({total} observations), "
        f"{sum(map(len, bodies)) / len(bodies) / 1e6:.1f} MB per body, {args.senders} senders"
    )
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        resolving = resolution_only(batches)
        baseline = in_process(batches, Path(tmp))
        http, cpu = over_http(bodies, args.senders, Path(tmp))
    resolver_rate, http_rate = total / resolving, total / cpu
    print(f"in process (resolve + record each batch): {total / baseline / 1000:.0f}k observations/s")
    print(f"over HTTP: {http:.2f} s wall ({total / http / 1000:.0f}k observations/s), {cpu:.2f} s mapper CPU")
    print(f"resolver: {resolver_rate / 1000:.0f}k obs/s on the same observations (resolution alone)")
    ratio = http_rate / resolver_rate
    print(
        f"ingest: {http_rate / 1000:.0f}k observations/s over HTTP per mapper CPU-second"
        f" ({ratio:.2f}x the resolver; goal >= 0.8x)"
    )


if __name__ == "__main__":
    main()
