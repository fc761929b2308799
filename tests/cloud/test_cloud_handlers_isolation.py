"""Tenant isolation, route by route: tenant B's tokens (owner, read and ingest) get 403 on every
route of tenant A, A's read token gets 403 on A's own owner routes, a missing or unknown token gets
401, and unknown routes answer a JSON 404."""

from __future__ import annotations

import json

import pytest
from cloud_handler_support import Cloud, cloud_fixture, edge  # noqa: F401
from test_cloud_coverage import coverage_document

from cloud_functions.handlers.app import openapi_document

TENANT_ROUTES = [
    ("POST", "/v1/tenants/{tenant}/clusters", {"name": "evil"}),
    ("GET", "/v1/tenants/{tenant}/clusters", None),
    ("POST", "/v1/tenants/{tenant}/tokens", None),
    ("GET", "/v1/tenants/{tenant}/tokens", None),
    ("DELETE", "/v1/tenants/{tenant}/tokens/{token_id}", None),
    ("GET", "/v1/tenants/{tenant}/graph", None),
    ("GET", "/v1/tenants/{tenant}/graph/summary", None),
    ("GET", "/v1/tenants/{tenant}/export", None),
]
READ_ROUTES = frozenset(
    {
        ("GET", "/v1/tenants/{tenant}/clusters"),
        ("GET", "/v1/tenants/{tenant}/graph"),
        ("GET", "/v1/tenants/{tenant}/graph/summary"),
        ("GET", "/v1/tenants/{tenant}/export"),
    }
)
"""The tenant routes a read token may use; the others need an owner (or the admin)."""
OWNER_ROUTES = [(m, p, b) for m, p, b in TENANT_ROUTES if (m, p) not in READ_ROUTES]
CLUSTER_ROUTES = [
    ("GET", "/v1/tenants/{tenant}/snapshots", None),
    ("GET", "/v1/tenants/{tenant}/snapshots/before", None),
    ("GET", "/v1/tenants/{tenant}/diff", None),
    ("POST", "/v1/tenants/{tenant}/check", None),
    ("GET", "/v1/tenants/{tenant}/coverage", None),
]
"""Read routes of one cluster's snapshots, checks and coverage (each takes ``cluster``, the diff
``from``)."""
PROTECTED = (
    TENANT_ROUTES
    + CLUSTER_ROUTES
    + [
        ("POST", "/v1/tenants", {"name": "x"}),
        ("POST", "/v1/ingest", {"batchId": "x", "edges": []}),
        ("POST", "/v1/snapshots", {"name": "x"}),
        ("POST", "/v1/coverage", {}),
        ("GET", "/graph", None),
        ("GET", "/v1/graph", None),
        ("GET", "/v1/session", None),
    ]
)


def test_the_route_list_covers_the_openapi_document() -> None:
    documented = {
        (
            method.upper(),
            path.replace("{tenantId}", "{tenant}")
            .replace("{tokenId}", "{token_id}")
            .replace("{name}", "before"),
        )
        for path, operations in json.loads(openapi_document())["paths"].items()
        for method in operations
    }
    public = {("POST", "/v1/metrics"), ("GET", "/healthz")}
    assert documented - public == {(m, p) for m, p, _ in PROTECTED}


def a_token_id(cloud: Cloud) -> str:
    """The id of A's ingest token (revoking it leaves A's owner and read tokens working)."""
    tokens = cloud.request("GET", f"/v1/tenants/{cloud.a.id}/tokens", token=cloud.a.owner_token).json()[
        "tokens"
    ]
    return str(next(t["tokenId"] for t in tokens if t["role"] == "ingest"))


@pytest.mark.parametrize(("method", "path", "body"), TENANT_ROUTES)
def test_tenant_b_gets_403_on_every_route_of_tenant_a(
    cloud: Cloud, method: str, path: str, body: object
) -> None:
    (a_cluster,) = cloud.a.clusters
    cloud.ingest(cloud.a, a_cluster, "1", [edge("secret-client", "secret-server")])
    before = cloud.store.tokens(cloud.a.id), cloud.store.clusters(cloud.a.id), cloud.store.edges(cloud.a.id)
    url = path.format(tenant=cloud.a.id, token_id=a_token_id(cloud))
    (b_ingest,) = cloud.b.clusters.values()
    for token in (cloud.b.owner_token, cloud.b.read_token, b_ingest):
        reply = cloud.request(method, url, token=token, body=body)
        assert reply.status == 403, (token == b_ingest, reply)
        assert reply.error_code == "forbidden"
        assert "secret" not in reply.text
    after = cloud.store.tokens(cloud.a.id), cloud.store.clusters(cloud.a.id), cloud.store.edges(cloud.a.id)
    assert after == before
    # and A itself may (read routes answer 200, writes 201/204)
    assert cloud.request(method, url, token=cloud.a.owner_token, body=body).status in (200, 201, 204)


@pytest.mark.parametrize(("method", "path", "body"), CLUSTER_ROUTES)
def test_tenant_b_gets_403_on_the_cluster_routes_of_tenant_a(
    cloud: Cloud, method: str, path: str, body: object
) -> None:
    (a_cluster,) = cloud.a.clusters
    snapshot = {"apiVersion": "network-mapper/v1", "kind": "Snapshot", "name": "before"}
    snapshot["takenAt"] = "2025-11-28T02:16:06Z"
    uploaded = cloud.request("POST", "/v1/snapshots", token=cloud.a.clusters[a_cluster], body=snapshot)
    assert uploaded.status == 200, uploaded
    covered = cloud.request(
        "POST", "/v1/coverage", token=cloud.a.clusters[a_cluster], body=coverage_document()
    )
    assert covered.status in (200, 204), covered
    url, query = path.format(tenant=cloud.a.id), {"cluster": a_cluster, "from": "before"}
    (b_ingest,) = cloud.b.clusters.values()
    for token in (cloud.b.owner_token, cloud.b.read_token, b_ingest):
        reply = cloud.request(method, url, token=token, query=query, raw=b"", content_type="application/yaml")
        assert reply.status == 403 and reply.error_code == "forbidden", (token == b_ingest, reply)
    # and A's read token may
    reply = cloud.request(
        method, url, token=cloud.a.read_token, query=query, raw=b"", content_type="application/yaml"
    )
    assert reply.status == 200, reply


@pytest.mark.parametrize(("method", "path", "body"), OWNER_ROUTES)
def test_a_read_token_gets_403_on_its_own_tenants_owner_routes(
    cloud: Cloud, method: str, path: str, body: object
) -> None:
    url = path.format(tenant=cloud.a.id, token_id=a_token_id(cloud))
    before = cloud.store.tokens(cloud.a.id), cloud.store.clusters(cloud.a.id)
    reply = cloud.request(method, url, token=cloud.a.read_token, body=body)
    assert reply.status == 403 and reply.error_code == "forbidden", reply
    assert (cloud.store.tokens(cloud.a.id), cloud.store.clusters(cloud.a.id)) == before


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_missing_or_unknown_tokens_get_401_everywhere(
    cloud: Cloud, method: str, path: str, body: object
) -> None:
    url = path.format(tenant=cloud.a.id, token_id="k_0000000000000000")
    for token in (None, "nm_" + "1" * 64, "garbage", ""):
        reply = cloud.request(method, url, token=token, body=body)
        assert reply.status == 401, (token, reply)
        assert reply.error_code == "unauthorized"


def test_b_sees_only_its_own_graph_and_writes_only_its_own_cluster(cloud: Cloud) -> None:
    (a_cluster,) = cloud.a.clusters
    (b_cluster,) = cloud.b.clusters
    cloud.ingest(cloud.a, a_cluster, "same-batch-id", [edge("alpha-client", "alpha-server")])
    reply = cloud.ingest(cloud.b, b_cluster, "same-batch-id", [edge("bravo-client", "bravo-server")])
    assert reply.json() == {"stored": True, "edgesWritten": 1}, "batch ids are per cluster"
    for path in (
        "/graph",
        "/v1/graph",
        f"/v1/tenants/{cloud.b.id}/graph",
        f"/v1/tenants/{cloud.b.id}/export",
    ):
        text = cloud.request("GET", path, token=cloud.b.read_token, query={"format": "json"}).text
        assert "bravo-client" in text and "alpha" not in text
    filtered = cloud.request("GET", "/graph", token=cloud.b.read_token, query={"cluster": a_cluster})
    assert filtered.json()["edges"] == []


def test_b_cannot_delete_a_token_of_a_through_its_own_tenant(cloud: Cloud) -> None:
    a_token = a_token_id(cloud)
    reply = cloud.request("DELETE", f"/v1/tenants/{cloud.b.id}/tokens/{a_token}", token=cloud.b.owner_token)
    assert reply.status == 404
    assert a_token in {t.token_id for t in cloud.store.tokens(cloud.a.id)}
    assert cloud.request("GET", "/graph", token=cloud.a.read_token).status == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("GET", "/v2/graph"),
        ("PUT", "/v1/ingest"),
        ("PATCH", "/graph"),
        ("GET", "/v1/tenants"),
    ],
)
def test_unknown_routes_are_json_404(cloud: Cloud, method: str, path: str) -> None:
    reply = cloud.request(method, path, token=cloud.a.read_token)
    assert reply.status == 404 and reply.error_code == "not_found"
    assert reply.headers["content-type"] == "application/json"
