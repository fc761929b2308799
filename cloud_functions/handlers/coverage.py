"""A cluster's coverage in the cloud: what its mapper's map covers and what it missed.

* ``POST /v1/coverage`` (ingest token, like ``/v1/ingest``): the mapper's uploader sends its
  coverage document (:mod:`agent.mapper.coverage`: nodes with and without a reporting sniffer,
  producers' last status, drops by reason, top unresolved IPs) each upload cycle. It is checked
  against the document's shape (:class:`CoverageDoc`), re-encoded, and kept as the token's
  cluster's newest (the cluster comes from the token; a ``clusterId`` beside it must be the same);
* ``GET /v1/tenants/{tenantId}/coverage?cluster=``: the newest document, with when it arrived;
  404 when the cluster has sent none. Reads need a ``read`` token of the tenant.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import msgspec
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel

from agent.wiretime import format_time
from cloud_functions.auth import SECURITY, ApiError, Caller, Store, require
from cloud_functions.handlers.admin import TenantId
from cloud_functions.handlers.graph import json_response, reader
from cloud_functions.handlers.ingest import check_bounds, invalid
from cloud_functions.store.base import GraphStore

router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]  # powertools leaves __init__ bare

ClusterId = Annotated[str, Query(min_length=1, max_length=200, description="The cluster's id.")]
Text = Annotated[str, msgspec.Meta(max_length=1024)]
Count = Annotated[int, msgspec.Meta(ge=0)]
MAX_ITEMS = 10_000


class _Counter(msgspec.Struct, forbid_unknown_fields=True):
    name: Text
    value: Count


class _Node(msgspec.Struct, forbid_unknown_fields=True):
    name: Text
    covered: bool
    sniffers: Annotated[list[Text], msgspec.Meta(max_length=MAX_ITEMS)]
    lastReport: Text | None


class _Component(msgspec.Struct, forbid_unknown_fields=True):
    component: Text
    instance: Text
    node: Text
    watching: Annotated[list[Text], msgspec.Meta(max_length=MAX_ITEMS)]
    counters: Annotated[list[_Counter], msgspec.Meta(max_length=MAX_ITEMS)]
    lastReport: Text
    silent: bool


class _Drop(msgspec.Struct, forbid_unknown_fields=True):
    reason: Text
    source: Text
    count: Count
    explanation: Text


class _Unresolved(msgspec.Struct, forbid_unknown_fields=True):
    ip: Text
    count: Count
    lastSeen: Text


class CoverageDoc(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The coverage document, as the mapper's GraphQL ``coverage`` answers it (plus ``clusterId``)."""

    generatedAt: Text
    staleAfterSeconds: float
    covered: bool
    nodes: Annotated[list[_Node], msgspec.Meta(max_length=MAX_ITEMS)]
    components: Annotated[list[_Component], msgspec.Meta(max_length=MAX_ITEMS)]
    observationsReceived: Count
    observationsResolved: Count
    drops: Annotated[list[_Drop], msgspec.Meta(max_length=MAX_ITEMS)]
    unexplainedDrops: Count
    unresolvedIps: Annotated[list[_Unresolved], msgspec.Meta(max_length=MAX_ITEMS)]
    clusterId: str | None = None


def request_schema() -> dict[str, Any]:
    """The OpenAPI request body of ``POST /v1/coverage``: :class:`CoverageDoc`'s schema with its
    definitions inlined (the OpenAPI document resolves no ``$defs`` of a body)."""
    schema = msgspec.json.schema(CoverageDoc)
    definitions = schema.pop("$defs")

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(definitions[node["$ref"].rsplit("/", 1)[1]])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    found: dict[str, Any] = inline(schema)
    return found


class CoverageStored(BaseModel):
    clusterId: str
    receivedAt: str


def decode_upload(text: str) -> CoverageDoc:
    """The uploaded document, checked; :class:`ApiError` 422 saying what is wrong, and where."""
    check_bounds(text)
    try:
        return msgspec.json.decode(text, type=CoverageDoc)
    except msgspec.DecodeError as error:
        raise invalid([{"loc": ["body"], "type": "value_error", "msg": str(error)}]) from None


@router.post(
    "/v1/coverage",
    security=SECURITY,
    tags=["coverage"],
    summary="Upload the token's cluster's coverage",
    description="Kept as the cluster's newest (replacing the previous one).",
)
def upload_coverage() -> CoverageStored:
    store: GraphStore = router.context["store"]
    token = require(router.context.get("caller"), "ingest")
    if not token.cluster_id:
        raise ApiError(403, "forbidden", "the ingest token is bound to no cluster")
    document = decode_upload(router.current_event.decoded_body or "")
    if document.clusterId is not None and document.clusterId != token.cluster_id:
        raise ApiError(403, "forbidden", "the token uploads for its own cluster only")
    now = time.time()
    kept = msgspec.json.encode(msgspec.structs.replace(document, clusterId=None))
    store.put_coverage(token.tenant_id, token.cluster_id, now, kept)
    return CoverageStored(clusterId=token.cluster_id, receivedAt=format_time(now))


@router.get(
    "/v1/tenants/<tenantId>/coverage",
    security=SECURITY,
    tags=["coverage"],
    summary="A cluster's newest coverage",
    responses={
        200: {"description": "The coverage document", "content": {"application/json": {"schema": {}}}}
    },
)
def get_coverage(tenantId: TenantId, store: Store, caller: Caller, cluster: ClusterId) -> Response[str]:
    tenant = reader(caller, tenantId)
    found = store.coverage(tenant, cluster)
    if found is None:
        raise ApiError(404, "not_found", f"cluster {cluster!r} has sent no coverage")
    received_at, document = found
    body = {
        "tenantId": tenant,
        "clusterId": cluster,
        "receivedAt": format_time(received_at),
        "coverage": msgspec.json.decode(document),
    }
    return json_response(body)
