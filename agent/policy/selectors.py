"""What selectors select: label selector and ipBlock matching, and the cluster as policies see it.

The evaluators (``agent.policy.networkpolicy``, ``agent.policy.intents``) ask a
:class:`ClusterView`, built once per check from ``agent.model.ClusterFacts``, for a workload's
labels, named ports, IPs and host-network flag, and for a namespace's labels. When the facts do
not know a workload, or list no labels for it, its labels are the NetworkPolicy exporter's
default (``app.kubernetes.io/name: <name>``), and a namespace's are
``kubernetes.io/metadata.name: <ns>``, which the API server sets on every namespace (so it is
added when the facts lack it).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from agent.exports.networkpolicy import NAMESPACE_LABEL, default_labels
from agent.model import ClusterFacts, WorkloadFacts, WorkloadIdentity
from agent.policy.documents import IpBlock, Selector

Labels = Mapping[str, str]
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def matches(selector: Selector, labels: Labels) -> bool:
    """Kubernetes label selector semantics: every matchLabels pair and every expression holds."""
    for key, value in selector.match_labels:
        if labels.get(key) != value:
            return False
    for requirement in selector.expressions:
        operator, present = requirement.operator, requirement.key in labels
        if operator == "In":
            ok = present and labels[requirement.key] in requirement.values
        elif operator == "NotIn":
            ok = not present or labels[requirement.key] not in requirement.values
        elif operator == "Exists":
            ok = present
        else:  # DoesNotExist
            ok = not present
        if not ok:
            return False
    return True


def in_block(ip: IpAddress, block: IpBlock) -> bool:
    """``ip`` is inside ``cidr`` and outside every ``except``."""
    if ip.version != block.cidr.version or ip not in block.cidr:
        return False
    return not any(ip in excepted for excepted in block.excepted)


def address(text: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Party:
    """One end of an edge as a policy sees it. ``selectable``: a pod that pod and namespace
    selectors can match (not a hostNetwork pod, not an address outside the cluster); ``ips``: the
    addresses ipBlocks match; ``named_ports``: (name, number, protocol) of its containers."""

    namespace: str
    labels: Labels
    namespace_labels: Labels
    selectable: bool
    ips: tuple[IpAddress, ...] = ()
    named_ports: tuple[tuple[str, int, str], ...] = ()


class ClusterView:
    """The facts, indexed; :meth:`party` is cached per workload."""

    def __init__(self, facts: ClusterFacts) -> None:
        self._workloads: dict[WorkloadIdentity, WorkloadFacts] = {w.workload: w for w in facts.workloads}
        # An edge's kind may differ from the facts' (older data): the name decides when unambiguous,
        # as the NetworkPolicy exporter decides it.
        names: dict[tuple[str, str], list[WorkloadFacts]] = {}
        for w in facts.workloads:
            names.setdefault((w.workload.namespace, w.workload.name), []).append(w)
        self._by_name = {key: found[0] for key, found in names.items() if len(found) == 1}
        self._namespaces = {n.name: dict(n.labels) for n in facts.namespaces}
        node_ips = (address(a) for node in facts.nodes for a in node.addresses)
        self._node_ips = tuple(sorted({ip for ip in node_ips if ip is not None}, key=str))
        self._parties: dict[WorkloadIdentity, Party] = {}

    def namespace_labels(self, namespace: str) -> Labels:
        labels = self._namespaces.get(namespace)
        if labels is None:
            labels = self._namespaces[namespace] = {NAMESPACE_LABEL: namespace}
        elif NAMESPACE_LABEL not in labels:
            labels[NAMESPACE_LABEL] = namespace
        return labels

    def facts_of(self, workload: WorkloadIdentity) -> WorkloadFacts | None:
        found = self._workloads.get(workload)
        if found is None and not workload.kind:  # by name only when the edge names no kind, as the exporter
            found = self._by_name.get((workload.namespace, workload.name))
        return found

    def party(self, workload: WorkloadIdentity) -> Party:
        party = self._parties.get(workload)
        if party is None:
            party = self._parties[workload] = self._new_party(workload)
        return party

    def _new_party(self, workload: WorkloadIdentity) -> Party:
        facts = self.facts_of(workload)
        labels = dict(facts.labels) if facts and facts.labels else default_labels(workload)
        ips = tuple(ip for ip in (address(a) for a in facts.ips) if ip is not None) if facts else ()
        host_network = bool(facts and facts.host_network)
        if host_network and not ips:
            ips = self._node_ips  # a hostNetwork pod's traffic leaves from its node's address
        return Party(
            namespace=workload.namespace,
            labels=labels,
            namespace_labels=self.namespace_labels(workload.namespace),
            selectable=not host_network,
            ips=ips,
            named_ports=tuple((p.name, p.port, p.protocol) for p in facts.ports if p.name) if facts else (),
        )


def outside(ips: tuple[str, ...]) -> Party:
    """An address outside the cluster: only ipBlocks (or a rule with no peers) match it."""
    parsed = tuple(ip for ip in (address(a) for a in ips) if ip is not None)
    return Party(namespace="", labels={}, namespace_labels={}, selectable=False, ips=parsed)
