"""The sandbox's NetworkPolicy → nftables compiler (sandbox.netpolicy): which pods are isolated, which
sources, destinations and ports each chain admits, and which policies are refused with the field named.
The rules' real effect on connections is checked in tests/integration/test_sandbox_netpolicy.py."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.netpolicy import (
    Cluster,
    NetPolicyError,
    namespaces_from_api,
    parse_policy,
    pods_from_api,
    ruleset,
)

REJECT = ["meta l4proto tcp reject with tcp reset", "reject with icmp type admin-prohibited"]


def pod(ns: str, name: str, ip: str, labels: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    ports = extra.pop("ports", [])
    return {
        "metadata": {"namespace": ns, "name": name, "labels": labels or {"app": name}},
        "spec": {"containers": [{"name": "c", "ports": ports}], **extra},
        "status": {"podIP": ip, "phase": "Running"},
    }


PODS = [
    pod("shop", "web", "10.244.1.10", ports=[{"name": "http", "containerPort": 8080}]),
    pod("shop", "db", "10.244.1.11", {"app": "db", "tier": "data"}),
    pod("shop", "api", "10.244.1.12", ports=[{"name": "http", "containerPort": 9090}]),
    pod("ops", "monitor", "10.244.1.20", {"app": "monitor", "role": "scraper"}),
    pod("dev", "tool", "10.244.1.30", {"app": "tool", "role": "scraper"}),
    pod("kube-system", "sniffer", "10.244.0.1", {"app": "sniffer"}, hostNetwork=True),
]
NAMESPACES: list[dict[str, Any]] = [
    {"metadata": {"name": "shop"}},
    {"metadata": {"name": "ops", "labels": {"team": "ops"}}},
    {"metadata": {"name": "dev"}},
    {"metadata": {"name": "kube-system"}},
]


def policy(ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "NetworkPolicy", "metadata": {"namespace": ns, "name": name}, "spec": spec}


def compile_(*policies: dict[str, Any]) -> str:
    return ruleset(
        Cluster(
            namespaces_from_api(NAMESPACES),
            pods_from_api(PODS),
            tuple(parse_policy(p) for p in policies),
            ("10.244.0.1",),
        )
    )


def chains(text: str) -> dict[tuple[str, str], list[str]]:
    """(pod "ns/name", direction) → the chain's rules, from the ``# ns/name direction`` comments."""
    result: dict[tuple[str, str], list[str]] = {}
    current: list[str] | None = None
    lines = iter(text.splitlines())
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("# "):
            who, direction = stripped[2:].split()
            next(lines)  # "chain x {"
            current = result[(who, direction)] = []
        elif stripped == "}":
            current = None
        elif current is not None:
            current.append(stripped.split(" comment ")[0])
    return result


def test_no_policy_isolates_nothing_and_the_table_is_replaced_atomically() -> None:
    text = compile_()
    assert text.splitlines()[:3] == [
        "table ip nm_policy",
        "delete table ip nm_policy",
        "table ip nm_policy {",
    ]
    assert chains(text) == {}
    assert "vmap" not in text
    assert "ct state established,related accept" in text
    assert "ip saddr { 10.244.0.1 } accept" in text  # the node: kubelet probes, hostNetwork pods


def test_default_deny_ingress_isolates_every_pod_of_its_namespace_only() -> None:
    text = compile_(policy("shop", "deny", {"podSelector": {}}))
    assert chains(text) == {(f"shop/{n}", "ingress"): REJECT for n in ("api", "db", "web")}
    assert "ip daddr vmap { " in text and "10.244.1.10 : jump in_" in text


def test_default_deny_egress_with_policy_types() -> None:
    text = compile_(policy("shop", "deny", {"podSelector": {}, "policyTypes": ["Egress"]}))
    assert set(chains(text)) == {(f"shop/{n}", "egress") for n in ("api", "db", "web")}


def test_allow_from_a_namespace_by_label() -> None:
    spec = {
        "podSelector": {"matchLabels": {"app": "db"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "ops"}}}]}],
    }
    assert chains(compile_(policy("shop", "p", spec))) == {
        ("shop/db", "ingress"): ["ip saddr { 10.244.1.20 } accept", *REJECT]
    }


def test_namespace_and_pod_selector_in_one_peer_is_and_in_two_peers_or() -> None:
    both = {"namespaceSelector": {}, "podSelector": {"matchLabels": {"role": "scraper"}}}
    spec = {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [{"from": [both]}]}
    assert (
        chains(compile_(policy("shop", "p", spec)))[("shop/db", "ingress")][0]
        == "ip saddr { 10.244.1.20, 10.244.1.30 } accept"
    )
    either = [
        {"namespaceSelector": {"matchLabels": {"team": "ops"}}},
        {"podSelector": {"matchLabels": {"app": "web"}}},
    ]
    spec = {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [{"from": either}]}
    assert (
        chains(compile_(policy("shop", "p", spec)))[("shop/db", "ingress")][0]
        == "ip saddr { 10.244.1.10, 10.244.1.20 } accept"
    )


def test_pod_selector_alone_means_the_policys_namespace() -> None:
    spec = {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [{"from": [{"podSelector": {}}]}]}
    rules = chains(compile_(policy("shop", "p", spec)))[("shop/db", "ingress")]
    assert rules[0] == "ip saddr { 10.244.1.10, 10.244.1.11, 10.244.1.12 } accept"


def test_ip_block_with_except_and_ports_with_end_port_and_protocols() -> None:
    spec = {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [
            {
                "from": [{"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.1.20/32"]}}],
                "ports": [
                    {"port": 8000, "endPort": 8100},
                    {"protocol": "UDP", "port": 53},
                    {"protocol": "SCTP"},
                ],
            }
        ],
    }
    rules = chains(compile_(policy("shop", "p", spec)))[("shop/web", "ingress")]
    block = "ip saddr 10.244.0.0/16 ip saddr != { 10.244.1.20/32 }"
    assert rules == [
        f"{block} tcp dport 8000-8100 accept",
        f"{block} udp dport 53 accept",
        f"{block} meta l4proto sctp accept",
        *REJECT,
    ]


def test_named_port_resolves_on_each_destination_pod() -> None:
    spec = {"podSelector": {}, "ingress": [{"ports": [{"port": "http"}]}]}
    found = chains(compile_(policy("shop", "p", spec)))
    assert found[("shop/web", "ingress")] == ["tcp dport { 8080 } accept", *REJECT]
    assert found[("shop/api", "ingress")] == ["tcp dport { 9090 } accept", *REJECT]
    assert found[("shop/db", "ingress")] == REJECT  # no port of that name: the rule admits nothing


def test_egress_named_port_pairs_address_and_port() -> None:
    spec = {
        "podSelector": {"matchLabels": {"app": "monitor"}},
        "policyTypes": ["Egress"],
        "egress": [{"ports": [{"port": "http"}]}],
    }
    found = chains(compile_(policy("ops", "p", spec)))
    assert found == {
        ("ops/monitor", "egress"): [
            "ip daddr . tcp dport { 10.244.1.10 . 8080, 10.244.1.12 . 9090 } return",
            *REJECT,
        ]
    }


def test_egress_rule_peers_and_default_policy_types() -> None:
    # policyTypes left out: Ingress always, Egress because the spec has egress rules.
    spec = {
        "podSelector": {"matchLabels": {"app": "web"}},
        "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "db"}}}], "ports": [{"port": 5432}]}],
    }
    found = chains(compile_(policy("shop", "p", spec)))
    assert found[("shop/web", "egress")] == ["ip daddr { 10.244.1.11 } tcp dport 5432 return", *REJECT]
    assert found[("shop/web", "ingress")] == REJECT


def test_empty_rule_allows_everything_and_rules_of_policies_add_up() -> None:
    allow_all = policy("shop", "all", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{}]})
    deny = policy("shop", "deny", {"podSelector": {}})
    found = chains(compile_(allow_all, deny))
    assert found[("shop/web", "ingress")] == ["accept", *REJECT]
    assert found[("shop/db", "ingress")] == REJECT


def test_match_expressions() -> None:
    expressions = [
        {"key": "tier", "operator": "In", "values": ["data"]},
        {"key": "app", "operator": "NotIn", "values": ["web"]},
        {"key": "tier", "operator": "Exists"},
        {"key": "legacy", "operator": "DoesNotExist"},
    ]
    spec = {"podSelector": {"matchExpressions": expressions}}
    assert set(chains(compile_(policy("shop", "p", spec)))) == {("shop/db", "ingress")}


def test_host_network_pods_are_never_selected_nor_peers() -> None:
    spec: dict[str, Any] = {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}
    found = chains(compile_(policy("kube-system", "p", spec), policy("shop", "q", spec)))
    assert ("kube-system/sniffer", "ingress") not in found
    assert "10.244.0.1," not in found[("shop/web", "ingress")][0]


def test_peer_selecting_nothing_admits_nothing() -> None:
    spec = {"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "nobody"}}}]}]}
    assert chains(compile_(policy("shop", "p", spec)))[("shop/web", "ingress")] == REJECT


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (
            {"podSelector": {}, "ingress": [{"ports": [{"port": 80, "protocol": "ICMP"}]}]},
            "spec.ingress[0].ports[0].protocol",
        ),
        (
            {"podSelector": {}, "ingress": [{"ports": [{"port": "http", "endPort": 90}]}]},
            "spec.ingress[0].ports[0].endPort",
        ),
        (
            {"podSelector": {}, "egress": [{"to": [{"ipBlock": {"except": []}}]}]},
            "spec.egress[0].to[0].ipBlock",
        ),
        (
            {"podSelector": {"matchExpressions": [{"key": "a", "operator": "Has"}]}},
            "spec.podSelector.matchExpressions[0]",
        ),
        ({"podSelector": {}, "ingress": [{"from": [{}]}]}, "spec.ingress[0].from[0]"),
        ({"podSelector": {}, "policyTypes": ["Sideways"]}, "spec.policyTypes"),
    ],
)
def test_bad_policies_name_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(NetPolicyError) as caught:
        parse_policy(policy("shop", "bad", spec))
    assert str(caught.value).startswith(f"NetworkPolicy shop/bad: {field}:")


def test_api_objects() -> None:
    pods = pods_from_api(
        [
            *PODS,
            pod("shop", "pending", ""),
            {**pod("shop", "done", "10.244.1.99"), "status": {"podIP": "10.244.1.99", "phase": "Succeeded"}},
        ]
    )
    assert [p.name for p in pods] == ["tool", "sniffer", "monitor", "api", "db", "web"]
    assert pods[-1].ports == (("http", 8080, "TCP"),)
    ops = namespaces_from_api(NAMESPACES)[2]
    assert (ops.name, dict(ops.labels)) == ("ops", {"kubernetes.io/metadata.name": "ops", "team": "ops"})
