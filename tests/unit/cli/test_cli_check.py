"""``network-mapper check POLICY_FILE...`` run as a user runs it (``main(argv, transport)``), against
a stand-in mapper (:mod:`tests.unit.cli.standin_mapper`) or with ``--edges FILE`` and no mapper:
the verdicts of :mod:`agent.policy` with the exit status CI reads (0 nothing denied, 1 something
would be, 2 bad input, 3 no mapper), each report format, and the window flags."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest

from agent import snapshotwire, wire
from agent.cli import main as cli
from agent.mapperclient import Transport
from agent.model import (
    ClusterFacts,
    Edge,
    Method,
    NamedPort,
    NamespaceFacts,
    Snapshot,
    WorkloadFacts,
    WorkloadIdentity,
)
from tests.unit.cli.standin_mapper import StandInMapper

URL = "http://mapper.in-process:9090/query"
NS = "shop"
NOW = float(int(time.time()))  # whole seconds: times round-trip through documents exactly


def _w(name: str, ns: str = NS) -> WorkloadIdentity:
    return WorkloadIdentity(ns, name, "Deployment")


def _e(client: str, server: str, ports: tuple[int, ...], ago: float = 60.0, ns: str = NS) -> Edge:
    methods = frozenset({Method.TCP} if ports else {Method.DNS})
    return Edge(_w(client, ns), _w(server, ns), NOW - 86400, NOW - ago, methods, count=7, ports=ports)


EDGES = [
    _e("frontend", "cartservice", (7070,)),
    _e("frontend", "checkoutservice", (5050,)),
    _e("checkoutservice", "paymentservice", (50051,)),
    _e("frontend", "adservice", ()),  # seen through DNS only: ports unknown
    _e("loadgenerator", "frontend", (8080,), ago=3 * 3600),  # three hours ago
]
NAMES = sorted({n for e in EDGES for n in (e.client.name, e.target.name)})  # type: ignore[union-attr]
FACTS = ClusterFacts(
    namespaces=(NamespaceFacts(NS, (("kubernetes.io/metadata.name", NS),)),),
    workloads=tuple(
        WorkloadFacts(_w(n), (("app", n),), (NamedPort("grpc", 50051),) if n == "paymentservice" else ())
        for n in NAMES
    ),
)

ADMIT_CHECKOUT = f"""\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: paymentservice, namespace: {NS}}}
spec:
  podSelector: {{matchLabels: {{app: paymentservice}}}}
  policyTypes: [Ingress]
  ingress:
  - from: [{{podSelector: {{matchLabels: {{app: checkoutservice}}}}}}]
    ports: [{{port: grpc}}]
"""
ISOLATE_PAYMENT = f"""\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: paymentservice, namespace: {NS}}}
spec:
  podSelector: {{matchLabels: {{app: paymentservice}}}}
  policyTypes: [Ingress]
  ingress: []
"""
# paymentservice is named as a target (by frontend), and checkoutservice does not declare it;
# cartservice is named by both of its clients
INTENTS = f"""\
apiVersion: k8s.otterize.com/v2beta1
kind: ClientIntents
metadata: {{name: frontend, namespace: {NS}}}
spec:
  workload: {{name: frontend, kind: Deployment}}
  targets:
  - kubernetes: {{name: paymentservice, kind: Deployment}}
  - kubernetes: {{name: cartservice, kind: Deployment}}
---
apiVersion: k8s.otterize.com/v2beta1
kind: ClientIntents
metadata: {{name: checkoutservice, namespace: {NS}}}
spec:
  workload: {{name: checkoutservice, kind: Deployment}}
  targets:
  - kubernetes: {{name: cartservice, kind: Deployment}}
"""


def _file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def run(capsys: pytest.CaptureFixture[str], transport: Transport, *argv: str) -> tuple[int, str, str]:
    """The exit status, stdout and stderr of ``network-mapper --mapper-url URL ARGV...``."""
    try:
        status = cli.main(["--mapper-url", URL, *argv], transport=transport)
    except SystemExit as exc:  # argparse's own usage errors
        status = int(exc.code or 0)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture
def mapper() -> StandInMapper:
    return StandInMapper(list(EDGES), FACTS)


def test_policies_that_admit_every_edge_exit_0(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mapper: StandInMapper
) -> None:
    status, out, err = run(capsys, mapper, "check", _file(tmp_path, "np.yaml", ADMIT_CHECKOUT))
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        "0 of 5 edges would be denied (1 with unknown ports, judged on peers only; skipped: none)"
    ]
    assert mapper.requests == ["Edges", "ClusterFacts"]


def test_an_isolated_server_denies_exactly_its_edge_exit_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mapper: StandInMapper
) -> None:
    status, out, _ = run(capsys, mapper, "check", _file(tmp_path, "np.yaml", ISOLATE_PAYMENT))
    assert status == 1
    denied = [line for line in out.splitlines() if line.startswith("DENIED")]
    assert len(denied) == 1
    assert "checkoutservice.shop → paymentservice.shop (ports 50051) ingress" in denied[0]
    assert f"NetworkPolicy {NS}/paymentservice ({tmp_path / 'np.yaml'}#1)" in denied[0]
    assert "count 7" in denied[0]


def test_client_intents_deny_the_undeclared_client(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mapper: StandInMapper
) -> None:
    status, out, _ = run(
        capsys, mapper, "check", "--format", "json", _file(tmp_path, "intents.yaml", INTENTS)
    )
    assert status == 1
    report = json.loads(out)
    assert report["denied"] == 1
    (denial,) = report["denials"]
    assert denial["policy"]["kind"] == "ClientIntents"
    assert (denial["edge"]["client"]["name"], denial["edge"]["target"]["name"]) == (
        "checkoutservice",
        "paymentservice",
    )


def test_junit_report_to_a_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mapper: StandInMapper
) -> None:
    report = tmp_path / "out" / "check.xml"
    policy = _file(tmp_path, "np.yaml", ISOLATE_PAYMENT)
    status, out, err = run(capsys, mapper, "check", "--format", "junit", "-o", str(report), policy)
    assert (status, out) == (1, "")
    assert err == f"1 of 5 edges would be denied; report written to {report}\n"
    suite = ET.fromstring(report.read_text(encoding="utf-8")).find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures")) == ("5", "1")
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed == ["checkoutservice.shop → paymentservice.shop"]


def test_since_and_namespace_narrow_the_edges(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mapper: StandInMapper
) -> None:
    mapper.edges.append(_e("job", "paymentservice", (50051,), ns="batch"))  # batch → batch: not in shop
    policy = _file(tmp_path, "np.yaml", ADMIT_CHECKOUT)
    status, out, _ = run(capsys, mapper, "check", "--format", "json", "--since", "2h", policy)
    assert (status, json.loads(out)["evaluated"]) == (
        0,
        5,
    )  # loadgenerator (3h ago) left out, batch's edge in
    status, out, _ = run(capsys, mapper, "check", "--format", "json", "-n", "batch", policy)
    assert (status, json.loads(out)["evaluated"]) == (0, 1)


@pytest.mark.parametrize("document", ["snapshot", "export"])
def test_edges_from_a_file_need_no_mapper(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, document: str
) -> None:
    policy = ISOLATE_PAYMENT
    if document == "snapshot":  # with the cluster's facts: the pods' labels
        data = snapshotwire.encode_snapshot(Snapshot("ci", NOW, tuple(EDGES), FACTS))
    else:  # a JSON export: no facts, so pods have the exporters' default labels
        data = json.dumps(wire.plain(wire.export_document(EDGES))).encode()
        policy = policy.replace("{app: paymentservice}", "{app.kubernetes.io/name: paymentservice}")
    edges = tmp_path / "edges.json"
    edges.write_bytes(data)
    down = StandInMapper(down=True)
    status, out, _ = run(capsys, down, "check", "--edges", str(edges), _file(tmp_path, "np.yaml", policy))
    assert status == 1
    assert [line.split(" (")[0] for line in out.splitlines() if line.startswith("DENIED")] == [
        "DENIED checkoutservice.shop → paymentservice.shop"
    ]
    assert down.requests == []


def test_since_with_a_file_counts_back_from_the_files_time(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    week = 7 * 86400.0  # a snapshot from a week ago: its edges are old, but not relative to it
    old = tuple(replace(e, first_seen=e.first_seen - week, last_seen=e.last_seen - week) for e in EDGES)
    edges = tmp_path / "last-week.json"
    edges.write_bytes(snapshotwire.encode_snapshot(Snapshot("last-week", NOW - week, old, FACTS)))
    policy = _file(tmp_path, "np.yaml", ADMIT_CHECKOUT)
    status, out, _ = run(
        capsys,
        StandInMapper(down=True),
        "check",
        "--edges",
        str(edges),
        "--since",
        "2h",
        "--format",
        "json",
        policy,
    )
    assert (status, json.loads(out)["evaluated"]) == (0, 4)  # loadgenerator's edge: 3h before the file's time


def test_an_unreachable_mapper_exits_3(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, out, err = run(
        capsys, StandInMapper(down=True), "check", _file(tmp_path, "np.yaml", ADMIT_CHECKOUT)
    )
    assert (status, out) == (3, "")
    assert err.startswith(f"network-mapper: cannot reach the mapper at {URL}")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kind: [unclosed\n", "bad.yaml: document 1"),
        (
            ADMIT_CHECKOUT + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
            "bad.yaml: document 2",
        ),
        (ADMIT_CHECKOUT.replace("networking.k8s.io/v1", "networking.k8s.io/v2"), "bad.yaml: document 1"),
        (ISOLATE_PAYMENT.replace("name: paymentservice, ", ""), "metadata.name"),
    ],
    ids=["yaml-error", "unknown-kind", "wrong-api-version", "missing-field"],
)
def test_bad_policy_files_exit_2_naming_file_and_document(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, expected: str
) -> None:
    mapper = StandInMapper(list(EDGES), FACTS)
    status, out, err = run(capsys, mapper, "check", _file(tmp_path, "bad.yaml", text))
    assert (status, out) == (2, "")
    assert err.startswith("network-mapper: error: ") and err.count("\n") == 1
    assert expected in err and str(tmp_path / "bad.yaml") in err
    assert mapper.requests == []  # the policies are read before the mapper is asked


def test_bad_inputs_and_usage_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    mapper = StandInMapper(list(EDGES), FACTS)
    policy = _file(tmp_path, "np.yaml", ADMIT_CHECKOUT)
    status, _, err = run(capsys, mapper, "check", str(tmp_path / "missing.yaml"))
    assert status == 2 and "missing.yaml" in err
    status, _, err = run(
        capsys, mapper, "check", "--edges", _file(tmp_path, "e.json", '{"kind": "Nope"}'), policy
    )
    assert status == 2 and "e.json" in err
    status, _, err = run(capsys, mapper, "check", "--since", "yesterday", policy)
    assert status == 2 and "'yesterday' is not a duration" in err
    status, _, err = run(capsys, mapper, "check", "--format", "xml", policy)
    assert status == 2
    assert mapper.requests == []


def test_a_directory_of_policies(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mapper: StandInMapper
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    _file(policies, "a.yaml", ADMIT_CHECKOUT)
    _file(policies, "b.yml", INTENTS)
    _file(policies, "notes.txt", "not a policy")
    status, out, _ = run(capsys, mapper, "check", "--format", "json", str(policies))
    assert status == 1
    assert {d["policy"]["source"] for d in json.loads(out)["denials"]} == {str(policies / "b.yml")}


def test_help_explains_exit_codes_ports_and_the_model(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["check", "--help"])
    out = capsys.readouterr().out
    for phrase in (
        "exit status:",
        "3  the mapper cannot be reached",
        "ports unknown",
        "ingress: []",
        "egress",
    ):
        assert phrase in out
    assert "as Otterize's intents operator enforces" in out
