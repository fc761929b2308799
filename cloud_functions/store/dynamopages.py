"""The DynamoDB store's pages of edges: what ``DynamoGraphStore.edges_page`` returns (:func:`edges_page`).

Rows come from the table (:class:`~cloud_functions.store.dynamotable.DynamoTable`), one reader per
cluster partition, each a run of Query calls with ``Limit`` (what the page still needs) and
``ExclusiveStartKey`` (where the previous call, or the cursor, left off); DynamoDB ends a call at
1 MB too, and the reader goes on with the next. Graph orders read the partition in its own order
(the sort key: the edge's key in hex), filtered server-side
(:func:`~cloud_functions.store.dynamoitems.edge_query`). Grouped orders read an index by workload
(keys only; :data:`~cloud_functions.store.dynamoitems.GROUP_INDEXES`) and then the items it names,
consistently, with BatchGetItem; the ``clients`` selection, which such an index cannot filter, is
the shared layer's (:func:`~cloud_functions.store.edgepages.selected`). :mod:`cloud_functions.store.edgepages`
cuts the page; its rows go back decoded (:func:`~cloud_functions.store.storedform.in_order`).

A position is the edge's 16-byte key; in a grouped order, the workload's index value and the key,
and a page ends after a workload: ``(index value,)``.
"""

from __future__ import annotations

from collections.abc import Sequence

from cloud_functions.store.base import (
    GROUPED_ORDERS,
    Cluster,
    EdgeFilters,
    EdgePage,
    PageOrder,
    PagePosition,
)
from cloud_functions.store.dynamoitems import (
    EDGE_PREFIX,
    GROUP_INDEXES,
    Item,
    edge_query,
    edge_sk,
    graph_pk,
    item_key,
    matches_nothing,
    sk_key,
    string,
    text_of,
)
from cloud_functions.store.dynamotable import DynamoTable
from cloud_functions.store.edgepages import PagedRow, Start, check_page, check_place, cut, selected, start
from cloud_functions.store.storedform import in_order

_INDEX_OF = {PageOrder.CLIENT: "by_client", PageOrder.SERVER: "by_server"}


class DynamoClusterReader:
    """:class:`~cloud_functions.store.edgepages.ClusterReader` of one graph partition, in the
    partition's order (graph orders) or an index's (grouped orders)."""

    def __init__(
        self, table: DynamoTable, cluster: Cluster, order: PageOrder, begin: Start, filters: EdgeFilters
    ) -> None:
        self._table, self._cluster = table, cluster
        self._pk = graph_pk(cluster.tenant_id, cluster.id)
        self._index = _INDEX_OF.get(order)
        self._next: Item | None = None  # ExclusiveStartKey of the next call
        self._done = False
        values = {":pk": string(self._pk)}
        if self._index is None:
            request = edge_query(filters, cluster.heartbeat)
            request["ProjectionExpression"] += ", SK"
            request["KeyConditionExpression"] = "PK = :pk AND begins_with(SK, :prefix)"
            values[":prefix"] = string(EDGE_PREFIX)
            if begin.at is not None:
                self._next = item_key(self._pk, edge_sk(_bytes(begin.at[-1])))
        else:
            request = {"IndexName": self._index, "KeyConditionExpression": "PK = :pk"}
            if begin.at is not None:  # a grouped order's cursor: past that workload's edges
                request["KeyConditionExpression"] += " AND #group > :after"
                request["ExpressionAttributeNames"] = {"#group": GROUP_INDEXES[self._index]}
                values[":after"] = string(str(begin.at[0]))
        request["ExpressionAttributeValues"] = request.get("ExpressionAttributeValues", {}) | values
        self._request = request

    def read(self, n: int) -> list[PagedRow]:
        while not self._done:
            request = self._request | {"Limit": n}
            if self._next is not None:
                request["ExclusiveStartKey"] = self._next
            items, self._next = self._table.query_page(request)
            self._done = self._next is None
            rows = self._edges(items) if self._index is None else self._indexed(items)
            if rows:
                return rows
        return []

    def _edges(self, items: list[Item]) -> list[PagedRow]:
        heartbeat, cluster = self._cluster.heartbeat, self._cluster.id
        return [
            PagedRow(cluster, (sk_key(item["SK"]["S"]),), text_of(item, "edge").encode(), heartbeat)
            for item in items
        ]

    def _indexed(self, entries: list[Item]) -> list[PagedRow]:
        """The edge items an index's entries name (an item deleted since is left out)."""
        attribute = GROUP_INDEXES[str(self._index)]
        found = self._table.batch_get([item_key(self._pk, entry["SK"]["S"]) for entry in entries])
        heartbeat, cluster = self._cluster.heartbeat, self._cluster.id
        return [
            PagedRow(cluster, (entry[attribute]["S"], sk_key(sk)), text_of(item, "edge").encode(), heartbeat)
            for entry in entries
            if (item := found.get(sk := entry["SK"]["S"])) is not None
        ]


def _bytes(part: str | bytes) -> bytes:
    return part if isinstance(part, bytes) else part.encode()


def edges_page(
    table: DynamoTable,
    clusters: Sequence[Cluster],
    order: PageOrder,
    *,
    after: PagePosition | None,
    limit: int,
    filters: EdgeFilters,
) -> EdgePage:
    """The page of :meth:`~cloud_functions.store.base.GraphStore.edges_page` over the tenant's
    ``clusters`` (by id, each with its heartbeat)."""
    check_page(order, limit, filters)
    if after is not None:
        shape = (str,) if order in GROUPED_ORDERS else (bytes,)
        check_place(after.at, shape, f"the dynamodb store's {order} order")
    if matches_nothing(filters):
        return EdgePage((), None, 0)
    wanted = filters.get("cluster_ids")
    chosen = None if wanted is None else set(wanted)
    readers = []
    for cluster in clusters:
        begin = start(order, after, cluster.id)
        if begin is not None and (chosen is None or cluster.id in chosen):
            readers.append(selected(DynamoClusterReader(table, cluster, order, begin, filters), filters))
    page = cut(readers, order, limit)
    edges = in_order((row.cluster_id, row.text, row.heartbeat) for row in page.rows)
    return EdgePage(tuple(edges), page.next, page.rows_read)
