"""Anonymization: the hashes (keyed, DNS-1123 labels), what is hashed and what is kept, and the
way back: edges, the JSON document, ClientIntents (v2beta1, v1alpha3) and NetworkPolicy YAML made
from anonymized edges, de-anonymized, equal the exports of the plain edges, cross-namespace
names included; and the CLI's ``deanonymize`` output equals its ``export`` output."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agent.anonymize import (
    AnonymizationKeyError,
    Anonymizer,
    Deanonymizer,
    generate_key,
    intents_edges,
    load_key,
)
from agent.cli import main as cli
from agent.exports import client_intents, edges_document, network_policies, validate, yaml_documents
from agent.model import AwsTarget, Edge, HttpResource, InternetTarget, KafkaTopic, Method, WorkloadIdentity

CRD = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "clientintents-crd.yaml"
KEY = b"0123456789abcdef0123456789abcdef"
T0 = 1_780_000_000.0
FRONTEND = WorkloadIdentity("shop", "frontend", "Deployment")
CART = WorkloadIdentity("shop", "cartservice", "Deployment")
REDIS = WorkloadIdentity("data", "redis-cart", "StatefulSet")
KAFKA = WorkloadIdentity("streaming", "kafka-broker", "StatefulSet")
LOADGEN = WorkloadIdentity("load", "loadgenerator", "Deployment")
API = WorkloadIdentity("default", "kubernetes", "Service")
JOB = WorkloadIdentity("shop", "frontend", "CronJob")  # same name, other kind: document names clash
NAMES = ("shop", "frontend", "cartservice", "data", "redis-cart", "streaming", "kafka-broker", "load")
NAMES += ("loadgenerator",)
NAMES += ("api.example.com", "arn:aws:s3:::orders", "cart-svc")
SPIFFE = "spiffe://cluster.local/ns/shop/sa/frontend"
NAMES += (SPIFFE, "User:CN=cartservice,O=Shop")  # principals name workloads too
LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def edge(client: WorkloadIdentity, target: object, **kw: object) -> Edge:
    fields: dict[str, object] = {"first_seen": T0, "last_seen": T0 + 5, "methods": frozenset({Method.TCP})}
    fields.update(kw)
    return Edge(client, target, **fields)  # type: ignore[arg-type]


EDGES = [
    edge(
        FRONTEND,
        CART,
        http=(HttpResource("/cart", ("GET", "POST"), (SPIFFE,), (200,)), HttpResource("/x", ())),
        count=3,
    ),
    edge(FRONTEND, REDIS, target_service="cart-svc"),  # cross-namespace: redis-cart.data
    edge(
        CART,
        KAFKA,
        kafka_topics=(KafkaTopic("orders", ("Read", "Write"), "User:CN=cartservice,O=Shop", ("Delete",)),),
        methods={Method.KAFKA},
    ),
    edge(CART, KAFKA, http=(HttpResource("/admin", ("GET",)),)),
    edge(LOADGEN, FRONTEND),
    edge(LOADGEN, InternetTarget("api.example.com", ("93.184.216.34",), 443)),
    edge(LOADGEN, InternetTarget("", ("1.1.1.1",), 53)),
    edge(CART, AwsTarget("arn:aws:s3:::orders"), aws_actions=("s3:GetObject",), methods={Method.AWS}),
    edge(CART, AwsTarget("*"), aws_actions=("s3:ListAllMyBuckets",), methods={Method.AWS}),
    edge(FRONTEND, API),
    edge(JOB, CART),
]


def test_hashes_are_keyed_deterministic_dns_labels() -> None:
    a, b = Anonymizer(KEY), Anonymizer(generate_key())
    assert a.hash("frontend") == Anonymizer(KEY).hash("frontend")
    assert a.hash("frontend") != b.hash("frontend") != a.hash("frontend2")
    assert LABEL.match(a.hash("frontend")) and len(a.hash("frontend")) == 26
    assert a.hash("") == ""
    with pytest.raises(AnonymizationKeyError):
        Anonymizer(b"short")


def test_anonymize_hashes_names_and_keeps_the_rest() -> None:
    anon = Anonymizer(KEY)
    out = [anon.anonymize(e) for e in EDGES]
    text = json.dumps(edges_document(out))
    for name in NAMES:
        assert f'"{name}"' not in text and f"{name}." not in text, name
    assert all(word in text for word in ("Deployment", "StatefulSet", "/cart", "orders", "s3:GetObject"))
    assert "93.184.216.34" in text and '"arn": "*"' in text
    assert out[1].target_service == anon.hash("cart-svc")
    assert out[0].count == 3 and out[0].first_seen == T0


def test_edges_and_the_json_document_round_trip() -> None:
    anon = Anonymizer(KEY)
    back = Deanonymizer(KEY, EDGES)
    anonymized = [anon.anonymize(e) for e in EDGES]
    assert [back.edge(e) for e in anonymized] == EDGES
    document = edges_document(anonymized)
    assert back.document(document) == edges_document(EDGES)
    text = json.dumps(document, indent=2) + "\n"
    assert back.export_text(text) == json.dumps(edges_document(EDGES), indent=2) + "\n"


@pytest.mark.parametrize("version", ["v2beta1", "v1alpha3"])
def test_client_intents_yaml_round_trips_to_the_plain_export(version: str) -> None:
    anon = Anonymizer(KEY)
    anonymized_docs = client_intents([anon.anonymize(e) for e in EDGES], version=version)
    if CRD.exists():
        assert all(validate(d, CRD) == [] for d in anonymized_docs)  # hashes keep documents valid
    text = yaml_documents(anonymized_docs)
    assert "redis-cart" not in text and re.search(r"h-[0-9a-f]{24}\.h-[0-9a-f]{24}", text)
    restored = Deanonymizer(KEY, EDGES).export_text(text)
    assert restored == yaml_documents(client_intents(EDGES, version=version))
    assert "redis-cart.data" in restored and "frontend-cronjob" in restored


def test_intents_edges_re_export_to_the_same_documents() -> None:
    docs = client_intents(EDGES)
    assert client_intents([e for doc in docs for e in intents_edges(doc)]) == docs


def test_network_policy_yaml_round_trips_to_the_plain_export() -> None:
    anon = Anonymizer(KEY)
    text = yaml_documents(network_policies([anon.anonymize(e) for e in EDGES]))
    assert "frontend" not in text
    restored = Deanonymizer(KEY, EDGES).export_text(text)
    assert restored == yaml_documents(network_policies(EDGES))


def test_other_text_gets_known_hashes_replaced_and_unknown_ones_kept() -> None:
    anon = Anonymizer(KEY)
    back = Deanonymizer(KEY, EDGES)
    stranger = anon.hash("gone-away")
    text = f"{anon.hash('frontend')}.{anon.hash('shop')} -> {stranger}, x{anon.hash('shop')}"
    assert back.text(text) == f"frontend.shop -> {stranger}, x{anon.hash('shop')}"
    assert back.unknown(text) == {stranger}


def test_load_key(tmp_path: Path) -> None:
    (tmp_path / "key").write_bytes(KEY + b"\n")
    assert load_key(tmp_path / "key") == KEY
    (tmp_path / "short").write_bytes(b"abc")
    with pytest.raises(AnonymizationKeyError, match="shorter"):
        load_key(tmp_path / "short")
    with pytest.raises(AnonymizationKeyError, match="cannot read"):
        load_key(tmp_path / "missing")


def test_cli_deanonymize_equals_the_plain_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "fetch_edges", lambda client, args: list(EDGES))  # the mapper's edges
    (tmp_path / "key").write_bytes(KEY)
    anon = Anonymizer(KEY)
    cloud_export = yaml_documents(client_intents([anon.anonymize(e) for e in EDGES]))
    (tmp_path / "cloud.yaml").write_text(cloud_export)
    assert cli.main(["export", "-o", str(tmp_path / "plain.yaml")]) == 0
    args = ["deanonymize", "--key-file", str(tmp_path / "key"), "--input", str(tmp_path / "cloud.yaml")]
    assert cli.main([*args, "-o", str(tmp_path / "restored.yaml")]) == 0
    assert (tmp_path / "restored.yaml").read_text() == (tmp_path / "plain.yaml").read_text()
    capsys.readouterr()
    assert cli.main(args) == 0
    assert capsys.readouterr().out == (tmp_path / "plain.yaml").read_text()
    assert cli.main(["deanonymize", "--key-file", str(tmp_path / "nokey")]) == 2
    assert "cannot read" in capsys.readouterr().err
