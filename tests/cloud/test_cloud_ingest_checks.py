"""Issue 11, the ingest side: a batch id re-used with other content is a 409 (an exact re-send
stays ``stored: false``), and ingest refuses what its schema forbids (counts of 2**53 or more,
empty client names and namespaces, Internet target ips that are no IP addresses), storing nothing
of a refused request."""

from __future__ import annotations

from typing import Any

import pytest
from cloud_handler_support import Cloud, cloud_fixture, edge  # noqa: F401

from agent import wire
from agent.model import Edge, Method, WorkloadIdentity
from cloud_functions.store.base import Conflict, GraphStore


def test_an_exact_resend_is_stored_false_and_other_content_a_conflict(cloud: Cloud) -> None:
    (cluster,) = cloud.a.clusters
    edges = [edge("frontend", "cart"), edge("cart", "redis")]
    assert cloud.ingest(cloud.a, cluster, "b1", edges).json() == {"stored": True, "edgesWritten": 2}
    again = cloud.ingest(cloud.a, cluster, "b1", edges)  # the uploader's retry after a crash
    assert again.status == 200 and again.json() == {"stored": False, "edgesWritten": 0}
    other = cloud.ingest(cloud.a, cluster, "b1", [*edges, edge("cart", "payments")])
    assert other.status == 409 and other.error_code == "conflict", other
    assert "b1" in other.json()["error"]["message"]
    assert {s.edge.target.name for s in cloud.store.edges(cloud.a.id)} == {"cart", "redis"}  # type: ignore[union-attr]


def test_the_ingest_route_documents_the_conflict() -> None:
    from cloud_functions.handlers.app import openapi_document

    assert "409" in openapi_document() and "different content" in openapi_document()


def _edge(target: str) -> Edge:
    return Edge(
        client=WorkloadIdentity("shop", "frontend", "Deployment"),
        target=WorkloadIdentity("shop", target, "Deployment"),
        first_seen=1.0e9,
        last_seen=1.0e9 + 60,
        methods=frozenset({Method.TCP}),
    )


def test_stores_compare_the_content_of_a_re_used_batch_id(store: GraphStore) -> None:
    store.create_tenant("t1", "t1", 1.0e9)
    store.add_cluster("t1", "c1", "c1", 1.0e9)
    docs = [wire.to_doc(_edge("cart")), wire.to_doc(_edge("redis"))]
    assert store.ingest("t1", "c1", "b1", docs, 1.0e9).stored
    assert not store.ingest("t1", "c1", "b1", docs, 1.0e9 + 1).stored
    assert not store.ingest("t1", "c1", "b1", list(reversed(docs)), 1.0e9 + 1).stored  # same edges
    with pytest.raises(Conflict, match="b1"):
        store.ingest("t1", "c1", "b1", docs[:1], 1.0e9 + 2)
    assert len(store.edges("t1")) == 2


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"count": 2**53}, ["body", "edges", 1, "count"]),
        ({"count": 2**63 - 1}, ["body", "edges", 1, "count"]),
        (
            {"client": {"name": "", "namespace": "shop", "kind": "Deployment"}},
            ["body", "edges", 1, "client", "name"],
        ),
        (
            {"client": {"name": "x", "namespace": "", "kind": "Deployment"}},
            ["body", "edges", 1, "client", "namespace"],
        ),
        (
            {
                "target": {
                    "type": "internet",
                    "dnsName": "a.example",
                    "ips": ["1.2.3.4", "not-an-ip"],
                    "port": 443,
                }
            },
            ["body", "edges", 1, "target", "ips", 1],
        ),
        (
            {"target": {"type": "internet", "ips": ["10.0.0.300"], "port": 443}},
            ["body", "edges", 1, "target", "ips", 0],
        ),
        (
            {"target": {"type": "internet", "ips": ["999.1.1.1"], "port": 443}},
            ["body", "edges", 1, "target", "ips", 0],
        ),
        (
            {"target": {"type": "internet", "dnsName": "a", "port": 65536}},
            ["body", "edges", 1, "target", "port"],
        ),
        (
            {"target": {"type": "internet", "dnsName": "a", "port": -1}},
            ["body", "edges", 1, "target", "port"],
        ),
        ({"count": -1}, ["body", "edges", 1, "count"]),
        ({"count": 2**70}, ["body", "edges", 1, "count"]),
        (
            {"target": {"type": "workload", "name": "", "namespace": "shop"}},
            ["body", "edges", 1, "target", "name"],
        ),
        ({"client": {"name": "x" * 254, "namespace": "shop"}}, ["body", "edges", 1, "client", "name"]),
        ({"lastSeen": "2100-01-01T00:00:00Z"}, ["body", "edges", 1, "lastSeen"]),
        ({"firstSeen": "1999-12-31T23:59:59Z"}, ["body", "edges", 1, "firstSeen"]),
        ({"awsActions": ["s3:" + "x" * 3000]}, ["body", "edges", 1, "awsActions", 0]),
        ({"http": [{"path": f"/{i}", "methods": ["GET"]} for i in range(257)]}, ["body", "edges", 1, "http"]),
    ],
)
def test_ingest_refuses_what_its_schema_forbids(cloud: Cloud, change: dict[str, Any], loc: list[Any]) -> None:
    (cluster,) = cloud.a.clusters
    edges = [edge("frontend", "cart"), edge("frontend", "redis") | change]
    reply = cloud.ingest(cloud.a, cluster, "bad", edges)
    assert reply.status == 422 and reply.error_code == "validation_error", reply
    assert [d["loc"] for d in reply.json()["error"]["details"]] == [loc]
    assert cloud.store.edges(cloud.a.id) == [] and not cloud.store.has_batch(cloud.a.id, cluster, "bad")


def test_ingest_takes_the_largest_count_and_good_ips(cloud: Cloud) -> None:
    (cluster,) = cloud.a.clusters
    internet = {"type": "internet", "dnsName": "a.example", "ips": ["1.2.3.4", "2001:db8::1"], "port": 65535}
    edges = [edge("frontend", "cart", count=2**53 - 1), edge("frontend", "x") | {"target": internet}]
    reply = cloud.ingest(cloud.a, cluster, "ok", edges)
    assert reply.status == 200 and reply.json()["edgesWritten"] == 2, reply


def test_one_edge_re_ingested_with_new_paths_stays_bounded(cloud: Cloud) -> None:
    """Issue 11, defect 6: each batch adds new HTTP paths to one edge key; the stored edge keeps the
    MAX_DETAILS lexicographically smallest paths and says it was truncated, so it stops growing."""
    from agent.model import MAX_DETAILS

    (cluster,) = cloud.a.clusters
    for batch in range(12):
        paths = [{"path": f"/item/{batch:03d}/{i:03d}", "methods": ["GET"]} for i in range(40)]
        reply = cloud.ingest(cloud.a, cluster, f"b{batch}", [edge("frontend", "cart") | {"http": paths}])
        assert reply.status == 200, reply
    (stored,) = cloud.store.edges(cloud.a.id)
    kept = [r.path for r in stored.edge.http]
    assert len(kept) == MAX_DETAILS and stored.edge.truncated
    every = sorted(f"/item/{b:03d}/{i:03d}" for b in range(12) for i in range(40))
    assert kept == every[:MAX_DETAILS]  # the smallest: the same whatever the order of arrival
    graph = cloud.request("GET", "/v1/graph", token=cloud.a.read_token)
    assert graph.status == 200 and graph.json()["edges"][0]["truncated"] is True
