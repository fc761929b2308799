"""Tokens and who may do what.

Tokens are ``nm_`` + 64 hex digits (256 random bits from :mod:`secrets`). The store keeps only
their SHA-256 (``hash_token``); a request's bearer token is hashed and looked up, and the
record found is checked against the hash again in constant time. Tokens never reach logs.

Roles (:data:`GRANTS` says which role stands in for which):

* ``admin`` — the platform operator: creates tenants (and may manage any tenant's clusters
  and tokens, but reads no tenant's graph). Bootstrapped by ``cloud_functions.local`` on an
  empty store, or given to the Lambda as ``NM_ADMIN_TOKEN_SHA256`` (the hash, never the token);
* ``owner`` — a tenant's administrator: adds clusters (and so ingest tokens), mints owner and
  read tokens, lists and revokes them; and does everything a ``read`` token does. Creating a
  tenant returns its first owner token;
* ``read`` — a tenant's viewer: reads its tenant's graph, exports, snapshots and diffs, checks
  policies against it and lists its clusters, nothing else (403 on adding clusters and on every
  token route). It is the token a console URL may carry, so it must never be an admin key;
* ``ingest`` — one cluster's uploader: posts edges and snapshots for that cluster only.

A token reaches its own tenant only: any other tenant's route answers 403.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Annotated, Any

from aws_lambda_powertools.event_handler.depends import Depends
from aws_lambda_powertools.event_handler.request import Request

from cloud_functions.store.base import GraphStore, Role, TokenRecord

TOKEN_PREFIX = "nm_"  # noqa: S105 - a prefix, not a secret
PLATFORM_TENANT = "platform"
"""The tenant id admin tokens are filed under (never a real tenant's id: those start ``t_``)."""
GRANTS: Mapping[Role, frozenset[Role]] = {
    "admin": frozenset({"admin"}),
    "owner": frozenset({"owner", "read"}),
    "read": frozenset({"read"}),
    "ingest": frozenset({"ingest"}),
}
"""The roles a token of each role counts as: an owner passes wherever a read token would, so
routes name the least role they need (a graph route says ``read``) and owners are never left out.
An admin does not count as ``read``: it administers tenants but reads no tenant's graph."""


class ApiError(Exception):
    """A client's mistake (or a refusal), answered as ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []


def new_token() -> str:
    """A fresh token: ``nm_`` + 64 hex digits (256 bits)."""
    return TOKEN_PREFIX + secrets.token_hex(32)


def new_id(prefix: str) -> str:
    """A fresh public id (``t_…`` tenant, ``c_…`` cluster, ``k_…`` token): 64 random bits."""
    return f"{prefix}_{secrets.token_hex(8)}"


def hash_token(token: str) -> str:
    """What the store keeps of a token: its SHA-256, in hex."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def issue_token(
    store: GraphStore, tenant_id: str, role: Role, now: float, cluster_id: str = ""
) -> tuple[str, str]:
    """A new token of ``role`` for the tenant, stored by hash: ``(token id, token)``; the token
    itself is returned only this once."""
    token, token_id = new_token(), new_id("k")
    store.put_token(TokenRecord(hash_token(token), tenant_id, role, token_id, now, cluster_id=cluster_id))
    return token_id, token


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(TOKEN_PREFIX) or len(token) > 256:
        return None
    return token


def authenticate(store: GraphStore, authorization: str | None, admin_token_sha256: str = "") -> TokenRecord:
    """The token record behind an ``Authorization`` header; :class:`ApiError` 401 when there is none."""
    token = bearer_token(authorization)
    if token is None:
        raise ApiError(401, "unauthorized", "missing or malformed bearer token")
    digest = hash_token(token)
    if admin_token_sha256 and hmac.compare_digest(digest, admin_token_sha256):
        return TokenRecord(digest, PLATFORM_TENANT, "admin", "env", 0.0)  # the environment's token
    record = store.get_token(digest)
    if record is None or not hmac.compare_digest(record.token_hash, digest):
        raise ApiError(401, "unauthorized", "unknown token")
    return record


def require(caller: TokenRecord | None, *roles: Role, tenant_id: str | None = None) -> TokenRecord:
    """``caller`` if its role counts as one of ``roles`` (:data:`GRANTS`), for ``tenant_id`` unless
    it is admin; else 401/403."""
    if caller is None:
        raise ApiError(401, "unauthorized", "missing or malformed bearer token")
    if GRANTS[caller.role].isdisjoint(roles):
        raise ApiError(403, "forbidden", f"this route needs a token of role {' or '.join(roles)}")
    reaches = tenant_id is None or caller.role == "admin" or hmac.compare_digest(caller.tenant_id, tenant_id)
    if not reaches:
        raise ApiError(403, "forbidden", "the token does not belong to this tenant")
    return caller


# --------------------------------------------------------------------------- request dependencies


def current_store(request: Request) -> GraphStore:
    """The store of this invocation (put in the resolver's context by the Lambda entry)."""
    store: GraphStore = request.context["store"]
    return store


def current_caller(request: Request) -> TokenRecord | None:
    """The authenticated token record of this request, or None (public routes)."""
    caller: TokenRecord | None = request.context.get("caller")
    return caller


Store = Annotated[GraphStore, Depends(current_store)]
Caller = Annotated[TokenRecord | None, Depends(current_caller)]
SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}]
