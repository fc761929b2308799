"""``GET /v1/session``: the presented token's tenant and role (how the console, given a read
token, learns its tenant); 401 without a valid token."""

from __future__ import annotations

from cloud_handler_support import Cloud, cloud_fixture  # noqa: F401

from cloud_functions.auth import PLATFORM_TENANT


def test_each_token_learns_its_tenant_and_role(cloud: Cloud) -> None:
    (a_ingest,) = cloud.a.clusters.values()
    expected = [
        (cloud.a.read_token, cloud.a.id, "read"),
        (cloud.a.owner_token, cloud.a.id, "owner"),
        (a_ingest, cloud.a.id, "ingest"),
        (cloud.b.read_token, cloud.b.id, "read"),
        (cloud.admin_token, PLATFORM_TENANT, "admin"),
    ]
    for token, tenant, role in expected:
        reply = cloud.request("GET", "/v1/session", token=token)
        assert reply.status == 200, reply
        assert reply.headers["content-type"] == "application/json"
        assert reply.json() == {"tenantId": tenant, "role": role}
        assert token not in reply.text


def test_no_or_unknown_token_is_401(cloud: Cloud) -> None:
    for token in (None, "", "garbage", "nm_" + "0" * 64):
        reply = cloud.request("GET", "/v1/session", token=token)
        assert reply.status == 401 and reply.error_code == "unauthorized", (token, reply)


def test_a_revoked_token_is_401(cloud: Cloud) -> None:
    minted = cloud.request(
        "POST", f"/v1/tenants/{cloud.a.id}/tokens", token=cloud.a.owner_token, body={"role": "read"}
    ).json()
    assert cloud.request("GET", "/v1/session", token=minted["token"]).status == 200
    path = f"/v1/tenants/{cloud.a.id}/tokens/{minted['tokenId']}"
    assert cloud.request("DELETE", path, token=cloud.a.owner_token).status == 204
    assert cloud.request("GET", "/v1/session", token=minted["token"]).status == 401
