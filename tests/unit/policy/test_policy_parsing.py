"""Bad policy files: every kind of problem raises PolicyError naming the file, the 1-based document
number and the field path, and nothing else ever escapes (hypothesis fuzz on YAML-ish documents and
on mutations of the fixtures); good files parse to what they say."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.model import ClusterFacts, Edge, InternetTarget, WorkloadIdentity
from agent.policy import PolicyError, check, load_policies

DATA = Path(__file__).resolve().parents[3] / "tests" / "data" / "policies"
FIXTURES = sorted(DATA.glob("*.yaml"))

NP = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np, namespace: shop}
spec:
"""
CI2 = """apiVersion: k8s.otterize.com/v2beta1
kind: ClientIntents
metadata: {name: ci, namespace: shop}
spec:
"""
CI1 = CI2.replace("v2beta1", "v1alpha3")
OK = NP + "  podSelector: {}\n"


def spec(head: str, body: str) -> str:
    return head + "".join(f"  {line}\n" for line in body.strip("\n").splitlines())


BAD = [
    ("a: [1, 2\n", "document 1: YAML error at line 2"),
    (OK + "---\n" + OK + "---\nkey: : x\n", "document 3: YAML error at line"),
    ("when: 2001-02-30\n", "document 1: YAML error"),
    ("- a\n- b\n", "document 1: must be a mapping, not a list"),
    (
        "---\n---\n---\n" + OK.replace("NetworkPolicy", "Deployment"),
        "document 3: kind: unknown kind 'Deployment'",
    ),
    ("apiVersion: v1\nmetadata: {name: x}\n", "document 1: kind: required field is missing"),
    (OK.replace("networking.k8s.io/v1", "networking.k8s.io/v1beta1"), "(NetworkPolicy shop/np): apiVersion:"),
    (
        CI2.replace("k8s.otterize.com/v2beta1", "networking.k8s.io/v1") + "  targets: []\n",
        "ClientIntents shop/ci): apiVersion",
    ),
    (
        OK.replace("metadata: {name: np, namespace: shop}", "metadata: {namespace: shop}"),
        "metadata.name: required field is missing",
    ),
    (
        OK.replace("metadata: {name: np, namespace: shop}", "metadata: {name: 7}"),
        "metadata.name: must be a string, not a number",
    ),
    (NP, "(NetworkPolicy shop/np): spec: must be a mapping, not null"),
    (spec(NP, "podselector: {}"), "spec.podselector: unknown field"),
    (spec(NP, "ingress: {}"), "spec.ingress: must be a list, not a mapping"),
    (spec(NP, "policyTypes: [Both]"), "spec.policyTypes[0]: 'Both' is not Ingress or Egress"),
    (
        spec(NP, "ingress: [{ports: [{port: 80}, {port: 70000}]}]"),
        "spec.ingress[0].ports[1].port: 70000 is not a port number",
    ),
    (
        spec(NP, "ingress: [{ports: [{port: HTTP_1}]}]"),
        "spec.ingress[0].ports[0].port: 'HTTP_1' is not a port number or a port name",
    ),
    (
        spec(NP, "ingress: [{ports: [{port: true}]}]"),
        "spec.ingress[0].ports[0].port: True is not a port number",
    ),
    (
        spec(NP, "egress: [{ports: [{endPort: 90}]}]"),
        "spec.egress[0].ports[0].endPort: needs a numbered port",
    ),
    (
        spec(NP, "egress: [{ports: [{port: 90, endPort: 80}]}]"),
        "spec.egress[0].ports[0].endPort: 80 is less than port 90",
    ),
    (
        spec(NP, "egress: [{ports: [{port: 53, protocol: ICMP}]}]"),
        "spec.egress[0].ports[0].protocol: 'ICMP' is not one of",
    ),
    (
        spec(NP, "egress: [{to: [{ipBlock: {cidr: 10.0.0.0/33}}]}]"),
        "spec.egress[0].to[0].ipBlock.cidr: '10.0.0.0/33' is not a CIDR",
    ),
    (
        spec(NP, "egress: [{to: [{ipBlock: {cidr: 10.0.0.1}}]}]"),
        "spec.egress[0].to[0].ipBlock.cidr: '10.0.0.1' is not a CIDR",
    ),
    (
        spec(NP, "egress: [{to: [{ipBlock: {cidr: 10.0.0.0/24, except: [10.1.0.0/24]}}]}]"),
        "ipBlock.except[0]: '10.1.0.0/24' is not a strict subset",
    ),
    (
        spec(NP, "egress: [{to: [{ipBlock: {except: []}}]}]"),
        "spec.egress[0].to[0].ipBlock.cidr: required field is missing",
    ),
    (
        spec(NP, "ingress: [{from: [{}]}]"),
        "spec.ingress[0].from[0]: must have a podSelector, a namespaceSelector or an ipBlock",
    ),
    (
        spec(NP, "ingress: [{from: [{podSelector: {}, ipBlock: {cidr: 1.2.3.0/24}}]}]"),
        "spec.ingress[0].from[0]: ipBlock cannot be combined",
    ),
    (
        spec(NP, "podSelector: {matchExpressions: [{key: a, operator: Contains, values: [x]}]}"),
        "spec.podSelector.matchExpressions[0].operator: 'Contains' is not one of",
    ),
    (
        spec(NP, "podSelector: {matchExpressions: [{key: a, operator: In}]}"),
        "spec.podSelector.matchExpressions[0].values: must not be empty for operator In",
    ),
    (
        spec(NP, "podSelector: {matchExpressions: [{key: a, operator: Exists, values: [x]}]}"),
        "matchExpressions[0].values: must be empty for operator Exists",
    ),
    (
        spec(NP, "podSelector: {matchExpressions: [{operator: Exists}]}"),
        "spec.podSelector.matchExpressions[0].key: required field is missing",
    ),
    (
        spec(NP, "podSelector: {matchLabels: {app: 1}}"),
        "spec.podSelector.matchLabels.app: must be a string, not a number",
    ),
    (
        spec(NP, "ingress: [{from: [{namespaceSelector: {matchLabels: []}}]}]"),
        "spec.ingress[0].from[0].namespaceSelector.matchLabels: must be a mapping",
    ),
    (spec(CI2, "targets: []"), "(ClientIntents shop/ci): spec.workload: must be a mapping, not null"),
    (spec(CI2, "workload: {name: c}\ntargets: {}"), "spec.targets: must be a list, not a mapping"),
    (spec(CI2, "workload: {}\ntargets: []"), "spec.workload.name: required field is missing"),
    (
        spec(CI2, "workload: {name: c}\ntargets: [{kubernetes: {name: a}, service: {name: b}}]"),
        "spec.targets[0]: must have exactly one of",
    ),
    (spec(CI2, "workload: {name: c}\ntargets: [{pod: {name: a}}]"), "spec.targets[0].pod: unknown field"),
    (
        spec(CI2, "workload: {name: c}\ntargets: [{kubernetes: {kind: Deployment}}]"),
        "spec.targets[0].kubernetes.name: required field is missing",
    ),
    (
        spec(
            CI2,
            "workload: {name: c}\ntargets: [{kubernetes: {name: a, http: [{path: /x, methods: [FETCH]}]}}]",
        ),
        "spec.targets[0].kubernetes.http[0].methods[0]: 'FETCH' is not one of",
    ),
    (
        spec(
            CI2,
            "workload: {name: c}\ntargets: [{kafka: {name: k.ns, topics: [{name: t, operations: [eat]}]}}]",
        ),
        "spec.targets[0].kafka.topics[0].operations[0]: 'eat' is not a Kafka operation",
    ),
    (
        spec(CI2, "workload: {name: c}\ntargets: [{kafka: {name: k.ns, topics: [{operations: [all]}]}}]"),
        "spec.targets[0].kafka.topics[0].name: required field is missing",
    ),
    (
        spec(CI1, "service: {name: c}\ncalls: [{name: a, type: grpc}]"),
        "spec.calls[0].type: 'grpc' is not one of",
    ),
    (spec(CI1, "service: {name: c}\ncalls: [{type: http}]"), "spec.calls[0].name: required field is missing"),
    (
        spec(CI1, "service: {name: c}\ncalls: [{name: a, HTTPResources: [{path: 5, methods: [GET]}]}]"),
        "spec.calls[0].HTTPResources[0].path: must be a string",
    ),
    (spec(CI1, "service: {name: c}"), "spec.calls: must be a list, not null"),
    (
        "apiVersion: v1\nkind: List\nitems:\n- "
        + OK.replace("\n", "\n  ").rstrip()
        + "\n- {kind: Secret, apiVersion: v1, metadata: {name: s}}\n",
        "document 1: items[1].kind: unknown kind 'Secret'",
    ),
    ("apiVersion: v1\nkind: List\nitems: {a: b}\n", "document 1: items: must be a list"),
    (
        "apiVersion: k8s.otterize.com/v2beta1\nkind: ProtectedService\nmetadata: {name: p}\nspec: {}\n",
        "(ProtectedService default/p): spec.name: required field is missing",
    ),
    (
        "apiVersion: k8s.otterize.com/v9\nkind: ProtectedService\nmetadata: {name: p}\nspec: {name: x}\n",
        "(ProtectedService default/p): apiVersion: 'k8s.otterize.com/v9' is not an apiVersion",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD, ids=[e for _, e in BAD])
def test_bad_documents_name_file_document_and_field(text: str, expected: str) -> None:
    with pytest.raises(PolicyError) as raised:
        load_policies([("bad.yaml", text)])
    message = str(raised.value)
    assert message.startswith("bad.yaml: document "), message
    assert expected in message, message


def test_good_files_parse_and_empty_documents_are_skipped_but_counted() -> None:
    policies = load_policies((path.name, path.read_text(encoding="utf-8")) for path in FIXTURES)
    assert len(policies.network_policies) == 10
    assert len(policies.client_intents) == 5  # with a ProtectedService
    text = "---\n---\n# nothing\n---\n" + OK
    (only,) = load_policies([("x.yaml", text)]).network_policies
    assert (only.ref.document, only.ref.source, only.ref.namespace, only.ref.name) == (
        3,
        "x.yaml",
        "shop",
        "np",
    )
    assert only.ingress_isolates and not only.egress_isolates
    # a List's items keep the List's document number; a missing namespace is "default"
    listed = load_policies([("l.yaml", (DATA / "named-port.yaml").read_text(encoding="utf-8"))])
    assert [(p.ref.document, p.ref.namespace) for p in listed.network_policies] == [(1, "default")]
    assert load_policies([("empty.yaml", "")]).network_policies == ()


def test_policy_types_default_to_ingress_plus_egress_when_egress_rules_exist() -> None:
    (policy,) = load_policies([("x", spec(NP, "egress: [{}]"))]).network_policies
    assert policy.ingress_isolates and policy.egress_isolates
    (policy,) = load_policies([("x", spec(NP, "egress: []"))]).network_policies
    assert policy.ingress_isolates and not policy.egress_isolates


# --------------------------------------------------------------------------- fuzz

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 70000),
    st.sampled_from(
        ["", "TCP", "In", "Ingress", "Egress", "10.0.0.0/8", "http", "*", "ALL", "a.b", "x" * 70]
    ),
    st.text(max_size=8),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(
                [
                    "kind",
                    "apiVersion",
                    "metadata",
                    "spec",
                    "name",
                    "podSelector",
                    "ingress",
                    "egress",
                    "from",
                    "to",
                ]
                + [
                    "ports",
                    "port",
                    "ipBlock",
                    "cidr",
                    "except",
                    "matchLabels",
                    "targets",
                    "calls",
                    "items",
                    "x",
                ]
            ),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=12,
)
FIXTURE_DOCUMENTS = [
    d for path in FIXTURES for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d
]


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _paths(item, (*path, i))
    return found


def _replaced(document: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    result = copy.deepcopy(document)
    parent = result
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = new
    return result


def _must_not_crash(text: str) -> None:
    try:
        policies = load_policies([("fuzz.yaml", text)])
    except PolicyError as error:
        assert str(error).startswith("fuzz.yaml: document ")
        return
    client, server = WorkloadIdentity("default", "db"), WorkloadIdentity("shop", "paymentservice")
    edges = [Edge(client, server, 0, 0, ports=(6379,)), Edge(client, InternetTarget("", ("10.0.0.1",)), 0, 0)]
    check(edges, policies, ClusterFacts())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(values, max_size=3))
def test_fuzz_yaml_documents_raise_only_policy_errors(documents: list[Any]) -> None:
    _must_not_crash(yaml.safe_dump_all(documents))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_mutated_fixtures_raise_only_policy_errors(data: st.DataObject) -> None:
    document = data.draw(st.sampled_from(FIXTURE_DOCUMENTS))
    path = data.draw(st.sampled_from(_paths(document)))
    _must_not_crash(yaml.safe_dump(_replaced(document, path, data.draw(values))))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab: -[]{}\n'\"&*!%#|>,?@`\t")), max_size=40))
def test_fuzz_raw_text_raises_only_policy_errors(text: str) -> None:
    _must_not_crash(text)
