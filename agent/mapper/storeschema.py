"""The edge store's SQLite schema: the tables of ``<data_dir>/edges.db``, and the in-place
migrations of older files.

:class:`~agent.mapper.store.EdgeStore` opens the file, reads its ``PRAGMA user_version`` and, inside
its own write transaction, calls :func:`create` on a new file or :func:`migrate` on an older one
(it refuses any other version itself); the tables then hold:

* ``edges``: one row per edge key (``key``: :func:`agent.wire.key_for`, as text), the client's
  namespace, ``last_seen``, ``doc`` (the edge document, :mod:`agent.wire`) and ``seq``, the change
  counter the cloud uploader pages through;
* ``meta``: ``next_seq`` (never reset) and ``upload_cursor``;
* ``upload_state``: per edge key, what was last uploaded (:mod:`agent.mapper.uploadledger`);
* ``snapshots``: saved maps by name (:mod:`agent.mapper.snapshots`): when taken, whether automatic,
  their edge count, the order they were saved in (``saved``, for pruning) and the snapshot
  document (:mod:`agent.snapshotwire`), zlib-compressed.

Versions: 1 had the ``edges`` table only, one column per field; 2 added change tracking (``seq``,
``meta``, ``upload_state``); 3 added ``upload_state.live``; 4 keeps each edge as its document
(the one codec) instead of a column per field. Migrating to 4 rewrites every row as a document,
keeps its ``seq`` and its upload marks (re-keyed when a key's text changed), and clears the marks'
digests (taken of the old form), so an edge's next change re-sends it. Nothing else is dropped.
5 adds the ``snapshots`` table (empty); migrating to it touches nothing else.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import Any

from agent import wire
from agent.model import AwsTarget, Edge, HttpResource, InternetTarget, KafkaTopic, Method, WorkloadIdentity

log = logging.getLogger("agent.mapper.storeschema")

SCHEMA_VERSION = 5
MIGRATABLE = (1, 2, 3, 4)
"""The older versions :func:`migrate` brings up to :data:`SCHEMA_VERSION`."""

EDGES = """
CREATE TABLE edges (
    key TEXT PRIMARY KEY,
    client_namespace TEXT NOT NULL,
    last_seen REAL NOT NULL,
    doc BLOB NOT NULL,
    seq INTEGER NOT NULL
) WITHOUT ROWID"""
TABLES = (
    EDGES,
    "CREATE INDEX edges_client_namespace ON edges (client_namespace)",
    "CREATE INDEX edges_seq ON edges (seq)",
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    "INSERT INTO meta (name, value) VALUES ('next_seq', 1), ('upload_cursor', 0)",
    """
CREATE TABLE upload_state (
    key TEXT PRIMARY KEY,
    last_seen REAL NOT NULL,
    digest TEXT NOT NULL,
    live INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID""",
    "CREATE INDEX upload_state_live ON upload_state (key) WHERE live != 0",
)
SNAPSHOTS = (
    """
CREATE TABLE snapshots (
    name TEXT PRIMARY KEY,
    taken_at REAL NOT NULL,
    auto INTEGER NOT NULL,
    edges INTEGER NOT NULL,
    saved INTEGER NOT NULL,
    doc BLOB NOT NULL
) WITHOUT ROWID""",
    "CREATE INDEX snapshots_saved ON snapshots (auto, saved)",
)


def create(db: sqlite3.Connection) -> None:
    """Create the current schema in an empty file, in the caller's transaction."""
    for statement in TABLES + SNAPSHOTS:  # not executescript(): it COMMITs
        db.execute(statement)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


# --------------------------------------------------------------------------- versions 1-3 → 4

_OLD_COLUMNS = (
    "key, client_namespace, client_name, client_kind, target_kind, target_namespace, target_name,"
    " target_workload_kind, target_dns_name, target_ips, target_port, target_arn, first_seen, last_seen,"
    " methods, count, http, kafka_topics, aws_actions, target_service, ambiguous"
)


def _old_edge(row: tuple[Any, ...]) -> Edge:
    """An edge from a version 1-3 row (:data:`_OLD_COLUMNS`, less the key): a column per field,
    lists as JSON, HTTP resources and Kafka topics as ``[name, [values]]`` pairs."""
    (c_ns, c_name, c_kind, kind, t_ns, t_name, t_kind, dns, ips, port, arn) = row[:11]
    first, last, methods, count, http, kafka, aws, service, ambiguous = row[11:]
    target: WorkloadIdentity | InternetTarget | AwsTarget
    if kind == "workload":
        target = WorkloadIdentity(t_ns, t_name, t_kind)
    elif kind == "internet":
        target = InternetTarget(dns, tuple(json.loads(ips)), port)
    else:
        target = AwsTarget(arn)
    return Edge(
        client=WorkloadIdentity(c_ns, c_name, c_kind),
        target=target,
        first_seen=first,
        last_seen=last,
        methods=frozenset(Method(m) for m in json.loads(methods)),
        count=count,
        http=tuple(HttpResource(p, tuple(m)) for p, m in json.loads(http)),
        kafka_topics=tuple(KafkaTopic(n, tuple(o)) for n, o in json.loads(kafka)),
        aws_actions=tuple(json.loads(aws)),
        target_service=service,
        ambiguous=bool(ambiguous),
    )


def _new_key(old_key: str) -> str:
    """The version 4 key of a version 1-3 key (the same fields; JSON written by another encoder)."""
    c_ns, c_name, c_kind, kind, t_ns, t_name, t_kind, dns, ips, port, arn = json.loads(old_key)
    client = WorkloadIdentity(c_ns, c_name, c_kind)
    if kind == "workload":
        return wire.key_for(client, WorkloadIdentity(t_ns, t_name, t_kind)).decode()
    if kind == "internet":
        return wire.key_for(client, InternetTarget(dns, tuple(ips), port)).decode()
    return wire.key_for(client, AwsTarget(arn)).decode()


def migrate(db: sqlite3.Connection, version: int) -> None:
    """Version 1, 2, 3 or 4 (:data:`MIGRATABLE`) → :data:`SCHEMA_VERSION` in place, in the caller's
    transaction."""
    if version < 4:
        _to_4(db, version)
    for statement in SNAPSHOTS:
        db.execute(statement)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _to_4(db: sqlite3.Connection, version: int) -> None:
    """Version 1, 2 or 3 → 4."""
    if version == 1:
        db.execute("ALTER TABLE edges ADD COLUMN seq INTEGER NOT NULL DEFAULT 0")
        keys = [k for (k,) in db.execute("SELECT key FROM edges ORDER BY key")]
        db.executemany("UPDATE edges SET seq = ? WHERE key = ?", ((i + 1, k) for i, k in enumerate(keys)))
        db.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID")
        db.execute(
            "INSERT INTO meta (name, value) VALUES ('next_seq', ?), ('upload_cursor', 0)", (len(keys) + 1,)
        )
        db.execute(
            "CREATE TABLE upload_state (key TEXT PRIMARY KEY, last_seen REAL NOT NULL, digest TEXT NOT NULL)"
        )
    if version in (1, 2):
        db.execute("ALTER TABLE upload_state ADD COLUMN live INTEGER NOT NULL DEFAULT 0")
    rows = db.execute(f"SELECT {_OLD_COLUMNS}, seq FROM edges").fetchall()  # noqa: S608 - constants
    marks = db.execute("SELECT key, last_seen, live FROM upload_state").fetchall()
    for statement in (
        "DROP TABLE edges",
        "DROP TABLE upload_state",
        "DROP INDEX IF EXISTS upload_state_live",
    ):
        db.execute(statement)
    for statement in TABLES[:3] + TABLES[5:]:  # meta stays as it is
        db.execute(statement)
    new_rows, skipped = [], 0
    for row in rows:
        try:  # older versions stored what the codec now refuses (a time past 9999, say): left out
            edge = _old_edge(row[1:-1])
            key, doc = wire.key_for(edge.client, edge.target).decode(), wire.pack_edge(edge)
            new_rows.append((key, edge.client.namespace, edge.last_seen, doc, row[-1]))
        except ValueError:
            skipped += 1
    db.executemany(
        "INSERT INTO edges (key, client_namespace, last_seen, doc, seq) VALUES (?, ?, ?, ?, ?)", new_rows
    )
    # An empty digest matches no edge: each is uploaded once more, as the document it now is. A mark
    # that could not be sent (its key or time refused) is left out with its edge.
    kept = [(key, seen, live) for key, seen, live in marks if wire.EARLIEST <= seen < wire.END]
    db.executemany(
        "INSERT INTO upload_state (key, last_seen, digest, live) VALUES (?, ?, '', ?)",
        ((_new_key(key), seen, live) for key, seen, live in kept),
    )
    if skipped or len(kept) < len(marks):
        refused = (skipped, len(marks) - len(kept))
        log.warning("edge store migration left out %d edges and %d upload marks the codec refuses", *refused)
