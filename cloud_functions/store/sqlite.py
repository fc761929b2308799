"""The embedded cloud store: :class:`~cloud_functions.store.base.GraphStore` in one SQLite file
(WAL), for local use and single-machine deployments.

One connection guarded by a lock (thread-safe). Its tables, their version and the migrations that
run when an older file is opened: :mod:`cloud_functions.store.sqliteschema`. Edges are ingested by
the ingest service (:mod:`cloud_functions.store.ingestion`) in one write transaction per batch
(:meth:`SqliteGraphStore.open_batch`), so a batch's marker and its edges commit together or not at
all; the rows: :mod:`cloud_functions.store.sqliteedges`. Checkpoints run on a thread of their own
(:class:`~cloud_functions.store.checkpoints.Checkpointer`), not inside a writer's COMMIT.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Unpack

from cloud_functions.store import coverage, snapshotssqlite
from cloud_functions.store.base import (
    MAX_TELEMETRY_BYTES,
    MAX_TELEMETRY_KEPT_BYTES,
    Cluster,
    Conflict,
    EdgeFilters,
    EdgePage,
    NotFound,
    PageOrder,
    PagePosition,
    StoredEdge,
    StoreError,
    Tenant,
    TokenRecord,
    check_filters,
    check_id,
    check_telemetry,
    parse_role,
    selected_edges,
)
from cloud_functions.store.checkpoints import Checkpointer
from cloud_functions.store.ingestion import ingest_batch
from cloud_functions.store.keyindex import KeyIndex
from cloud_functions.store.snapshots import SnapshotRecord, check_name, newest_first
from cloud_functions.store.sqliteedges import BATCH_SEEN, SqliteEdgeBatch, edges_query
from cloud_functions.store.sqlitepages import edges_page
from cloud_functions.store.sqliteschema import migrate, transaction
from cloud_functions.store.storedform import read_back

CHECKPOINT_EVERY = 1000  # row writes between nudges of the checkpointer (a few MB of WAL)
TELEMETRY_PRUNE_EVERY = 100  # telemetry inserts between deletions of the oldest
TELEMETRY_KEPT = MAX_TELEMETRY_KEPT_BYTES // MAX_TELEMETRY_BYTES - TELEMETRY_PRUNE_EVERY
"""Telemetry rows kept after a pruning; with the rows inserted until the next one, at most
MAX_TELEMETRY_KEPT_BYTES."""


class SqliteGraphStore:
    """The store in the file at ``path`` (created when missing)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._writes = 0
        self._checkpointed = 0  # self._writes at the last nudge of the checkpointer
        self._keys = KeyIndex()
        self._checkpointer = Checkpointer(self.path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute("PRAGMA cache_size=-65536")  # 64 MiB: a batch's index pages stay cached
            # The checkpointer thread keeps the WAL short; this is the writer's own backstop (~40 MB).
            self._db.execute("PRAGMA wal_autocheckpoint=10000")
            migrate(self._db, str(self.path))
        except (sqlite3.Error, StoreError):
            self._db.close()
            raise

    def close(self) -> None:
        self._checkpointer.close()
        with self._lock:
            self._db.close()

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """A write transaction under the lock; ``self._on_commit`` actions run after its COMMIT,
        still under the lock (so no other writer sees the key index without them)."""
        with self._lock:
            self._on_commit: list[Callable[[], None]] = []
            try:
                with transaction(self._db) as db:
                    yield db
            except sqlite3.Error as error:
                raise StoreError(f"sqlite store {self.path}: {error}") from error
            for action in self._on_commit:
                action()
            if self._writes - self._checkpointed >= CHECKPOINT_EVERY:
                self._checkpointed = self._writes
                self._checkpointer.nudge()

    def _write_one(
        self, db: sqlite3.Connection, sql: str, params: Sequence[Any], failure: StoreError
    ) -> None:
        """Run a statement that writes one row; ``failure`` when it writes none."""
        if not db.execute(sql, params).rowcount:
            raise failure
        self._writes += 1

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """The connection under the lock, for reads of several statements."""
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as error:
                raise StoreError(f"sqlite store {self.path}: {error}") from error

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as error:
                raise StoreError(f"sqlite store {self.path}: {error}") from error

    # ------------------------------------------------------------------ tenants and clusters

    def create_tenant(self, tenant_id: str, name: str, now: float) -> Tenant:
        check_id(tenant_id, "tenant id")
        with self._writing() as db:
            sql = "INSERT OR IGNORE INTO tenants VALUES (?, ?, ?)"
            self._write_one(db, sql, (tenant_id, name, now), Conflict(f"tenant {tenant_id!r} exists"))
        return Tenant(tenant_id, name, now)

    def get_tenant(self, tenant_id: str) -> Tenant | None:
        rows = self._rows("SELECT id, name, created_at FROM tenants WHERE id = ?", (tenant_id,))
        return Tenant(*rows[0]) if rows else None

    def add_cluster(self, tenant_id: str, cluster_id: str, name: str, now: float) -> Cluster:
        check_id(cluster_id, "cluster id")
        with self._writing() as db:
            self._require_tenant(db, tenant_id)
            sql = "INSERT OR IGNORE INTO clusters (tenant_id, id, name, created_at) VALUES (?, ?, ?, ?)"
            failure = Conflict(f"cluster {cluster_id!r} exists")
            self._write_one(db, sql, (tenant_id, cluster_id, name, now), failure)
        return Cluster(tenant_id, cluster_id, name, now)

    def clusters(self, tenant_id: str) -> list[Cluster]:
        sql = "SELECT tenant_id, id, name, created_at, heartbeat FROM clusters WHERE tenant_id = ?"
        return [Cluster(*row[:4], heartbeat=row[4]) for row in self._rows(sql + " ORDER BY id", (tenant_id,))]

    @staticmethod
    def _require_tenant(db: sqlite3.Connection, tenant_id: str) -> None:
        if db.execute("SELECT 1 FROM tenants WHERE id = ?", (tenant_id,)).fetchone() is None:
            raise NotFound(f"no tenant {tenant_id!r}")

    @staticmethod
    def _require_cluster(db: sqlite3.Connection, tenant_id: str, cluster_id: str) -> tuple[int, float | None]:
        """The cluster's number and heartbeat."""
        found = db.execute(
            "SELECT num, heartbeat FROM clusters WHERE tenant_id = ? AND id = ?", (tenant_id, cluster_id)
        ).fetchone()
        if found is None:
            raise NotFound(f"no cluster {cluster_id!r} in tenant {tenant_id!r}")
        return int(found[0]), found[1]

    # ------------------------------------------------------------------ tokens

    def put_token(self, record: TokenRecord) -> None:
        check_id(record.token_id, "token id")
        check_id(record.token_hash, "token hash")
        with self._writing() as db:
            self._require_tenant(db, record.tenant_id)
            if record.cluster_id:
                self._require_cluster(db, record.tenant_id, record.cluster_id)
            row = (record.token_hash, record.tenant_id, record.token_id, record.role, record.cluster_id)
            failure = Conflict(f"token {record.token_id!r} (or its hash) exists")
            sql = "INSERT OR IGNORE INTO tokens VALUES (?, ?, ?, ?, ?, ?)"
            self._write_one(db, sql, (*row, record.created_at), failure)

    def get_token(self, token_hash: str) -> TokenRecord | None:
        rows = self._rows(_SELECT_TOKENS + " WHERE token_hash = ?", (token_hash,))
        return _token(rows[0]) if rows else None

    def delete_token(self, tenant_id: str, token_id: str) -> None:
        with self._writing() as db:
            sql = "DELETE FROM tokens WHERE tenant_id = ? AND token_id = ?"
            failure = NotFound(f"no token {token_id!r} in tenant {tenant_id!r}")
            self._write_one(db, sql, (tenant_id, token_id), failure)

    def tokens(self, tenant_id: str) -> list[TokenRecord]:
        rows = self._rows(_SELECT_TOKENS + " WHERE tenant_id = ? ORDER BY token_id", (tenant_id,))
        return [_token(row) for row in rows]

    # ------------------------------------------------------------------ edges

    ingest = ingest_batch  # the one ingest service, over open_batch

    @contextmanager
    def open_batch(self, tenant_id: str, cluster_id: str, batch_id: str) -> Iterator[SqliteEdgeBatch]:
        with self._writing() as db:
            num, _ = self._require_cluster(db, tenant_id, cluster_id)
            batch = SqliteEdgeBatch(db, self._keys, num, (tenant_id, cluster_id, batch_id))
            yield batch
            self._writes += batch.writes
            self._on_commit.append(lambda: self._keys.add(num, batch.added))

    def has_batch(self, tenant_id: str, cluster_id: str, batch_id: str) -> bool:
        return bool(self._rows(BATCH_SEEN, (tenant_id, cluster_id, batch_id)))

    def edges(self, tenant_id: str, **filters: Unpack[EdgeFilters]) -> list[StoredEdge]:
        check_filters(filters)
        return selected_edges(read_back(self._rows(*edges_query(tenant_id, filters))), filters)

    def edges_page(
        self,
        tenant_id: str,
        order: PageOrder,
        *,
        after: PagePosition | None = None,
        limit: int,
        **filters: Unpack[EdgeFilters],
    ) -> EdgePage:
        return edges_page(self._rows, tenant_id, order, after=after, limit=limit, filters=filters)

    def write_count(self) -> int:
        return self._writes

    # ------------------------------------------------------------------ snapshots

    def put_snapshot(
        self, tenant_id: str, cluster_id: str, record: SnapshotRecord, document: bytes, *, keep: int
    ) -> list[str]:
        check_name(record.name)
        with self._writing() as db:
            num, _ = self._require_cluster(db, tenant_id, cluster_id)
            gone = snapshotssqlite.put(db, num, record, document, keep)
            self._writes += 1 + len(gone)
        return gone

    def snapshots(self, tenant_id: str, cluster_id: str) -> list[SnapshotRecord]:
        with self._reading() as db:
            num, _ = self._require_cluster(db, tenant_id, cluster_id)
            return newest_first(snapshotssqlite.records(db, num))

    def snapshot(self, tenant_id: str, cluster_id: str, name: str) -> tuple[SnapshotRecord, bytes] | None:
        with self._reading() as db:
            num, _ = self._require_cluster(db, tenant_id, cluster_id)
            return snapshotssqlite.document(db, num, name)

    # ------------------------------------------------------------------ coverage

    def put_coverage(self, tenant_id: str, cluster_id: str, received_at: float, document: bytes) -> None:
        with self._writing() as db:
            num, _ = self._require_cluster(db, tenant_id, cluster_id)
            coverage.sqlite_put(db, num, received_at, document)
            self._writes += 1

    def coverage(self, tenant_id: str, cluster_id: str) -> tuple[float, bytes] | None:
        with self._reading() as db:
            num, _ = self._require_cluster(db, tenant_id, cluster_id)
            return coverage.sqlite_get(db, num)

    # ------------------------------------------------------------------ telemetry

    def record_telemetry(self, cluster_hash: str, body: bytes, content_type: str, now: float) -> None:
        check_telemetry(body)
        with self._writing() as db:
            row = db.execute(
                "INSERT INTO telemetry (cluster_hash, content_type, received_at, body) VALUES (?, ?, ?, ?)",
                (cluster_hash, content_type, now, body),
            )
            if row.lastrowid is not None and row.lastrowid % TELEMETRY_PRUNE_EVERY == 0:
                db.execute("DELETE FROM telemetry WHERE id <= ?", (row.lastrowid - TELEMETRY_KEPT,))
            self._writes += 1

    def telemetry(self, limit: int = 100) -> list[tuple[str, float, bytes]]:
        sql = "SELECT cluster_hash, received_at, body FROM telemetry ORDER BY received_at DESC, id DESC"
        return [(h, t, bytes(b)) for h, t, b in self._rows(sql + " LIMIT ?", (limit,))]


_SELECT_TOKENS = "SELECT token_hash, tenant_id, token_id, role, cluster_id, created_at FROM tokens"


def _token(row: tuple[Any, ...]) -> TokenRecord:
    token_hash, tenant_id, token_id, role, cluster_id, created_at = row
    return TokenRecord(token_hash, tenant_id, parse_role(role), token_id, created_at, cluster_id=cluster_id)
