"""Regenerate ``store_v3.db``: a cloud SQLite store written by the code before the owner role.

    PYTHONPATH=/path/to/checkout-of-30a1899 .venv/bin/python tests/data/cloud/make_v3_store.py

It must run against the old code (commit 30a1899, schema version 3, whose tenant tokens were all
``read`` and administered their tenant): it refuses to write the file with any other version.
Through that code's own store API it writes the platform tenant and its admin token, tenant
``t_fixture00000001`` with its first (``read``) token, a cluster with its ingest token and a
heartbeat, two edges in one batch, and one telemetry payload; then it takes the file out of WAL
mode. Tokens are fixed (below), so ``tests/cloud/test_cloud_store_migration.py``, which opens a
copy of the file with the current code, can authenticate with them; change them here and there
together.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

from agent.model import Edge, Method, WorkloadIdentity
from cloud_functions.auth import PLATFORM_TENANT, hash_token
from cloud_functions.store import sqliteschema
from cloud_functions.store.base import TokenRecord
from cloud_functions.store.sqlite import SqliteGraphStore

HERE = Path(__file__).resolve().parent
OUT = HERE / "store_v3.db"
T0 = 1764296106.0
TENANT, CLUSTER = "t_fixture00000001", "c_fixture00000001"
ADMIN_TOKEN = "nm_" + "ad" * 32
READ_TOKEN = "nm_" + "7e" * 32
INGEST_TOKEN = "nm_" + "16" * 32


def main() -> int:
    if sqliteschema.SCHEMA_VERSION != 3:
        print(f"run against the code of schema version 3, not {sqliteschema.SCHEMA_VERSION}", file=sys.stderr)
        return 1
    OUT.unlink(missing_ok=True)
    store = SqliteGraphStore(OUT)
    try:
        store.create_tenant(PLATFORM_TENANT, "platform", T0)
        store.put_token(
            TokenRecord(hash_token(ADMIN_TOKEN), PLATFORM_TENANT, "admin", "k_admin0000000001", T0)
        )
        store.create_tenant(TENANT, "fixture", T0)
        store.put_token(TokenRecord(hash_token(READ_TOKEN), TENANT, "read", "k_read00000000001", T0))
        store.add_cluster(TENANT, CLUSTER, "prod", T0)
        ingest = TokenRecord(
            hash_token(INGEST_TOKEN), TENANT, "ingest", "k_ingest000000001", T0, cluster_id=CLUSTER
        )
        store.put_token(ingest)
        edges = [
            Edge(
                WorkloadIdentity("shop", client, "Deployment"),
                WorkloadIdentity("shop", server, "Deployment"),
                T0 - 60,
                T0,
                frozenset({Method.TCP}),
            )
            for client, server in (("frontend", "cartservice"), ("cartservice", "redis-cart"))
        ]
        store.ingest(TENANT, CLUSTER, "batch-1", edges, T0)
        store.ingest_encoded(TENANT, CLUSTER, "heartbeat-1", [], T0 + 60, seen_at=T0 + 60)
        store.record_telemetry("0" * 64, b"\x0a\x00", "application/x-protobuf", T0)
    finally:
        store.close()
    # Out of WAL mode (the header's journal mode only; the store switches it back when it opens the
    # file), so that reading the committed file leaves no -wal/-shm files beside it.
    db = sqlite3.connect(OUT)
    try:
        db.execute("PRAGMA journal_mode=DELETE")
    finally:
        db.close()
    print(
        f"wrote {OUT} ({OUT.stat().st_size} bytes) with the code in {Path(sqliteschema.__file__).parents[2]}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
