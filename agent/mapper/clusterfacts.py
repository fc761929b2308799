"""The cluster as a policy evaluator sees it: current pods by workload, namespaces, nodes → `ClusterFacts`.

Data comes from `agent.mapper.cluster.ClusterState.facts`, which hands over, under its lock, the
records it keeps (`PodInfo` of the live pods, namespace labels, node addresses); the result goes
to the API (`clusterFacts`), into snapshots (`agent.mapper.snapshots`) and from there to the
policy check (`agent.policy`) and the NetworkPolicy exporter. Pure: no I/O, no locks.

Per workload (the pods' identity, DESIGN.md §3):

* labels: those every current pod shares (a NetworkPolicy's podSelector picks pods; a label that
  only some pods carry, say a rollout's pod-template-hash, selects only part of the workload);
* ports: the union of its pods' container ports (name, number, protocol), for named ports;
* host_network: whether any pod runs on the node's network (its traffic comes from node IPs);
* ips: its pods' IPs, or for hostNetwork pods their nodes' IPs; a terminated pod's IP is free
  for another pod, so it is left out.

Nodes: those the watch saw (Node objects, when the mapper watches them), plus those its pods run
on (``spec.nodeName`` and ``status.hostIP(s)``): the mapper's default RBAC does not cover Node
objects, and the pods name every node that matters (the ones hostNetwork clients run on).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from agent.mapper.kuberecords import PodInfo
from agent.model import (
    ClusterFacts,
    NamedPort,
    NamespaceFacts,
    NodeFacts,
    WorkloadFacts,
    WorkloadIdentity,
)

Labels = tuple[tuple[str, str], ...]


def _workload(identity: WorkloadIdentity, pods: list[PodInfo]) -> WorkloadFacts:
    shared = set(pods[0].labels.items())
    ports: set[NamedPort] = set()
    ips: dict[str, None] = {}
    host_network = False
    for pod in pods:
        shared &= pod.labels.items()
        ports.update(pod.named_ports)
        host_network = host_network or pod.host_network
        if pod.host_network:
            ips.update(dict.fromkeys(pod.host_ips or ((pod.host_ip,) if pod.host_ip else ())))
        elif not pod.finished:
            ips.update(dict.fromkeys(pod.pod_ips or ((pod.ip,) if pod.ip else ())))
    return WorkloadFacts(
        identity, tuple(sorted(shared)), tuple(sorted(ports)), host_network, tuple(sorted(ips))
    )


def _host_ips(pod: PodInfo) -> tuple[str, ...]:
    return pod.host_ips or ((pod.host_ip,) if pod.host_ip else ())


def _node_of(pod: PodInfo, host_ips: tuple[str, ...]) -> str:
    # A pod scheduled nowhere has no host IP; one whose node name is missing is named by its IP.
    return pod.node_name or host_ips[0]


def node_names(pods: Iterable[PodInfo], nodes: Iterable[str]) -> list[str]:
    """The names of :func:`build_facts`'s nodes, sorted, without building the rest (coverage asks
    for them on every upload; the facts are O(pods) in objects, this only in a set)."""
    names = set(nodes)
    names.update(_node_of(pod, ips) for pod in pods if (ips := _host_ips(pod)))
    return sorted(names)


def build_facts(
    pods: Iterable[PodInfo],
    namespaces: Mapping[str, Labels],
    nodes: Mapping[str, Iterable[str]],
) -> ClusterFacts:
    """The facts of the live ``pods`` (grouped by identity), the ``namespaces`` (name → sorted
    labels) and the watched ``nodes`` (name → addresses); every tuple sorted."""
    by_workload: dict[WorkloadIdentity, list[PodInfo]] = {}
    addresses: dict[str, dict[str, None]] = {name: dict.fromkeys(found) for name, found in nodes.items()}
    for pod in pods:
        by_workload.setdefault(pod.identity, []).append(pod)
        host_ips = _host_ips(pod)
        if host_ips:
            addresses.setdefault(_node_of(pod, host_ips), {}).update(dict.fromkeys(host_ips))
    return ClusterFacts(
        namespaces=tuple(NamespaceFacts(name, labels) for name, labels in sorted(namespaces.items())),
        workloads=tuple(sorted(_workload(identity, found) for identity, found in by_workload.items())),
        nodes=tuple(NodeFacts(name, tuple(sorted(found))) for name, found in sorted(addresses.items())),
    )
