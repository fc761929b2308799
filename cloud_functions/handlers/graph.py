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
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel, WithJsonSchema

from agent import wire
from agent.model import Edge, Method, merge_edges
from cloud_functions.auth import SECURITY, ApiError, Caller, Store, require
from cloud_functions.handlers.admin import TenantId
from cloud_functions.store.base import StoredEdge, TokenRecord

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
MergeFlag = Annotated[bool, Query(description="Merge equal edges across clusters.")]


def graph_edge_schema() -> dict[str, Any]:
    """An edge of the graph: the codec's edge document with its cluster (or, merged, clusters)."""
    schema = wire.edge_schema()
    ids = {"type": "array", "items": {"type": "string"}}
    schema["properties"] |= {"clusterId": {"type": "string"}, "clusterIds": ids}
    return schema


class GraphOut(BaseModel):
    tenantId: str
    edges: Annotated[list[dict[str, Any]], WithJsonSchema({"type": "array", "items": graph_edge_schema()})]


GRAPH: dict[str, Any] = {
    "security": SECURITY,
    "tags": ["graph"],
    "responses": {200: {"description": "The graph", "content": {"application/json": {"model": GraphOut}}}},
}


# --------------------------------------------------------------------------- pure parts


def parse_since(text: str | None) -> float | None:
    """``since`` → epoch seconds; :class:`ApiError` 422 when it is neither RFC 3339 nor a number."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        try:
            return wire.parse_time(text)
        except wire.WireError as error:
            message = f"since: not an RFC 3339 time or epoch seconds: {error}"
            raise ApiError(422, "validation_error", message) from None
    if not math.isfinite(value):
        raise ApiError(422, "validation_error", "since: must be a finite number")
    return value


def cluster_ids(text: str | None) -> list[str] | None:
    ids = [c.strip() for c in (text or "").split(",") if c.strip()]
    return ids or None


def merged(stored: Iterable[StoredEdge]) -> list[tuple[Edge, list[str], bool]]:
    """Edges of equal key merged across clusters, each with the sorted ids of its clusters and
    whether it is live in any of them."""
    by_key: dict[Any, tuple[Edge, set[str], bool]] = {}
    for row in stored:
        edge, clusters, live = by_key.get(row.edge.key, (None, set(), False))
        edge = row.edge if edge is None else merge_edges(edge, row.edge)
        by_key[row.edge.key] = (edge, clusters | {row.cluster_id}, live or row.live)
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


def reader(caller: TokenRecord | None, tenant_id: str | None) -> str:
    """The tenant a read token may read (its own); 401/403 otherwise."""
    return require(caller, "read", tenant_id=tenant_id).tenant_id


def json_response(document: Any) -> Response[str]:
    """JSON of plain values and the codec's documents (:func:`agent.wire.encode`)."""
    return Response(200, "application/json", wire.encode(document).decode())


# --------------------------------------------------------------------------- routes


@router.get("/v1/tenants/<tenantId>/graph", summary="The tenant's graph", **GRAPH)
def tenant_graph(  # noqa: PLR0917 - the route's parameters are the query's
    tenantId: TenantId,
    store: Store,
    caller: Caller,
    cluster: ClusterFilter = None,
    namespace: NamespaceFilter = None,
    workload: WorkloadFilter = None,
    protocol: ProtocolFilter = None,
    since: SinceFilter = None,
    merge: MergeFlag = False,
) -> Response[str]:
    reader(caller, tenantId)  # so tenantId is the caller's own tenant
    return own_graph(store, caller, cluster, namespace, workload, protocol, since, merge)


def own_graph(  # noqa: PLR0917 - the route's parameters are the query's
    store: Store,
    caller: Caller,
    cluster: ClusterFilter = None,
    namespace: NamespaceFilter = None,
    workload: WorkloadFilter = None,
    protocol: ProtocolFilter = None,
    since: SinceFilter = None,
    merge: MergeFlag = False,
) -> Response[str]:
    """The caller's own tenant's graph."""
    tenant = reader(caller, None)
    rows = store.edges(
        tenant,
        cluster_ids=cluster_ids(cluster),
        namespace=namespace or None,
        workload=workload or None,
        method=str(protocol) if protocol else None,
        since=parse_since(since),
    )
    return json_response(graph_document(tenant, rows, merge))


for _path in ("/v1/graph", "/graph"):
    _operation = f"own_graph{_path.replace('/', '_')}"
    router.get(_path, summary="The caller's tenant's graph", operation_id=_operation, **GRAPH)(own_graph)
