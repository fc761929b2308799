"""The cloud's in-process transport (tests/support/transports.py: CloudTransport): the mapper's
uploader client (HttpCloudClient) and plain requests reach the real CloudApp through it, each
request turned into the API Gateway v2 event the local server would make."""

from __future__ import annotations

import json

import pytest
from cloud_handler_support import Cloud, cloud_fixture  # noqa: F401

from agent.mapper.uploader import CloudRejected, HttpCloudClient
from agent.mapperclient import Request
from tests.support.transports import CloudTransport

CLOUD = "https://cloud.test"
T0 = 1764296106.5


def test_the_uploaders_heartbeat_reaches_the_cloud_app(cloud: Cloud) -> None:
    transport = CloudTransport(cloud.app)
    ((cluster, token),) = cloud.a.clusters.items()
    uploader = HttpCloudClient(CLOUD, token, 5.0, transport=transport)
    reply = uploader.ingest("heartbeat-1", False, [], seen_at=T0)
    assert (reply.stored, reply.edges_written) == (True, 0)
    assert [(c.id, c.heartbeat) for c in cloud.store.clusters(cloud.a.id)] == [(cluster, T0)]
    with pytest.raises(CloudRejected, match="HTTP 401"):
        HttpCloudClient(CLOUD, "not-a-token", 5.0, transport=transport).ingest("b", False, [])


def test_paths_queries_and_headers_go_through(cloud: Cloud) -> None:
    transport = CloudTransport(cloud.app)
    auth = {"Authorization": f"Bearer {cloud.a.read_token}"}
    listed = transport(Request("GET", f"{CLOUD}/v1/tenants/{cloud.a.id}/clusters", auth))
    assert listed.status == 200, listed.text
    assert listed.headers["content-type"].startswith("application/json")
    assert [c["name"] for c in json.loads(listed.body)["clusters"]] == ["prod"]
    graph = transport(Request("GET", f"{CLOUD}/v1/tenants/{cloud.a.id}/graph?namespace=nope", auth))
    assert graph.status == 200, graph.text
    other = transport(Request("GET", f"{CLOUD}/v1/tenants/{cloud.b.id}/clusters", auth))
    assert other.status in (403, 404)  # a token reads its own tenant only
