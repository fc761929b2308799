"""The CLI's pure parts: the mapper's JSON → edges, the Otterize-style listing, DOT output."""

from __future__ import annotations

import pytest

from agent.cli.main import build_parser
from agent.cli.queries import EdgeFormatError, edge_from_json, labels_from_intents
from agent.cli.render import dot, listing
from agent.model import AwsTarget, Edge, HttpResource, InternetTarget, KafkaTopic, Method, WorkloadIdentity

NS = "otterize-ecom-demo"


def _w(name: str, ns: str = NS, kind: str = "Deployment") -> WorkloadIdentity:
    return WorkloadIdentity(ns, name, kind)


def _e(client: WorkloadIdentity, target: object, **kw: object) -> Edge:
    return Edge(client, target, 1_764_000_001.0, 1_764_000_002.0, frozenset({Method.DNS}), **kw)  # type: ignore[arg-type]


def test_listing_is_otterize_format_with_internet_and_cross_namespace() -> None:
    edges = [
        _e(_w("frontend"), _w("cartservice")),
        _e(_w("frontend"), _w("adservice")),
        _e(_w("frontend"), _w("billing", "sandbox-extras")),
        _e(_w("frontend"), InternetTarget("api.example.com", ("198.51.100.10",))),
        _e(_w("checkoutservice"), _w("emailservice"), http=(HttpResource("/send", ("POST",)),)),
        _e(_w("audit", "sandbox-extras"), AwsTarget("arn:aws:s3:::bucket"), aws_actions=("s3:GetObject",)),
    ]
    assert listing(edges).splitlines() == [
        "checkoutservice in namespace otterize-ecom-demo calls:",
        "  - emailservice [/send POST]",
        "frontend in namespace otterize-ecom-demo calls:",
        "  - adservice",
        "  - cartservice",
        "  - billing in namespace sandbox-extras",
        "  - api.example.com (Internet: 198.51.100.10)",
        "audit in namespace sandbox-extras calls:",
        "  - arn:aws:s3:::bucket (AWS: s3:GetObject)",
    ]


def test_listing_marks_denied_kafka_accesses() -> None:
    kafka = _w("kafka", kind="StatefulSet")
    topics = (
        KafkaTopic("mytopic", ("consume", "describe"), "User:CN=client"),
        KafkaTopic("payments", (), "User:CN=client", ("consume",)),
        KafkaTopic("orders", ("describe",), "User:CN=a", ("produce", "describe")),  # describe: allowed too
        KafkaTopic("orders", ("produce",), "User:CN=b"),  # allowed to b, denied to a: both shown
    )
    principals = (f"spiffe://cluster.local/ns/{NS}/sa/client",)
    http = (HttpResource("/api/orders/{id}", ("POST",), principals, (201,)),)
    edges = [_e(_w("client"), kafka, kafka_topics=topics), _e(_w("client"), _w("server"), http=http)]
    assert listing(edges).splitlines() == [
        "client in namespace otterize-ecom-demo calls:",
        "  - kafka [topic mytopic consume/describe; topic orders describe/produce, produce (denied);"
        " topic payments consume (denied)]",
        "  - server [/api/orders/{id} POST]",
    ]


def test_edge_from_json_round_trips_each_target_kind() -> None:
    raw = {
        "client": {"name": "frontend", "namespace": NS, "kind": "Deployment"},
        "target": {"type": "internet", "dnsName": "api.example.com", "ips": ["1.2.3.4"], "port": 443},
        "methods": ["dns", "tcp"],
        "firstSeen": "2026-11-28T02:00:00Z",
        "lastSeen": "2026-11-28T02:00:01.5Z",
        "count": 3,
        "http": [],
        "kafkaTopics": [{"name": "orders", "operations": ["CONSUME"]}],
        "awsActions": [],
        "targetService": "",
        "targetServiceSeen": None,
        "ambiguous": False,
    }
    edge = edge_from_json(raw)
    assert edge.target == InternetTarget("api.example.com", ("1.2.3.4",), 443)
    assert edge.methods == {Method.DNS, Method.TCP}
    assert edge.last_seen - edge.first_seen == pytest.approx(1.5)
    assert edge.kafka_topics[0].operations == ("CONSUME",)
    with pytest.raises(EdgeFormatError):
        edge_from_json({**raw, "target": {}})
    with pytest.raises(EdgeFormatError):
        edge_from_json({**raw, "methods": ["telepathy"]})


def test_labels_from_intents() -> None:
    got = labels_from_intents(
        [
            {
                "client": {"name": "a", "namespace": "n", "labels": [{"key": "app", "value": "a"}]},
                "server": {"name": "b", "namespace": "n", "labels": None},
            }
        ]
    )
    assert got == {("n", "a"): {"app": "a"}, ("n", "b"): {}}


def test_dot_has_clusters_and_escapes() -> None:
    text = dot([_e(_w('fr"ontend'), _w("cart")), _e(_w("cart"), InternetTarget("", ("9.9.9.9",)))])
    assert text.startswith("digraph network_map {")
    assert 'label="otterize-ecom-demo"' in text
    assert '"otterize-ecom-demo/fr\\"ontend" -> "otterize-ecom-demo/cart"' in text
    assert '"9.9.9.9" [shape=cloud];' in text


def test_parser_reads_env_defaults_and_flags_win() -> None:
    parser = build_parser({"OTTERIZE_MAPPER_API": "http://env:1/query"})
    assert parser.parse_args(["list"]).mapper_url == "http://env:1/query"
    args = parser.parse_args(["--mapper-url", "http://flag:2/query", "export", "--format", "json", "-n", "a"])
    assert (args.mapper_url, args.format, args.namespace) == ("http://flag:2/query", "json", ["a"])


def test_export_iam_and_json_print_json(tmp_path: object) -> None:
    import json

    from agent.cli.exporting import export

    edges = [
        _e(_w("audit", "x"), AwsTarget("arn:aws:s3:::bucket"), aws_actions=("s3:GetObject", "s3:PutObject")),
        _e(_w("audit", "x"), _w("billing", "x")),
    ]
    parser = build_parser({})
    iam = json.loads(export(edges, parser.parse_args(["export", "--format", "iam"]), {}))
    assert iam[0]["workload"]["name"] == "audit"
    statement = iam[0]["policyDocument"]["Statement"][0]
    assert statement["Resource"] == "arn:aws:s3:::bucket"
    assert statement["Action"] == ["s3:GetObject", "s3:PutObject"]
    doc = json.loads(export(edges, parser.parse_args(["export", "--format", "json"]), {}))
    assert len(doc["edges"]) == 2
