"""Tenant, cluster and token administration.

``POST /v1/tenants`` (admin) creates a tenant and its first read token; a tenant's read token
(or an admin) adds clusters — each with its ingest token — and read tokens, lists them and
revokes them. Tokens are returned once, at creation; the store keeps their hash only, and
listings show ids and roles.
"""

from __future__ import annotations

import time
from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.depends import Depends
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel, ConfigDict, Field

from agent.exports.jsonexport import rfc3339
from cloud_functions.auth import (
    PLATFORM_TENANT,
    ApiError,
    current_caller,
    current_store,
    hash_token,
    new_id,
    new_token,
    require,
)
from cloud_functions.store.base import GraphStore, TokenRecord

router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]  # powertools leaves __init__ bare

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
TenantId = Annotated[str, Path(pattern=ID_PATTERN, description="The tenant's id (``t_…``).")]
TokenId = Annotated[str, Path(pattern=ID_PATTERN, description="The token's id (``k_…``).")]
Store = Annotated[GraphStore, Depends(current_store)]
Caller = Annotated[TokenRecord | None, Depends(current_caller)]
SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}]


class NameIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128, description="A display name.")


class TenantCreated(BaseModel):
    tenantId: str
    tokenId: str
    readToken: str = Field(description="A read token of the new tenant; shown only now.")


class ClusterCreated(BaseModel):
    clusterId: str
    tokenId: str
    ingestToken: str = Field(description="The cluster's ingest token; shown only now.")


class ClusterOut(BaseModel):
    clusterId: str
    name: str
    createdAt: str
    lastHeartbeat: str | None = Field(
        default=None, description="The latest heartbeat (seenAt) the cluster's mapper sent; null: none yet."
    )


class ClusterList(BaseModel):
    clusters: list[ClusterOut]


class TokenCreated(BaseModel):
    tokenId: str
    token: str = Field(description="A new read token of the tenant; shown only now.")


class TokenOut(BaseModel):
    tokenId: str
    role: str
    clusterId: str
    createdAt: str


class TokenList(BaseModel):
    tokens: list[TokenOut]


# --------------------------------------------------------------------------- pure parts


def issue_token(
    store: GraphStore, tenant_id: str, role: str, now: float, cluster_id: str = ""
) -> TokenCreated:
    """A new token of ``role`` for the tenant: stored by hash; the token itself is returned once."""
    token, token_id = new_token(), new_id("k")
    record = TokenRecord(
        token_hash=hash_token(token),
        tenant_id=tenant_id,
        role=role,  # type: ignore[arg-type]  # one of the literal roles, chosen by the callers below
        token_id=token_id,
        created_at=now,
        cluster_id=cluster_id,
    )
    store.put_token(record)
    return TokenCreated(tokenId=token_id, token=token)


def _tenant(store: GraphStore, caller: TokenRecord | None, tenant_id: str) -> None:
    """Admin or the tenant's read token, for an existing (non-platform) tenant."""
    require(caller, "admin", "read", tenant_id=tenant_id)
    if tenant_id == PLATFORM_TENANT or store.get_tenant(tenant_id) is None:
        raise ApiError(404, "not_found", f"no tenant {tenant_id!r}")


# --------------------------------------------------------------------------- routes


@router.post(
    "/v1/tenants", status_code=201, security=SECURITY, tags=["admin"], summary="Create a tenant (admin)"
)
def create_tenant(body: NameIn, store: Store, caller: Caller) -> TenantCreated:
    require(caller, "admin")
    now, tenant_id = time.time(), new_id("t")
    store.create_tenant(tenant_id, body.name, now)
    first = issue_token(store, tenant_id, "read", now)
    return TenantCreated(tenantId=tenant_id, tokenId=first.tokenId, readToken=first.token)


@router.post(
    "/v1/tenants/<tenantId>/clusters",
    status_code=201,
    security=SECURITY,
    tags=["admin"],
    summary="Add a cluster and get its ingest token",
)
def add_cluster(tenantId: TenantId, body: NameIn, store: Store, caller: Caller) -> ClusterCreated:
    _tenant(store, caller, tenantId)
    now, cluster_id = time.time(), new_id("c")
    store.add_cluster(tenantId, cluster_id, body.name, now)
    token = issue_token(store, tenantId, "ingest", now, cluster_id=cluster_id)
    return ClusterCreated(clusterId=cluster_id, tokenId=token.tokenId, ingestToken=token.token)


@router.get("/v1/tenants/<tenantId>/clusters", security=SECURITY, tags=["admin"], summary="List clusters")
def list_clusters(tenantId: TenantId, store: Store, caller: Caller) -> ClusterList:
    _tenant(store, caller, tenantId)
    return ClusterList(
        clusters=[
            ClusterOut(
                clusterId=c.id,
                name=c.name,
                createdAt=rfc3339(c.created_at),
                lastHeartbeat=None if c.heartbeat is None else rfc3339(c.heartbeat),
            )
            for c in store.clusters(tenantId)
        ]
    )


@router.post(
    "/v1/tenants/<tenantId>/tokens",
    status_code=201,
    security=SECURITY,
    tags=["admin"],
    summary="Create a read token",
)
def create_token(tenantId: TenantId, store: Store, caller: Caller) -> TokenCreated:
    _tenant(store, caller, tenantId)
    return issue_token(store, tenantId, "read", time.time())


@router.get("/v1/tenants/<tenantId>/tokens", security=SECURITY, tags=["admin"], summary="List token ids")
def list_tokens(tenantId: TenantId, store: Store, caller: Caller) -> TokenList:
    _tenant(store, caller, tenantId)
    return TokenList(
        tokens=[
            TokenOut(tokenId=t.token_id, role=t.role, clusterId=t.cluster_id, createdAt=rfc3339(t.created_at))
            for t in store.tokens(tenantId)
        ]
    )


@router.delete(
    "/v1/tenants/<tenantId>/tokens/<tokenId>",
    status_code=204,
    security=SECURITY,
    tags=["admin"],
    summary="Revoke a token",
)
def delete_token(tenantId: TenantId, tokenId: TokenId, store: Store, caller: Caller) -> Response[None]:
    _tenant(store, caller, tenantId)
    store.delete_token(tenantId, tokenId)
    return Response(status_code=204)
