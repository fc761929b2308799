"""Liveness: a live edge is read as last seen at its cluster's heartbeat, so steady traffic needs
no edge writes. Through the store interface (both stores) and through ``POST /v1/ingest``."""

from __future__ import annotations

import time
from typing import Any

from cloud_handler_support import Cloud, cloud_fixture, edge  # noqa: F401

from agent.model import Edge, Method, WorkloadIdentity
from agent.wire import EdgeDoc, format_time, parse_time, to_doc
from cloud_functions.store.base import GraphStore

T0 = float(int(time.time())) - 7200
"""Two hours ago: heartbeats are capped at the handler's clock, and DynamoDB's TTL wants "now"."""


def encoded(client: str, last: float, *, live: bool) -> EdgeDoc:
    shop = "shop"
    e = Edge(
        WorkloadIdentity(shop, client, "Deployment"),
        WorkloadIdentity(shop, "cart", "Deployment"),
        T0,
        last,
        frozenset({Method.TCP}),
    )
    return to_doc(e, live)


def last_seen(store: GraphStore, **filters: Any) -> dict[str, float]:
    return {s.edge.client.name: s.edge.last_seen for s in store.edges("t1", **filters)}


def setup(store: GraphStore) -> None:
    store.create_tenant("t1", "t", T0)
    store.add_cluster("t1", "c1", "c", T0)


def test_a_heartbeat_advances_live_edges_only(store: GraphStore) -> None:
    setup(store)
    store.ingest(
        "t1", "c1", "b1", [encoded("live", T0 + 10, live=True), encoded("quiet", T0 + 10, live=False)], T0
    )
    assert last_seen(store) == {"live": T0 + 10, "quiet": T0 + 10}
    writes = store.write_count()
    reply = store.ingest("t1", "c1", "hb-1", [], T0, seen_at=T0 + 3600)
    assert reply.stored and reply.edges_written == 0
    assert store.write_count() - writes == 1, "a heartbeat is one write, whatever the number of edges"
    assert last_seen(store) == {"live": T0 + 3600, "quiet": T0 + 10}
    assert [c.heartbeat for c in store.clusters("t1")] == [T0 + 3600]
    assert last_seen(store, since=T0 + 1800) == {"live": T0 + 3600}, "since sees the heartbeat"
    assert not store.has_batch("t1", "c1", "hb-1"), "a heartbeat keeps no batch marker"

    writes = store.write_count()
    store.ingest("t1", "c1", "hb-2", [], T0, seen_at=T0 + 3600)
    store.ingest("t1", "c1", "hb-3", [], T0, seen_at=T0 + 60)
    assert store.write_count() == writes, "a heartbeat that does not rise writes nothing"
    assert [c.heartbeat for c in store.clusters("t1")] == [T0 + 3600]


def test_an_edge_that_went_quiet_is_read_at_its_own_last_seen(store: GraphStore) -> None:
    setup(store)
    store.ingest("t1", "c1", "b1", [encoded("a", T0 + 10, live=True)], T0)
    store.ingest("t1", "c1", "hb", [], T0, seen_at=T0 + 3600)
    writes = store.write_count()
    reply = store.ingest("t1", "c1", "b2", [encoded("a", T0 + 20, live=False)], T0)
    assert reply.edges_written == 1
    assert last_seen(store) == {"a": T0 + 20}
    assert last_seen(store, since=T0 + 1800) == {}
    same = store.ingest("t1", "c1", "b3", [encoded("a", T0 + 20, live=False)], T0)
    assert same.edges_written == 0
    assert store.write_count() - writes == 3, "b2's edge and the two batch markers"
    back = store.ingest("t1", "c1", "b4", [encoded("a", T0 + 20, live=True)], T0)
    assert back.edges_written == 1, "the live flag alone is a change"
    assert last_seen(store) == {"a": T0 + 3600}


def test_a_resent_batch_ignores_its_heartbeat(store: GraphStore) -> None:
    setup(store)
    store.ingest("t1", "c1", "b1", [encoded("a", T0 + 10, live=True)], T0, seen_at=T0 + 100)
    again = store.ingest("t1", "c1", "b1", [encoded("a", T0 + 10, live=True)], T0, seen_at=T0 + 999)
    assert not again.stored
    assert [c.heartbeat for c in store.clusters("t1")] == [T0 + 100]


def test_heartbeats_over_http(cloud: Cloud) -> None:
    ((cluster, token),) = cloud.a.clusters.items()
    first = format_time(T0)
    live = {**edge("frontend", "cart", last=first), "firstSeen": first, "live": True}
    quiet = {**edge("cart", "redis", last=first), "firstSeen": first, "live": False}
    body = {"batchId": "b1", "edges": [live, quiet]}
    assert cloud.request("POST", "/v1/ingest", token=token, body=body).json() == {
        "stored": True,
        "edgesWritten": 2,
    }
    beat = {"batchId": "hb", "edges": [], "seenAt": format_time(T0 + 3600)}
    assert cloud.request("POST", "/v1/ingest", token=token, body=beat).json() == {
        "stored": True,
        "edgesWritten": 0,
    }
    graph = cloud.request("GET", "/graph", token=cloud.a.read_token).json()
    seen = {e["client"]["name"]: parse_time(e["lastSeen"]) for e in graph["edges"]}
    assert seen == {"frontend": T0 + 3600, "cart": T0}
    assert {e["client"]["name"]: e["live"] for e in graph["edges"]} == {"frontend": True, "cart": False}
    listed = cloud.request("GET", f"/v1/tenants/{cloud.a.id}/clusters", token=cloud.a.read_token).json()
    assert [c["lastHeartbeat"] for c in listed["clusters"]] == [format_time(T0 + 3600)]

    future = {"batchId": "hb2", "edges": [], "seenAt": format_time(time.time() + 86400)}
    before = time.time()
    assert cloud.request("POST", "/v1/ingest", token=token, body=future).status == 200
    (heartbeat,) = [c.heartbeat for c in cloud.store.clusters(cloud.a.id)]
    assert heartbeat is not None and before <= heartbeat <= time.time(), "a clock ahead counts as now"
    assert cluster


def test_bad_liveness_fields_are_422(cloud: Cloud) -> None:
    (token,) = cloud.a.clusters.values()
    for body in (
        {"batchId": "x", "edges": [{**edge("a", "b"), "live": "yes"}]},
        {"batchId": "x", "edges": [], "seenAt": "yesterday"},
        {"batchId": "x", "edges": [], "seenAt": "2026-11-28T02:15:06"},  # no zone
        {"batchId": "x", "edges": [1, "two"]},
    ):
        reply = cloud.request("POST", "/v1/ingest", token=token, body=body)
        assert reply.status == 422, (body, reply)
    assert cloud.store.edges(cloud.a.id) == []
