"""The one wire codec: the edge document and the time format, both ways, and their JSON Schema.

Edges come from :mod:`agent.model` (the resolver's output, the stores' merge results); this
module turns them into the edge document that every stage writes and reads — the GraphQL
``edges`` query, the JSON export, the CLI, the mapper's store, the uploader's batches, the
cloud's ingest, store and graph routes, and the console — and back. It imports only
:mod:`agent.model` and msgspec: every stage sits above it.

The document is a set of typed structs (msgspec, checked while decoding, in C)::

    {"client": {"name", "namespace", "kind"},
     "target": {"type": "workload", "name", "namespace", "kind"}
             | {"type": "internet", "dnsName", "ips", "port"}
             | {"type": "aws", "arn"},
     "methods": [...], "firstSeen": RFC 3339, "lastSeen": RFC 3339, "count": n,
     "http": [{"path", "methods"}], "kafkaTopics": [{"name", "operations"}],
     "awsActions": [...], "targetService": "", "ambiguous": false, "live": false,
     "targetServiceSeen": RFC 3339 | null}

``target`` is a tagged union on ``type``. Every key is always written; lists are written sorted
(:func:`to_doc`), so equal edges give byte-equal text. ``live`` is the uploader's liveness flag
(``agent.mapper.uploader``); elsewhere it is false.

Times (:func:`format_time`, :func:`parse_time`) are RFC 3339: written in UTC with ``Z`` and
microseconds (the fraction left out when it is zero), read with any offset and any fraction
(rounded to microseconds), and always within [1970, 10000) so every time read can be written
back with a four-digit year.

Versions: :data:`FORMAT_VERSION` is the version of the edge document and of the documents that
carry it (the upload body, the JSON export). Version 1 bodies (no ``version``) decode with the
same structs: the fields added since have defaults.

Errors::

    ValueError
    └── WireError       bytes that are not a valid document (msgspec's message: what and where)
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from itertools import pairwise
from typing import Annotated, Any, Final, Literal, TypeVar

import msgspec

from agent.model import (
    AwsTarget,
    Edge,
    HttpResource,
    InternetTarget,
    KafkaTopic,
    Method,
    Target,
    WorkloadIdentity,
    merge_edges,
    new_edge,
)

FORMAT_VERSION = 2
"""The edge document's version. 1: the same fields, no version on the wire."""
ACCEPTED_VERSIONS = (1, 2)
"""Versions of upload bodies the cloud reads (the previous one, for one release)."""
EXPORT_API_VERSION: Final = "network-mapper/v1"
"""``apiVersion`` of the JSON export document (its edges are this module's edge documents)."""

EARLIEST, END = 0.0, 253402300800.0
"""Times lie in [1970-01-01, 10000-01-01): every time read can be written with a four-digit year."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_fromtimestamp = datetime.fromtimestamp


class WireError(ValueError):
    """Bytes or values that are not a valid edge document (the message says what and where)."""


# --------------------------------------------------------------------------- time


def format_time(timestamp: float) -> str:
    """Epoch seconds → ``2026-11-28T02:15:06.918878Z`` (UTC, rounded to the microsecond)."""
    return _encoder.encode(moment(timestamp)).decode()[1:-1]


def moment(timestamp: float) -> datetime:
    """Epoch seconds → an aware ``datetime`` in UTC (how the documents hold times)."""
    if not EARLIEST <= timestamp < END:
        raise WireError(f"time out of range [1970, 10000): {timestamp!r}")
    return _fromtimestamp(timestamp, UTC)


def _seconds(moment: datetime) -> float:
    # For an aware datetime: its exact microseconds since the epoch / 10**6, correctly rounded.
    seconds = moment.timestamp()
    if not EARLIEST <= seconds < END:
        raise WireError(f"time out of range [1970, 10000): {moment.isoformat()}")
    return seconds


def parse_time(text: object) -> float:
    """RFC 3339 (an offset required; any fraction, rounded to microseconds) → epoch seconds.

    Raises :class:`WireError` (a ``ValueError``) naming the text when it is not RFC 3339 or lies
    outside [1970, 10000)."""
    if not isinstance(text, str):
        raise WireError(f"a time must be an RFC 3339 string, got {type(text).__name__}")
    try:
        moment = _time_decoder.decode(_encoder.encode(text))
    except msgspec.ValidationError as error:
        raise WireError(f"not an RFC 3339 time with an offset: {text[:64]!r}") from error
    return _seconds(moment)


# --------------------------------------------------------------------------- the edge document

Time = Annotated[datetime, msgspec.Meta(tz=True)]
MethodName = Literal["dns", "tcp", "socket-scan", "kafka", "istio", "aws"]
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Count = Annotated[int, msgspec.Meta(ge=0)]


class WorkloadDoc(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    name: str
    namespace: str
    kind: str = ""


class WorkloadTargetDoc(
    msgspec.Struct, frozen=True, kw_only=True, gc=False, tag="workload", tag_field="type"
):
    name: str
    namespace: str
    kind: str = ""


class InternetTargetDoc(
    msgspec.Struct, frozen=True, kw_only=True, gc=False, tag="internet", tag_field="type"
):
    dnsName: str = ""  # the document's names are the wire's (camelCase)
    ips: tuple[str, ...] = ()
    port: Port = 0


class AwsTargetDoc(msgspec.Struct, frozen=True, kw_only=True, gc=False, tag="aws", tag_field="type"):
    arn: str


TargetDoc = WorkloadTargetDoc | InternetTargetDoc | AwsTargetDoc


class HttpDoc(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    path: str
    methods: tuple[str, ...] = ()


class TopicDoc(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    name: str
    operations: tuple[str, ...] = ()


class EdgeDoc(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One edge (see the module docstring). Unknown fields are ignored (a newer writer's)."""

    client: WorkloadDoc
    target: TargetDoc
    methods: tuple[MethodName, ...] = ()
    firstSeen: Time
    lastSeen: Time
    count: Count = 1
    http: tuple[HttpDoc, ...] = ()
    kafkaTopics: tuple[TopicDoc, ...] = ()
    awsActions: tuple[str, ...] = ()
    targetService: str = ""
    ambiguous: bool = False
    live: bool = False
    targetServiceSeen: Time | None = None  # when targetService was last seen, if before lastSeen


class EdgesDocument(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The JSON export (``network-mapper export --format json``, the cloud's ``format=json``)."""

    apiVersion: Literal["network-mapper/v1"] = EXPORT_API_VERSION
    version: int = FORMAT_VERSION
    edges: tuple[EdgeDoc, ...] = ()


class IngestBody(msgspec.Struct, frozen=True, kw_only=True, gc=False, forbid_unknown_fields=True):
    """``POST /v1/ingest``: a batch of edges from a cluster's uploader (or, with no edges and a
    ``seenAt``, its heartbeat). ``version`` absent: a version 1 uploader."""

    version: int = 1
    batchId: str
    anonymized: bool = False
    seenAt: Time | None = None
    edges: tuple[EdgeDoc, ...] = ()


_encoder = msgspec.json.Encoder()
_time_decoder = msgspec.json.Decoder(Time)
_edge_decoder = msgspec.json.Decoder(EdgeDoc)
_document_decoder = msgspec.json.Decoder(EdgesDocument)
_ingest_decoder = msgspec.json.Decoder(IngestBody)


# --------------------------------------------------------------------------- model ⇄ document

_METHOD = {str(m): m for m in Method}
_CACHE_LIMIT = 4096


K = TypeVar("K")
V = TypeVar("V")


class _Bounded(dict[K, V]):
    """A cache that is emptied when it reaches :data:`_CACHE_LIMIT` entries."""

    def __setitem__(self, key: K, value: V) -> None:
        if len(self) >= _CACHE_LIMIT:
            self.clear()
        super().__setitem__(key, value)


# A cluster has few workloads and method sets, each in many edges: their conversions are cached
# (bounded: cleared when full).
_identities: _Bounded[WorkloadDoc | WorkloadTargetDoc, WorkloadIdentity] = _Bounded()
_workload_docs: _Bounded[WorkloadIdentity, tuple[WorkloadDoc, WorkloadTargetDoc]] = _Bounded()
_method_sets: _Bounded[tuple[str, ...], frozenset[Method]] = _Bounded()
_method_names: _Bounded[frozenset[Method], tuple[MethodName, ...]] = _Bounded()
_details: _Bounded[tuple[HttpDoc, ...] | tuple[TopicDoc, ...], Any] = _Bounded()


def _identity(doc: WorkloadDoc | WorkloadTargetDoc) -> WorkloadIdentity:
    found = _identities.get(doc)
    if found is None:
        found = _identities[doc] = WorkloadIdentity(doc.namespace, doc.name, doc.kind)
    return found


def _workload_pair(identity: WorkloadIdentity) -> tuple[WorkloadDoc, WorkloadTargetDoc]:
    found = _workload_docs.get(identity)
    if found is None:
        n, ns, k = identity.name, identity.namespace, identity.kind
        found = _workload_docs[identity] = (
            WorkloadDoc(name=n, namespace=ns, kind=k),
            WorkloadTargetDoc(name=n, namespace=ns, kind=k),
        )
    return found


def _methods(names: tuple[str, ...]) -> frozenset[Method]:
    found = _method_sets.get(names)
    if found is None:
        found = _method_sets[names] = frozenset([_METHOD[m] for m in names])
    return found


def _method_tuple(methods: frozenset[Method]) -> tuple[MethodName, ...]:
    if type(methods) is not frozenset:  # a set, say, from a caller that built the edge by hand
        methods = frozenset(methods)
    found = _method_names.get(methods)
    if found is None:
        found = _method_names[methods] = tuple(sorted(str(m) for m in methods))  # type: ignore[misc]
    return found


def _target_doc(target: Target) -> TargetDoc:
    if type(target) is WorkloadIdentity:
        return _workload_pair(target)[1]
    if type(target) is InternetTarget:
        return InternetTargetDoc(dnsName=target.dns_name, ips=target.ips, port=target.port)
    if type(target) is AwsTarget:
        return AwsTargetDoc(arn=target.arn)
    raise TypeError(f"unknown edge target {target!r}")  # pragma: no cover - the union is closed


def to_doc(edge: Edge, live: bool = False) -> EdgeDoc:
    """The document of ``edge`` (canonical: every list sorted)."""
    return EdgeDoc(
        client=_workload_pair(edge.client)[0],
        target=_target_doc(edge.target),
        methods=_method_tuple(edge.methods),
        firstSeen=moment(edge.first_seen),
        lastSeen=moment(edge.last_seen),
        count=edge.count,
        http=tuple([HttpDoc(path=r.path, methods=tuple(sorted(r.methods))) for r in sorted(edge.http)])
        if edge.http
        else (),
        kafkaTopics=tuple(
            [TopicDoc(name=t.name, operations=tuple(sorted(t.operations))) for t in sorted(edge.kafka_topics)]
        )
        if edge.kafka_topics
        else (),
        awsActions=tuple(sorted(edge.aws_actions)) if edge.aws_actions else (),
        targetService=edge.target_service,
        ambiguous=edge.ambiguous,
        live=live,
        targetServiceSeen=moment(edge.target_service_seen) if edge.target_service_seen else None,
    )


def _target(doc: TargetDoc) -> Target:
    if type(doc) is WorkloadTargetDoc:
        return _identity(doc)
    if type(doc) is InternetTargetDoc:
        return InternetTarget(doc.dnsName, doc.ips, doc.port)
    return AwsTarget(doc.arn)  # type: ignore[union-attr]  # the union's last member


def from_doc(doc: EdgeDoc) -> Edge:
    """The edge a document describes; :class:`WireError` when a time lies outside [1970, 10000)."""
    # The bulk reads' hot path: lookups inlined, the fast constructor.
    first, last = doc.firstSeen.timestamp(), doc.lastSeen.timestamp()
    if not (EARLIEST <= first < END and EARLIEST <= last < END):
        raise WireError(f"time out of range [1970, 10000): {doc.firstSeen} or {doc.lastSeen}")
    client = _identities.get(doc.client) or _identity(doc.client)
    target = doc.target
    methods = _method_sets.get(doc.methods) or _methods(doc.methods)
    return new_edge(
        client,
        (_identities.get(target) or _identity(target))
        if type(target) is WorkloadTargetDoc
        else _target(target),
        first,
        last,
        methods,
        doc.count,
        (_details.get(doc.http) or _http(doc.http)) if doc.http else (),
        (_details.get(doc.kafkaTopics) or _topics(doc.kafkaTopics)) if doc.kafkaTopics else (),
        doc.awsActions,
        doc.targetService,
        doc.ambiguous,
        _seconds(doc.targetServiceSeen) if doc.targetServiceSeen is not None else 0.0,
    )


def _http(docs: tuple[HttpDoc, ...]) -> tuple[HttpResource, ...]:
    found = _details[docs] = tuple([HttpResource(r.path, r.methods) for r in docs])
    return found


def _topics(docs: tuple[TopicDoc, ...]) -> tuple[KafkaTopic, ...]:
    found = _details[docs] = tuple([KafkaTopic(t.name, t.operations) for t in docs])
    return found


def _strictly_sorted(values: tuple[str, ...]) -> bool:
    return len(values) < 2 or all(a < b for a, b in pairwise(values))


def canonical(doc: EdgeDoc) -> EdgeDoc:
    """``doc`` as :func:`to_doc` writes it, ``doc`` itself when it is already: so that equal edges
    have byte-equal text whoever wrote them. :class:`WireError` when a time lies outside [1970,
    10000).

    Canonical: times in UTC, every list strictly sorted (HTTP paths and Kafka topics, with their
    methods and operations, merged when repeated), no ``targetServiceSeen`` equal to ``lastSeen``
    (an edge merged with itself is canonical)."""
    first, last = doc.firstSeen, doc.lastSeen
    if (
        first.tzinfo is UTC
        and last.tzinfo is UTC
        and first.year >= 1970
        and last.year >= 1970
        and doc.targetServiceSeen is None
        and _method_tuple(_methods(doc.methods)) == doc.methods
        and _strictly_sorted(doc.awsActions)
        and _strictly_sorted(tuple([r.path for r in doc.http]))
        and all(_strictly_sorted(r.methods) for r in doc.http)
        and _strictly_sorted(tuple([t.name for t in doc.kafkaTopics]))
        and all(_strictly_sorted(t.operations) for t in doc.kafkaTopics)
    ):
        return doc
    edge = from_doc(doc)
    return to_doc(merge_edges(edge, edge), doc.live)


def key_bytes(doc: EdgeDoc) -> bytes:
    """The canonical bytes of an edge's key (client and target): what makes two edges one edge.

    JSON of ``[client namespace, name, kind, target type, namespace, name, kind, dnsName, ips,
    port, arn]`` (the fields a target kind lacks are empty); :func:`key_of` reads it back."""
    c, t = doc.client, doc.target
    if type(t) is WorkloadTargetDoc:
        return _encoder.encode(
            (c.namespace, c.name, c.kind, "workload", t.namespace, t.name, t.kind, "", (), 0, "")
        )
    if type(t) is InternetTargetDoc:
        return _encoder.encode(
            (c.namespace, c.name, c.kind, "internet", "", "", "", t.dnsName, t.ips, t.port, "")
        )
    arn = t.arn  # type: ignore[union-attr]  # the union's last member
    return _encoder.encode((c.namespace, c.name, c.kind, "aws", "", "", "", "", (), 0, arn))


def key_for(c: WorkloadIdentity, t: Target) -> bytes:
    """:func:`key_bytes` of the edge key ``(client, target)`` (:attr:`agent.model.Edge.key`)."""
    if type(t) is WorkloadIdentity:
        return _encoder.encode(
            (c.namespace, c.name, c.kind, "workload", t.namespace, t.name, t.kind, "", (), 0, "")
        )
    if type(t) is InternetTarget:
        return _encoder.encode(
            (c.namespace, c.name, c.kind, "internet", "", "", "", t.dns_name, t.ips, t.port, "")
        )
    arn = t.arn  # type: ignore[union-attr]  # the union's last member
    return _encoder.encode((c.namespace, c.name, c.kind, "aws", "", "", "", "", (), 0, arn))


_key_decoder = msgspec.json.Decoder(
    tuple[
        str, str, str, Literal["workload", "internet", "aws"], str, str, str, str, tuple[str, ...], int, str
    ]
)


def key_of(key: bytes | str) -> tuple[WorkloadIdentity, Target]:
    """The ``(client, target)`` of a key written by :func:`key_bytes` (:class:`WireError` if not one)."""
    try:
        c_ns, c_name, c_kind, kind, t_ns, t_name, t_kind, dns, ips, port, arn = _key_decoder.decode(key)
    except msgspec.DecodeError as error:
        raise WireError(f"not an edge key: {error}") from error
    client = WorkloadIdentity(c_ns, c_name, c_kind)
    if kind == "workload":
        return client, WorkloadIdentity(t_ns, t_name, t_kind)
    if kind == "internet":
        return client, InternetTarget(dns, ips, port)
    return client, AwsTarget(arn)


def key_hash(key: bytes) -> bytes:
    """16 bytes of SHA-256 of a key: how the cloud's stores index edges."""
    return hashlib.sha256(key).digest()[:16]


# --------------------------------------------------------------------------- bytes


def encode(value: Any) -> bytes:
    """JSON of any document struct (or of plain values holding them)."""
    return _encoder.encode(value)


def encode_edge(edge: Edge, live: bool = False) -> bytes:
    return _encoder.encode(to_doc(edge, live))


def decode_doc(data: bytes | str) -> EdgeDoc:
    try:
        return _edge_decoder.decode(data)
    except msgspec.DecodeError as error:
        raise WireError(str(error)) from error


def decode_edge(data: bytes | str) -> Edge:
    return from_doc(decode_doc(data))


def decode_edges(texts: Iterable[bytes]) -> list[Edge]:
    """Many edges (each one's JSON document) in one decoding pass: the cloud stores' bulk read."""
    return _bulk(decode_docs, texts)


def pack_edge(edge: Edge) -> bytes:
    """The edge document in MessagePack: the mapper store's form of it (the same struct, read
    back in half the time of its JSON, and the store's full read is on every export's path)."""
    return _packer.encode(to_doc(edge))


def unpack_edges(packed: Iterable[bytes]) -> list[Edge]:
    """Many edges packed by :func:`pack_edge`, in one decoding pass."""
    return _bulk(_unpack_docs, packed)


def unpack_edge(packed: bytes) -> Edge:
    try:
        return from_doc(_packed_decoder.decode(packed))
    except msgspec.DecodeError as error:
        raise WireError(str(error)) from error


def _unpack_docs(packed: Iterable[bytes]) -> list[EdgeDoc]:
    try:
        return _packed_docs_decoder.decode(_packer.encode([msgspec.Raw(p) for p in packed]))
    except msgspec.DecodeError as error:
        raise WireError(str(error)) from error


def _bulk(decode: Callable[[Iterable[bytes]], list[EdgeDoc]], data: Iterable[bytes]) -> list[Edge]:
    """``from_doc`` of every decoded document, with the collector paused: the thousands of new,
    acyclic objects would otherwise trigger collections that walk every object the process holds
    (a mapper's whole cluster state), which cost more than the decoding (bench/bench_store.py)."""
    paused = gc.isenabled()
    gc.disable()
    try:
        return [from_doc(doc) for doc in decode(data)]
    finally:
        if paused:
            gc.enable()


def decode_docs(texts: Iterable[bytes]) -> list[EdgeDoc]:
    """Many edge documents (each one's JSON) in one decoding pass."""
    try:
        return _docs_decoder.decode(b"[" + b",".join(texts) + b"]")
    except msgspec.DecodeError as error:
        raise WireError(str(error)) from error


_docs_decoder = msgspec.json.Decoder(list[EdgeDoc])
_plain_decoder = msgspec.json.Decoder()
_packer = msgspec.msgpack.Encoder()
_packed_decoder = msgspec.msgpack.Decoder(EdgeDoc)
_packed_docs_decoder = msgspec.msgpack.Decoder(list[EdgeDoc])


def export_document(edges: Iterable[Edge]) -> EdgesDocument:
    """The JSON export of ``edges``: sorted by client, then workload, Internet and AWS targets, then
    by the whole edge (a total order)."""
    docs = [to_doc(e) for e in edges]
    docs.sort(key=_export_order)
    return EdgesDocument(edges=tuple(docs))


def _export_order(doc: EdgeDoc) -> tuple[Any, ...]:
    c, t = doc.client, doc.target
    if type(t) is WorkloadTargetDoc:
        target: tuple[Any, ...] = (0, t.namespace, t.name, t.kind)
    elif type(t) is InternetTargetDoc:
        target = (1, t.dnsName, t.ips, t.port)
    else:
        target = (2, t.arn)  # type: ignore[union-attr]  # the union's last member
    return (c.namespace, c.name, c.kind, target, _encoder.encode(doc))


def plain(value: Any) -> Any:
    """The JSON value of a document struct (dicts, lists, strings ...), as ``json.loads`` gives it."""
    return _plain_decoder.decode(_encoder.encode(value))


def edge_from_plain(value: Any) -> Edge:
    """The edge of an edge document given as a JSON value (:class:`WireError` if it is not one)."""
    try:
        return from_doc(msgspec.convert(value, EdgeDoc))
    except msgspec.ValidationError as error:
        raise WireError(str(error)) from error


def document_from_plain(value: Any) -> list[Edge]:
    """The edges of a JSON export given as a JSON value (:class:`WireError` if it is not one)."""
    try:
        return [from_doc(doc) for doc in msgspec.convert(value, EdgesDocument).edges]
    except msgspec.ValidationError as error:
        raise WireError(str(error)) from error


def decode_document(data: bytes | str) -> list[Edge]:
    """The edges of a JSON export; :class:`WireError` on another apiVersion or bad data."""
    try:
        document = _document_decoder.decode(data)
        return [from_doc(d) for d in document.edges]
    except msgspec.DecodeError as error:
        raise WireError(str(error)) from error


def decode_ingest(data: bytes | str) -> IngestBody:
    """An upload body (versions :data:`ACCEPTED_VERSIONS`), checked in one pass."""
    try:
        body = _ingest_decoder.decode(data)
    except msgspec.DecodeError as error:
        raise WireError(str(error)) from error
    if body.version not in ACCEPTED_VERSIONS:
        raise WireError(f"upload body version {body.version} is not one of {ACCEPTED_VERSIONS}")
    return body


def edge_schema() -> dict[str, Any]:
    """JSON Schema of one edge document (with its definitions inline under ``$defs``)."""
    return _schema(EdgeDoc)


def ingest_schema() -> dict[str, Any]:
    """JSON Schema of an upload body."""
    return _schema(IngestBody)


def _schema(cls: type) -> dict[str, Any]:
    (top,), components = msgspec.json.schema_components([cls], ref_template="#/$defs/{name}")
    return {**components[cls.__name__], "$defs": components} if "$ref" in top else top
