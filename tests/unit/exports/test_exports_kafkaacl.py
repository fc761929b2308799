"""Kafka ACL export: Strimzi KafkaUsers and kafka-acls.sh lines, exact for the Otterize Kafka
tutorial; every KafkaUser validates against Strimzi's published CRD; and denied accesses never
enter any export (KafkaUser, command lines, ClientIntents) unless the broker also allowed them."""

from __future__ import annotations

import json
import random
import shlex
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.exports import (
    client_intents,
    edges_from_document,
    kafka_acl_commands,
    kafka_users,
    validate,
    yaml_documents,
)
from agent.exports.clientintents import kafka_operations
from agent.exports.kafkaacl import acl_operations, user_of, without_kafka_user
from agent.model import Edge, InternetTarget, KafkaTopic, Method, WorkloadIdentity
from tests.unit.exports.test_exports_clientintents import load_crd

DATA = Path(__file__).resolve().parents[3] / "tests" / "data" / "exports"
CRD = "strimzi-kafkauser-crd.yaml"
T0 = 1764296106.918878
NS = "otterize-tutorial-kafka-mapping"
KAFKA = WorkloadIdentity(NS, "kafka", "StatefulSet")
CLIENT = "User:CN=client,O=Otterize Tutorial"
CLIENT2 = "User:CN=client2,O=Otterize Tutorial"
BOOTSTRAP = f"kafka-acls.sh --bootstrap-server kafka.{NS}:9092 --add"


def command(principal: str, operation: str, topic: str) -> str:
    return f"{BOOTSTRAP} --allow-principal {principal} --operation {operation} --topic {topic}"


def deploy(name: str, ns: str = NS, kind: str = "Deployment") -> WorkloadIdentity:
    return WorkloadIdentity(ns, name, kind)


def edge(client: WorkloadIdentity, target: Any, *topics: KafkaTopic) -> Edge:
    return Edge(client, target, T0, T0 + 1, frozenset({Method.KAFKA}), kafka_topics=topics)


def tutorial_edges() -> list[Edge]:
    document = json.loads((DATA / "otterize-tutorial-edges.json").read_text(encoding="utf-8"))
    return edges_from_document(document)


def assert_valid(document: dict[str, Any]) -> None:
    """Against the published CRD, which serves ``v1`` only: a ``v1beta2`` document is checked as
    ``v1``. The fields exported (``operations``, ``resource``, ``host``, ``authentication.type``,
    ``authorization.type``) are spelled alike in both; ``v1`` dropped only ``acls[].operation``."""
    as_v1 = {**document, "apiVersion": "kafka.strimzi.io/v1"}
    assert validate(as_v1, load_crd(CRD)) == [], document


def acl(topic: str, operation: str) -> dict[str, Any]:
    return {
        "resource": {"type": "topic", "name": topic, "patternType": "literal"},
        "operations": [operation],
        "host": "*",
    }


def user(name: str, principal: str, *acls: dict[str, Any], tls: bool = True) -> dict[str, Any]:
    spec: dict[str, Any] = {"authentication": {"type": "tls"}} if tls else {}
    spec["authorization"] = {"type": "simple", "acls": list(acls)}
    return {
        "apiVersion": "kafka.strimzi.io/v1beta2",
        "kind": "KafkaUser",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {"strimzi.io/cluster": "kafka", "app.kubernetes.io/managed-by": "network-mapper"},
            "annotations": {"network-mapper.otterize.com/principal": principal},
        },
        "spec": spec,
    }


# --------------------------------------------------------------------------- the tutorial, exactly


def test_tutorial_kafka_users() -> None:
    documents = kafka_users(tutorial_edges())
    assert documents == [
        user("client", CLIENT, acl("mytopic", "Read"), acl("mytopic", "Describe")),
        # client2's denied Read on payments is in no document
        user("client2", CLIENT2, acl("mytopic", "Write"), acl("mytopic", "Describe")),
    ]
    for document in documents:
        assert_valid(document)
    text = yaml_documents(documents)
    assert text == (DATA / "otterize-tutorial-kafka-acl.yaml").read_text(encoding="utf-8")
    for document in yaml.safe_load_all(text):
        assert_valid(document)


def test_tutorial_commands() -> None:
    lines = kafka_acl_commands(tutorial_edges())
    assert lines == [
        command("'User:CN=client,O=Otterize Tutorial'", "Read", "mytopic"),
        command("'User:CN=client,O=Otterize Tutorial'", "Describe", "mytopic"),
        command("'User:CN=client2,O=Otterize Tutorial'", "Write", "mytopic"),
        command("'User:CN=client2,O=Otterize Tutorial'", "Describe", "mytopic"),
    ]
    expected = (DATA / "otterize-tutorial-kafka-acl-commands.txt").read_text(encoding="utf-8")
    assert "".join(f"{line}\n" for line in lines) == expected
    assert shlex.split(lines[0])[5] == CLIENT  # one shell word, as the broker logged it


def test_tutorial_client_intents_leave_the_denied_topic_out() -> None:
    documents = {d["metadata"]["name"]: d for d in client_intents(tutorial_edges())}
    assert documents["client2"]["spec"]["targets"] == [
        {
            "kafka": {
                "name": f"kafka.{NS}",
                "topics": [{"name": "mytopic", "operations": ["produce", "describe"]}],
            }
        }
    ]


# --------------------------------------------------------------------------- rules


@pytest.mark.parametrize(
    ("principal", "expected"),
    [
        (CLIENT, ("client", True)),
        ("User:CN=client", ("client", True)),
        ("User:C=US,O=Example\\, Inc.,CN=billing.svc", ("billing.svc", True)),
        ("User:OU=Dev Team,cn=Alice\\, Smith", ("Alice, Smith", True)),
        ("User:alice", ("alice", False)),
        ("User:ANONYMOUS", None),
        ("Group:admins", None),
        ("User:", None),
        ("User:O=Example,OU=Dev", None),  # a DN without a CN: no Strimzi user name
        ("User:CN=", None),
        ("", None),
    ],
)
def test_user_of(principal: str, expected: tuple[str, bool] | None) -> None:
    assert user_of(principal) == expected


def test_acl_operations_reuse_the_clientintents_mapping_and_keep_topic_operations() -> None:
    assert acl_operations(["consume", "produce", "describe", "describe-configs", "alter_configs"]) == [
        "Read",
        "Write",
        "Describe",
        "AlterConfigs",
        "DescribeConfigs",
    ]
    assert acl_operations(["Read", "WRITE", "create", "delete", "alter", "all"]) == [
        "Read",
        "Write",
        "Create",
        "Delete",
        "Alter",
        "All",
    ]
    # cluster operations are not topic operations (kafka-acls.sh refuses them with --topic)
    assert acl_operations(["cluster-action", "idempotent-write", "frobnicate"]) == []
    assert kafka_operations(["cluster-action", "idempotent-write"]) == ["ClusterAction", "IdempotentWrite"]


def test_names_labels_and_authentication() -> None:
    sasl = "User:Svc.Orders"
    a, b = "User:CN=worker,O=A", "User:CN=worker,O=B"  # one CN, two principals: both qualified
    long_cn = "User:CN=" + "x" * 70
    edges = [
        edge(deploy("orders"), KAFKA, KafkaTopic("orders", ("produce",), sasl)),
        edge(deploy("w1"), KAFKA, KafkaTopic("jobs", ("consume",), a)),
        edge(deploy("w2"), KAFKA, KafkaTopic("jobs", ("consume",), b)),
        edge(deploy("big"), KAFKA, KafkaTopic("t", ("consume",), long_cn)),
    ]
    labels = {KAFKA: {"strimzi.io/cluster": "my-cluster", "app": "kafka"}}
    documents = kafka_users(edges, "v1", labels_of=lambda w: labels.get(w, {}))
    by_principal = {
        d["metadata"]["annotations"]["network-mapper.otterize.com/principal"]: d for d in documents
    }
    assert by_principal[sasl]["metadata"]["name"] == "svc.orders"
    assert "authentication" not in by_principal[sasl]["spec"]  # a SASL user keeps its own credentials
    assert by_principal[a]["spec"]["authentication"] == {"type": "tls"}
    names = {p: d["metadata"]["name"] for p, d in by_principal.items()}
    assert names[a] != names[b] and names[a].startswith("worker-") and names[b].startswith("worker-")
    assert len(names[long_cn]) <= 63 and names[long_cn].startswith("xxxx")
    assert {d["metadata"]["labels"]["strimzi.io/cluster"] for d in documents} == {"my-cluster"}
    assert {d["apiVersion"] for d in documents} == {"kafka.strimzi.io/v1"}
    for document in documents:
        assert validate(document, load_crd(CRD)) == []
    with pytest.raises(ValueError, match="v9"):
        kafka_users(edges, "v9")


def test_anonymous_and_unknown_principals() -> None:
    edges = [
        edge(deploy("anon"), KAFKA, KafkaTopic("public", ("consume",), "User:ANONYMOUS")),
        edge(deploy("mystery"), KAFKA, KafkaTopic("secret", ("consume", "describe"), "")),
        edge(deploy("client"), KAFKA, KafkaTopic("mytopic", ("consume",), CLIENT)),
        edge(deploy("client"), InternetTarget("kafka.example.com"), KafkaTopic("x", ("consume",), CLIENT)),
    ]
    assert [d["metadata"]["name"] for d in kafka_users(edges)] == ["client"]
    assert kafka_acl_commands(edges) == [
        command("User:ANONYMOUS", "Read", "public"),
        command("'User:CN=client,O=Otterize Tutorial'", "Read", "mytopic"),
        f"# skipped: mystery.{NS} on topic secret of kafka.{NS} (Read, Describe): the broker logged no"
        " principal, so no ACL",
    ]
    assert without_kafka_user(edges) == [
        f"User:ANONYMOUS on kafka.{NS}: no KafkaUser (see the kafka-acls.sh lines)",
        f"mystery.{NS} on topic secret of kafka.{NS}: no principal known",
    ]


def test_command_lines_are_one_shell_word_per_argument() -> None:
    principal = "User:CN=o'brien; rm -rf /,O=$(id)"
    lines = kafka_acl_commands([edge(deploy("c"), KAFKA, KafkaTopic("t.1_x-y", ("produce",), principal))])
    assert shlex.split(lines[0]) == [
        "kafka-acls.sh",
        "--bootstrap-server",
        f"kafka.{NS}:9092",
        "--add",
        "--allow-principal",
        principal,
        "--operation",
        "Write",
        "--topic",
        "t.1_x-y",
    ]
    note = kafka_acl_commands([edge(deploy("c"), KAFKA, KafkaTopic("a\nrm -rf /", ("produce",)))])
    assert note == [
        f"# skipped: c.{NS} on topic a?rm -rf / of kafka.{NS} (Write): the broker logged no principal,"
        " so no ACL"
    ]


def test_same_edges_in_any_order_give_identical_output() -> None:
    edges = tutorial_edges() + [edge(deploy("anon"), KAFKA, KafkaTopic("p", ("consume",), "User:ANONYMOUS"))]
    expected = (yaml_documents(kafka_users(edges)), kafka_acl_commands(edges))
    for seed in range(5):
        shuffled = list(edges)
        random.Random(seed).shuffle(shuffled)
        assert (yaml_documents(kafka_users(shuffled)), kafka_acl_commands(shuffled)) == expected


def test_validation_catches_wrong_documents() -> None:
    (document, _) = kafka_users(tutorial_edges())
    document["spec"]["authorization"]["acls"][0]["operations"] = ["consume"]
    document["spec"]["authorization"]["acls"][1]["operation"] = "Read"  # v1beta2's deprecated field
    problems = validate({**document, "apiVersion": "kafka.strimzi.io/v1"}, load_crd(CRD))
    assert any("'consume' is not one of" in p for p in problems), problems
    assert any("'operation' was unexpected" in p for p in problems), problems
    assert any("is not one of ['kafka.strimzi.io/v1']" in p for p in validate(document, load_crd(CRD)))


# --------------------------------------------------------------------------- denied never exported

PRINCIPALS = ["", CLIENT, CLIENT2, "User:ANONYMOUS", "User:alice"]
OPERATIONS = ["consume", "produce", "describe", "alter", "describe-configs", "idempotent-write", "all"]
servers = st.sampled_from([KAFKA, deploy("kafka", "streaming", "StatefulSet")])
clients = st.sampled_from([deploy("client"), deploy("client2"), deploy("job", "batch", "CronJob")])
operation_sets = st.lists(st.sampled_from(OPERATIONS), max_size=3, unique=True).map(tuple)
topics = st.builds(
    KafkaTopic,
    name=st.sampled_from(["mytopic", "payments", "orders"]),
    operations=operation_sets,
    principal=st.sampled_from(PRINCIPALS),
    denied=operation_sets,
)
edges_strategy = st.lists(
    st.builds(lambda c, s, ts: edge(c, s, *ts), clients, servers, st.lists(topics, max_size=4)),
    max_size=8,
)


def _allowed(edges: list[Edge]) -> tuple[dict[Any, set[str]], dict[Any, set[str]]]:
    """What the broker allowed, as Kafka names: per (server, principal, topic), and per (client
    namespace, client name, server, topic) for ClientIntents (whose topics merge over principals)."""
    by_principal: dict[Any, set[str]] = defaultdict(set)
    by_client: dict[Any, set[str]] = defaultdict(set)
    for e in edges:
        for t in e.kafka_topics:
            by_principal[(e.target, t.principal, t.name)] |= set(acl_operations(t.operations))
            by_client[(e.client.namespace, e.client.name, e.target, t.name)] |= set(
                kafka_operations(t.operations)
            )
    return by_principal, by_client


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edges=edges_strategy)
def test_denied_is_never_exported_unless_also_allowed(edges: list[Edge]) -> None:
    by_principal, by_client = _allowed(edges)
    server_of = {(s.namespace, s.name): s for s in (KAFKA, deploy("kafka", "streaming", "StatefulSet"))}
    # KafkaUsers: each ACL was allowed to that principal on that topic of that server
    documents = kafka_users(edges)
    for document in documents:
        assert_valid(document)
        server = server_of[
            (document["metadata"]["namespace"], document["metadata"]["labels"]["strimzi.io/cluster"])
        ]
        principal = document["metadata"]["annotations"]["network-mapper.otterize.com/principal"]
        for entry in document["spec"]["authorization"]["acls"]:
            assert set(entry["operations"]) <= by_principal[(server, principal, entry["resource"]["name"])]
    # command lines: likewise, principals exactly as observed
    for line in kafka_acl_commands(edges):
        if line.startswith("#"):
            continue
        words = shlex.split(line)
        host, _, _ = words[2].partition(":")
        name, _, namespace = host.rpartition(".")
        server = server_of[(namespace, name)]
        assert words[7] in by_principal[(server, words[5], words[9])]
    # ClientIntents: each topic operation was allowed to some principal of that client
    for version in ("v2beta1", "v1alpha3"):
        for document in client_intents(edges, version):
            client = (document["metadata"]["namespace"], document["metadata"]["name"])
            entries = document["spec"].get("targets") or document["spec"]["calls"]
            for entry in entries:
                kafka = entry.get("kafka") or (entry if entry.get("type") == "kafka" else None)
                if not kafka:
                    continue
                name, _, namespace = kafka["name"].rpartition(".")
                for topic in kafka.get("topics") or kafka["kafkaTopics"]:
                    key = (*client, server_of[(namespace, name)], topic["name"])
                    assert set(topic["operations"]) <= by_client[key], (topic, key)
