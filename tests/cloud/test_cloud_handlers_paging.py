"""Paged graph and export reads through the handlers: walking the cursors gives exactly the one
large page (graph: the same edges in the same order, merged or not, filtered or not; export: the
same documents, none split), cursors are refused with a 422 naming ``cursor`` when damaged or
reused with another query, ``limit`` is bounded, and the OpenAPI document says all of it."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from cloud_handler_support import Cloud, Reply, cloud_fixture, demo_edges, edge  # noqa: F401

from cloud_functions.handlers.app import openapi_document
from cloud_functions.handlers.paging import MAX_LIMIT, NEXT_CURSOR

GRAPH_QUERIES = [
    {},
    {"merge": "true"},
    {"namespace": "shop"},
    {"namespace": "batch,streaming", "merge": "true"},
    {"merge": "true", "protocol": "tcp"},
    {"cluster": "CLUSTERS", "merge": "true"},
]
EXPORT_FORMATS = [
    {"format": "clientintents"},
    {"format": "clientintents", "version": "v1alpha3"},
    {"format": "networkpolicy"},
    {"format": "iam"},
    {"format": "json"},
]


@pytest.fixture
def clusters(cloud: Cloud) -> Cloud:
    """Three clusters of tenant a: the demo's edges in each, with edges of their own besides."""
    (first,) = cloud.a.clusters
    ids = [first, cloud.new_cluster(cloud.a, "staging"), cloud.new_cluster(cloud.a, "dev")]
    for number, cluster in enumerate(ids):
        own = [edge(f"only-{number}-{i}", "cart", count=i + 1) for i in range(3)]
        assert cloud.ingest(cloud.a, cluster, "demo", demo_edges() + own).status == 200
    return cloud


def get(cloud: Cloud, path: str, query: dict[str, str]) -> Reply:
    if query.get("cluster") == "CLUSTERS":  # two of the three
        query = query | {"cluster": ",".join(sorted(cloud.a.clusters)[:2])}
    return cloud.request("GET", f"/v1/tenants/{cloud.a.id}/{path}", token=cloud.a.read_token, query=query)


def walk(cloud: Cloud, path: str, query: dict[str, str], limit: int) -> list[Reply]:
    """Every page, following the cursors."""
    replies = [get(cloud, path, query | {"limit": str(limit)})]
    while (cursor := replies[-1].headers.get(NEXT_CURSOR.lower())) is not None:
        assert len(replies) < 200, "a walk that does not end"
        replies.append(get(cloud, path, query | {"limit": str(limit), "cursor": cursor}))
    for reply in replies:
        assert reply.status == 200, reply
    return replies


@pytest.mark.parametrize("query", GRAPH_QUERIES)
@pytest.mark.parametrize("limit", [1, 2, 5])
def test_graph_pages_are_the_one_page_cut(clusters: Cloud, query: dict[str, str], limit: int) -> None:
    (whole,) = walk(clusters, "graph", query, MAX_LIMIT)
    assert whole.json()["nextCursor"] is None
    pages = walk(clusters, "graph", query, limit)
    assert len(pages) > 1
    walked = [e for page in pages for e in page.json()["edges"]]
    assert walked == whole.json()["edges"]
    for page in pages:
        body = page.json()
        assert body["nextCursor"] == page.headers.get(NEXT_CURSOR.lower()), "the body and the header agree"
        assert len(body["edges"]) <= limit
    if query.get("merge"):  # every cluster's copy of an edge was on one page: merged once
        pairs = [(e["client"]["name"], json.dumps(e["target"], sort_keys=True)) for e in walked]
        assert len(pairs) == len(set(pairs))
        assert any(len(e["clusterIds"]) > 1 for e in walked)


def documents(reply: Reply) -> list[Any]:
    if reply.headers["content-type"] == "application/yaml":
        return list(yaml.safe_load_all(reply.text))
    body = reply.json()
    return body if isinstance(body, list) else body["edges"]


@pytest.mark.parametrize("query", EXPORT_FORMATS)
@pytest.mark.parametrize("limit", [1, 2, 7])
def test_export_pages_hold_whole_documents(clusters: Cloud, query: dict[str, str], limit: int) -> None:
    (whole,) = walk(clusters, "export", query, MAX_LIMIT)
    assert NEXT_CURSOR.lower() not in whole.headers
    pages = walk(clusters, "export", query, limit)
    assert len(pages) > 1
    assert [d for page in pages for d in documents(page)] == documents(whole)
    if query["format"] == "json":  # each page is the codec's whole export document
        assert {json.dumps({k: v for k, v in p.json().items() if k != "edges"}) for p in pages} == {
            json.dumps({k: v for k, v in whole.json().items() if k != "edges"})
        }


def test_export_pages_never_split_a_workload(clusters: Cloud) -> None:
    """A page at limit 1 holds one client (or server): all its edges, whatever their number."""
    for page in walk(clusters, "export", {"format": "json"}, 1):
        clients = {(e["client"]["namespace"], e["client"]["name"]) for e in page.json()["edges"]}
        assert len(clients) == 1
    frontend = [p for p in walk(clusters, "export", {"format": "json"}, 1) if "frontend" in p.text]
    assert any(len(p.json()["edges"]) == 8 for p in frontend), "the demo frontend's eight edges, on one page"


def first_cursor(cloud: Cloud, path: str, query: dict[str, str]) -> str:
    reply = get(cloud, path, query | {"limit": "1"})
    cursor: str = reply.headers[NEXT_CURSOR.lower()]
    return cursor


def refused(reply: Reply, field: str) -> str:
    assert reply.status == 422 and reply.error_code == "validation_error", reply
    error = reply.json()["error"]
    assert [field] in [d["loc"][-1:] for d in error["details"]], error
    return str(error["message"])


def test_damaged_cursors_are_422_naming_cursor(clusters: Cloud) -> None:
    cursor = first_cursor(clusters, "graph", {})
    flipped = cursor[:-3] + ("A" if cursor[-3] != "A" else "B") + cursor[-2:]
    for bad in [flipped, cursor[:-1], cursor + "AA", "!!!", "x", "AAAAAAAAAAAAAAAAAAAAAA", "a" * 8000]:
        message = refused(get(clusters, "graph", {"cursor": bad}), "cursor")
        assert message.startswith("cursor: "), message
    assert get(clusters, "graph", {"cursor": cursor}).status == 200


@pytest.mark.parametrize(
    ("path", "query", "other_path", "other"),
    [
        ("graph", {}, "graph", {"merge": "true"}),
        ("graph", {}, "graph", {"namespace": "shop"}),
        ("graph", {"namespace": "shop"}, "graph", {"namespace": "shop,batch"}),
        ("export", {"format": "json"}, "export", {"format": "json", "namespaces": "shop"}),
        ("export", {"namespaces": "shop"}, "export", {"workloads": "shop/frontend"}),
        ("graph", {"merge": "true"}, "export", {"format": "json"}),
        ("export", {"format": "clientintents"}, "export", {"format": "networkpolicy"}),
        ("export", {"format": "json"}, "export", {"format": "json", "cluster": "CLUSTERS"}),
    ],
)
def test_a_cursor_continues_only_its_own_query(
    clusters: Cloud, path: str, query: dict[str, str], other_path: str, other: dict[str, str]
) -> None:
    cursor = first_cursor(clusters, path, query)
    message = refused(get(clusters, other_path, other | {"cursor": cursor}), "cursor")
    assert "another query" in message


@pytest.mark.parametrize("limit", ["0", "-1", str(MAX_LIMIT + 1), "many", "1.5"])
@pytest.mark.parametrize("path", ["graph", "export"])
def test_limits_out_of_range_are_422_naming_limit(clusters: Cloud, path: str, limit: str) -> None:
    refused(get(clusters, path, {"limit": limit}), "limit")


def test_the_openapi_document_describes_paging() -> None:
    document = json.loads(openapi_document())
    for path in ("/v1/tenants/{tenantId}/graph", "/graph", "/v1/graph", "/v1/tenants/{tenantId}/export"):
        operation = document["paths"][path]["get"]
        parameters = {p["name"]: p for p in operation["parameters"]}
        assert parameters["limit"]["schema"]["maximum"] == MAX_LIMIT
        assert parameters["limit"]["schema"]["minimum"] == 1
        assert "cursor" in parameters
        assert NEXT_CURSOR in operation["responses"]["200"]["headers"]
    graph = document["components"]["schemas"]["GraphOut"]
    assert "nextCursor" in graph["properties"]
