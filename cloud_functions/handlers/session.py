"""``GET /v1/session``: who the presented token is — its tenant and role — so that the console,
given only a read token, learns which tenant to read. Any valid token may ask (an unknown one gets
401 before routing, as everywhere); the answer says nothing the token's holder could not learn
from the routes it may use, and never the token or its hash.
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel, Field

from cloud_functions.auth import SECURITY, Caller, require
from cloud_functions.store.base import Role

router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]  # powertools leaves __init__ bare


class SessionOut(BaseModel):
    tenantId: str = Field(description="The token's tenant (`platform` for the admin token).")
    role: Role = Field(description="What the token may do: `read`, `owner`, `ingest` (or `admin`).")


@router.get("/v1/session", security=SECURITY, tags=["session"], summary="The token's tenant and role")
def session(caller: Caller) -> SessionOut:
    who = require(caller, "admin", "owner", "read", "ingest")
    return SessionOut(tenantId=who.tenant_id, role=who.role)
