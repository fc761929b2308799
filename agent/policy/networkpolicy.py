"""Kubernetes NetworkPolicy semantics: would the policies deny a connection from one party to another?

Called by ``agent.policy.check`` per edge, with parties from ``agent.policy.selectors``. As
Kubernetes defines it: a pod is isolated for ingress (egress) when any policy of its namespace
selects it and has that policy type; an isolated pod admits a connection when any rule of any
policy selecting it does (rules are a union): a rule admits when one of its peers matches the
other end (or it has no peers) and one of its ports matches the destination port (or it has no
ports). A connection needs the client's egress and the server's ingress. hostNetwork pods are
not isolated (policies do not select them) and are matched only by ipBlocks, by their addresses;
with several addresses each must be admitted. Only TCP is judged: edges are TCP connections.

Fast path: policies are indexed by namespace, which policies isolate a workload is computed once
per workload (workloads selected by the same policies share the result), each policy's peers are
compiled once into buckets keyed by one of their ``matchLabels`` pairs, so a rule with hundreds of
peers costs a few dictionary lookups, and which rules admit a peer is cached per set of isolating
policies (namespace-wide policies are judged once per peer, not once per edge).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from agent.policy.documents import NetworkPolicy, Peer, PolicyRef, PortRule, Rule
from agent.policy.selectors import IpAddress, Party, in_block, matches

INGRESS, EGRESS = "ingress", "egress"


@dataclass(frozen=True, slots=True)
class Verdict:
    """A denial in one direction: the policy named for it, and why."""

    policy: PolicyRef
    reason: str


@dataclass(slots=True)
class _CompiledRule:
    ref: PolicyRef
    namespace: str
    ports: tuple[PortRule, ...] | None
    any_peer: bool
    ip_peers: list[Peer] = field(default_factory=list)
    scan: list[Peer] = field(default_factory=list)
    by_pod_label: dict[tuple[str, str], list[Peer]] = field(default_factory=lambda: defaultdict(list))
    by_namespace_label: dict[tuple[str, str], list[Peer]] = field(default_factory=lambda: defaultdict(list))

    @classmethod
    def of(cls, policy: NetworkPolicy, rule: Rule) -> _CompiledRule:
        compiled = cls(policy.ref, policy.ref.namespace, rule.ports, rule.peers is None)
        for peer in rule.peers or ():
            if peer.ip_block is not None:
                compiled.ip_peers.append(peer)
            elif peer.pods is not None and peer.pods.match_labels:
                compiled.by_pod_label[peer.pods.match_labels[0]].append(peer)
            elif peer.pods is None and peer.namespaces is not None and peer.namespaces.match_labels:
                compiled.by_namespace_label[peer.namespaces.match_labels[0]].append(peer)
            else:
                compiled.scan.append(peer)
        return compiled

    def admits(self, party: Party, ip: IpAddress | None) -> bool:
        """Whether a peer of this rule matches ``party`` (by selectors), or ``ip`` (by ipBlock)."""
        if self.any_peer:
            return True
        if ip is not None:
            return any(peer.ip_block is not None and in_block(ip, peer.ip_block) for peer in self.ip_peers)
        return party.selectable and (self._selects(party) or self._blocks_all(party))

    def _selects(self, party: Party) -> bool:
        for peer in self.scan:
            if peer_matches(peer, self.namespace, party):
                return True
        for pair in party.labels.items():
            for peer in self.by_pod_label.get(pair, ()):
                if peer_matches(peer, self.namespace, party):
                    return True
        for pair in party.namespace_labels.items():
            for peer in self.by_namespace_label.get(pair, ()):
                if peer_matches(peer, self.namespace, party):
                    return True
        return False

    def _blocks_all(self, party: Party) -> bool:
        # A pod whose addresses are known is also matched by ipBlocks (all of them inside)
        return bool(party.ips) and all(
            any(peer.ip_block is not None and in_block(a, peer.ip_block) for peer in self.ip_peers)
            for a in party.ips
        )


def peer_matches(peer: Peer, policy_namespace: str, party: Party) -> bool:
    """A selector peer against a pod: podSelector alone = pods of the policy's namespace;
    namespaceSelector alone = every pod of the matching namespaces; both = AND."""
    if peer.namespaces is None:
        if party.namespace != policy_namespace:
            return False
    elif not matches(peer.namespaces, party.namespace_labels):
        return False
    return peer.pods is None or matches(peer.pods, party.labels)


def port_allowed(ports: tuple[PortRule, ...] | None, port: int, destination: Party) -> bool:
    """TCP ``port`` of ``destination`` against a rule's ports (None: every port); a named port is
    the destination's container port of that name."""
    if ports is None:
        return True
    for rule in ports:
        if rule.protocol != "TCP":
            continue
        if rule.port is None:
            return True
        if isinstance(rule.port, int):
            if rule.port == port or (rule.end_port is not None and rule.port <= port <= rule.end_port):
                return True
        elif any(n == rule.port and p == port and proto == "TCP" for n, p, proto in destination.named_ports):
            return True
    return False


def selects(policy: NetworkPolicy, party: Party) -> bool:
    return (
        party.selectable
        and party.namespace == policy.ref.namespace
        and matches(policy.pod_selector, party.labels)
    )


class NetworkPolicyEvaluator:
    """The policies of one check, indexed by namespace, with per-workload isolation cached."""

    def __init__(self, policies: Sequence[NetworkPolicy]) -> None:
        self._by_namespace: dict[str, list[NetworkPolicy]] = defaultdict(list)
        for policy in policies:
            self._by_namespace[policy.ref.namespace].append(policy)
        self._compiled: dict[tuple[int, str], list[_CompiledRule]] = {}
        self._isolation: dict[tuple[int, str], _Isolation] = {}
        self._shared: dict[tuple[tuple[int, ...], str], _Isolation] = {}

    def _rules(self, policy: NetworkPolicy, direction: str) -> list[_CompiledRule]:
        key = (id(policy), direction)
        rules = self._compiled.get(key)
        if rules is None:
            source = policy.ingress if direction == INGRESS else policy.egress
            rules = self._compiled[key] = [_CompiledRule.of(policy, rule) for rule in source]
        return rules

    def isolation(self, party: Party, direction: str) -> _Isolation:
        """The policies isolating ``party`` in ``direction`` and their rules (none: not isolated).
        Parties selected by the same policies share one :class:`_Isolation` (and its cache)."""
        if not party.selectable:
            return _NOT_ISOLATED  # policies never select hostNetwork pods or outside addresses
        key = (id(party), direction)  # selectable parties are cached per workload by the ClusterView
        found = self._isolation.get(key)
        if found is None:
            selecting = tuple(
                policy
                for policy in self._by_namespace.get(party.namespace, ())
                if (policy.ingress_isolates if direction == INGRESS else policy.egress_isolates)
                and selects(policy, party)
            )
            shared = (tuple(map(id, selecting)), direction)
            found = self._shared.get(shared)
            if found is None:
                rules = [rule for policy in selecting for rule in self._rules(policy, direction)]
                found = self._shared[shared] = _Isolation([p.ref for p in selecting], rules)
            self._isolation[key] = found
        return found

    def judge(
        self, selected: Party, other: Party, direction: str, ports: tuple[int, ...], destination: Party
    ) -> Verdict | None:
        """``selected``'s policies in ``direction`` against ``other`` on TCP ``ports`` of
        ``destination`` (no ports: unknown, judged on peers only). None: admitted."""
        isolation = self.isolation(selected, direction)
        if not isolation.refs:
            return None
        return isolation.judge(other, direction=direction, ports=ports, destination=destination)


class _Isolation:
    """The policies isolating some pods in one direction, their rules, and which rules admit each
    peer (cached: parties and addresses recur across edges)."""

    __slots__ = ("_admitting", "refs", "rules")

    def __init__(self, refs: list[PolicyRef], rules: list[_CompiledRule]) -> None:
        self.refs, self.rules = refs, rules
        self._admitting: dict[object, list[_CompiledRule]] = {}

    def admitting(self, other: Party, ip: IpAddress | None) -> list[_CompiledRule]:
        # An address is judged by itself; a pod by identity (the ClusterView caches one Party per
        # workload for the whole check); an outside party without addresses only by peer-less rules.
        key: object = ip if ip is not None else id(other) if other.selectable else None
        found = self._admitting.get(key)
        if found is None:
            found = self._admitting[key] = [rule for rule in self.rules if rule.admits(other, ip)]
        return found

    def judge(
        self, other: Party, *, direction: str, ports: tuple[int, ...], destination: Party
    ) -> Verdict | None:
        """The rules against the other end, per address when selectors cannot match it."""
        word = "from" if direction == INGRESS else "to"
        units: tuple[IpAddress | None, ...] = (None,) if other.selectable or not other.ips else other.ips
        for ip in units:
            admitting = self.admitting(other, ip)
            who = f" ({ip})" if ip is not None else ""
            if not admitting:
                names = ", ".join(f"{r.namespace}/{r.name}" for r in self.refs[:3])
                more = f" and {len(self.refs) - 3} more" if len(self.refs) > 3 else ""
                reason = f"no {direction} rule of {names}{more} admits traffic {word} this peer{who}"
                return Verdict(self.refs[0], reason)
            for port in ports:
                if not any(port_allowed(rule.ports, port, destination) for rule in admitting):
                    return Verdict(admitting[0].ref, f"TCP port {port} is not allowed {word} this peer{who}")
        return None


_NOT_ISOLATED = _Isolation([], [])
