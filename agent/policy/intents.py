"""Otterize ClientIntents as the intents operator enforces them by default (ingress only).

Called by ``agent.policy.check`` per edge whose target is a workload. A server that any
ClientIntents names (a ``kubernetes``, ``service`` or ``kafka`` target; v1alpha3: a call) is
protected and admits only the clients whose own ClientIntents name it; a server that no intent
names is unaffected, unless a ``ProtectedService`` names it (then it admits only clients whose
intents name it, which may be none). A ``service`` target names a Kubernetes Service: it covers the workloads
that edges reached through that Service (``Edge.target_service``). Where the edge carries Kafka
topics and the client's intents to that server list topics, every observed (topic, operation)
must be declared (topic ``*`` and operation ``all`` match any); where it carries HTTP paths and
every intent of the client to that server lists HTTP resources, every observed (path, method)
must be declared (a path matches exactly, or by prefix when the declared one ends in ``*``, or
when it is the observed path as the exporter writes it; method ``ALL`` or none: any).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agent.exports.clientintents import http_methods, kafka_operations
from agent.exports.istio import path_pattern
from agent.model import Edge, HttpResource, KafkaTopic, WorkloadIdentity
from agent.policy.documents import ClientIntents, IntentTarget, PolicyRef


@dataclass(frozen=True, slots=True)
class _Named:
    """A target of one ClientIntents."""

    target: IntentTarget
    owner: ClientIntents


def _kind_fits(declared: str, actual: str) -> bool:
    return not declared or not actual or declared == actual


class IntentsEvaluator:
    """The ClientIntents of one check, indexed by the servers they name."""

    def __init__(self, intents: Sequence[ClientIntents], edges: Iterable[Edge]) -> None:
        self._by_server: dict[tuple[str, str], list[_Named]] = defaultdict(list)
        self._by_service: dict[tuple[str, str], list[_Named]] = defaultdict(list)
        for owner in intents:
            for target in owner.targets:
                index = self._by_service if target.kind == "service" else self._by_server
                index[(target.namespace, target.name)].append(_Named(target, owner))
        # Which Services front a workload: the only place the edges tell it
        self._services: dict[WorkloadIdentity, set[str]] = defaultdict(set)
        if self._by_service:
            for edge in edges:
                if isinstance(edge.target, WorkloadIdentity) and edge.target_service:
                    self._services[edge.target].add(edge.target_service)

    def naming(self, server: WorkloadIdentity) -> list[_Named]:
        named = [
            n
            for n in self._by_server.get((server.namespace, server.name), ())
            if _kind_fits(n.target.workload_kind, server.kind)
        ]
        for service in sorted(self._services.get(server, ())):
            named += self._by_service.get((server.namespace, service), ())
        return named

    def judge(self, edge: Edge, server: WorkloadIdentity) -> tuple[PolicyRef, str] | None:
        """The ClientIntents that deny ``edge`` and why, or None."""
        if not self._by_server and not self._by_service:
            return None
        named = self.naming(server)
        if not named:
            return None
        client = edge.client
        own = [
            n
            for n in named
            if n.owner.ref.namespace == client.namespace
            and n.owner.client == client.name
            and _kind_fits(n.owner.client_kind, client.kind)
        ]
        if not own:
            protector = named[0].owner.ref
            return protector, (
                f"{server} is protected by {protector.kind} {protector.namespace}/{protector.name}"
                f" and {client} declares no intent to it"
            )
        kafka = [n.target for n in own if n.target.kind == "kafka" and n.target.topics]
        missing = _missing_topics(edge.kafka_topics, kafka) if kafka and edge.kafka_topics else []
        network = [n.target for n in own if n.target.kind != "kafka"]
        if edge.http and network and all(t.http for t in network):
            missing += _missing_http(edge.http, network)
        if missing:
            ref = own[0].owner.ref
            return ref, f"not declared in ClientIntents {ref.namespace}/{ref.name}: {'; '.join(missing)}"
        return None


def _missing_topics(observed: Iterable[KafkaTopic], declared: Sequence[IntentTarget]) -> list[str]:
    missing = []
    for topic in observed:
        for operation in kafka_operations(topic.operations):  # allowed ones; denied were refused anyway
            if not any(
                rule.name in {"*", topic.name} and ("all" in rule.operations or operation in rule.operations)
                for target in declared
                for rule in target.topics
            ):
                missing.append(f"Kafka topic {topic.name!r} operation {operation}")
    return sorted(set(missing))


def _path_fits(declared: str, observed: str) -> bool:
    if declared in {observed, path_pattern(observed)}:
        return True
    return declared.endswith("*") and observed.startswith(declared[:-1])


def _missing_http(observed: Iterable[HttpResource], declared: Sequence[IntentTarget]) -> list[str]:
    missing = []
    for resource in observed:
        methods = http_methods(resource.methods)
        if resource.methods and not methods:
            continue  # methods the CRD cannot name: no intent could declare them
        for method in methods or [""]:
            if not any(
                _path_fits(rule.path, resource.path)
                and (not method or not rule.methods or "ALL" in rule.methods or method in rule.methods)
                for target in declared
                for rule in target.http
            ):
                missing.append(f"HTTP {method + ' ' if method else ''}{resource.path}")
    return sorted(set(missing))
