"""``GET /v1/tenants/{tenantId}/export``: the tenant's graph as ClientIntents, NetworkPolicies
(YAML), IAM policies — from :mod:`agent.exports`, the CLI's own exporters — or the JSON export
(the codec's :class:`agent.wire.EdgesDocument`).

Edges of equal key from several clusters are merged first (``agent.model.merge_edges``);
``cluster`` narrows the export to some clusters (comma-separated ids).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from agent import wire
from agent.exports import client_intents, network_policies, yaml_documents
from agent.exports.iam import iam_policies
from agent.model import Edge
from cloud_functions.auth import SECURITY, Caller, Store
from cloud_functions.handlers.admin import TenantId
from cloud_functions.handlers.graph import ClusterFilter, cluster_ids, json_response, merged, reader

router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]  # powertools leaves __init__ bare

YAML = "application/yaml"


class Format(enum.StrEnum):
    CLIENTINTENTS = "clientintents"
    NETWORKPOLICY = "networkpolicy"
    IAM = "iam"
    JSON = "json"


class Version(enum.StrEnum):
    V2BETA1 = "v2beta1"
    V1ALPHA3 = "v1alpha3"


def export(edges: Sequence[Edge], fmt: Format, version: Version) -> Response[str]:
    """Edges → the export's response (pure apart from building the response object)."""
    if fmt is Format.CLIENTINTENTS:
        return Response(200, YAML, yaml_documents(client_intents(edges, str(version))))
    if fmt is Format.NETWORKPOLICY:
        return Response(200, YAML, yaml_documents(network_policies(edges)))
    if fmt is Format.IAM:
        return json_response(iam_policies(edges))
    return json_response(wire.export_document(edges))


@router.get(
    "/v1/tenants/<tenantId>/export",
    security=SECURITY,
    tags=["export"],
    summary="Export the tenant's graph",
    responses={
        200: {
            "description": "YAML documents (clientintents, networkpolicy) or JSON (iam, json)",
            "content": {YAML: {"schema": {"type": "string"}}, "application/json": {"schema": {}}},
        }
    },
)
def export_graph(  # noqa: PLR0917 - the route's parameters are the query's
    tenantId: TenantId,
    store: Store,
    caller: Caller,
    format: Annotated[Format, Query(description="What to export.")] = Format.CLIENTINTENTS,
    version: Annotated[Version, Query(description="ClientIntents API version.")] = Version.V2BETA1,
    cluster: ClusterFilter = None,
) -> Response[str]:
    tenant = reader(caller, tenantId)
    edges = [edge for edge, _, _ in merged(store.edges(tenant, cluster_ids=cluster_ids(cluster)))]
    return export(edges, format, version)
