"""The SQLite store's in-memory index of edge keys: (cluster number, 16-byte key) → row id.

Why in memory: a UNIQUE index on random 16-byte keys made each 500-edge commit rewrite hundreds
of scattered index pages (and each checkpoint copy them back), while the rows themselves are
appended. With the keys here, a new edge is a plain append: SQLite's time per ingested edge fell
from ~29 to ~11 µs (bench/bench_cloud_ingest.py). (Since schema version 7 it also adds an entry to
each index by workload, which paged reads need: those land near their workload's, not at random.)
The cost is memory, ~120 bytes per edge, which suits the SQLite store's use (one machine, up to
about a million edges); DynamoDB is for more.

Correctness rests on three rules, kept by :class:`~cloud_functions.store.sqlite.SqliteGraphStore`:
it is read and changed only inside a write transaction (``BEGIN IMMEDIATE``, so no one else
writes meanwhile); it is dropped whenever another connection has committed since it was built
(``PRAGMA data_version``); and changes are applied only after their transaction committed.
"""

from __future__ import annotations

import sqlite3


class KeyIndex:
    """Row ids by key, per cluster, loaded on first use; ids are assigned here, never by SQLite."""

    def __init__(self) -> None:
        self._clusters: dict[int, dict[bytes, int]] = {}
        self._next_id: int | None = None
        self._version: int | None = None
        self.loads = 0
        """How many times a cluster's keys were read from the table (tests, diagnostics)."""

    def check(self, db: sqlite3.Connection) -> None:
        """Drop everything if another connection committed since the last check (call it inside
        each write transaction, before :meth:`keys`)."""
        version = int(db.execute("PRAGMA data_version").fetchone()[0])
        if version != self._version:
            self._clusters.clear()
            self._next_id = None
            self._version = version

    def keys(self, db: sqlite3.Connection, cluster: int) -> dict[bytes, int]:
        """The cluster's keys and their row ids (read-only for callers: change via :meth:`add`)."""
        found = self._clusters.get(cluster)
        if found is None:
            found = dict(db.execute("SELECT key, id FROM edges WHERE cluster = ?", (cluster,)).fetchall())
            self._clusters[cluster] = found
            self.loads += 1
        return found

    def next_id(self, db: sqlite3.Connection) -> int:
        """The first free row id (ids only grow: deleted rows' ids are never reused)."""
        if self._next_id is None:
            self._next_id = int(db.execute("SELECT coalesce(max(id), 0) + 1 FROM edges").fetchone()[0])
        return self._next_id

    def add(self, cluster: int, added: list[tuple[bytes, int]]) -> None:
        """Record rows inserted by a transaction that has committed."""
        keys = self._clusters.get(cluster)
        if keys is None:
            return  # not loaded (or dropped meanwhile): it will be read from the table
        keys.update(added)
        if added:
            self._next_id = max(self._next_id or 0, added[-1][1] + 1)
