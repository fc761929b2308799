"""How exported policies select a workload's pods: labels, namespaces, hostNetwork and node addresses.

Shared by the NetworkPolicy exporters (:mod:`agent.exports.networkpolicy`, ingress, and
:mod:`agent.exports.egresspolicy`) and the Cilium one (:mod:`agent.exports.cilium`). The facts
come from the mapper (``agent.model.ClusterFacts``: the ``clusterFacts`` query or a snapshot);
without them, labels come from the caller's ``labels_of`` or :func:`default_labels`. Pure.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Any

from agent.model import ClusterFacts, WorkloadFacts, WorkloadIdentity

LabelsOf = Callable[[WorkloadIdentity], Mapping[str, str]]

DEFAULT_SELECTOR_LABEL = "app.kubernetes.io/name"
NAMESPACE_LABEL = "kubernetes.io/metadata.name"
MANAGED_BY = {"app.kubernetes.io/managed-by": "network-mapper"}
MAX_NAME = 63

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def default_labels(workload: WorkloadIdentity) -> dict[str, str]:
    """The default pod selector of a workload: ``app.kubernetes.io/name: <name>``.

    Empty (no selector) when the name can't be a label value (longer than 63 characters).
    """
    if len(workload.name) > 63 or not _LABEL_VALUE.match(workload.name):
        return {}
    return {DEFAULT_SELECTOR_LABEL: workload.name}


def dns_label(name: str, limit: int = MAX_NAME) -> str:
    """``name`` as a DNS-1123 label: lower-case, ``[a-z0-9-]``, at most ``limit`` characters.

    A name that has to be cut keeps its start and ends in ``-`` + 8 hex digits of its hash, so
    distinct long names stay distinct.
    """
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "x"
    if len(label) <= limit:
        return label
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{label[: limit - 9].rstrip('-')}-{digest}"


def selector(labels: Mapping[str, str]) -> dict[str, Any]:
    """A ``matchLabels`` selector, keys sorted."""
    return {"matchLabels": {k: labels[k] for k in sorted(labels)}}


def host_cidr(address: str) -> str | None:
    """``address`` as a one-address CIDR (``/32``, ``/128``); None when it is not an IP address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    return f"{ip}/{ip.max_prefixlen}"


class Pods:
    """What the exporters know of each workload's pods: ``facts`` first (their labels, whether they
    run on the host network, the nodes' addresses), then ``labels_of``, then :func:`default_labels`."""

    __slots__ = ("_by_identity", "_by_name", "_labels_of", "node_cidrs")

    def __init__(self, labels_of: LabelsOf | None = None, facts: ClusterFacts | None = None) -> None:
        self._labels_of = labels_of or default_labels
        workloads = facts.workloads if facts else ()
        self._by_identity = {w.workload: w for w in workloads}
        names: dict[tuple[str, str], list[WorkloadFacts]] = {}
        for w in workloads:
            names.setdefault((w.workload.namespace, w.workload.name), []).append(w)
        # an identity without a kind (older data) is found by its name, when only one kind has it
        self._by_name = {key: found[0] for key, found in names.items() if len(found) == 1}
        cidrs = {host_cidr(a) for node in (facts.nodes if facts else ()) for a in node.addresses}
        self.node_cidrs: tuple[str, ...] = tuple(sorted(c for c in cidrs if c))

    def _facts(self, workload: WorkloadIdentity) -> WorkloadFacts | None:
        found = self._by_identity.get(workload)
        if found is None and not workload.kind:
            found = self._by_name.get((workload.namespace, workload.name))
        return found

    def labels(self, workload: WorkloadIdentity) -> Mapping[str, str]:
        found = self._facts(workload)
        if found and found.labels:
            return dict(found.labels)
        return self._labels_of(workload)

    def host_network(self, workload: WorkloadIdentity) -> bool:
        """Whether the workload's pods use the node's network: pod selectors never match their
        traffic, and NetworkPolicies do not isolate them."""
        found = self._facts(workload)
        return bool(found and found.host_network)

    def peers(self, workload: WorkloadIdentity, namespace: str) -> list[dict[str, Any]]:
        """NetworkPolicy peers matching ``workload``'s pods, seen from a policy in ``namespace``.

        Pod selector (plus a namespace selector from another namespace; the whole namespace when the
        workload has no labels); a hostNetwork workload: ``ipBlock`` of every node address (its
        traffic leaves from the node's address), when facts know the nodes.
        """
        if self.host_network(workload) and self.node_cidrs:
            return [{"ipBlock": {"cidr": cidr}} for cidr in self.node_cidrs]
        labels = self.labels(workload)
        peer: dict[str, Any] = {}
        if workload.namespace != namespace or not labels:
            peer["namespaceSelector"] = selector({NAMESPACE_LABEL: workload.namespace})
        if labels:
            peer["podSelector"] = selector(labels)
        return [peer]


def unique(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``items`` without repeats, in first-seen order."""
    return list({repr(item): item for item in items}.values())


def policy_names(workloads: list[WorkloadIdentity], template: str) -> dict[WorkloadIdentity, str]:
    """``template`` (``{}`` for the workload) as a DNS label per workload; ``<name>-<kind>`` when
    kinds of one name share a namespace."""
    kinds: dict[tuple[str, str], int] = {}
    for w in workloads:
        kinds[(w.namespace, w.name)] = kinds.get((w.namespace, w.name), 0) + 1
    names = {}
    for w in workloads:
        who = f"{w.name}-{w.kind}" if kinds[(w.namespace, w.name)] > 1 and w.kind else w.name
        names[w] = dns_label(template.format(who))
    return names
