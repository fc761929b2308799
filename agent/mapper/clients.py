"""The client side of an observation: source IP (and a socket scan's hostname) → workload, as of a time.

Asked by `agent.mapper.resolver` for every observation with a client IP (DNS, TCP, socket scan,
Kafka, AWS); answers from `agent.mapper.cluster.ClusterState` as `(identity, ambiguous)`, or None
(counted in the shared `stats` by reason). Every IP is resolved *as of the observation's time*
(IP reuse), and answers are memoised in `memo` for the pod's span in the IP history. Pure.

hostNetwork rule: a node IP is never resolved to a regular pod. Traffic *from* a node IP is
pinned to a hostNetwork pod only when the socket scan's hostname names it; otherwise, if all
hostNetwork pods on that node at that time are one workload, the client is kept with
`ambiguous=True` (node processes such as the kubelet share the IP), else dropped.

Threading: used by one thread, like the `Resolver` that owns it; nothing here is locked.
"""

from __future__ import annotations

from collections import Counter

from agent.mapper.cluster import ClusterState
from agent.mapper.hits import Client, ClientMemo, remember


class ClientResolver:
    """Client IP → `(identity, ambiguous)`; `memo` is read directly by the resolver's hot path."""

    def __init__(self, state: ClusterState, stats: Counter[str]) -> None:
        self.state = state
        self.stats = stats
        self.memo: dict[str, ClientMemo] = {}  # client IP → its answer and the span it holds for

    def client(self, ip: str, t: float, hostname: str = "") -> Client | None:
        """(identity, ambiguous) of the pod that sent from `ip` at `t`."""
        generation = self.state.generation
        if not hostname:
            entry = self.memo.get(ip)
            if entry is not None and entry[0] == generation and entry[1] <= t < entry[2]:
                return entry[3]
        found = self.state.pod_span_at(ip, t)
        pod = found[2] if found is not None else None
        if found is not None and (not hostname or hostname in (found[2].hostname, found[2].name)):
            client = (found[2].identity, False)
            remember(self.memo, ip, (generation, found[0], found[1], client))
            return client
        if hostname:
            # Confirm or correct with the hostname: near an IP handover the scan names the real holder.
            named = [p for _, _, p in self.state.pods_with_ip(ip) if hostname in (p.hostname, p.name)]
            if named:
                return min(named, key=lambda p: abs(p.created_at - t)).identity, False
        if pod is not None:
            return pod.identity, False  # a custom hostname proves nothing either way
        if self.state.is_node_ip(ip):
            return self._on_node(ip, t, hostname)
        self.stats["client_unknown_ip"] += 1
        return None

    def _on_node(self, ip: str, t: float, hostname: str) -> Client | None:
        """A node IP: only a hostNetwork pod can be the client, and only one we can name."""
        candidates = self.state.host_network_pods(ip, t)
        if hostname:
            named = [p for p in candidates if hostname in (p.hostname, p.name)]
            if len(named) == 1:
                return named[0].identity, False
        workloads = {p.identity for p in candidates}
        if len(workloads) == 1:
            return workloads.pop(), True
        self.stats["client_node_ip_unresolved"] += 1
        return None
