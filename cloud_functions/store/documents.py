"""Edge documents as they arrive at ``POST /v1/ingest``, encoded for the store without detours.

Data comes from the ingest handler (:mod:`cloud_functions.handlers.ingest`): the body as decoded
by :func:`decode_batch` (msgspec, typed, validated in C: a :class:`TypedEdge` per edge). It goes
to :class:`~cloud_functions.store.encoding.EncodedEdge`: the same key hash, stored text and filter
row :func:`~cloud_functions.store.encoding.encode` gives the parsed :class:`~agent.model.Edge`,
without building one (tests/cloud/test_cloud_store_encoding.py holds the two equal). Anything
unusual (another target kind, a non-canonical time) is not encoded here (``None``): the handler
then parses it the careful way, which names what is wrong.

Why by hand: decoding and re-encoding each edge was half of an ingest's time
(bench/bench_cloud_ingest.py); typed decoding skips the dicts and the type checks.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import msgspec

from agent.model import Method
from cloud_functions.store.encoding import _EPOCH, EncodedEdge, _methods, _q

_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
_METHOD_NAMES = {str(m): m for m in Method}
_METHOD_TEXTS: dict[tuple[str, ...], tuple[str, str]] = {}
_MICROSECOND = timedelta(microseconds=1)


def _method_texts(names: object) -> tuple[str, str]:
    """The compact and spaced JSON of a ``methods`` list of valid names (KeyError otherwise)."""
    if type(names) is not list:
        raise KeyError("methods")
    found = _METHOD_TEXTS.get(tuple(names))
    if found is None:
        _, spaced, compact = _methods(frozenset([_METHOD_NAMES[name] for name in names]))
        found = compact, spaced
        if len(_METHOD_TEXTS) < 1024:
            _METHOD_TEXTS[tuple(names)] = found
    return found


def _canonical_time(text: object) -> float:
    """``parse_rfc3339`` of a time already in :func:`_time`'s form, from 1970 on, that
    :func:`_time` writes back unchanged (KeyError otherwise)."""
    if type(text) is not str or _TIME.fullmatch(text) is None or text < "1970":
        raise KeyError(text)
    if text < "2041":  # timestamp() divides the exact microseconds by 10**6, as below
        return datetime.fromisoformat(text).timestamp()
    micros = (datetime.fromisoformat(text) - _EPOCH) // _MICROSECOND
    seconds = micros / 1_000_000
    # Below 2**51 microseconds (2041) the float round trip is exact; later times are checked.
    if text >= "2041" and round(seconds * 1_000_000) != micros:
        raise KeyError(text)
    return seconds


def _check_time(text: object) -> None:
    """:func:`_canonical_time`, for its checks only."""
    if type(text) is not str or _TIME.fullmatch(text) is None or not "1970" <= text < "2041":
        _canonical_time(text)
    else:
        datetime.fromisoformat(text)  # a valid date and time


def _strings_json(values: Iterable[str]) -> str:
    """The compact JSON of sorted strings (as ``_compact(sorted(values))``)."""
    return "[" + ",".join([_q(v) for v in sorted(values)]) + "]"


def _pairs_json(pairs: list[tuple[str, tuple[str, ...]]], name: str, values: str) -> str:
    """The compact JSON of ``(name, values)`` pairs as ``{name: .., values: [..]}`` objects."""
    pairs.sort()
    qn, qv = _q(name), _q(values)
    if values < name:
        parts = [f"{{{qv}:{_strings_json(v)},{qn}:{_q(n)}}}" for n, v in pairs]
    else:
        parts = [f"{{{qn}:{_q(n)},{qv}:{_strings_json(v)}}}" for n, v in pairs]
    return "[" + ",".join(parts) + "]"


_WORKLOADS: dict[tuple[str, str, str], tuple[str, str]] = {}
"""(kind, name, namespace) → the JSON object's members as the key (spaced) and the text (compact)
write them: a cluster has few workloads, and each is in many edges."""


def _workload_json(workload: tuple[str, str, str]) -> tuple[str, str]:
    kind, name, namespace = _q(workload[0]), _q(workload[1]), _q(workload[2])
    found = (
        f'"kind": {kind}, "name": {name}, "namespace": {namespace}',
        f'"kind":{kind},"name":{name},"namespace":{namespace}',
    )
    if len(_WORKLOADS) >= 4096:
        _WORKLOADS.clear()
    _WORKLOADS[workload] = found
    return found


def _encode_fields(  # noqa: PLR0917  # the document's fields, checked by the callers
    client: tuple[str, str, str],
    target: tuple[str, str, str],
    first: str,
    last: str,
    methods: object,
    http: str,
    kafka: str,
    actions: list[str],
    service: str,
    ambiguous: bool,
    count: int,
) -> EncodedEdge:
    """The encoded edge of a workload-target document's typed fields (``(kind, name, namespace)``
    of client and target, ``http``/``kafka`` already as JSON); KeyError on a non-canonical time
    or an unknown method."""
    _check_time(first)
    last_seen = _canonical_time(last)
    compact_methods, spaced_methods = _method_texts(methods)
    client_key, client_text = _WORKLOADS.get(client) or _workload_json(client)
    target_key, target_text = _WORKLOADS.get(target) or _workload_json(target)
    key = f'{{"client": {{{client_key}}}, "target": {{{target_key}, "type": "workload"}}}}'
    aws = _strings_json(actions) if actions else "[]"
    text = (
        f'{{"ambiguous":{"true" if ambiguous else "false"},"awsActions":{aws},'
        f'"client":{{{client_text}}},"count":{count},'
        f'"firstSeen":"{first}","http":{http},"kafkaTopics":{kafka},'
        f'"lastSeen":"{last}","methods":{compact_methods},'
        f'"target":{{{target_text},"type":"workload"}},'
        f'"targetService":{_q(service)}}}'
    )
    row = (
        client[2],
        client[1],
        target[2],
        target[1],
        spaced_methods,
        round(last_seen * 1_000_000) / 1_000_000,
    )
    return EncodedEdge(hashlib.sha256(key.encode()).hexdigest()[:32], text, None, row)


# --------------------------------------------------------------------------- typed decoding


class Workload(msgspec.Struct, kw_only=True, frozen=True):
    kind: str = ""
    name: str
    namespace: str


class Target(msgspec.Struct, kw_only=True, frozen=True):
    """A workload target's fields; other kinds' fields are not kept (:func:`encode_struct` refuses
    them, and the handler parses the batch from its text instead)."""

    type: str
    kind: str = ""
    name: str | None = None
    namespace: str | None = None


class Http(msgspec.Struct, kw_only=True, frozen=True):
    path: str
    methods: list[str] = msgspec.field(default_factory=list)


class Topic(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    operations: list[str] = msgspec.field(default_factory=list)


class EdgeDoc(msgspec.Struct, kw_only=True, frozen=True):
    """An edge document (network-mapper/v1 JSON export) whose fields have their plain types.
    Unknown fields are ignored, as the parser ignores them."""

    client: Workload
    target: Target
    firstSeen: str  # the wire's names
    lastSeen: str
    methods: list[str] = msgspec.field(default_factory=list)
    count: int = 1
    http: list[Http] = msgspec.field(default_factory=list)
    kafkaTopics: list[Topic] = msgspec.field(default_factory=list)
    awsActions: list[str] = msgspec.field(default_factory=list)
    targetService: str = ""
    ambiguous: bool = False
    live: bool = False


class _Batch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    batchId: str
    anonymized: bool = False
    seenAt: str | None = None
    edges: list[msgspec.Raw]


class TypedEdge:
    """An edge decoded as :class:`EdgeDoc`, with its JSON text for when it must be parsed the
    careful way after all (another target kind, a time not in canonical form)."""

    __slots__ = ("doc", "raw")

    def __init__(self, doc: EdgeDoc, raw: msgspec.Raw) -> None:
        self.doc, self.raw = doc, raw

    def plain(self) -> Any:
        """The document as ``json.loads`` gives it."""
        return json.loads(bytes(self.raw))


_batch_decoder = msgspec.json.Decoder(_Batch)
_edge_decoder = msgspec.json.Decoder(EdgeDoc)


def decode_batch(text: str | bytes) -> dict[str, Any]:
    """A JSON body. An ingest batch comes back as a dict whose edges are :class:`TypedEdge` (decoded
    and type-checked in C) or, each one that is not plainly typed, as ``json.loads`` gives it; any
    other JSON as ``json.loads`` gives it (``json.JSONDecodeError`` if it is not JSON), so errors
    are reported the careful way."""
    try:
        batch = _batch_decoder.decode(text)
    except msgspec.MsgspecError:
        return json.loads(text)  # type: ignore[no-any-return]
    edges: list[Any] = []
    for raw in batch.edges:
        try:
            edges.append(TypedEdge(_edge_decoder.decode(raw), raw))
        except msgspec.MsgspecError:
            edges.append(json.loads(bytes(raw)))
    body: dict[str, Any] = {"batchId": batch.batchId, "anonymized": batch.anonymized, "edges": edges}
    if batch.seenAt is not None:
        body["seenAt"] = batch.seenAt
    return body


def encode_struct(doc: EdgeDoc) -> EncodedEdge | None:
    """:func:`~cloud_functions.store.encoding.encode` of the edge a decoded :class:`EdgeDoc`
    describes, without building it; None when it is not a workload-target edge with canonical
    times and known methods (then parse the document the careful way)."""
    target = doc.target
    if target.type != "workload" or target.name is None or target.namespace is None:
        return None
    c = doc.client
    http = (
        _pairs_json([(r.path, tuple(r.methods)) for r in doc.http], "path", "methods") if doc.http else "[]"
    )
    kafka = (
        _pairs_json([(t.name, tuple(t.operations)) for t in doc.kafkaTopics], "name", "operations")
        if doc.kafkaTopics
        else "[]"
    )
    try:
        return _encode_fields(
            (c.kind, c.name, c.namespace),
            (target.kind, target.name, target.namespace),
            doc.firstSeen,
            doc.lastSeen,
            doc.methods,
            http,
            kafka,
            doc.awsActions,
            doc.targetService,
            doc.ambiguous,
            doc.count,
        )
    except (KeyError, ValueError, OverflowError):
        return None
