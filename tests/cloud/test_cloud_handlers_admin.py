"""Tenants, clusters and tokens: who may create what (admin, owner, read), and tokens shown once,
stored hashed."""

from __future__ import annotations

import re

import pytest
from cloud_handler_support import Cloud, cloud_fixture, recorded  # noqa: F401

from cloud_functions.auth import GRANTS, PLATFORM_TENANT, ApiError, hash_token, require
from cloud_functions.store.base import ROLES, TokenRecord


def test_recorded_admin_events(cloud: Cloud) -> None:
    created = cloud(recorded("create_tenant", ADMIN_TOKEN=cloud.admin_token))
    assert created.status == 201
    tenant = created.json()
    assert set(tenant) == {"tenantId", "tokenId", "ownerToken"}
    assert re.fullmatch(r"t_[0-9a-f]{16}", tenant["tenantId"])
    assert re.fullmatch(r"nm_[0-9a-f]{64}", tenant["ownerToken"])
    record = cloud.store.get_token(hash_token(tenant["ownerToken"]))
    assert record is not None and (record.role, record.tenant_id) == ("owner", tenant["tenantId"])
    cluster = cloud(recorded("add_cluster", OWNER_TOKEN=tenant["ownerToken"], TENANT_ID=tenant["tenantId"]))
    assert cluster.status == 201
    assert re.fullmatch(r"nm_[0-9a-f]{64}", cluster.json()["ingestToken"])
    listed = cloud.request("GET", f"/v1/tenants/{tenant['tenantId']}/clusters", token=tenant["ownerToken"])
    assert [(c["clusterId"], c["name"]) for c in listed.json()["clusters"]] == [
        (cluster.json()["clusterId"], "prod")
    ]


def test_only_admin_creates_tenants(cloud: Cloud) -> None:
    body = {"name": "mallory"}
    (ingest,) = cloud.a.clusters.values()
    for token in (cloud.a.owner_token, cloud.a.read_token, ingest):
        assert cloud.request("POST", "/v1/tenants", token=token, body=body).status == 403
    assert cloud.request("POST", "/v1/tenants", body=body).status == 401
    assert cloud.request("POST", "/v1/tenants", token=cloud.admin_token, body={"name": ""}).status == 422
    assert cloud.request("POST", "/v1/tenants", token=cloud.admin_token, body={"name": 3}).status == 422
    assert cloud.request("POST", "/v1/tenants", token=cloud.admin_token, body={}).status == 422


@pytest.mark.parametrize(
    ("body", "role"),
    [(None, "read"), ({}, "read"), ({"role": "read"}, "read"), ({"role": "owner"}, "owner")],
)
def test_an_owner_mints_read_and_owner_tokens(cloud: Cloud, body: object, role: str) -> None:
    path = f"/v1/tenants/{cloud.a.id}/tokens"
    created = cloud.request("POST", path, token=cloud.a.owner_token, body=body)
    assert created.status == 201
    assert set(created.json()) == {"tokenId", "role", "token"} and created.json()["role"] == role
    record = cloud.store.get_token(hash_token(created.json()["token"]))
    assert record is not None and (record.role, record.tenant_id, record.cluster_id) == (role, cloud.a.id, "")
    assert record.token_id == created.json()["tokenId"]
    # what the new token may do is its role's: an owner lists tokens, a reader is refused
    listed = cloud.request("GET", path, token=created.json()["token"])
    assert listed.status == (200 if role == "owner" else 403)


@pytest.mark.parametrize(
    "body", [{"role": "ingest"}, {"role": "admin"}, {"role": "OWNER"}, {"role": None}, {"owner": True}]
)
def test_only_read_and_owner_tokens_are_minted(cloud: Cloud, body: object) -> None:
    before = cloud.store.tokens(cloud.a.id)
    reply = cloud.request("POST", f"/v1/tenants/{cloud.a.id}/tokens", token=cloud.a.owner_token, body=body)
    assert reply.status == 422 and reply.error_code == "validation_error"
    assert cloud.store.tokens(cloud.a.id) == before


def test_a_read_token_reads_and_administers_nothing(cloud: Cloud) -> None:
    """Adding clusters and every token route answer a read token 403 (and change nothing); it lists
    the clusters and reads the graph and exports."""
    tenant = f"/v1/tenants/{cloud.a.id}"
    own_id = next(t.token_id for t in cloud.store.tokens(cloud.a.id) if t.role == "read")
    before = cloud.store.tokens(cloud.a.id), cloud.store.clusters(cloud.a.id)
    refused = [
        ("POST", f"{tenant}/clusters", {"name": "x"}),
        ("POST", f"{tenant}/tokens", None),
        ("POST", f"{tenant}/tokens", {"role": "read"}),
        ("POST", f"{tenant}/tokens", {"role": "owner"}),
        ("GET", f"{tenant}/tokens", None),
        ("DELETE", f"{tenant}/tokens/{own_id}", None),  # not even itself
        ("POST", "/v1/tenants", {"name": "x"}),
    ]
    for method, path, body in refused:
        reply = cloud.request(method, path, token=cloud.a.read_token, body=body)
        assert reply.status == 403 and reply.error_code == "forbidden", (method, path, reply)
    assert (cloud.store.tokens(cloud.a.id), cloud.store.clusters(cloud.a.id)) == before
    for path in (f"{tenant}/clusters", f"{tenant}/graph", f"{tenant}/export", "/graph", "/v1/graph"):
        assert cloud.request("GET", path, token=cloud.a.read_token).status == 200, path


def test_an_owner_reads_everything_a_read_token_reads(cloud: Cloud) -> None:
    (a_cluster,) = cloud.a.clusters
    ingest = cloud.a.clusters[a_cluster]
    edges = [{"client": {"name": "web", "namespace": "shop", "kind": "Deployment"}, "methods": ["tcp"]}]
    edges[0] |= {"target": {"type": "workload", "name": "db", "namespace": "shop", "kind": "Deployment"}}
    edges[0] |= {"firstSeen": "2025-11-28T02:15:06Z", "lastSeen": "2025-11-28T02:16:06Z", "count": 1}
    assert (
        cloud.request("POST", "/v1/ingest", token=ingest, body={"batchId": "1", "edges": edges}).status == 200
    )
    tenant = f"/v1/tenants/{cloud.a.id}"
    for path, query, shows in [
        (f"{tenant}/clusters", None, "prod"),
        (f"{tenant}/graph", None, "web"),
        ("/graph", None, "web"),
        ("/v1/graph", {"merge": "true"}, "web"),
        (f"{tenant}/export", {"format": "clientintents"}, "web"),
        (f"{tenant}/export", {"format": "networkpolicy"}, "web"),
    ]:
        read = cloud.request("GET", path, token=cloud.a.read_token, query=query)
        owner = cloud.request("GET", path, token=cloud.a.owner_token, query=query)
        assert read.status == owner.status == 200, (path, read, owner)
        assert owner.text == read.text and shows in owner.text, path


def test_tokens_are_stored_hashed_and_listed_without_secrets(cloud: Cloud) -> None:
    path = f"/v1/tenants/{cloud.a.id}/tokens"
    created = cloud.request("POST", path, token=cloud.a.owner_token, body={"role": "owner"})
    assert created.status == 201
    token = created.json()["token"]
    listed = cloud.request("GET", path, token=token)
    assert listed.status == 200
    for secret in (token, cloud.a.owner_token, cloud.a.read_token):
        assert secret not in listed.text and hash_token(secret) not in listed.text
    roles = sorted(t["role"] for t in listed.json()["tokens"])
    assert roles == ["ingest", "owner", "owner", "read"]
    assert all(set(t) == {"tokenId", "role", "clusterId", "createdAt"} for t in listed.json()["tokens"])
    for db_file in cloud.store.path.parent.glob("cloud.db*"):
        assert token.encode() not in db_file.read_bytes()


def test_revoking_a_token(cloud: Cloud) -> None:
    path = f"/v1/tenants/{cloud.a.id}/tokens"
    read_id = next(t.token_id for t in cloud.store.tokens(cloud.a.id) if t.role == "read")
    assert cloud.request("DELETE", f"{path}/{read_id}", token=cloud.a.owner_token).status == 204
    assert cloud.request("GET", "/graph", token=cloud.a.read_token).status == 401
    again = cloud.request("DELETE", f"{path}/{read_id}", token=cloud.a.owner_token)
    assert again.status == 404 and again.error_code == "not_found"
    # an owner token minted by an owner can revoke the one that minted it
    second = cloud.request("POST", path, token=cloud.a.owner_token, body={"role": "owner"}).json()
    first_id = next(
        t.token_id
        for t in cloud.store.tokens(cloud.a.id)
        if t.role == "owner" and t.token_id != second["tokenId"]
    )
    assert cloud.request("DELETE", f"{path}/{first_id}", token=second["token"]).status == 204
    assert cloud.request("GET", path, token=cloud.a.owner_token).status == 401


def test_admin_manages_tenants_but_reads_no_graph(cloud: Cloud) -> None:
    listed = cloud.request("GET", f"/v1/tenants/{cloud.a.id}/clusters", token=cloud.admin_token)
    assert listed.status == 200 and len(listed.json()["clusters"]) == 1
    created = cloud.request(
        "POST", f"/v1/tenants/{cloud.a.id}/clusters", token=cloud.admin_token, body={"name": "x"}
    )
    assert created.status == 201
    owner = cloud.request(
        "POST", f"/v1/tenants/{cloud.a.id}/tokens", token=cloud.admin_token, body={"role": "owner"}
    )
    assert owner.status == 201 and owner.json()["role"] == "owner", "an admin can hand a tenant a new owner"
    assert cloud.request("GET", f"/v1/tenants/{cloud.a.id}/graph", token=cloud.admin_token).status == 403
    assert cloud.request("GET", "/graph", token=cloud.admin_token).status == 403


def test_unknown_and_platform_tenants_are_404(cloud: Cloud) -> None:
    for tenant in ("t_0000000000000000", PLATFORM_TENANT):
        for method, suffix in (("GET", "clusters"), ("POST", "tokens"), ("GET", "tokens")):
            reply = cloud.request(method, f"/v1/tenants/{tenant}/{suffix}", token=cloud.admin_token)
            assert reply.status == 404, (tenant, suffix, reply)
    reply = cloud.request("GET", "/v1/tenants/bad%20id!/clusters", token=cloud.admin_token)
    assert reply.status in (404, 422)


def test_grants() -> None:
    """Which role passes for which: an owner for a reader, nobody else for anybody else."""
    assert set(GRANTS) == set(ROLES)
    passes = {(role, needed) for role in ROLES for needed in ROLES if needed in GRANTS[role]}
    assert passes == {(r, r) for r in ROLES} | {("owner", "read")}
    for role in ROLES:
        caller = TokenRecord("h", "t1", role, "k", 0.0)
        for needed in ROLES:
            if (role, needed) in passes:
                assert require(caller, needed, tenant_id="t1") is caller
            else:
                with pytest.raises(ApiError) as refused:
                    require(caller, needed, tenant_id="t1")
                assert refused.value.status == 403
