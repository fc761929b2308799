"""Tenant, cluster and token administration: requests come through
:mod:`cloud_functions.handlers.app`, what is created goes to the store.

``POST /v1/tenants`` (admin) creates a tenant and its first owner token. A tenant's owner token
(or an admin) adds clusters, each with its ingest token, and mints owner or read tokens
(``{"role": ...}``, read when the body is empty), lists and revokes them; a read token may only
list the clusters (roles: :mod:`cloud_functions.auth`). Tokens are returned once, at creation.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel, ConfigDict, Field

from agent.wire import format_time
from cloud_functions.auth import (
    PLATFORM_TENANT,
    SECURITY,
    ApiError,
    Caller,
    Store,
    issue_token,
    new_id,
    require,
)
from cloud_functions.store.base import GraphStore, Role, TokenRecord

router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]  # powertools leaves __init__ bare
ADMIN: dict[str, Any] = {"security": SECURITY, "tags": ["admin"]}

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
TenantId = Annotated[str, Path(pattern=ID_PATTERN, description="The tenant's id (``t_…``).")]
TokenId = Annotated[str, Path(pattern=ID_PATTERN, description="The token's id (``k_…``).")]


class NameIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128, description="A display name.")


class TenantCreated(BaseModel):
    tenantId: str
    tokenId: str
    ownerToken: str = Field(
        description="The new tenant's first owner token (administers the tenant and reads its graph); "
        "shown only now."
    )


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


MintedRole = Literal["read", "owner"]  # ingest tokens come with their cluster, admin tokens with the platform


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    role: MintedRole = Field(
        default="read",
        description="``read``: reads the tenant's graph and exports only; ``owner``: also administers "
        "the tenant (clusters, tokens).",
    )


READ_TOKEN_REQUEST = TokenIn()
"""An empty body asks for a read token: the least a token may do is the default."""


class TokenCreated(BaseModel):
    tokenId: str
    role: MintedRole
    token: str = Field(description="The new token of the tenant; shown only now.")


class TokenOut(BaseModel):
    tokenId: str
    role: Role
    clusterId: str
    createdAt: str


class TokenList(BaseModel):
    tokens: list[TokenOut]


def _tenant(store: GraphStore, caller: TokenRecord | None, tenant_id: str, role: Role) -> None:
    """Admin or the tenant's token counting as ``role``, for an existing (non-platform) tenant."""
    require(caller, "admin", role, tenant_id=tenant_id)
    if tenant_id == PLATFORM_TENANT or store.get_tenant(tenant_id) is None:
        raise ApiError(404, "not_found", f"no tenant {tenant_id!r}")


# --------------------------------------------------------------------------- routes


@router.post("/v1/tenants", status_code=201, summary="Create a tenant (admin)", **ADMIN)
def create_tenant(body: NameIn, store: Store, caller: Caller) -> TenantCreated:
    require(caller, "admin")
    now, tenant_id = time.time(), new_id("t")
    store.create_tenant(tenant_id, body.name, now)
    token_id, token = issue_token(store, tenant_id, "owner", now)
    return TenantCreated(tenantId=tenant_id, tokenId=token_id, ownerToken=token)


@router.post(
    "/v1/tenants/<tenantId>/clusters",
    status_code=201,
    summary="Add a cluster and get its ingest token (owner)",
    **ADMIN,
)
def add_cluster(tenantId: TenantId, body: NameIn, store: Store, caller: Caller) -> ClusterCreated:
    _tenant(store, caller, tenantId, "owner")
    now, cluster_id = time.time(), new_id("c")
    store.add_cluster(tenantId, cluster_id, body.name, now)
    token_id, token = issue_token(store, tenantId, "ingest", now, cluster_id=cluster_id)
    return ClusterCreated(clusterId=cluster_id, tokenId=token_id, ingestToken=token)


@router.get("/v1/tenants/<tenantId>/clusters", summary="List clusters (read or owner)", **ADMIN)
def list_clusters(tenantId: TenantId, store: Store, caller: Caller) -> ClusterList:
    _tenant(store, caller, tenantId, "read")
    return ClusterList(
        clusters=[
            ClusterOut(
                clusterId=c.id,
                name=c.name,
                createdAt=format_time(c.created_at),
                lastHeartbeat=None if c.heartbeat is None else format_time(c.heartbeat),
            )
            for c in store.clusters(tenantId)
        ]
    )


@router.post(
    "/v1/tenants/<tenantId>/tokens",
    status_code=201,
    summary="Mint a read token (empty body) or an owner token (owner)",
    **ADMIN,
)
def create_token(
    tenantId: TenantId,
    store: Store,
    caller: Caller,
    body: Annotated[TokenIn, Body(description="The new token's role; read when the body is empty.")] = (
        READ_TOKEN_REQUEST
    ),
) -> TokenCreated:
    _tenant(store, caller, tenantId, "owner")
    token_id, token = issue_token(store, tenantId, body.role, time.time())
    return TokenCreated(tokenId=token_id, role=body.role, token=token)


@router.get("/v1/tenants/<tenantId>/tokens", summary="List token ids (owner)", **ADMIN)
def list_tokens(tenantId: TenantId, store: Store, caller: Caller) -> TokenList:
    _tenant(store, caller, tenantId, "owner")
    return TokenList(
        tokens=[
            TokenOut(
                tokenId=t.token_id, role=t.role, clusterId=t.cluster_id, createdAt=format_time(t.created_at)
            )
            for t in store.tokens(tenantId)
        ]
    )


@router.delete(
    "/v1/tenants/<tenantId>/tokens/<tokenId>", status_code=204, summary="Revoke a token (owner)", **ADMIN
)
def delete_token(tenantId: TenantId, tokenId: TokenId, store: Store, caller: Caller) -> Response[None]:
    _tenant(store, caller, tenantId, "owner")
    store.delete_token(tenantId, tokenId)
    return Response(status_code=204)
