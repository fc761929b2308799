"""Edges → per-client egress NetworkPolicies (``network-mapper export --format networkpolicy
--egress``): each client workload may reach what it was seen reaching, and the cluster's DNS.

Data comes from the store's edges and the pods' facts (:class:`agent.exports.podselect.Pods`);
the policies go back to :func:`agent.exports.networkpolicy.network_policies`, which appends them
after the ingress policies. Pure: no I/O.

One policy per client workload, in its namespace, ``access-from-<client>-to-observed-servers``
(``policyTypes: [Egress]``), selecting the client's pods, with these rules:

* DNS, always: UDP and TCP 53 to the pods ``k8s-app: kube-dns`` of ``kube-system`` (CoreDNS keeps
  that label). A client with AWS edges may send DNS anywhere: the AWS-visibility webhook points
  its pods' DNS at the mapper's forwarder, which is not kube-dns;
* in-cluster workload targets: their pods (pod + namespace selector, as the ingress peers; an
  ``ipBlock`` of each node address for a hostNetwork target); all ports, or with ``exact_ports``
  the observed TCP ports (all when an edge has none);
* Internet targets: an ``ipBlock`` of each of their IPs (``/32``, ``/128``) on their port when
  known (the target's port and the edge's observed ports). An Internet target whose IPs are
  unknown gets a rule with no ``to`` (any destination) on that port — on every port when that is
  unknown too, which then leaves the client's egress unrestricted: we cannot name what it reached;
* ``Service`` targets (such as ``default/kubernetes``, the API server, whose endpoints are not pods
  we know) and AWS targets (reached through the mapper's proxy or AWS's endpoints, neither of
  known address): a rule with no ``to`` on their observed ports (AWS: TCP 443 when unknown).

hostNetwork clients and clients without labels get no egress policy: a NetworkPolicy does not
isolate host-network pods, and an empty podSelector would isolate the whole namespace.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from agent.exports.podselect import (
    MANAGED_BY,
    NAMESPACE_LABEL,
    Pods,
    host_cidr,
    policy_names,
    selector,
    unique,
)
from agent.model import AwsTarget, Edge, InternetTarget, Target, WorkloadIdentity

PortSet = frozenset[int] | None  # TCP ports; None: every port (unknown)

DNS_NAMESPACE = "kube-system"
DNS_LABELS = {"k8s-app": "kube-dns"}
DNS_PORTS = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
AWS_PORT = 443  # AWS's endpoints (and the mapper's AWS proxy) answer HTTPS only


def merge_ports(a: PortSet, b: PortSet) -> PortSet:
    """The union of two port sets; every port when either is."""
    return None if a is None or b is None else a | b


def port_list(ports: frozenset[int]) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": p} for p in sorted(ports)]


def dns_peer() -> dict[str, Any]:
    """The cluster's DNS pods, from any namespace."""
    return {
        "namespaceSelector": selector({NAMESPACE_LABEL: DNS_NAMESPACE}),
        "podSelector": selector(DNS_LABELS),
    }


def target_ports(edge: Edge) -> PortSet:
    """The TCP ports an edge was seen on: its observed ports and an Internet target's port."""
    ports = set(edge.ports)
    if isinstance(edge.target, InternetTarget) and edge.target.port:
        ports.add(edge.target.port)
    return frozenset(ports) or None


def _allowance(edge: Edge, pods: Pods, exact_ports: bool) -> tuple[list[dict[str, Any]] | None, PortSet]:
    """Where (peers; None: anywhere) and on which ports an edge's client may send."""
    target: Target = edge.target
    if isinstance(target, WorkloadIdentity):
        if target.kind == "Service":
            return None, target_ports(edge)
        return pods.peers(target, edge.client.namespace), target_ports(edge) if exact_ports else None
    if isinstance(target, InternetTarget):
        cidrs = sorted({c for c in map(host_cidr, target.ips) if c})
        return ([{"ipBlock": {"cidr": c}} for c in cidrs] or None), target_ports(edge)
    if isinstance(target, AwsTarget):
        return None, target_ports(edge) or frozenset({AWS_PORT})
    raise TypeError(f"unknown target {target!r}")


def _rules(allowances: list[tuple[list[dict[str, Any]] | None, PortSet]]) -> list[dict[str, Any]]:
    """Allowances grouped into rules: one per (has peers, port set), peers merged."""
    groups: dict[tuple[bool, PortSet], list[dict[str, Any]]] = defaultdict(list)
    for peers, ports in allowances:
        groups[(peers is not None, ports)] += peers or []
    rules = []
    for has_to, ports in sorted(groups, key=lambda g: (not g[0], g[1] is not None, sorted(g[1] or ()))):
        rule: dict[str, Any] = {"to": unique(groups[(has_to, ports)])} if has_to else {}
        if ports is not None:
            rule["ports"] = port_list(ports)
        rules.append(rule)
    return rules


def egress_policies(edges: Iterable[Edge], pods: Pods, *, exact_ports: bool = False) -> list[dict[str, Any]]:
    """Egress NetworkPolicies, one per client workload, sorted by (namespace, name, kind)."""
    edges_of: dict[WorkloadIdentity, list[Edge]] = defaultdict(list)
    for edge in edges:
        if not pods.host_network(edge.client):
            edges_of[edge.client].append(edge)
    clients = sorted(c for c in edges_of if pods.labels(c))
    names = policy_names(clients, "access-from-{}-to-observed-servers")
    policies = []
    for client in clients:
        client_edges = sorted(edges_of[client], key=lambda e: repr(e.target))
        dns: dict[str, Any] = {"ports": list(DNS_PORTS)}
        if not any(isinstance(e.target, AwsTarget) for e in client_edges):
            dns = {"to": [dns_peer()], **dns}
        policies.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {
                    "name": names[client],
                    "namespace": client.namespace,
                    "labels": dict(MANAGED_BY),
                },
                "spec": {
                    "podSelector": selector(pods.labels(client)),
                    "policyTypes": ["Egress"],
                    "egress": [dns, *_rules([_allowance(e, pods, exact_ports) for e in client_edges])],
                },
            }
        )
    return policies
