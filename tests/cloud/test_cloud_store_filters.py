"""The shared store suite, the filters the console needs, on both stores (the ``store`` fixture:
SQLite and DynamoDB Local): several namespaces at once (each store's own query terms; DynamoDB's
``IN`` lists, split past 99 values), and a selection of clients (the shared layer's, from the
edge's text), unpaged here (pages: ``test_cloud_store_pages``)."""

from __future__ import annotations

from typing import Any

import pytest
from test_cloud_store_suite import T0, edge, graph, ingest, setup, wl

from agent.model import InternetTarget, Method
from cloud_functions.store.base import MAX_FILTER_NAMESPACES, ClientSelection, GraphStore, Invalid


@pytest.fixture
def filtered(store: GraphStore) -> GraphStore:
    """Four edges in two clusters: shop→shop, data→data, shop→data, shop→Internet "data"."""
    setup(store, "t1", ("c1", "c2"))
    fe_cart = edge("frontend", "cartservice", methods=(Method.TCP, Method.DNS), last=T0 + 100)
    cart_redis = edge("cartservice", "redis", ns="data", methods=(Method.SOCKET_SCAN,), last=T0 + 50)
    cross = edge("frontend", wl("cartservice", "data"), methods=(Method.ISTIO,), last=T0 + 10)
    internet = edge("frontend", InternetTarget("data", (), 443), methods=(Method.DNS,), last=T0 + 200)
    ingest(store, "t1", "c1", "b1", [fe_cart, cart_redis, internet], T0)
    ingest(store, "t1", "c2", "b1", [cross], T0)
    setup(store, "t2", ("c3",))
    ingest(store, "t2", "c3", "b1", [edge("frontend", "secret")], T0)
    return store


def keys(store: GraphStore, **filters: Any) -> set[tuple[str, str, str]]:
    return {(c, str(e.client), str(e.target)) for c, e in graph(store, **filters)}


DATA = {("c1", "cartservice.data", "redis.data"), ("c2", "frontend.shop", "cartservice.data")}


def test_several_namespaces(filtered: GraphStore) -> None:
    """The client's or a workload target's namespace is one of them; an empty list: nothing."""
    assert keys(filtered, namespaces=["data"]) == DATA
    assert len(keys(filtered, namespaces=["data", "shop"])) == 4
    assert keys(filtered, namespaces=("nope", "data", "data")) == DATA
    assert keys(filtered, namespaces=[]) == set()
    assert keys(filtered, namespaces=["data", "nope"], workload="cartservice") == DATA
    assert keys(filtered, namespaces=["data", "shop"], method="istio", since=T0 + 5, cluster_ids=["c2"]) == {
        ("c2", "frontend.shop", "cartservice.data")
    }


def test_as_many_namespaces_as_a_filter_takes(filtered: GraphStore) -> None:
    others = [f"ns{i}" for i in range(MAX_FILTER_NAMESPACES - 1)]  # with one more: past one IN list
    assert keys(filtered, namespaces=[*others, "data"]) == DATA
    assert keys(filtered, namespaces=[*others, "shop"], workload="cartservice") == {
        ("c1", "frontend.shop", "cartservice.shop")
    }
    with pytest.raises(Invalid, match="namespaces"):
        keys(filtered, namespaces=[*others, "data", "shop"])


def test_a_selection_of_clients(filtered: GraphStore) -> None:
    """The selection's workloads, and every client in its namespaces; targets never count."""
    assert keys(filtered, clients=ClientSelection(namespaces=frozenset({"data"}))) == {
        ("c1", "cartservice.data", "redis.data")
    }
    frontend = ClientSelection(workloads=frozenset({("shop", "frontend")}))
    assert len(keys(filtered, clients=frontend)) == 3
    assert keys(filtered, clients=ClientSelection(workloads=frozenset({("data", "frontend")}))) == set()
    assert keys(filtered, clients=ClientSelection()) == set()
    both = ClientSelection(frozenset({("shop", "frontend")}), frozenset({"data"}))
    assert len(keys(filtered, clients=both)) == 4
    istio = {("c2", "frontend.shop", "cartservice.data")}
    assert keys(filtered, clients=both, cluster_ids=["c2"], method="istio") == istio
    assert keys(filtered, clients=both, namespaces=["data"]) == DATA


def test_filters_stay_in_the_tenant(filtered: GraphStore) -> None:
    assert graph(filtered, "t2", namespaces=["data"]) == []
    assert graph(filtered, "t1", namespaces=["shop"], workload="secret") == []
    picked = ClientSelection(namespaces=frozenset({"shop"}))
    assert {str(e.target) for _, e in graph(filtered, "t2", clients=picked)} == {"secret.shop"}
