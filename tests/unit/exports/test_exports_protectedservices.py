"""ProtectedService export (``agent.exports.protected_services``, ``export --protect``): exact
documents; every document valid against the intents operator's published ProtectedService CRD
(``tests/data/otterize``); and what it is for: with a ProtectedService per server, the exported
ClientIntents deny nothing observed, and dropping one client's intent to a server makes
``agent.policy.check`` deny exactly that edge — without them, only when another client still names
the server (Otterize's default rule: an unnamed server admits everyone)."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.cli import main as cli
from agent.exports import client_intents, edges_from_document, protected_services, validate, yaml_documents
from agent.exports.protectedservices import VERSIONS
from agent.model import ClusterFacts, Edge, InternetTarget, Method, Target, WorkloadIdentity
from agent.policy import CheckResult, check, load_policies
from tests.unit.cli.test_cli_export import run, stand_in_mapper

ROOT = Path(__file__).resolve().parents[3]
OTTERIZE = ROOT / "tests" / "data" / "otterize"
CRD = OTTERIZE / "protectedservices-crd.yaml"
DEMO_EDGES = ROOT / "tests" / "data" / "exports" / "demo-edges.json"
T0 = 1764296106.918878
MANAGED = {"app.kubernetes.io/managed-by": "network-mapper"}

FRONTEND = WorkloadIdentity("shop", "frontend", "Deployment")
CART = WorkloadIdentity("shop", "cartservice", "Deployment")
REDIS = WorkloadIdentity("shop", "redis-cart", "StatefulSet")
CACHE_DEPLOY = WorkloadIdentity("shop", "cache", "Deployment")
CACHE_SET = WorkloadIdentity("shop", "cache", "StatefulSet")
KAFKA = WorkloadIdentity("streaming", "kafka", "StatefulSet")
LONG = WorkloadIdentity("shop", "x" * 60, "Deployment")
API_SERVER = WorkloadIdentity("default", "kubernetes", "Service")


def edge(client: WorkloadIdentity, target: Target) -> Edge:
    return Edge(client, target, T0, T0 + 1, frozenset({Method.TCP}))


SMALL_MAP = [
    edge(FRONTEND, CART),
    edge(CART, REDIS),
    edge(FRONTEND, CACHE_DEPLOY),
    edge(CART, CACHE_SET),
    edge(FRONTEND, KAFKA),
    edge(FRONTEND, LONG),
    edge(FRONTEND, API_SERVER),
    edge(FRONTEND, InternetTarget("api.example.com", ("93.184.216.34",), 443)),
]


@functools.cache
def crd() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CRD.read_text(encoding="utf-8"))
    return loaded


def document(api_version: str, namespace: str, name: str, server: str) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": "ProtectedService",
        "metadata": {"name": name, "namespace": namespace, "labels": MANAGED},
        "spec": {"name": server},
    }


# --------------------------------------------------------------------------- the CRD and versions


def test_crd_is_the_published_one_its_commit_names() -> None:
    commit = dict(
        line.split(": ", 1) for line in (OTTERIZE / "COMMIT").read_text(encoding="utf-8").splitlines()
    )
    assert commit["repository"] == "otterize/intents-operator"
    assert commit["path"].endswith("protectedservices-customresourcedefinition.yaml")
    assert re.fullmatch(r"[0-9a-f]{40}", commit["commit"])
    assert crd()["metadata"]["name"] == "protectedservices.k8s.otterize.com"
    assert crd()["spec"]["names"]["kind"] == "ProtectedService"


def test_versions_are_served_by_the_crd() -> None:
    """v1alpha3 for both ClientIntents versions: served by the CRD (and by every release seen)."""
    served = [v["name"] for v in crd()["spec"]["versions"] if v.get("served")]
    assert VERSIONS == {"v2beta1": "v1alpha3", "v1alpha3": "v1alpha3"}
    assert set(VERSIONS.values()) <= set(served)


# --------------------------------------------------------------------------- exact documents


def test_exact_documents_for_a_small_map() -> None:
    long_name = protected_services([edge(FRONTEND, LONG)])[0]["metadata"]["name"]
    assert len(long_name) == 63 and long_name.startswith("x" * 54 + "-")
    expected = [
        ("shop", "cache-protectedservice", "cache"),  # one for both kinds: spec.name names both
        ("shop", "cartservice-protectedservice", "cartservice"),
        ("shop", "redis-cart-protectedservice", "redis-cart"),
        ("shop", long_name, "x" * 60),
        ("streaming", "kafka-protectedservice", "kafka"),
    ]  # no document for the Service identity nor the Internet target: no pods to protect
    for intents_version, api_version in (
        ("v2beta1", "k8s.otterize.com/v1alpha3"),
        ("v1alpha3", "k8s.otterize.com/v1alpha3"),
    ):
        assert protected_services(SMALL_MAP, version=intents_version) == [
            document(api_version, *row) for row in expected
        ]
    assert protected_services(SMALL_MAP) == protected_services(SMALL_MAP, version="v2beta1")
    assert protected_services([]) == []


def test_unknown_version_is_refused() -> None:
    with pytest.raises(ValueError, match="v1alpha2"):
        protected_services(SMALL_MAP, version="v1alpha2")


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_documents_validate_against_the_crd(version: str) -> None:
    documents = protected_services(SMALL_MAP, version=version)
    assert documents
    for doc in documents:
        assert validate(doc, crd()) == []


def test_validation_can_fail() -> None:
    """The check above is honest: a field the CRD lacks, or a version it does not serve, is refused."""
    (doc,) = protected_services([edge(FRONTEND, CART)])
    assert validate({**doc, "spec": {"name": "cartservice", "port": 80}}, crd()) != []
    assert validate({**doc, "apiVersion": "k8s.otterize.com/v2beta1"}, crd()) != []


# --------------------------------------------------------------------------- round trips through check


def round_trip(documents: list[dict[str, Any]], edges: list[Edge]) -> CheckResult:
    policies = load_policies([("exported.yaml", yaml_documents(documents))])
    return check(edges, policies, ClusterFacts())


def denied(result: CheckResult) -> list[tuple[WorkloadIdentity, Target]]:
    return [(d.edge.client, d.edge.target) for d in result.denials]


@pytest.fixture(scope="module")
def demo_edges() -> list[Edge]:
    return edges_from_document(json.loads(DEMO_EDGES.read_text(encoding="utf-8")))


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_demo_dropping_paymentservice_from_checkoutservice(demo_edges: list[Edge], version: str) -> None:
    """The issue's acceptance, offline: edit the exported YAML as a user would."""
    intents = client_intents(demo_edges, version=version)
    protected = protected_services(demo_edges, version=version)
    assert round_trip(intents + protected, demo_edges).denials == ()

    edited = []
    key = "targets" if version == "v2beta1" else "calls"
    for doc in intents:
        if doc["metadata"]["name"] != "checkoutservice":
            edited.append(doc)
            continue
        entries = doc["spec"][key]
        kept = [e for e in entries if "paymentservice" not in json.dumps(e)]
        assert len(kept) == len(entries) - 1
        edited.append({**doc, "spec": {**doc["spec"], key: kept}})

    result = round_trip(edited + protected, demo_edges)
    checkout = WorkloadIdentity("shop", "checkoutservice", "Deployment")
    payment = WorkloadIdentity("shop", "paymentservice", "Deployment")
    assert denied(result) == [(checkout, payment)]
    (denial,) = result.denials
    assert (denial.direction, denial.policy.kind) == ("ingress", "ProtectedService")
    assert denial.policy.name == "paymentservice-protectedservice"
    # Without the ProtectedServices nothing names paymentservice any more: Otterize leaves it open
    assert round_trip(edited, demo_edges).denials == ()


def test_check_reads_spec_kind_where_the_crd_has_it() -> None:
    """``spec.kind`` (v1alpha3, v1beta1, v2) narrows the protection to that kind of workload."""
    db_set, db_deploy = (
        WorkloadIdentity("shop", "db", "StatefulSet"),
        WorkloadIdentity("shop", "db", "Deployment"),
    )
    edges = [edge(FRONTEND, db_set), edge(FRONTEND, db_deploy)]
    (doc,) = protected_services(edges)
    doc["spec"]["kind"] = "StatefulSet"
    assert validate(doc, crd()) == []
    assert denied(round_trip([doc], edges)) == [(FRONTEND, db_set)]


NAMES = ["api", "db", "web", "worker"]
workloads = st.builds(
    WorkloadIdentity,
    st.sampled_from(["a", "b"]),
    st.sampled_from(NAMES),
    st.sampled_from(["Deployment", "StatefulSet"]),
)
targets: st.SearchStrategy[Target] = st.one_of(
    workloads,
    workloads,
    st.builds(WorkloadIdentity, st.sampled_from(["a", "b"]), st.sampled_from(NAMES), st.just("Service")),
    st.just(InternetTarget("api.example.com", ("93.184.216.34",), 443)),
)


@st.composite
def maps(draw: st.DrawFn) -> tuple[list[Edge], Edge]:
    """A map and one of its edges to a server workload (the intent to drop)."""
    found = {(c, t): edge(c, t) for c, t in draw(st.lists(st.tuples(workloads, targets), max_size=10))}
    dropped = edge(draw(workloads), draw(workloads))
    found[dropped.key] = dropped
    return list(found.values()), dropped


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(maps(), st.sampled_from(sorted(VERSIONS)))
def test_dropping_one_intent_denies_exactly_that_edge(case: tuple[list[Edge], Edge], version: str) -> None:
    edges, dropped = case
    protected = protected_services(edges, version=version)
    assert round_trip(client_intents(edges, version=version) + protected, edges).denials == ()

    without_intent = client_intents([e for e in edges if e != dropped], version=version)
    assert denied(round_trip(without_intent + protected, edges)) == [(dropped.client, dropped.target)]
    # Otterize's default: with no ProtectedService, the server is closed only if another client
    # still names it in its intents
    still_named = any(e.target == dropped.target and e != dropped for e in edges)
    expected = [(dropped.client, dropped.target)] if still_named else []
    assert denied(round_trip(without_intent, edges)) == expected


# --------------------------------------------------------------------------- CLI


def test_export_protect(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, stand_in_mapper(SMALL_MAP[:2]), "export", "--protect")
    assert (status, err) == (0, "")
    docs = list(yaml.safe_load_all(out))
    assert [d["kind"] for d in docs] == [
        "ClientIntents",
        "ClientIntents",
        "ProtectedService",
        "ProtectedService",
    ]
    assert docs[2:] == protected_services(SMALL_MAP[:2])
    assert docs[:2] == client_intents(SMALL_MAP[:2])

    status, out, err = run(capsys, stand_in_mapper(SMALL_MAP[:2]), "export")
    assert (status, err) == (0, "")
    assert "ProtectedService" not in out  # only when asked

    status, out, err = run(
        capsys, stand_in_mapper(SMALL_MAP[:2]), "export", "--protect", "--intents-version", "v1alpha3"
    )
    assert (status, err) == (0, "")
    assert {d["apiVersion"] for d in yaml.safe_load_all(out)} == {"k8s.otterize.com/v1alpha3"}


def test_export_protect_distinct_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    status, _, err = run(
        capsys, stand_in_mapper(SMALL_MAP[:2]), "export", "--protect", "--distinct-files", "-o", str(out_dir)
    )
    assert (status, err) == (0, "")
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "shop.cartservice-protectedservice.yaml",
        "shop.cartservice.yaml",
        "shop.frontend.yaml",
        "shop.redis-cart-protectedservice.yaml",
    ]


@pytest.mark.parametrize("fmt", ["networkpolicy", "json", "istio"])
def test_protect_with_another_format_is_a_usage_error(capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    status, out, err = run(capsys, stand_in_mapper(SMALL_MAP), "export", "--format", fmt, "--protect")
    assert (status, out) == (2, "")
    assert "--protect needs --format yaml" in err


def test_help_explains_protect(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["export", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert (
        "--protect also write a ProtectedService per server seen, so that each server admits only the "
        "clients its ClientIntents declare even when no intent names it (what `network-mapper check` "
        "needs to show what removing an intent breaks)"
    ) in out
