"""What the CLI asks the mapper's GraphQL API, and its answers as model objects (pure).

The CLI sends :data:`EDGES_QUERY` (our additive ``edges`` query, beside the Otterize queries),
whose answer is the codec's edge documents (:mod:`agent.wire`), field for field, and turns them
into :class:`~agent.model.Edge` objects for the list view, the graph and the exporters in
:mod:`agent.exports`; :data:`LABELS_QUERY` gives the workloads' labels for NetworkPolicies.
:data:`CLUSTER_FACTS_QUERY` gives what ``network-mapper check`` evaluates policies with (namespace
labels, workload labels and named ports, node addresses) as :class:`~agent.model.ClusterFacts`; the
snapshot queries and mutations serve ``network-mapper snapshot`` and ``diff`` (the documents
themselves are :mod:`agent.snapshotwire`'s).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent import wire
from agent.model import (
    ClusterFacts,
    Edge,
    NamedPort,
    NamespaceFacts,
    NodeFacts,
    WorkloadFacts,
    WorkloadIdentity,
)
from agent.wiretime import parse_time

EDGES_QUERY = """
query Edges($namespaces: [String!]) {
  edges(namespaces: $namespaces) {
    client { name namespace kind }
    target { type name namespace kind dnsName ips port arn }
    methods firstSeen lastSeen count targetService targetServiceSeen ambiguous live
    http { path methods principals statuses }
    kafkaTopics { name operations principal denied }
    awsActions ports truncated
    provenance { method firstSeen lastSeen count }
  }
}
"""

LABELS_QUERY = """
query Labels($namespaces: [String!]) {
  intents(namespaces: $namespaces, includeAllLabels: true) {
    client { name namespace labels { key value } }
    server { name namespace labels { key value } }
  }
}
"""

RESET_MUTATION = "mutation ResetCapture { resetCapture }"

CLUSTER_FACTS_QUERY = """
query ClusterFacts {
  clusterFacts {
    namespaces { name labels { key value } }
    workloads { namespace name kind labels { key value } ports { name port protocol } hostNetwork ips }
    nodes { name addresses }
  }
}
"""

_SNAPSHOT_INFO = "name takenAt auto edges"
SNAPSHOTS_QUERY = f"query Snapshots {{ snapshots {{ {_SNAPSHOT_INFO} }} }}"
SNAPSHOT_QUERY = "query Snapshot($name: String!) { snapshot(name: $name) }"
SAVE_SNAPSHOT_MUTATION = (
    f"mutation SaveSnapshot($name: String!) {{ saveSnapshot(name: $name) {{ {_SNAPSHOT_INFO} }} }}"
)
LOAD_SNAPSHOT_MUTATION = (
    "mutation LoadSnapshot($document: String!) "
    f"{{ loadSnapshot(document: $document) {{ {_SNAPSHOT_INFO} }} }}"
)
DELETE_SNAPSHOT_MUTATION = "mutation DeleteSnapshot($name: String!) { deleteSnapshot(name: $name) }"


class EdgeFormatError(ValueError):
    """The mapper's answer does not have the shape this CLI expects (version skew?)."""


@dataclass(frozen=True, slots=True)
class SnapshotSummary:
    """A snapshot the mapper keeps, as ``snapshots`` lists it: ``edges`` is its edge count."""

    name: str
    taken_at: float
    auto: bool
    edges: int


def edge_from_json(raw: dict[str, Any]) -> Edge:
    """An edge of the ``edges`` answer; :class:`EdgeFormatError` naming what is wrong."""
    try:  # the API answers null for no Service, where the document has ""
        return wire.edge_from_plain({**raw, "targetService": raw.get("targetService") or ""})
    except wire.WireError as exc:
        raise EdgeFormatError(f"unexpected edge from the mapper: {exc}") from exc


def labels_from_intents(intents: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, str]]:
    """``{(namespace, name): labels}`` from an ``intents(includeAllLabels: true)`` answer."""
    found: dict[tuple[str, str], dict[str, str]] = {}
    for intent in intents:
        for side in ("client", "server"):
            who = intent[side]
            found[(who["namespace"], who["name"])] = {
                lab["key"]: lab["value"] for lab in who.get("labels") or ()
            }
    return found


def _pairs(raw: Any) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(lab["key"]), str(lab["value"])) for lab in raw or ()))


def facts_from_json(raw: dict[str, Any]) -> ClusterFacts:
    """The ``clusterFacts`` answer; :class:`EdgeFormatError` when it is not one."""
    try:
        namespaces = tuple(sorted(NamespaceFacts(n["name"], _pairs(n["labels"])) for n in raw["namespaces"]))
        workloads = tuple(
            sorted(
                (
                    WorkloadFacts(
                        WorkloadIdentity(w["namespace"], w["name"], w["kind"]),
                        _pairs(w["labels"]),
                        tuple(NamedPort(p["name"] or "", int(p["port"]), p["protocol"]) for p in w["ports"]),
                        bool(w["hostNetwork"]),
                        tuple(w["ips"]),
                    )
                    for w in raw["workloads"]
                ),
                key=lambda f: f.workload,
            )
        )
        nodes = tuple(sorted(NodeFacts(n["name"], tuple(n["addresses"])) for n in raw["nodes"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise EdgeFormatError(
            f"unexpected clusterFacts from the mapper: {type(exc).__name__}: {exc}"
        ) from exc
    return ClusterFacts(namespaces, workloads, nodes)


def snapshot_summary(raw: dict[str, Any]) -> SnapshotSummary:
    """A ``SnapshotInfo`` of the answer; :class:`EdgeFormatError` when it is not one."""
    try:
        return SnapshotSummary(
            str(raw["name"]), parse_time(raw["takenAt"]), bool(raw["auto"]), int(raw["edges"])
        )
    except (KeyError, TypeError, ValueError) as exc:  # WireError is a ValueError
        raise EdgeFormatError(
            f"unexpected snapshot info from the mapper: {type(exc).__name__}: {exc}"
        ) from exc
