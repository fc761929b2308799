"""What both cloud stores keep of a cluster's coverage: the newest document its mapper uploaded.

The document comes from the coverage handler (:mod:`cloud_functions.handlers.coverage`: a
mapper's ``POST /v1/coverage``, :mod:`agent.mapper.coverage`'s document, checked and re-encoded
there) and goes back to the tenant's readers as the bytes that were put. One per cluster: a put
replaces the previous one (coverage is "now", not a history). Kept compressed (:func:`packed`),
at most :data:`MAX_PACKED_BYTES`, so one item of DynamoDB holds it.

The SQLite rows (``coverage``, :data:`COVERAGE_TABLE`, created by
:mod:`cloud_functions.store.sqliteschema`) and the DynamoDB item (:class:`DynamoCoverage`) are both
here: one row or item each, read and written whole.
"""

from __future__ import annotations

import sqlite3
import zlib

from cloud_functions.store.base import Invalid, NotFound
from cloud_functions.store.dynamoitems import float_of, item_key, number, tenant_pk
from cloud_functions.store.dynamotable import DynamoTable

MAX_PACKED_BYTES = 300_000
"""A coverage document's compressed size at most (a DynamoDB item holds 400 KB)."""

COVERAGE_TABLE = """
CREATE TABLE coverage (
    cluster INTEGER PRIMARY KEY REFERENCES clusters(num), received_at REAL NOT NULL, document BLOB NOT NULL
)
"""
COVERAGE_PREFIX, COVERAGE_SK = "COVERAGE#", "COVERAGE"


def packed(document: bytes) -> bytes:
    """The stored form of a document; :class:`Invalid` beyond :data:`MAX_PACKED_BYTES`."""
    blob = zlib.compress(document, 6)
    if len(blob) > MAX_PACKED_BYTES:
        raise Invalid(
            f"the coverage document takes {len(blob)} bytes compressed, more than {MAX_PACKED_BYTES}"
        )
    return blob


# ---------------------------------------------------------------- SQLite (on the store's connection)


def sqlite_put(db: sqlite3.Connection, cluster: int, received_at: float, document: bytes) -> None:
    """Replace the cluster's coverage (inside the store's write transaction)."""
    db.execute("INSERT OR REPLACE INTO coverage VALUES (?, ?, ?)", (cluster, received_at, packed(document)))


def sqlite_get(db: sqlite3.Connection, cluster: int) -> tuple[float, bytes] | None:
    row = db.execute("SELECT received_at, document FROM coverage WHERE cluster = ?", (cluster,)).fetchone()
    return None if row is None else (float(row[0]), zlib.decompress(bytes(row[1])))


# ---------------------------------------------------------------- DynamoDB

# PK COVERAGE#<tenant>#<cluster>, SK COVERAGE: received_at, body (the packed document).


class DynamoCoverage:
    """The coverage items of ``table``'s clusters (``get_item`` and ``put_item`` only)."""

    def __init__(self, table: DynamoTable) -> None:
        self._table = table

    def _pk(self, tenant_id: str, cluster_id: str) -> str:
        """The cluster's coverage key; :class:`NotFound` if the tenant has no such cluster."""
        if self._table.get(tenant_pk(tenant_id), f"CLUSTER#{cluster_id}") is None:
            raise NotFound(f"no cluster {cluster_id!r} in tenant {tenant_id!r}")
        return f"{COVERAGE_PREFIX}{tenant_id}#{cluster_id}"

    def put(self, tenant_id: str, cluster_id: str, received_at: float, document: bytes) -> None:
        item = item_key(self._pk(tenant_id, cluster_id), COVERAGE_SK) | {
            "received_at": number(received_at),
            "body": {"B": packed(document)},
        }
        self._table.call("put_item", 1, Item=item)

    def get(self, tenant_id: str, cluster_id: str) -> tuple[float, bytes] | None:
        item = self._table.get(self._pk(tenant_id, cluster_id), COVERAGE_SK)
        if item is None:
            return None
        return float_of(item, "received_at"), zlib.decompress(bytes(item["body"]["B"]))
