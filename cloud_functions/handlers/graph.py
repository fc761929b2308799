"""The tenant's graph: ``GET /v1/tenants/{tenantId}/graph``, and ``/graph`` / ``/v1/graph`` for the
caller's own tenant (``curl -H 'Authorization: Bearer …' …/graph``).

Filters: ``cluster`` (ids, comma-separated), ``namespace``, ``workload`` (client or workload
target), ``protocol`` (how the edge was seen: one of the edge methods), ``since`` (RFC 3339 or
epoch seconds: edges last seen then or later). Edges come per cluster, each with its
``clusterId``; ``merge=true`` merges edges of equal key across clusters with
:func:`agent.model.merge_edges` into one edge with ``clusterIds``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.depends import Depends
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel

from agent.exports.jsonexport import edge_dict, edges_document, parse_rfc3339
from agent.model import Edge, Method, merge_edges
from cloud_functions.auth import ApiError, current_caller, current_store, require
from cloud_functions.handlers.admin import TenantId
from cloud_functions.store.base import GraphStore, StoredEdge, TokenRecord

router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]  # powertools leaves __init__ bare

ClusterFilter = Annotated[
    str | None, Query(max_length=2000, description="Cluster ids, comma-separated (default: all).")
]
NamespaceFilter = Annotated[str | None, Query(max_length=253, description="Client or target namespace.")]
WorkloadFilter = Annotated[str | None, Query(max_length=253, description="Client or target workload name.")]
ProtocolFilter = Annotated[Method | None, Query(description="Only edges seen by this method.")]
SinceFilter = Annotated[
    str | None, Query(max_length=64, description="RFC 3339 time or epoch seconds: last seen at or after.")
]
Store = Annotated[GraphStore, Depends(current_store)]
Caller = Annotated[TokenRecord | None, Depends(current_caller)]


class GraphOut(BaseModel):
    tenantId: str
    edges: list[dict[str, Any]]


GRAPH_RESPONSES: dict[int, Any] = {
    200: {"description": "The graph", "content": {"application/json": {"model": GraphOut}}}
}


# --------------------------------------------------------------------------- pure parts


def parse_since(text: str | None) -> float | None:
    """``since`` → epoch seconds; :class:`ApiError` 422 when it is neither RFC 3339 nor a number."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        try:
            return parse_rfc3339(text)
        except (ValueError, OverflowError) as error:
            raise ApiError(
                422, "validation_error", f"since: not an RFC 3339 time or epoch seconds: {error}"
            ) from None
    if not math.isfinite(value):
        raise ApiError(422, "validation_error", "since: must be a finite number")
    return value


def cluster_ids(text: str | None) -> list[str] | None:
    if text is None:
        return None
    ids = [c.strip() for c in text.split(",") if c.strip()]
    return ids or None


def merged(stored: Iterable[StoredEdge]) -> list[tuple[Edge, list[str]]]:
    """Edges of equal key merged across clusters, each with the sorted ids of its clusters."""
    by_key: dict[Any, tuple[Edge, set[str]]] = {}
    for row in stored:
        found = by_key.get(row.edge.key)
        if found is None:
            by_key[row.edge.key] = (row.edge, {row.cluster_id})
        else:
            by_key[row.edge.key] = (merge_edges(found[0], row.edge), found[1] | {row.cluster_id})
    return [(edge, sorted(clusters)) for edge, clusters in by_key.values()]


def _key_of(document_edge: dict[str, Any]) -> str:
    return json.dumps([document_edge["client"], document_edge["target"]], sort_keys=True)


def graph_document(tenant_id: str, stored: list[StoredEdge], merge: bool) -> dict[str, Any]:
    """The graph response: edge dicts (JSON export form) in export order, with their cluster(s)."""
    if merge:
        rows = merged(stored)
        clusters = {_key_of(edge_dict(edge)): ids for edge, ids in rows}
        edges = edges_document(edge for edge, _ in rows)["edges"]
        return {"tenantId": tenant_id, "edges": [e | {"clusterIds": clusters[_key_of(e)]} for e in edges]}
    by_cluster: dict[str, list[Edge]] = {}
    for row in stored:
        by_cluster.setdefault(row.cluster_id, []).append(row.edge)
    return {
        "tenantId": tenant_id,
        "edges": [
            e | {"clusterId": cluster}
            for cluster in sorted(by_cluster)
            for e in edges_document(by_cluster[cluster])["edges"]
        ],
    }


def read_edges(
    store: GraphStore,
    tenant_id: str,
    *,
    cluster: str | None = None,
    namespace: str | None = None,
    workload: str | None = None,
    protocol: Method | None = None,
    since: str | None = None,
) -> list[StoredEdge]:
    return store.edges(
        tenant_id,
        cluster_ids=cluster_ids(cluster),
        namespace=namespace or None,
        workload=workload or None,
        method=str(protocol) if protocol else None,
        since=parse_since(since),
    )


def reader(caller: TokenRecord | None, tenant_id: str | None) -> str:
    """The tenant a read token may read (its own); 401/403 otherwise."""
    token = require(caller, "read", tenant_id=tenant_id)
    return token.tenant_id


def json_response(document: Any, status: int = 200) -> Response[str]:
    return Response(status, "application/json", json.dumps(document, separators=(",", ":")))


# --------------------------------------------------------------------------- routes


def _graph(
    store: GraphStore,
    tenant_id: str,
    *,
    cluster: str | None,
    namespace: str | None,
    workload: str | None,
    protocol: Method | None,
    since: str | None,
    merge: bool,
) -> Response[str]:
    rows = read_edges(
        store,
        tenant_id,
        cluster=cluster,
        namespace=namespace,
        workload=workload,
        protocol=protocol,
        since=since,
    )
    return json_response(graph_document(tenant_id, rows, merge))


@router.get(
    "/v1/tenants/<tenantId>/graph",
    security=[{"bearerAuth": []}],
    tags=["graph"],
    summary="The tenant's graph",
    responses=GRAPH_RESPONSES,
)
def tenant_graph(  # noqa: PLR0917 - the route's parameters are the query's
    tenantId: TenantId,
    store: Store,
    caller: Caller,
    cluster: ClusterFilter = None,
    namespace: NamespaceFilter = None,
    workload: WorkloadFilter = None,
    protocol: ProtocolFilter = None,
    since: SinceFilter = None,
    merge: Annotated[bool, Query(description="Merge equal edges across clusters.")] = False,
) -> Response[str]:
    tenant = reader(caller, tenantId)
    return _graph(
        store,
        tenant,
        cluster=cluster,
        namespace=namespace,
        workload=workload,
        protocol=protocol,
        since=since,
        merge=merge,
    )


def own_graph(  # noqa: PLR0917 - the route's parameters are the query's
    store: Store,
    caller: Caller,
    cluster: ClusterFilter = None,
    namespace: NamespaceFilter = None,
    workload: WorkloadFilter = None,
    protocol: ProtocolFilter = None,
    since: SinceFilter = None,
    merge: Annotated[bool, Query(description="Merge equal edges across clusters.")] = False,
) -> Response[str]:
    """The caller's own tenant's graph."""
    tenant = reader(caller, None)
    return _graph(
        store,
        tenant,
        cluster=cluster,
        namespace=namespace,
        workload=workload,
        protocol=protocol,
        since=since,
        merge=merge,
    )


for _path in ("/v1/graph", "/graph"):
    router.get(
        _path,
        security=[{"bearerAuth": []}],
        tags=["graph"],
        summary="The caller's tenant's graph",
        responses=GRAPH_RESPONSES,
        operation_id=f"own_graph{_path.replace('/', '_')}",
    )(own_graph)
