"""The mapper's edge store: every edge the mapper has seen, persisted in SQLite so that a
restart loses nothing.

Edges come from the resolver, through the API's report workers: each worker turns a batch of
observations into edges and hands them to :meth:`EdgeStore.record` in one call. They go out
through :meth:`EdgeStore.edges`: to the GraphQL queries (``serviceIntents``, ``intents``,
``edges``: those seen within the retention, :class:`agent.mapper.retention.RecentEdges`), the
exporters behind the CLI, and through :meth:`EdgeStore.changed_since` to the cloud uploader.
``resetCapture`` is :meth:`EdgeStore.reset`; :meth:`EdgeStore.prune` deletes the
edges last seen before a time (the mapper's retention, :mod:`agent.mapper.retention`).

Storage: one row per edge key in ``<data_dir>/edges.db``: the key (:func:`agent.wire.key_for`),
the client's namespace (for the namespace filter), ``last_seen`` and the edge document itself
(:mod:`agent.wire`: the one codec), plus ``seq``, the change counter. Edges with equal keys are
merged by :func:`agent.model.merge_edges` (the one merge; counts summed, since the resolver hands
over disjoint deltas). The tables and the migrations of older files: :mod:`agent.mapper.storeschema`.
Snapshots of the map (:mod:`agent.mapper.snapshots`) live in the same file, written and read
through :meth:`EdgeStore.writing` and :meth:`EdgeStore.reading`; :meth:`EdgeStore.reset` leaves them.

Change tracking: every row written by ``record`` gets the next ``seq`` from a persistent counter
(``meta.next_seq``, never reset); :meth:`EdgeStore.changed_since` pages through rows by ``seq``.
What was uploaded of them is not this module's business: the cloud uploader's ledger
(:class:`agent.mapper.uploadledger.UploadLedger`) keeps it in the same file, inside this store's
transactions (:meth:`EdgeStore.writing`, :meth:`EdgeStore.reading`, :meth:`EdgeStore.on_reset`).

Concurrency: one writer connection behind a lock, one ``BEGIN IMMEDIATE`` transaction per
``record`` call (the merge is a read-modify-write of the batch's rows inside it, so a batch is
all-or-nothing); readers take a pooled connection of their own, and each query is a single
SELECT, which WAL serves from one consistent snapshot while a write is in progress.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec

from agent import wire
from agent.mapper import storeschema
from agent.model import Edge, Target, WorkloadIdentity, merge_edges

log = logging.getLogger("agent.mapper.store")

FILENAME = "edges.db"
SCHEMA_VERSION = storeschema.SCHEMA_VERSION
_MAX_IDLE_READERS = 8
_BUSY_TIMEOUT = 30.0

_UPSERT = (
    "INSERT INTO edges (key, client_namespace, last_seen, doc, seq) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET last_seen = excluded.last_seen, doc = excluded.doc, seq = excluded.seq"
)
_SELECT_STORED = "SELECT key, doc FROM edges WHERE key IN (SELECT value FROM json_each(?))"
_SELECT_IN_NAMESPACES = (
    "SELECT seq, doc FROM edges WHERE client_namespace IN (SELECT value FROM json_each(?)) ORDER BY key"
)
_keys_json = msgspec.json.Encoder().encode

ResetHook = Callable[[sqlite3.Connection], None]


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
        self._reset_hooks: list[ResetHook] = []
        self._decoded: dict[int, Edge | None] = {}  # by seq, as last read (see edges())
        self.unreadable = 0
        """Rows skipped by reads since the store was opened: documents that no longer read (a
        time an older version accepted, now out of range; damage). Served on ``/metrics``."""
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
        """The store of a data directory (``MapperSettings.store.data_dir``): ``<data_dir>/edges.db``."""
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
            if version == storeschema.SCHEMA_VERSION:
                return
            if version in storeschema.MIGRATABLE:
                storeschema.migrate(db, version)
                return
            if version != 0:
                raise StoreError(
                    f"{self.path} has edge-store schema version {version}, this mapper reads version"
                    f" {storeschema.SCHEMA_VERSION}; it was left untouched (run a matching mapper, or move"
                    " it aside)"
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

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, all or nothing, for this file's other tables (the upload ledger)."""
        with self._write_lock:
            self._check_open()
            with self._transaction() as db:
                yield db

    def on_reset(self, hook: ResetHook) -> None:
        """Run ``hook(db)`` inside every :meth:`reset`'s transaction, before the edges go."""
        self._reset_hooks.append(hook)

    # ------------------------------------------------------------------ writes

    def record(self, edges: Iterable[Edge]) -> int:
        """Merge ``edges`` into the store in one transaction; returns how many edges were given."""
        merged: dict[tuple[WorkloadIdentity, Target], Edge] = {}  # Edge.key: hashed, not encoded
        given = 0
        for edge in edges:
            given += 1
            key = (edge.client, edge.target)
            found = merged.get(key)
            merged[key] = edge if found is None else merge_edges(found, edge, cumulative=False)
        if not merged:
            return given
        # by key text, as the rows keep it: encoded once per distinct edge, not per sighting
        batch = {wire.key_for(client, target).decode(): e for (client, target), e in merged.items()}
        with self.writing() as db:
            rows = db.execute(_SELECT_STORED, (_keys_json(list(batch)),)).fetchall()
            stored = wire.unpack_edges([doc for _, doc in rows])  # one decoding pass for the batch
            self._skipped(stored.count(None))  # those cannot be read: the new sightings replace them
            for (key, _), old in zip(rows, stored, strict=True):
                if old is not None:
                    batch[key] = merge_edges(old, batch[key], cumulative=False)
            first = db.execute("SELECT value FROM meta WHERE name = 'next_seq'").fetchone()[0]
            db.executemany(
                _UPSERT,
                (
                    (key, e.client.namespace, e.last_seen, wire.pack_edge(e), first + i)
                    for i, (key, e) in enumerate(batch.items())
                ),
            )
            db.execute("UPDATE meta SET value = ? WHERE name = 'next_seq'", (first + len(batch),))
        return given

    def prune(self, older_than: float) -> int:
        """Delete the edges last seen before ``older_than`` (epoch seconds), in one transaction;
        returns how many were deleted. Snapshots keep the edges they hold. An edge seen again
        later comes back as a new row (a new ``seq``), so uploads see it as a change."""
        with self.writing() as db:
            return db.execute("DELETE FROM edges WHERE last_seen < ?", (float(older_than),)).rowcount

    def reset(self) -> None:
        """Forget every edge (``resetCapture``); ``seq`` keeps counting up, so edges seen after the
        reset are new changes. The :meth:`on_reset` hooks run first, in the same transaction."""
        with self.writing() as db:
            for hook in self._reset_hooks:
                hook(db)
            db.execute("DELETE FROM edges")

    # ------------------------------------------------------------------ reads

    def edges(self, namespaces: Collection[str] | None = None) -> list[Edge]:
        """Every edge, or those whose client is in ``namespaces`` (an empty collection: none).

        One consistent snapshot, ordered by key (client namespace, name, kind, then target). A row
        is decoded once per write: its ``seq`` (new on every write, never reused) names its
        content, so later reads reuse the edge decoded then (edges are immutable). The console and
        every export read the whole map, which mostly stands still between reads.
        """
        with self.reading() as db:
            if namespaces is None:
                rows = db.execute("SELECT seq, doc FROM edges ORDER BY key").fetchall()
            else:
                rows = db.execute(_SELECT_IN_NAMESPACES, (_keys_json(list(namespaces)),)).fetchall()
        known = self._decoded  # never changed once published: a full read publishes a new one
        fresh = wire.unpack_edges([doc for seq, doc in rows if seq not in known])
        self._skipped(fresh.count(None))
        unknown = iter(fresh)
        found = [known[seq] if seq in known else next(unknown) for seq, _ in rows]
        if namespaces is None:  # the whole map: what it holds now is all worth keeping
            self._decoded = dict(zip([seq for seq, _ in rows], found, strict=True))
        return [edge for edge in found if edge is not None]

    def positions(self) -> tuple[int, int]:
        """(the ``seq`` of the newest change still stored, the upload cursor): the cloud holds every
        change once the second has reached the first (``agent.mapper.uploadledger`` moves the
        cursor). A change whose row is gone (pruned, reset) has nothing left to upload, so the
        newest of the rows is the one that counts: the uploader's cursor can always reach it."""
        with self.reading() as db:
            newest, cursor = db.execute(
                "SELECT (SELECT coalesce(max(seq), 0) FROM edges),"
                " (SELECT value FROM meta WHERE name = 'upload_cursor')"
            ).fetchone()
        return int(newest), int(cursor)

    def changed_since(self, seq: int, limit: int) -> list[tuple[int, Edge]]:
        """Up to ``limit`` edges whose row changed after ``seq``, as ``(seq, edge)`` by ``seq``;
        rows that no longer read are skipped (a page of only those: the next page is read)."""
        while True:
            with self.reading() as db:
                rows = db.execute(
                    "SELECT seq, doc FROM edges WHERE seq > ? ORDER BY seq LIMIT ?", (int(seq), int(limit))
                ).fetchall()
            edges = wire.unpack_edges([doc for _, doc in rows])
            self._skipped(edges.count(None))
            found = [(at, edge) for (at, _), edge in zip(rows, edges, strict=True) if edge is not None]
            if found or not rows:
                return found
            seq = rows[-1][0]

    def _skipped(self, rows: int) -> None:
        if rows:
            self.unreadable += rows  # under the GIL: a lost increment would only undercount
            log.warning("stored edges skipped, unreadable rows=%d total=%d", rows, self.unreadable)

    def count(self) -> int:
        """How many distinct edges (keys) are stored."""
        with self.reading() as db:
            return int(db.execute("SELECT count(*) FROM edges").fetchone()[0])

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A pooled read-only connection (each SELECT on it reads one consistent snapshot)."""
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
