"""Cloud ingest: 100,000 edges (200 batches of 500) through the Lambda handler into SQLite.

Each batch is an API Gateway HTTP API v2 event (JSON body, ingest token), handled in process
by ``cloud_functions.handlers.CloudApp`` over ``SqliteGraphStore``: authentication, request
validation (pydantic), ``edge_from_dict``, the store's idempotent merge-upsert, the response.
The baseline, measured in the same run, is a plain ``sqlite3`` ``executemany`` of the same
rows (already encoded) into a table of the same shape in a fresh file, one transaction per
batch. A second pass re-sends every batch (duplicates: nothing written) and a third re-sends
the edges under new batch ids (merges that change nothing: no edge writes).

Last line: ``cloud_ingest: <N>k edges/s through the handler (<ratio>x plain insert)``
(the ratio is handler time / plain-insert time); goal >= 20k edges/s.
"""

from __future__ import annotations

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

from agent.exports.jsonexport import rfc3339  # noqa: E402
from cloud_functions.auth import hash_token, new_token  # noqa: E402
from cloud_functions.handlers import CloudApp, CloudSettings  # noqa: E402
from cloud_functions.store.base import TokenRecord, edge_key_hash, encode_edge, filter_fields  # noqa: E402
from cloud_functions.store.sqlite import SqliteGraphStore  # noqa: E402

BATCHES, BATCH = 200, 500
CPU: dict[str, float] = {}
"""CPU seconds of the timed parts (wall time suffers when the machine is shared)."""
T0 = 1764296106.918878


def edge_dicts(batch: int) -> list[dict[str, Any]]:
    """500 distinct edges per batch: 100,000 distinct client→target pairs overall."""
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
                "firstSeen": rfc3339(T0 + i),
                "lastSeen": rfc3339(T0 + i + 60),
                "count": 3,
                "http": [{"path": "/api", "methods": ["GET"]}] if i % 5 == 0 else [],
                "kafkaTopics": [],
                "awsActions": [],
                "targetService": f"svc-{n % 250}",
                "ambiguous": False,
            }
        )
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


def through_handler(directory: Path, batches: list[list[dict[str, Any]]]) -> tuple[float, float, float, int]:
    store = SqliteGraphStore(directory / "cloud.db")
    store.create_tenant("t_bench", "bench", T0)
    store.add_cluster("t_bench", "c_bench", "bench", T0)
    token = new_token()
    store.put_token(TokenRecord(hash_token(token), "t_bench", "ingest", "k_bench", T0, cluster_id="c_bench"))
    app = CloudApp(store, CloudSettings(store=f"sqlite:{directory / 'cloud.db'}"))
    events = [
        event(token, {"batchId": f"b{n}", "anonymized": False, "edges": b}) for n, b in enumerate(batches)
    ]

    def run(evs: list[dict[str, Any]], stored: bool) -> float:
        started = time.perf_counter()
        for ev in evs:
            response = app(ev, None)
            assert response["statusCode"] == 200, response
            assert json.loads(response["body"])["stored"] is stored, response
        return time.perf_counter() - started

    cpu = time.process_time()
    first = run(events, True)
    CPU["handler"] = time.process_time() - cpu
    writes = store.write_count()
    duplicates = run(events, False)
    renamed = [event(token, {"batchId": f"again{n}", "edges": b}) for n, b in enumerate(batches)]
    unchanged = run(renamed, True)
    assert store.write_count() - writes == len(batches), "re-sent edges must not be rewritten"
    assert len(store.edges("t_bench")) == BATCHES * BATCH
    store.close()
    return first, duplicates, unchanged, writes


def plain_insert(directory: Path, batches: list[list[dict[str, Any]]]) -> float:
    from agent.exports.jsonexport import edge_from_dict

    rows = []
    for batch in batches:
        encoded = []
        for obj in batch:
            edge = edge_from_dict(obj)
            f = filter_fields(edge)
            encoded.append(
                ("t_bench", "c_bench", edge_key_hash(edge), encode_edge(edge), f["client_namespace"])
                + (f["client_name"], f["target_namespace"], f["target_name"], json.dumps(f["methods"]))
                + (f["last_seen"],)
            )
        rows.append(encoded)
    db = sqlite3.connect(directory / "plain.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE edges (tenant_id TEXT NOT NULL, cluster_id TEXT NOT NULL, key_hash TEXT NOT NULL,"
        " edge TEXT NOT NULL, client_namespace TEXT NOT NULL, client_name TEXT NOT NULL,"
        " target_namespace TEXT, target_name TEXT, methods TEXT NOT NULL, last_seen REAL NOT NULL,"
        " PRIMARY KEY (tenant_id, cluster_id, key_hash)) WITHOUT ROWID"
    )
    started, cpu = time.perf_counter(), time.process_time()
    for encoded in rows:
        db.execute("BEGIN")
        db.executemany("INSERT INTO edges VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", encoded)
        db.execute("COMMIT")
    elapsed = time.perf_counter() - started
    CPU["plain"] = time.process_time() - cpu
    db.close()
    return elapsed


def main() -> None:
    logging.disable(logging.INFO)
    batches = [edge_dicts(n) for n in range(BATCHES)]
    total = BATCHES * BATCH
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        baseline = plain_insert(directory, batches)
        first, duplicates, unchanged, writes = through_handler(directory, batches)
    rate = total / first
    print(f"plain insert:          {total / baseline / 1000:8.1f}k edges/s ({baseline:.2f} s)")
    print(f"handler, new edges:    {rate / 1000:8.1f}k edges/s ({first:.2f} s, {writes} store writes)")
    print(f"handler, dup batches:  {total / duplicates / 1000:8.1f}k edges/s ({duplicates:.2f} s, 0 writes)")
    print(
        f"handler, same edges:   {total / unchanged / 1000:8.1f}k edges/s ({unchanged:.2f} s, 0 edge writes)"
    )
    print(
        f"CPU time: handler {CPU['handler']:.2f} s ({total / CPU['handler'] / 1000:.1f}k edges/s),"
        f" plain insert {CPU['plain']:.2f} s ({total / CPU['plain'] / 1000:.1f}k edges/s)"
    )
    print(
        f"cloud_ingest: {rate / 1000:.1f}k edges/s through the handler ({first / baseline:.1f}x plain insert)"
    )


if __name__ == "__main__":
    main()
