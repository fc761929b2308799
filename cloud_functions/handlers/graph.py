"""The tenant's graph: ``GET /v1/tenants/{tenantId}/graph``, and ``/graph`` / ``/v1/graph`` for the
caller's own tenant (``curl -H 'Authorization: Bearer …' …/graph``).

Filters: ``cluster`` (ids, comma-separated), ``namespace``, ``workload`` (client or workload
target), ``protocol`` (how the edge was seen: one of the edge methods), ``since`` (RFC 3339 or
epoch seconds: edges last seen then or later). Edges come from the store
(:meth:`~cloud_functions.store.base.GraphStore.edges`, liveness applied) per cluster, each the
codec's edge document (:class:`agent.wire.EdgeDoc`) with its ``clusterId``, in key order;
``merge=true`` merges edges of equal key across clusters with :func:`agent.model.merge_edges`
into one edge with ``clusterIds``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Annotated, Any

import msgspec
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.depends import Depends
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel, WithJsonSchema

from agent import wire
from agent.model import Edge, Method, merge_edges
from cloud_functions.auth import ApiError, current_caller, current_store, require
from cloud_functions.handlers.admin import TenantId
from cloud_functions.handlers.schemas import edge_schema
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


def graph_edge_schema() -> dict[str, Any]:
    """An edge of the graph: the codec's edge document with its cluster (or, merged, clusters)."""
    schema = edge_schema()
    schema["properties"] |= {
        "clusterId": {"type": "string"},
        "clusterIds": {"type": "array", "items": {"type": "string"}},
    }
    return schema


class GraphOut(BaseModel):
    tenantId: str
    edges: Annotated[list[dict[str, Any]], WithJsonSchema({"type": "array", "items": graph_edge_schema()})]


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
            return wire.parse_time(text)
        except wire.WireError as error:
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


def merged(stored: Iterable[StoredEdge]) -> list[tuple[Edge, list[str], bool]]:
    """Edges of equal key merged across clusters, each with the sorted ids of its clusters and
    whether it is live in any of them."""
    by_key: dict[Any, tuple[Edge, set[str], bool]] = {}
    for row in stored:
        found = by_key.get(row.edge.key)
        if found is None:
            by_key[row.edge.key] = (row.edge, {row.cluster_id}, row.live)
        else:
            edge, clusters, live = found
            by_key[row.edge.key] = (
                merge_edges(edge, row.edge),
                clusters | {row.cluster_id},
                live or row.live,
            )
    return [(edge, sorted(clusters), live) for edge, clusters, live in by_key.values()]


def graph_document(tenant_id: str, stored: list[StoredEdge], merge: bool) -> dict[str, Any]:
    """The graph response: edge documents with their cluster(s), by cluster (unless merged) and key."""
    rows: list[tuple[wire.EdgeDoc, dict[str, Any]]]
    if merge:
        rows = [(wire.to_doc(e, live), {"clusterIds": ids}) for e, ids, live in merged(stored)]
        rows.sort(key=lambda row: wire.key_bytes(row[0]))
    else:  # the store's order: by cluster and key
        rows = [(wire.to_doc(s.edge, s.live), {"clusterId": s.cluster_id}) for s in stored]
    return {"tenantId": tenant_id, "edges": [msgspec.structs.asdict(doc) | extra for doc, extra in rows]}


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
    """JSON of plain values and the codec's documents (:func:`agent.wire.encode`)."""
    return Response(status, "application/json", wire.encode(document).decode())


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
