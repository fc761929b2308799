"""The SQLite store's edge rows: one ingest's access to them (:class:`SqliteEdgeBatch`: the ingest
service's :class:`~cloud_functions.store.ingestion.EdgeBatch`, in the store's write transaction),
the query that reads them back for :func:`~cloud_functions.store.storedform.read_back`
(:func:`edges_query`; its filters' terms, :func:`filter_clauses`, also filter pages:
:mod:`cloud_functions.store.sqlitepages`), and the migration that re-keys them.

A row (:data:`INSERT_EDGE`): ``id`` (appended in order), cluster number, 16-byte key, the edge's
text, client and workload-target namespace/name, the methods' JSON, ``last_seen`` and ``live``.
Keys are unique per cluster through the in-memory :class:`~cloud_functions.store.keyindex.KeyIndex`,
not a UNIQUE index.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Sequence
from typing import Any

from agent import wire
from cloud_functions.store.base import EdgeFilters, StoreError
from cloud_functions.store.ingestion import EdgeWrite, StoredText
from cloud_functions.store.keyindex import KeyIndex
from cloud_functions.store.storedform import EdgeRecord, edge_key, filter_fields, upgraded

INSERT_EDGE = "INSERT INTO edges VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
BATCH_SEEN = "SELECT digest FROM batches WHERE tenant_id = ? AND cluster_id = ? AND batch_id = ?"
_UPDATE_EDGE = "UPDATE edges SET edge = ?, methods = ?, last_seen = ?, live = ? WHERE id = ?"
_CHUNK = 500  # row ids per SELECT ... IN (...): SQLite's parameter limit is 32766, older builds' 999

_method_texts: dict[tuple[str, ...], str] = {}


def methods_json(methods: tuple[str, ...]) -> str:
    """The ``methods`` column: the method names' JSON (what ``json_each`` reads)."""
    found = _method_texts.get(methods)
    if found is None:
        found = _method_texts[methods] = wire.encode(methods).decode()
    return found


def edge_row(row_id: int, cluster: int, edge: EdgeRecord) -> tuple[Any, ...]:
    """The row :data:`INSERT_EDGE` inserts for an edge."""
    f = filter_fields(edge.doc)
    return (
        row_id,
        cluster,
        edge.key,
        edge.text,
        f.client_namespace,
        f.client_name,
        f.target_namespace,
        f.target_name,
        methods_json(f.methods),
        f.last_seen,
        edge.doc.live,
    )


class SqliteEdgeBatch:
    """:class:`~cloud_functions.store.ingestion.EdgeBatch` of one cluster (number ``cluster``) in
    the write transaction of ``db``. ``writes`` counts the rows written; ``added`` holds the keys
    and row ids appended, for the :class:`KeyIndex` once the transaction has committed."""

    def __init__(
        self, db: sqlite3.Connection, keys: KeyIndex, cluster: int, where: tuple[str, str, str]
    ) -> None:
        self._db, self._keys, self._cluster, self._where = db, keys, cluster, where
        marker = db.execute(BATCH_SEEN, where).fetchone()
        self.seen_before, self.seen_digest = marker is not None, str(marker[0]) if marker else ""
        self.writes = 0
        self.added: list[tuple[bytes, int]] = []
        self._known: dict[bytes, int] | None = None

    def _row_ids(self) -> dict[bytes, int]:
        """The cluster's keys and their row ids, as committed before this transaction."""
        if self._known is None:
            self._keys.check(self._db)
            self._known = self._keys.keys(self._db, self._cluster)
        return self._known

    def raise_heartbeat(self, seen_at: float) -> None:
        rises = "UPDATE clusters SET heartbeat = ? WHERE num = ? AND (heartbeat IS NULL OR heartbeat < ?)"
        self.writes += self._db.execute(rises, (seen_at, self._cluster, seen_at)).rowcount

    def stored(self, keys: Collection[bytes]) -> dict[bytes, StoredText]:
        known = self._row_ids()
        ids = {row_id: key for key in keys if (row_id := known.get(key)) is not None}
        found: dict[bytes, StoredText] = {}
        listed = list(ids)
        for start in range(0, len(listed), _CHUNK):
            chunk = listed[start : start + _CHUNK]
            sql = f"SELECT id, edge FROM edges WHERE id IN ({', '.join('?' * len(chunk))})"  # noqa: S608
            found.update((ids[row_id], StoredText(text)) for row_id, text in self._db.execute(sql, chunk))
        return found

    def put(self, writes: Sequence[EdgeWrite]) -> set[bytes]:
        known = self._row_ids()
        next_id = self.added[-1][1] + 1 if self.added else self._keys.next_id(self._db)
        rows, updates = [], []
        for write in writes:
            edge = write.record
            row_id = known.get(edge.key)
            if row_id is None:
                rows.append(edge_row(next_id, self._cluster, edge))
                self.added.append((edge.key, next_id))
                next_id += 1
            else:
                f = filter_fields(edge.doc)
                updates.append((edge.text, methods_json(f.methods), f.last_seen, edge.doc.live, row_id))
        self._db.executemany(INSERT_EDGE, rows)
        self._db.executemany(_UPDATE_EDGE, updates)
        self.writes += len(writes)
        return set()  # one transaction: nothing changes under it

    def mark(self, now: float, digest: str) -> bool:
        marked = self._db.execute(
            "INSERT OR IGNORE INTO batches VALUES (?, ?, ?, ?, ?)", (*self._where, now, digest)
        )
        self.writes += marked.rowcount
        return bool(marked.rowcount)


def edges_query(tenant_id: str, filters: EdgeFilters) -> tuple[str, list[Any]]:
    """The SELECT of a tenant's ``(cluster id, text, heartbeat)`` rows that pass ``filters``, and
    its parameters."""
    where, params = ["c.tenant_id = ?"], list[Any]([tenant_id])
    if (cluster_ids := filters.get("cluster_ids")) is not None:
        where.append("c.id IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(list(cluster_ids)))
    kept, kept_params = filter_clauses(filters)
    sql = "SELECT c.id, edge, c.heartbeat FROM edges JOIN clusters c ON c.num = edges.cluster WHERE "
    return sql + " AND ".join(where + kept), params + kept_params


def filter_clauses(filters: EdgeFilters) -> tuple[list[str], list[Any]]:
    """The WHERE terms (ANDed) of ``filters`` but ``cluster_ids`` and ``clients`` (applied in the
    shared layer), over ``edges`` joined with its cluster as ``c`` (the heartbeat), and their
    parameters."""
    namespaces, workload = filters.get("namespaces"), filters.get("workload")
    where, params = list[str](), list[Any]()
    given = list[tuple[str, Any]]()
    if namespaces is not None:
        given.append(("namespace IN (SELECT value FROM json_each(?))", json.dumps(sorted(set(namespaces)))))
    if workload is not None:
        given.append(("name = ?", workload))
    if given:  # the client side or the target side matches every given field
        sides = [" AND ".join(f"{side}_{term}" for term, _ in given) for side in ("client", "target")]
        where.append("((" + ") OR (".join(sides) + "))")
        params.extend([v for _, v in given] * 2)
    if (method := filters.get("method")) is not None:
        where.append("EXISTS (SELECT 1 FROM json_each(methods) WHERE value = ?)")
        params.append(method)
    if (since := filters.get("since")) is not None:
        where.append("(last_seen >= ? OR (live AND c.heartbeat >= ?))")
        params.extend((since, since))
    return where, params


def rekey_edges(db: sqlite3.Connection) -> None:
    """Migration: edges written before the edge codec (their text the old JSON export form, without
    ``live``; their key a SHA-256 of another JSON) get the codec's canonical text (with the row's
    ``live`` flag), its key and their filter columns from it."""
    rows = db.execute("SELECT id, cluster, edge, live FROM edges ORDER BY id").fetchall()
    seen: set[tuple[int, bytes]] = set()
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start : start + _CHUNK]
        texts = [text.encode() if isinstance(text, str) else text for _, _, text, _ in chunk]
        updates = []
        docs = upgraded(texts, [bool(live) for *_, live in chunk])
        for (row_id, cluster, _, _), doc in zip(chunk, docs, strict=True):
            key = edge_key(doc)
            if (cluster, key) in seen:  # old keys were unique per cluster, and so are their edges
                raise StoreError(f"edge row {row_id} repeats an edge of cluster {cluster}")
            seen.add((cluster, key))
            f = filter_fields(doc)
            updates.append((key, wire.encode(doc), methods_json(f.methods), f.last_seen, row_id))
        db.executemany("UPDATE edges SET key = ?, edge = ?, methods = ?, last_seen = ? WHERE id = ?", updates)
