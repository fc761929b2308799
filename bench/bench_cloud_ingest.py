"""Cloud ingest: 100,000 edges (200 batches of 500) through the Lambda handler into SQLite.

Each batch is an API Gateway HTTP API v2 event (JSON body, ingest token), handled in process
by ``cloud_functions.handlers.CloudApp`` over ``SqliteGraphStore``: authentication, the body
decoded in one pass by the edge codec (``agent.wire``), the ingest service
(``cloud_functions.store.ingestion``: canonical documents, keys, texts, the idempotent merge), the
response. The baseline, measured in the same run, is a plain ``sqlite3`` ``executemany`` of the
same rows (already encoded: ``sqliteedges.edge_row``) into the store's own edges table and index
(``EDGES_TABLE``, ``EDGES_INDEXES``, same pragmas) in a fresh file, one transaction per batch: what
SQLite alone costs. A second pass re-sends every batch (duplicates: nothing
written) and a third re-sends the edges under new batch ids (merges that change nothing: no edge writes).

Last line: ``cloud_ingest: <N>k edges/s through the handler (<ratio>x plain insert)``
(the ratio is handler throughput / plain-insert throughput); goal >= 20k edges/s. Before it:
``writes per cluster-hour: hour 1: N (E edges), ...`` for the sandbox's steady traffic
(:func:`steady_cluster`); goal: 0 edge writes after the first hour.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")

from agent import wire  # noqa: E402
from agent.mapper.store import EdgeStore  # noqa: E402
from agent.mapper.uploader import HttpCloudClient, IngestResult, Uploader  # noqa: E402
from agent.model import Edge, Method, WorkloadIdentity  # noqa: E402
from cloud_functions.auth import hash_token, new_token  # noqa: E402
from cloud_functions.handlers import CloudApp, CloudSettings  # noqa: E402
from cloud_functions.store.base import TokenRecord  # noqa: E402
from cloud_functions.store.ingestion import coalesce  # noqa: E402
from cloud_functions.store.sqlite import SqliteGraphStore  # noqa: E402
from cloud_functions.store.sqliteedges import INSERT_EDGE, edge_row  # noqa: E402
from cloud_functions.store.sqliteschema import EDGES_INDEXES, EDGES_TABLE  # noqa: E402
from tests.support.transports import CloudTransport  # noqa: E402

BATCHES, BATCH = 200, 500
CPU: dict[str, float] = {}
"""CPU seconds of the timed parts (wall time suffers when the machine is shared)."""
T0 = 1764296106.918878


def settle() -> None:
    """Move everything alive (the bench's own inputs: 100,000 edge dicts) out of the collector's
    reach before timing. Otherwise each full collection the handler's allocations trigger walks
    those inputs, a cost a Lambda process (one batch in memory) never pays."""
    gc.collect()
    gc.freeze()


def edge_dicts(batch: int, internet_every: int = 0) -> list[dict[str, Any]]:
    """500 distinct edges per batch: 100,000 distinct client→target pairs overall (with
    ``internet_every``: every n-th edge's target is an Internet name instead)."""
    out = []
    for i in range(BATCH):
        n = batch * BATCH + i
        out.append(
            {
                "client": {"name": f"svc-{n // 250}", "namespace": f"ns-{n % 7}", "kind": "Deployment"},
                "target": {
                    "type": "workload",
                    "name": f"svc-{n % 250}",
                    "namespace": "shop",
                    "kind": "Deployment",
                },
                "methods": ["dns", "tcp"],
                "firstSeen": wire.format_time(T0 + i),
                "lastSeen": wire.format_time(T0 + i + 60),
                "count": 3,
                "http": [{"path": "/api", "methods": ["GET"]}] if i % 5 == 0 else [],
                "kafkaTopics": [],
                "awsActions": [],
                "targetService": f"svc-{n % 250}",
                "ambiguous": False,
            }
        )
        if internet_every and i % internet_every == 0:
            out[-1]["target"] = {
                "type": "internet",
                "dnsName": f"api{n}.example.com",
                "ips": ["198.51.100.10"],
            }
            out[-1]["targetService"] = ""
    return out


def event(token: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/v1/ingest",
        "rawQueryString": "",
        "headers": {"authorization": f"Bearer {token}", "content-type": "application/json"},
        "requestContext": {
            "http": {"method": "POST", "path": "/v1/ingest", "protocol": "HTTP/1.1", "sourceIp": "10.0.0.1"},
            "routeKey": "$default",
            "stage": "$default",
        },
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def through_handler(
    directory: Path, batches: list[list[dict[str, Any]]], mixed: list[list[dict[str, Any]]]
) -> tuple[float, float, float, float, int]:
    store = SqliteGraphStore(directory / "cloud.db")
    store.create_tenant("t_bench", "bench", T0)
    store.add_cluster("t_bench", "c_bench", "bench", T0)
    token = new_token()
    store.put_token(TokenRecord(hash_token(token), "t_bench", "ingest", "k_bench", T0, cluster_id="c_bench"))
    app = CloudApp(store, CloudSettings(store=f"sqlite:{directory / 'cloud.db'}"))
    events = [
        event(token, {"version": wire.FORMAT_VERSION, "batchId": f"b{n}", "anonymized": False, "edges": b})
        for n, b in enumerate(batches)
    ]

    def run(evs: list[dict[str, Any]], stored: bool) -> float:
        started = time.perf_counter()
        for ev in evs:
            response = app(ev, None)
            assert response["statusCode"] == 200, response
            assert json.loads(response["body"])["stored"] is stored, response
        return time.perf_counter() - started

    settle()
    cpu = time.process_time()
    first = run(events, True)
    CPU["handler"] = time.process_time() - cpu
    writes = store.write_count()
    duplicates = run(events, False)
    renamed = [event(token, {"batchId": f"again{n}", "edges": b}) for n, b in enumerate(batches)]
    unchanged = run(renamed, True)
    assert store.write_count() - writes == len(batches), "re-sent edges must not be rewritten"
    assert len(store.edges("t_bench")) == BATCHES * BATCH
    other = run([event(token, {"batchId": f"mixed{n}", "edges": b}) for n, b in enumerate(mixed)], True)
    store.close()
    return first, duplicates, unchanged, other, writes


def plain_insert(directory: Path, batches: list[list[dict[str, Any]]]) -> float:
    """The same rows, encoded beforehand, into the store's own edges table and settings."""
    rows, row_id = [], 0
    for batch in batches:
        records = coalesce(wire.decode_ingest(json.dumps({"batchId": "b", "edges": batch})).edges).values()
        rows.append([edge_row(row_id := row_id + 1, 1, record) for record in records])
    db = sqlite3.connect(directory / "plain.db", isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "cache_size=-65536", "wal_autocheckpoint=10000"):
        db.execute(f"PRAGMA {pragma}")
    db.execute(EDGES_TABLE.format(name="edges"))
    for index in EDGES_INDEXES:
        db.execute(index.format(name="edges"))
    settle()
    started, cpu = time.perf_counter(), time.process_time()
    for batch_rows in rows:
        db.execute("BEGIN")
        db.executemany(INSERT_EDGE, batch_rows)
        db.execute("COMMIT")
    elapsed = time.perf_counter() - started
    CPU["plain"] = time.process_time() - cpu
    db.close()
    return elapsed


class CountingClient:
    """The uploader's own HTTP client (into the Lambda handler in process, through the tests'
    :class:`CloudTransport`), counting the edge writes the cloud reports."""

    def __init__(self, app: CloudApp, token: str) -> None:
        self.client = HttpCloudClient("http://cloud.bench", token, 10.0, transport=CloudTransport(app))
        self.edge_writes = 0

    def ingest(
        self, batch_id: str, anonymized: bool, edges: list[wire.EdgeDoc], seen_at: float | None = None
    ) -> IngestResult:
        result = self.client.ingest(batch_id, anonymized, edges, seen_at)
        self.edge_writes += result.edges_written
        return result


def steady_cluster(
    directory: Path, hours: int = 3, edges: int = 30, every: float = 5.0
) -> list[tuple[int, int]]:
    """Backend writes per simulated hour of the sandbox's steady traffic (its demo: ~30 edges,
    each re-seen every few seconds), through the real EdgeStore and Uploader (defaults: granularity
    3600 s, interval 60 s) on an injected clock, into the handler and a SqliteGraphStore: (all
    writes, edge writes) per hour; the others are batch markers and the hourly heartbeat."""
    store = SqliteGraphStore(directory / "steady.db")
    store.create_tenant("t_sandbox", "sandbox", T0)
    store.add_cluster("t_sandbox", "c_sandbox", "sandbox", T0)
    token = new_token()
    store.put_token(TokenRecord(hash_token(token), "t_sandbox", "ingest", "k", T0, cluster_id="c_sandbox"))
    app = CloudApp(store, CloudSettings(store=f"sqlite:{directory / 'steady.db'}"))
    now = [T0]
    edge_store = EdgeStore(directory / "edges.db")
    client = CountingClient(app, token)
    uploader = Uploader(edge_store, client, clock=lambda: now[0])
    pairs = [
        (WorkloadIdentity("shop", f"svc-{i}", "Deployment"), f"svc-{(i * 7 + 1) % edges}")
        for i in range(edges)
    ]
    per_hour, writes, edge_writes, next_upload = [], store.write_count(), 0, T0
    for step in range(int(hours * 3600 / every)):
        now[0] = T0 + step * every
        edge_store.record(
            Edge(
                source,
                WorkloadIdentity("shop", target, "Deployment"),
                now[0],
                now[0],
                frozenset({Method.TCP}),
            )
            for source, target in pairs
        )
        if now[0] >= next_upload:
            uploader.upload_once()
            next_upload += uploader.interval
        if (step + 1) * every % 3600 == 0:
            per_hour.append((store.write_count() - writes, client.edge_writes - edge_writes))
            writes, edge_writes = store.write_count(), client.edge_writes
    edge_store.close()
    store.close()
    return per_hour


def main() -> None:
    logging.disable(logging.INFO)
    batches = [edge_dicts(n) for n in range(BATCHES)]
    mixed = [edge_dicts(n, internet_every=10) for n in range(BATCHES, BATCHES + 40)]
    total = BATCHES * BATCH
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        baseline = plain_insert(directory, batches)
        first, duplicates, unchanged, other, writes = through_handler(directory, batches, mixed)
        hourly = steady_cluster(directory)
    rate = total / first
    print(f"plain insert:          {total / baseline / 1000:8.1f}k edges/s ({baseline:.2f} s)")
    print(f"handler, new edges:    {rate / 1000:8.1f}k edges/s ({first:.2f} s, {writes} store writes)")
    print(f"handler, dup batches:  {total / duplicates / 1000:8.1f}k edges/s ({duplicates:.2f} s, 0 writes)")
    print(
        f"handler, same edges:   {total / unchanged / 1000:8.1f}k edges/s ({unchanged:.2f} s, 0 edge writes)"
    )
    print(
        f"handler, mixed:        {len(mixed) * BATCH / other / 1000:8.1f}k edges/s"
        f" ({len(mixed) * BATCH} new edges, 1 in 10 to an Internet name)"
    )
    print(
        f"CPU time: handler {CPU['handler']:.2f} s ({total / CPU['handler'] / 1000:.1f}k edges/s),"
        f" plain insert {CPU['plain']:.2f} s ({total / CPU['plain'] / 1000:.1f}k edges/s)"
    )
    print(
        "writes per cluster-hour: "
        + ", ".join(f"hour {h}: {n} ({e} edges)" for h, (n, e) in enumerate(hourly, 1))
        + " (the rest: batch markers, the hourly heartbeat)"
    )
    print(
        f"cloud_ingest: {rate / 1000:.1f}k edges/s through the handler ({baseline / first:.2f}x plain insert)"
    )


if __name__ == "__main__":
    main()
