"""Stored edges → Otterize's query shapes and ours (agent.mapper.api.queries)."""

from __future__ import annotations

from collections.abc import Mapping

from agent import wire
from agent.mapper.api import queries
from agent.model import (
    AwsTarget,
    Edge,
    HttpResource,
    InternetTarget,
    KafkaTopic,
    Method,
    WorkloadIdentity,
)

FRONTEND = WorkloadIdentity("shop", "frontend", "Deployment")
CART = WorkloadIdentity("shop", "cartservice", "Deployment")
REDIS = WorkloadIdentity("shop", "redis-cart", "StatefulSet")
KAFKA = WorkloadIdentity("infra", "kafka", "StatefulSet")
JOB = WorkloadIdentity("batch", "report", "CronJob")
LABELS = {
    FRONTEND: {"app": "frontend", "team": "web"},
    CART: {"app": "cart", "skip": "yes"},
    REDIS: {"app": "redis"},
}


class Labels:
    def __init__(self, labels: Mapping[WorkloadIdentity, Mapping[str, str]]) -> None:
        self.labels = labels
        self.calls: list[WorkloadIdentity] = []

    def labels_of(self, identity: WorkloadIdentity) -> Mapping[str, str]:
        self.calls.append(identity)
        return self.labels.get(identity, {})


def edge(client: WorkloadIdentity, target, **kw) -> Edge:  # type: ignore[no-untyped-def]
    return Edge(client, target, 1_764_000_100.0, 1_764_000_200.0, frozenset({Method.TCP}), **kw)


EDGES = [
    edge(
        FRONTEND, CART, target_service="cartservice", http=(HttpResource("/cart", ("GET", "HEAD", "post")),)
    ),
    edge(FRONTEND, InternetTarget("api.github.com", ("140.82.112.3",), 443)),
    edge(CART, REDIS),
    edge(CART, KAFKA, kafka_topics=(KafkaTopic("orders", ("consume", "describe-configs", "weird")),)),
    edge(CART, AwsTarget("arn:aws:s3:::bucket"), aws_actions=("s3:GetObject",)),
    edge(JOB, CART, http=(HttpResource("/x", ("GET",)),), kafka_topics=(KafkaTopic("t", ("produce",)),)),
]


def test_pod_owner_kind() -> None:
    assert queries.pod_owner_kind("Deployment") == {"group": "apps", "version": "v1", "kind": "Deployment"}
    assert queries.pod_owner_kind("DaemonSet")["group"] == "apps"  # type: ignore[index]
    assert queries.pod_owner_kind("CronJob") == {"group": "batch", "version": "v1", "kind": "CronJob"}
    assert queries.pod_owner_kind("Pod") == {"group": "", "version": "v1", "kind": "Pod"}
    assert queries.pod_owner_kind("Rollout") == {"group": None, "version": "v1", "kind": "Rollout"}
    assert queries.pod_owner_kind("") is None


def test_enum_mappings() -> None:
    assert [queries.kafka_operation(o) for o in ("consume", "Read", "Write", "describe-configs", "nope")] == [
        "CONSUME",
        "CONSUME",
        "PRODUCE",
        "DESCRIBE_CONFIGS",
        None,
    ]
    assert [queries.http_method(m) for m in ("get", "*", "HEAD")] == ["GET", "ALL", None]


def test_service_intents_list_workload_targets_per_client() -> None:
    labels = Labels(LABELS)
    shaped = queries.service_intents(EDGES, labels)
    assert [(s["client"]["namespace"], s["client"]["name"]) for s in shaped] == [
        ("batch", "report"),
        ("shop", "cartservice"),
        ("shop", "frontend"),
    ]
    cart = shaped[1]
    assert [i["name"] for i in cart["intents"]] == ["kafka", "redis-cart"]  # no AWS target
    frontend = shaped[2]
    assert [i["name"] for i in frontend["intents"]] == ["cartservice"]  # no Internet target
    assert frontend["intents"][0]["kubernetesService"] == "cartservice"
    assert frontend["client"]["labels"] is None
    assert frontend["client"]["podOwnerKind"] == {"group": "apps", "version": "v1", "kind": "Deployment"}
    assert labels.calls == []  # no label options: no lookups


def test_service_intents_labels() -> None:
    shaped = queries.service_intents(EDGES, Labels(LABELS), include_labels=["team", "absent"])
    frontend = shaped[2]
    assert frontend["client"]["labels"] == [{"key": "team", "value": "web"}]
    shaped = queries.service_intents(EDGES, Labels(LABELS), include_all_labels=True)
    assert shaped[2]["client"]["labels"] == [
        {"key": "app", "value": "frontend"},
        {"key": "team", "value": "web"},
    ]
    assert shaped[0]["client"]["labels"] == []


def test_intents_types() -> None:
    shaped = queries.intents(EDGES, Labels(LABELS))
    summary = [(i["client"]["name"], i["server"]["name"], i["type"]) for i in shaped]
    assert summary == [
        ("frontend", "cartservice", "HTTP"),
        ("cartservice", "redis-cart", None),
        ("cartservice", "kafka", "KAFKA"),
        ("cartservice", "arn:aws:s3:::bucket", "AWS"),
        ("report", "cartservice", "KAFKA"),
        ("report", "cartservice", "HTTP"),
    ]
    http, plain, kafka, aws = shaped[:4]
    assert http["httpResources"] == [{"path": "/cart", "methods": ["GET", "POST"]}]
    assert http["server"]["kubernetesService"] == "cartservice"
    assert http["kafkaTopics"] is None and http["awsActions"] is None
    assert plain["httpResources"] is None and plain["kafkaTopics"] is None
    assert plain["server"]["podOwnerKind"] == {"group": "apps", "version": "v1", "kind": "StatefulSet"}
    assert kafka["kafkaTopics"] == [{"name": "orders", "operations": ["CONSUME", "DESCRIBE_CONFIGS"]}]
    assert aws["awsActions"] == ["s3:GetObject"]
    assert aws["server"] == {
        "name": "arn:aws:s3:::bucket",
        "namespace": "shop",
        "labels": None,
        "resolutionData": None,
        "podOwnerKind": None,
        "kubernetesService": None,
    }


def test_kafka_intents_merge_principals_and_leave_denied_accesses_out() -> None:
    topics = (
        KafkaTopic("orders", ("consume",), "User:CN=a"),
        KafkaTopic("orders", ("describe",), "User:CN=b", ("produce",)),
        KafkaTopic("payments", (), "User:CN=a", ("consume",)),  # only denied: no intent
    )
    (kafka,) = queries.intents([edge(CART, KAFKA, kafka_topics=topics)], Labels(LABELS))
    assert kafka["kafkaTopics"] == [{"name": "orders", "operations": ["CONSUME", "DESCRIBE"]}]
    denied_only = edge(CART, KAFKA, kafka_topics=topics[2:])
    assert [i["type"] for i in queries.intents([denied_only], Labels(LABELS))] == [None]  # the connection


def test_intents_exclude_services_with_labels() -> None:
    shaped = queries.intents(EDGES, Labels(LABELS), exclude_service_with_labels=["skip"])
    # every intent touching cartservice (as client or server) is gone
    assert [(i["client"]["name"], i["server"]["name"]) for i in shaped] == []
    shaped = queries.intents(EDGES, Labels(LABELS), exclude_service_with_labels=["app=redis"])
    assert ("cartservice", "redis-cart") not in [(i["client"]["name"], i["server"]["name"]) for i in shaped]
    assert len(shaped) == 5


def test_intents_server_filter() -> None:
    shaped = queries.intents(EDGES, Labels(LABELS), server={"name": "cartservice", "namespace": "shop"})
    assert {(i["client"]["name"], i["type"]) for i in shaped} == {
        ("frontend", "HTTP"),
        ("report", "HTTP"),
        ("report", "KAFKA"),
    }
    aws = queries.intents(EDGES, Labels(LABELS), server={"name": "arn:aws:s3:::bucket", "namespace": "shop"})
    assert [i["type"] for i in aws] == ["AWS"]
    assert queries.intents(EDGES, Labels(LABELS), server={"name": "cartservice", "namespace": "other"}) == []


def test_intents_include_labels_on_both_sides() -> None:
    shaped = queries.intents(EDGES[:1], Labels(LABELS), include_labels=["app"])
    assert shaped[0]["client"]["labels"] == [{"key": "app", "value": "frontend"}]
    assert shaped[0]["server"]["labels"] == [{"key": "app", "value": "cart"}]


def test_mapped_edge_keeps_everything() -> None:
    # The codec's edge document, field for field: every edge comes back whole from it.
    for edge in EDGES:
        assert wire.edge_from_plain(queries.mapped_edge(edge)) == edge
    internet = queries.mapped_edge(EDGES[1])
    assert internet["target"] == {
        "type": "internet",
        "dnsName": "api.github.com",
        "ips": ["140.82.112.3"],
        "port": 443,
    }
    kafka = queries.mapped_edge(EDGES[3])
    assert kafka["kafkaTopics"] == [
        {
            "name": "orders",
            "operations": ["consume", "describe-configs", "weird"],
            "principal": "",
            "denied": [],
        }
    ]
    assert kafka["target"] == {
        "type": "workload",
        "name": "kafka",
        "namespace": "infra",
        "kind": "StatefulSet",
    }
    assert kafka["methods"] == ["tcp"]
    assert (kafka["count"], kafka["ambiguous"], kafka["targetService"]) == (1, False, "")
    assert queries.mapped_edge(EDGES[0])["targetService"] == "cartservice"
    assert queries.mapped_edge(EDGES[4])["target"] == {"type": "aws", "arn": "arn:aws:s3:::bucket"}
