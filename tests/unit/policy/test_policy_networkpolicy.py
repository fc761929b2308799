"""NetworkPolicy verdicts on the Kubernetes documentation's examples
(https://kubernetes.io/docs/concepts/services-networking/network-policies/), each with the verdict
Kubernetes gives: default deny/allow all for ingress and egress, the ``test-network-policy``
resource example (ipBlock with except, namespaceSelector, podSelector, port 6379, egress to
10.0.0.0/24:5978), one peer with both selectors (AND) against two peers (OR), ``endPort`` ranges,
named ports and matchExpressions; and hostNetwork clients, matched by their addresses only."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.model import (
    ClusterFacts,
    Edge,
    InternetTarget,
    NamedPort,
    NamespaceFacts,
    NodeFacts,
    Target,
    WorkloadFacts,
    WorkloadIdentity,
)
from agent.policy import PolicySet, check, load_policies

DATA = Path(__file__).resolve().parents[3] / "tests" / "data" / "policies"
T0 = 1_764_296_106.0


def load(*names: str) -> PolicySet:
    return load_policies((name, (DATA / name).read_text(encoding="utf-8")) for name in names)


def wl(name: str, ns: str = "default") -> WorkloadIdentity:
    return WorkloadIdentity(ns, name, "Deployment")


def ns_facts(name: str, **labels: str) -> NamespaceFacts:
    return NamespaceFacts(name, tuple(sorted({"kubernetes.io/metadata.name": name, **labels}.items())))


def w_facts(
    name: str, ns: str = "default", ports: tuple[NamedPort, ...] = (), **labels: str
) -> WorkloadFacts:
    return WorkloadFacts(wl(name, ns), tuple(sorted(labels.items())), ports)


def host(name: str, *ips: str) -> WorkloadFacts:
    return WorkloadFacts(wl(name, "kube-system"), (("app", name),), host_network=True, ips=ips)


FACTS = ClusterFacts(
    namespaces=(
        ns_facts("default"),
        ns_facts("myproject-ns", project="myproject"),
        ns_facts("alice-ns", user="alice"),
        ns_facts("other"),
    ),
    workloads=(
        w_facts("db", role="db"),
        w_facts("cache", role="cache"),
        w_facts("frontend", role="frontend"),
        w_facts("frontend", "other", role="frontend"),
        w_facts("anything", "myproject-ns", role="whatever"),
        w_facts("client", role="client"),
        w_facts("client", "alice-ns", role="client"),
        w_facts("other", "alice-ns", role="other"),
        w_facts(
            "web", ports=(NamedPort("http", 8080), NamedPort("metrics", 9090, "UDP")), role="web", tier="x"
        ),
        w_facts("canary", ports=(NamedPort("http", 8080),), role="web", canary="yes", tier="x"),
        w_facts("api", role="api", tier="x"),
        w_facts("notier", role="api"),
        WorkloadFacts(wl("pod-in-block"), (("role", "batch"),), ips=("172.17.0.9",)),
        WorkloadFacts(wl("pod-in-except"), (("role", "batch"),), ips=("172.17.1.9",)),
        host("agent-a", "172.17.0.5"),
        host("agent-b", "172.17.0.5", "172.17.1.5"),
        host("agent-node"),  # no IPs of its own: its node's addresses
    ),
    nodes=(NodeFacts("node-1", ("172.17.1.9",)),),
)


def verdicts(
    policies: PolicySet, client: WorkloadIdentity, target: Target, ports: tuple[int, ...]
) -> set[str]:
    edge = Edge(client, target, T0, T0 + 5, ports=ports)
    result = check([edge], policies, FACTS)
    assert result.evaluated == 1
    return {f"{d.direction}:{d.policy.name}" for d in result.denials}


ALLOWED: set[str] = set()
NET = InternetTarget("", ("10.0.0.7",))

CASES = [
    # default deny ingress: every pod of the namespace is isolated, nothing is admitted
    ("default-deny-ingress.yaml", wl("frontend"), wl("db"), (6379,), {"ingress:default-deny-ingress"}),
    ("default-deny-ingress.yaml", wl("frontend"), wl("db"), (), {"ingress:default-deny-ingress"}),
    # ... egress from that namespace and ingress elsewhere are not affected
    ("default-deny-ingress.yaml", wl("db"), wl("frontend", "other"), (80,), ALLOWED),
    ("default-deny-ingress.yaml", wl("db"), NET, (443,), ALLOWED),
    # allow all ingress beside a default deny: rules are a union
    ("allow-all-ingress.yaml", wl("frontend", "other"), wl("db"), (1234,), ALLOWED),
    # default deny egress: no pod of the namespace can connect anywhere, in the cluster or out
    ("default-deny-egress.yaml", wl("db"), wl("frontend", "other"), (80,), {"egress:default-deny-egress"}),
    ("default-deny-egress.yaml", wl("db"), NET, (443,), {"egress:default-deny-egress"}),
    ("default-deny-egress.yaml", wl("frontend", "other"), wl("db"), (80,), ALLOWED),
    ("allow-all-egress.yaml", wl("db"), NET, (443,), ALLOWED),
    # test-network-policy: role=frontend in the policy's namespace, on 6379 only
    ("test-network-policy.yaml", wl("frontend"), wl("db"), (6379,), ALLOWED),
    ("test-network-policy.yaml", wl("frontend"), wl("db"), (6380,), {"ingress:test-network-policy"}),
    ("test-network-policy.yaml", wl("frontend"), wl("db"), (6379, 80), {"ingress:test-network-policy"}),
    # podSelector alone is the policy's namespace: role=frontend elsewhere is not admitted
    ("test-network-policy.yaml", wl("frontend", "other"), wl("db"), (6379,), {"ingress:test-network-policy"}),
    # namespaceSelector alone: every pod of project=myproject namespaces
    ("test-network-policy.yaml", wl("anything", "myproject-ns"), wl("db"), (6379,), ALLOWED),
    # ipBlock 172.17.0.0/16 except 172.17.1.0/24: hostNetwork clients by their addresses
    ("test-network-policy.yaml", wl("agent-a", "kube-system"), wl("db"), (6379,), ALLOWED),
    (
        "test-network-policy.yaml",
        wl("agent-b", "kube-system"),
        wl("db"),
        (6379,),
        {"ingress:test-network-policy"},
    ),
    (
        "test-network-policy.yaml",
        wl("agent-node", "kube-system"),
        wl("db"),
        (6379,),
        {"ingress:test-network-policy"},
    ),
    # a pod whose addresses the facts know is matched by an ipBlock too (this evaluator's reading of
    # an implementation-defined case; the sandbox's nftables enforcement matches addresses alike)
    ("test-network-policy.yaml", wl("pod-in-block"), wl("db"), (6379,), ALLOWED),
    ("test-network-policy.yaml", wl("pod-in-except"), wl("db"), (6379,), {"ingress:test-network-policy"}),
    # unknown ports: judged on peers only
    ("test-network-policy.yaml", wl("frontend"), wl("db"), (), ALLOWED),
    ("test-network-policy.yaml", wl("cache"), wl("db"), (), {"ingress:test-network-policy"}),
    # a pod the policy does not select is not isolated
    ("test-network-policy.yaml", wl("frontend", "other"), wl("cache"), (1,), ALLOWED),
    # egress of role=db: only 10.0.0.0/24 on 5978
    ("test-network-policy.yaml", wl("db"), NET, (5978,), ALLOWED),
    ("test-network-policy.yaml", wl("db"), NET, (443,), {"egress:test-network-policy"}),
    (
        "test-network-policy.yaml",
        wl("db"),
        InternetTarget("", ("10.0.1.7",)),
        (5978,),
        {"egress:test-network-policy"},
    ),
    ("test-network-policy.yaml", wl("db"), wl("frontend"), (5978,), {"egress:test-network-policy"}),
    # an Internet target without addresses: no ipBlock can admit it
    (
        "test-network-policy.yaml",
        wl("db"),
        InternetTarget("api.example.com"),
        (5978,),
        {"egress:test-network-policy"},
    ),
    ("allow-all-egress.yaml", wl("db"), InternetTarget("api.example.com"), (443,), ALLOWED),
    # AND: role=client pods in user=alice namespaces only
    ("and-namespace-pod.yaml", wl("client", "alice-ns"), wl("db"), (5432,), ALLOWED),
    ("and-namespace-pod.yaml", wl("other", "alice-ns"), wl("db"), (5432,), {"ingress:and-selectors"}),
    ("and-namespace-pod.yaml", wl("client"), wl("db"), (5432,), {"ingress:and-selectors"}),
    # OR: any pod of user=alice namespaces, or role=client pods of the policy's namespace
    ("or-namespace-pod.yaml", wl("other", "alice-ns"), wl("db"), (5432,), ALLOWED),
    ("or-namespace-pod.yaml", wl("client"), wl("db"), (5432,), ALLOWED),
    ("or-namespace-pod.yaml", wl("frontend"), wl("db"), (5432,), {"ingress:or-selectors"}),
    # endPort: 32000..32768 inclusive
    ("end-port.yaml", wl("db"), NET, (32000,), ALLOWED),
    ("end-port.yaml", wl("db"), NET, (32768, 32500), ALLOWED),
    ("end-port.yaml", wl("db"), NET, (32769,), {"egress:multi-port-egress"}),
    ("end-port.yaml", wl("db"), NET, (31999,), {"egress:multi-port-egress"}),
    # named port "http" is the destination's container port 8080; "metrics" is UDP: not TCP 9090
    ("named-port.yaml", wl("api"), wl("web"), (8080,), ALLOWED),
    ("named-port.yaml", wl("api"), wl("web"), (80,), {"ingress:web-named-port"}),
    ("named-port.yaml", wl("api"), wl("web"), (9090,), {"ingress:web-named-port"}),
    # matchExpressions: the peer needs a tier label and a role other than db
    ("named-port.yaml", wl("notier"), wl("web"), (8080,), {"ingress:web-named-port"}),
    ("named-port.yaml", wl("db"), wl("web"), (8080,), {"ingress:web-named-port"}),
    # canary pods (DoesNotExist) are not selected: not isolated
    ("named-port.yaml", wl("notier"), wl("canary"), (8080,), ALLOWED),
]


@pytest.mark.parametrize(("file", "client", "target", "ports", "expected"), CASES)
def test_kubernetes_documentation_verdicts(
    file: str, client: WorkloadIdentity, target: Target, ports: tuple[int, ...], expected: set[str]
) -> None:
    assert verdicts(load(file), client, target, ports) == expected


def test_traffic_needs_both_egress_and_ingress() -> None:
    policies = load("default-deny-egress.yaml", "test-network-policy.yaml")
    found = verdicts(policies, wl("frontend"), wl("db"), (6379,))
    assert found == {"egress:default-deny-egress"}
    found = verdicts(policies, wl("cache"), wl("db"), (6379,))
    assert found == {"egress:default-deny-egress", "ingress:test-network-policy"}


def test_defaults_without_facts_select_by_the_exporters_label() -> None:
    text = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: shop}
spec:
  podSelector: {matchLabels: {app.kubernetes.io/name: payment}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: web}}
      podSelector: {matchLabels: {app.kubernetes.io/name: checkout}}
"""
    policies = load_policies([("p.yaml", text)])
    allowed = Edge(WorkloadIdentity("web", "checkout"), WorkloadIdentity("shop", "payment"), T0, T0)
    denied = Edge(WorkloadIdentity("shop", "checkout"), WorkloadIdentity("shop", "payment"), T0, T0)
    result = check([allowed, denied], policies, ClusterFacts())
    assert [d.edge for d in result.denials] == [denied]
    assert result.ports_unknown == 2
