"""The mapper's edge store: every edge the mapper has seen, persisted in SQLite so that a
restart loses nothing.

Edges come from the resolver, through the API's report workers: each worker turns a batch of
observations into edges and hands them to :meth:`EdgeStore.record` in one call. They go out
through :meth:`EdgeStore.edges`: to the GraphQL queries (``serviceIntents``, ``intents``), the
exporters (ClientIntents, NetworkPolicy, IAM) behind the CLI, and the cloud uploader.
``resetCapture`` is :meth:`EdgeStore.reset`.

Storage: one row per edge key (client, target), in ``<data_dir>/edges.db``. The target union is
flattened into a ``target_kind`` column (``workload`` | ``internet`` | ``aws``) plus that kind's
fields; the row's primary key is the canonical JSON of the whole key. Set-like details (methods,
HTTP resources, Kafka topics, AWS actions) are canonical (sorted) JSON columns.

Merging (:meth:`EdgeStore.record`), per key: first_seen = min, last_seen = max, count = sum,
methods and AWS actions = union, HTTP resources merged by path with methods unioned, Kafka topics
merged by name with operations unioned (all come back sorted), target_service = the non-empty
value seen with the newest ``last_seen`` (an empty one never erases a known service), and
ambiguous = AND: one unambiguous sighting pins the edge to its client for good, since an
ambiguous sighting of an already-proven edge adds no doubt about that edge.

Concurrency: one writer connection behind a lock, one ``BEGIN IMMEDIATE`` transaction per
``record`` call (the merge is a read-modify-write of the batch's rows inside it, so a batch
is all-or-nothing; merging in SQL instead, an UPSERT calling Python set-union functions, measured
no faster, and this keeps the merge rules in one place); readers take a pooled connection of
their own, and each query is a single SELECT, which WAL serves from one consistent snapshot while
a write is in progress.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.model import AwsTarget, Edge, HttpResource, InternetTarget, KafkaTopic, Method, WorkloadIdentity

FILENAME = "edges.db"
SCHEMA_VERSION = 1
_MAX_IDLE_READERS = 8
_BUSY_TIMEOUT = 30.0

_SCHEMA = (
    """
CREATE TABLE edges (
    key TEXT PRIMARY KEY,
    client_namespace TEXT NOT NULL,
    client_name TEXT NOT NULL,
    client_kind TEXT NOT NULL,
    target_kind TEXT NOT NULL CHECK (target_kind IN ('workload', 'internet', 'aws')),
    target_namespace TEXT NOT NULL,
    target_name TEXT NOT NULL,
    target_workload_kind TEXT NOT NULL,
    target_dns_name TEXT NOT NULL,
    target_ips TEXT NOT NULL,
    target_port INTEGER NOT NULL,
    target_arn TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    methods TEXT NOT NULL,
    count INTEGER NOT NULL,
    http TEXT NOT NULL,
    kafka_topics TEXT NOT NULL,
    aws_actions TEXT NOT NULL,
    target_service TEXT NOT NULL,
    target_service_seen REAL NOT NULL,
    ambiguous INTEGER NOT NULL
) WITHOUT ROWID""",
    "CREATE INDEX edges_client_namespace ON edges (client_namespace)",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)
_IDENTITY_COLUMNS = (
    "key, client_namespace, client_name, client_kind, target_kind, target_namespace, target_name,"
    " target_workload_kind, target_dns_name, target_ips, target_port, target_arn"
)
_MERGED_COLUMNS = (
    "first_seen, last_seen, methods, count, http, kafka_topics, aws_actions,"
    " target_service, target_service_seen, ambiguous"
)
# The statements below are assembled from the column-name constants above, never from input.
_VALUES = ", ".join("?" * 22)
_SET = ", ".join(f"{c} = excluded.{c}" for c in _MERGED_COLUMNS.replace(" ", "").split(","))
_UPSERT = f"INSERT INTO edges ({_IDENTITY_COLUMNS}, {_MERGED_COLUMNS}) VALUES ({_VALUES})"  # noqa: S608
_UPSERT += f" ON CONFLICT (key) DO UPDATE SET {_SET}"
_SELECT_MERGED = f"SELECT key, {_MERGED_COLUMNS} FROM edges WHERE key IN "  # noqa: S608
_SELECT_MERGED += "(SELECT value FROM json_each(?))"
_SELECT_EDGES = f"SELECT {_IDENTITY_COLUMNS}, {_MERGED_COLUMNS} FROM edges"  # noqa: S608
_ORDER = " ORDER BY client_namespace, client_name, key"


class StoreError(RuntimeError):
    """The edge store cannot be used: unreadable or foreign file, unknown schema, or closed."""


_dumps = json.JSONEncoder(separators=(",", ":")).encode  # one encoder: json.dumps builds one per call
_EMPTY = "[]"


@functools.lru_cache(maxsize=256)
def _methods_json(methods: frozenset[str]) -> str:
    return _dumps(sorted(methods))


@functools.lru_cache(maxsize=256)
def _methods_of(column: str) -> frozenset[Method]:
    return frozenset(Method(m) for m in json.loads(column))


def _named_json(named: dict[str, set[str]]) -> str:
    return _dumps([[k, sorted(v)] for k, v in sorted(named.items())]) if named else _EMPTY


def _loads(column: str) -> Any:
    return json.loads(column) if column != _EMPTY else ()


def _key_row(edge: Edge) -> tuple[Any, ...]:
    """The key and identity columns of an edge (the first 12 columns of a row)."""
    c, t = edge.client, edge.target
    if isinstance(t, WorkloadIdentity):
        target: tuple[Any, ...] = ("workload", t.namespace, t.name, t.kind, "", (), 0, "")
    elif isinstance(t, InternetTarget):
        target = ("internet", "", "", "", t.dns_name, t.ips, t.port, "")
    elif isinstance(t, AwsTarget):
        target = ("aws", "", "", "", "", (), 0, t.arn)
    else:  # pragma: no cover - the Target union is closed
        raise TypeError(f"unknown edge target {t!r}")
    key = _dumps([c.namespace, c.name, c.kind, *target])
    ips = _dumps(target[5]) if target[5] else _EMPTY
    return (key, c.namespace, c.name, c.kind, *target[:5], ips, *target[6:])


class _Merged:
    """One key's merged values while a batch is applied: the stored row, then each new edge."""

    __slots__ = (
        "ambiguous",
        "aws",
        "count",
        "first_seen",
        "http",
        "kafka",
        "last_seen",
        "methods",
        "service",
        "service_seen",
    )

    def __init__(self, edge: Edge) -> None:
        self.first_seen, self.last_seen, self.count = edge.first_seen, edge.last_seen, edge.count
        self.methods: set[str] = {str(m) for m in edge.methods}
        self.http: dict[str, set[str]] = {}
        self.kafka: dict[str, set[str]] = {}
        self.aws: set[str] = set(edge.aws_actions)
        self.service, self.service_seen = edge.target_service, edge.last_seen
        self.ambiguous = edge.ambiguous
        for r in edge.http:
            self.http.setdefault(r.path, set()).update(r.methods)
        for t in edge.kafka_topics:
            self.kafka.setdefault(t.name, set()).update(t.operations)

    def add(self, edge: Edge) -> None:
        self.first_seen = min(self.first_seen, edge.first_seen)
        self.last_seen = max(self.last_seen, edge.last_seen)
        self.count += edge.count
        self.methods.update(str(m) for m in edge.methods)
        for r in edge.http:
            self.http.setdefault(r.path, set()).update(r.methods)
        for t in edge.kafka_topics:
            self.kafka.setdefault(t.name, set()).update(t.operations)
        self.aws.update(edge.aws_actions)
        self._take_service(edge.target_service, edge.last_seen)
        self.ambiguous = self.ambiguous and edge.ambiguous

    def add_stored(self, row: tuple[Any, ...]) -> None:
        """Merge a stored row (``_MERGED_COLUMNS`` order) into this batch's values."""
        first, last, methods, count, http, kafka, aws, service, service_seen, ambiguous = row
        self.first_seen, self.last_seen = min(self.first_seen, first), max(self.last_seen, last)
        self.count += count
        self.methods.update(_methods_of(methods))
        for name, values in _loads(http):
            self.http.setdefault(name, set()).update(values)
        for name, values in _loads(kafka):
            self.kafka.setdefault(name, set()).update(values)
        self.aws.update(_loads(aws))
        self._take_service(service, service_seen)
        self.ambiguous = self.ambiguous and bool(ambiguous)

    def _take_service(self, service: str, seen: float) -> None:
        if service and (not self.service or seen >= self.service_seen):
            self.service, self.service_seen = service, seen

    def row(self) -> tuple[Any, ...]:
        return (
            self.first_seen,
            self.last_seen,
            _methods_json(frozenset(self.methods)),
            self.count,
            _named_json(self.http),
            _named_json(self.kafka),
            _dumps(sorted(self.aws)) if self.aws else _EMPTY,
            self.service,
            self.service_seen,
            int(self.ambiguous),
        )


def _edge(row: tuple[Any, ...]) -> Edge:
    """Rebuild an Edge from a ``_SELECT_EDGES`` row."""
    (_, c_ns, c_name, c_kind, kind, t_ns, t_name, t_kind, dns, ips, port, arn) = row[:12]
    first, last, methods, count, http, kafka, aws, service, _, ambiguous = row[12:]
    target: WorkloadIdentity | InternetTarget | AwsTarget
    if kind == "workload":
        target = WorkloadIdentity(t_ns, t_name, t_kind)
    elif kind == "internet":
        target = InternetTarget(dns, tuple(_loads(ips)), port)
    else:
        target = AwsTarget(arn)
    return Edge(
        client=WorkloadIdentity(c_ns, c_name, c_kind),
        target=target,
        first_seen=first,
        last_seen=last,
        methods=_methods_of(methods),
        count=count,
        http=tuple(HttpResource(p, tuple(m)) for p, m in _loads(http)),
        kafka_topics=tuple(KafkaTopic(n, tuple(o)) for n, o in _loads(kafka)),
        aws_actions=tuple(_loads(aws)),
        target_service=service,
        ambiguous=bool(ambiguous),
    )


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
            for statement in _SCHEMA:  # not executescript(): it would COMMIT first
                db.execute(statement)

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
                db.executemany(_UPSERT, (ident + merged.row() for ident, merged in batch.values()))
        return given

    def reset(self) -> None:
        """Forget every edge (``resetCapture``)."""
        with self._write_lock:
            self._check_open()
            self._writer.execute("DELETE FROM edges")

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
