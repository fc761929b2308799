"""NetworkPolicy export with the cluster's facts and ``exact_ports``: exact documents (observed
TCP ports per client group, all ports for a client with an edge of unknown ports, hostNetwork
clients admitted by node address, pod labels from the facts), the default output unchanged, and
every document valid for kubernetes-validate (strict)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from agent.exports import edges_from_document, network_policies, yaml_documents
from agent.model import ClusterFacts, Edge, Method, NodeFacts, WorkloadFacts, WorkloadIdentity

DATA = Path(__file__).resolve().parents[3] / "tests" / "data" / "exports"
K8S_VERSION = kubernetes_validate.latest_version()
T0 = 1764296106.918878
NS_LABEL = "kubernetes.io/metadata.name"
MANAGED = {"app.kubernetes.io/managed-by": "network-mapper"}


def deploy(name: str, ns: str = "shop", kind: str = "Deployment") -> WorkloadIdentity:
    return WorkloadIdentity(ns, name, kind)


def edge(client: WorkloadIdentity, target: Any, ports: tuple[int, ...] = ()) -> Edge:
    return Edge(client, target, T0, T0 + 1, frozenset({Method.TCP}), ports=ports)


def app(name: str) -> dict[str, Any]:
    return {"podSelector": {"matchLabels": {"app.kubernetes.io/name": name}}}


def tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": p} for p in ports]


def valid(policies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for policy in policies:
        kubernetes_validate.validate(policy, K8S_VERSION, strict=True)
    return policies


CART = deploy("cartservice")
EDGES = [
    edge(deploy("frontend"), CART, (7070,)),
    edge(deploy("checkoutservice"), CART, (7070, 8080)),
    edge(deploy("recommendationservice"), CART, (7070,)),
    edge(deploy("report", "batch", "CronJob"), CART),  # seen only through DNS: ports unknown
]


def test_exact_ports_list_each_client_groups_observed_ports() -> None:
    (policy,) = valid(network_policies(EDGES, exact_ports=True))
    assert policy["spec"]["ingress"] == [
        # a client with an edge of unknown ports keeps every port: nothing observed is denied
        {
            "from": [
                {
                    "namespaceSelector": {"matchLabels": {NS_LABEL: "batch"}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "report"}},
                }
            ]
        },
        {"from": [app("frontend"), app("recommendationservice")], "ports": tcp(7070)},
        {"from": [app("checkoutservice")], "ports": tcp(7070, 8080)},
    ]


def test_a_client_with_one_edge_of_unknown_ports_keeps_all_ports() -> None:
    twice = [edge(deploy("frontend"), CART, (7070,)), edge(deploy("frontend"), CART)]
    (policy,) = network_policies(twice, exact_ports=True)
    assert policy["spec"]["ingress"] == [{"from": [app("frontend")]}]
    merged = [edge(deploy("frontend"), CART, (7070,)), edge(deploy("frontend"), CART, (9555,))]
    assert network_policies(merged, exact_ports=True)[0]["spec"]["ingress"] == [
        {"from": [app("frontend")], "ports": tcp(7070, 9555)}
    ]


def test_without_exact_ports_the_output_is_the_old_one() -> None:
    (policy,) = network_policies(EDGES)
    assert policy["spec"]["ingress"] == [
        {
            "from": [
                {
                    "namespaceSelector": {"matchLabels": {NS_LABEL: "batch"}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "report"}},
                },
                app("checkoutservice"),
                app("frontend"),
                app("recommendationservice"),
            ]
        }
    ]


def test_demo_output_is_byte_identical_with_empty_facts_and_default_flags() -> None:
    demo = edges_from_document(json.loads((DATA / "demo-edges.json").read_text(encoding="utf-8")))
    expected = yaml_documents(network_policies(demo))
    assert yaml_documents(network_policies(demo, facts=ClusterFacts())) == expected
    assert yaml_documents(network_policies(demo, exact_ports=False, egress=False)) == expected
    # the demo's edges carry no ports: exact ports change nothing
    assert yaml_documents(network_policies(demo, exact_ports=True)) == expected


NODE_AGENT = deploy("node-agent", "monitoring", "DaemonSet")
FACTS = ClusterFacts(
    workloads=(
        WorkloadFacts(CART, (("app", "cart"), ("tier", "backend"))),
        WorkloadFacts(deploy("frontend"), (("app", "frontend"),)),
        WorkloadFacts(NODE_AGENT, (("app", "node-agent"),), host_network=True, ips=("10.0.0.1",)),
    ),
    nodes=(NodeFacts("node-b", ("10.0.0.2", "fd00::2")), NodeFacts("node-a", ("10.0.0.1", "node-a.local"))),
)


def test_host_network_clients_are_admitted_by_node_address_and_labels_come_from_facts() -> None:
    edges = [edge(deploy("frontend"), CART, (7070,)), edge(NODE_AGENT, CART, (9090,))]
    (policy,) = valid(network_policies(edges, facts=FACTS))
    assert policy == {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": "access-to-cartservice-from-observed-clients",
            "namespace": "shop",
            "labels": MANAGED,
        },
        "spec": {
            "podSelector": {"matchLabels": {"app": "cart", "tier": "backend"}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        # a pod selector never matches host-network traffic: every node address
                        # (a name that is not an address is left out)
                        {"ipBlock": {"cidr": "10.0.0.1/32"}},
                        {"ipBlock": {"cidr": "10.0.0.2/32"}},
                        {"ipBlock": {"cidr": "fd00::2/128"}},
                        {"podSelector": {"matchLabels": {"app": "frontend"}}},
                    ]
                }
            ],
        },
    }
    (exact,) = valid(network_policies(edges, facts=FACTS, exact_ports=True))
    assert exact["spec"]["ingress"] == [
        {"from": [{"podSelector": {"matchLabels": {"app": "frontend"}}}], "ports": tcp(7070)},
        {
            "from": [
                {"ipBlock": {"cidr": "10.0.0.1/32"}},
                {"ipBlock": {"cidr": "10.0.0.2/32"}},
                {"ipBlock": {"cidr": "fd00::2/128"}},
            ],
            "ports": tcp(9090),
        },
    ]


def test_labels_of_fills_in_for_workloads_the_facts_do_not_label() -> None:
    edges = [edge(deploy("checkoutservice"), CART)]
    (policy,) = network_policies(edges, lambda w: {"app": f"{w.name}-from-intents"}, facts=FACTS)
    assert policy["spec"]["podSelector"] == {"matchLabels": {"app": "cart", "tier": "backend"}}
    assert policy["spec"]["ingress"] == [
        {"from": [{"podSelector": {"matchLabels": {"app": "checkoutservice-from-intents"}}}]}
    ]


def test_an_identity_without_kind_finds_its_facts_by_name_only_when_one_kind_has_it() -> None:
    kindless = WorkloadIdentity("shop", "cartservice", "")
    (policy,) = network_policies([edge(deploy("frontend"), kindless)], facts=FACTS)
    assert policy["spec"]["podSelector"] == {"matchLabels": {"app": "cart", "tier": "backend"}}
    # a kind the facts do not know is another workload: the default labels, not cartservice's
    other = deploy("cartservice", kind="StatefulSet")
    (policy,) = network_policies([edge(deploy("frontend"), other)], facts=FACTS)
    assert policy["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "cartservice"}}


def test_kubernetes_validate_rejects_a_malformed_port() -> None:
    (policy,) = network_policies(EDGES, exact_ports=True)
    policy["spec"]["ingress"][1]["ports"][0]["port"] = {"number": 7070}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(policy, K8S_VERSION, strict=True)
