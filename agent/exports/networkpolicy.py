"""Edges → Kubernetes ``networking.k8s.io/v1`` NetworkPolicies that admit the observed traffic.

Data comes from the store's edges (``agent.model.Edge``) and, when known, the cluster's facts
(``agent.model.ClusterFacts``: pod labels, hostNetwork, node addresses); the policies go to the
CLI (``network-mapper export --format networkpolicy``, which writes the files), the mapper's API
and the cloud's export handler. Pure: no I/O.

Rules:

* one **ingress** policy per server workload (a ``WorkloadIdentity`` target), in the server's
  namespace, named ``access-to-<server>-from-observed-clients`` (a DNS-1123 label of at most
  63 characters: dots become dashes, longer names are cut and end in 8 hex digits of a hash;
  ``<server>-<kind>`` when kinds of one name share a namespace);
* pods are selected by their labels in ``facts``, else ``labels_of(workload)`` (an edge carries
  no pod labels), else ``app.kubernetes.io/name: <workload name>``, the recommended Kubernetes
  label, which the user must check matches their pods;
* one ``from`` peer per observed client: its ``podSelector``, plus a ``namespaceSelector`` on
  ``kubernetes.io/metadata.name`` (set by the API server on every namespace) when the client
  lives in another namespace. A client without labels is admitted by its whole namespace
  (broader, but never blocks observed traffic); a server without labels gets no policy
  (an empty podSelector would select, and isolate, every pod of its namespace);
* a **hostNetwork** client (``facts``) is admitted by an ``ipBlock`` of each node address
  (``/32``, ``/128``): its packets leave from the node's address, which no pod selector matches
  (facts without nodes leave it the pod selector, which cannot admit it: the mapper reads nodes);
* ports: all ports from those clients by default. ``exact_ports`` lists the TCP server ports
  observed on the clients' edges, one rule per distinct port set; a client with an edge of
  unknown ports (seen only through DNS, Kafka, Istio or AWS) keeps all ports, so nothing
  observed is denied. Not the default: UDP (other than DNS) is not observed;
* targets that are not workloads (internet, AWS, identities of kind ``Service``) get no ingress
  policy: they are not pods in the cluster;
* ``egress``: one egress policy per client as well (:mod:`agent.exports.egresspolicy`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from agent.exports.egresspolicy import PortSet, egress_policies, merge_ports, port_list
from agent.exports.podselect import (
    DEFAULT_SELECTOR_LABEL,
    MANAGED_BY,
    MAX_NAME,
    NAMESPACE_LABEL,
    LabelsOf,
    Pods,
    default_labels,
    dns_label,
    policy_names,
    selector,
    unique,
)
from agent.model import ClusterFacts, Edge, WorkloadIdentity

__all__ = [
    "DEFAULT_SELECTOR_LABEL",
    "MANAGED_BY",
    "MAX_NAME",
    "NAMESPACE_LABEL",
    "LabelsOf",
    "default_labels",
    "dns_label",
    "network_policies",
    "policy_name",
]


def policy_name(server: WorkloadIdentity, qualify_kind: bool = False) -> str:
    """``access-to-<server>-from-observed-clients`` as a valid, ≤ 63-character name."""
    who = f"{server.name}-{server.kind}" if qualify_kind and server.kind else server.name
    return dns_label(f"access-to-{who}-from-observed-clients")


def _ingress(
    server: WorkloadIdentity, clients: dict[WorkloadIdentity, PortSet], pods: Pods, exact_ports: bool
) -> list[dict[str, Any]]:
    ports_of: dict[str, PortSet] = {}  # peer (repr) → ports admitted from it
    peers: list[dict[str, Any]] = []
    for client in sorted(clients):
        for peer in pods.peers(client, server.namespace):
            key = repr(peer)
            ports_of[key] = (
                merge_ports(ports_of[key], clients[client]) if key in ports_of else clients[client]
            )
            peers.append(peer)
    peers = unique(peers)  # clients sharing labels: one peer
    if not exact_ports:
        return [{"from": peers}]
    groups: dict[PortSet, list[dict[str, Any]]] = defaultdict(list)
    for peer in peers:
        groups[ports_of[repr(peer)]].append(peer)
    rules = []
    for ports in sorted(groups, key=lambda p: (p is not None, sorted(p or ()))):
        rule: dict[str, Any] = {"from": groups[ports]}
        if ports is not None:
            rule["ports"] = port_list(ports)
        rules.append(rule)
    return rules


def network_policies(
    edges: Iterable[Edge],
    labels_of: LabelsOf | None = None,
    *,
    facts: ClusterFacts | None = None,
    exact_ports: bool = False,
    egress: bool = False,
) -> list[dict[str, Any]]:
    """Ingress NetworkPolicies, one per server workload, sorted by (namespace, name, kind); then,
    with ``egress``, the egress policies of the clients, sorted the same way."""
    pods = Pods(labels_of, facts)
    edges = list(edges)
    clients_of: dict[WorkloadIdentity, dict[WorkloadIdentity, PortSet]] = defaultdict(dict)
    for edge in edges:
        if isinstance(edge.target, WorkloadIdentity) and edge.target.kind != "Service":
            seen = clients_of[edge.target]
            ports: PortSet = frozenset(edge.ports) or None
            seen[edge.client] = merge_ports(seen[edge.client], ports) if edge.client in seen else ports
    servers = sorted(clients_of)
    names = policy_names(servers, "access-to-{}-from-observed-clients")
    policies: list[dict[str, Any]] = []
    for server in servers:
        server_labels = pods.labels(server)
        if not server_labels:
            continue
        policies.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {
                    "name": names[server],
                    "namespace": server.namespace,
                    "labels": dict(MANAGED_BY),
                },
                "spec": {
                    "podSelector": selector(server_labels),
                    "policyTypes": ["Ingress"],
                    "ingress": _ingress(server, clients_of[server], pods, exact_ports),
                },
            }
        )
    if egress:
        policies += egress_policies(edges, pods, exact_ports=exact_ports)
    return policies
