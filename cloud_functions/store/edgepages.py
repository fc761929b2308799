"""Pages cut from a tenant's clusters' edges: the part of :meth:`GraphStore.edges_page
<cloud_functions.store.base.GraphStore.edges_page>` both stores share.

Rows come from a store's readers, one per cluster (:class:`ClusterReader`: SQLite keyset queries,
:mod:`cloud_functions.store.sqlitepages`; DynamoDB Query pages, :mod:`cloud_functions.store.dynamopages`),
each in its cluster's order of positions, starting where :func:`start` says. :func:`cut` merges them
into the order a :class:`~cloud_functions.store.base.PageOrder` asks for, cuts a page of at most
``limit`` rows where that order allows a cut, and gives the rows and the position the next page
starts after; the store decodes the rows (:func:`cloud_functions.store.storedform.in_order`). Pure:
the readers do the I/O, and are asked for about ``limit`` rows in all. The one filter no store
applies in its queries, ``clients`` (a DynamoDB index by workload holds no filter fields), is
applied here to each reader's rows (:func:`selected`), before the cut, so pages stay full.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cloud_functions.store.base import (
    GROUPED_FILTERS,
    GROUPED_ORDERS,
    MAX_PAGE,
    BadPosition,
    ClientSelection,
    Invalid,
    PageOrder,
    PagePosition,
    Place,
    check_filters,
)
from cloud_functions.store.storedform import client_of


@dataclass(frozen=True, slots=True)
class PagedRow:
    """A stored edge as a page read meets it: its cluster, its position in its cluster's order
    (in a grouped order: the workload's position, then the edge's key), its stored text, and its
    cluster's heartbeat (to apply liveness when decoding)."""

    cluster_id: str
    at: Place
    text: bytes
    heartbeat: float | None


class ClusterReader(Protocol):
    """One cluster's rows in position order, read on from where the reader started."""

    def read(self, n: int) -> list[PagedRow]:
        """The next rows: at most ``n``, and at least one unless none are left."""


@dataclass(frozen=True, slots=True)
class Start:
    """Where a cluster's reader starts: after ``at`` (None: at the beginning), and, when
    ``past_group``, after every edge of the workload ``at`` names (a grouped order's cursor)."""

    at: Place | None
    past_group: bool = False


@dataclass(frozen=True, slots=True)
class Cut:
    """A page's rows in page order, where the next page starts after (None: none follows), and
    how many rows the readers returned to cut it."""

    rows: tuple[PagedRow, ...]
    next: PagePosition | None
    rows_read: int


def check_page(order: PageOrder, limit: int, filters: Mapping[str, Any]) -> None:
    """:class:`Invalid` unless ``limit`` is in [1, MAX_PAGE], a grouped order has no filter but
    ``cluster_ids`` and ``clients`` (their readers go through indexes that hold no filter fields),
    and the filters are ones a store takes (:func:`~cloud_functions.store.base.check_filters`)."""
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid(f"a page limit must be in [1, {MAX_PAGE}], got {limit}")
    given = (name for name, value in filters.items() if value is not None)
    extra = sorted(name for name in given if name not in GROUPED_FILTERS)
    if order in GROUPED_ORDERS and extra:
        raise Invalid(f"{order} pages take no filter but cluster_ids and clients, got {', '.join(extra)}")
    check_filters(filters)


class _Selected:
    """:class:`ClusterReader` of the rows of ``reader`` whose edge's client ``selection`` keeps
    (read from the row's text; a text that does not decode is left out, as reading it back would)."""

    def __init__(self, reader: ClusterReader, selection: ClientSelection) -> None:
        self._reader, self._selection = reader, selection

    def read(self, n: int) -> list[PagedRow]:
        while got := self._reader.read(n):
            kept = [row for row in got if (client := client_of(row.text)) and self._selection.keeps(*client)]
            if kept:
                return kept
        return []


def selected(reader: ClusterReader, filters: Mapping[str, Any]) -> ClusterReader:
    """``reader``, less the rows the ``clients`` filter leaves out (``reader`` itself without one)."""
    selection = filters.get("clients")
    return reader if selection is None else _Selected(reader, selection)


def check_place(at: Place, shape: Sequence[type], what: str) -> Place:
    """``at`` if it has ``shape`` (the types of its parts, in order); :class:`BadPosition` if not."""
    if len(at) != len(shape) or not all(type(part) is kind for part, kind in zip(at, shape, strict=False)):
        raise BadPosition(f"not a position of {what}")
    return at


def start(order: PageOrder, after: PagePosition | None, cluster_id: str) -> Start | None:
    """Where the reader of ``cluster_id`` starts for a page after ``after``; None: the cluster
    lies wholly before it (in :attr:`PageOrder.CLUSTER` order, clusters come one after another)."""
    if after is None:
        return Start(None)
    if order is not PageOrder.CLUSTER:
        return Start(after.at, past_group=order in GROUPED_ORDERS)
    if cluster_id < after.cluster_id:
        return None
    return Start(after.at if cluster_id == after.cluster_id else None)


def cut(readers: Sequence[ClusterReader], order: PageOrder, limit: int) -> Cut:
    """The next page from the clusters' readers (in cluster id order), in ``order``."""
    if order is PageOrder.CLUSTER:
        return _one_cluster_after_another(readers, limit)
    group: Callable[[PagedRow], Place] = (
        (lambda row: row.at) if order is PageOrder.EDGE else (lambda row: row.at[:-1])
    )
    return _merged(readers, group, limit)


def _one_cluster_after_another(readers: Sequence[ClusterReader], limit: int) -> Cut:
    """Each cluster's rows in turn, asking for one row more than the page holds: that one says
    whether a next page exists. Every row is its own unit, so the page may end anywhere."""
    rows: list[PagedRow] = []
    for reader in readers:
        while len(rows) <= limit and (got := reader.read(limit + 1 - len(rows))):
            rows += got
        if len(rows) > limit:
            last = rows[limit - 1]
            return Cut(tuple(rows[:limit]), PagePosition(last.cluster_id, last.at), len(rows))
    return Cut(tuple(rows), None, len(rows))


def _merged(readers: Sequence[ClusterReader], group: Callable[[PagedRow], Place], limit: int) -> Cut:
    """The clusters' rows merged by position, taken a unit (rows of one ``group``) at a time while
    the page has room for the whole unit; a unit larger than ``limit`` fills a page alone.

    Each reader is asked for its share of the page at a time, so a page reads about ``limit``
    rows, plus at most a share per cluster and the rows of the unit that did not fit. Readers
    need only keep a unit's rows together (a DynamoDB index orders rows of one workload in no
    documented way): the merge then keeps each unit's rows together too."""
    share = max(1, -(-(limit + 1) // max(1, len(readers))))
    counted = [0]

    def rows_of(reader: ClusterReader) -> Iterator[PagedRow]:
        while got := reader.read(share):
            counted[0] += len(got)
            yield from got

    merged = heapq.merge(*(rows_of(r) for r in readers), key=lambda row: (row.at, row.cluster_id))
    page: list[PagedRow] = []
    unit: list[PagedRow] = []
    more = False
    for row in merged:
        if unit and group(row) != group(unit[0]):
            page += unit
            unit = []
            if len(page) >= limit:
                more = True
                break
        unit.append(row)
        if page and len(page) + len(unit) > limit:  # no room for this unit: it starts the next page
            more = True
            break
    else:
        page += unit
    return Cut(tuple(page), PagePosition("", group(page[-1])) if more else None, counted[0])
