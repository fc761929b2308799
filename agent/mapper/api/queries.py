"""Stored edges → the shapes the queries answer (pure; no I/O).

Edges come from the store (``EdgeSource.edges``); labels from the cluster state
(``LabelSource``). The results go out over HTTP to the Otterize CLI (``serviceIntents``,
``intents``, in Otterize's shapes) and to our CLI and console (``edges``, our richer model;
``clusterFacts``, the cluster as policies see it, from a ``FactsSource``).
Results are plain dicts keyed by GraphQL field names; ``Time`` fields are epoch floats that
the scalar formats.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from agent import wire
from agent.exports import clientintents
from agent.mapper.api.protocols import LabelSource
from agent.model import AwsTarget, ClusterFacts, Edge, InternetTarget, WorkloadIdentity

Shape = dict[str, Any]

_GROUPS: dict[str, str] = {
    "Deployment": "apps",
    "ReplicaSet": "apps",
    "StatefulSet": "apps",
    "DaemonSet": "apps",
    "Job": "batch",
    "CronJob": "batch",
    "Pod": "",
}
_HTTP_METHODS = frozenset(clientintents.HTTP_METHODS) | {"ALL"}


def pod_owner_kind(kind: str) -> Shape | None:
    """A workload kind → Otterize's ``GroupVersionKind``: apps/v1 for Deployment, ReplicaSet,
    StatefulSet, DaemonSet; batch/v1 for Job, CronJob; core (group ``""``) v1 for Pod; other
    kinds (custom resources) get a null group and version v1; an unknown (empty) kind, null."""
    if not kind:
        return None
    return {"group": _GROUPS.get(kind), "version": "v1", "kind": kind}


def kafka_operation(operation: str) -> str | None:
    """``consume`` / ``Read`` / ``describe-configs`` ... → a ``KafkaOperation`` name (None: unknown):
    the ClientIntents exporter's mapping, ``DescribeConfigs`` written ``DESCRIBE_CONFIGS``."""
    found = clientintents.kafka_operations([operation])
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", found[0]).upper() if found else None


def http_method(method: str) -> str | None:
    """An HTTP method → the ``HttpMethod`` enum name (``*`` is ALL; None for HEAD and others)."""
    name = "ALL" if method == "*" else method.upper()
    return name if name in _HTTP_METHODS else None


class _Labels:
    """Per-query label lookups (one ``labels_of`` call per identity) and the label options."""

    def __init__(
        self, source: LabelSource, include: Collection[str] | None, include_all: bool | None
    ) -> None:
        self._source = source
        self._include = frozenset(include or ())
        self._all = bool(include_all)
        self._cache: dict[WorkloadIdentity, Mapping[str, str]] = {}

    def of(self, identity: WorkloadIdentity) -> Mapping[str, str]:
        found = self._cache.get(identity)
        if found is None:
            found = self._cache[identity] = self._source.labels_of(identity)
        return found

    def shown(self, identity: WorkloadIdentity) -> list[Shape] | None:
        """``includeAllLabels`` → all; ``includeLabels`` → those keys; otherwise null."""
        if not self._all and not self._include:
            return None
        labels = self.of(identity)
        return [{"key": k, "value": v} for k, v in sorted(labels.items()) if self._all or k in self._include]

    def matches_any(self, identity: WorkloadIdentity, selectors: Collection[str]) -> bool:
        """Whether the identity has any of the labels: ``key`` (any value) or ``key=value``."""
        labels = self.of(identity)
        for selector in selectors:
            key, eq, value = selector.partition("=")
            if key in labels and (not eq or labels[key] == value):
                return True
        return False


def _identity(identity: WorkloadIdentity, labels: _Labels | None, service: str = "") -> Shape:
    return {
        "name": identity.name,
        "namespace": identity.namespace,
        "labels": labels.shown(identity) if labels is not None else None,
        "resolutionData": None,
        "podOwnerKind": pod_owner_kind(identity.kind),
        "kubernetesService": service or None,
    }


def _order(identity: WorkloadIdentity) -> tuple[str, str, str]:
    return identity.namespace, identity.name, identity.kind


def service_intents(
    edges: Iterable[Edge],
    label_source: LabelSource,
    *,
    include_labels: Collection[str] | None = None,
    include_all_labels: bool | None = None,
) -> list[Shape]:
    """``serviceIntents``: per client, the workloads it calls (Internet and AWS targets are left
    out: Otterize's shape has no place for them). Sorted by namespace, then name."""
    labels = _Labels(label_source, include_labels, include_all_labels)
    servers: dict[WorkloadIdentity, dict[WorkloadIdentity, str]] = {}
    for edge in edges:
        if isinstance(edge.target, WorkloadIdentity):
            called = servers.setdefault(edge.client, {})
            if edge.target_service or edge.target not in called:
                called[edge.target] = edge.target_service
    return [
        {
            "client": _identity(client, labels),
            "intents": [_identity(s, labels, called[s]) for s in sorted(called, key=_order)],
        }
        for client, called in sorted(servers.items(), key=lambda item: _order(item[0]))
    ]


def _kafka_topics(edge: Edge) -> list[Shape]:
    """Per topic (all principals together) the operations the broker *allowed*: a denied access is
    no intent (exporting it would grant what was refused); a topic with none is left out."""
    allowed: dict[str, set[str]] = {}
    for t in edge.kafka_topics:
        ops = {op for op in map(kafka_operation, t.operations) if op}
        if ops:
            allowed.setdefault(t.name, set()).update(ops)
    return [{"name": name, "operations": sorted(ops)} for name, ops in sorted(allowed.items())]


def _http_resources(edge: Edge) -> list[Shape]:
    return [{"path": r.path, "methods": [m for m in map(http_method, r.methods) if m]} for r in edge.http]


def _intent(client: Shape, server: Shape, kind: str | None, **details: Any) -> Shape:
    shape = {"client": client, "server": server, "type": kind, "resolutionData": None}
    shape.update(kafkaTopics=None, httpResources=None, awsActions=None)
    shape.update(details)
    return shape


def _intents_of(edge: Edge, labels: _Labels) -> list[Shape]:
    client = _identity(edge.client, labels)
    target = edge.target
    if isinstance(target, AwsTarget):
        server = _identity(WorkloadIdentity(edge.client.namespace, target.arn), None)
        return [_intent(client, server, "AWS", awsActions=list(edge.aws_actions))]
    if isinstance(target, InternetTarget):
        return []
    server = _identity(target, labels, edge.target_service)
    out = []
    topics = _kafka_topics(edge)
    if topics:
        out.append(_intent(client, server, "KAFKA", kafkaTopics=topics))
    if edge.http:
        out.append(_intent(client, server, "HTTP", httpResources=_http_resources(edge)))
    return out or [_intent(client, server, None)]


def intents(
    edges: Iterable[Edge],
    label_source: LabelSource,
    *,
    include_labels: Collection[str] | None = None,
    exclude_service_with_labels: Collection[str] | None = None,
    include_all_labels: bool | None = None,
    server: Mapping[str, str] | None = None,
) -> list[Shape]:
    """``intents``: one intent per edge and type. Workload targets: KAFKA with ``kafkaTopics``,
    HTTP with ``httpResources`` (an edge with both gives both), otherwise a null type. AWS
    targets: type AWS, the server named by the ARN in the client's namespace, ``awsActions``.
    Internet targets are left out. ``excludeServiceWithLabels`` drops intents whose client or
    (workload) server has any of the labels; ``server`` keeps intents to that server only."""
    labels = _Labels(label_source, include_labels, include_all_labels)
    exclude = list(exclude_service_with_labels or ())
    out: list[Shape] = []
    for edge in edges:
        if server is not None:
            target = edge.target
            name, namespace = (
                (target.arn, edge.client.namespace)
                if isinstance(target, AwsTarget)
                else (target.name, target.namespace)
                if isinstance(target, WorkloadIdentity)
                else (None, None)
            )
            if (name, namespace) != (server["name"], server["namespace"]):
                continue
        if exclude and (
            labels.matches_any(edge.client, exclude)
            or (isinstance(edge.target, WorkloadIdentity) and labels.matches_any(edge.target, exclude))
        ):
            continue
        out.extend(_intents_of(edge, labels))
    return out


def mapped_edge(edge: Edge) -> Shape:
    """One edge in our own shape (``MappedEdge``): the codec's edge document, as a JSON value."""
    shape: Shape = wire.plain(wire.to_doc(edge))
    return shape


def _labels(pairs: Iterable[tuple[str, str]]) -> list[Shape]:
    return [{"key": k, "value": v} for k, v in pairs]


def cluster_facts(facts: ClusterFacts) -> Shape:
    """``clusterFacts``: the model's facts in the schema's shape (labels as key/value pairs)."""
    return {
        "namespaces": [{"name": n.name, "labels": _labels(n.labels)} for n in facts.namespaces],
        "workloads": [
            {
                "namespace": w.workload.namespace,
                "name": w.workload.name,
                "kind": w.workload.kind,
                "labels": _labels(w.labels),
                "ports": [{"name": p.name, "port": p.port, "protocol": p.protocol} for p in w.ports],
                "hostNetwork": w.host_network,
                "ips": list(w.ips),
            }
            for w in facts.workloads
        ],
        "nodes": [{"name": n.name, "addresses": list(n.addresses)} for n in facts.nodes],
    }
