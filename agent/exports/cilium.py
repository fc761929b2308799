"""Edges → Cilium ``cilium.io/v2`` CiliumNetworkPolicies: each client may reach what it was seen
reaching, Internet destinations by DNS name (``toFQDNs``), which plain NetworkPolicies cannot.

Data comes from the store's edges and, when known, the cluster's facts (pod labels, hostNetwork);
the policies go to the CLI (``network-mapper export --format cilium``). Pure: no I/O. The output
validates against Cilium's published CRD (``tests/data/cilium/``).

One policy per client workload, in its namespace, ``access-from-<client>-to-observed-servers``,
``endpointSelector`` on the client's pod labels (as :mod:`agent.exports.networkpolicy`), with
egress rules:

* DNS, always, as ``toFQDNs`` needs it: UDP and TCP 53 to ``k8s-app: kube-dns`` in
  ``kube-system``, with the L7 rule ``dns: [{matchPattern: "*"}]`` so Cilium's DNS proxy sees the
  lookups and learns the IPs behind the names below;
* in-cluster workload targets: ``toEndpoints`` on their pod labels (plus
  ``k8s:io.kubernetes.pod.namespace`` for another namespace; the whole namespace when the target
  has no labels); hostNetwork targets: ``toEntities: [host, remote-node]``;
* ``Service`` targets: the API server (``default/kubernetes``) as ``toEntities: [kube-apiserver]``;
  any other as ``toServices`` (a Service the map sees without pods has no selector, which is what
  ``toServices`` supports);
* Internet targets with a DNS name: ``toFQDNs: [{matchName: <name>}]``, with ``toPorts`` when
  the port is known; by IP only: ``toCIDR`` of each IP (``/32``, ``/128``); with neither:
  ``toEntities: [world]`` on the port;
* AWS targets: ``toFQDNs`` patterns under ``amazonaws.com`` (one to three labels deep: a ``*``
  never spans a dot) on their observed ports, else TCP 443.

hostNetwork clients and clients without labels get no policy (Cilium does not police host-network
pods by endpoint; an empty selector would select every pod of the namespace).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from agent.exports.egresspolicy import AWS_PORT, DNS_LABELS, DNS_NAMESPACE, PortSet, target_ports
from agent.exports.podselect import MANAGED_BY, LabelsOf, Pods, host_cidr, policy_names, unique
from agent.model import AwsTarget, ClusterFacts, Edge, InternetTarget, WorkloadIdentity

API_VERSION = "cilium.io/v2"
KIND = "CiliumNetworkPolicy"
NAMESPACE_KEY = "k8s:io.kubernetes.pod.namespace"
API_SERVER = WorkloadIdentity("default", "kubernetes", "Service")
AWS_PATTERNS = ("*.amazonaws.com", "*.*.amazonaws.com", "*.*.*.amazonaws.com")
_MATCH_NAME = re.compile(r"^([-a-zA-Z0-9_]+[.]?)+$")  # the CRD's pattern for matchName


def _to_ports(ports: PortSet) -> dict[str, Any]:
    if ports is None:
        return {}
    return {"toPorts": [{"ports": [{"port": str(p), "protocol": "TCP"} for p in sorted(ports)]}]}


def dns_rule() -> dict[str, Any]:
    return {
        "toEndpoints": [
            {"matchLabels": {NAMESPACE_KEY: DNS_NAMESPACE, **{f"k8s:{k}": v for k, v in DNS_LABELS.items()}}}
        ],
        "toPorts": [
            {
                "ports": [{"port": "53", "protocol": "UDP"}, {"port": "53", "protocol": "TCP"}],
                "rules": {"dns": [{"matchPattern": "*"}]},
            }
        ],
    }


def _endpoint(target: WorkloadIdentity, namespace: str, pods: Pods) -> dict[str, Any]:
    labels = dict(pods.labels(target))
    if target.namespace != namespace or not labels:
        labels[NAMESPACE_KEY] = target.namespace
    return {"matchLabels": {k: labels[k] for k in sorted(labels)}}


class _Rules:
    """One client's egress rules, gathered per kind of destination and port set."""

    def __init__(self) -> None:
        self.endpoints: list[dict[str, Any]] = []
        self.entities: set[str] = set()
        self.services: list[dict[str, Any]] = []
        self.fqdns: dict[PortSet, list[dict[str, str]]] = defaultdict(list)
        self.cidrs: dict[PortSet, set[str]] = defaultdict(set)
        self.world: set[PortSet] = set()

    def add(self, edge: Edge, pods: Pods) -> None:
        target = edge.target
        if isinstance(target, WorkloadIdentity):
            if target == API_SERVER:
                self.entities.add("kube-apiserver")
            elif target.kind == "Service":
                self.services.append(
                    {"k8sService": {"serviceName": target.name, "namespace": target.namespace}}
                )
            elif pods.host_network(target):
                self.entities |= {"host", "remote-node"}
            else:
                self.endpoints.append(_endpoint(target, edge.client.namespace, pods))
        elif isinstance(target, InternetTarget):
            ports = target_ports(edge)
            cidrs = {c for c in map(host_cidr, target.ips) if c}
            if target.dns_name and _MATCH_NAME.match(target.dns_name):
                self.fqdns[ports].append({"matchName": target.dns_name})
            elif cidrs:
                self.cidrs[ports] |= cidrs
            else:
                self.world.add(ports)
        elif isinstance(target, AwsTarget):
            self.fqdns[target_ports(edge) or frozenset({AWS_PORT})] += [
                {"matchPattern": p} for p in AWS_PATTERNS
            ]

    def rules(self) -> list[dict[str, Any]]:
        def by_ports(ports: PortSet) -> tuple[bool, list[int]]:
            return (ports is not None, sorted(ports or ()))

        rules = [dns_rule()]
        if self.endpoints:
            rules.append({"toEndpoints": unique(self.endpoints)})
        if self.entities:
            rules.append({"toEntities": sorted(self.entities)})
        if self.services:
            rules.append({"toServices": unique(self.services)})
        for ports in sorted(self.fqdns, key=by_ports):
            rules.append({"toFQDNs": unique(self.fqdns[ports]), **_to_ports(ports)})
        for ports in sorted(self.cidrs, key=by_ports):
            rules.append({"toCIDR": sorted(self.cidrs[ports]), **_to_ports(ports)})
        for ports in sorted(self.world, key=by_ports):
            rules.append({"toEntities": ["world"], **_to_ports(ports)})
        return rules


def cilium_network_policies(
    edges: Iterable[Edge], labels_of: LabelsOf | None = None, *, facts: ClusterFacts | None = None
) -> list[dict[str, Any]]:
    """CiliumNetworkPolicies, one per client workload, sorted by (namespace, name, kind)."""
    pods = Pods(labels_of, facts)
    rules_of: dict[WorkloadIdentity, _Rules] = defaultdict(_Rules)
    for edge in sorted(edges, key=lambda e: (e.client, repr(e.target))):
        if not pods.host_network(edge.client) and pods.labels(edge.client):
            rules_of[edge.client].add(edge, pods)
    clients = sorted(rules_of)
    names = policy_names(clients, "access-from-{}-to-observed-servers")
    return [
        {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": names[client], "namespace": client.namespace, "labels": dict(MANAGED_BY)},
            "spec": {
                "endpointSelector": {"matchLabels": dict(sorted(pods.labels(client).items()))},
                "egress": rules_of[client].rules(),
            },
        }
        for client in clients
    ]
