"""Tenants, clusters and tokens: who may create what, and tokens shown once, stored hashed."""

from __future__ import annotations

import re

from cloud_handler_support import Cloud, cloud_fixture, recorded  # noqa: F401

from cloud_functions.auth import PLATFORM_TENANT, hash_token


def test_recorded_admin_events(cloud: Cloud) -> None:
    created = cloud(recorded("create_tenant", ADMIN_TOKEN=cloud.admin_token))
    assert created.status == 201
    tenant = created.json()
    assert re.fullmatch(r"t_[0-9a-f]{16}", tenant["tenantId"])
    assert re.fullmatch(r"nm_[0-9a-f]{64}", tenant["readToken"])
    cluster = cloud(recorded("add_cluster", READ_TOKEN=tenant["readToken"], TENANT_ID=tenant["tenantId"]))
    assert cluster.status == 201
    assert re.fullmatch(r"nm_[0-9a-f]{64}", cluster.json()["ingestToken"])
    listed = cloud.request("GET", f"/v1/tenants/{tenant['tenantId']}/clusters", token=tenant["readToken"])
    assert [(c["clusterId"], c["name"]) for c in listed.json()["clusters"]] == [
        (cluster.json()["clusterId"], "prod")
    ]


def test_only_admin_creates_tenants(cloud: Cloud) -> None:
    body = {"name": "mallory"}
    assert cloud.request("POST", "/v1/tenants", token=cloud.a.read_token, body=body).status == 403
    (ingest,) = cloud.a.clusters.values()
    assert cloud.request("POST", "/v1/tenants", token=ingest, body=body).status == 403
    assert cloud.request("POST", "/v1/tenants", body=body).status == 401
    assert cloud.request("POST", "/v1/tenants", token=cloud.admin_token, body={"name": ""}).status == 422
    assert cloud.request("POST", "/v1/tenants", token=cloud.admin_token, body={"name": 3}).status == 422
    assert cloud.request("POST", "/v1/tenants", token=cloud.admin_token, body={}).status == 422


def test_tokens_are_stored_hashed_and_listed_without_secrets(cloud: Cloud) -> None:
    path = f"/v1/tenants/{cloud.a.id}/tokens"
    created = cloud.request("POST", path, token=cloud.a.read_token)
    assert created.status == 201
    token = created.json()["token"]
    record = cloud.store.get_token(hash_token(token))
    assert record is not None and record.role == "read" and record.tenant_id == cloud.a.id
    listed = cloud.request("GET", path, token=token)
    assert listed.status == 200
    assert token not in listed.text and hash_token(token) not in listed.text
    assert cloud.a.read_token not in listed.text
    roles = sorted(t["role"] for t in listed.json()["tokens"])
    assert roles == ["ingest", "read", "read"]
    assert all(set(t) == {"tokenId", "role", "clusterId", "createdAt"} for t in listed.json()["tokens"])
    for db_file in cloud.store.path.parent.glob("cloud.db*"):
        assert token.encode() not in db_file.read_bytes()


def test_revoking_a_token(cloud: Cloud) -> None:
    created = cloud.request("POST", f"/v1/tenants/{cloud.a.id}/tokens", token=cloud.a.read_token).json()
    path = f"/v1/tenants/{cloud.a.id}/tokens/{created['tokenId']}"
    assert cloud.request("DELETE", path, token=cloud.a.read_token).status == 204
    assert cloud.request("GET", "/graph", token=created["token"]).status == 401
    again = cloud.request("DELETE", path, token=cloud.a.read_token)
    assert again.status == 404 and again.error_code == "not_found"


def test_admin_manages_tenants_but_reads_no_graph(cloud: Cloud) -> None:
    listed = cloud.request("GET", f"/v1/tenants/{cloud.a.id}/clusters", token=cloud.admin_token)
    assert listed.status == 200 and len(listed.json()["clusters"]) == 1
    created = cloud.request(
        "POST", f"/v1/tenants/{cloud.a.id}/clusters", token=cloud.admin_token, body={"name": "x"}
    )
    assert created.status == 201
    assert cloud.request("GET", f"/v1/tenants/{cloud.a.id}/graph", token=cloud.admin_token).status == 403
    assert cloud.request("GET", "/graph", token=cloud.admin_token).status == 403


def test_unknown_and_platform_tenants_are_404(cloud: Cloud) -> None:
    for tenant in ("t_0000000000000000", PLATFORM_TENANT):
        for method, suffix in (("GET", "clusters"), ("POST", "tokens"), ("GET", "tokens")):
            reply = cloud.request(method, f"/v1/tenants/{tenant}/{suffix}", token=cloud.admin_token)
            assert reply.status == 404, (tenant, suffix, reply)
    reply = cloud.request("GET", "/v1/tenants/bad%20id!/clusters", token=cloud.admin_token)
    assert reply.status in (404, 422)
