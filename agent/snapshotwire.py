"""The one JSON form of cluster facts and snapshots, both ways (msgspec structs, checked in C).

Snapshots come from :mod:`agent.model` (the mapper's store, :mod:`agent.mapper.snapshots`; a CLI
that builds one from the live map); this module turns them into the documents that the mapper's
GraphQL API answers (``snapshot``, ``loadSnapshot``), that ``network-mapper snapshot export``
writes, that the cloud keeps per cluster, and that ``check --edges`` / ``diff`` read from files —
and back. Edges are :mod:`agent.wire`'s edge documents (:class:`agent.wire.EdgeDoc`, the one codec)::

    {"apiVersion": "network-mapper/v1", "kind": "Snapshot", "version": 4, "name": "before",
     "takenAt": RFC 3339, "auto": false,
     "facts": {"namespaces": [{"name", "labels": {k: v}}],
               "workloads": [{"namespace", "name", "kind", "labels": {k: v},
                              "ports": [{"name", "port", "protocol"}], "hostNetwork": false, "ips": []}],
               "nodes": [{"name", "addresses": []}]},
     "edges": [<edge documents>]}

A JSON export (``network-mapper export --format json``: ``apiVersion`` network-mapper/v1 and
``edges``, no ``kind``) reads as a snapshot too: no name, no facts, ``takenAt`` its newest
``lastSeen`` (the earliest time there is when it has no edges).

``version`` is the edge document's (:data:`agent.wire.FORMAT_VERSION`); versions
:data:`agent.wire.ACCEPTED_VERSIONS` are read. Unknown fields are ignored (a newer writer's).
Writing is canonical: every list sorted (as the model keeps them), edges in the export's order.

Errors: :class:`agent.wire.WireError` (a ``ValueError``) whose message says what is wrong and
where (``$.edges[3].lastSeen``, ``$.facts.workloads[0].ports[1].port``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast

import msgspec

from agent import wire
from agent.model import (
    ClusterFacts,
    NamedPort,
    NamespaceFacts,
    NodeFacts,
    Snapshot,
    WorkloadFacts,
    WorkloadIdentity,
)
from agent.wiretime import EARLIEST, Time, WireError, moment, seconds

__all__ = [
    "API_VERSION",
    "KIND",
    "FactsDoc",
    "SnapshotDoc",
    "decode_facts",
    "decode_snapshot",
    "encode_facts",
    "encode_snapshot",
    "facts_document",
    "facts_from_document",
    "snapshot_document",
    "snapshot_from_document",
]

API_VERSION: Literal["network-mapper/v1"] = "network-mapper/v1"
KIND: Literal["Snapshot"] = "Snapshot"
MAX_NAME = 253
"""Longest name or label text a document may hold (a DNS subdomain's length)."""

Name = Annotated[str, msgspec.Meta(max_length=MAX_NAME)]
Labels = dict[
    Annotated[str, msgspec.Meta(max_length=MAX_NAME)], Annotated[str, msgspec.Meta(max_length=MAX_NAME)]
]


class _Doc(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Immutable, acyclic documents (as agent.wire's)."""


Protocol = Literal["TCP", "UDP", "SCTP"]  # a container port's (the API server allows no other)


class NamedPortDoc(_Doc, frozen=True, kw_only=True):
    name: Name = ""
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)]
    protocol: Protocol = "TCP"


class NamespaceDoc(_Doc, frozen=True, kw_only=True):
    name: Name
    labels: Labels = {}


class WorkloadDoc(_Doc, frozen=True, kw_only=True):
    namespace: Name
    name: Name
    kind: Name = ""
    labels: Labels = {}
    ports: tuple[NamedPortDoc, ...] = ()
    hostNetwork: bool = False
    ips: tuple[Name, ...] = ()


class NodeDoc(_Doc, frozen=True, kw_only=True):
    name: Name
    addresses: tuple[Name, ...] = ()


class FactsDoc(_Doc, frozen=True, kw_only=True):
    """The ``facts`` of a snapshot (and the mapper's ``clusterFacts`` in JSON)."""

    namespaces: tuple[NamespaceDoc, ...] = ()
    workloads: tuple[WorkloadDoc, ...] = ()
    nodes: tuple[NodeDoc, ...] = ()


class SnapshotDoc(_Doc, frozen=True, kw_only=True):
    apiVersion: Literal["network-mapper/v1"]
    kind: Literal["Snapshot"]
    version: int = wire.FORMAT_VERSION
    name: Name = ""
    takenAt: Time
    auto: bool = False
    facts: FactsDoc = FactsDoc()
    edges: tuple[wire.EdgeDoc, ...] = ()


class _Head(_Doc, frozen=True, kw_only=True):
    """What tells a snapshot document from a JSON export (everything else ignored)."""

    apiVersion: str = ""
    kind: str | None = None


_encoder = msgspec.json.Encoder()
_head_decoder = msgspec.json.Decoder(_Head)
_snapshot_decoder = msgspec.json.Decoder(SnapshotDoc)
_export_decoder = msgspec.json.Decoder(wire.EdgesDocument)
_facts_decoder = msgspec.json.Decoder(FactsDoc)


# --------------------------------------------------------------------------- model → document


def _labels(pairs: tuple[tuple[str, str], ...]) -> dict[str, str]:
    return dict(sorted(pairs))


def facts_doc(facts: ClusterFacts) -> FactsDoc:
    """The document struct of ``facts`` (every list sorted)."""
    return FactsDoc(
        namespaces=tuple(
            NamespaceDoc(name=n.name, labels=_labels(n.labels)) for n in sorted(facts.namespaces)
        ),
        workloads=tuple(
            WorkloadDoc(
                namespace=w.workload.namespace,
                name=w.workload.name,
                kind=w.workload.kind,
                labels=_labels(w.labels),
                ports=tuple(
                    NamedPortDoc(name=p.name, port=p.port, protocol=cast(Protocol, p.protocol))
                    for p in sorted(w.ports)
                ),
                hostNetwork=w.host_network,
                ips=tuple(sorted(w.ips)),
            )
            for w in sorted(facts.workloads)
        ),
        nodes=tuple(NodeDoc(name=n.name, addresses=tuple(sorted(n.addresses))) for n in sorted(facts.nodes)),
    )


def snapshot_doc(snapshot: Snapshot) -> SnapshotDoc:
    """The document struct of ``snapshot``; :class:`WireError` when its time is out of range."""
    return SnapshotDoc(
        apiVersion=API_VERSION,
        kind=KIND,
        name=snapshot.name,
        takenAt=moment(snapshot.taken_at),
        auto=snapshot.auto,
        facts=facts_doc(snapshot.facts),
        edges=wire.export_document(snapshot.edges).edges,
    )


def facts_document(facts: ClusterFacts) -> dict[str, Any]:
    """``facts`` as a JSON value."""
    value: dict[str, Any] = wire.plain(facts_doc(facts))
    return value


def snapshot_document(snapshot: Snapshot) -> dict[str, Any]:
    """``snapshot`` as a JSON value (the document above)."""
    value: dict[str, Any] = wire.plain(snapshot_doc(snapshot))
    return value


def encode_facts(facts: ClusterFacts) -> bytes:
    return _encoder.encode(facts_doc(facts))


def encode_snapshot(snapshot: Snapshot) -> bytes:
    """The snapshot document's JSON (canonical: equal snapshots give equal bytes)."""
    return _encoder.encode(snapshot_doc(snapshot))


# --------------------------------------------------------------------------- document → model


def _pairs(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def facts_of(doc: FactsDoc) -> ClusterFacts:
    """The facts a document struct describes (sorted, as the model keeps them)."""
    return ClusterFacts(
        namespaces=tuple(sorted(NamespaceFacts(n.name, _pairs(n.labels)) for n in doc.namespaces)),
        workloads=tuple(
            sorted(
                WorkloadFacts(
                    WorkloadIdentity(w.namespace, w.name, w.kind),
                    _pairs(w.labels),
                    tuple(sorted({NamedPort(p.name, p.port, p.protocol) for p in w.ports})),
                    w.hostNetwork,
                    tuple(sorted(set(w.ips))),
                )
                for w in doc.workloads
            )
        ),
        nodes=tuple(sorted(NodeFacts(n.name, tuple(sorted(set(n.addresses)))) for n in doc.nodes)),
    )


def _edges(docs: tuple[wire.EdgeDoc, ...]) -> tuple[Any, ...]:
    edges = []
    for i, doc in enumerate(docs):
        try:
            edges.append(wire.from_doc(doc))
        except WireError as error:
            raise WireError(f"{error} - at `$.edges[{i}]`") from error
    return tuple(edges)


def _version(version: int) -> None:
    if version not in wire.ACCEPTED_VERSIONS:
        raise WireError(f"version {version} is not one of {wire.ACCEPTED_VERSIONS} - at `$.version`")


def snapshot_of(doc: SnapshotDoc) -> Snapshot:
    _version(doc.version)
    try:
        taken_at = seconds(doc.takenAt)
    except WireError as error:
        raise WireError(f"{error} - at `$.takenAt`") from error
    return Snapshot(doc.name, taken_at, _edges(doc.edges), facts_of(doc.facts), doc.auto)


def _from_export(doc: wire.EdgesDocument) -> Snapshot:
    _version(doc.version)
    edges = _edges(doc.edges)
    taken_at = max((e.last_seen for e in edges), default=EARLIEST)
    return Snapshot("", taken_at, edges)


def _checked(decode: Any, data: Any) -> Any:
    try:
        return decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:  # what is wrong, and where
        raise WireError(str(error)) from error


def _is_export(head: _Head) -> bool:
    if head.kind is None:
        if head.apiVersion != API_VERSION:
            raise WireError(
                f"not a snapshot or a JSON export: apiVersion {head.apiVersion!r}, expected"
                f" {API_VERSION!r} - at `$.apiVersion`"
            )
        return True
    if head.kind != KIND:
        raise WireError(f"not a snapshot: kind {head.kind!r}, expected {KIND!r} - at `$.kind`")
    return False


def decode_snapshot(data: bytes | str) -> Snapshot:
    """A snapshot document's JSON (or a JSON export's) → the snapshot; :class:`WireError` naming the
    path of what is wrong."""
    if _is_export(_checked(_head_decoder.decode, data)):
        return _from_export(_checked(_export_decoder.decode, data))
    return snapshot_of(_checked(_snapshot_decoder.decode, data))


def snapshot_from_document(obj: Any) -> Snapshot:
    """A snapshot document (or a JSON export) given as a JSON value → the snapshot."""
    if not isinstance(obj, dict):
        raise WireError(f"Expected `object`, got `{type(obj).__name__}`")
    if _is_export(_checked(lambda v: msgspec.convert(v, _Head), obj)):
        return _from_export(_checked(lambda v: msgspec.convert(v, wire.EdgesDocument), obj))
    return snapshot_of(_checked(lambda v: msgspec.convert(v, SnapshotDoc), obj))


def decode_facts(data: bytes | str) -> ClusterFacts:
    return facts_of(_checked(_facts_decoder.decode, data))


def facts_from_document(obj: Any) -> ClusterFacts:
    """Facts given as a JSON value (``facts`` of a snapshot document) → the model's."""
    return facts_of(_checked(lambda v: msgspec.convert(v, FactsDoc), obj))
