"""The snapshot routes: a cluster's mapper uploads snapshots with its ingest token; the tenant's
tokens list and read them and diff them (with each other, or with the graph as it is now); other
tenants reach none of it."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from cloud_handler_support import Cloud, Reply, cloud_fixture, edge  # noqa: F401

from agent import snapshotwire
from agent.model import (
    ClusterFacts,
    Edge,
    Method,
    NamespaceFacts,
    Snapshot,
    WorkloadIdentity,
)
from agent.wiretime import format_time
from cloud_functions.handlers import snapshots

NOW = float(int(time.time()))


def wl(name: str) -> WorkloadIdentity:
    return WorkloadIdentity("shop", name, "Deployment")


def model_edge(client: str, target: str, last: float, ports: tuple[int, ...] = ()) -> Edge:
    return Edge(wl(client), wl(target), last - 60, last, frozenset({Method.TCP}), ports=ports)


FACTS = ClusterFacts(namespaces=(NamespaceFacts("shop", (("kubernetes.io/metadata.name", "shop"),)),))


def document(name: str, taken: float, *edges: Edge, auto: bool = False, **extra: Any) -> dict[str, Any]:
    return snapshotwire.snapshot_document(Snapshot(name, taken, edges, FACTS, auto)) | extra


def upload(cloud: Cloud, body: Any, cluster: str | None = None) -> Reply:
    cluster = cluster or next(iter(cloud.a.clusters))
    return cloud.request("POST", "/v1/snapshots", token=cloud.a.clusters[cluster], body=body)


def read(cloud: Cloud, path: str, token: str | None = None, **query: str) -> Reply:
    cluster = next(iter(cloud.a.clusters))
    query = {"cluster": cluster} | query
    return cloud.request(
        "GET", f"/v1/tenants/{cloud.a.id}{path}", token=token or cloud.a.read_token, query=query
    )


def test_upload_list_and_read(cloud: Cloud) -> None:
    before = document("before", NOW - 600, model_edge("frontend", "cart", NOW - 700, (8080,)))
    reply = upload(cloud, before)
    assert reply.status == 200, reply
    assert reply.json() == {
        "name": "before",
        "takenAt": format_time(NOW - 600),
        "auto": False,
        "edges": 1,
        "pruned": [],
    }
    assert upload(cloud, document("auto-1", NOW - 60, auto=True)).status == 200
    listed = read(cloud, "/snapshots")
    assert listed.status == 200, listed
    assert [(s["name"], s["auto"], s["edges"]) for s in listed.json()["snapshots"]] == [
        ("auto-1", True, 0),
        ("before", False, 1),
    ]
    got = read(cloud, "/snapshots/before")
    assert got.status == 200, got
    assert got.json() == before  # the canonical document, as uploaded
    assert snapshotwire.decode_snapshot(got.text).edges[0].ports == (8080,)
    assert read(cloud, "/snapshots/after").error_code == "not_found"
    assert read(cloud, "/snapshots", token=cloud.a.owner_token).status == 200  # owners read too


def test_uploads_are_checked(cloud: Cloud) -> None:
    good = document("before", NOW)
    bad_time = good | {"takenAt": "yesterday"}
    reply = upload(cloud, bad_time)
    assert reply.status == 422 and reply.json()["error"]["details"][0]["loc"] == ["body", "takenAt"], reply
    nameless = upload(cloud, {"apiVersion": "network-mapper/v1", "edges": []})  # a JSON export: no name
    assert nameless.status == 422 and nameless.json()["error"]["details"][0]["loc"] == ["body", "name"]
    assert upload(cloud, good | {"name": "Not A Name"}).status == 422
    assert upload(cloud, good | {"kind": "Other"}).status == 422
    own = next(iter(cloud.a.clusters))
    assert upload(cloud, good | {"clusterId": own}).status == 200
    assert upload(cloud, good | {"clusterId": "c_other"}).error_code == "forbidden"
    for token in (cloud.a.owner_token, cloud.a.read_token):  # only a cluster's own token uploads
        reply = cloud.request("POST", "/v1/snapshots", token=token, body=good)
        assert reply.status == 403, reply


def test_other_tenants_reach_nothing(cloud: Cloud) -> None:
    assert upload(cloud, document("before", NOW)).status == 200
    (theirs,) = cloud.b.clusters
    ours = next(iter(cloud.a.clusters))
    for path in ("/snapshots", "/snapshots/before", "/diff"):
        query = {"cluster": ours, "from": "before"}
        reply = cloud.request("GET", f"/v1/tenants/{cloud.a.id}{path}", token=cloud.b.read_token, query=query)
        assert reply.status == 403, (path, reply)
        # their own tenant id with our cluster id: no such cluster in their tenant
        reply = cloud.request("GET", f"/v1/tenants/{cloud.b.id}{path}", token=cloud.b.read_token, query=query)
        assert reply.status == 404, (path, reply)
    reply = cloud.request(
        "GET", f"/v1/tenants/{cloud.b.id}/snapshots", token=cloud.b.read_token, query={"cluster": theirs}
    )
    assert reply.json()["snapshots"] == []


def test_a_cluster_keeps_a_bounded_number(cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshots, "MAX_SNAPSHOTS", 2)
    for i in range(3):
        reply = upload(cloud, document(f"s{i}", NOW - 100 + i))
        assert reply.json()["pruned"] == (["s0"] if i == 2 else [])
    assert [s["name"] for s in read(cloud, "/snapshots").json()["snapshots"]] == ["s2", "s1"]


def test_diff_of_two_snapshots_and_with_now(cloud: Cloud) -> None:
    cluster = next(iter(cloud.a.clusters))
    old = model_edge("frontend", "cart", NOW - 700, (8080,))
    gone = model_edge("frontend", "ads", NOW - 700)
    assert upload(cloud, document("before", NOW - 600, old, gone)).status == 200
    newer = model_edge("frontend", "cart", NOW - 100, (443, 8080))
    assert upload(cloud, document("after", NOW - 50, newer, gone)).status == 200

    reply = read(cloud, "/diff", **{"from": "before", "to": "after"})
    assert reply.status == 200, reply
    body = reply.json()
    assert (body["kind"], body["from"]["name"], body["to"]["name"]) == ("MapDiff", "before", "after")
    assert body["added"] == [] and [e["target"]["name"] for e in body["gone"]] == ["ads"]
    (change,) = body["changed"]
    assert change["added"]["ports"] == [443]

    # now: the cluster's graph, where frontend → checkout is new and cart was seen again
    last = format_time(NOW - 5)
    batch = [edge("frontend", "cart", last=last, ports=[8080]), edge("frontend", "checkout", last=last)]
    assert cloud.ingest(cloud.a, cluster, "1", batch).status == 200
    reply = read(cloud, "/diff", **{"from": "before"})
    assert reply.status == 200, reply
    body = reply.json()
    assert body["to"]["name"] == "now"
    assert [e["target"]["name"] for e in body["added"]] == ["checkout"]
    assert [e["target"]["name"] for e in body["gone"]] == ["ads"]
    assert body["changed"] == []
    only_other = read(cloud, "/diff", **{"from": "before", "namespace": "elsewhere"}).json()
    assert only_other["added"] == only_other["gone"] == [] and only_other["namespaces"] == ["elsewhere"]
    assert read(cloud, "/diff", **{"from": "nope"}).error_code == "not_found"
    assert read(cloud, "/diff", **{"from": "before", "to": "nope"}).error_code == "not_found"
    assert read(cloud, "/diff").status == 422  # from is required


def test_the_openapi_document_describes_the_upload() -> None:
    from cloud_functions.handlers.app import openapi_document

    paths = json.loads(openapi_document())["paths"]
    body = paths["/v1/snapshots"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["edges"]["items"]["properties"]["ports"]["type"] == "array"
    assert {"get"} <= set(paths["/v1/tenants/{tenantId}/snapshots/{name}"])
    assert "get" in paths["/v1/tenants/{tenantId}/diff"]
