"""Provenance end to end in the cloud: an edge's ``provenance`` (per method: first and last seen,
count) survives ingest into both stores, is merged as :func:`agent.model.merge_edges` merges it
(cumulative: counts are maxima, so a re-sent batch changes nothing; on re-ingest and across
clusters), and reaches the graph (per cluster and merged) and the JSON export. An edge from an
uploader older than version 5 has none, and nothing is derived for it."""

from __future__ import annotations

import time
from typing import Any

from cloud_handler_support import Cloud, cloud_fixture, edge  # noqa: F401

from agent import wire
from agent.model import Edge, Method, MethodSeen, WorkloadIdentity, merge_edges
from cloud_functions.store.base import GraphStore

T0 = float(int(time.time()))
DNS, TCP = Method.DNS, Method.TCP


def model_edge(*seen: MethodSeen) -> Edge:
    return Edge(
        client=WorkloadIdentity("shop", "frontend", "Deployment"),
        target=WorkloadIdentity("shop", "cartservice", "Deployment"),
        first_seen=min((s.first_seen for s in seen), default=T0),
        last_seen=max((s.last_seen for s in seen), default=T0),
        methods=frozenset(s.method for s in seen) or frozenset({TCP}),
        count=sum(s.count for s in seen) or 1,
        provenance=tuple(sorted(seen)),
    )


def test_both_stores_keep_and_merge_provenance(store: GraphStore) -> None:
    store.create_tenant("t1", "t1", T0)
    store.add_cluster("t1", "c1", "prod", T0)
    first = model_edge(MethodSeen(DNS, T0, T0 + 5, 2), MethodSeen(TCP, T0 + 1, T0 + 9, 3))
    store.ingest("t1", "c1", "b1", [wire.to_doc(first)], T0)
    (found,) = store.edges("t1")
    assert found.edge.provenance == first.provenance
    # the uploader's next cumulative sighting: TCP seen again later and more often; DNS unchanged
    later = model_edge(MethodSeen(DNS, T0, T0 + 5, 2), MethodSeen(TCP, T0 + 1, T0 + 30, 7))
    older_uploader = model_edge()  # an uploader before version 5: no provenance, adds none
    store.ingest("t1", "c1", "b2", [wire.to_doc(later)], T0)
    store.ingest("t1", "c1", "b3", [wire.to_doc(older_uploader)], T0)
    store.ingest("t1", "c1", "b2-again", [wire.to_doc(later)], T0)  # re-sent: nothing changes
    (found,) = store.edges("t1")
    expected = merge_edges(merge_edges(merge_edges(first, later), older_uploader), later)
    assert (
        found.edge.provenance
        == expected.provenance
        == (
            MethodSeen(DNS, T0, T0 + 5, 2),
            MethodSeen(TCP, T0 + 1, T0 + 30, 7),
        )
    )
    assert found.edge == expected


def provenance_of(cloud: Cloud, **query: str) -> list[tuple[str, list[tuple[str, int, str]]]]:
    reply = cloud.request("GET", f"/v1/tenants/{cloud.a.id}/graph", token=cloud.a.read_token, query=query)
    assert reply.status == 200, reply
    return sorted(
        (e.get("clusterId", ""), [(p["method"], p["count"], p["lastSeen"]) for p in e["provenance"]])
        for e in reply.json()["edges"]
    )


def test_graph_and_export_carry_provenance(cloud: Cloud) -> None:
    (first,) = cloud.a.clusters
    second = cloud.new_cluster(cloud.a, "staging")
    dns = {
        "method": "dns",
        "firstSeen": "2025-11-28T02:15:06Z",
        "lastSeen": "2025-11-28T02:15:30Z",
        "count": 2,
    }
    tcp = {
        "method": "tcp",
        "firstSeen": "2025-11-28T02:15:07Z",
        "lastSeen": "2025-11-28T02:16:06Z",
        "count": 4,
    }
    one = edge("frontend", "cart", methods=["dns", "tcp"], count=6, provenance=[dns, tcp])
    other = edge(
        "frontend", "cart", count=9, provenance=[tcp | {"count": 9, "lastSeen": "2025-11-28T02:17:00Z"}]
    )
    assert cloud.ingest(cloud.a, first, "1", [one]).status == 200
    assert cloud.ingest(cloud.a, second, "1", [other]).status == 200
    assert provenance_of(cloud) == sorted(
        [
            (first, [("dns", 2, "2025-11-28T02:15:30Z"), ("tcp", 4, "2025-11-28T02:16:06Z")]),
            (second, [("tcp", 9, "2025-11-28T02:17:00Z")]),
        ]
    )
    merged = [("dns", 2, "2025-11-28T02:15:30Z"), ("tcp", 9, "2025-11-28T02:17:00Z")]
    assert provenance_of(cloud, merge="true") == [("", merged)]
    reply = cloud.request(
        "GET", f"/v1/tenants/{cloud.a.id}/export", token=cloud.a.read_token, query={"format": "json"}
    )
    assert reply.status == 200, reply
    exported: list[dict[str, Any]] = reply.json()["edges"]
    assert [[(p["method"], p["count"], p["lastSeen"]) for p in e["provenance"]] for e in exported] == [merged]
    (back,) = wire.document_from_plain(reply.json())
    assert [(s.method, s.count) for s in back.provenance] == [(DNS, 2), (TCP, 9)]


def test_a_bad_provenance_is_refused_with_its_place(cloud: Cloud) -> None:
    (first,) = cloud.a.clusters
    late = {"method": "tcp", "firstSeen": "2025-11-28T02:15:06Z", "lastSeen": "2150-01-01T00:00:00Z"}
    reply = cloud.ingest(cloud.a, first, "1", [edge("frontend", "cart", provenance=[late])])
    assert reply.status == 422, reply
    assert reply.json()["error"]["details"][0]["loc"][:6] == ["body", "edges", 0, "provenance", 0, "lastSeen"]
    unknown = {
        "method": "carrier-pigeon",
        "firstSeen": "2025-11-28T02:15:06Z",
        "lastSeen": "2025-11-28T02:15:06Z",
    }
    reply = cloud.ingest(cloud.a, first, "2", [edge("frontend", "cart", provenance=[unknown])])
    assert reply.status == 422, reply
