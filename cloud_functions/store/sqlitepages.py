"""The SQLite store's pages of edges: what ``SqliteGraphStore.edges_page`` returns (:func:`edges_page`).

Rows come from the store's file through its ``rows`` function (one SELECT under the store's lock),
read by keyset on an index of :mod:`cloud_functions.store.sqliteschema`: ``edges_by_client`` for
the graph orders and :attr:`~cloud_functions.store.base.PageOrder.CLIENT`, ``edges_by_server`` for
:attr:`~cloud_functions.store.base.PageOrder.SERVER`. Each cluster's reader asks for the rows after
the last one it read, ``ORDER BY`` the index's columns, ``LIMIT`` what the page still needs; never
``OFFSET``, so a page costs the same wherever it lies. :mod:`cloud_functions.store.edgepages` cuts
the page; its rows go back decoded (:func:`~cloud_functions.store.storedform.in_order`).

A position is the client's (SERVER: the target's) namespace and name and the edge's 16-byte key;
a grouped order's page ends after a workload, ``(namespace, name)``. Filters (the graph's) are the
terms of :func:`~cloud_functions.store.sqliteedges.filter_clauses`: a page with a narrow filter
walks the index past the rows it leaves out, as the unpaged read scans them. The ``clients``
selection is the shared layer's (:func:`~cloud_functions.store.edgepages.selected`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from cloud_functions.store.base import GROUPED_ORDERS, EdgeFilters, EdgePage, PageOrder, PagePosition, Place
from cloud_functions.store.edgepages import PagedRow, Start, check_page, check_place, cut, selected, start
from cloud_functions.store.sqliteedges import filter_clauses
from cloud_functions.store.storedform import in_order

Rows = Callable[[str, Sequence[Any]], list[Any]]
"""The store's SELECT: SQL and parameters → rows."""

PAST_EVERY_KEY = b"\xff" * 17
"""Sorts after every 16-byte key: ``(namespace, name, PAST_EVERY_KEY)`` is past a workload's edges."""

_SERVER_COLUMNS = ("target_namespace", "target_name")
_CLIENT_COLUMNS = ("client_namespace", "client_name")


class SqliteClusterReader:
    """:class:`~cloud_functions.store.edgepages.ClusterReader` of one cluster (``cluster``: its
    number, id and heartbeat), from where ``begin`` says."""

    def __init__(
        self,
        rows: Rows,
        cluster: tuple[int, str, float | None],
        order: PageOrder,
        begin: Start,
        filters: EdgeFilters,
    ) -> None:
        self._rows, (self._num, self._id, self._heartbeat) = rows, cluster
        self._columns = _SERVER_COLUMNS if order is PageOrder.SERVER else _CLIENT_COLUMNS
        self._after: Place | None = begin.at
        if begin.at is not None and begin.past_group:
            self._after = (*begin.at, PAST_EVERY_KEY)
        self._where, self._params = filter_clauses(filters)
        if order is PageOrder.SERVER:  # the partial index holds workload targets only
            self._where = ["target_namespace IS NOT NULL", *self._where]

    def read(self, n: int) -> list[PagedRow]:
        namespace, name = self._columns
        where, params = ["edges.cluster = ?", *self._where], [self._num, *self._params]
        if self._after is not None:
            where.append(f"({namespace}, {name}, key) > (?, ?, ?)")
            params.extend(self._after)
        sql = (
            f"SELECT {namespace}, {name}, key, edge FROM edges JOIN clusters c ON c.num = edges.cluster"  # noqa: S608 - columns are ours
            f" WHERE {' AND '.join(where)} ORDER BY {namespace}, {name}, key LIMIT ?"
        )
        found = [
            PagedRow(
                self._id,
                (ns, nm, bytes(key)),
                text if isinstance(text, bytes) else text.encode(),
                self._heartbeat,
            )
            for ns, nm, key, text in self._rows(sql, [*params, n])
        ]
        if found:
            self._after = found[-1].at
        return found


def edges_page(
    rows: Rows,
    tenant_id: str,
    order: PageOrder,
    *,
    after: PagePosition | None,
    limit: int,
    filters: EdgeFilters,
) -> EdgePage:
    """The page of :meth:`~cloud_functions.store.base.GraphStore.edges_page`, read through ``rows``."""
    check_page(order, limit, filters)
    if after is not None:
        grouped = order in GROUPED_ORDERS
        check_place(
            after.at, (str, str) if grouped else (str, str, bytes), f"the sqlite store's {order} order"
        )
    wanted = filters.get("cluster_ids")
    chosen = None if wanted is None else set(wanted)
    readers = []
    clusters = "SELECT num, id, heartbeat FROM clusters WHERE tenant_id = ? ORDER BY id"
    for num, cluster_id, heartbeat in rows(clusters, (tenant_id,)):
        begin = start(order, after, cluster_id)
        if begin is not None and (chosen is None or cluster_id in chosen):
            reader = SqliteClusterReader(rows, (num, cluster_id, heartbeat), order, begin, filters)
            readers.append(selected(reader, filters))
    page = cut(readers, order, limit)
    edges = in_order((row.cluster_id, row.text, row.heartbeat) for row in page.rows)
    return EdgePage(tuple(edges), page.next, page.rows_read)
