"""The one wire codec: the edge document and the time format, both ways, and their JSON Schema.

Edges come from :mod:`agent.model` (the resolver's output, the stores' merge results); this
module turns them into the edge document that every stage writes and reads — the GraphQL
``edges`` query, the JSON export, the CLI, the mapper's store, the uploader's batches, the
cloud's ingest, store and graph routes, and the console — and back. It imports only
:mod:`agent.model`, :mod:`agent.wiretime` and msgspec: every stage sits above it.

The document is a set of typed structs (msgspec, checked while decoding, in C)::

    {"client": {"namespace", "name", "kind"},
     "target": {"type": "workload", "name", "namespace", "kind"}
             | {"type": "internet", "dnsName", "ips", "port"}
             | {"type": "aws", "arn"},
     "methods": [...], "firstSeen": RFC 3339, "lastSeen": RFC 3339, "count": n,
     "http": [{"path", "methods", "principals", "statuses"}],
     "kafkaTopics": [{"name", "operations", "principal", "denied"}],
     "awsActions": [...], "targetService": "", "ambiguous": false, "live": false,
     "targetServiceSeen": RFC 3339 | null, "truncated": false, "ports": [443, ...],
     "provenance": [{"method", "firstSeen", "lastSeen", "count"}]}

``target`` is a tagged union on ``type``. Every key is always written and :func:`to_doc` writes
lists sorted, so equal edges give byte-equal text (:func:`canonical` makes any document so).
``live`` is the uploader's liveness flag (``agent.mapper.uploader``); elsewhere it is false.
``provenance`` says per method when it saw the edge and how often (one per method, sorted by
method); empty in a document written before version 5, and then nothing is derived for it.
The mapper's store keeps the same documents in MessagePack (:func:`pack_edge`), read back in half
the time of JSON.

Times (:func:`format_time`, :func:`parse_time`, :data:`RANGE`) are :mod:`agent.wiretime`'s,
re-exported here.

Bounds: the structs bound what a decoder can check in C (counts in [0, 2**53), ports, list
lengths: :data:`agent.model.MAX_DETAILS`); :func:`agent.wirechecks.problems` checks the rest and
names each bad field. A document whose detail sets were cut by the merge's bounds says so:
``truncated``.

Versions: :data:`FORMAT_VERSION` is the version of the edge document and of the documents that
carry it (the upload body, the JSON export). Version 1 bodies (no ``version``) decode with the
same structs: the fields added since have defaults.

Errors::

    ValueError
    └── WireError       bytes that are not a valid document (msgspec's message: what and where;
                        defined in agent.wiretime)
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from itertools import pairwise
from typing import Annotated, Any, Final, Literal, TypeVar

import msgspec

from agent.model import (
    MAX_DETAILS,
    MAX_VALUES,
    AwsTarget,
    Edge,
    HttpResource,
    InternetTarget,
    KafkaTopic,
    Method,
    MethodSeen,
    Target,
    WorkloadIdentity,
    merge_edges,
    merged_provenance,
    new_edge,
)
from agent.wiretime import EARLIEST, END, RANGE, Time, WireError, format_time, moment, parse_time, seconds

__all__ = [  # the time format (agent.wiretime) is part of the codec: re-exported
    "ACCEPTED_VERSIONS",
    "EARLIEST",
    "END",
    "EXPORT_API_VERSION",
    "FORMAT_VERSION",
    "MAX_COUNT",
    "RANGE",
    "AwsTargetDoc",
    "Details",
    "EdgeDoc",
    "EdgesDocument",
    "IngestBody",
    "InternetTargetDoc",
    "MethodName",
    "MethodSeenDoc",
    "TargetDoc",
    "Time",
    "WireError",
    "WorkloadTargetDoc",
    "canonical",
    "decode_doc",
    "decode_docs",
    "decode_ingest",
    "document_from_plain",
    "edge_from_plain",
    "edge_schema",
    "encode",
    "export_document",
    "format_time",
    "from_doc",
    "ingest_schema",
    "key_bytes",
    "key_for",
    "key_hash",
    "key_of",
    "moment",
    "pack_edge",
    "parse_time",
    "plain",
    "seconds",
    "to_doc",
    "unpack_edge",
    "unpack_edges",
]

FORMAT_VERSION = 5
"""The edge document's version. 5 adds the ``provenance`` per method (empty: unknown); 4 adds the
server ``ports`` (TCP; empty: unknown); 3 adds the HTTP resources' ``principals`` and ``statuses``
and the Kafka topics' ``principal`` and ``denied``; 2 added ``targetServiceSeen`` and
``truncated``; 1 had no version on the wire."""
ACCEPTED_VERSIONS = (1, 2, 3, 4, 5)
"""Versions of upload bodies the cloud reads: all so far (the same structs read them; the fields a
version lacks take their defaults)."""
EXPORT_API_VERSION: Final = "network-mapper/v1"
"""``apiVersion`` of the JSON export document (its edges are this module's edge documents)."""
MAX_COUNT = 2**53 - 1
"""Counts lie in [0, 2**53): JSON readers that hold numbers as doubles (the console's) are exact."""


# --------------------------------------------------------------------------- the edge document

D = TypeVar("D")
Details = Annotated[tuple[D, ...], msgspec.Meta(max_length=MAX_DETAILS)]
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
MethodName = Literal["dns", "tcp", "socket-scan", "kafka", "istio", "aws"]


class _Doc(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Documents are immutable and hold no cycles (so the collector need not track them). Each
    subclass repeats ``frozen`` and ``kw_only``, which msgspec inherits, for the type checker."""


class WorkloadTargetDoc(_Doc, frozen=True, kw_only=True, tag="workload", tag_field="type"):
    name: str
    namespace: str
    kind: str = ""


class InternetTargetDoc(_Doc, frozen=True, kw_only=True, tag="internet", tag_field="type"):
    dnsName: str = ""  # the document's names are the wire's (camelCase)
    ips: tuple[str, ...] = ()
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0


class AwsTargetDoc(_Doc, frozen=True, kw_only=True, tag="aws", tag_field="type"):
    arn: str


TargetDoc = WorkloadTargetDoc | InternetTargetDoc | AwsTargetDoc


class MethodSeenDoc(_Doc, frozen=True, kw_only=True):
    """What one method saw of an edge (:class:`agent.model.MethodSeen`)."""

    method: MethodName
    firstSeen: Time
    lastSeen: Time
    count: Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)] = 1


class EdgeDoc(_Doc, frozen=True, kw_only=True):
    """One edge (see the module docstring). Unknown fields are ignored (a newer writer's)."""

    client: WorkloadIdentity  # the model's own: {"namespace", "name", "kind"}
    target: TargetDoc
    methods: tuple[MethodName, ...] = ()
    firstSeen: Time
    lastSeen: Time
    count: Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)] = 1
    http: Details[HttpResource] = ()  # the model's own: {"path", "methods"}
    kafkaTopics: Details[KafkaTopic] = ()  # the model's own: {"name", "operations"}
    awsActions: Details[str] = ()
    targetService: str = ""
    ambiguous: bool = False
    live: bool = False
    targetServiceSeen: Time | None = None  # when targetService was last seen, if before lastSeen
    truncated: bool = False  # detail sets were cut to their bounds (added in version 2, default false)
    ports: Details[Port] = ()  # the TCP server ports seen, sorted (added in version 4; empty: unknown)
    # per method: first and last seen, count; sorted by method (added in version 5; empty: unknown)
    provenance: Annotated[tuple[MethodSeenDoc, ...], msgspec.Meta(max_length=len(Method))] = ()


class EdgesDocument(_Doc, frozen=True, kw_only=True):
    """The JSON export (``network-mapper export --format json``, the cloud's ``format=json``)."""

    apiVersion: Literal["network-mapper/v1"] = EXPORT_API_VERSION
    version: int = FORMAT_VERSION
    edges: tuple[EdgeDoc, ...] = ()


class IngestBody(_Doc, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/ingest``: a batch of edges from a cluster's uploader (or, with no edges and a
    ``seenAt``, its heartbeat). ``version`` absent: a version 1 uploader."""

    version: int = 1
    batchId: str
    anonymized: bool = False
    seenAt: Time | None = None
    edges: tuple[EdgeDoc, ...] = ()


_encoder = msgspec.json.Encoder()
_edge_decoder = msgspec.json.Decoder(EdgeDoc)
_docs_decoder = msgspec.json.Decoder(list[EdgeDoc])
_ingest_decoder = msgspec.json.Decoder(IngestBody)
_plain_decoder = msgspec.json.Decoder()
_packer = msgspec.msgpack.Encoder()
_unpacker = msgspec.msgpack.Decoder(EdgeDoc)
_many_unpacker = msgspec.msgpack.Decoder(list[EdgeDoc])


# --------------------------------------------------------------------------- model ⇄ document

K = TypeVar("K")
V = TypeVar("V")


class _Bounded(dict[K, V]):
    """A cache emptied when full: a cluster has few workloads, method sets and HTTP paths, each in
    many edges, so their conversions are worth keeping (from_doc is the stores' bulk-read path)."""

    def __setitem__(self, key: K, value: V) -> None:
        if len(self) >= 4096:
            self.clear()
        super().__setitem__(key, value)


_identities: _Bounded[WorkloadTargetDoc, WorkloadIdentity] = _Bounded()
_target_docs: _Bounded[WorkloadIdentity, WorkloadTargetDoc] = _Bounded()
_method_sets: _Bounded[tuple[str, ...], frozenset[Method]] = _Bounded()
_method_names: _Bounded[frozenset[Method], tuple[MethodName, ...]] = _Bounded()


def _identity(doc: WorkloadTargetDoc) -> WorkloadIdentity:
    found = _identities.get(doc)
    if found is None:
        found = _identities[doc] = WorkloadIdentity(doc.namespace, doc.name, doc.kind)
    return found


def _target_doc(identity: WorkloadIdentity) -> WorkloadTargetDoc:
    found = _target_docs.get(identity)
    if found is None:
        found = WorkloadTargetDoc(name=identity.name, namespace=identity.namespace, kind=identity.kind)
        _target_docs[identity] = found
    return found


def _methods(names: tuple[str, ...]) -> frozenset[Method]:
    found = _method_sets.get(names)
    if found is None:
        found = _method_sets[names] = frozenset([Method(m) for m in names])
    return found


def _method_names_of(methods: frozenset[Method]) -> tuple[MethodName, ...]:
    methods = methods if type(methods) is frozenset else frozenset(methods)  # a hand-built set
    found = _method_names.get(methods)
    if found is None:
        found = _method_names[methods] = tuple(sorted(str(m) for m in methods))  # type: ignore[misc]
    return found


def _sorted_http(r: HttpResource) -> HttpResource:
    return HttpResource(
        r.path, tuple(sorted(r.methods)), tuple(sorted(r.principals)), tuple(sorted(r.statuses))
    )


def _sorted_topic(t: KafkaTopic) -> KafkaTopic:
    return KafkaTopic(t.name, tuple(sorted(t.operations)), t.principal, tuple(sorted(t.denied)))


def _path(r: HttpResource) -> str:
    return r.path


def _topic_key(t: KafkaTopic) -> tuple[str, str]:
    return (t.name, t.principal)


def _canonical_values(*values: tuple[Any, ...]) -> bool:
    """Each of ``values`` strictly sorted and within :data:`agent.model.MAX_VALUES`."""
    return all(len(v) <= MAX_VALUES and (len(v) < 2 or _strictly_sorted(v)) for v in values)


def _method_seen_doc(seen: MethodSeen) -> MethodSeenDoc:
    return MethodSeenDoc(
        method=str(seen.method),  # type: ignore[arg-type]  # a Method's value is a MethodName
        firstSeen=moment(seen.first_seen),
        lastSeen=moment(seen.last_seen),
        count=min(seen.count, MAX_COUNT),
    )


def _provenance_docs(provenance: tuple[MethodSeen, ...]) -> tuple[MethodSeenDoc, ...]:
    """Sorted by method, one per method (repeats of a hand-built edge merged)."""
    if len(provenance) > 1 and not _strictly_sorted(s.method for s in provenance):
        provenance = merged_provenance(provenance, ())
    return tuple(map(_method_seen_doc, provenance))


def _method_seen(doc: MethodSeenDoc) -> MethodSeen:
    first, last = doc.firstSeen.timestamp(), doc.lastSeen.timestamp()
    if not (EARLIEST <= first < END and EARLIEST <= last < END):
        raise WireError(f"time out of range {RANGE}: {doc.firstSeen} or {doc.lastSeen}")
    return MethodSeen(Method(doc.method), first, last, doc.count)


def to_doc(edge: Edge, live: bool = False) -> EdgeDoc:
    """The document of ``edge`` (canonical: every list sorted)."""
    t = edge.target
    target: TargetDoc
    if type(t) is WorkloadIdentity:
        target = _target_doc(t)
    elif type(t) is InternetTarget:
        target = InternetTargetDoc(dnsName=t.dns_name, ips=t.ips, port=t.port)
    else:
        target = AwsTargetDoc(arn=t.arn)  # type: ignore[union-attr]  # the union's last member
    return EdgeDoc(
        client=edge.client,
        target=target,
        methods=_method_names_of(edge.methods),
        firstSeen=moment(edge.first_seen),
        lastSeen=moment(edge.last_seen),
        count=min(edge.count, MAX_COUNT),  # saturates: a decoder refuses more
        http=tuple(sorted(map(_sorted_http, edge.http), key=_path)) if edge.http else (),
        kafkaTopics=tuple(sorted(map(_sorted_topic, edge.kafka_topics), key=_topic_key))
        if edge.kafka_topics
        else (),
        awsActions=tuple(sorted(edge.aws_actions)),
        targetService=edge.target_service,
        ambiguous=edge.ambiguous,
        live=live,
        targetServiceSeen=moment(edge.target_service_seen) if edge.target_service_seen else None,
        truncated=edge.truncated,
        ports=tuple(sorted(edge.ports)),
        provenance=_provenance_docs(edge.provenance) if edge.provenance else (),
    )


def _target(doc: TargetDoc) -> Target:
    if type(doc) is WorkloadTargetDoc:
        return _identity(doc)
    if type(doc) is InternetTargetDoc:
        return InternetTarget(doc.dnsName, doc.ips, doc.port)
    return AwsTarget(doc.arn)  # type: ignore[union-attr]  # the union's last member


def from_doc(doc: EdgeDoc) -> Edge:
    """The edge a document describes; :class:`WireError` when a time lies outside :data:`RANGE`."""
    # The stores' bulk reads run this for every edge: cache lookups inlined, the fast constructor.
    first, last, target = doc.firstSeen.timestamp(), doc.lastSeen.timestamp(), doc.target
    if not (EARLIEST <= first < END and EARLIEST <= last < END):
        raise WireError(f"time out of range {RANGE}: {doc.firstSeen} or {doc.lastSeen}")
    return new_edge(
        doc.client,
        (_identities.get(target) or _identity(target))
        if type(target) is WorkloadTargetDoc
        else _target(target),
        first,
        last,
        _method_sets.get(doc.methods) or _methods(doc.methods),
        doc.count,
        doc.http,
        doc.kafkaTopics,
        doc.awsActions,
        doc.targetService,
        doc.ambiguous,
        seconds(doc.targetServiceSeen) if doc.targetServiceSeen is not None else 0.0,
        doc.truncated,
        doc.ports,
        tuple(map(_method_seen, doc.provenance)) if doc.provenance else (),
    )


def _strictly_sorted(values: Iterable[Any]) -> bool:
    return all(a < b for a, b in pairwise(values))


def _utc_in_range(at: datetime) -> bool:
    return at.tzinfo is UTC and 2000 <= at.year < 2100


def canonical(doc: EdgeDoc) -> EdgeDoc:
    """``doc`` as :func:`to_doc` writes it (``doc`` itself when it is already), so that equal edges
    have byte-equal text whoever wrote them: times in UTC, every list strictly sorted (repeated
    HTTP paths, Kafka topics and provenance methods merged, values past
    :data:`agent.model.MAX_VALUES` cut), no ``targetServiceSeen`` equal to ``lastSeen``.
    :class:`WireError` when a time lies outside :data:`RANGE`."""
    first, last, http, topics, aws = doc.firstSeen, doc.lastSeen, doc.http, doc.kafkaTopics, doc.awsActions
    if (
        first.tzinfo is UTC
        and last.tzinfo is UTC
        and 2000 <= first.year < 2100
        and 2000 <= last.year < 2100
        and doc.targetServiceSeen is None
        and _method_names_of(_methods(doc.methods)) == doc.methods
        and (len(aws) < 2 or _strictly_sorted(aws))
        and (len(doc.ports) < 2 or _strictly_sorted(doc.ports))
        and all(_utc_in_range(s.firstSeen) and _utc_in_range(s.lastSeen) for s in doc.provenance)
        and (len(doc.provenance) < 2 or _strictly_sorted(s.method for s in doc.provenance))
        and (
            not http
            or (
                _strictly_sorted(r.path for r in http)
                and all(_canonical_values(r.methods, r.principals, r.statuses) for r in http)
            )
        )
        and (
            not topics
            or (
                _strictly_sorted(t.key for t in topics)
                and all(_canonical_values(t.operations, t.denied) for t in topics)
            )
        )
    ):
        return doc
    edge = from_doc(doc)
    return to_doc(merge_edges(edge, edge), doc.live)  # an edge merged with itself is canonical


# --------------------------------------------------------------------------- keys


def key_for(c: WorkloadIdentity, t: Target) -> bytes:
    """The canonical bytes of the edge key ``(client, target)`` (:attr:`agent.model.Edge.key`):
    JSON of ``[client namespace, name, kind, target type, namespace, name, kind, dnsName, ips,
    port, arn]``, the fields a target kind lacks empty. :func:`key_of` reads it back."""
    if type(t) is WorkloadIdentity:
        row: tuple[Any, ...] = ("workload", t.namespace, t.name, t.kind, "", (), 0, "")
    elif type(t) is InternetTarget:
        row = ("internet", "", "", "", t.dns_name, t.ips, t.port, "")
    else:
        row = ("aws", "", "", "", "", (), 0, t.arn)  # type: ignore[union-attr]
    return _encoder.encode((c.namespace, c.name, c.kind, *row))


def key_bytes(doc: EdgeDoc) -> bytes:
    """:func:`key_for` of a document's client and target."""
    return key_for(doc.client, _target(doc.target))


_key_decoder = msgspec.json.Decoder(
    tuple[
        str, str, str, Literal["workload", "internet", "aws"], str, str, str, str, tuple[str, ...], int, str
    ]
)


def key_of(key: bytes | str) -> tuple[WorkloadIdentity, Target]:
    """The ``(client, target)`` of a key written by :func:`key_for` (:class:`WireError` if not one)."""
    try:
        c_ns, c_name, c_kind, kind, t_ns, t_name, t_kind, dns, ips, port, arn = _key_decoder.decode(key)
    except msgspec.DecodeError as error:
        raise WireError(f"not an edge key: {error}") from error
    client = WorkloadIdentity(c_ns, c_name, c_kind)
    if kind == "workload":
        return client, WorkloadIdentity(t_ns, t_name, t_kind)
    return client, InternetTarget(dns, ips, port) if kind == "internet" else AwsTarget(arn)


def key_hash(key: bytes) -> bytes:
    """16 bytes of SHA-256 of a key: how the cloud's stores index edges."""
    return hashlib.sha256(key).digest()[:16]


# --------------------------------------------------------------------------- bytes and JSON values


def encode(value: Any) -> bytes:
    """JSON of any document struct (or of plain values holding them)."""
    return _encoder.encode(value)


def plain(value: Any) -> Any:
    """The JSON value of a document struct (dicts, lists, strings ...), as ``json.loads`` gives it."""
    return _plain_decoder.decode(_encoder.encode(value))


def _checked(decode: Any, data: Any) -> Any:
    try:
        return decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:  # what is wrong, and where
        raise WireError(str(error)) from error


def decode_doc(data: bytes | str) -> EdgeDoc:
    doc: EdgeDoc = _checked(_edge_decoder.decode, data)
    return doc


def decode_docs(texts: Iterable[bytes]) -> list[EdgeDoc]:
    """Many edge documents (each one's JSON) in one decoding pass."""
    docs: list[EdgeDoc] = _checked(_docs_decoder.decode, b"[" + b",".join(texts) + b"]")
    return docs


def decode_ingest(data: bytes | str) -> IngestBody:
    """An upload body (versions :data:`ACCEPTED_VERSIONS`), checked in one pass."""
    body: IngestBody = _checked(_ingest_decoder.decode, data)
    if body.version not in ACCEPTED_VERSIONS:
        raise WireError(f"upload body version {body.version} is not one of {ACCEPTED_VERSIONS}")
    return body


def edge_from_plain(value: Any) -> Edge:
    """The edge of an edge document given as a JSON value."""
    return from_doc(_checked(lambda v: msgspec.convert(v, EdgeDoc), value))


def document_from_plain(value: Any) -> list[Edge]:
    """The edges of a JSON export given as a JSON value (:class:`WireError` if it is not one)."""
    document: EdgesDocument = _checked(lambda v: msgspec.convert(v, EdgesDocument), value)
    return [from_doc(doc) for doc in document.edges]


def export_document(edges: Iterable[Edge]) -> EdgesDocument:
    """The JSON export of ``edges``: by client, then workload, Internet and AWS targets, then the
    whole edge (a total order)."""
    return EdgesDocument(edges=tuple(sorted((to_doc(e) for e in edges), key=_export_order)))


def _export_order(doc: EdgeDoc) -> tuple[Any, ...]:
    c, t = doc.client, doc.target
    if type(t) is WorkloadTargetDoc:
        target: tuple[Any, ...] = (0, t.namespace, t.name, t.kind)
    elif type(t) is InternetTargetDoc:
        target = (1, t.dnsName, t.ips, t.port)
    else:
        target = (2, t.arn)  # type: ignore[union-attr]  # the union's last member
    return (c.namespace, c.name, c.kind, target, _encoder.encode(doc))


def pack_edge(edge: Edge) -> bytes:
    """The edge document in MessagePack: the mapper store's form of it."""
    return _packer.encode(to_doc(edge))


def unpack_edge(packed: bytes) -> Edge:
    return from_doc(_checked(_unpacker.decode, packed))


def _readable(doc: EdgeDoc) -> Edge | None:
    try:
        return from_doc(doc)
    except WireError:
        return None


def _unpacked(packed: bytes) -> Edge | None:
    try:
        return unpack_edge(packed)
    except WireError:
        return None


def unpack_edges(packed: Sequence[bytes]) -> list[Edge | None]:
    """Many edges packed by :func:`pack_edge`, in one decoding pass, with the collector paused: the
    thousands of new, acyclic objects would otherwise trigger collections that walk every object
    the process holds (a mapper's whole cluster state), which cost more than the decoding
    (bench/bench_store.py). ``None`` in place of one that no longer reads (written by an older
    version with a time now out of range, or damaged): a stored value must not break a read."""
    paused = gc.isenabled()
    gc.disable()
    try:
        try:
            docs: list[EdgeDoc] = _many_unpacker.decode(_packer.encode([msgspec.Raw(p) for p in packed]))
        except (msgspec.DecodeError, msgspec.ValidationError):
            return [_unpacked(p) for p in packed]  # find the bad ones
        return [_readable(doc) for doc in docs]
    finally:
        if paused:
            gc.enable()


# --------------------------------------------------------------------------- JSON Schema


def edge_schema() -> dict[str, Any]:
    """JSON Schema of one edge document, self-contained (no references)."""
    return _schema(EdgeDoc)


def ingest_schema() -> dict[str, Any]:
    """JSON Schema of an upload body, self-contained (no references)."""
    return _schema(IngestBody)


def _schema(cls: type) -> dict[str, Any]:
    """msgspec's schema of ``cls`` with every ``$ref`` replaced by its definition, so that it can
    be embedded anywhere (an OpenAPI document, say); a discriminator keeps its property name only
    (its mapping holds references)."""
    (top,), definitions = msgspec.json.schema_components([cls], ref_template="{name}")

    def inline(value: Any) -> Any:
        if isinstance(value, list):
            return [inline(v) for v in value]
        if not isinstance(value, dict):
            return value
        if "$ref" in value:
            return inline(definitions[value["$ref"]])
        return {
            k: {"propertyName": v["propertyName"]} if k == "discriminator" else inline(v)
            for k, v in value.items()
        }

    schema: dict[str, Any] = inline(top)
    return schema
