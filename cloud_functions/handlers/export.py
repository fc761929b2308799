"""``GET /v1/tenants/{tenantId}/export``: the tenant's graph as ClientIntents, NetworkPolicies, Istio
AuthorizationPolicies, Strimzi KafkaUsers (YAML), IAM policies — from :mod:`agent.exports`, the
CLI's own exporters — or the JSON export (the codec's :class:`agent.wire.EdgesDocument`). The cloud
knows no pod labels: NetworkPolicies and AuthorizationPolicies select ``app.kubernetes.io/name``, and
KafkaUsers name their Strimzi cluster after the Kafka server workload (the exporters' defaults).

Edges of equal key from several clusters are merged first (``agent.model.merge_edges``);
``cluster`` narrows the export to some clusters (comma-separated ids). A selection exports only the
edges whose client it picks: ``workloads`` (``<namespace>/<name>``, comma-separated) and
``namespaces`` (comma-separated: every client in them), together their union; so a ClientIntents
export of a selection is the selected clients' documents, and a NetworkPolicy export the policies
their calls need. The console downloads exactly this route's body (all pages joined in order).

Pages (:mod:`cloud_functions.handlers.paging`): the edges come from the store a page at a time
(:meth:`~cloud_functions.store.base.GraphStore.edges_page`), and a page holds whole documents:
whole clients for ClientIntents (one document per client), IAM (one policy per client) and the
JSON export (whose edges run by client), whole servers for NetworkPolicy and Istio (one policy per
server workload; edges to other targets give none and are not read) and for KafkaUsers (one per
server and principal, named within the server: a principal's ACLs on a server come from all its
clients' edges to that server). So the documents of a walk's pages, joined in order, are the
documents of one page as large as the graph. A page holds at most ``limit`` edges, except that a
client (server) with more fills a page alone. Workloads are whole by namespace and name, whatever
their kinds: document names depend on the kinds that share them.
The next page's cursor is in the ``X-Next-Cursor`` header (absent on the last page), for every
format alike: the bodies stay exactly the exporters' documents.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from agent import wire
from agent.exports import (
    authorization_policies,
    client_intents,
    kafka_users,
    network_policies,
    yaml_documents,
)
from agent.exports.iam import iam_policies
from agent.model import Edge
from cloud_functions.auth import SECURITY, ApiError, Caller, Store
from cloud_functions.handlers.admin import TenantId
from cloud_functions.handlers.graph import ClusterFilter, cluster_ids, json_response, merged, names, reader
from cloud_functions.handlers.paging import (
    DEFAULT_LIMIT,
    NEXT_CURSOR_HEADER,
    Cursor,
    Limit,
    cursor_header,
    next_cursor,
    query_digest,
    read_page,
)
from cloud_functions.store.base import ClientSelection, PageOrder

router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]  # powertools leaves __init__ bare

YAML = "application/yaml"


class Format(enum.StrEnum):
    CLIENTINTENTS = "clientintents"
    NETWORKPOLICY = "networkpolicy"
    ISTIO = "istio"
    KAFKA_ACL = "kafka-acl"
    IAM = "iam"
    JSON = "json"


SERVER_FORMATS = frozenset({Format.NETWORKPOLICY, Format.ISTIO, Format.KAFKA_ACL})
"""Formats whose documents are per server workload: paged by server (see the module docstring)."""


SELECTION_TEXT = 8000
"""Characters of a selection parameter: 8 KB leave the URL under API Gateway's 10 KB request line."""
WorkloadsSelection = Annotated[
    str | None,
    Query(
        max_length=SELECTION_TEXT,
        description="Client workloads to export, as `<namespace>/<name>`, comma-separated "
        "(with `namespaces`: either picks a client). Absent, with `namespaces` absent: every client.",
    ),
]
NamespacesSelection = Annotated[
    str | None,
    Query(
        max_length=SELECTION_TEXT,
        description="Namespaces whose clients to export, comma-separated (with `workloads`: either "
        "picks a client). Absent, with `workloads` absent: every client.",
    ),
]


def selection(workloads: str | None, namespaces: str | None) -> ClientSelection | None:
    """The clients the ``workloads`` and ``namespaces`` parameters pick (None: every client);
    :class:`ApiError` 422 for a workload that is not ``<namespace>/<name>``."""
    picked, spaces = names(workloads, "workloads"), names(namespaces, "namespaces")
    if picked is None and spaces is None:
        return None
    pairs = set()
    for text in picked or ():
        namespace, slash, name = text.partition("/")
        if not (slash and namespace and name) or "/" in name:
            why = f"{text!r} is not <namespace>/<name>"
            detail = {"loc": ["query", "workloads"], "type": "value_error", "msg": why}
            raise ApiError(422, "validation_error", f"workloads: {why}", [detail])
        pairs.add((namespace, name))
    return ClientSelection(frozenset(pairs), frozenset(spaces or ()))


class Version(enum.StrEnum):
    V2BETA1 = "v2beta1"
    V1ALPHA3 = "v1alpha3"


def export(
    edges: Sequence[Edge], fmt: Format, version: Version, headers: dict[str, str] | None = None
) -> Response[str]:
    """Edges → the export's response (pure apart from building the response object)."""
    if fmt is Format.CLIENTINTENTS:
        return Response(200, YAML, yaml_documents(client_intents(edges, str(version))), headers=headers)
    if fmt is Format.NETWORKPOLICY:
        return Response(200, YAML, yaml_documents(network_policies(edges)), headers=headers)
    if fmt is Format.ISTIO:
        return Response(200, YAML, yaml_documents(authorization_policies(edges)), headers=headers)
    if fmt is Format.KAFKA_ACL:
        return Response(200, YAML, yaml_documents(kafka_users(edges)), headers=headers)
    if fmt is Format.IAM:
        return json_response(iam_policies(edges), headers)
    return json_response(wire.export_document(edges), headers)


@router.get(
    "/v1/tenants/<tenantId>/export",
    security=SECURITY,
    tags=["export"],
    summary="Export the tenant's graph",
    responses={
        200: {
            "description": "A page of YAML documents (clientintents, networkpolicy, istio, kafka-acl) "
            "or JSON (iam, json)",
            "headers": NEXT_CURSOR_HEADER,
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
    workloads: WorkloadsSelection = None,
    namespaces: NamespacesSelection = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response[str]:
    tenant = reader(caller, tenantId)
    order = PageOrder.SERVER if format in SERVER_FORMATS else PageOrder.CLIENT
    clusters, clients = cluster_ids(cluster), selection(workloads, namespaces)
    picked = None if clients is None else clients.digest_parts()
    query = query_digest("export", format, version, clusters, picked)
    page = read_page(
        store, tenant, order, cursor=cursor, query=query, limit=limit, cluster_ids=clusters, clients=clients
    )
    edges = [edge for edge, _, _ in merged(page.edges)]
    return export(edges, format, version, cursor_header(next_cursor(page, query)))
