"""The embedded cloud store: one SQLite file (WAL), for local use and single-machine deployments.

One connection guarded by a lock (thread-safe); each ingest is one transaction, so a batch's
marker and its edges commit together or not at all. The schema is versioned with
``PRAGMA user_version``; a file of a newer version is refused (the tables and the migrations:
:mod:`cloud_functions.store.sqliteschema`).

Edges are rows (``id``: appended in order) holding the edge's canonical JSON, its ``live`` flag,
its cluster number and 16-byte key hash, and a few columns for filtering (client and
workload-target namespace/name, methods, last seen). A key is unique within its cluster by the
in-memory :class:`~cloud_functions.store.keyindex.KeyIndex`, not by a UNIQUE index (whose random
pages were most of each commit's writes), so new edges are plain appends. Checkpoints run on a
thread of their own (:class:`~cloud_functions.store.checkpoints.Checkpointer`), not inside a
writer's COMMIT. A cluster's number is its ``clusters.num`` (an explicit INTEGER PRIMARY KEY, so
VACUUM keeps it); ``clusters.heartbeat`` is its latest ``seen_at``.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.model import Edge
from cloud_functions.store.base import (
    Cluster,
    Conflict,
    IngestResult,
    NotFound,
    StoredEdge,
    StoreError,
    Tenant,
    TokenRecord,
    check_id,
    check_telemetry,
    parse_role,
)
from cloud_functions.store.checkpoints import Checkpointer
from cloud_functions.store.encoding import (
    EncodedEdge,
    coalesce_encodings,
    decode_edge,
    effective,
    encode,
    merged_encoded,
    sort_stored,
)
from cloud_functions.store.keyindex import KeyIndex
from cloud_functions.store.sqliteschema import _MIGRATE_FROM_1, _MIGRATE_FROM_2, _SCHEMA, SCHEMA_VERSION

CHECKPOINT_EVERY = 1000
"""Row writes between nudges of the checkpointer (a few MB of WAL)."""
TELEMETRY_KEPT = 10_000
"""Telemetry rows kept; older ones are dropped as new ones arrive."""

_INSERT_EDGE = "INSERT INTO edges VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_UPDATE_EDGE = "UPDATE edges SET edge = ?, methods = ?, last_seen = ?, live = ? WHERE id = ?"


@functools.lru_cache(maxsize=64)
def _select_stored(count: int) -> str:
    """The stored (id, edge, live) of ``count`` row ids."""
    marks = ", ".join("?" * count)
    return f"SELECT id, edge, live FROM edges WHERE id IN ({marks})"  # noqa: S608


class SqliteGraphStore:
    """:class:`~cloud_functions.store.base.GraphStore` in a SQLite file."""

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
            self._migrate()
        except (sqlite3.Error, StoreError):
            self._db.close()
            raise

    def _migrate(self) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path} has schema version {version}, newer than {SCHEMA_VERSION}")
        if version < SCHEMA_VERSION:
            # Rebuilding tables: checked by foreign_key_check below instead, as SQLite advises.
            self._db.execute("PRAGMA foreign_keys=OFF")
            self._db.create_function("nm_unhex", 1, bytes.fromhex, deterministic=True)
            with self._transaction() as db:
                if version == 0:
                    statements: tuple[str, ...] = tuple(_SCHEMA.split(";"))
                else:
                    statements = (_MIGRATE_FROM_1 if version == 1 else ()) + _MIGRATE_FROM_2
                for statement in statements:
                    if statement.strip():
                        db.execute(statement)
                if db.execute("PRAGMA foreign_key_check").fetchone() is not None:
                    raise StoreError(f"{self.path}: migration to version {SCHEMA_VERSION} broke a reference")
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._db.execute("PRAGMA foreign_keys=ON")

    def close(self) -> None:
        self._checkpointer.close()
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (the caller holds ``_lock``, except during ``__init__``)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """A write transaction under the lock; ``self._on_commit`` actions run after its COMMIT,
        still under the lock (so no other writer sees the key index without them)."""
        with self._lock:
            self._on_commit: list[Callable[[], None]] = []
            try:
                with self._transaction() as db:
                    yield db
            except sqlite3.Error as error:
                raise StoreError(f"sqlite store {self.path}: {error}") from error
            for action in self._on_commit:
                action()
            if self._writes - self._checkpointed >= CHECKPOINT_EVERY:
                self._checkpointed = self._writes
                self._checkpointer.nudge()

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
            if (
                db.execute("INSERT OR IGNORE INTO tenants VALUES (?, ?, ?)", (tenant_id, name, now)).rowcount
                == 0
            ):
                raise Conflict(f"tenant {tenant_id!r} exists")
            self._writes += 1
        return Tenant(tenant_id, name, now)

    def get_tenant(self, tenant_id: str) -> Tenant | None:
        rows = self._rows("SELECT id, name, created_at FROM tenants WHERE id = ?", (tenant_id,))
        return Tenant(*rows[0]) if rows else None

    def add_cluster(self, tenant_id: str, cluster_id: str, name: str, now: float) -> Cluster:
        check_id(cluster_id, "cluster id")
        with self._writing() as db:
            self._require_tenant(db, tenant_id)
            inserted = db.execute(
                "INSERT OR IGNORE INTO clusters (tenant_id, id, name, created_at) VALUES (?, ?, ?, ?)",
                (tenant_id, cluster_id, name, now),
            ).rowcount
            if not inserted:
                raise Conflict(f"cluster {cluster_id!r} exists")
            self._writes += 1
        return Cluster(tenant_id, cluster_id, name, now)

    def clusters(self, tenant_id: str) -> list[Cluster]:
        sql = (
            "SELECT tenant_id, id, name, created_at, heartbeat FROM clusters WHERE tenant_id = ? ORDER BY id"
        )
        return [Cluster(*row[:4], heartbeat=row[4]) for row in self._rows(sql, (tenant_id,))]

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
            inserted = db.execute(
                "INSERT OR IGNORE INTO tokens VALUES (?, ?, ?, ?, ?, ?)",
                (
                    record.token_hash,
                    record.tenant_id,
                    record.token_id,
                    record.role,
                    record.cluster_id,
                    record.created_at,
                ),
            ).rowcount
            if not inserted:
                raise Conflict(f"token {record.token_id!r} (or its hash) exists")
            self._writes += 1

    def get_token(self, token_hash: str) -> TokenRecord | None:
        rows = self._rows(_SELECT_TOKENS + " WHERE token_hash = ?", (token_hash,))
        return _token(rows[0]) if rows else None

    def delete_token(self, tenant_id: str, token_id: str) -> None:
        with self._writing() as db:
            deleted = db.execute(
                "DELETE FROM tokens WHERE tenant_id = ? AND token_id = ?", (tenant_id, token_id)
            ).rowcount
            if not deleted:
                raise NotFound(f"no token {token_id!r} in tenant {tenant_id!r}")
            self._writes += 1

    def tokens(self, tenant_id: str) -> list[TokenRecord]:
        rows = self._rows(_SELECT_TOKENS + " WHERE tenant_id = ? ORDER BY token_id", (tenant_id,))
        return [_token(row) for row in rows]

    # ------------------------------------------------------------------ edges

    def ingest(
        self, tenant_id: str, cluster_id: str, batch_id: str, edges: Sequence[Edge], now: float
    ) -> IngestResult:
        return self.ingest_encoded(tenant_id, cluster_id, batch_id, [encode(e) for e in edges], now)

    def ingest_encoded(
        self,
        tenant_id: str,
        cluster_id: str,
        batch_id: str,
        edges: Sequence[EncodedEdge],
        now: float,
        *,
        seen_at: float | None = None,
    ) -> IngestResult:
        check_id(batch_id, "batch id")
        incoming = coalesce_encodings(edges)
        with self._writing() as db:
            num, heartbeat = self._require_cluster(db, tenant_id, cluster_id)
            if incoming or seen_at is None:
                marked = db.execute(
                    "INSERT OR IGNORE INTO batches VALUES (?, ?, ?, ?)",
                    (tenant_id, cluster_id, batch_id, now),
                ).rowcount
                if not marked:
                    return IngestResult(stored=False, edges_written=0)
                self._writes += 1
            if seen_at is not None and (heartbeat is None or seen_at > heartbeat):
                db.execute("UPDATE clusters SET heartbeat = ? WHERE num = ?", (seen_at, num))
                self._writes += 1
            if not incoming:
                return IngestResult(stored=True, edges_written=0)
            updated, added = self._write_edges(db, num, incoming)
            self._writes += updated + len(added)
            self._on_commit.append(lambda: self._keys.add(num, added))
        return IngestResult(stored=True, edges_written=updated + len(added))

    def _write_edges(
        self, db: sqlite3.Connection, num: int, incoming: dict[str, EncodedEdge]
    ) -> tuple[int, list[tuple[bytes, int]]]:
        """Append the new edges, merge the known ones: (rows updated, [(key, id) appended])."""
        self._keys.check(db)
        known = self._keys.keys(db, num)
        next_id = self._keys.next_id(db)
        rows, added, existing = [], [], []
        for hex_key, encoded in incoming.items():
            key = bytes.fromhex(hex_key)
            found = known.get(key)
            if found is None:
                rows.append((next_id, num, key, encoded.text, *encoded.row, encoded.live))
                added.append((key, next_id))
                next_id += 1
            else:
                existing.append((found, encoded))
        db.executemany(_INSERT_EDGE, rows)
        updates = []
        if existing:
            sql = _select_stored(len(existing))
            stored = {i: (text, live) for i, text, live in db.execute(sql, [i for i, _ in existing])}
            for row_id, encoded in existing:
                text, live = stored[row_id]
                merged = merged_encoded(text, encoded, bool(live))
                if merged is not None:
                    updates.append((merged.text, merged.row[4], merged.row[5], merged.live, row_id))
            db.executemany(_UPDATE_EDGE, updates)
        return len(updates), added

    def has_batch(self, tenant_id: str, cluster_id: str, batch_id: str) -> bool:
        sql = "SELECT 1 FROM batches WHERE tenant_id = ? AND cluster_id = ? AND batch_id = ?"
        return bool(self._rows(sql, (tenant_id, cluster_id, batch_id)))

    def edges(
        self,
        tenant_id: str,
        *,
        cluster_ids: Iterable[str] | None = None,
        namespace: str | None = None,
        workload: str | None = None,
        method: str | None = None,
        since: float | None = None,
    ) -> list[StoredEdge]:
        where, params = ["c.tenant_id = ?"], list[Any]([tenant_id])
        if cluster_ids is not None:
            where.append("c.id IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(list(cluster_ids)))
        if namespace is not None or workload is not None:
            sides = []
            for side in ("client", "target"):
                conditions = [
                    f"{side}_{col} = ?"
                    for col, v in (("namespace", namespace), ("name", workload))
                    if v is not None
                ]
                sides.append("(" + " AND ".join(conditions) + ")")
                params.extend(v for v in (namespace, workload) if v is not None)
            where.append("(" + " OR ".join(sides) + ")")
        if method is not None:
            where.append("EXISTS (SELECT 1 FROM json_each(methods) WHERE value = ?)")
            params.append(method)
        if since is not None:
            where.append("(last_seen >= ? OR (live AND c.heartbeat >= ?))")
            params.extend((since, since))
        sql = (
            "SELECT c.id, edge, live, c.heartbeat FROM edges JOIN clusters c ON c.num = edges.cluster WHERE "
        )
        rows = self._rows(sql + " AND ".join(where), params)
        return sort_stored(
            StoredEdge(cluster, effective(decode_edge(text), bool(live), heartbeat))
            for cluster, text, live, heartbeat in rows
        )

    def write_count(self) -> int:
        return self._writes

    # ------------------------------------------------------------------ telemetry

    def record_telemetry(self, cluster_hash: str, body: bytes, content_type: str, now: float) -> None:
        check_telemetry(body)
        with self._writing() as db:
            row = db.execute(
                "INSERT INTO telemetry (cluster_hash, content_type, received_at, body) VALUES (?, ?, ?, ?)",
                (cluster_hash, content_type, now, body),
            )
            if row.lastrowid is not None and row.lastrowid % 100 == 0:
                db.execute("DELETE FROM telemetry WHERE id <= ?", (row.lastrowid - TELEMETRY_KEPT,))
            self._writes += 1

    def telemetry(self, limit: int = 100) -> list[tuple[str, float, bytes]]:
        sql = (
            "SELECT cluster_hash, received_at, body FROM telemetry ORDER BY received_at DESC, id DESC LIMIT ?"
        )
        return [(h, t, bytes(b)) for h, t, b in self._rows(sql, (limit,))]


_SELECT_TOKENS = "SELECT token_hash, tenant_id, token_id, role, cluster_id, created_at FROM tokens"


def _token(row: tuple[Any, ...]) -> TokenRecord:
    token_hash, tenant_id, token_id, role, cluster_id, created_at = row
    return TokenRecord(token_hash, tenant_id, parse_role(role), token_id, created_at, cluster_id=cluster_id)
