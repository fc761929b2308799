"""The DynamoDB store's schema versions: the migrations of an older table, run (:func:`migrate`)
when :class:`~cloud_functions.store.dynamodb.DynamoGraphStore` opens it.

The ``SCHEMA``/``VERSION`` item records the version of the table's items (no item: version 1).
Each step newer than it runs and then records its version, so a migration cut short resumes at
its first unrecorded step; a newer table is refused. Several Lambda containers may open an old
table at once, so every step must be idempotent and safe to run concurrently (conditional writes
of the new form). To add one: a function taking the table from the previous version, appended to
:data:`MIGRATIONS`.
"""

from __future__ import annotations

import contextlib

from cloud_functions.store.base import Step, StoreError, check_version
from cloud_functions.store.dynamoitems import (
    CLIENT_GROUP,
    EDGE_PREFIX,
    GROUP_INDEXES,
    SERVER_GROUP,
    Item,
    bool_of,
    edge_sk,
    group_value,
    item_key,
    item_version,
    string,
    text_of,
    version_item,
)
from cloud_functions.store.dynamotable import ConditionFailed, DynamoTable, EdgeItems
from cloud_functions.store.ingestion import MERGE_ATTEMPTS, coalesce, merge_stored
from cloud_functions.store.storedform import edge_key, upgraded


def migrate(table: DynamoTable) -> None:
    """Run each step of :data:`MIGRATIONS` newer than the table's version, recording each after it."""
    version = item_version(table.get("SCHEMA", "VERSION"))
    check_version(version, SCHEMA_VERSION, f"dynamodb {table.name}")
    for step in MIGRATIONS:
        if step.version > version:
            step.run(table)
            rises = "attribute_not_exists(PK) OR version < :v"
            with contextlib.suppress(ConditionFailed):  # another container recorded it already
                table.call(
                    "put_item",
                    Item=version_item(step.version),
                    ConditionExpression=rises,
                    ExpressionAttributeValues={":v": {"N": str(step.version)}},
                )


def _owner_tokens(table: DynamoTable) -> None:
    """Both items of each ``read`` token (``TOKEN#<hash>`` and ``TOKENID#<id>``) become ``owner``."""
    names, read = {"#role": "role"}, {":read": string("read")}
    found = table.scan(
        ProjectionExpression="PK, SK",
        FilterExpression="#role = :read",
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=read,
    )
    for item in found:
        # The condition keeps a token revoked meanwhile revoked (no half item is created), and
        # makes a second container's pass over the same token a no-op.
        with contextlib.suppress(ConditionFailed):
            table.call(
                "update_item",
                Key=item_key(item["PK"]["S"], item["SK"]["S"]),
                UpdateExpression="SET #role = :owner",
                ConditionExpression="#role = :read",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=read | {":owner": string("owner")},
            )


def _rekey_edges(table: DynamoTable) -> None:
    """Edge items written before the edge codec (their text the old JSON export form, without
    ``live``; their key a SHA-256 of another JSON) are merged into items under their codec key,
    with the codec's text, and deleted. The merge is conditional puts, and an old item that
    changed meanwhile is merged again before it goes."""
    graphs: dict[str, list[Item]] = {}
    edges = {"ExpressionAttributeValues": {":edge": string(EDGE_PREFIX)}}
    for item in table.scan(FilterExpression="begins_with(SK, :edge)", **edges):
        graphs.setdefault(item["PK"]["S"], []).append(item)
    for graph, items in graphs.items():
        pending = items
        for _ in range(MERGE_ATTEMPTS):
            docs = upgraded(
                [text_of(i, "edge").encode() for i in pending], [bool_of(i, "live") for i in pending]
            )
            old = [(i, d) for i, d in zip(pending, docs, strict=True) if i["SK"]["S"] != edge_sk(edge_key(d))]
            merge_stored(EdgeItems(table, graph, counted=0), coalesce([doc for _, doc in old]))
            pending = [again for item, _ in old if (again := _delete_edge(table, item)) is not None]
            if not pending:
                break
        else:
            raise StoreError(f"dynamodb {table.name}: edges of {graph} kept changing while re-keyed")


def _delete_edge(table: DynamoTable, item: Item) -> Item | None:
    """Delete an edge item of the version read; the item as it is now if it changed meanwhile."""
    pk, sk = item["PK"]["S"], item["SK"]["S"]
    try:
        table.call(
            "delete_item",
            Key=item_key(pk, sk),
            ConditionExpression="attribute_not_exists(PK) OR v = :v",
            ExpressionAttributeValues={":v": item["v"]},
        )
    except ConditionFailed:
        return table.get(pk, sk)
    return None


def _group_indexes(table: DynamoTable) -> None:
    """The indexes by workload, and on each edge item written before them the values they index
    (from its filter attributes: an item's workloads never change, so no version check). An edge
    item rewritten meanwhile by this code has them already; one rewritten by older code still
    running (a deploy under way) would lack them until its next write."""
    table.add_indexes(GROUP_INDEXES)
    missing = {":edge": string(EDGE_PREFIX)}
    found = table.scan(
        ProjectionExpression="PK, SK, cns, cname, tns, tname",
        FilterExpression=f"begins_with(SK, :edge) AND attribute_not_exists({CLIENT_GROUP})",
        ExpressionAttributeValues=missing,
    )
    for item in found:
        groups = {":c": string(group_value(text_of(item, "cns")[1:], text_of(item, "cname")[1:]))}
        update = f"SET {CLIENT_GROUP} = :c"
        if "tns" in item and "tname" in item:
            groups[":s"] = string(group_value(text_of(item, "tns")[1:], text_of(item, "tname")[1:]))
            update += f", {SERVER_GROUP} = :s"
        with contextlib.suppress(ConditionFailed):  # deleted meanwhile: nothing to index
            table.call(
                "update_item",
                Key=item_key(item["PK"]["S"], item["SK"]["S"]),
                UpdateExpression=update,
                ConditionExpression="attribute_exists(PK)",
                ExpressionAttributeValues=groups,
            )


MIGRATIONS: tuple[Step[DynamoTable], ...] = (
    Step(2, _owner_tokens, "read tokens become owner tokens"),
    Step(3, _rekey_edges, "edges: the edge codec's canonical text (with live) and key"),
    Step(4, _group_indexes, "edges: indexes by client and by workload target, for paged reads"),
)
SCHEMA_VERSION = MIGRATIONS[-1].version
