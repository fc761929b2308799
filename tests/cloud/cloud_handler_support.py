"""Shared helpers of the cloud handler tests: a store with an admin and two tenants (each with an
owner token, a read token minted with it, and one cluster), event
builders (the local server's own ``http_event``, so events look like API Gateway's v2), and
the recorded event fixtures in ``tests/data/cloud`` with their token placeholders filled in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from cloud_functions.gatewayevents import http_event
from cloud_functions.handlers import CloudApp, CloudSettings
from cloud_functions.local import ensure_admin_token
from cloud_functions.store.sqlite import SqliteGraphStore

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "tests" / "data" / "cloud"
EXPORTS = REPO / "tests" / "data" / "exports"
CRD = EXPORTS / "clientintents-crd.yaml"
T0 = 1764296106.918878


@dataclass
class Reply:
    status: int
    headers: dict[str, Any]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)

    @property
    def error_code(self) -> str:
        body = self.json()
        assert set(body) == {"error"}, body
        assert {"code", "message"} <= set(body["error"]), body
        return str(body["error"]["code"])


@dataclass
class Tenant:
    id: str
    owner_token: str  # administers the tenant (and reads)
    read_token: str  # reads only
    clusters: dict[str, str] = field(default_factory=dict)  # cluster id → ingest token


@dataclass
class Cloud:
    app: CloudApp
    store: SqliteGraphStore
    admin_token: str
    a: Tenant
    b: Tenant

    def __call__(self, event: dict[str, Any]) -> Reply:
        response = self.app(event, None)
        assert isinstance(response["statusCode"], int)
        headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
        return Reply(response["statusCode"], headers, response.get("body") or "")

    def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
        query: dict[str, str] | None = None,
    ) -> Reply:
        return self(
            event(method, path, token=token, body=body, raw=raw, content_type=content_type, query=query)
        )

    def new_tenant(self, name: str) -> Tenant:
        reply = self.request("POST", "/v1/tenants", token=self.admin_token, body={"name": name})
        assert reply.status == 201, reply
        tenant_id, owner = reply.json()["tenantId"], reply.json()["ownerToken"]
        read = self.request("POST", f"/v1/tenants/{tenant_id}/tokens", token=owner, body={"role": "read"})
        assert read.status == 201 and read.json()["role"] == "read", read
        return Tenant(tenant_id, owner, read.json()["token"])

    def new_cluster(self, tenant: Tenant, name: str) -> str:
        reply = self.request(
            "POST", f"/v1/tenants/{tenant.id}/clusters", token=tenant.owner_token, body={"name": name}
        )
        assert reply.status == 201, reply
        cluster = reply.json()
        tenant.clusters[cluster["clusterId"]] = cluster["ingestToken"]
        return str(cluster["clusterId"])

    def ingest(self, tenant: Tenant, cluster: str, batch: str, edges: list[dict[str, Any]]) -> Reply:
        return self.request(
            "POST", "/v1/ingest", token=tenant.clusters[cluster], body={"batchId": batch, "edges": edges}
        )


def event(
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: Any = None,
    raw: bytes | None = None,
    content_type: str = "application/json",
    query: dict[str, str] | None = None,
) -> dict[str, Any]:
    headers = [("Host", "cloud.test"), ("User-Agent", "pytest")]
    if token is not None:
        headers.append(("Authorization", f"Bearer {token}"))
    payload = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    if payload:
        headers.append(("Content-Type", content_type))
    target = path + ("?" + urlencode(query) if query else "")
    return http_event(method, target, headers, payload, "10.1.2.3")


def recorded(name: str, **values: str) -> dict[str, Any]:
    """A recorded event from tests/data/cloud with ``{{KEY}}`` placeholders replaced."""
    text = (EVENTS / f"{name}.json").read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    assert "{{" not in text, f"unfilled placeholder in {name}"
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def demo_edges() -> list[dict[str, Any]]:
    document = json.loads((EXPORTS / "demo-edges.json").read_text(encoding="utf-8"))
    edges: list[dict[str, Any]] = document["edges"]
    return edges


def edge(
    client: str,
    target: str,
    *,
    ns: str = "shop",
    method: str = "tcp",
    last: str = "2025-11-28T02:16:06Z",
    target_ns: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "client": {"name": client, "namespace": ns, "kind": "Deployment"},
        "target": {"type": "workload", "name": target, "namespace": target_ns or ns, "kind": "Deployment"},
        "methods": [method],
        "firstSeen": "2025-11-28T02:15:06Z",
        "lastSeen": last,
        "count": extra.pop("count", 1),
        **extra,
    }


@pytest.fixture(name="cloud")
def cloud_fixture(tmp_path: Path) -> Iterator[Cloud]:
    """A store with a bootstrapped admin and tenants ``a`` and ``b``, one cluster each."""
    store = SqliteGraphStore(tmp_path / "cloud.db")
    admin = ensure_admin_token(store, tmp_path / "admin.token")
    assert admin is not None
    app = CloudApp(store, CloudSettings(store=f"sqlite:{tmp_path / 'cloud.db'}", max_body_bytes=2_000_000))
    c = Cloud(app, store, admin, Tenant("", "", ""), Tenant("", "", ""))
    c.a, c.b = c.new_tenant("alpha"), c.new_tenant("bravo")
    c.new_cluster(c.a, "prod")
    c.new_cluster(c.b, "prod")
    yield c
    store.close()
