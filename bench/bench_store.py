"""The mapper's edge store: EdgeStore.record against a naive baseline, on the same updates.

100,000 edge updates over ~5,000 distinct keys, shaped like the resolver's output (pod→pod over
TCP/DNS, some with HTTP paths, Kafka topics, Internet and AWS targets), recorded in batches of
1,000 as the mapper's report workers do. The baseline, measured in the same run on its own file
with the same schema, pragmas (WAL, synchronous=NORMAL) and merge code, commits one transaction
per edge: SELECT the row, merge, INSERT-or-UPDATE, COMMIT. Both stores must end up identical.
Then the full read, ``edges()`` of every edge: cold (a store opened anew decodes every row) and
warm (rows unchanged since the last read are not decoded again). Last line:
``store: <ratio>x naive (<N>k updates/s)``, N being EdgeStore's rate.
"""

from __future__ import annotations

import gc
import random
import sqlite3
import tempfile
import time
from pathlib import Path

from agent import wire
from agent.mapper.store import EdgeStore
from agent.model import (
    AwsTarget,
    Edge,
    HttpResource,
    InternetTarget,
    KafkaTopic,
    Method,
    WorkloadIdentity,
    merge_edges,
)

UPDATES = 100_000
KEYS = 5_000
BATCH = 1_000
T0 = 1_780_000_000.0


def workload() -> list[Edge]:
    rng = random.Random(5)
    namespaces = [f"ns{i}" for i in range(10)]
    pods = [WorkloadIdentity(rng.choice(namespaces), f"svc{i}", "Deployment") for i in range(300)]
    keys: list[tuple[WorkloadIdentity, WorkloadIdentity | InternetTarget | AwsTarget, str]] = []
    while len(keys) < KEYS:
        client, roll = rng.choice(pods), rng.random()
        if roll < 0.75:
            keys.append((client, rng.choice(pods), "pod"))
        elif roll < 0.9:
            keys.append((client, InternetTarget(f"api{rng.randrange(200)}.example.com", (), 443), "internet"))
        else:
            keys.append((client, AwsTarget(f"arn:aws:s3:::bucket{rng.randrange(100)}"), "aws"))
    edges = []
    for i in range(UPDATES):
        client, target, kind = keys[rng.randrange(KEYS)]
        at = T0 + i * 0.01
        http: tuple[HttpResource, ...] = ()
        kafka: tuple[KafkaTopic, ...] = ()
        aws: tuple[str, ...] = ()
        methods = frozenset({rng.choice([Method.TCP, Method.DNS, Method.SOCKET_SCAN])})
        if kind == "aws":
            methods, aws = frozenset({Method.AWS}), (rng.choice(["s3:GetObject", "s3:PutObject"]),)
        elif rng.random() < 0.1:
            methods = frozenset({Method.ISTIO})
            http = (HttpResource(f"/api/v{rng.randrange(3)}", (rng.choice(["GET", "POST"]),)),)
        elif rng.random() < 0.05:
            methods = frozenset({Method.KAFKA})
            kafka = (KafkaTopic(f"topic{rng.randrange(5)}", (rng.choice(["consume", "produce"]),)),)
        service = target.name if isinstance(target, WorkloadIdentity) and rng.random() < 0.5 else ""
        edges.append(Edge(client, target, at, at, methods, 1, http, kafka, aws, service))
    return edges


def naive(path: Path, edges: list[Edge]) -> None:
    """One transaction per edge: read the row, merge, INSERT-or-UPDATE it, commit."""
    EdgeStore(path).close()  # the same schema
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    for seq, edge in enumerate(edges, start=1):
        key = wire.key_for(edge.client, edge.target).decode()
        db.execute("BEGIN IMMEDIATE")
        row = db.execute("SELECT doc FROM edges WHERE key = ?", (key,)).fetchone()
        merged = edge if row is None else merge_edges(wire.unpack_edge(row[0]), edge, cumulative=False)
        row = (key, edge.client.namespace, merged.last_seen, wire.pack_edge(merged), seq)
        db.execute("INSERT OR REPLACE INTO edges VALUES (?, ?, ?, ?, ?)", row)  # the table's column order
        db.execute("COMMIT")
    db.close()


def batched(path: Path, edges: list[Edge]) -> None:
    with EdgeStore(path) as store:
        for i in range(0, len(edges), BATCH):
            store.record(edges[i : i + BATCH])


def main() -> None:
    edges = workload()
    with tempfile.TemporaryDirectory() as tmp:
        timings = {}
        for name, run in (("naive", naive), ("store", batched)):
            path = Path(tmp) / f"{name}.db"
            started = time.perf_counter()
            run(path, edges)
            timings[name] = time.perf_counter() - started
        with EdgeStore(Path(tmp) / "naive.db") as a, EdgeStore(Path(tmp) / "store.db") as b:
            got = b.edges()
            assert got == a.edges(), "the naive and batched stores differ"
            assert sum(e.count for e in got) == UPDATES
            keys = len(got)
            # As the mapper does once its cluster state is synced (agent/mapper/__main__.py), take
            # what lives on (here: the bench's own 100,000 input edges, which a mapper never holds)
            # out of the collector's reach, so full collections do not re-walk it on every read.
            del edges, got
            gc.collect()
            gc.freeze()
            cold = []  # the first read of a store opened anew: every row decoded
            for _ in range(5):
                with EdgeStore(Path(tmp) / "store.db") as fresh:
                    started = time.perf_counter()
                    fresh.edges()
                    cold.append(time.perf_counter() - started)
            started = time.perf_counter()
            reads = 0
            while time.perf_counter() - started < 1.0:  # rows decoded before are reused
                b.edges()
                reads += 1
            read_rate = reads / (time.perf_counter() - started)
            cold_rate = 1 / min(cold)
    naive_rate, store_rate = UPDATES / timings["naive"], UPDATES / timings["store"]
    print(f"{UPDATES} updates over {keys} keys, batches of {BATCH}")
    print(f"naive (1 transaction per edge): {timings['naive']:.2f}s, {naive_rate / 1000:.1f}k updates/s")
    print(f"EdgeStore.record: {timings['store']:.2f}s, {store_rate / 1000:.1f}k updates/s")
    print(
        f"edges() of all {keys} edges: cold {1000 / cold_rate:.1f} ms"
        f" ({keys * cold_rate / 1000:.0f}k edges/s),"
        f" warm {1000 / read_rate:.1f} ms ({keys * read_rate / 1000:.0f}k edges/s); goal >= 250k edges/s"
    )
    print(f"store: {store_rate / naive_rate:.1f}x naive ({store_rate / 1000:.0f}k updates/s)")


if __name__ == "__main__":
    main()
