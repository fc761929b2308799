"""The embedded cloud store's SQLite schema: its tables at the current version, and the
migrations from older files (:func:`migrate`), run by
:class:`~cloud_functions.store.sqlite.SqliteGraphStore` on its connection when it opens a file.

A file records its version in the one row of ``schema_version`` (files before version 4 have no
such table: ``PRAGMA user_version``, still kept equal to the row so that older code refuses newer
files). A new file gets the tables below; an older one every step of :data:`MIGRATIONS` newer
than its version. To change the schema: change the tables below and append a step that takes a
file of the previous version to them. :data:`EDGES_TABLE` and :data:`EDGES_INDEXES` also go to
``bench/bench_cloud_ingest.py``, which builds the same edges table for its baseline.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from cloud_functions.store.base import Step, StoreError, check_version
from cloud_functions.store.coverage import COVERAGE_TABLE
from cloud_functions.store.snapshotssqlite import SNAPSHOTS_TABLE
from cloud_functions.store.sqliteedges import rekey_edges

EDGES_TABLE = """
CREATE TABLE {name} (
    id INTEGER PRIMARY KEY, cluster INTEGER NOT NULL, key BLOB NOT NULL, edge TEXT NOT NULL,
    client_namespace TEXT NOT NULL, client_name TEXT NOT NULL, target_namespace TEXT, target_name TEXT,
    methods TEXT NOT NULL, last_seen REAL NOT NULL, live INTEGER NOT NULL DEFAULT 0)
"""
EDGES_INDEXES = (
    "CREATE INDEX {name}_by_client ON {name} (cluster, client_namespace, client_name, key)",
    "CREATE INDEX {name}_by_server ON {name} (cluster, target_namespace, target_name, key)"
    " WHERE target_namespace IS NOT NULL",
)
_CLUSTER_INDEX = "CREATE INDEX {name}_cluster ON {name} (cluster)"  # versions 3 to 6
# Version 1 kept edges in a WITHOUT ROWID table keyed by (tenant, cluster, key hash): its ~500-byte
# rows sat in key-hash (random) order, so a batch's inserts rewrote a page per edge. Version 2
# appended rows (rowid order) but kept a UNIQUE index on the random keys, whose scattered pages
# were most of what each commit wrote. Version 3 keeps the keys' uniqueness in memory (KeyIndex),
# indexes rows by cluster number only (entries appended too), and adds liveness. Version 7 reads
# pages (cloud_functions.store.sqlitepages) by keyset on two indexes instead: by client, which also
# serves the graph and the key index's loads (its prefix is the cluster), and by workload target.
# Their entries go where the client's (target's) entries are, not at random, so a batch's new edges
# touch a few pages per workload; still, new edges cost ~34 instead of ~24 µs of CPU each through
# the handler (bench/bench_cloud_ingest.py). Rewrites of known edges change no indexed column.

_CLUSTERS_TABLE = """
CREATE TABLE {name} (
    num INTEGER PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id), id TEXT NOT NULL,
    name TEXT NOT NULL, created_at REAL NOT NULL, heartbeat REAL, UNIQUE (tenant_id, id))
"""

_SCHEMA = (
    """
CREATE TABLE tenants (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE tokens (
    token_hash TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id), token_id TEXT NOT NULL,
    role TEXT NOT NULL, cluster_id TEXT NOT NULL, created_at REAL NOT NULL, UNIQUE (tenant_id, token_id));
CREATE TABLE batches (
    tenant_id TEXT NOT NULL, cluster_id TEXT NOT NULL, batch_id TEXT NOT NULL, received_at REAL NOT NULL,
    digest TEXT NOT NULL DEFAULT '', PRIMARY KEY (tenant_id, cluster_id, batch_id)) WITHOUT ROWID;
CREATE TABLE telemetry (
    id INTEGER PRIMARY KEY AUTOINCREMENT, cluster_hash TEXT NOT NULL, content_type TEXT NOT NULL,
    received_at REAL NOT NULL, body BLOB NOT NULL);
"""
    + EDGES_TABLE.format(name="edges")
    + ";"
    + ";".join(index.format(name="edges") for index in EDGES_INDEXES)
    + ";"
    + _CLUSTERS_TABLE.format(name="clusters")
    + ";"
    + SNAPSHOTS_TABLE
    + ";"
    + COVERAGE_TABLE
)

_EDGES_V2 = "(tenant_id, cluster_id, key_hash, edge, client_namespace, client_name, target_namespace,"
_EDGES_V2 += " target_name, methods, last_seen)"
_MIGRATE_FROM_1 = (  # to version 2's edges table (WITHOUT ROWID → rowid), then on to 3
    f"CREATE TABLE edges_2 {_EDGES_V2}",
    "INSERT INTO edges_2 SELECT * FROM edges",  # the same columns, in the same order
    "DROP TABLE edges",
    "ALTER TABLE edges_2 RENAME TO edges",
)
_MIGRATE_FROM_2 = (
    _CLUSTERS_TABLE.format(name="clusters_3"),
    "INSERT INTO clusters_3 (tenant_id, id, name, created_at)"
    " SELECT tenant_id, id, name, created_at FROM clusters ORDER BY tenant_id, id",
    EDGES_TABLE.format(name="edges_3"),
    "INSERT INTO edges_3 (cluster, key, edge, client_namespace, client_name, target_namespace, target_name,"
    " methods, last_seen) SELECT c.num, nm_unhex(e.key_hash), e.edge, e.client_namespace, e.client_name,"
    " e.target_namespace, e.target_name, e.methods, e.last_seen"
    " FROM edges e JOIN clusters_3 c ON c.tenant_id = e.tenant_id AND c.id = e.cluster_id",
    "DROP TABLE edges",
    "ALTER TABLE edges_3 RENAME TO edges",
    _CLUSTER_INDEX.format(name="edges"),
    "DROP TABLE clusters",
    "ALTER TABLE clusters_3 RENAME TO clusters",
)


# --------------------------------------------------------------------------- versions and migrations

_VERSION_TABLE = (
    "CREATE TABLE schema_version (one INTEGER PRIMARY KEY CHECK (one = 1), version INTEGER NOT NULL)"
)


def _statements(*statements: str) -> Callable[[sqlite3.Connection], None]:
    def run(db: sqlite3.Connection) -> None:
        for statement in statements:
            db.execute(statement)

    return run


def _to_3(db: sqlite3.Connection) -> None:
    db.create_function("nm_unhex", 1, bytes.fromhex, deterministic=True)  # hex key hash → 16-byte key
    _statements(*_MIGRATE_FROM_2)(db)


def _to_4(db: sqlite3.Connection) -> None:
    # Before version 4 a tenant's tokens were all "read", and a read token administered its tenant:
    # they keep what they could do. "read" now only reads.
    db.execute("UPDATE tokens SET role = 'owner' WHERE role = 'read'")
    db.execute(_VERSION_TABLE)


# Each step runs inside the store's migration transaction with foreign keys off (they are checked
# after the last step).
MIGRATIONS: tuple[Step[sqlite3.Connection], ...] = (
    Step(2, _statements(*_MIGRATE_FROM_1), "edges: a rowid table instead of WITHOUT ROWID"),
    Step(3, _to_3, "clusters numbered; edges keyed by cluster number and 16-byte key; liveness"),
    Step(4, _to_4, "read tokens become owner tokens; the version is recorded in schema_version"),
    Step(5, rekey_edges, "edges: the edge codec's canonical text (with live) and key"),
    # Markers kept before version 6 have no digest (''): they match any content.
    Step(
        6,
        _statements("ALTER TABLE batches ADD COLUMN digest TEXT NOT NULL DEFAULT ''"),
        "batches: content digest",
    ),
    Step(
        7,
        _statements("DROP INDEX edges_cluster", *(index.format(name="edges") for index in EDGES_INDEXES)),
        "edges: indexes by client and by workload target, for paged reads",
    ),
    Step(8, _statements(SNAPSHOTS_TABLE), "snapshots: each cluster's, by name"),
    Step(9, _statements(COVERAGE_TABLE), "coverage: each cluster's newest document"),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: committed when the block ends, rolled back when it raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def migrate(db: sqlite3.Connection, where: str) -> None:
    """Bring the file to :data:`SCHEMA_VERSION`: create a new one, or run each newer step of
    :data:`MIGRATIONS` on an older one, all in one write transaction (a failed step leaves the
    file as it was); refuse a newer file."""
    if check_version(_recorded_version(db), SCHEMA_VERSION, where) == SCHEMA_VERSION:
        return
    # Rebuilding tables: checked by foreign_key_check below instead, as SQLite advises.
    db.execute("PRAGMA foreign_keys=OFF")
    with transaction(db):
        # Read again under the write lock: another process may have migrated the file meanwhile.
        version = check_version(_recorded_version(db), SCHEMA_VERSION, where)
        if version == 0:
            _create_schema(db)
        for step in MIGRATIONS if version else ():
            if step.version > version:
                try:
                    step.run(db)
                except sqlite3.Error as error:
                    failed = f"migration to version {step.version} ({step.what}) failed"
                    raise StoreError(f"{where}: {failed}: {error}") from error
        if version < SCHEMA_VERSION:
            if db.execute("PRAGMA foreign_key_check").fetchone() is not None:
                raise StoreError(f"{where}: migration to version {SCHEMA_VERSION} broke a reference")
            _record_version(db, SCHEMA_VERSION)
    db.execute("PRAGMA foreign_keys=ON")


def _create_schema(db: sqlite3.Connection) -> None:
    """The tables of :data:`SCHEMA_VERSION`, in a new (empty) file."""
    for statement in (*_SCHEMA.split(";"), _VERSION_TABLE):
        if statement.strip():
            db.execute(statement)


def _recorded_version(db: sqlite3.Connection) -> int:
    """The file's schema version: its ``schema_version`` row, or (before version 4, when the
    table did not exist) its ``PRAGMA user_version``; 0 for a new file."""
    table = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    if db.execute(table).fetchone() is None:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    row = db.execute("SELECT version FROM schema_version").fetchone()
    if row is None:
        raise StoreError("the schema_version table is empty: the file was not written by this store")
    return int(row[0])


def _record_version(db: sqlite3.Connection, version: int) -> None:
    """Record ``version`` in the ``schema_version`` row, and as ``PRAGMA user_version`` (which is
    all that code before version 4 reads: so it refuses this file as newer)."""
    db.execute("INSERT OR REPLACE INTO schema_version (one, version) VALUES (1, ?)", (version,))
    db.execute(f"PRAGMA user_version = {int(version)}")
