"""Server ports end to end in the cloud: an edge's ``ports`` survive ingest into both stores, are
merged as :func:`agent.model.merge_edges` merges them (on re-ingest and across clusters), and
reach the graph (per cluster and merged) and the JSON export."""

from __future__ import annotations

import time
from typing import Any

from cloud_handler_support import Cloud, cloud_fixture, edge  # noqa: F401

from agent import wire
from agent.model import Edge, Method, WorkloadIdentity, merge_edges
from cloud_functions.store.base import GraphStore

T0 = float(int(time.time()))


def model_edge(
    ports: tuple[int, ...], *, last: float = T0 + 10, methods: tuple[Method, ...] = (Method.TCP,)
) -> Edge:
    return Edge(
        client=WorkloadIdentity("shop", "frontend", "Deployment"),
        target=WorkloadIdentity("shop", "cartservice", "Deployment"),
        first_seen=T0,
        last_seen=last,
        methods=frozenset(methods),
        ports=ports,
    )


def test_both_stores_keep_and_merge_ports(store: GraphStore) -> None:
    store.create_tenant("t1", "t1", T0)
    store.add_cluster("t1", "c1", "prod", T0)
    store.ingest("t1", "c1", "b1", [wire.to_doc(model_edge((8080,)))], T0)
    (found,) = store.edges("t1")
    assert found.edge.ports == (8080,)
    # a later sighting through DNS knows no port: the known ones stay; another port joins them
    store.ingest("t1", "c1", "b2", [wire.to_doc(model_edge((), methods=(Method.DNS,)))], T0)
    store.ingest("t1", "c1", "b3", [wire.to_doc(model_edge((443, 8080), last=T0 + 20))], T0)
    (found,) = store.edges("t1")
    expected = merge_edges(
        merge_edges(model_edge((8080,)), model_edge((), methods=(Method.DNS,))),
        model_edge((443, 8080), last=T0 + 20),
    )
    assert found.edge.ports == expected.ports == (443, 8080)
    assert found.edge == expected


def ports_of(cloud: Cloud, **query: str) -> list[tuple[str, list[int]]]:
    reply = cloud.request("GET", f"/v1/tenants/{cloud.a.id}/graph", token=cloud.a.read_token, query=query)
    assert reply.status == 200, reply
    return sorted((e.get("clusterId", ""), e["ports"]) for e in reply.json()["edges"])


def test_graph_and_export_carry_ports(cloud: Cloud) -> None:
    (first,) = cloud.a.clusters
    second = cloud.new_cluster(cloud.a, "staging")
    assert cloud.ingest(cloud.a, first, "1", [edge("frontend", "cart", ports=[8080])]).status == 200
    assert cloud.ingest(cloud.a, second, "1", [edge("frontend", "cart", ports=[443, 8080])]).status == 200
    assert ports_of(cloud) == sorted([(first, [8080]), (second, [443, 8080])])
    assert ports_of(cloud, merge="true") == [("", [443, 8080])]
    reply = cloud.request(
        "GET", f"/v1/tenants/{cloud.a.id}/export", token=cloud.a.read_token, query={"format": "json"}
    )
    assert reply.status == 200, reply
    exported: list[dict[str, Any]] = reply.json()["edges"]
    assert [e["ports"] for e in exported] == [[443, 8080]]
    assert wire.document_from_plain(reply.json())[0].ports == (443, 8080)


def test_a_port_out_of_range_is_refused_with_its_place(cloud: Cloud) -> None:
    (first,) = cloud.a.clusters
    reply = cloud.ingest(cloud.a, first, "1", [edge("frontend", "cart", ports=[80, 70000])])
    assert reply.status == 422, reply
    assert reply.json()["error"]["details"][0]["loc"][:4] == ["body", "edges", 0, "ports"]
