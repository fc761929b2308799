"""The SQLite store's snapshot rows (:mod:`cloud_functions.store.snapshots` says what is kept).

One row per (cluster number, name) in ``snapshots`` (:data:`SNAPSHOTS_TABLE`, created by
:mod:`cloud_functions.store.sqliteschema`): the record's fields and the compressed document.
The functions run on the store's connection, writes inside its write transaction
(:class:`~cloud_functions.store.sqlite.SqliteGraphStore` holds the lock and the transaction).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from cloud_functions.store.snapshots import SnapshotRecord, packed, pruned, unpacked

SNAPSHOTS_TABLE = """
CREATE TABLE snapshots (
    cluster INTEGER NOT NULL REFERENCES clusters(num), name TEXT NOT NULL, taken_at REAL NOT NULL,
    auto INTEGER NOT NULL, edges INTEGER NOT NULL, received_at REAL NOT NULL, document BLOB NOT NULL,
    PRIMARY KEY (cluster, name)) WITHOUT ROWID
"""
_RECORD = "SELECT name, taken_at, auto, edges, received_at FROM snapshots WHERE cluster = ?"


def _record(row: tuple[Any, ...]) -> SnapshotRecord:
    name, taken_at, auto, edges, received_at = row
    return SnapshotRecord(str(name), float(taken_at), bool(auto), int(edges), float(received_at))


def put(
    db: sqlite3.Connection, cluster: int, record: SnapshotRecord, document: bytes, keep: int
) -> list[str]:
    """Keep the snapshot (replacing one of its name), prune beyond ``keep``; the names pruned."""
    db.execute(
        "INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            cluster,
            record.name,
            record.taken_at,
            record.auto,
            record.edges,
            record.received_at,
            packed(document),
        ),
    )
    gone = pruned(records(db, cluster), keep)
    db.executemany("DELETE FROM snapshots WHERE cluster = ? AND name = ?", [(cluster, name) for name in gone])
    return gone


def records(db: sqlite3.Connection, cluster: int) -> list[SnapshotRecord]:
    """The cluster's records, in no particular order."""
    return [_record(row) for row in db.execute(_RECORD, (cluster,))]


def document(db: sqlite3.Connection, cluster: int, name: str) -> tuple[SnapshotRecord, bytes] | None:
    row = db.execute(
        "SELECT name, taken_at, auto, edges, received_at, document FROM snapshots"
        " WHERE cluster = ? AND name = ?",
        (cluster, name),
    ).fetchone()
    return None if row is None else (_record(row[:5]), unpacked(bytes(row[5])))
