"""NetworkPolicies as a CNI enforces them: API objects in, one nftables ruleset out (pure).

Data comes from the sandbox API server's NetworkPolicy, Pod and Namespace objects (as JSON dicts,
parsed here by :func:`parse_policy`, :func:`pods_from_api`, :func:`namespaces_from_api`); the text
goes to :mod:`sandbox.netenforcer`, which loads it with ``nft -f -`` in the node namespace.

This is the sandbox's own reading of the Kubernetes semantics, written apart from the product's
evaluator (``agent.policy``) so that real refused connections confirm its verdicts:

- a pod is isolated for ingress (egress) when a policy of its namespace selects it and has
  ``Ingress`` (``Egress``) in its ``policyTypes`` (default: Ingress, plus Egress when the spec has
  ``egress``); an isolated pod admits what the union of those policies' rules allows;
- a rule with no peers admits every address, with no ports every port; a peer is a pod selector
  (in the policy's namespace), a namespace selector (every pod there), both (those pods in those
  namespaces) or an ``ipBlock`` (``cidr`` minus ``except``); ports are numbers (with ``endPort``)
  or container-port names, looked up on the destination pod, per protocol (default TCP);
- a connection needs its client's egress and its server's ingress to allow it.

The table (``ip nm_policy``) hooks the node's forward path: pod-to-pod traffic on the bridge
crosses it through br_netfilter (``bridge-nf-call-iptables``), after the kube-proxy DNAT, so rules
see pod addresses and container ports as Kubernetes specifies. Replies (conntrack established or
related) pass; traffic from the node's own addresses passes (as real CNIs let kubelet probes and
hostNetwork pods through) and the node's own traffic never crosses forward at all. A denied TCP
connection gets a reset (the client sees "connection refused" at once), anything else an ICMP
admin-prohibited error, so tests never wait for a timeout. IPv6 blocks are ignored (the sandbox is
IPv4). Established connections survive a new policy, as with most CNIs.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

TABLE = "nm_policy"
PROTOCOLS = frozenset({"TCP", "UDP", "SCTP"})
_OPS = frozenset({"In", "NotIn", "Exists", "DoesNotExist"})
DEFAULT_NS_LABEL = "kubernetes.io/metadata.name"

Labels = tuple[tuple[str, str], ...]


class NetPolicyError(ValueError):
    """A NetworkPolicy this module cannot read; the message names the policy and the field."""


@dataclass(frozen=True, slots=True)
class PodInfo:
    namespace: str
    name: str
    labels: Labels
    ip: str
    ports: tuple[tuple[str, int, str], ...] = ()  # (name, containerPort, protocol) of named ports
    host_network: bool = False


@dataclass(frozen=True, slots=True)
class NamespaceInfo:
    name: str
    labels: Labels


@dataclass(frozen=True, slots=True)
class Selector:
    """A label selector: every ``match_labels`` pair and every expression must hold ({} = all)."""

    match_labels: Labels = ()
    expressions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # (key, operator, values)

    def matches(self, labels: Mapping[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels):
            return False
        for key, op, values in self.expressions:
            present = key in labels
            if op == "In" and not (present and labels[key] in values):
                return False
            if op == "NotIn" and present and labels[key] in values:
                return False
            if op == "Exists" and not present:
                return False
            if op == "DoesNotExist" and present:
                return False
        return True


@dataclass(frozen=True, slots=True)
class Peer:
    pods: Selector | None = None
    namespaces: Selector | None = None  # None with ``pods`` set: the policy's own namespace
    cidr: str | None = None
    excepts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PortSpec:
    protocol: str = "TCP"
    port: int | str | None = None  # None: every port of the protocol; str: a container port's name
    end_port: int | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    peers: tuple[Peer, ...] = ()  # () = every address
    ports: tuple[PortSpec, ...] = ()  # () = every port


@dataclass(frozen=True, slots=True)
class Policy:
    namespace: str
    name: str
    selector: Selector
    ingress: tuple[Rule, ...] | None  # None: the policy does not isolate for ingress
    egress: tuple[Rule, ...] | None


@dataclass(frozen=True, slots=True)
class Cluster:
    namespaces: tuple[NamespaceInfo, ...]
    pods: tuple[PodInfo, ...]
    policies: tuple[Policy, ...]
    node_addresses: tuple[str, ...] = ()


# ------------------------------------------------------------------ parsing API objects


def _labels(value: Any) -> Labels:
    return tuple(sorted((str(k), str(v)) for k, v in (value or {}).items()))


def _selector(value: Any, where: str) -> Selector:
    if value is None:
        return Selector()
    if not isinstance(value, Mapping):
        raise NetPolicyError(f"{where}: expected a label selector")
    expressions = []
    for i, e in enumerate(value.get("matchExpressions") or ()):
        op = e.get("operator") if isinstance(e, Mapping) else None
        if op not in _OPS or not e.get("key"):
            raise NetPolicyError(
                f"{where}.matchExpressions[{i}]: needs a key and an operator in {sorted(_OPS)}"
            )
        expressions.append((str(e["key"]), str(op), tuple(str(v) for v in e.get("values") or ())))
    return Selector(_labels(value.get("matchLabels")), tuple(expressions))


def _peer(value: Any, where: str) -> Peer:
    if not isinstance(value, Mapping):
        raise NetPolicyError(f"{where}: expected a peer")
    block = value.get("ipBlock")
    if block is not None:
        try:
            cidr = str(ipaddress.ip_network(str(block["cidr"]), strict=False))
            excepts = tuple(
                str(ipaddress.ip_network(str(x), strict=False)) for x in block.get("except") or ()
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise NetPolicyError(f"{where}.ipBlock: {exc}") from exc
        return Peer(cidr=cidr, excepts=excepts)
    pods, namespaces = value.get("podSelector"), value.get("namespaceSelector")
    if pods is None and namespaces is None:
        raise NetPolicyError(f"{where}: needs podSelector, namespaceSelector or ipBlock")
    return Peer(
        pods=_selector(pods, f"{where}.podSelector") if pods is not None else None,
        namespaces=_selector(namespaces, f"{where}.namespaceSelector") if namespaces is not None else None,
    )


def _port(value: Any, where: str) -> PortSpec:
    protocol = str(value.get("protocol") or "TCP") if isinstance(value, Mapping) else ""
    if protocol not in PROTOCOLS:
        raise NetPolicyError(f"{where}.protocol: expected one of {sorted(PROTOCOLS)}")
    port, end = value.get("port"), value.get("endPort")
    if port is not None and not isinstance(port, int | str):
        raise NetPolicyError(f"{where}.port: expected a number or a name")
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if end is not None and not (isinstance(end, int) and isinstance(port, int) and end >= port):
        raise NetPolicyError(f"{where}.endPort: needs a numbered port no greater than it")
    return PortSpec(protocol, port, end)


def _rules(value: Any, key: str, where: str) -> tuple[Rule, ...]:
    rules = []
    for i, r in enumerate(value or ()):
        at = f"{where}.{key}[{i}]"
        if not isinstance(r, Mapping):
            raise NetPolicyError(f"{at}: expected a rule")
        peer_key = "from" if key == "ingress" else "to"
        peers = tuple(_peer(p, f"{at}.{peer_key}[{j}]") for j, p in enumerate(r.get(peer_key) or ()))
        ports = tuple(_port(p, f"{at}.ports[{j}]") for j, p in enumerate(r.get("ports") or ()))
        rules.append(Rule(peers, ports))
    return tuple(rules)


def parse_policy(obj: Mapping[str, Any]) -> Policy:
    """A NetworkPolicy API object → :class:`Policy`; NetPolicyError naming the field otherwise."""
    meta = obj.get("metadata") or {}
    namespace, name = str(meta.get("namespace") or "default"), str(meta.get("name") or "")
    where = f"NetworkPolicy {namespace}/{name}: spec"
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        raise NetPolicyError(f"{where}: missing")
    types = spec.get("policyTypes")
    if types is None:
        types = ["Ingress", *(["Egress"] if "egress" in spec else [])]
    if not set(types) <= {"Ingress", "Egress"}:
        raise NetPolicyError(f"{where}.policyTypes: expected Ingress and/or Egress")
    return Policy(
        namespace,
        name,
        _selector(spec.get("podSelector"), f"{where}.podSelector"),
        _rules(spec.get("ingress"), "ingress", where) if "Ingress" in types else None,
        _rules(spec.get("egress"), "egress", where) if "Egress" in types else None,
    )


def pods_from_api(items: Iterable[Mapping[str, Any]]) -> tuple[PodInfo, ...]:
    """Running pods with an address; their named container ports."""
    pods = []
    for obj in items:
        meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
        if not status.get("podIP") or status.get("phase") in ("Succeeded", "Failed"):
            continue
        ports = tuple(
            (str(p["name"]), int(p["containerPort"]), str(p.get("protocol") or "TCP"))
            for c in spec.get("containers") or ()
            for p in c.get("ports") or ()
            if p.get("name") and p.get("containerPort")
        )
        pods.append(
            PodInfo(
                str(meta.get("namespace") or "default"),
                str(meta.get("name")),
                _labels(meta.get("labels")),
                str(status["podIP"]),
                ports,
                bool(spec.get("hostNetwork")),
            )
        )
    return tuple(sorted(pods, key=lambda p: (p.namespace, p.name)))


def namespaces_from_api(items: Iterable[Mapping[str, Any]]) -> tuple[NamespaceInfo, ...]:
    """Namespaces with their labels, ``kubernetes.io/metadata.name`` included as the API server sets it."""
    result = []
    for obj in items:
        meta = obj.get("metadata") or {}
        labels = {DEFAULT_NS_LABEL: str(meta.get("name")), **(meta.get("labels") or {})}
        result.append(NamespaceInfo(str(meta.get("name")), _labels(labels)))
    return tuple(sorted(result, key=lambda n: n.name))


# ------------------------------------------------------------------ the ruleset


class _Compiler:
    def __init__(self, cluster: Cluster) -> None:
        self.pods = [p for p in cluster.pods if p.ip and not p.host_network]
        self.ns_labels = {n.name: dict(n.labels) for n in cluster.namespaces}
        self.policies = cluster.policies

    def _ns_labels(self, name: str) -> dict[str, str]:
        return self.ns_labels.get(name, {DEFAULT_NS_LABEL: name})

    def peer_ips(self, peer: Peer, namespace: str) -> list[str]:
        ips = []
        for p in self.pods:
            if peer.namespaces is None:
                in_ns = p.namespace == namespace
            else:
                in_ns = peer.namespaces.matches(self._ns_labels(p.namespace))
            if in_ns and (peer.pods is None or peer.pods.matches(dict(p.labels))):
                ips.append(p.ip)
        return ips

    def peer_matches(self, rule: Rule, namespace: str, field: str) -> list[str]:
        """nft matches for the rule's peers ([""] = any address, [] = no address at all)."""
        if not rule.peers:
            return [""]
        ips: set[str] = set()
        matches = []
        for peer in rule.peers:
            if peer.cidr is None:
                ips.update(self.peer_ips(peer, namespace))
            elif ":" not in peer.cidr:
                excepts = [x for x in peer.excepts if ":" not in x]
                match = f"ip {field} {peer.cidr}"
                matches.append(match + (f" ip {field} != {{ {', '.join(excepts)} }}" if excepts else ""))
        if ips:
            matches.insert(0, f"ip {field} {{ {', '.join(sorted(ips, key=ipaddress.ip_address))} }}")
        return matches

    def port_matches(self, rule: Rule, server: PodInfo | None) -> list[str]:
        """nft matches for the rule's ports ([""] = any); named ports resolve on ``server`` (ingress) or on
        every pod that has one by that name (egress: address and port together)."""
        if not rule.ports:
            return [""]
        matches = []
        for spec in rule.ports:
            proto = spec.protocol.lower()
            if spec.port is None:
                matches.append(f"meta l4proto {proto}")
            elif isinstance(spec.port, int):
                end = f"-{spec.end_port}" if spec.end_port and spec.end_port != spec.port else ""
                matches.append(f"{proto} dport {spec.port}{end}")
            elif server is not None:
                numbers = sorted(
                    {n for name, n, pr in server.ports if name == spec.port and pr == spec.protocol}
                )
                if numbers:
                    matches.append(f"{proto} dport {{ {', '.join(map(str, numbers))} }}")
            else:
                pairs = sorted(
                    {
                        (p.ip, n)
                        for p in self.pods
                        for name, n, pr in p.ports
                        if (name, pr) == (spec.port, spec.protocol)
                    }
                )
                if pairs:
                    elements = ", ".join(f"{ip} . {n}" for ip, n in pairs)
                    matches.append(f"ip daddr . {proto} dport {{ {elements} }}")
        return matches

    def chain(self, pod: PodInfo, direction: str) -> list[str] | None:
        """The rules of ``pod``'s ingress or egress chain; None when no policy isolates it that way."""
        selecting = [
            p
            for p in self.policies
            if p.namespace == pod.namespace
            and (p.ingress if direction == "ingress" else p.egress) is not None
            and p.selector.matches(dict(pod.labels))
        ]
        if not selecting:
            return None
        field, verdict = ("saddr", "accept") if direction == "ingress" else ("daddr", "return")
        lines = []
        for policy in sorted(selecting, key=lambda p: p.name):
            rules = policy.ingress if direction == "ingress" else policy.egress
            for i, rule in enumerate(rules or ()):
                comment = f'comment "{policy.name} {direction}[{i}]"'
                server = pod if direction == "ingress" else None
                for peer in self.peer_matches(rule, policy.namespace, field):
                    for port in self.port_matches(rule, server):
                        lines.append(" ".join(x for x in (peer, port, verdict, comment) if x))
        return [*lines, "meta l4proto tcp reject with tcp reset", "reject with icmp type admin-prohibited"]


def ruleset(cluster: Cluster, table: str = TABLE) -> str:
    """The whole policy table as one nft transaction (replaces the previous one atomically)."""
    compiler = _Compiler(cluster)
    chains: list[str] = []
    vmaps: dict[str, list[str]] = {"egress": [], "ingress": []}
    for n, pod in enumerate(compiler.pods):
        for direction, prefix in (("egress", "out"), ("ingress", "in")):
            rules = compiler.chain(pod, direction)
            if rules is None:
                continue
            name = f"{prefix}_{n}"
            chains += [f"  # {pod.namespace}/{pod.name} {direction}", f"  chain {name} {{"]
            chains += [f"    {r}" for r in rules] + ["  }"]
            vmaps[direction].append(f"{pod.ip} : jump {name}")
    node = [a for a in cluster.node_addresses if ":" not in a]
    forward = ["ct state established,related accept"]
    if node:
        forward.append(f"ip saddr {{ {', '.join(node)} }} accept")
    if vmaps["egress"]:
        forward.append(f"ip saddr vmap {{ {', '.join(vmaps['egress'])} }}")
    if vmaps["ingress"]:
        forward.append(f"ip daddr vmap {{ {', '.join(vmaps['ingress'])} }}")
    lines = [f"table ip {table}", f"delete table ip {table}", f"table ip {table} {{", *chains]
    lines += ["  chain forward {", "    type filter hook forward priority filter; policy accept;"]
    lines += [f"    {r}" for r in forward] + ["  }", "}"]
    return "\n".join(lines) + "\n"


def isolated(cluster: Cluster) -> int:
    """How many (pod, direction) pairs some policy isolates (for the enforcer's log)."""
    compiler = _Compiler(cluster)
    return sum(compiler.chain(p, d) is not None for p in compiler.pods for d in ("ingress", "egress"))
