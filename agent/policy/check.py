"""Would these policies deny the observed edges? :func:`check` judges each edge against the
NetworkPolicies (``agent.policy.networkpolicy``: the client's egress and the server's ingress)
and the ClientIntents (``agent.policy.intents``: the server's ingress) of a
:class:`~agent.policy.documents.PolicySet`, with the cluster's facts (``agent.model.ClusterFacts``).

Edges come from the CLI (the mapper's API, an export or a snapshot file), or from the cloud's
graph; the :class:`CheckResult` goes to ``agent.policy.reports``. Nothing is filtered here (the
CLI filters by time and namespace). Edges whose target is not a pod are skipped and counted:
AWS calls leave through the IAM proxy, and identities of kind ``Service`` have no pods of their
own. Pure: no I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from agent.model import AwsTarget, ClusterFacts, Edge, InternetTarget, WorkloadIdentity
from agent.policy.documents import PolicyRef, PolicySet
from agent.policy.intents import IntentsEvaluator
from agent.policy.networkpolicy import EGRESS, INGRESS, NetworkPolicyEvaluator
from agent.policy.selectors import ClusterView, Party, outside

SKIPPED_AWS = "aws: through the proxy"
SKIPPED_SERVICE = "service: not a pod"


@dataclass(frozen=True, slots=True)
class Denial:
    """An edge the policies would deny: in which ``direction`` ("ingress" or "egress"), by which
    policy, and why."""

    edge: Edge
    direction: str
    policy: PolicyRef
    reason: str


@dataclass(frozen=True, slots=True)
class CheckResult:
    """``denials`` in edge order; ``evaluated``: edges judged; ``skipped``: reason → count;
    ``ports_unknown``: judged edges with no server port known (judged on peers only);
    ``checked``: the judged edges, in order (the JUnit report lists each)."""

    denials: tuple[Denial, ...] = ()
    evaluated: int = 0
    skipped: Mapping[str, int] = field(default_factory=dict)
    ports_unknown: int = 0
    checked: tuple[Edge, ...] = ()


def edge_ports(edge: Edge) -> tuple[int, ...]:
    """The TCP ports to judge: the edge's, or an Internet target's own port when it has none."""
    if edge.ports:
        return edge.ports
    if isinstance(edge.target, InternetTarget) and edge.target.port > 0:
        return (edge.target.port,)
    return ()


def check(edges: Iterable[Edge], policies: PolicySet, facts: ClusterFacts) -> CheckResult:
    """Judge every edge; see the module docstring."""
    edges = list(edges)
    view = ClusterView(facts)
    network = NetworkPolicyEvaluator(policies.network_policies)
    intents = IntentsEvaluator(policies.client_intents, edges)
    denials: list[Denial] = []
    skipped: Counter[str] = Counter()
    checked: list[Edge] = []
    ports_unknown = 0
    for edge in edges:
        target = edge.target
        if isinstance(target, AwsTarget):
            skipped[SKIPPED_AWS] += 1
            continue
        if isinstance(target, WorkloadIdentity) and target.kind == "Service":
            skipped[SKIPPED_SERVICE] += 1
            continue
        checked.append(edge)
        ports = edge_ports(edge)
        if not ports:
            ports_unknown += 1
        client = view.party(edge.client)
        server: Party = view.party(target) if isinstance(target, WorkloadIdentity) else outside(target.ips)
        verdict = network.judge(client, server, EGRESS, ports, server)
        if verdict is not None:
            denials.append(Denial(edge, EGRESS, verdict.policy, verdict.reason))
        if isinstance(target, WorkloadIdentity):
            verdict = network.judge(server, client, INGRESS, ports, server)
            if verdict is not None:
                denials.append(Denial(edge, INGRESS, verdict.policy, verdict.reason))
            denied = intents.judge(edge, target)
            if denied is not None:
                denials.append(Denial(edge, INGRESS, *denied))
    return CheckResult(tuple(denials), len(checked), dict(skipped), ports_unknown, tuple(checked))
