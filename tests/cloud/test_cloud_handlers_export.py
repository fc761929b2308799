"""Exports from the cloud: the CLI's exporters over the tenant's (merged) graph; every
ClientIntents document validates against the intents operator's CRD, every AuthorizationPolicy
against Istio's and every KafkaUser against Strimzi's; Istio and Kafka ACL exports page by server."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from cloud_handler_support import (  # noqa: F401
    CRD,
    EXPORTS,
    Cloud,
    cloud_fixture,
    demo_edges,
    edge,
    recorded,
)

from agent import wire
from agent.exports import (
    authorization_policies,
    client_intents,
    edges_from_document,
    kafka_users,
    network_policies,
    validate,
)
from agent.exports.iam import iam_policies
from cloud_functions.handlers.paging import NEXT_CURSOR


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


# --------------------------------------------------------------------------- Istio and Kafka ACLs


def tutorial_edges() -> list[dict[str, Any]]:
    """The Otterize Istio and Kafka tutorials' edges (principals, a denied access), as uploaded."""
    document = json.loads((EXPORTS / "otterize-tutorial-edges.json").read_text(encoding="utf-8"))
    edges: list[dict[str, Any]] = document["edges"]
    return edges


def test_istio_and_kafka_acl_equal_the_cli_export_and_validate(cloud: Cloud) -> None:
    (cluster,) = cloud.a.clusters
    assert cloud.ingest(cloud.a, cluster, "tutorial", tutorial_edges()).status == 200
    edges = edges_from_document({"apiVersion": "network-mapper/v1", "edges": tutorial_edges()})
    content_type, text = export(cloud, format="istio")
    assert content_type == "application/yaml"
    assert text == (EXPORTS / "otterize-tutorial-istio.yaml").read_text(encoding="utf-8")
    assert list(yaml.safe_load_all(text)) == authorization_policies(edges)
    istio_crd = EXPORTS / "istio-authorizationpolicy-crd.yaml"
    assert all(validate(d, istio_crd) == [] for d in yaml.safe_load_all(text))
    content_type, text = export(cloud, format="kafka-acl")
    assert content_type == "application/yaml"
    assert text == (EXPORTS / "otterize-tutorial-kafka-acl.yaml").read_text(encoding="utf-8")
    assert list(yaml.safe_load_all(text)) == kafka_users(edges)
    assert "payments" not in text  # the denied access
    for document in yaml.safe_load_all(text):  # Strimzi's published CRD serves v1; see the exporter's tests
        assert (
            validate(
                {**document, "apiVersion": "kafka.strimzi.io/v1"}, EXPORTS / "strimzi-kafkauser-crd.yaml"
            )
            == []
        )


def _http_edge(client: str, server: str, path: str) -> dict[str, Any]:
    principal = f"spiffe://cluster.local/ns/shop/sa/{client}"
    resource = {"path": path, "methods": ["GET"], "principals": [principal], "statuses": [200]}
    return edge(client, server, method="istio", http=[resource])


def _kafka_edge(client: str, server: str, topic: str, principal: str) -> dict[str, Any]:
    topics = [{"name": topic, "operations": ["consume"], "principal": principal, "denied": ["produce"]}]
    return edge(client, server, method="kafka", kafkaTopics=topics)


@pytest.mark.parametrize("fmt", ["istio", "kafka-acl"])
@pytest.mark.parametrize("limit", [1, 2, 3])
def test_istio_and_kafka_acl_pages_hold_whole_servers(cloud: Cloud, fmt: str, limit: int) -> None:
    """Walking the pages gives the documents of one large page: a server's clients (a principal's
    clients, for KafkaUsers) are never split, even where one server has more edges than a page."""
    (cluster,) = cloud.a.clusters
    edges = tutorial_edges()
    edges += [_http_edge(f"web-{i}", "api", f"/items/{{id}}/{i}") for i in range(4)]
    edges += [_http_edge("web-0", "search", "/q")]
    edges += [_kafka_edge(f"worker-{i}", "broker", "jobs", "User:CN=worker") for i in range(4)]
    edges += [_kafka_edge("worker-0", "broker-b", "jobs", "User:CN=worker")]
    assert cloud.ingest(cloud.a, cluster, "paged", edges).status == 200
    whole = cloud.request(
        "GET",
        f"/v1/tenants/{cloud.a.id}/export",
        token=cloud.a.read_token,
        query={"format": fmt, "limit": "500"},
    )
    assert whole.status == 200 and NEXT_CURSOR.lower() not in whole.headers
    query = {"format": fmt, "limit": str(limit)}
    pages = []
    while True:
        reply = cloud.request(
            "GET", f"/v1/tenants/{cloud.a.id}/export", token=cloud.a.read_token, query=query
        )
        assert reply.status == 200, reply
        pages.append(reply)
        cursor = reply.headers.get(NEXT_CURSOR.lower())
        if cursor is None:
            break
        assert len(pages) < 100, "a walk that does not end"
        query = {**query, "cursor": cursor}
    assert len(pages) > 1
    walked = [d for page in pages for d in yaml.safe_load_all(page.text)]
    assert walked == list(yaml.safe_load_all(whole.text))
    if fmt == "kafka-acl":
        (worker,) = [d for d in walked if d["metadata"]["labels"]["strimzi.io/cluster"] == "broker"]
        assert [a["operations"] for a in worker["spec"]["authorization"]["acls"]] == [["Read"]]
    else:
        (api,) = [d for d in walked if d["metadata"]["name"] == "access-to-api-from-observed-clients"]
        assert len(api["spec"]["rules"]) == 4
