"""The embedded cloud store's SQLite schema: its tables at the current version, and the
migrations from older files.

Nothing flows in at run time: these are the statements. They go to
:class:`~cloud_functions.store.sqlite.SqliteGraphStore`, which reads the file's
``PRAGMA user_version`` and, in one write transaction, runs :data:`_SCHEMA` on a new file or
:data:`_MIGRATE_FROM_1` / :data:`_MIGRATE_FROM_2` on an older one (it refuses a newer one), then
sets the version to :data:`SCHEMA_VERSION`. :data:`EDGES_TABLE` and :data:`EDGES_INDEX` (``{name}``:
the table's name) also go to ``bench/bench_cloud_ingest.py``, which builds the same edges table
for its baseline. What the rows hold: :mod:`cloud_functions.store.sqlite`.
"""

from __future__ import annotations

SCHEMA_VERSION = 3

EDGES_TABLE = """
CREATE TABLE {name} (
    id INTEGER PRIMARY KEY, cluster INTEGER NOT NULL, key BLOB NOT NULL, edge TEXT NOT NULL,
    client_namespace TEXT NOT NULL, client_name TEXT NOT NULL, target_namespace TEXT, target_name TEXT,
    methods TEXT NOT NULL, last_seen REAL NOT NULL, live INTEGER NOT NULL DEFAULT 0)
"""
EDGES_INDEX = "CREATE INDEX {name}_cluster ON {name} (cluster)"
# Version 1 kept edges in a WITHOUT ROWID table keyed by (tenant, cluster, key hash): its ~500-byte
# rows sat in key-hash (random) order, so a batch's inserts rewrote a page per edge. Version 2
# appended rows (rowid order) but kept a UNIQUE index on the random keys, whose scattered pages
# were most of what each commit wrote. Version 3 keeps the keys' uniqueness in memory (KeyIndex),
# indexes rows by cluster number only (entries appended too), and adds liveness.

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
    PRIMARY KEY (tenant_id, cluster_id, batch_id)) WITHOUT ROWID;
CREATE TABLE telemetry (
    id INTEGER PRIMARY KEY AUTOINCREMENT, cluster_hash TEXT NOT NULL, content_type TEXT NOT NULL,
    received_at REAL NOT NULL, body BLOB NOT NULL);
"""
    + EDGES_TABLE.format(name="edges")
    + ";"
    + EDGES_INDEX.format(name="edges")
    + ";"
    + _CLUSTERS_TABLE.format(name="clusters")
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
    EDGES_INDEX.format(name="edges"),
    "DROP TABLE clusters",
    "ALTER TABLE clusters_3 RENAME TO clusters",
)
