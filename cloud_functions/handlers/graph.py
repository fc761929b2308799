"""The tenant's graph: ``GET /v1/tenants/{tenantId}/graph``, and ``/graph`` / ``/v1/graph`` for the
caller's own tenant (``curl -H 'Authorization: Bearer …' …/graph``).

Filters: ``cluster`` (ids, comma-separated), ``namespace`` (comma-separated: any of them),
``workload`` (client or workload target), ``protocol`` (how the edge was seen: one of the edge
methods), ``since`` (RFC 3339 or epoch seconds: edges last seen then or later). Edges come from
the store a page at a time (:meth:`~cloud_functions.store.base.GraphStore.edges_page`, liveness
applied), by cluster and then in the store's order of edges, each the codec's edge document
(:class:`agent.wire.EdgeDoc`) with its ``clusterId``; ``merge=true`` reads them by edge instead,
every cluster's copy of an edge on one page, and merges the copies with
:func:`agent.model.merge_edges` into one edge with ``clusterIds``.

Pages (:mod:`cloud_functions.handlers.paging`): at most ``limit`` edges a page (read from the
store: a merged page holds fewer edges when they merge); the body's ``nextCursor`` and the
``X-Next-Cursor`` header carry the next page's cursor, null and absent on the last page. The pages
of one walk, joined, are the one page a ``limit`` as large as the graph gives.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Annotated, Any

import msgspec
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel, Field, WithJsonSchema

from agent import wire
from agent.model import Edge, Method, merge_edges
from cloud_functions.auth import SECURITY, ApiError, Caller, Store, require
from cloud_functions.handlers.admin import TenantId
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
from cloud_functions.store.base import (
    MAX_FILTER_NAMESPACES,
    EdgeFilters,
    PageOrder,
    StoredEdge,
    TokenRecord,
)

router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]  # powertools leaves __init__ bare

ClusterFilter = Annotated[
    str | None, Query(max_length=2000, description="Cluster ids, comma-separated (default: all).")
]
NamespaceFilter = Annotated[
    str | None,
    Query(
        max_length=8000,
        description=f"Namespaces, comma-separated (at most {MAX_FILTER_NAMESPACES}): edges whose client's "
        "or workload target's namespace is one of them.",
    ),
]
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
    nextCursor: str | None = Field(description="The next page's cursor; null on the last page.")


GRAPH: dict[str, Any] = {
    "security": SECURITY,
    "tags": ["graph"],
    "responses": {
        200: {
            "description": "A page of the graph",
            "headers": NEXT_CURSOR_HEADER,
            "content": {"application/json": {"model": GraphOut}},
        }
    },
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
    """The ``cluster`` filter's ids, sorted and each once (None: every cluster)."""
    return names(text, "cluster")


def names(text: str | None, what: str, most: int | None = None) -> list[str] | None:
    """A comma-separated list of names, sorted and each once (None: none given); :class:`ApiError`
    422 for more than ``most``."""
    found = sorted({n.strip() for n in (text or "").split(",") if n.strip()})
    if most is not None and len(found) > most:
        why = f"at most {most} names, got {len(found)}"
        detail = {"loc": ["query", what], "type": "value_error", "msg": why}
        raise ApiError(422, "validation_error", f"{what}: {why}", [detail])
    return found or None


def namespace_list(text: str | None) -> list[str] | None:
    """The ``namespace`` filter's namespaces (None: every namespace)."""
    return names(text, "namespace", MAX_FILTER_NAMESPACES)


def merged(stored: Iterable[StoredEdge]) -> list[tuple[Edge, list[str], bool]]:
    """Edges of equal key merged across clusters, each with the sorted ids of its clusters and
    whether it is live in any of them."""
    by_key: dict[Any, tuple[Edge, set[str], bool]] = {}
    for row in stored:
        edge, clusters, live = by_key.get(row.edge.key, (None, set(), False))
        edge = row.edge if edge is None else merge_edges(edge, row.edge)
        by_key[row.edge.key] = (edge, clusters | {row.cluster_id}, live or row.live)
    return [(edge, sorted(clusters), live) for edge, clusters, live in by_key.values()]


def graph_document(
    tenant_id: str, stored: Iterable[StoredEdge], merge: bool, following: str | None
) -> dict[str, Any]:
    """The graph response: a page's edge documents with their cluster(s), in the page's order, and
    the next page's cursor."""
    rows: list[tuple[wire.EdgeDoc, dict[str, Any]]]
    if merge:  # a merged edge sits where the page met its first copy
        rows = [(wire.to_doc(e, live), {"clusterIds": ids}) for e, ids, live in merged(stored)]
    else:
        rows = [(wire.to_doc(s.edge, s.live), {"clusterId": s.cluster_id}) for s in stored]
    edges = [msgspec.structs.asdict(doc) | extra for doc, extra in rows]
    return {"tenantId": tenant_id, "edges": edges, "nextCursor": following}


def reader(caller: TokenRecord | None, tenant_id: str | None) -> str:
    """The tenant a read token may read (its own); 401/403 otherwise."""
    return require(caller, "read", tenant_id=tenant_id).tenant_id


def json_response(document: Any, headers: dict[str, str] | None = None) -> Response[str]:
    """JSON of plain values and the codec's documents (:func:`agent.wire.encode`)."""
    return Response(200, "application/json", wire.encode(document).decode(), headers=headers)


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
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response[str]:
    reader(caller, tenantId)  # so tenantId is the caller's own tenant
    return own_graph(store, caller, cluster, namespace, workload, protocol, since, merge, limit, cursor)


def own_graph(  # noqa: PLR0917 - the route's parameters are the query's
    store: Store,
    caller: Caller,
    cluster: ClusterFilter = None,
    namespace: NamespaceFilter = None,
    workload: WorkloadFilter = None,
    protocol: ProtocolFilter = None,
    since: SinceFilter = None,
    merge: MergeFlag = False,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response[str]:
    """A page of the caller's own tenant's graph."""
    tenant = reader(caller, None)
    order = PageOrder.EDGE if merge else PageOrder.CLUSTER
    filters = EdgeFilters(
        cluster_ids=cluster_ids(cluster),
        namespaces=namespace_list(namespace),
        workload=workload or None,
        method=str(protocol) if protocol else None,
        since=parse_since(since),
    )
    query = query_digest("graph", order, *filters.values())
    page = read_page(store, tenant, order, cursor=cursor, query=query, limit=limit, **filters)
    following = next_cursor(page, query)
    return json_response(graph_document(tenant, page.edges, merge, following), cursor_header(following))


for _path in ("/v1/graph", "/graph"):
    _operation = f"own_graph{_path.replace('/', '_')}"
    router.get(_path, summary="The caller's tenant's graph", operation_id=_operation, **GRAPH)(own_graph)
