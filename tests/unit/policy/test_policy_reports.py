"""Reports of a check: the text lines (client → target, ports, direction, policy and its
file#document, reason, last seen, count; a summary), the JSON document (stable keys, the edge as
agent.wire's edge document) and JUnit XML that parses, with a testcase per judged edge and a
failure per denial."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from agent import wire
from agent.model import AwsTarget, ClusterFacts, Edge, InternetTarget, WorkloadIdentity
from agent.policy import CheckResult, PolicySet, check, load_policies, report_json, report_junit, report_text

DATA = Path(__file__).resolve().parents[3] / "tests" / "data" / "policies"
T0 = 1_764_296_106.0
SHOP = "shop"


def run() -> tuple[CheckResult, PolicySet, list[Edge]]:
    names = ["default-deny-ingress.yaml", "intents-v2beta1.yaml"]
    policies = load_policies((n, (DATA / n).read_text(encoding="utf-8")) for n in names)
    checkout = WorkloadIdentity(SHOP, "checkoutservice", "Deployment")
    frontend = WorkloadIdentity("web", "frontend", "Deployment")
    edges = [
        Edge(
            checkout,
            WorkloadIdentity(SHOP, "paymentservice", "Deployment"),
            T0,
            T0 + 60,
            ports=(50051,),
            count=7,
        ),
        Edge(frontend, WorkloadIdentity(SHOP, "paymentservice", "Deployment"), T0, T0 + 30, count=2),
        Edge(frontend, WorkloadIdentity("default", "db", "Deployment"), T0, T0 + 10, ports=(5432,)),
        Edge(frontend, InternetTarget("api.example.com", ("1.2.3.4",)), T0, T0),
        Edge(frontend, AwsTarget("arn:aws:s3:::b"), T0, T0),
        Edge(frontend, WorkloadIdentity("default", "kubernetes", "Service"), T0, T0),
    ]
    return check(edges, policies, ClusterFacts()), policies, edges


def test_text_report() -> None:
    result, _, edges = run()
    lines = report_text(result).splitlines()
    assert lines == [
        "DENIED frontend.web → paymentservice.shop (ports unknown) ingress:"
        " ClientIntents shop/checkoutservice (intents-v2beta1.yaml#1): paymentservice.shop is protected"
        " by ClientIntents shop/checkoutservice and frontend.web declares no intent to it;"
        f" last seen {wire.format_time(T0 + 30)}, count 2",
        "DENIED frontend.web → db.default (ports 5432) ingress: NetworkPolicy default/default-deny-ingress"
        " (default-deny-ingress.yaml#1): no ingress rule of default/default-deny-ingress admits traffic from"
        f" this peer; last seen {wire.format_time(T0 + 10)}, count 1",
        "2 of 4 edges would be denied (2 with unknown ports, judged on peers only;"
        " skipped: aws: through the proxy 1, service: not a pod 1)",
    ]
    assert result.evaluated == 4 and result.ports_unknown == 2
    assert result.checked == tuple(edges[:4])


def test_json_report() -> None:
    result, _, edges = run()
    document = report_json(result)
    assert json.loads(json.dumps(document)) == document
    assert list(document) == [
        "apiVersion",
        "kind",
        "evaluated",
        "denied",
        "portsUnknown",
        "skipped",
        "denials",
    ]
    assert (document["evaluated"], document["denied"], document["portsUnknown"]) == (4, 2, 2)
    assert document["skipped"] == {"aws: through the proxy": 1, "service: not a pod": 1}
    first = document["denials"][0]
    assert first["direction"] == "ingress"
    assert first["policy"] == {
        "kind": "ClientIntents",
        "namespace": SHOP,
        "name": "checkoutservice",
        "source": "intents-v2beta1.yaml",
        "document": 1,
    }
    assert wire.edge_from_plain(first["edge"]) == edges[1]


def test_junit_report_parses_with_a_case_per_edge_and_a_failure_per_denial() -> None:
    result, policies, _ = run()
    root = ET.fromstring(report_junit(result, policies).encode())
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "2", "2")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [
        "checkoutservice.shop → paymentservice.shop",
        "frontend.web → paymentservice.shop",
        "frontend.web → db.default",
        "frontend.web → api.example.com",
    ]
    assert [len(c.findall("failure")) for c in cases] == [0, 1, 1, 0]
    assert cases[2].find("failure").get("type") == "NetworkPolicy"  # type: ignore[union-attr]
    assert "DENIED frontend.web → db.default" in (cases[2].findtext("failure") or "")
    assert len(suite.findall("properties/property")) == len(policies.refs) == 3


def test_nothing_denied() -> None:
    result = check([], PolicySet(), ClusterFacts())
    assert (
        report_text(result)
        == "0 of 0 edges would be denied (0 with unknown ports, judged on peers only; skipped: none)\n"
    )
    root = ET.fromstring(report_junit(result, PolicySet()).encode())
    assert root.find("testsuite").get("tests") == "0"  # type: ignore[union-attr]
