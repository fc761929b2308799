"""The tenant's graph aggregated by namespace: ``GET /v1/tenants/{tenantId}/graph/summary``, what
the console draws first for a large graph before the user drills into a namespace.

Groups: one per namespace (``ns:<namespace>``) of a client or a workload target, and one for the
Internet (``internet``) and one for AWS (``aws``) when an edge goes there; each counts its distinct
``workloads`` (clients and workload targets by namespace and name, whatever their kinds; Internet:
distinct DNS names, or IPs where no name is known; AWS: distinct ARNs). Links: one per source
group, target group and kind, counting its edges. An edge's kind: ``aws`` to an AWS resource,
``internet`` to an Internet target, else ``kafka`` with Kafka topics, ``http`` with HTTP resources,
``tcp`` otherwise. Kafka topics are no groups: they are details of edges to the broker.

The aggregation (:class:`Summary`) is pure; the route walks the tenant's edges through the
store's pages (by edge, so every cluster's copy of an edge is on one page, merged there: an edge
seen by several clusters counts once) and feeds them to it, holding only the counts. Filters:
``cluster``, ``since`` and ``namespace`` (comma-separated), as on the graph route.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel, Field

from agent.model import AwsTarget, Edge, InternetTarget
from cloud_functions.auth import SECURITY, Caller, Store
from cloud_functions.handlers.admin import TenantId
from cloud_functions.handlers.graph import (
    ClusterFilter,
    NamespaceFilter,
    SinceFilter,
    cluster_ids,
    json_response,
    merged,
    namespace_list,
    parse_since,
    reader,
)
from cloud_functions.store.base import EdgeFilters, GraphStore, PageOrder, PagePosition

router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]  # powertools leaves __init__ bare

GroupKind = Literal["namespace", "internet", "aws"]
LinkKind = Literal["tcp", "http", "kafka", "aws", "internet"]
INTERNET, AWS = "internet", "aws"
NAMESPACE_PREFIX = "ns:"
WALK_PAGE = 5000
"""Edges the route reads from the store at a time: a page's edges are let go once counted."""


# --------------------------------------------------------------------------- pure parts


def edge_kind(edge: Edge) -> LinkKind:
    """How the console styles an edge (see the module docstring)."""
    if isinstance(edge.target, AwsTarget):
        return "aws"
    if isinstance(edge.target, InternetTarget):
        return "internet"
    if edge.kafka_topics:
        return "kafka"
    return "http" if edge.http else "tcp"


def namespace_group(namespace: str) -> str:
    return NAMESPACE_PREFIX + namespace


@dataclass
class Summary:
    """The counts of the edges :meth:`add` ed so far; each edge once (merge an edge's copies from
    several clusters first: the route does)."""

    members: dict[str, set[str]] = field(default_factory=dict)
    """group id → its distinct workloads (Internet: names or IPs; AWS: ARNs)."""
    links: Counter[tuple[str, str, LinkKind]] = field(default_factory=Counter)
    edges: int = 0

    def _member(self, group: str, *names: str) -> None:
        self.members.setdefault(group, set()).update(names)

    def add(self, edge: Edge) -> None:
        client, target = edge.client, edge.target
        source = namespace_group(client.namespace)
        self._member(source, client.name)
        if isinstance(target, AwsTarget):
            group = AWS
            self._member(group, target.arn)
        elif isinstance(target, InternetTarget):
            group = INTERNET
            self._member(group, *((target.dns_name,) if target.dns_name else target.ips))
        else:
            group = namespace_group(target.namespace)
            self._member(group, target.name)
        self.links[(source, group, edge_kind(edge))] += 1
        self.edges += 1

    def document(self, tenant_id: str) -> dict[str, Any]:
        """The route's body: groups (namespaces by name, then the Internet, then AWS) and links (by
        source, target and kind)."""
        namespaces = sorted(g for g in self.members if g.startswith(NAMESPACE_PREFIX))
        groups = [
            {
                "id": g,
                "kind": "namespace",
                "label": g.removeprefix(NAMESPACE_PREFIX),
                "workloads": len(self.members[g]),
            }
            for g in namespaces
        ]
        for g, label in ((INTERNET, "Internet"), (AWS, "AWS")):
            if g in self.members:
                groups.append({"id": g, "kind": g, "label": label, "workloads": len(self.members[g])})
        links = [
            {"source": source, "target": target, "kind": kind, "edges": count}
            for (source, target, kind), count in sorted(self.links.items())
        ]
        return {"tenantId": tenant_id, "groups": groups, "links": links, "edges": self.edges}


def summarize(edges: Iterable[Edge]) -> Summary:
    """The summary of ``edges`` (each once)."""
    summary = Summary()
    for edge in edges:
        summary.add(edge)
    return summary


# --------------------------------------------------------------------------- the walk and the route


def walk(store: GraphStore, tenant_id: str, filters: EdgeFilters, page_size: int = WALK_PAGE) -> Summary:
    """The summary of the tenant's edges that pass ``filters``, read a page at a time."""
    summary = Summary()
    after: PagePosition | None = None
    while True:
        page = store.edges_page(tenant_id, PageOrder.EDGE, after=after, limit=page_size, **filters)
        for edge, _, _ in merged(page.edges):
            summary.add(edge)
        if page.next is None:
            return summary
        after = page.next


class SummaryGroup(BaseModel):
    id: str = Field(description="`ns:<namespace>`, `internet` or `aws`.")
    kind: GroupKind
    label: str = Field(description="The namespace, `Internet` or `AWS`.")
    workloads: int = Field(
        description="Distinct workloads (clients and workload targets) in the namespace; "
        "for the Internet and AWS: distinct targets (names or IPs; ARNs)."
    )


class SummaryLink(BaseModel):
    source: str = Field(description="The clients' group id.")
    target: str = Field(description="The targets' group id.")
    kind: LinkKind
    edges: int


class SummaryOut(BaseModel):
    tenantId: str
    groups: list[SummaryGroup]
    links: list[SummaryLink]
    edges: int = Field(description="Edges counted (an edge seen by several clusters: once).")


@router.get(
    "/v1/tenants/<tenantId>/graph/summary",
    security=SECURITY,
    tags=["graph"],
    summary="The tenant's graph aggregated by namespace",
    responses={200: {"description": "The summary", "content": {"application/json": {"model": SummaryOut}}}},
)
def graph_summary(  # noqa: PLR0917 - the route's parameters are the query's
    tenantId: TenantId,
    store: Store,
    caller: Caller,
    cluster: ClusterFilter = None,
    namespace: NamespaceFilter = None,
    since: SinceFilter = None,
) -> Response[str]:
    tenant = reader(caller, tenantId)
    filters = EdgeFilters(
        cluster_ids=cluster_ids(cluster), namespaces=namespace_list(namespace), since=parse_since(since)
    )
    return json_response(walk(store, tenant, filters).document(tenant))
