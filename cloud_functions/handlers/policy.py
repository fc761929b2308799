"""``POST /v1/tenants/{tenantId}/check?cluster=``: would these policies deny a flow the cluster was
seen making?

The body is policy documents — Kubernetes NetworkPolicies and Otterize ClientIntents, YAML (one
or more documents) or JSON — at most :data:`MAX_POLICY_BYTES`; it is read by
:func:`agent.policy.load_policies` (a bad document answers 400 ``bad_request`` with the
:class:`agent.policy.PolicyError` message, which names the document and the field; so does nesting
past :mod:`agent.boundedjson`'s bounds) and evaluated by :func:`agent.policy.check` on
the cluster's graph (``since``: only edges last seen then or later; liveness applied) with the
facts of the cluster's newest snapshot (namespace labels, pods' labels and named ports; without
a snapshot, the exporters' default labels). The answer is :func:`agent.policy.report_json`.

Like the graph, it needs a ``read`` token of the tenant: it changes nothing.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from agent.policy import PolicyError, check, load_policies, report_json
from cloud_functions.auth import SECURITY, ApiError, Caller, Store
from cloud_functions.handlers.admin import TenantId
from cloud_functions.handlers.graph import SinceFilter, json_response, parse_since, reader
from cloud_functions.handlers.ingest import check_bounds
from cloud_functions.handlers.snapshots import ClusterId, live_map

router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]  # powertools leaves __init__ bare

MAX_POLICY_BYTES = 1024 * 1024
"""A check's policy documents at most (a thousand policies take a few hundred KB)."""
MEDIA_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "application/json", "text/plain")
"""What the body may be sent as (JSON is YAML)."""
SOURCE = "body"
"""The body's name in :class:`agent.policy.PolicyError` messages (``body: document 2 (...): ...``)."""


def request_body() -> dict[str, Any]:
    """The OpenAPI request body: the policy documents' text."""
    text = {"schema": {"type": "string", "maxLength": MAX_POLICY_BYTES}}
    return {"required": True, "content": dict.fromkeys(MEDIA_TYPES, text)}


@router.post(
    "/v1/tenants/<tenantId>/check",
    security=SECURITY,
    tags=["policy"],
    summary="Which observed flows would these policies deny?",
    description="NetworkPolicies and ClientIntents (YAML or JSON) evaluated on the cluster's graph.",
    responses={
        200: {"description": "agent.policy's JSON report", "content": {"application/json": {"schema": {}}}},
        400: {"description": "A policy document is malformed (the message names it and the field)"},
        413: {"description": f"More than {MAX_POLICY_BYTES} bytes of policies"},
    },
)
def check_policies(
    tenantId: TenantId, store: Store, caller: Caller, cluster: ClusterId, since: SinceFilter = None
) -> Response[str]:
    tenant = reader(caller, tenantId)
    text = router.current_event.decoded_body or ""
    media_type = (router.current_event.headers.get("content-type") or "").partition(";")[0].strip().lower()
    if text and media_type not in ("", *MEDIA_TYPES):
        raise ApiError(415, "unsupported_media_type", f"send one of {', '.join(MEDIA_TYPES)}")
    if len(text.encode()) > MAX_POLICY_BYTES:
        raise ApiError(413, "payload_too_large", f"policies are limited to {MAX_POLICY_BYTES} bytes")
    check_bounds(text)  # flow-style nesting and long numbers, as every JSON body (YAML's are the same)
    try:
        policies = load_policies([(SOURCE, text)])
    except PolicyError as error:
        raise ApiError(400, "bad_request", str(error)) from None
    except RecursionError:  # block-style nesting (indentation) deep enough to exhaust the YAML parser
        raise ApiError(400, "bad_request", f"{SOURCE}: the documents are nested too deep") from None
    current = live_map(store, tenant, cluster, parse_since(since))
    return json_response(report_json(check(current.edges, policies, current.facts)))
