"""The shared store suite, paged reads: ``GraphStore.edges_page`` on both stores (the ``store``
fixture: SQLite and DynamoDB Local), in every order, at several page sizes down to one edge.

Each walk follows ``next`` to the end, and must give exactly the edges of one page as large as
the graph (same edges, same order), each once, with every unit the order keeps together (an edge
across clusters; a client; a server) on one page, and no page reading much more than its limit."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import pytest
from test_cloud_store_suite import T0, edge, fat_edge, ingest, setup, wl

from agent import wire
from agent.model import AwsTarget, Edge, InternetTarget, Method, WorkloadIdentity
from cloud_functions.store.base import (
    MAX_PAGE,
    BadPosition,
    ClientSelection,
    EdgePage,
    GraphStore,
    Invalid,
    PageOrder,
    PagePosition,
    StoredEdge,
)
from cloud_functions.store.dynamodb import DynamoGraphStore

CLUSTERS = ("c1", "c2", "c3")
CLIENTS = (
    WorkloadIdentity("shop", "frontend", "Deployment"),
    WorkloadIdentity("shop", "cart", "Deployment"),
    WorkloadIdentity("shop", "cart", "StatefulSet"),  # one namespace and name, two kinds: one unit
    WorkloadIdentity("data", "cart", "Deployment"),
    WorkloadIdentity("batch", "job", "CronJob"),
)
TARGETS: tuple[WorkloadIdentity | InternetTarget | AwsTarget, ...] = (
    wl("redis"),
    wl("db", "data"),
    wl("cart"),
    WorkloadIdentity("shop", "cart", "StatefulSet"),
    InternetTarget("api.example.com", (), 443),
    AwsTarget("arn:aws:s3:::orders"),
)


def graph_edges(cluster: int) -> list[Edge]:
    """Edges of cluster ``cluster`` (0, 1, 2): many keys in every cluster, some in one or two."""
    found = []
    for i, client in enumerate(CLIENTS):
        for j, target in enumerate(TARGETS):
            if (i + j + cluster) % 3 == 0 or (i * j) % 4 == 1:
                method = (Method.DNS, Method.TCP, Method.ISTIO)[(i + cluster) % 3]
                e = edge(methods=(method,), last=T0 + 10 * j + cluster, count=cluster + 1, target=target)
                found.append(dataclasses.replace(e, client=client))
    return found


@pytest.fixture
def paged(store: GraphStore) -> GraphStore:
    setup(store, "t1", CLUSTERS)
    setup(store, "t2", ("c1",))
    for number, cluster in enumerate(CLUSTERS):
        ingest(store, "t1", cluster, "b1", graph_edges(number), T0)
    ingest(store, "t2", "c1", "b1", [edge("elsewhere", "x")], T0)  # another tenant's: never on a page
    return store


def walk(store: GraphStore, order: PageOrder, limit: int, **filters: Any) -> list[EdgePage]:
    pages = [store.edges_page("t1", order, limit=limit, **filters)]
    while (after := pages[-1].next) is not None:
        assert len(pages) < 500, "a walk that does not end"
        pages.append(store.edges_page("t1", order, after=after, limit=limit, **filters))
    return pages


def key(stored: StoredEdge) -> tuple[str, bytes]:
    return stored.cluster_id, wire.encode(wire.to_doc(stored.edge))


def unit(order: PageOrder, stored: StoredEdge) -> object:
    """What a page of ``order`` never splits."""
    e = stored.edge
    if order is PageOrder.EDGE:
        return e.key
    if order is PageOrder.CLIENT:
        return e.client.namespace, e.client.name
    if order is PageOrder.SERVER:
        assert isinstance(e.target, WorkloadIdentity)
        return e.target.namespace, e.target.name
    return key(stored)


def check_walk(store: GraphStore, order: PageOrder, limit: int, **filters: Any) -> list[StoredEdge]:
    """Walk, check every property the module docstring names, and give the edges walked."""
    pages = walk(store, order, limit, **filters)
    walked = [stored for page in pages for stored in page.edges]
    (whole,) = walk(store, order, MAX_PAGE, **filters)
    assert [key(s) for s in walked] == [key(s) for s in whole.edges], "the pages are one page, cut"
    assert len(set(map(key, walked))) == len(walked), "no edge twice"
    expected = [s for s in store.edges("t1", **filters) if order is not PageOrder.SERVER or _to_workload(s)]
    assert Counter(map(key, walked)) == Counter(map(key, expected)), "every edge :meth:`edges` reads"
    largest = max(Counter(unit(order, s) for s in walked).values(), default=0)
    page_of: dict[object, set[int]] = {}
    for number, page in enumerate(pages):
        units = Counter(unit(order, s) for s in page.edges)
        assert len(page.edges) <= limit or len(units) == 1, "over the limit only for one large unit"
        for found in units:
            page_of.setdefault(found, set()).add(number)
        # What a page reads: its own rows, the next unit's (or, one at a time, one row more) and
        # at most a share of the page per cluster, read ahead: about ``limit``, however large the graph.
        assert page.rows_read <= len(page.edges) + largest + limit + 1 + len(CLUSTERS), "about limit rows"
    assert all(len(numbers) == 1 for numbers in page_of.values()), "a unit on one page"
    return walked


def _to_workload(stored: StoredEdge) -> bool:
    return isinstance(stored.edge.target, WorkloadIdentity)


@pytest.mark.parametrize("order", list(PageOrder))
@pytest.mark.parametrize("limit", [1, 2, 7, 1000])
def test_a_walk_reads_each_edge_once_and_keeps_units_whole(
    paged: GraphStore, order: PageOrder, limit: int
) -> None:
    walked = check_walk(paged, order, limit)
    assert walked
    if order is PageOrder.CLUSTER:
        assert [s.cluster_id for s in walked] == sorted(s.cluster_id for s in walked)
    if order is PageOrder.CLIENT:  # workloads in the exporters' order: namespace, then name
        names = [(s.edge.client.namespace, s.edge.client.name) for s in walked]
        assert names == sorted(names)


@pytest.mark.parametrize("order", [PageOrder.CLUSTER, PageOrder.EDGE])
@pytest.mark.parametrize(
    "filters",
    [
        {"cluster_ids": ["c3", "c1"]},
        {"cluster_ids": ["c2", "nope"]},
        {"namespaces": ["data"]},
        {"namespaces": ["batch", "data", "nope"]},
        {"namespaces": ["shop"], "workload": "cart"},
        {"namespaces": []},
        {"clients": ClientSelection(namespaces=frozenset({"data"}))},
        {"clients": ClientSelection(frozenset({("shop", "cart"), ("batch", "job")})), "method": "tcp"},
        {"workload": "cart", "method": "dns"},
        {"since": T0 + 30},
        {"method": ""},
    ],
)
def test_graph_pages_filter_as_the_unpaged_read(
    paged: GraphStore, order: PageOrder, filters: dict[str, Any]
) -> None:
    for limit in (1, 3):
        check_walk(paged, order, limit, **filters)


@pytest.mark.parametrize("order", [PageOrder.CLIENT, PageOrder.SERVER])
def test_grouped_pages_take_clusters(paged: GraphStore, order: PageOrder) -> None:
    walked = check_walk(paged, order, 2, cluster_ids=["c2"])
    assert {s.cluster_id for s in walked} == {"c2"}
    with pytest.raises(Invalid, match="namespace"):
        paged.edges_page("t1", order, limit=5, namespaces=["shop"])


SELECTIONS = [
    ClientSelection(namespaces=frozenset({"data"})),
    ClientSelection(frozenset({("shop", "cart"), ("batch", "job")})),
    ClientSelection(frozenset({("shop", "frontend")}), frozenset({"batch"})),
    ClientSelection(frozenset({("shop", "nope")})),
]


@pytest.mark.parametrize("order", [PageOrder.CLIENT, PageOrder.SERVER])
@pytest.mark.parametrize("selection", SELECTIONS)
def test_grouped_pages_take_a_client_selection(
    paged: GraphStore, order: PageOrder, selection: ClientSelection
) -> None:
    for limit in (1, 2, 5):
        walked = check_walk(paged, order, limit, clients=selection)
        clients = {(s.edge.client.namespace, s.edge.client.name) for s in walked}
        assert all(selection.keeps(*c) for c in clients)
        everything = check_walk(paged, order, MAX_PAGE)
        assert [key(s) for s in walked] == [
            key(s) for s in everything if selection.keeps(s.edge.client.namespace, s.edge.client.name)
        ]
    with_clusters = check_walk(paged, order, 2, clients=selection, cluster_ids=["c2"])
    assert {s.cluster_id for s in with_clusters} <= {"c2"}


def test_pages_filtered_to_few_edges_are_still_full(paged: GraphStore) -> None:
    """Rows the selection leaves out are walked past, not returned as short or empty pages."""
    selection = ClientSelection(namespaces=frozenset({"batch"}))
    wanted = len(paged.edges("t1", clients=selection))
    assert wanted > 2
    pages = walk(paged, PageOrder.CLUSTER, wanted, clients=selection)
    assert [len(p.edges) for p in pages] == [wanted]


def test_positions_and_limits_a_store_does_not_hand_out_are_refused(paged: GraphStore) -> None:
    first = paged.edges_page("t1", PageOrder.EDGE, limit=1)
    assert first.next is not None
    with pytest.raises(BadPosition):  # a graph position in a grouped order
        paged.edges_page("t1", PageOrder.CLIENT, after=first.next, limit=1)
    grouped = paged.edges_page("t1", PageOrder.SERVER, limit=1).next
    assert grouped is not None
    for order in (PageOrder.CLUSTER, PageOrder.EDGE):
        with pytest.raises(BadPosition):
            paged.edges_page("t1", order, after=grouped, limit=1)
    for at in [(), (1,), ("x", b"y", "z", "w")]:
        with pytest.raises(BadPosition):
            paged.edges_page("t1", PageOrder.EDGE, after=PagePosition("", at), limit=1)  # type: ignore[arg-type]
    for limit in (0, -1, MAX_PAGE + 1):
        with pytest.raises(Invalid, match="limit"):
            paged.edges_page("t1", PageOrder.CLUSTER, limit=limit)


def test_a_walk_reads_on_from_its_position_after_a_write(paged: GraphStore) -> None:
    """Keyset pages: an edge added past the position is read, and nothing repeats or goes missing."""
    pages = [paged.edges_page("t1", PageOrder.CLUSTER, limit=4)]
    assert pages[0].next is not None and pages[0].next.cluster_id == "c1"
    ingest(paged, "t1", "c3", "b2", [edge("zz-late", "redis")], T0)
    while (after := pages[-1].next) is not None:
        pages.append(paged.edges_page("t1", PageOrder.CLUSTER, after=after, limit=4))
    walked = [key(s) for page in pages for s in page.edges]
    assert Counter(walked) == Counter(map(key, paged.edges("t1")))


def test_other_tenants_and_empty_graphs(paged: GraphStore) -> None:
    for order in PageOrder:
        assert paged.edges_page("nobody", order, limit=3) == EdgePage((), None, 0)
        t2 = walk(paged, order, 1)
        assert all(s.edge.client.name != "elsewhere" for p in t2 for s in p.edges)


def test_pages_of_more_than_a_query_page(store: GraphStore) -> None:
    """DynamoDB ends a Query at 1 MB: a page of more goes on reading where it ended."""
    setup(store)
    batch = [fat_edge(i) for i in range(500)]
    ingest(store, "t1", "c1", "b1", batch, T0)
    for order in PageOrder:
        pages = walk(store, order, 450)
        assert sum(len(p.edges) for p in pages) == 500
        assert len(pages) == 2


def test_dynamodb_grouped_pages_read_the_indexes(dynamodb_client: Any, dynamodb_table: str) -> None:
    """Grouped orders go through the indexes by workload: every edge item is in ``by_client``,
    edges to workloads (only) in ``by_server``."""
    store = DynamoGraphStore(dynamodb_client, dynamodb_table, workers=1)
    setup(store)
    ingest(store, "t1", "c1", "b1", [edge(target=t) for t in TARGETS], T0)
    for index, expected in (("by_client", len(TARGETS)), ("by_server", 4)):
        found = dynamodb_client.scan(TableName=dynamodb_table, IndexName=index)["Items"]
        assert len(found) == expected
    assert len(walk(store, PageOrder.SERVER, 1)) == 3  # shop/cart (two kinds), data/db, shop/redis
