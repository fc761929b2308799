"""The edge store's SQLite schema: the tables of ``<data_dir>/edges.db`` at each version, and the
in-place migrations from older files.

:class:`~agent.mapper.store.EdgeStore` opens the file, reads its ``PRAGMA user_version`` and, inside
its own write transaction, calls :func:`create` on a new file or :func:`migrate` on an older one
(it refuses any other version itself); the tables then hold what the store writes:

* ``edges``: one row per edge key (columns: :mod:`agent.mapper.edgerows`), with ``seq``, the
  change counter the cloud uploader pages through;
* ``meta``: ``next_seq`` (never reset) and ``upload_cursor``;
* ``upload_state``: per edge key, what was last uploaded (its SQL: :mod:`agent.mapper.uploads`).

Versions: 1 had the ``edges`` table only; 2 added change tracking (``seq``, ``meta``,
``upload_state``; existing rows numbered in key order); 3 added ``upload_state.live`` (existing
marks read as not live, so the next upload re-sends a live edge once). Nothing is ever dropped.
"""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 3
MIGRATABLE = (1, 2)
"""The older versions :func:`migrate` brings up to :data:`SCHEMA_VERSION`."""

VERSION_1 = (
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
)
"""Version 1's schema; a new file runs it, then :data:`TO_VERSION_2` and :data:`TO_VERSION_3`."""
# Version 1 → 2: change tracking. Also run, after VERSION_1, to create a new file.
TO_VERSION_2 = (
    "ALTER TABLE edges ADD COLUMN seq INTEGER NOT NULL DEFAULT 0",
    "CREATE INDEX edges_seq ON edges (seq)",
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    "INSERT INTO meta (name, value) VALUES ('next_seq', 1), ('upload_cursor', 0)",
    """
CREATE TABLE upload_state (
    key TEXT PRIMARY KEY,
    last_seen REAL NOT NULL,
    digest TEXT NOT NULL
) WITHOUT ROWID""",
)
# Version 2 → 3: the live flag last sent (agent.mapper.uploads); existing marks read as not live,
# so the next upload re-sends a live edge once. Also run, after TO_VERSION_2, for the older files.
TO_VERSION_3 = (
    "ALTER TABLE upload_state ADD COLUMN live INTEGER NOT NULL DEFAULT 0",
    "CREATE INDEX upload_state_live ON upload_state (key) WHERE live != 0",
)


def create(db: sqlite3.Connection) -> None:
    """Create the current schema in an empty file, in the caller's transaction."""
    for statement in (*VERSION_1, *TO_VERSION_2, *TO_VERSION_3):  # not executescript(): it COMMITs
        db.execute(statement)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def migrate(db: sqlite3.Connection, version: int) -> None:
    """Version 1 or 2 (:data:`MIGRATABLE`) → 3 in place, in the caller's transaction. 1 → 2: add
    change tracking, number the rows; 2 → 3: add the live flag."""
    if version == 1:
        for statement in TO_VERSION_2:
            db.execute(statement)
        keys = [k for (k,) in db.execute("SELECT key FROM edges ORDER BY key")]
        db.executemany("UPDATE edges SET seq = ? WHERE key = ?", ((i + 1, k) for i, k in enumerate(keys)))
        db.execute("UPDATE meta SET value = ? WHERE name = 'next_seq'", (len(keys) + 1,))
    for statement in TO_VERSION_3:
        db.execute(statement)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
