"""Coverage in the cloud: both stores (SQLite and DynamoDB Local) keep each cluster's newest
coverage document, replaced on upload and isolated between tenants and clusters; the routes take
a mapper's upload with its cluster's ingest token (checked against the document's shape) and give
it to the tenant's readers only."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from cloud_handler_support import Cloud, Reply, cloud_fixture  # noqa: F401

from agent.anonymize import Anonymizer
from agent.mapper.coverage import Coverage
from agent.mapper.store import EdgeStore
from agent.mapper.uploader import HttpCloudClient, Uploader
from cloud_functions.store.base import GraphStore, Invalid, NotFound
from tests.support.transports import CloudTransport

T0 = float(int(time.time()))


def coverage_document(node: str = "node-1") -> dict[str, Any]:
    """A real document (agent.mapper.coverage), as the mapper's uploader sends it."""
    coverage = Coverage(
        90, nodes=lambda: [node, "node-2"], dropped=lambda: {"client_unknown_ip": 2}, clock=lambda: T0
    )
    coverage.status("sniffer", "sniffer-a", node, ["capture:dns,tcp-syn"], [("queue_full", 1)])
    coverage.observed(0, "10.1.1.1", T0)
    return coverage.document()


# ---------------------------------------------------------------- the stores


def test_the_stores_keep_the_newest_per_cluster(store: GraphStore) -> None:
    for tenant in ("t1", "t2"):
        store.create_tenant(tenant, tenant, T0)
        store.add_cluster(tenant, "c1", "prod", T0)
    store.add_cluster("t1", "c2", "staging", T0)
    assert store.coverage("t1", "c1") is None
    store.put_coverage("t1", "c1", T0, b'{"n": 1}')
    store.put_coverage("t1", "c1", T0 + 30, b'{"n": 2}')
    store.put_coverage("t1", "c2", T0 + 5, b'{"n": 3}')
    assert store.coverage("t1", "c1") == (T0 + 30, b'{"n": 2}')
    assert store.coverage("t1", "c2") == (T0 + 5, b'{"n": 3}')
    assert store.coverage("t2", "c1") is None  # the same cluster id in another tenant
    with pytest.raises(NotFound):
        store.coverage("t2", "c2")
    with pytest.raises(NotFound):
        store.put_coverage("t2", "c9", T0, b"{}")
    with pytest.raises(Invalid):
        store.put_coverage("t1", "c1", T0, os.urandom(400_000))  # does not compress under the bound
    assert store.coverage("t1", "c1") == (T0 + 30, b'{"n": 2}')


# ---------------------------------------------------------------- the routes


def upload(cloud: Cloud, body: Any, token: str | None = None) -> Reply:
    return cloud.request(
        "POST", "/v1/coverage", token=token or next(iter(cloud.a.clusters.values())), body=body
    )


def read(
    cloud: Cloud, token: str | None = None, tenant: str | None = None, cluster: str | None = None
) -> Reply:
    return cloud.request(
        "GET",
        f"/v1/tenants/{tenant or cloud.a.id}/coverage",
        token=token or cloud.a.read_token,
        query={"cluster": cluster or next(iter(cloud.a.clusters))},
    )


def test_upload_then_read_the_newest(cloud: Cloud) -> None:
    assert read(cloud).error_code == "not_found"
    first, second = coverage_document("node-1"), coverage_document("node-9")
    assert upload(cloud, first).status == 200
    reply = upload(cloud, second)
    assert reply.status == 200, reply
    got = read(cloud)
    assert got.status == 200, got
    body = got.json()
    assert body["clusterId"] == next(iter(cloud.a.clusters))
    assert body["coverage"] == second
    assert body["coverage"]["unresolvedIps"][0]["ip"] == "10.1.1.1"
    assert read(cloud, token=cloud.a.owner_token).status == 200


def test_uploads_are_checked(cloud: Cloud) -> None:
    good = coverage_document()
    assert upload(cloud, good | {"covered": "yes"}).status == 422
    assert upload(cloud, {k: v for k, v in good.items() if k != "nodes"}).status == 422
    assert upload(cloud, good | {"unexplainedDrops": -1}).status == 422
    assert upload(cloud, good | {"extra": 1}).status == 422
    own = next(iter(cloud.a.clusters))
    assert upload(cloud, good | {"clusterId": own}).status == 200
    assert "clusterId" not in read(cloud).json()["coverage"]
    assert upload(cloud, good | {"clusterId": "c_other"}).error_code == "forbidden"
    for token in (cloud.a.owner_token, cloud.a.read_token):  # only a cluster's own token uploads
        assert upload(cloud, good, token=token).status == 403


def test_other_tenants_reach_nothing(cloud: Cloud) -> None:
    assert upload(cloud, coverage_document()).status == 200
    ours = next(iter(cloud.a.clusters))
    assert read(cloud, token=cloud.b.read_token).status == 403
    assert read(cloud, token=cloud.b.read_token, tenant=cloud.b.id, cluster=ours).status == 404
    (theirs,) = cloud.b.clusters
    assert read(cloud, token=cloud.b.read_token, tenant=cloud.b.id, cluster=theirs).error_code == "not_found"


# ---------------------------------------------------------------- the mapper's uploader, end to end


def uploaded(
    cloud: Cloud, tmp_path: Path, anonymizer: Anonymizer | None = None
) -> tuple[Any, dict[str, Any]]:
    """One upload cycle of a real Uploader (real edge store, HttpCloudClient) into the real cloud
    app; the cycle's result and what a reader of the tenant gets back."""
    ((_, token),) = cloud.a.clusters.items()
    client = HttpCloudClient("https://cloud.test", token, 5.0, transport=CloudTransport(cloud.app))
    store = EdgeStore.in_dir(tmp_path / "mapper")
    try:
        result = Uploader(store, client, anonymizer=anonymizer, coverage=coverage_document).upload_once()
    finally:
        store.close()
    reply = read(cloud)
    assert reply.status == 200, reply
    return result, reply.json()["coverage"]


def test_the_uploader_sends_the_coverage_each_cycle(cloud: Cloud, tmp_path: Path) -> None:
    result, got = uploaded(cloud, tmp_path)
    assert result.coverage == 1
    assert got == coverage_document()


def test_anonymized_coverage_hides_names_and_keeps_counts(cloud: Cloud, tmp_path: Path) -> None:
    anonymizer = Anonymizer(b"k" * 32)
    _, got = uploaded(cloud, tmp_path, anonymizer)
    plain = coverage_document()
    assert [n["name"] for n in got["nodes"]] == [anonymizer.hash(n["name"]) for n in plain["nodes"]]
    (component,) = got["components"]
    assert component["instance"] == anonymizer.hash("sniffer-a")
    assert component["watching"] == [anonymizer.hash("capture:dns,tcp-syn")]
    assert "node-1" not in json.dumps(got) and "sniffer-a" not in json.dumps(got)
    assert got["drops"] == plain["drops"]
    assert got["unresolvedIps"][0]["count"] == 1
