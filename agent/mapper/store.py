"""The mapper's edge store: every edge the mapper has seen, persisted in SQLite so that a
restart loses nothing.

Edges come from the resolver, through the API's report workers: each worker turns a batch of
observations into edges and hands them to :meth:`EdgeStore.record` in one call. They go out
through :meth:`EdgeStore.edges`: to the GraphQL queries (``serviceIntents``, ``intents``), the
exporters (ClientIntents, NetworkPolicy, IAM) behind the CLI, and the cloud uploader.
``resetCapture`` is :meth:`EdgeStore.reset`.

Storage: one row per edge key (client, target), in ``<data_dir>/edges.db``; how an edge is
encoded in its row, and the merge rules :meth:`EdgeStore.record` applies per key, are in
:mod:`agent.mapper.edgerows`; the tables and the migrations of older files in
:mod:`agent.mapper.storeschema`. This module holds the connections, the transactions and the
queries.

Change tracking (for the cloud uploader, :mod:`agent.mapper.uploader`): every row written by
``record`` gets the next ``seq`` from a persistent counter (``meta.next_seq``, never reset, so a
``reset`` never moves it backwards); :meth:`EdgeStore.changed_since` pages through rows by
``seq``. ``upload_state`` holds, per edge key, the ``last_seen``, content digest and ``live`` flag
last uploaded; ``meta.upload_cursor`` is the ``seq`` the uploader has handled up to (their SQL:
:mod:`agent.mapper.uploads`). Edges that stop being seen change no row: :meth:`EdgeStore.gone_quiet`
finds those the cloud still holds live. Older files are migrated in place: version 1 (columns and
tables added, existing rows numbered in key order) and version 2 (``upload_state.live`` added,
existing marks reading as not live); nothing is dropped.

Concurrency: one writer connection behind a lock, one ``BEGIN IMMEDIATE`` transaction per
``record`` call (the merge is a read-modify-write of the batch's rows inside it, so a batch
is all-or-nothing; merging in SQL instead, an UPSERT calling Python set-union functions, measured
no faster, and this keeps the merge rules in one place); readers take a pooled connection of
their own, and each query is a single SELECT, which WAL serves from one consistent snapshot while
a write is in progress.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.mapper import storeschema, uploads
from agent.mapper.edgerows import IDENTITY_COLUMNS as _IDENTITY_COLUMNS
from agent.mapper.edgerows import MERGED_COLUMNS as _MERGED_COLUMNS
from agent.mapper.edgerows import Merged as _Merged
from agent.mapper.edgerows import dumps as _dumps
from agent.mapper.edgerows import edge_of as _edge
from agent.mapper.edgerows import forgotten as _forgotten
from agent.mapper.edgerows import key_columns as _key_columns
from agent.mapper.edgerows import key_row as _key_row
from agent.mapper.storeschema import SCHEMA_VERSION
from agent.mapper.uploads import UploadMark
from agent.model import Edge, Target, WorkloadIdentity

FILENAME = "edges.db"
_MAX_IDLE_READERS = 8
_BUSY_TIMEOUT = 30.0

# The statements below are assembled from edgerows' column-name constants, never from input.
_VALUES = ", ".join("?" * 22)
_SET = ", ".join(f"{c} = excluded.{c}" for c in _MERGED_COLUMNS.replace(" ", "").split(","))
_UPSERT = f"INSERT INTO edges ({_IDENTITY_COLUMNS}, {_MERGED_COLUMNS}, seq) VALUES ({_VALUES}, ?)"  # noqa: S608
_UPSERT += f" ON CONFLICT (key) DO UPDATE SET {_SET}, seq = excluded.seq"
_SELECT_MERGED = f"SELECT key, {_MERGED_COLUMNS} FROM edges WHERE key IN "  # noqa: S608
_SELECT_MERGED += "(SELECT value FROM json_each(?))"
_SELECT_EDGES = f"SELECT {_IDENTITY_COLUMNS}, {_MERGED_COLUMNS} FROM edges"  # noqa: S608
_ORDER = " ORDER BY client_namespace, client_name, key"
_SELECT_CHANGED = f"SELECT {_IDENTITY_COLUMNS}, {_MERGED_COLUMNS}, seq FROM edges"  # noqa: S608
_SELECT_CHANGED += " WHERE seq > ? ORDER BY seq LIMIT ?"
_E_COLUMNS = ", ".join(f"e.{c.strip()}" for c in f"{_IDENTITY_COLUMNS},{_MERGED_COLUMNS}".split(","))
_SELECT_QUIET = f"SELECT u.key, u.last_seen, {_E_COLUMNS} FROM upload_state u"  # noqa: S608
_SELECT_QUIET += " LEFT JOIN edges e ON e.key = u.key WHERE u.live != 0"
_SELECT_QUIET += " AND (e.key IS NULL OR e.last_seen <= ?) ORDER BY u.key LIMIT ?"

UploadKey = tuple[WorkloadIdentity, Target]
"""An edge's key (``Edge.key``), as the upload bookkeeping takes it."""


class StoreError(RuntimeError):
    """The edge store cannot be used: unreadable or foreign file, unknown schema, or closed."""


class EdgeStore:
    """Edges by key, merged on write, persisted in one SQLite file (see the module docstring).

    Thread-safe. Raises :class:`StoreError` when the file is not an edge store this version can
    read; it never wipes or migrates a file it does not understand.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self._pool_lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._closed = False
        self._writer = self._connect()
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            self._writer.close()
            raise StoreError(
                f"{path} is not a readable edge store ({exc}); it was left untouched:"
                " move it aside to start with an empty store"
            ) from exc
        except BaseException:
            self._writer.close()
            raise

    @classmethod
    def in_dir(cls, data_dir: Path) -> EdgeStore:
        """The store of a data directory (``MapperSettings.data_dir``): ``<data_dir>/edges.db``."""
        return cls(data_dir / FILENAME)

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves. check_same_thread=False: the
        # writer is used by whichever worker holds the lock, readers move between threads via the
        # pool; neither is ever used by two threads at once.
        return sqlite3.connect(
            self.path, timeout=_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )

    def _open(self) -> None:
        db = self._writer
        if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise StoreError(f"{self.path} is corrupt (PRAGMA quick_check failed); it was left untouched")
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise StoreError(f"{self.path}: SQLite refused WAL mode (got {mode!r}); is it on a network FS?")
        # WAL + synchronous=NORMAL: a commit is in the WAL file (the OS's page cache) when record()
        # returns, so a crash or kill -9 of the process loses nothing committed; fsync happens at
        # checkpoints only, so only an OS crash or power loss can drop the last few transactions
        # (never corrupt the file). The mapper re-learns those from the next reports, and FULL
        # would cost an fsync per batch.
        db.execute("PRAGMA synchronous=NORMAL")
        with self._transaction():  # IMMEDIATE: two processes opening a new file create it once
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == SCHEMA_VERSION:
                return
            if version in storeschema.MIGRATABLE:
                storeschema.migrate(db, version)
                return
            if version != 0:
                raise StoreError(
                    f"{self.path} has edge-store schema version {version}, this mapper reads version"
                    f" {SCHEMA_VERSION}; it was left untouched (run a matching mapper, or move it aside)"
                )
            if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise StoreError(
                    f"{self.path} is an SQLite database but not an edge store (no schema version);"
                    " it was left untouched"
                )
            storeschema.create(db)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on the writer connection (callers hold the write lock)."""
        db = self._writer
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            if db.in_transaction:  # SQLite may have rolled back already (e.g. disk full)
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # ------------------------------------------------------------------ writes

    def record(self, edges: Iterable[Edge]) -> int:
        """Merge ``edges`` into the store in one transaction; returns how many edges were given."""
        batch: dict[str, tuple[tuple[Any, ...], _Merged]] = {}
        given = 0
        for edge in edges:
            given += 1
            ident = _key_row(edge)
            found = batch.get(ident[0])
            if found is None:
                batch[ident[0]] = (ident, _Merged(edge))
            else:
                found[1].add(edge)
        if not batch:
            return given
        with self._write_lock:
            self._check_open()
            with self._transaction() as db:
                for key, *stored in db.execute(_SELECT_MERGED, (_dumps(list(batch)),)):
                    batch[key][1].add_stored(tuple(stored))
                first = db.execute("SELECT value FROM meta WHERE name = 'next_seq'").fetchone()[0]
                db.executemany(
                    _UPSERT,
                    (ident + merged.row() + (first + i,) for i, (ident, merged) in enumerate(batch.values())),
                )
                db.execute("UPDATE meta SET value = ? WHERE name = 'next_seq'", (first + len(batch),))
        return given

    def reset(self) -> None:
        """Forget every edge (``resetCapture``) and what was uploaded of them; ``seq`` and the
        upload cursor keep counting up, so edges seen after the reset are uploaded as new. The
        marks of edges the cloud holds live stay until :meth:`gone_quiet` has had them sent."""
        with self._write_lock:
            self._check_open()
            with self._transaction() as db:
                uploads.forget(db)
                db.execute("DELETE FROM edges")

    def mark_uploaded(
        self, entries: Iterable[tuple[UploadKey, float, str, bool]], cursor: int | None = None
    ) -> None:
        """Record, in one transaction, that each ``(key, last_seen, digest, live)`` was uploaded
        and that the uploader has handled every row up to ``seq`` ``cursor`` (``None``: leave the
        cursor). The cursor never moves backwards.
        """
        rows = [(_key_columns(*key)[0], seen, digest, live) for key, seen, digest, live in entries]
        with self._write_lock:
            self._check_open()
            with self._transaction() as db:
                uploads.mark(db, rows, cursor)

    def mark_demoting(self, keys: Iterable[UploadKey]) -> None:
        """Before sending ``keys`` with ``live=false``: their live marks become "maybe live"
        (:data:`~agent.mapper.uploads.DEMOTING`) until :meth:`mark_uploaded`, so a crash in
        between leaves them to :meth:`gone_quiet` (and to a re-send if they come back)."""
        texts = [_key_columns(*key)[0] for key in keys]
        if texts:
            with self._write_lock:
                self._check_open()
                with self._transaction() as db:
                    uploads.demoting(db, texts)

    # ------------------------------------------------------------------ reads

    def edges(self, namespaces: Collection[str] | None = None) -> list[Edge]:
        """Every edge, or those whose client is in ``namespaces`` (an empty collection: none).

        One consistent snapshot, ordered by client namespace and name.
        """
        with self._reader() as db:
            if namespaces is None:
                rows = db.execute(_SELECT_EDGES + _ORDER).fetchall()
            else:
                where = " WHERE client_namespace IN (SELECT value FROM json_each(?))"
                rows = db.execute(_SELECT_EDGES + where + _ORDER, (_dumps(list(namespaces)),)).fetchall()
        return [_edge(row) for row in rows]

    def changed_since(self, seq: int, limit: int) -> list[tuple[int, Edge]]:
        """Up to ``limit`` edges whose row changed after ``seq``, as ``(seq, edge)`` by ``seq``."""
        with self._reader() as db:
            rows = db.execute(_SELECT_CHANGED, (int(seq), int(limit))).fetchall()
        return [(row[-1], _edge(row[:-1])) for row in rows]

    def upload_marks(self, keys: Iterable[UploadKey]) -> dict[UploadKey, UploadMark]:
        """For each key that was uploaded: ``(uploaded last_seen, uploaded digest, sent live)``."""
        by_text = {_key_columns(*key)[0]: key for key in keys}
        if not by_text:
            return {}
        with self._reader() as db:
            found = uploads.marks(db, list(by_text))
        return {by_text[key]: mark for key, mark in found.items()}

    def gone_quiet(self, cutoff: float, limit: int) -> list[Edge]:
        """Up to ``limit`` edges (by key) the cloud may hold live that were last seen at or before
        ``cutoff``. An edge forgotten by :meth:`reset` comes back from its key alone: its last known
        ``last_seen``, no details, ``count`` 1 and ``ambiguous`` (a no-op in the cloud's merge)."""
        with self._reader() as db:
            rows = db.execute(_SELECT_QUIET, (float(cutoff), int(limit))).fetchall()
        return [_edge(row[2:]) if row[2] is not None else _forgotten(row[0], row[1]) for row in rows]

    def has_live_uploads(self) -> bool:
        """Whether the cloud may hold any of this store's edges live."""
        with self._reader() as db:
            return uploads.any_live(db)

    def upload_cursor(self) -> int:
        """The ``seq`` up to which the uploader has handled every change (0: none yet)."""
        with self._reader() as db:
            return uploads.cursor(db)

    def count(self) -> int:
        """How many distinct edges (keys) are stored."""
        with self._reader() as db:
            return int(db.execute("SELECT count(*) FROM edges").fetchone()[0])

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        with self._pool_lock:
            self._check_open()
            db = self._idle.pop() if self._idle else None
        if db is None:
            db = self._connect()
            db.execute("PRAGMA query_only=ON")
        try:
            yield db
        finally:
            with self._pool_lock:
                if self._closed or len(self._idle) >= _MAX_IDLE_READERS:
                    db.close()
                else:
                    self._idle.append(db)

    # ------------------------------------------------------------------ lifecycle

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"edge store {self.path} is closed")

    def close(self) -> None:
        """Close every connection (idempotent); readers in flight close theirs when done."""
        with self._write_lock, self._pool_lock:
            if self._closed:
                return
            self._closed = True
            for db in self._idle:
                db.close()
            self._idle.clear()
            self._writer.close()

    def __enter__(self) -> EdgeStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
