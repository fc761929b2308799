"""POST /v1/ingest through the Lambda handler: idempotency by batch id, the cluster from the
token, and every malformed request answered with a 4xx JSON error, never a 500."""

from __future__ import annotations

import base64
import json

from cloud_handler_support import Cloud, cloud_fixture, demo_edges, edge, event, recorded  # noqa: F401

from cloud_functions.handlers.ingest import MAX_BATCH


def test_recorded_ingest_event_is_idempotent(cloud: Cloud) -> None:
    ((cluster, token),) = cloud.a.clusters.items()
    ev = recorded("ingest", INGEST_TOKEN=token)
    first = cloud(ev)
    assert first.status == 200 and first.json() == {"stored": True, "edgesWritten": 6}
    writes = cloud.store.write_count()
    again = cloud(recorded("ingest", INGEST_TOKEN=token))
    assert again.status == 200 and again.json() == {"stored": False, "edgesWritten": 0}
    assert cloud.store.write_count() == writes, "a duplicate batch writes nothing"
    stored = cloud.store.edges(cloud.a.id)
    assert len(stored) == 6 and {s.cluster_id for s in stored} == {cluster}


def test_same_edges_in_a_new_batch_write_nothing_but_changes_do(cloud: Cloud) -> None:
    (cluster,) = cloud.a.clusters
    edges = [edge("frontend", "cart"), edge("cart", "redis")]
    assert cloud.ingest(cloud.a, cluster, "b1", edges).json() == {"stored": True, "edgesWritten": 2}
    assert cloud.ingest(cloud.a, cluster, "b2", edges).json() == {"stored": True, "edgesWritten": 0}
    later = [edge("frontend", "cart", last="2025-11-28T03:16:06Z")]
    assert cloud.ingest(cloud.a, cluster, "b3", later).json() == {"stored": True, "edgesWritten": 1}


def test_the_cluster_comes_from_the_token_not_the_body(cloud: Cloud) -> None:
    (cluster,) = cloud.b.clusters
    body = {"batchId": "x", "edges": [edge("a", "b")], "clusterId": next(iter(cloud.a.clusters))}
    reply = cloud.request("POST", "/v1/ingest", token=cloud.b.clusters[cluster], body=body)
    assert reply.status == 422  # unknown fields are refused
    del body["clusterId"]
    assert cloud.request("POST", "/v1/ingest", token=cloud.b.clusters[cluster], body=body).status == 200
    assert cloud.store.edges(cloud.a.id) == []
    assert [s.cluster_id for s in cloud.store.edges(cloud.b.id)] == [cluster]


def test_demo_map_ingests(cloud: Cloud) -> None:
    (cluster,) = cloud.a.clusters
    reply = cloud.ingest(cloud.a, cluster, "demo", demo_edges())
    assert reply.status == 200 and reply.json()["edgesWritten"] == len(demo_edges())


def test_token_roles(cloud: Cloud) -> None:
    body = {"batchId": "x", "edges": []}
    assert cloud.request("POST", "/v1/ingest", body=body).error_code == "unauthorized"
    assert cloud.request("POST", "/v1/ingest", token="nm_" + "0" * 64, body=body).status == 401
    assert cloud.request("POST", "/v1/ingest", token="not-a-token", body=body).status == 401
    assert cloud.request("POST", "/v1/ingest", token=cloud.a.read_token, body=body).status == 403
    assert cloud.request("POST", "/v1/ingest", token=cloud.admin_token, body=body).status == 403


def bad(
    cloud: Cloud, body: object = None, raw: bytes | None = None, content_type: str = "application/json"
) -> int:
    (token,) = cloud.a.clusters.values()
    reply = cloud.request("POST", "/v1/ingest", token=token, body=body, raw=raw, content_type=content_type)
    assert reply.status < 500, reply
    assert reply.error_code
    return reply.status


def test_bad_bodies_are_4xx_with_a_json_error(cloud: Cloud) -> None:
    good = edge("a", "b")
    assert bad(cloud, raw=b"{not json") == 422
    assert bad(cloud, raw=b"") == 422
    assert bad(cloud, body=[]) == 422
    assert bad(cloud, body="text") == 422
    assert bad(cloud, body={"edges": []}) == 422  # no batch id
    assert bad(cloud, body={"batchId": "", "edges": []}) == 422
    assert bad(cloud, body={"batchId": "x" * 129, "edges": []}) == 422
    assert bad(cloud, body={"batchId": 7, "edges": []}) == 422
    assert bad(cloud, body={"batchId": "x", "edges": {}}) == 422
    assert bad(cloud, body={"batchId": "x", "edges": [1, "a", None]}) == 422
    assert bad(cloud, body={"batchId": "x", "anonymized": "maybe", "edges": []}) == 422
    assert bad(cloud, body={"batchId": "x", "edges": [good] * (MAX_BATCH + 1)}) == 422
    assert bad(cloud, raw=b"batchId=x", content_type="text/plain") == 415


def test_malformed_edges_name_their_index(cloud: Cloud) -> None:
    (token,) = cloud.a.clusters.values()
    broken = [
        edge("a", "b"),
        {**edge("a", "b"), "firstSeen": "yesterday"},
        {**edge("a", "b"), "methods": ["carrier-pigeon"]},
        {**edge("a", "b"), "target": {"type": "teleport"}},
        {**edge("a", "b"), "client": "a"},
        {**edge("a", "b"), "count": "many"},
        {"client": {}, "target": {}},
        {**edge("a", "b"), "lastSeen": "0066-04-12T13:27:04Z"},
        {**edge("a", "b"), "firstSeen": "9999-12-31T23:59:59-12:00"},
    ]
    reply = cloud.request("POST", "/v1/ingest", token=token, body={"batchId": "x", "edges": broken})
    assert reply.status == 422 and reply.error_code == "validation_error"
    details = reply.json()["error"]["details"]
    assert [d["loc"][:3] for d in details] == [["body", "edges", i] for i in range(1, 9)]
    assert [d["loc"][3:] for d in details[:6]] == [
        ["firstSeen"],
        ["methods", 0],
        ["target", "type"],
        ["client"],
        ["count"],
        ["client"],  # the first thing missing: the client's name
    ]
    assert "out of range" in details[6]["msg"] and "out of range" in details[7]["msg"]
    # every edge decodes but for its times: the whole batch is decoded once, and refused as one
    late = {"batchId": "x", "edges": [broken[0], broken[7], broken[0], broken[8]]}
    reply = cloud.request("POST", "/v1/ingest", token=token, body=late)
    locations = [d["loc"] for d in reply.json()["error"]["details"]]
    assert locations == [["body", "edges", 1, "lastSeen"], ["body", "edges", 3, "firstSeen"]]
    assert cloud.store.edges(cloud.a.id) == [], "a batch with a bad edge stores nothing"
    ok = cloud.request("POST", "/v1/ingest", token=token, body={"batchId": "x", "edges": broken[:1]})
    assert ok.json() == {"stored": True, "edgesWritten": 1}, "the refused batch id was not burnt"


def test_undecodable_and_oversized_bodies(cloud: Cloud) -> None:
    (token,) = cloud.a.clusters.values()
    ev = event(
        "POST", "/v1/ingest", token=token, raw=b"\xff\xfe\x00garbage", content_type="application/octet-stream"
    )
    assert ev["isBase64Encoded"]
    ev["headers"]["content-type"] = "application/json"
    reply = cloud(ev)
    assert reply.status == 400 and reply.error_code == "bad_request"
    ev["body"] = "!!!not base64!!!"
    assert cloud(ev).status == 400
    huge = {"batchId": "x", "edges": [], "pad": "x" * 2_100_000}
    reply = cloud.request("POST", "/v1/ingest", token=token, body=huge)
    assert reply.status == 413 and reply.error_code == "payload_too_large"
    b64 = event("POST", "/v1/ingest", token=token, body={"batchId": "y", "edges": [edge("a", "b")]})
    b64["body"], b64["isBase64Encoded"] = base64.b64encode(b64["body"].encode()).decode(), True
    assert cloud(b64).json() == {"stored": True, "edgesWritten": 1}


def test_revoked_ingest_token_is_refused(cloud: Cloud) -> None:
    (token,) = cloud.a.clusters.values()
    tokens = cloud.request("GET", f"/v1/tenants/{cloud.a.id}/tokens", token=cloud.a.owner_token).json()[
        "tokens"
    ]
    ingest_id = next(t["tokenId"] for t in tokens if t["role"] == "ingest")
    assert (
        cloud.request(
            "DELETE", f"/v1/tenants/{cloud.a.id}/tokens/{ingest_id}", token=cloud.a.owner_token
        ).status
        == 204
    )
    reply = cloud.request("POST", "/v1/ingest", token=token, body={"batchId": "x", "edges": []})
    assert reply.status == 401
    assert json.loads(reply.text)["error"]["code"] == "unauthorized"
