"""The graph summary by namespace: the pure aggregation over plain edges (groups, distinct
workloads, links by kind), and the route walking the tenant's pages (edges of several clusters
counted once, filters, tenant rules)."""

from __future__ import annotations

from typing import Any

import pytest
from cloud_handler_support import Cloud, cloud_fixture, demo_edges, edge  # noqa: F401

from agent.model import AwsTarget, Edge, HttpResource, InternetTarget, KafkaTopic, WorkloadIdentity
from agent.wire import edge_from_plain
from cloud_functions.handlers import summary as summary_route
from cloud_functions.handlers.summary import edge_kind, summarize, walk
from cloud_functions.store.base import EdgeFilters

T = 1764296106.0


def wl(name: str, ns: str = "shop", kind: str = "Deployment") -> WorkloadIdentity:
    return WorkloadIdentity(ns, name, kind)


def plain(client: WorkloadIdentity, target: Any, **details: Any) -> Edge:
    return Edge(client, target, T, T, **details)


TOPIC = KafkaTopic("orders", ("produce",))
CART = HttpResource("/cart", ("GET",))


def test_kinds_follow_the_contracts_order() -> None:
    assert edge_kind(plain(wl("a"), wl("b"))) == "tcp"
    assert edge_kind(plain(wl("a"), wl("b"), http=(CART,))) == "http"
    assert edge_kind(plain(wl("a"), wl("b"), http=(CART,), kafka_topics=(TOPIC,))) == "kafka"
    assert edge_kind(plain(wl("a"), AwsTarget("arn:aws:s3:::b"), http=(CART,))) == "aws"
    assert (
        edge_kind(plain(wl("a"), InternetTarget("example.com", (), 443), kafka_topics=(TOPIC,))) == "internet"
    )


def test_summary_of_plain_edges() -> None:
    edges = [
        plain(wl("frontend"), wl("cart")),
        plain(wl("frontend"), wl("cart", kind="StatefulSet")),  # same name, other kind: one workload
        plain(wl("frontend"), wl("checkout"), http=(CART,)),
        plain(wl("checkout"), wl("kafka", "data"), kafka_topics=(TOPIC,)),
        plain(wl("checkout"), wl("kafka", "data"), http=(CART,)),  # no: the same key twice is the caller's
        plain(wl("job", "batch"), InternetTarget("api.example.com", ("1.2.3.4",), 443)),
        plain(wl("job", "batch"), InternetTarget("api.example.com", ("5.6.7.8",), 80)),
        plain(wl("job", "batch"), InternetTarget("", ("9.9.9.9", "8.8.8.8"), 53)),
        plain(wl("job", "batch"), AwsTarget("arn:aws:s3:::orders")),
        plain(wl("cart"), AwsTarget("arn:aws:s3:::orders")),
        plain(wl("cart"), AwsTarget("*")),
    ]
    document = summarize(edges).document("t_x")
    assert document["tenantId"] == "t_x"
    assert document["edges"] == len(edges)
    assert document["groups"] == [
        {"id": "ns:batch", "kind": "namespace", "label": "batch", "workloads": 1},
        {"id": "ns:data", "kind": "namespace", "label": "data", "workloads": 1},
        {"id": "ns:shop", "kind": "namespace", "label": "shop", "workloads": 3},  # frontend cart checkout
        {"id": "internet", "kind": "internet", "label": "Internet", "workloads": 3},  # name, 2 IPs
        {"id": "aws", "kind": "aws", "label": "AWS", "workloads": 2},
    ]
    assert document["links"] == [
        {"source": "ns:batch", "target": "aws", "kind": "aws", "edges": 1},
        {"source": "ns:batch", "target": "internet", "kind": "internet", "edges": 3},
        {"source": "ns:shop", "target": "aws", "kind": "aws", "edges": 2},
        {"source": "ns:shop", "target": "ns:data", "kind": "http", "edges": 1},
        {"source": "ns:shop", "target": "ns:data", "kind": "kafka", "edges": 1},
        {"source": "ns:shop", "target": "ns:shop", "kind": "http", "edges": 1},
        {"source": "ns:shop", "target": "ns:shop", "kind": "tcp", "edges": 2},
    ]
    assert summarize([]).document("t_x") == {"tenantId": "t_x", "groups": [], "links": [], "edges": 0}


def summary(cloud: Cloud, token: str | None = None, tenant: str | None = None, **query: str) -> Any:
    reply = cloud.request(
        "GET",
        f"/v1/tenants/{tenant or cloud.a.id}/graph/summary",
        token=token or cloud.a.read_token,
        query=query,
    )
    assert reply.status == 200, reply
    assert reply.headers["content-type"] == "application/json"
    return reply.json()


@pytest.fixture
def two_clusters(cloud: Cloud) -> tuple[Cloud, str, str]:
    (first,) = cloud.a.clusters
    second = cloud.new_cluster(cloud.a, "staging")
    cloud.ingest(
        cloud.a,
        first,
        "1",
        [
            edge("frontend", "cart", http=[{"path": "/cart", "methods": ["GET"]}]),
            edge("cart", "redis", target_ns="data", method="dns", last="2025-11-28T05:00:00Z"),
            edge("job", "api", ns="batch", target_ns="shop"),
        ],
    )
    cloud.ingest(cloud.a, second, "1", [edge("frontend", "cart"), edge("frontend", "ads", method="kafka")])
    return cloud, first, second


def links(document: dict[str, Any]) -> list[tuple[str, str, str, int]]:
    return [(x["source"], x["target"], x["kind"], x["edges"]) for x in document["links"]]


def test_the_route_counts_an_edge_of_several_clusters_once(two_clusters: tuple[Cloud, str, str]) -> None:
    cloud, first, second = two_clusters
    document = summary(cloud)
    assert document["edges"] == 4
    assert [(g["id"], g["workloads"]) for g in document["groups"]] == [
        ("ns:batch", 1),
        ("ns:data", 1),
        ("ns:shop", 4),  # frontend cart ads api
    ]
    # frontend → cart: HTTP resources in one cluster make the merged edge http
    assert links(document) == [
        ("ns:batch", "ns:shop", "tcp", 1),
        ("ns:shop", "ns:data", "tcp", 1),
        ("ns:shop", "ns:shop", "http", 1),
        ("ns:shop", "ns:shop", "tcp", 1),
    ]
    assert summary(cloud, cluster=second)["edges"] == 2
    assert links(summary(cloud, cluster=second)) == [("ns:shop", "ns:shop", "tcp", 2)]
    assert summary(cloud, cluster=f"{first},{second}") == document
    assert summary(cloud, token=cloud.a.owner_token) == document


def test_the_route_filters(two_clusters: tuple[Cloud, str, str]) -> None:
    cloud, *_ = two_clusters
    assert links(summary(cloud, namespace="batch")) == [("ns:batch", "ns:shop", "tcp", 1)]
    assert summary(cloud, namespace="batch,data")["edges"] == 2
    assert summary(cloud, namespace="batch,data,shop") == summary(cloud)
    assert links(summary(cloud, since="2025-11-28T04:00:00Z")) == [("ns:shop", "ns:data", "tcp", 1)]
    empty = summary(cloud, namespace="nope")
    assert empty == {"tenantId": cloud.a.id, "groups": [], "links": [], "edges": 0}


@pytest.mark.parametrize(
    "query", [{"since": "yesterday"}, {"namespace": ",".join(f"n{i}" for i in range(101))}]
)
def test_bad_filters_are_422(cloud: Cloud, query: dict[str, str]) -> None:
    reply = cloud.request(
        "GET", f"/v1/tenants/{cloud.a.id}/graph/summary", token=cloud.a.read_token, query=query
    )
    assert reply.status == 422 and reply.error_code == "validation_error", reply


def test_the_walk_reads_every_page(cloud: Cloud) -> None:
    (cluster,) = cloud.a.clusters
    second = cloud.new_cluster(cloud.a, "staging")
    edges = demo_edges()
    assert cloud.ingest(cloud.a, cluster, "demo", edges).status == 200
    assert cloud.ingest(cloud.a, second, "demo", edges[: len(edges) // 2]).status == 200
    whole = summarize(edge_from_plain(e) for e in edges).document(cloud.a.id)
    for size in (1, 2, 7):
        assert walk(cloud.store, cloud.a.id, EdgeFilters(), page_size=size).document(cloud.a.id) == whole
    assert summary(cloud) == whole


def test_the_demo_graph_summary(cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(summary_route, "WALK_PAGE", 3)  # several pages through the route too
    (cluster,) = cloud.a.clusters
    assert cloud.ingest(cloud.a, cluster, "demo", demo_edges()).status == 200
    document = summary(cloud)
    assert document["edges"] == len(demo_edges())
    assert sum(x["edges"] for x in document["links"]) == document["edges"]
    assert document == summarize(edge_from_plain(e) for e in demo_edges()).document(cloud.a.id)


def test_tenant_rules(cloud: Cloud) -> None:
    (b_cluster,) = cloud.b.clusters
    cloud.ingest(cloud.b, b_cluster, "1", [edge("secret-client", "secret-server", ns="secret")])
    path = f"/v1/tenants/{cloud.b.id}/graph/summary"
    for token in (cloud.a.read_token, cloud.a.owner_token, *cloud.a.clusters.values()):
        reply = cloud.request("GET", path, token=token)
        assert reply.status == 403 and reply.error_code == "forbidden"
        assert "secret" not in reply.text
    for token in (None, "nm_" + "1" * 64):
        reply = cloud.request("GET", path, token=token)
        assert reply.status == 401 and reply.error_code == "unauthorized"
    assert summary(cloud, token=cloud.b.read_token, tenant=cloud.b.id)["groups"][0]["id"] == "ns:secret"
