"""Reading the graph: per-cluster edges with their cluster, merged on request, and each filter."""

from __future__ import annotations

from typing import Any

import pytest
from cloud_handler_support import Cloud, cloud_fixture, edge, recorded  # noqa: F401

from agent.wire import EdgeDoc, edge_from_plain


@pytest.fixture
def two_clusters(cloud: Cloud) -> tuple[Cloud, str, str]:
    (first,) = cloud.a.clusters
    second = cloud.new_cluster(cloud.a, "staging")
    cloud.ingest(
        cloud.a,
        first,
        "1",
        [
            edge("frontend", "cart", count=5, http=[{"path": "/cart", "methods": ["GET"]}]),
            edge("cart", "redis", method="dns", last="2025-11-28T05:00:00Z"),
            edge("job", "api", ns="batch", target_ns="shop"),
        ],
    )
    cloud.ingest(
        cloud.a,
        second,
        "1",
        [
            edge("frontend", "cart", count=2, http=[{"path": "/cart", "methods": ["POST"]}]),
            edge("frontend", "ads", method="kafka"),
        ],
    )
    return cloud, first, second


def graph(cloud: Cloud, path: str | None = None, **query: str) -> list[dict[str, Any]]:
    reply = cloud.request(
        "GET", path or f"/v1/tenants/{cloud.a.id}/graph", token=cloud.a.read_token, query=query
    )
    assert reply.status == 200, reply
    body = reply.json()
    assert body["tenantId"] == cloud.a.id
    edges: list[dict[str, Any]] = body["edges"]
    return edges


def pairs(edges: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((e["client"]["name"], e["target"]["name"]) for e in edges)


def test_separate_by_default_each_edge_with_its_cluster(two_clusters: tuple[Cloud, str, str]) -> None:
    cloud, first, second = two_clusters
    edges = graph(cloud)
    assert len(edges) == 5
    assert [e["clusterId"] for e in edges] == sorted(e["clusterId"] for e in edges)
    assert {e["clusterId"] for e in edges if e["client"]["name"] == "frontend"} == {first, second}
    for e in edges:  # the codec's edge document, plus the cluster
        edge_from_plain({k: v for k, v in e.items() if k != "clusterId"})
        assert set(e) == {*EdgeDoc.__struct_fields__, "clusterId"}


def test_merge_true_merges_equal_edges_across_clusters(two_clusters: tuple[Cloud, str, str]) -> None:
    cloud, first, second = two_clusters
    edges = graph(cloud, merge="true")
    assert pairs(edges) == [("cart", "redis"), ("frontend", "ads"), ("frontend", "cart"), ("job", "api")]
    cart = next(e for e in edges if e["target"]["name"] == "cart")
    assert cart["clusterIds"] == sorted([first, second])
    assert cart["count"] == 5  # merge_edges keeps the maximum of cumulative counts
    assert cart["http"] == [{"path": "/cart", "methods": ["GET", "POST"], "principals": [], "statuses": []}]
    assert all("clusterId" not in e for e in edges)


def test_filters(two_clusters: tuple[Cloud, str, str]) -> None:
    cloud, first, second = two_clusters
    assert {e["clusterId"] for e in graph(cloud, cluster=second)} == {second}
    assert len(graph(cloud, cluster=f"{first},{second}")) == 5
    assert graph(cloud, cluster="c_nope") == []
    assert pairs(graph(cloud, namespace="batch")) == [("job", "api")]
    assert pairs(graph(cloud, workload="redis")) == [("cart", "redis")]
    assert pairs(graph(cloud, protocol="kafka")) == [("frontend", "ads")]
    assert pairs(graph(cloud, since="2025-11-28T04:00:00Z")) == [("cart", "redis")]
    assert pairs(graph(cloud, since="1764302400")) == [("cart", "redis")]  # 2025-11-28T04:00:00Z
    assert pairs(graph(cloud, namespace="shop", workload="frontend", merge="true")) == [
        ("frontend", "ads"),
        ("frontend", "cart"),
    ]


def test_several_namespaces(two_clusters: tuple[Cloud, str, str]) -> None:
    """An edge is kept when its client's or its workload target's namespace is one of them."""
    cloud, *_ = two_clusters
    (b_cluster,) = cloud.b.clusters
    cloud.ingest(cloud.b, b_cluster, "1", [edge("elsewhere", "x", ns="batch")])
    assert pairs(graph(cloud, namespace="batch,nope")) == [("job", "api")]
    assert pairs(graph(cloud, namespace="batch,shop")) == pairs(graph(cloud))
    assert pairs(graph(cloud, namespace=" batch , ,shop,batch")) == pairs(graph(cloud))  # spaces, repeats
    assert graph(cloud, namespace="nope,other") == []
    assert graph(cloud, namespace=",") == graph(cloud)  # names none: no filter
    merged = graph(cloud, namespace="shop,batch", workload="api", merge="true")
    assert pairs(merged) == [("job", "api")]
    at_most = ",".join(["batch"] + [f"ns-{i}" for i in range(99)])
    assert pairs(graph(cloud, namespace=at_most)) == [("job", "api")]


@pytest.mark.parametrize(
    "query",
    [
        {"protocol": "smoke-signals"},
        {"since": "last tuesday"},
        {"since": "nan"},
        {"merge": "perhaps"},
        {"namespace": ",".join(f"ns-{i}" for i in range(101))},
        {"namespace": "x" * 8001},
    ],
)
def test_bad_filters_are_422(cloud: Cloud, query: dict[str, str]) -> None:
    reply = cloud.request("GET", f"/v1/tenants/{cloud.a.id}/graph", token=cloud.a.read_token, query=query)
    assert reply.status == 422 and reply.error_code == "validation_error"


def test_own_graph_routes_are_the_callers_tenant(two_clusters: tuple[Cloud, str, str]) -> None:
    cloud, *_ = two_clusters
    assert graph(cloud, "/graph") == graph(cloud) == graph(cloud, "/v1/graph")
    (b_cluster,) = cloud.b.clusters
    cloud.ingest(cloud.b, b_cluster, "1", [edge("bravo-only", "x")])
    reply = cloud.request("GET", "/graph", token=cloud.b.read_token)
    assert pairs(reply.json()["edges"]) == [("bravo-only", "x")]
    assert reply.json()["tenantId"] == cloud.b.id


def test_recorded_graph_events(cloud: Cloud) -> None:
    (token,) = cloud.a.clusters.values()
    assert cloud(recorded("ingest", INGEST_TOKEN=token)).status == 200
    own = cloud(recorded("graph_own", READ_TOKEN=cloud.a.read_token))
    assert own.status == 200 and len(own.json()["edges"]) == 6
    assert all(len(e["clusterIds"]) == 1 for e in own.json()["edges"])
    filtered = cloud(recorded("graph_filtered", READ_TOKEN=cloud.a.read_token, TENANT_ID=cloud.a.id))
    assert filtered.status == 200
    for e in filtered.json()["edges"]:
        assert "tcp" in e["methods"]
        assert "shop" in (e["client"]["namespace"], e["target"].get("namespace"))
