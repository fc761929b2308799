"""The parsed form of policy documents: what ``agent.policy.parsing`` builds from YAML and the
evaluators (``agent.policy.networkpolicy``, ``agent.policy.intents``) read.

Kubernetes ``networking.k8s.io/v1`` NetworkPolicies and Otterize ClientIntents (v2beta1 and
v1alpha3, both normalised to one shape). Frozen, slotted, hashable: a selector or a peer can key a
cache. Every document keeps a :class:`PolicyRef` (kind, namespace, name, file, document number), so
a verdict names where its policy came from.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class PolicyError(ValueError):
    """A policy file that cannot be evaluated: the message names the file, the 1-based document
    number and the field path (``policies.yaml: document 3 (NetworkPolicy shop/x): spec.ingress[0]...``)."""


@dataclass(frozen=True, slots=True, order=True)
class PolicyRef:
    """Where a policy came from: its kind, namespace and name, the file label and document number."""

    kind: str
    namespace: str
    name: str
    source: str
    document: int

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name} ({self.source}#{self.document})"


@dataclass(frozen=True, slots=True)
class Requirement:
    """One ``matchExpressions`` entry: ``operator`` is In, NotIn, Exists or DoesNotExist."""

    key: str
    operator: str
    values: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Selector:
    """A Kubernetes label selector; empty (no labels, no expressions) selects everything."""

    match_labels: tuple[tuple[str, str], ...] = ()
    expressions: tuple[Requirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.match_labels and not self.expressions


@dataclass(frozen=True, slots=True)
class IpBlock:
    cidr: IpNetwork
    excepted: tuple[IpNetwork, ...] = ()


@dataclass(frozen=True, slots=True)
class Peer:
    """A ``from``/``to`` entry. ``pods`` alone: pods of the policy's namespace; ``namespaces``
    alone: every pod of the matching namespaces; both: those pods of those namespaces (AND);
    ``ip_block``: addresses."""

    pods: Selector | None = None
    namespaces: Selector | None = None
    ip_block: IpBlock | None = None


@dataclass(frozen=True, slots=True)
class PortRule:
    """A ``ports`` entry: ``port`` None = every port of ``protocol``; a str = a named container
    port of the destination; ``end_port`` makes a range with a numbered ``port``."""

    protocol: str = "TCP"
    port: int | str | None = None
    end_port: int | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    """An ingress or egress rule: ``peers`` None = every peer; ``ports`` None = every port."""

    peers: tuple[Peer, ...] | None
    ports: tuple[PortRule, ...] | None


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    ref: PolicyRef
    pod_selector: Selector
    ingress_isolates: bool
    egress_isolates: bool
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()


@dataclass(frozen=True, slots=True)
class HttpRule:
    """A declared HTTP resource: a path (exact, or a prefix when it ends in ``*``) and methods
    (empty or ``ALL``: every method)."""

    path: str
    methods: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class TopicRule:
    """A declared Kafka topic (``*`` matches every topic) and its operations (``all``: every one)."""

    name: str
    operations: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class IntentTarget:
    """A server a client declares, normalised over both versions: ``kind`` "workload" (a
    ``kubernetes`` target or a v1alpha3 call), "service" (names a Kubernetes Service) or "kafka".
    ``workload_kind`` is the declared kind of the workload ("" when not given)."""

    kind: str
    name: str
    namespace: str
    workload_kind: str = ""
    http: tuple[HttpRule, ...] = ()
    topics: tuple[TopicRule, ...] = ()


@dataclass(frozen=True, slots=True)
class ClientIntents:
    """A client's declared targets. A ``ProtectedService`` is one too: ``ref.kind`` says so, its
    ``client`` is empty (no workload) and its one target is the server it protects."""

    ref: PolicyRef
    client: str
    client_kind: str
    targets: tuple[IntentTarget, ...]


@dataclass(frozen=True, slots=True)
class PolicySet:
    """Every policy of the files given to ``load_policies``, in file and document order."""

    network_policies: tuple[NetworkPolicy, ...] = ()
    client_intents: tuple[ClientIntents, ...] = ()

    @property
    def refs(self) -> tuple[PolicyRef, ...]:
        return tuple(p.ref for p in self.network_policies) + tuple(c.ref for c in self.client_intents)
