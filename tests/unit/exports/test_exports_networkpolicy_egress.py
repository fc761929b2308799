"""Egress NetworkPolicies (``network_policies(..., egress=True)``): an exact document (DNS to
kube-dns always, in-cluster targets by pod selector or node address, Internet targets by
``ipBlock`` on their port, targets of unknown address on their port only), and a property: every
edge of a random map is admitted structurally — its client appears among its server's ingress
peers on its ports, and its target in its client's egress rules — with every document valid for
kubernetes-validate (strict)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

import kubernetes_validate
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.exports import network_policies
from agent.exports.networkpolicy import default_labels
from agent.model import (
    AwsTarget,
    ClusterFacts,
    Edge,
    InternetTarget,
    Method,
    NodeFacts,
    Target,
    WorkloadFacts,
    WorkloadIdentity,
)

K8S_VERSION = kubernetes_validate.latest_version()
T0 = 1764296106.918878
NS_LABEL = "kubernetes.io/metadata.name"
DNS_RULE = {
    "to": [
        {
            "namespaceSelector": {"matchLabels": {NS_LABEL: "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ],
    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
}


def deploy(name: str, ns: str = "shop", kind: str = "Deployment") -> WorkloadIdentity:
    return WorkloadIdentity(ns, name, kind)


def edge(client: WorkloadIdentity, target: Target, ports: tuple[int, ...] = ()) -> Edge:
    return Edge(client, target, T0, T0 + 1, frozenset({Method.TCP}), ports=ports)


def tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": p} for p in ports]


FRONTEND = deploy("frontend")
NODE_AGENT = deploy("node-agent", "kube-system", "DaemonSet")
EDGES = [
    edge(FRONTEND, deploy("cartservice"), (7070,)),
    edge(FRONTEND, deploy("redis", "data", "StatefulSet")),  # seen only through DNS
    edge(FRONTEND, InternetTarget("api.example.com", ("93.184.216.34", "2606:2800:220:1::"), 443)),
    edge(FRONTEND, InternetTarget("cdn.example.net", (), 443)),  # name only: its IPs are unknown
    edge(FRONTEND, WorkloadIdentity("default", "kubernetes", "Service"), (443,)),
    edge(FRONTEND, NODE_AGENT, (9100,)),
    edge(NODE_AGENT, deploy("cartservice"), (7070,)),  # a host-network client: no egress policy
]
FACTS = ClusterFacts(
    workloads=(WorkloadFacts(NODE_AGENT, (("app", "node-agent"),), host_network=True),),
    nodes=(NodeFacts("node-a", ("10.0.0.1", "fd00::1")),),
)


def egress_of(policies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in policies if p["spec"]["policyTypes"] == ["Egress"]]


def test_egress_policy_with_dns_workload_internet_and_unknown_address_targets() -> None:
    policies = network_policies(EDGES, facts=FACTS, egress=True, exact_ports=True)
    for policy in policies:
        kubernetes_validate.validate(policy, K8S_VERSION, strict=True)
    (policy,) = egress_of(policies)
    assert policy["metadata"] == {
        "name": "access-from-frontend-to-observed-servers",
        "namespace": "shop",
        "labels": {"app.kubernetes.io/managed-by": "network-mapper"},
    }
    assert policy["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "frontend"}}
    assert policy["spec"]["egress"] == [
        DNS_RULE,
        {  # ports unknown (DNS only): every port
            "to": [
                {
                    "namespaceSelector": {"matchLabels": {NS_LABEL: "data"}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "redis"}},
                }
            ]
        },
        {
            "to": [{"ipBlock": {"cidr": "2606:2800:220:1::/128"}}, {"ipBlock": {"cidr": "93.184.216.34/32"}}],
            "ports": tcp(443),
        },
        {
            "to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "cartservice"}}}],
            "ports": tcp(7070),
        },
        # the host-network target: by its nodes' addresses
        {
            "to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}, {"ipBlock": {"cidr": "fd00::1/128"}}],
            "ports": tcp(9100),
        },
        # cdn.example.net (no IPs) and the API server's Service (endpoints unknown): the port only
        {"ports": tcp(443)},
    ]


def test_without_exact_ports_in_cluster_targets_keep_every_port_but_internet_keeps_its_port() -> None:
    (policy,) = egress_of(network_policies(EDGES[:3], egress=True))
    assert policy["spec"]["egress"] == [
        DNS_RULE,
        {
            "to": [
                {
                    "namespaceSelector": {"matchLabels": {NS_LABEL: "data"}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "redis"}},
                },
                {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "cartservice"}}},
            ]
        },
        {
            "to": [{"ipBlock": {"cidr": "2606:2800:220:1::/128"}}, {"ipBlock": {"cidr": "93.184.216.34/32"}}],
            "ports": tcp(443),
        },
    ]


def test_aws_clients_may_send_dns_anywhere_and_reach_aws_on_https() -> None:
    (policy,) = egress_of(network_policies([edge(FRONTEND, AwsTarget("arn:aws:s3:::bucket"))], egress=True))
    # the AWS-visibility webhook points the pod's DNS at the mapper's forwarder, not kube-dns
    assert policy["spec"]["egress"] == [{"ports": DNS_RULE["ports"]}, {"ports": tcp(443)}]


# --------------------------------------------------------------------------- the property

NODE_IPS = ("10.0.0.1", "10.0.0.2", "fd00::1")


def cidr(ip: str) -> str:
    address = ipaddress.ip_address(ip)
    return f"{address}/{address.max_prefixlen}"


class Cluster:
    """The test's own reading of the facts: what each pod carries, as Kubernetes sees it."""

    def __init__(self, facts: ClusterFacts) -> None:
        self.facts = {w.workload: w for w in facts.workloads}
        self.node_cidrs = {cidr(a) for n in facts.nodes for a in n.addresses}

    def labels(self, w: WorkloadIdentity) -> Mapping[str, str]:
        found = self.facts.get(w)
        return dict(found.labels) if found and found.labels else default_labels(w)

    def host_network(self, w: WorkloadIdentity) -> bool:
        found = self.facts.get(w)
        return bool(found and found.host_network)


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def peer_matches(peer: Mapping[str, Any], namespace: str, w: WorkloadIdentity, cluster: Cluster) -> bool:
    """Whether a NetworkPolicy peer (of a policy in ``namespace``) matches ``w``'s pods' traffic."""
    if "ipBlock" in peer:
        return cluster.host_network(w) and peer["ipBlock"]["cidr"] in cluster.node_cidrs
    if cluster.host_network(w):
        return False  # pod selectors never match host-network traffic
    if "namespaceSelector" in peer:
        in_namespace = selects(peer["namespaceSelector"], {NS_LABEL: w.namespace})
    else:
        in_namespace = w.namespace == namespace
    return in_namespace and ("podSelector" not in peer or selects(peer["podSelector"], cluster.labels(w)))


def ports_admitted(rule: Mapping[str, Any], ports: frozenset[int] | None) -> bool:
    """``ports``: those the traffic uses; None: unknown, so only a rule on every port admits it."""
    if "ports" not in rule:
        return True
    allowed = {p["port"] for p in rule["ports"] if p["protocol"] == "TCP"}
    return ports is not None and ports <= allowed


def traffic_ports(e: Edge) -> frozenset[int] | None:
    ports = set(e.ports)
    if isinstance(e.target, InternetTarget) and e.target.port:
        ports.add(e.target.port)
    if isinstance(e.target, AwsTarget) and not ports:
        ports.add(443)  # AWS's endpoints (and the mapper's AWS proxy) answer HTTPS only
    return frozenset(ports) or None


def selecting(policies: list[dict[str, Any]], kind: str, w: WorkloadIdentity, cluster: Cluster) -> list[Any]:
    """The policies isolating ``w``'s pods in that direction (none for host-network pods: CNIs
    leave them alone, as the exporters' docstrings say)."""
    if cluster.host_network(w):
        return []
    return [
        p
        for p in policies
        if kind in p["spec"]["policyTypes"]
        and p["metadata"]["namespace"] == w.namespace
        and selects(p["spec"]["podSelector"], cluster.labels(w))
    ]


def ingress_admits(policies: list[dict[str, Any]], e: Edge, cluster: Cluster) -> bool:
    server = e.target
    assert isinstance(server, WorkloadIdentity)
    isolating = selecting(policies, "Ingress", server, cluster)
    ports = traffic_ports(e)
    return not isolating or any(
        ports_admitted(rule, ports)
        and any(peer_matches(peer, server.namespace, e.client, cluster) for peer in rule["from"])
        for policy in isolating
        for rule in policy["spec"]["ingress"]
    )


def egress_admits(policies: list[dict[str, Any]], e: Edge, cluster: Cluster) -> bool:
    isolating = selecting(policies, "Egress", e.client, cluster)
    rules = [rule for p in isolating for rule in p["spec"]["egress"]]
    ports = traffic_ports(e)
    target = e.target

    def reached(peer_test: Any) -> bool:
        return any(
            ports_admitted(r, ports) and ("to" not in r or any(map(peer_test, r["to"]))) for r in rules
        )

    if not isolating:
        return True
    if isinstance(target, WorkloadIdentity) and target.kind != "Service":
        return reached(lambda peer: peer_matches(peer, e.client.namespace, target, cluster))
    if isinstance(target, InternetTarget) and target.ips:  # every address it may reach
        cidrs = [cidr(ip) for ip in target.ips]
        return all(reached(lambda peer, c=c: peer.get("ipBlock", {}).get("cidr") == c) for c in cidrs)
    return reached(lambda peer: False)  # no address known: only a rule without "to" admits it


namespaces = st.sampled_from(["shop", "batch"])
workloads = st.builds(
    WorkloadIdentity,
    namespace=namespaces,
    name=st.sampled_from(["a", "b", "c", "d"]),
    kind=st.sampled_from(["Deployment", "StatefulSet"]),
)
targets: st.SearchStrategy[Target] = st.one_of(
    workloads,
    st.builds(
        WorkloadIdentity,
        namespace=namespaces,
        name=st.sampled_from(["kubernetes", "db"]),
        kind=st.just("Service"),
    ),
    st.builds(
        InternetTarget,
        dns_name=st.sampled_from(["", "api.example.com"]),
        ips=st.lists(st.sampled_from(["93.184.216.34", "2606:2800:220:1::"]), unique=True).map(tuple),
        port=st.sampled_from([0, 443, 8443]),
    ),
    st.just(AwsTarget("*")),
)
edges_st = st.lists(
    st.builds(
        edge,
        client=workloads,
        target=targets,
        ports=st.lists(st.sampled_from([80, 443, 7070]), max_size=2, unique=True).map(
            lambda p: tuple(sorted(p))
        ),
    ),
    max_size=8,
)
facts_st = st.builds(
    ClusterFacts,
    workloads=st.lists(
        st.builds(
            WorkloadFacts,
            workload=workloads,
            # shared labels make one policy select several workloads' pods
            labels=st.sampled_from([(), (("tier", "web"),), (("app", "x"), ("tier", "web"))]),
            host_network=st.booleans(),
        ),
        unique_by=lambda f: f.workload,
        max_size=4,
    ).map(tuple),
    nodes=st.just((NodeFacts("node-a", NODE_IPS[:2]), NodeFacts("node-b", NODE_IPS[2:]))),
)


@settings(max_examples=40, deadline=None)
@given(edges_st, facts_st, st.booleans())
def test_every_edge_of_a_random_map_is_admitted(
    edges: list[Edge], facts: ClusterFacts, exact_ports: bool
) -> None:
    policies = network_policies(edges, facts=facts, exact_ports=exact_ports, egress=True)
    cluster = Cluster(facts)
    for e in edges:
        if isinstance(e.target, WorkloadIdentity) and e.target.kind != "Service":
            assert ingress_admits(policies, e, cluster), e
        assert egress_admits(policies, e, cluster), e
    for policy in policies:
        kubernetes_validate.validate(policy, K8S_VERSION, strict=True)


def test_the_property_checker_sees_a_denied_edge() -> None:
    """The checks above can fail: a policy missing a client, or on the wrong port, denies."""
    cluster = Cluster(FACTS)
    e = edge(FRONTEND, deploy("cartservice"), (7070,))
    policies = network_policies([e, edge(deploy("other"), deploy("cartservice"), (7070,))], exact_ports=True)
    assert ingress_admits(policies, e, cluster)
    policies[0]["spec"]["ingress"][0]["from"] = [
        p for p in policies[0]["spec"]["ingress"][0]["from"] if "frontend" not in repr(p)
    ]
    assert not ingress_admits(policies, e, cluster)
    (egress,) = egress_of(network_policies([e], egress=True, exact_ports=True))
    assert egress_admits([egress], e, cluster)
    egress["spec"]["egress"][1]["ports"] = tcp(8080)
    assert not egress_admits([egress], e, cluster)
