"""The DynamoDB store's snapshot items (:mod:`cloud_functions.store.snapshots` says what is kept).

A cluster's snapshots are a partition of their own, beside its graph::

    PK                              SK                              attributes
    SNAPSHOTS#<tenant>#<cluster>    SNAPSHOT#<name>                 taken_at, auto, edges, received_at,
                                                                    rev, parts
    SNAPSHOTS#<tenant>#<cluster>    PART#<name>#<rev>#<part, 2 hex> body (bytes: PART_BYTES at most)

The compressed document is cut into parts (an item holds at most 400 KB). A put writes the new
revision's parts first and its ``SNAPSHOT#`` item last, then deletes the replaced revision's
parts: a reader that finds the record finds its parts, unless a put replaced them between its
two reads (it reads again then). The calls are the table's (``get_item``, ``put_item``,
``delete_item``, ``query``): no action the role lacks.
"""

from __future__ import annotations

import uuid

from cloud_functions.store.base import NotFound, StoreError
from cloud_functions.store.dynamoitems import Item, bool_of, float_of, item_key, number, tenant_pk
from cloud_functions.store.dynamotable import DynamoTable
from cloud_functions.store.snapshots import SnapshotRecord, newest_first, packed, pruned, unpacked

PART_BYTES = 300_000
RECORD_PREFIX, PART_PREFIX = "SNAPSHOT#", "PART#"
READ_ATTEMPTS = 3  # reads of a snapshot that a concurrent put replaced under the reader


def snapshots_pk(tenant_id: str, cluster_id: str) -> str:
    return f"SNAPSHOTS#{tenant_id}#{cluster_id}"


def _record(item: Item) -> SnapshotRecord:
    return SnapshotRecord(
        str(item["SK"]["S"]).removeprefix(RECORD_PREFIX),
        float_of(item, "taken_at"),
        bool_of(item, "auto"),
        int(item["edges"]["N"]),
        float_of(item, "received_at"),
    )


def _part_prefix(name: str, rev: str) -> str:
    return f"{PART_PREFIX}{name}#{rev}#"


class DynamoSnapshots:
    """The snapshots of ``table``'s clusters."""

    def __init__(self, table: DynamoTable) -> None:
        self._table = table

    def _require_cluster(self, tenant_id: str, cluster_id: str) -> str:
        """The cluster's snapshots partition; :class:`NotFound` if the tenant has no such cluster."""
        if self._table.get(tenant_pk(tenant_id), f"CLUSTER#{cluster_id}") is None:
            raise NotFound(f"no cluster {cluster_id!r} in tenant {tenant_id!r}")
        return snapshots_pk(tenant_id, cluster_id)

    def put(
        self, tenant_id: str, cluster_id: str, record: SnapshotRecord, document: bytes, keep: int
    ) -> list[str]:
        pk = self._require_cluster(tenant_id, cluster_id)
        blob, rev = packed(document), uuid.uuid4().hex
        parts = [blob[i : i + PART_BYTES] for i in range(0, len(blob), PART_BYTES)] or [b""]
        for index, part in enumerate(parts):
            key = item_key(pk, f"{_part_prefix(record.name, rev)}{index:02x}")
            self._table.call("put_item", 1, Item=key | {"body": {"B": part}})
        item = item_key(pk, RECORD_PREFIX + record.name) | {
            "taken_at": number(record.taken_at),
            "auto": {"BOOL": record.auto},
            "edges": {"N": str(record.edges)},
            "received_at": number(record.received_at),
            "rev": {"S": rev},
            "parts": {"N": str(len(parts))},
        }
        replaced = self._table.call("put_item", 1, Item=item, ReturnValues="ALL_OLD").get("Attributes")
        if replaced is not None:
            self._delete_parts(pk, record.name, str(replaced["rev"]["S"]))
        kept = list(self._table.query(pk, RECORD_PREFIX))
        gone = set(pruned((_record(i) for i in kept), keep))
        for old in kept:
            name = _record(old).name
            if name in gone:
                self._table.call("delete_item", 1, Key=item_key(pk, RECORD_PREFIX + name))
                self._delete_parts(pk, name, str(old["rev"]["S"]))
        return sorted(gone)

    def _delete_parts(self, pk: str, name: str, rev: str) -> None:
        for part in list(self._table.query(pk, _part_prefix(name, rev), ProjectionExpression="PK, SK")):
            self._table.call("delete_item", 1, Key=item_key(pk, part["SK"]["S"]))

    def records(self, tenant_id: str, cluster_id: str) -> list[SnapshotRecord]:
        pk = self._require_cluster(tenant_id, cluster_id)
        return newest_first(_record(item) for item in self._table.query(pk, RECORD_PREFIX))

    def document(self, tenant_id: str, cluster_id: str, name: str) -> tuple[SnapshotRecord, bytes] | None:
        pk = self._require_cluster(tenant_id, cluster_id)
        for _ in range(READ_ATTEMPTS):
            item = self._table.get(pk, RECORD_PREFIX + name)
            if item is None:
                return None
            parts = list(self._table.query(pk, _part_prefix(name, str(item["rev"]["S"]))))
            if len(parts) == int(item["parts"]["N"]):
                blob = b"".join(bytes(p.get("body", {}).get("B", b"")) for p in parts)
                return _record(item), unpacked(blob)
        raise StoreError(f"snapshot {name!r} kept changing while read")
