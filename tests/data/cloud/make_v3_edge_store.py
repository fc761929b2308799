"""Regenerate ``edges_v3.db``: a cloud SQLite store whose edges were written before the edge codec.

    PYTHONPATH=/path/to/checkout-of-30a1899 .venv/bin/python tests/data/cloud/make_v3_edge_store.py

It must run against the old code (commit 30a1899, schema version 3: edge texts in the old JSON
export form, keys a SHA-256 of another JSON); it refuses to write the file with any other version.
Through that code's own store API it writes tenant ``t1`` with clusters ``c1`` and ``c2``, the
edges of :data:`EDGES` (every target kind, HTTP, Kafka and AWS details, live and quiet edges), and
a heartbeat for ``c1``. ``tests/cloud/test_cloud_edge_migration.py`` imports this module for
:data:`EDGES`, :data:`HEARTBEAT` and the ids (nothing here but ``main`` imports the old code), and
opens a copy of the file with the current code.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from agent.model import (
    AwsTarget,
    Edge,
    HttpResource,
    InternetTarget,
    KafkaTopic,
    Method,
    WorkloadIdentity,
)

HERE = Path(__file__).resolve().parent
OUT = HERE / "edges_v3.db"
T0 = 1764296106.918878
TENANT = "t1"
HEARTBEAT = T0 + 3600.0
"""Cluster ``c1``'s heartbeat (``c2`` has none)."""


def _shop(name: str) -> WorkloadIdentity:
    return WorkloadIdentity("shop", name, "Deployment")


EDGES: tuple[tuple[str, Edge, bool], ...] = (
    # (cluster, edge, live)
    (
        "c1",
        Edge(
            _shop("frontend"),
            _shop("cart"),
            T0,
            T0 + 60,
            frozenset({Method.TCP, Method.DNS}),
            count=7,
            http=(HttpResource("/cart", ("GET", "POST")), HttpResource("/health", ("GET",))),
            target_service="cart-svc",
        ),
        True,
    ),
    (
        "c1",
        Edge(
            _shop("checkout"),
            WorkloadIdentity("data", "kafka", "StatefulSet"),
            T0 + 0.5,
            T0 + 1.000001,
            frozenset({Method.KAFKA}),
            kafka_topics=(KafkaTopic("orders", ("consume", "produce")),),
            ambiguous=True,
        ),
        False,
    ),
    (
        "c1",
        Edge(
            _shop("frontend"),
            InternetTarget("api.example.com", ("203.0.113.7", "2001:db8::1"), 443),
            T0,
            T0 + 30,
            frozenset({Method.DNS}),
        ),
        False,
    ),
    (
        "c1",
        Edge(
            WorkloadIdentity("shop", "reports", ""),
            AwsTarget("arn:aws:s3:::reports/*"),
            T0,
            T0 + 90,
            frozenset({Method.AWS}),
            aws_actions=("s3:GetObject", "s3:PutObject"),
        ),
        True,
    ),
    (
        "c2",
        Edge(_shop("frontend"), _shop("cart"), T0 + 10, T0 + 20, frozenset({Method.SOCKET_SCAN}), count=2),
        True,
    ),
)


def main() -> int:
    from cloud_functions.store import sqliteschema
    from cloud_functions.store.sqlite import SqliteGraphStore

    encode = importlib.import_module("cloud_functions.store.encoding").encode  # the old code's

    if sqliteschema.SCHEMA_VERSION != 3:
        print(f"run against the code of schema version 3, not {sqliteschema.SCHEMA_VERSION}", file=sys.stderr)
        return 1
    OUT.unlink(missing_ok=True)
    store = SqliteGraphStore(OUT)
    try:
        store.create_tenant(TENANT, "fixture", T0)
        for cluster in ("c1", "c2"):
            store.add_cluster(TENANT, cluster, cluster, T0)
        for n, (cluster, edge, live) in enumerate(EDGES):
            encoded = encode(edge)
            encoded.live = live
            store.ingest_encoded(TENANT, cluster, f"batch-{n}", [encoded], T0)
        store.ingest_encoded(TENANT, "c1", "heartbeat", [], T0, seen_at=HEARTBEAT)
    finally:
        store.close()
    print(
        f"wrote {OUT} ({OUT.stat().st_size} bytes) with the code in {Path(sqliteschema.__file__).parents[2]}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
