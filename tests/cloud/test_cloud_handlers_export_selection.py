"""Exports of a selection (``workloads=<ns>/<name>,...``, ``namespaces=<ns>,...``): only edges whose
client is selected, in every format; equal to the CLI's exporters over the selected clients' edges;
pages of a selection joined are its one large page; a bad selection is a 422; tenant rules hold."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from cloud_handler_support import CRD, Cloud, Reply, cloud_fixture, demo_edges, edge  # noqa: F401

from agent.exports import client_intents, edges_from_document, network_policies, validate, yaml_documents
from agent.exports.iam import iam_policies
from agent.model import Edge
from cloud_functions.handlers.paging import NEXT_CURSOR


@pytest.fixture
def demo(cloud: Cloud) -> Cloud:
    (cluster,) = cloud.a.clusters
    assert cloud.ingest(cloud.a, cluster, "demo", demo_edges()).status == 200
    return cloud


def demo_graph() -> list[Edge]:
    return edges_from_document({"apiVersion": "network-mapper/v1", "edges": demo_edges()})


def of_clients(
    edges: list[Edge], *workloads: tuple[str, str], namespaces: tuple[str, ...] = ()
) -> list[Edge]:
    return [
        e
        for e in edges
        if (e.client.namespace, e.client.name) in workloads or e.client.namespace in namespaces
    ]


def export(cloud: Cloud, token: str | None = None, **query: str) -> Reply:
    return cloud.request(
        "GET", f"/v1/tenants/{cloud.a.id}/export", token=token or cloud.a.read_token, query=query
    )


def whole_body(cloud: Cloud, limit: int, **query: str) -> str:
    """Every page's body, joined in order (what the console downloads)."""
    bodies, cursor = [], None
    while True:
        reply = export(cloud, **query, limit=str(limit), **({"cursor": cursor} if cursor else {}))
        assert reply.status == 200, reply
        bodies.append(reply.text)
        cursor = reply.headers.get(NEXT_CURSOR.lower())
        if cursor is None:
            return "".join(bodies)
        assert len(bodies) < 100, "a walk that does not end"


def test_clientintents_of_workloads_are_those_clients_documents(demo: Cloud) -> None:
    reply = export(demo, workloads="shop/checkoutservice,shop/frontend")
    assert reply.status == 200 and reply.headers["content-type"] == "application/yaml"
    documents = list(yaml.safe_load_all(reply.text))
    assert [d["metadata"]["name"] for d in documents] == ["checkoutservice", "frontend"]
    assert all(validate(d, CRD) == [] for d in documents)
    selected = of_clients(demo_graph(), ("shop", "checkoutservice"), ("shop", "frontend"))
    assert reply.text == yaml_documents(client_intents(selected, "v2beta1"))
    everything = list(yaml.safe_load_all(export(demo).text))
    assert documents == [d for d in everything if d["metadata"]["name"] in ("checkoutservice", "frontend")]


def test_namespaces_and_workloads_select_their_union(demo: Cloud) -> None:
    edges = demo_graph()
    batch = export(demo, format="json", namespaces="batch")
    assert {e["client"]["name"] for e in batch.json()["edges"]} == {"report-job"}
    union = export(demo, format="json", namespaces="batch", workloads="shop/paymentservice")
    assert {e["client"]["name"] for e in union.json()["edges"]} == {"report-job", "paymentservice"}
    iam = export(demo, format="iam", namespaces="batch,nope")
    assert json.loads(iam.text) == iam_policies(of_clients(edges, namespaces=("batch",))) != []
    # a selection picks clients: targets in the namespace do not count (kafka is only a target)
    assert export(demo, format="json", namespaces="streaming").json()["edges"] == []
    assert export(demo, namespaces="nope").text == ""
    assert export(demo, workloads="shop/nope").text == ""
    assert export(demo, namespaces=",", workloads="").text == export(demo).text  # names none: all


def test_networkpolicies_of_a_selection_are_what_its_calls_need(demo: Cloud) -> None:
    selected = of_clients(demo_graph(), ("shop", "frontend"))
    reply = export(demo, format="networkpolicy", workloads="shop/frontend")
    assert list(yaml.safe_load_all(reply.text)) == network_policies(selected)


@pytest.mark.parametrize("fmt", ["clientintents", "networkpolicy", "iam", "json"])
@pytest.mark.parametrize("limit", [1, 2])
def test_pages_of_a_selection_join_into_its_one_page(demo: Cloud, fmt: str, limit: int) -> None:
    query = {"format": fmt, "namespaces": "batch", "workloads": "shop/checkoutservice,shop/frontend"}
    (one,) = [export(demo, **query, limit="1000")]
    assert NEXT_CURSOR.lower() not in one.headers
    if fmt in ("clientintents", "networkpolicy"):  # YAML streams join into the one page's stream
        assert whole_body(demo, limit, **query) == one.text
    else:  # a JSON page is a whole document: its entries join
        walked, cursor = [], None
        while True:
            reply = export(demo, **query, limit=str(limit), **({"cursor": cursor} if cursor else {}))
            body = reply.json()
            walked += body if isinstance(body, list) else body["edges"]
            if (cursor := reply.headers.get(NEXT_CURSOR.lower())) is None:
                break
        whole: Any = one.json()
        assert walked == (whole if isinstance(whole, list) else whole["edges"])


@pytest.mark.parametrize(
    "query",
    [
        {"workloads": "frontend"},
        {"workloads": "shop/"},
        {"workloads": "/frontend"},
        {"workloads": "shop/front/end"},
        {"workloads": "shop/frontend,oops"},
        {"namespaces": "x" * 8001},
    ],
)
def test_bad_selections_are_422(demo: Cloud, query: dict[str, str]) -> None:
    reply = export(demo, **query)
    assert reply.status == 422 and reply.error_code == "validation_error", reply


def test_selections_keep_to_the_tenant(demo: Cloud) -> None:
    (b_cluster,) = demo.b.clusters
    demo.ingest(demo.b, b_cluster, "1", [edge("frontend", "secret", ns="shop")])
    for token in (demo.b.read_token, demo.b.owner_token):  # b may not read a's selection
        reply = export(demo, token=token, workloads="shop/frontend")
        assert reply.status == 403 and "secret" not in reply.text
    assert export(demo, token="nm_" + "2" * 64, namespaces="shop").status == 401
    own = demo.request(
        "GET",
        f"/v1/tenants/{demo.b.id}/export",
        token=demo.b.read_token,
        query={"workloads": "shop/frontend"},
    )
    assert [d["metadata"]["name"] for d in yaml.safe_load_all(own.text)] == ["frontend"]
    assert "secret" in own.text and "checkoutservice" not in own.text


def test_the_openapi_document_describes_the_selection() -> None:
    from cloud_functions.handlers.app import openapi_document

    operation = json.loads(openapi_document())["paths"]["/v1/tenants/{tenantId}/export"]["get"]
    names = {p["name"] for p in operation["parameters"]}
    assert {"workloads", "namespaces", "cluster", "format", "limit", "cursor"} <= names
