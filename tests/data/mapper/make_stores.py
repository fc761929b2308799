"""Writes the edge-store files of older versions that tests/unit/mapper/test_mapper_store_migration.py
opens: real files, written by the code of their time.

Run with the code of commit 30a1899 (edge-store schema 3) on the path, e.g.::

    git worktree add /tmp/nm-30a1899 30a1899
    PYTHONPATH=/tmp/nm-30a1899 python tests/data/mapper/make_stores.py

``edges-v1.db`` and ``edges-v2.db`` are written as those versions' tables were laid out (the DDL
that commit still kept for its own migrations); ``edges-v3.db`` by that commit's EdgeStore itself.
The edges are :data:`EDGES` (the test holds the same list).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agent.mapper import store as store_module
from agent.mapper import storeschema
from agent.mapper.store import EdgeStore
from agent.model import AwsTarget, Edge, HttpResource, InternetTarget, KafkaTopic, Method, WorkloadIdentity

HERE = Path(__file__).parent
T0 = 1_780_000_000.0
FRONTEND = WorkloadIdentity("shop", "frontend", "Deployment")
CART = WorkloadIdentity("shop", "cartservice", "Deployment")
KAFKA = WorkloadIdentity("data", "kafka", "StatefulSet")
EDGES = [
    Edge(
        FRONTEND,
        CART,
        T0,
        T0 + 5,
        frozenset({Method.TCP, Method.DNS}),
        7,
        (HttpResource("/cart", ("GET", "POST")),),
        target_service="cartservice",
    ),
    Edge(
        CART, KAFKA, T0 + 1, T0 + 2, frozenset({Method.KAFKA}), 2, (), (KafkaTopic("orders", ("produce",)),)
    ),
    Edge(
        FRONTEND,
        InternetTarget("api.example.com", ("198.51.100.10",), 443),
        T0,
        T0 + 3.25,
        frozenset({Method.DNS}),
        1,
        ambiguous=True,
    ),
    Edge(
        CART,
        AwsTarget("arn:aws:s3:::orders"),
        T0 + 0.5,
        T0 + 0.75,
        frozenset({Method.AWS}),
        3,
        aws_actions=("s3:GetObject", "s3:PutObject"),
    ),
]


def old_tables(path: Path, version: int) -> None:
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    for statement in storeschema.VERSION_1 + (storeschema.TO_VERSION_2 if version == 2 else ()):
        db.execute(statement)
    db.execute(f"PRAGMA user_version = {version}")
    for seq, edge in enumerate(EDGES, 1):
        row = (
            store_module._key_row(edge) + store_module._Merged(edge).row() + ((seq,) if version == 2 else ())
        )
        db.execute(f"INSERT INTO edges VALUES ({', '.join('?' * len(row))})", row)
    if version == 2:  # the first edge was uploaded, the cursor is past it
        key = store_module._key_row(EDGES[0])[0]
        db.execute("INSERT INTO upload_state (key, last_seen, digest) VALUES (?, ?, 'old')", (key, T0 + 5))
        db.execute("UPDATE meta SET value = ? WHERE name = 'next_seq'", (len(EDGES) + 1,))
        db.execute("UPDATE meta SET value = 1 WHERE name = 'upload_cursor'")
    db.close()


def version_3(path: Path) -> None:
    """EDGES recorded; the first two uploaded (the first live) and the cursor past them; then an
    Internet edge uploaded live and forgotten by a reset (its mark stays, for the idle sweep)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    gone = Edge(CART, InternetTarget("gone.example.com", (), 443), T0, T0 + 9, frozenset({Method.DNS}))
    with EdgeStore(path) as store:
        store.record([gone])
        store.mark_uploaded([(gone.key, gone.last_seen, "old", True)], 1)
        store.reset()
        store.record(EDGES)
        store.mark_uploaded([(EDGES[0].key, T0 + 5, "old", True), (EDGES[1].key, T0 + 2, "old", False)], 3)
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def version_3_bad_time(path: Path) -> None:
    """Version 3 took any time: one edge last seen in year 10000 (9999-12-31T23:00-05:00, as a
    report could say), uploaded live, beside a good one."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    bad = Edge(
        FRONTEND, InternetTarget("far.example.com", (), 443), T0, 253402318800.0, frozenset({Method.DNS})
    )
    with EdgeStore(path) as store:
        store.record([bad, EDGES[0]])
        store.mark_uploaded([(bad.key, bad.last_seen, "old", True)], 2)
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


if __name__ == "__main__":
    version_3_bad_time(HERE / "edges-v3-bad-time.db")
    old_tables(HERE / "edges-v1.db", 1)
    old_tables(HERE / "edges-v2.db", 2)
    version_3(HERE / "edges-v3.db")
