"""Exports from the cloud: the CLI's exporters over the tenant's (merged) graph; every
ClientIntents document validates against the intents operator's CRD."""

from __future__ import annotations

import json

import pytest
import yaml
from cloud_handler_support import CRD, Cloud, cloud_fixture, demo_edges, edge, recorded  # noqa: F401

from agent import wire
from agent.exports import client_intents, edges_from_document, network_policies, validate
from agent.exports.iam import iam_policies


@pytest.fixture
def demo(cloud: Cloud) -> Cloud:
    (cluster,) = cloud.a.clusters
    assert cloud.ingest(cloud.a, cluster, "demo", demo_edges()).status == 200
    return cloud


def export(cloud: Cloud, **query: str) -> tuple[str, str]:
    reply = cloud.request("GET", f"/v1/tenants/{cloud.a.id}/export", token=cloud.a.read_token, query=query)
    assert reply.status == 200, reply
    return reply.headers["content-type"], reply.text


@pytest.mark.parametrize("version", ["v2beta1", "v1alpha3"])
def test_clientintents_validate_and_equal_the_cli_export(demo: Cloud, version: str) -> None:
    content_type, text = export(demo, format="clientintents", version=version)
    assert content_type == "application/yaml"
    documents = list(yaml.safe_load_all(text))
    assert documents
    for document in documents:
        assert document["apiVersion"] == f"k8s.otterize.com/{version}"
        assert validate(document, CRD) == []
    edges = edges_from_document({"apiVersion": "network-mapper/v1", "edges": demo_edges()})
    assert documents == client_intents(edges, version)


def test_default_format_is_clientintents_v2beta1(demo: Cloud) -> None:
    _, text = export(demo)
    assert {d["apiVersion"] for d in yaml.safe_load_all(text)} == {"k8s.otterize.com/v2beta1"}


def test_networkpolicy_iam_and_json(demo: Cloud) -> None:
    edges = edges_from_document({"apiVersion": "network-mapper/v1", "edges": demo_edges()})
    content_type, text = export(demo, format="networkpolicy")
    assert content_type == "application/yaml"
    assert list(yaml.safe_load_all(text)) == network_policies(edges)
    content_type, text = export(demo, format="iam")
    assert content_type == "application/json"
    assert json.loads(text) == iam_policies(edges) != []
    _, text = export(demo, format="json")
    assert edges_from_document(json.loads(text)) == edges_from_document(
        {"apiVersion": "network-mapper/v1", "edges": json.loads(text)["edges"]}
    )
    assert len(json.loads(text)["edges"]) == len(edges)


def test_clusters_merge_and_filter(cloud: Cloud) -> None:
    (first,) = cloud.a.clusters
    second = cloud.new_cluster(cloud.a, "staging")
    cloud.ingest(cloud.a, first, "1", [edge("frontend", "cart", http=[{"path": "/a", "methods": ["GET"]}])])
    cloud.ingest(cloud.a, second, "1", [edge("frontend", "cart", http=[{"path": "/b", "methods": ["GET"]}])])
    cloud.ingest(cloud.a, second, "2", [edge("checkout", "payment")])
    _, text = export(cloud, format="json")
    assert len(json.loads(text)["edges"]) == 2  # one merged frontend→cart
    (frontend,) = [d for d in yaml.safe_load_all(export(cloud)[1]) if d["metadata"]["name"] == "frontend"]
    assert frontend["spec"]["targets"][0]["kubernetes"]["http"] == [
        {"path": "/a", "methods": ["GET"]},
        {"path": "/b", "methods": ["GET"]},
    ]
    _, text = export(cloud, format="json", cluster=first)
    assert [e["client"]["name"] for e in json.loads(text)["edges"]] == ["frontend"]


def test_recorded_export_event(demo: Cloud) -> None:
    reply = demo(recorded("export_clientintents", READ_TOKEN=demo.a.read_token, TENANT_ID=demo.a.id))
    assert reply.status == 200
    assert all(validate(d, CRD) == [] for d in yaml.safe_load_all(reply.text))


@pytest.mark.parametrize("query", [{"format": "pdf"}, {"version": "v9"}, {"format": ""}])
def test_bad_export_parameters_are_422(cloud: Cloud, query: dict[str, str]) -> None:
    reply = cloud.request("GET", f"/v1/tenants/{cloud.a.id}/export", token=cloud.a.read_token, query=query)
    assert reply.status == 422 and reply.error_code == "validation_error"


def test_empty_graph_exports_are_empty(cloud: Cloud) -> None:
    assert export(cloud)[1] == ""
    assert json.loads(export(cloud, format="iam")[1]) == []
    empty = {"apiVersion": "network-mapper/v1", "version": wire.FORMAT_VERSION, "edges": []}
    assert json.loads(export(cloud, format="json")[1]) == empty  # the codec's EdgesDocument
