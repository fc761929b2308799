"""NetworkPolicy export: exact documents, naming, selectors, and every policy validates with
kubernetes-validate (the newest Kubernetes schema it ships, strict)."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.exports import edges_from_document, network_policies, yaml_documents
from agent.exports.networkpolicy import dns_label, policy_name
from agent.model import AwsTarget, Edge, InternetTarget, Method, WorkloadIdentity

DATA = Path(__file__).resolve().parents[3] / "tests" / "data" / "exports"
K8S_VERSION = kubernetes_validate.latest_version()
T0 = 1764296106.918878
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def deploy(name: str, ns: str = "shop", kind: str = "Deployment") -> WorkloadIdentity:
    return WorkloadIdentity(ns, name, kind)


def edge(client: WorkloadIdentity, target: Any) -> Edge:
    return Edge(client, target, T0, T0 + 1, frozenset({Method.TCP}))


def assert_valid(policy: dict[str, Any]) -> None:
    kubernetes_validate.validate(policy, K8S_VERSION, strict=True)
    name = policy["metadata"]["name"]
    assert len(name) <= 63 and DNS_LABEL.match(name), name
    selectors = [policy["spec"]["podSelector"]] + [
        s for peer in policy["spec"]["ingress"][0]["from"] for s in peer.values()
    ]
    for selector in selectors:
        assert selector["matchLabels"], "never an empty (select-everything) selector"
        for value in selector["matchLabels"].values():
            assert len(value) <= 63 and LABEL_VALUE.match(value), value


@pytest.fixture(scope="module")
def demo_edges() -> list[Edge]:
    return edges_from_document(json.loads((DATA / "demo-edges.json").read_text(encoding="utf-8")))


def test_exact_policy_with_cross_namespace_client() -> None:
    edges = [
        edge(deploy("frontend"), deploy("cartservice")),
        edge(deploy("checkoutservice"), deploy("cartservice")),
        edge(deploy("report", "batch", "CronJob"), deploy("cartservice")),
        edge(deploy("frontend"), InternetTarget("example.com", (), 443)),
        edge(deploy("frontend"), AwsTarget("*")),
        edge(deploy("frontend"), WorkloadIdentity("default", "kubernetes", "Service")),
    ]
    assert network_policies(edges) == [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {
                "name": "access-to-cartservice-from-observed-clients",
                "namespace": "shop",
                "labels": {"app.kubernetes.io/managed-by": "network-mapper"},
            },
            "spec": {
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "cartservice"}},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {"kubernetes.io/metadata.name": "batch"}
                                },
                                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "report"}},
                            },
                            {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "checkoutservice"}}},
                            {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "frontend"}}},
                        ]
                    }
                ],
            },
        }
    ]


def test_every_demo_policy_validates(demo_edges: list[Edge]) -> None:
    policies = network_policies(demo_edges)
    servers = [p["metadata"]["name"].removeprefix("access-to-").split("-from-")[0] for p in policies]
    assert servers == [
        # shop (namespace of the demo), then streaming (kafka)
        "adservice",
        "cartservice",
        "checkoutservice",
        "currencyservice",
        "emailservice",
        "frontend",
        "paymentservice",
        "productcatalogservice",
        "recommendationservice",
        "redis-cart",
        "shippingservice",
        "kafka",
    ]
    for policy in policies:
        assert_valid(policy)
    for policy in yaml.safe_load_all(yaml_documents(policies)):
        assert_valid(policy)


def test_kubernetes_validate_catches_a_wrong_field(demo_edges: list[Edge]) -> None:
    policy = network_policies(demo_edges)[0]
    policy["spec"]["ingress"][0]["from"][0]["podSelectors"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(policy, K8S_VERSION, strict=True)


def test_labels_of_selects_real_pod_labels() -> None:
    labels = {
        deploy("frontend"): {"app": "frontend", "tier": "web"},
        deploy("cartservice"): {"app": "cartservice"},
    }

    def labels_of(w: WorkloadIdentity) -> Mapping[str, str]:
        return labels.get(w, {})

    edges = [edge(deploy("frontend"), deploy("cartservice")), edge(deploy("nolabels"), deploy("cartservice"))]
    (policy,) = network_policies(edges, labels_of)
    assert policy["spec"]["podSelector"] == {"matchLabels": {"app": "cartservice"}}
    assert policy["spec"]["ingress"][0]["from"] == [
        {"podSelector": {"matchLabels": {"app": "frontend", "tier": "web"}}},
        # a client without labels: admitted by its namespace, never by an empty selector
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}}},
    ]
    assert_valid(policy)
    # a server without labels gets no policy (it would select every pod of its namespace)
    assert network_policies([edge(deploy("frontend"), deploy("nolabels"))], labels_of) == []


def test_long_and_dotted_names_stay_valid_and_distinct() -> None:
    long_a, long_b = "a" * 55 + "-one", "a" * 55 + "-two"  # valid label values, too long for a name
    dotted = "api.v2"  # Deployment names may be DNS subdomains
    edges = [edge(deploy("c"), deploy(n)) for n in (long_a, long_b, dotted)]
    policies = network_policies(edges)
    names = [p["metadata"]["name"] for p in policies]
    assert len(set(names)) == 3
    assert "access-to-api-v2-from-observed-clients" in names
    assert all(len(n) == 63 and n.startswith("access-to-aaaa") for n in names if "api-v2" not in n)
    for policy in policies:
        assert_valid(policy)
    assert dns_label("Ünïcode..Name-") == "n-code-name"


def test_names_that_cannot_be_label_values_get_no_default_selector() -> None:
    too_long = "b" * 64
    edges = [edge(deploy("c"), deploy(too_long)), edge(deploy(too_long), deploy("s"))]
    (policy,) = network_policies(edges)  # no selector for the server: no policy
    assert policy["spec"]["ingress"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}}}
    ]
    assert network_policies(edges, lambda w: {"app": w.name[:63]})[0]["metadata"]["name"] == policy_name(
        deploy(too_long)
    )


def test_same_name_two_kinds_get_distinct_policies() -> None:
    edges = [edge(deploy("c"), deploy("db")), edge(deploy("c"), deploy("db", kind="StatefulSet"))]
    names = [p["metadata"]["name"] for p in network_policies(edges)]
    assert names == [
        "access-to-db-deployment-from-observed-clients",
        "access-to-db-statefulset-from-observed-clients",
    ]


def test_same_edges_in_any_order_give_identical_output(demo_edges: list[Edge]) -> None:
    expected = yaml_documents(network_policies(demo_edges))
    for seed in range(5):
        shuffled = list(demo_edges)
        random.Random(seed).shuffle(shuffled)
        assert yaml_documents(network_policies(shuffled)) == expected


names = st.from_regex(r"\A[a-z]([a-z0-9.-]{0,70}[a-z0-9])?\Z")
identities = st.builds(
    WorkloadIdentity,
    namespace=st.sampled_from(["shop", "batch"]),
    name=names,
    kind=st.sampled_from(["", "Deployment", "StatefulSet", "CronJob"]),
)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.tuples(identities, identities), max_size=8))
def test_any_edges_give_valid_policies(pairs: list[tuple[WorkloadIdentity, WorkloadIdentity]]) -> None:
    edges = [edge(c, s) for c, s in pairs]
    policies = network_policies(edges)
    for policy in policies:
        assert_valid(policy)
    assert len({(p["metadata"]["namespace"], p["metadata"]["name"]) for p in policies}) == len(policies)
    assert network_policies(reversed(edges)) == policies
