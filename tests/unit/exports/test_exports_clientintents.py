"""ClientIntents export: exact documents, enum mapping, and every document validates against
the intents operator's real CRD (v2beta1 and v1alpha3). :func:`load_crd` and the committed CRD
copies here serve the other exporters' tests too (KafkaUser, AuthorizationPolicy)."""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.exports import client_intents, edges_from_document, validate, yaml_documents
from agent.exports.clientintents import http_methods, kafka_operations
from agent.model import (
    AwsTarget,
    Edge,
    HttpResource,
    InternetTarget,
    KafkaTopic,
    Method,
    WorkloadIdentity,
)

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data" / "exports"
COMMITTED_CRD = DATA / "clientintents-crd.yaml"
SHARED_DATA = ROOT / ".." / "shared" / "data"
CRD_FILES = ("clientintents-crd.yaml", "strimzi-kafkauser-crd.yaml", "istio-authorizationpolicy-crd.yaml")
VERSIONS = ("v2beta1", "v1alpha3")
T0 = 1764296106.918878


@functools.cache
def load_crd(file: str = "clientintents-crd.yaml") -> dict[str, Any]:
    """A committed CRD copy (deterministic); ``test_committed_crds_match_shared`` guards drift."""
    loaded: dict[str, Any] = yaml.safe_load((DATA / file).read_text(encoding="utf-8"))
    return loaded


@pytest.fixture
def crd() -> dict[str, Any]:
    return load_crd()


@pytest.fixture(scope="module")
def demo_edges() -> list[Edge]:
    return edges_from_document(json.loads((DATA / "demo-edges.json").read_text(encoding="utf-8")))


def deploy(name: str, ns: str = "shop", kind: str = "Deployment") -> WorkloadIdentity:
    return WorkloadIdentity(ns, name, kind)


def edge(client: WorkloadIdentity, target: Any, **kw: Any) -> Edge:
    return Edge(client, target, T0, T0 + 1, frozenset({Method.TCP}), **kw)


@pytest.mark.parametrize("file", CRD_FILES)
def test_committed_crds_match_shared(file: str) -> None:
    if not (SHARED_DATA / file).exists():
        pytest.skip("../shared is not beside this checkout")
    assert yaml.safe_load((SHARED_DATA / file).read_text()) == load_crd(file)


def test_validate_accepts_a_path(demo_edges: list[Edge]) -> None:
    for document in client_intents(demo_edges):
        assert validate(document, COMMITTED_CRD) == []


# --------------------------------------------------------------------------- exact documents


def test_v2beta1_exact_document() -> None:
    frontend = deploy("frontend")
    edges = [
        edge(frontend, deploy("cartservice")),
        edge(frontend, deploy("redis", "cache", "StatefulSet")),
        edge(
            frontend,
            deploy("productcatalogservice"),
            http=(HttpResource("/products", ("post", "GET", "HEAD")),),
        ),
        edge(
            frontend, deploy("kafka", "streaming", "StatefulSet"), kafka_topics=(KafkaTopic("t", ("Write",)),)
        ),
        edge(frontend, InternetTarget("API.example.com.", ("1.2.3.4",), 443)),
        edge(frontend, AwsTarget("arn:aws:s3:::b"), aws_actions=("s3:PutObject", "s3:GetObject")),
    ]
    assert client_intents(edges) == [
        {
            "apiVersion": "k8s.otterize.com/v2beta1",
            "kind": "ClientIntents",
            "metadata": {"name": "frontend", "namespace": "shop"},
            "spec": {
                "workload": {"name": "frontend", "kind": "Deployment"},
                "targets": [
                    {"kubernetes": {"name": "redis.cache", "kind": "StatefulSet"}},
                    {"kubernetes": {"name": "cartservice", "kind": "Deployment"}},
                    {
                        "kubernetes": {
                            "name": "productcatalogservice",
                            "kind": "Deployment",
                            "http": [{"path": "/products", "methods": ["GET", "POST"]}],
                        }
                    },
                    {
                        "kafka": {
                            "name": "kafka.streaming",
                            "topics": [{"name": "t", "operations": ["produce"]}],
                        }
                    },
                    {"internet": {"domains": ["api.example.com"], "ports": [443]}},
                    {"aws": {"arn": "arn:aws:s3:::b", "actions": ["s3:GetObject", "s3:PutObject"]}},
                ],
            },
        }
    ]


def test_v1alpha3_exact_document() -> None:
    job = deploy("report", "batch", "CronJob")
    edges = [
        edge(job, deploy("frontend"), http=(HttpResource("/", ("GET",)),)),
        edge(
            job,
            deploy("kafka", "batch", "StatefulSet"),
            kafka_topics=(KafkaTopic("r", ("Read", "describe")),),
        ),
        edge(job, InternetTarget("", ("203.0.113.7",), 0)),
        edge(job, AwsTarget("*"), aws_actions=("sts:GetCallerIdentity",)),
        edge(job, WorkloadIdentity("default", "kubernetes", "Service")),
    ]
    assert client_intents(edges, "v1alpha3") == [
        {
            "apiVersion": "k8s.otterize.com/v1alpha3",
            "kind": "ClientIntents",
            "metadata": {"name": "report", "namespace": "batch"},
            "spec": {
                "service": {"name": "report", "kind": "CronJob"},
                "calls": [
                    {"name": "kubernetes.default", "kind": "Service"},
                    {
                        "name": "frontend.shop",
                        "kind": "Deployment",
                        "type": "http",
                        "HTTPResources": [{"path": "/", "methods": ["GET"]}],
                    },
                    {
                        "name": "kafka.batch",
                        "type": "kafka",
                        "kafkaTopics": [{"name": "r", "operations": ["consume", "describe"]}],
                    },
                    {"type": "internet", "internet": {"ips": ["203.0.113.7"]}},
                    {"name": "*", "type": "aws", "awsActions": ["sts:GetCallerIdentity"]},
                ],
            },
        }
    ]


def test_prefer_services_names_the_service() -> None:
    rec = deploy("recommendationservice")
    edges = [edge(rec, deploy("productcatalogservice"), target_service="productcatalog")]
    assert client_intents(edges, prefer_services=True)[0]["spec"]["targets"] == [
        {"service": {"name": "productcatalog"}}
    ]
    assert client_intents(edges, "v1alpha3", prefer_services=True)[0]["spec"]["calls"] == [
        {"name": "productcatalog", "kind": "Service"}
    ]
    assert client_intents(edges)[0]["spec"]["targets"] == [
        {"kubernetes": {"name": "productcatalogservice", "kind": "Deployment"}}
    ]


def test_internet_one_target_per_destination_ports_merged() -> None:
    pay = deploy("paymentservice")
    edges = [
        edge(pay, InternetTarget("api.stripe.com", ("198.51.100.1",), 443)),
        edge(pay, InternetTarget("api.stripe.com.", ("198.51.100.2",), 8443)),
        edge(pay, InternetTarget("", ("198.51.100.9", "2001:db8::1"), 0)),
        edge(pay, InternetTarget("", (), 0)),  # nothing to name: no target
    ]
    assert client_intents(edges)[0]["spec"]["targets"] == [
        {"internet": {"domains": ["api.stripe.com"], "ports": [443, 8443]}},
        {"internet": {"ips": ["198.51.100.9"]}},
        {"internet": {"ips": ["2001:db8::1"]}},
    ]


def test_kafka_without_known_operations_falls_back_to_network_access() -> None:
    c = deploy("consumer")
    edges = [edge(c, deploy("kafka", kind="StatefulSet"), kafka_topics=(KafkaTopic("t", ("frobnicate",)),))]
    assert client_intents(edges)[0]["spec"]["targets"] == [
        {"kubernetes": {"name": "kafka", "kind": "StatefulSet"}}
    ]


def test_denied_operations_are_never_exported_and_topics_merge_over_principals() -> None:
    c = deploy("client")
    kafka = deploy("kafka", kind="StatefulSet")
    topics = (
        KafkaTopic("mytopic", ("consume",), "User:CN=a", ("produce",)),
        KafkaTopic("mytopic", ("describe",), "User:CN=b", ("alter",)),
        KafkaTopic("mytopic", ("produce",), "User:CN=c"),  # allowed to one principal: exported
        KafkaTopic("payments", (), "User:CN=a", ("consume",)),  # only denied: no topic
    )
    edges = [edge(c, kafka, kafka_topics=topics)]
    assert client_intents(edges)[0]["spec"]["targets"] == [
        {
            "kafka": {
                "name": "kafka.shop",
                "topics": [{"name": "mytopic", "operations": ["consume", "produce", "describe"]}],
            }
        }
    ]
    assert client_intents(edges, "v1alpha3")[0]["spec"]["calls"] == [
        {
            "name": "kafka.shop",
            "type": "kafka",
            "kafkaTopics": [{"name": "mytopic", "operations": ["consume", "produce", "describe"]}],
        }
    ]
    only_denied = [edge(c, kafka, kafka_topics=(KafkaTopic("payments", (), "User:CN=a", ("consume",)),))]
    # nothing allowed: the connection itself was seen, so it stays a plain workload target
    assert client_intents(only_denied)[0]["spec"]["targets"] == [
        {"kubernetes": {"name": "kafka", "kind": "StatefulSet"}}
    ]


def test_http_path_templates_are_written_as_istio_matches_them() -> None:
    resources = (
        HttpResource("/api/orders/{id}", ("POST",)),
        HttpResource("/api/orders/{orderId}", ("GET",)),  # the same pattern: methods merge
        HttpResource("/api/orders/{id}/items", ("GET",)),
        HttpResource("/api/cart", ("GET",)),
    )
    doc = client_intents([edge(deploy("client"), deploy("server"), http=resources)])[0]
    assert doc["spec"]["targets"][0]["kubernetes"]["http"] == [
        {"path": "/api/cart", "methods": ["GET"]},
        {"path": "/api/orders/*", "methods": ["GET", "POST"]},
        {"path": "/api/orders/{*}/items", "methods": ["GET"]},
    ]
    assert validate(doc, load_crd()) == []


def test_same_name_two_kinds_get_distinct_document_names() -> None:
    edges = [edge(deploy("sync"), deploy("db")), edge(deploy("sync", kind="CronJob"), deploy("db"))]
    names = [d["metadata"]["name"] for d in client_intents(edges)]
    assert names == ["sync-cronjob", "sync-deployment"]


def test_empty_kind_is_omitted_and_no_edges_no_documents() -> None:
    doc = client_intents([edge(WorkloadIdentity("ns", "a"), WorkloadIdentity("ns", "b"))])[0]
    assert doc["spec"] == {"workload": {"name": "a"}, "targets": [{"kubernetes": {"name": "b"}}]}
    assert client_intents([]) == []
    with pytest.raises(ValueError, match="v1beta9"):
        client_intents([], "v1beta9")


def test_enum_mapping() -> None:
    assert http_methods(["get", "HEAD", "Post", "PROPFIND", "GET"]) == ["GET", "POST"]
    assert kafka_operations(["Read", "Write", "Describe", "describe_configs", "CLUSTER_ACTION", "x"]) == [
        "consume",
        "produce",
        "describe",
        "ClusterAction",
        "DescribeConfigs",
    ]
    resources = (HttpResource("/a", ("PROPFIND",)), HttpResource("/b"), HttpResource("/c", ("HEAD",)))
    doc = client_intents([edge(deploy("a"), deploy("b"), http=resources)])[0]
    assert doc["spec"]["targets"][0]["kubernetes"]["http"] == [
        {"path": "/b", "methods": []},
        {"path": "/c", "methods": ["GET"]},
    ]


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("prefer_services", [False, True])
def test_every_demo_document_validates(
    demo_edges: list[Edge], crd: dict[str, Any], version: str, prefer_services: bool
) -> None:
    documents = client_intents(demo_edges, version, prefer_services=prefer_services)
    assert len(documents) == 8
    for document in documents:
        assert validate(document, crd) == [], document
    # and as a user gets them: through YAML text
    for document in yaml.safe_load_all(yaml_documents(documents)):
        assert validate(document, crd) == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["spec"]["targets"][0]["kubernetes"].update(namespace="x"), "'namespace' was unexpected"),
        (lambda d: d["spec"]["targets"].append({"aws": {"arns": ["a"]}}), "'arns' was unexpected"),
        (
            lambda d: d["spec"]["targets"][1]["kubernetes"]["http"][0].update(methods=["HEAD"]),
            "'HEAD' is not one",
        ),
        (lambda d: d["spec"]["targets"][2]["kafka"].pop("name"), "'name' is a required property"),
        (lambda d: d["spec"].pop("workload"), "'workload' is a required property"),
        (
            lambda d: d["spec"]["targets"][3]["internet"].update(ports=["443"]),
            "'443' is not of type 'integer'",
        ),
        (lambda d: d["metadata"].update(name="Front_End"), "not a DNS-1123 subdomain"),
        (lambda d: d.update(kind="ServerIntents"), "is not 'ClientIntents'"),
        (lambda d: d.update(apiVersion="k8s.otterize.com/v9"), "is not one of"),
    ],
)
def test_validation_catches_wrong_documents(crd: dict[str, Any], mutate: Any, expected: str) -> None:
    client = deploy("frontend")
    edges = [
        edge(client, deploy("a")),
        edge(client, deploy("b"), http=(HttpResource("/", ("GET",)),)),
        edge(client, deploy("k"), kafka_topics=(KafkaTopic("t", ("produce",)),)),
        edge(client, InternetTarget("example.com", (), 443)),
    ]
    document = client_intents(edges)[0]
    assert validate(document, crd) == []
    mutate(document)
    problems = validate(document, crd)
    assert any(expected in p for p in problems), problems


def test_v1alpha3_shape_does_not_validate_as_v2beta1(crd: dict[str, Any]) -> None:
    document = client_intents([edge(deploy("a"), deploy("b"))], "v1alpha3")[0]
    document["apiVersion"] = "k8s.otterize.com/v2beta1"
    problems = validate(document, crd)
    assert any("'workload' is a required property" in p for p in problems)
    assert validate(document, crd, strict=False) != []  # required fields hold without strictness


# --------------------------------------------------------------------------- determinism, properties


def test_same_edges_in_any_order_give_identical_output(demo_edges: list[Edge]) -> None:
    expected = {v: yaml_documents(client_intents(demo_edges, v)) for v in VERSIONS}
    for seed in range(5):
        shuffled = list(demo_edges)
        random.Random(seed).shuffle(shuffled)
        for v in VERSIONS:
            assert yaml_documents(client_intents(shuffled, v)) == expected[v]


dns_label = st.from_regex(r"\A[a-z]([a-z0-9-]{0,10}[a-z0-9])?\Z")
identities = st.builds(
    WorkloadIdentity,
    namespace=st.sampled_from(["shop", "batch", "kafka"]),
    name=dns_label,
    kind=st.sampled_from(["", "Deployment", "StatefulSet", "CronJob", "Pod", "Service"]),
)
targets = st.one_of(
    identities,
    st.builds(
        InternetTarget,
        dns_name=st.one_of(st.just(""), dns_label.map(lambda n: n + ".example.com")),
        ips=st.lists(st.ip_addresses().map(str), max_size=2).map(tuple),
        port=st.integers(0, 65535),
    ),
    st.builds(AwsTarget, arn=st.sampled_from(["*", "arn:aws:s3:::b/*", "arn:aws:sqs:us-east-1:1:q"])),
)
words = st.text("abcdefgHIJK_-/", max_size=8)
edges_strategy = st.lists(
    st.builds(
        Edge,
        client=identities.filter(lambda w: w.kind != "Service"),
        target=targets,
        first_seen=st.just(T0),
        last_seen=st.just(T0 + 1),
        http=st.lists(
            st.builds(
                HttpResource,
                path=words,
                methods=st.lists(st.sampled_from(["GET", "head", "post", "BREW"])).map(tuple),
            ),
            max_size=2,
        ).map(tuple),
        kafka_topics=st.lists(
            st.builds(
                KafkaTopic,
                name=words,
                operations=st.lists(st.sampled_from(["Read", "write", "describe", "nope"])).map(tuple),
            ),
            max_size=2,
        ).map(tuple),
        aws_actions=st.lists(st.sampled_from(["s3:GetObject", "sqs:SendMessage"])).map(tuple),
        target_service=st.one_of(st.just(""), dns_label),
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edges=edges_strategy, prefer_services=st.booleans())
def test_any_edges_export_valid_documents(edges: list[Edge], prefer_services: bool) -> None:
    crd = load_crd()
    for version in VERSIONS:
        documents = client_intents(edges, version, prefer_services=prefer_services)
        for document in documents:
            assert validate(document, crd) == [], document
        assert client_intents(reversed(edges), version, prefer_services=prefer_services) == documents
