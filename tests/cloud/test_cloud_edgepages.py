"""The page cutter both stores share (:mod:`cloud_functions.store.edgepages`), pure, over readers
of plain lists: for any clusters' rows, order and limit, walking the pages from cursor to cursor
gives every row once, in the order's sequence; no page splits what the order keeps together or
holds more than ``limit`` rows unless one unit alone; and no page reads much more than ``limit``."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_functions.store.base import GROUPED_ORDERS, PageOrder, PagePosition, Place
from cloud_functions.store.edgepages import Cut, PagedRow, Start, cut, start


class ListReader:
    """A cluster's rows (in position order) from where ``begin`` says, as a store reads them."""

    def __init__(self, rows: list[PagedRow], begin: Start) -> None:
        if begin.at is None:
            self.rows = rows
        elif begin.past_group:
            self.rows = [r for r in rows if r.at[:-1] > begin.at]
        else:
            self.rows = [r for r in rows if r.at > begin.at]

    def read(self, n: int) -> list[PagedRow]:
        taken, self.rows = self.rows[:n], self.rows[n:]
        return taken


def unit(order: PageOrder, row: PagedRow) -> object:
    if order is PageOrder.CLUSTER:
        return row.cluster_id, row.at
    return row.at if order is PageOrder.EDGE else row.at[:-1]


def page_after(
    graph: dict[str, list[PagedRow]], order: PageOrder, after: PagePosition | None, limit: int
) -> Cut:
    readers = []
    for cluster in sorted(graph):
        begin = start(order, after, cluster)
        if begin is not None:
            readers.append(ListReader(graph[cluster], begin))
    return cut(readers, order, limit)


places = st.tuples(st.sampled_from(["", "a", "ab", "b", "é"]), st.binary(min_size=1, max_size=1))
clusters = st.dictionaries(
    st.sampled_from(["c1", "c2", "c3", "c4"]), st.sets(places, max_size=25), max_size=4
)


@settings(max_examples=300, deadline=None)
@given(clusters, st.sampled_from(list(PageOrder)), st.integers(1, 12))
def test_walking_the_pages_reads_every_row_once_in_order(
    found: dict[str, set[tuple[str, bytes]]], order: PageOrder, limit: int
) -> None:
    graph = {
        cluster: [PagedRow(cluster, at, b"", None) for at in sorted(ats)] for cluster, ats in found.items()
    }
    rows = [row for cluster_rows in graph.values() for row in cluster_rows]
    if order is PageOrder.CLUSTER:
        expected = sorted(rows, key=lambda row: (row.cluster_id, row.at))
    else:
        expected = sorted(rows, key=lambda row: (row.at, row.cluster_id))
    largest = max(Counter(unit(order, row) for row in rows).values(), default=0)
    pages = [page_after(graph, order, None, limit)]
    while (after := pages[-1].next) is not None:
        assert len(pages) <= len(rows)
        pages.append(page_after(graph, order, after, limit))
    assert [row for page in pages for row in page.rows] == expected
    seen: dict[object, int] = {}
    for number, page in enumerate(pages):
        units = {unit(order, row) for row in page.rows}
        assert len(page.rows) <= limit or len(units) == 1
        for found_unit in units:
            assert seen.setdefault(found_unit, number) == number, "a unit split across pages"
        assert page.rows_read <= len(page.rows) + largest + limit + 1 + len(graph)
    assert all(page.rows for page in pages[:-1]), "only the last page may be empty"


def test_a_grouped_cursor_is_past_the_whole_workload() -> None:
    rows = [PagedRow("c1", ("a", bytes([k])), b"", None) for k in range(5)]
    rows.append(PagedRow("c1", ("b", b"\x00"), b"", None))
    first = cut([ListReader(rows, Start(None))], PageOrder.CLIENT, 2)
    assert len(first.rows) == 5 and first.next == PagePosition("", ("a",)), "one workload, past the limit"
    begin = start(PageOrder.CLIENT, first.next, "c1")
    assert begin == Start(("a",), past_group=True)
    second = cut([ListReader(rows, begin)], PageOrder.CLIENT, 2)
    assert [row.at for row in second.rows] == [("b", b"\x00")] and second.next is None


def test_cluster_order_skips_the_clusters_before_the_cursor() -> None:
    after = PagePosition("c2", ("x",))
    assert start(PageOrder.CLUSTER, after, "c1") is None
    assert start(PageOrder.CLUSTER, after, "c2") == Start(("x",))
    assert start(PageOrder.CLUSTER, after, "c3") == Start(None)
    for order in set(PageOrder) - {PageOrder.CLUSTER}:
        place: Place = ("x",)
        assert start(order, PagePosition("", place), "c1") == Start(place, past_group=order in GROUPED_ORDERS)
