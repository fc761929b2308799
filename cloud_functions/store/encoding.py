"""The stored form of an edge: canonical JSON text, key hash, filter columns, and the idempotent merge.

Data comes from :class:`~agent.model.Edge` values (parsed by the ingest handler, or decoded back
from stored text here) and from :mod:`cloud_functions.store.documents`, which builds
:class:`EncodedEdge` straight from uploaded documents with this module's pieces. It goes to the
stores (:mod:`cloud_functions.store.sqlite`; :mod:`cloud_functions.store.dynamodb` through
:mod:`cloud_functions.store.dynamoitems`): the text they keep, the key hash they key it by, the
filter columns or attributes beside it (:func:`filter_row`, :func:`filter_fields`), and
:func:`merged_encoded`, which decides what an ingest writes. On the way back :func:`decode_edge`
and :func:`effective` give the edge as read (liveness: see :mod:`cloud_functions.store.base`).

The text is the JSON of :func:`agent.exports.jsonexport.edge_dict` with sorted keys (equal edges
give equal text); the key hash is the first 32 hex digits of the SHA-256 of the key's JSON
(:func:`edge_key_json`). Merging is :func:`agent.model.merge_edges`: idempotent, so a re-sent edge
or a retried batch changes nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.exports.jsonexport import edge_from_dict
from agent.model import Edge, InternetTarget, Method, WorkloadIdentity, merge_edges
from cloud_functions.store.base import StoredEdge

_compact = json.JSONEncoder(separators=(",", ":")).encode
_spaced = json.JSONEncoder().encode  # json.dumps' default separators
_q: Callable[[str], str] = json.encoder.encode_basestring_ascii
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _time(timestamp: float) -> str:
    """:func:`~agent.exports.jsonexport.rfc3339`, without ``strftime`` (same text)."""
    m = _EPOCH + timedelta(microseconds=round(timestamp * 1_000_000))
    date = f"{m.year:04d}-{m.month:02d}-{m.day:02d}"
    return f"{date}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}.{m.microsecond:06d}Z"


@functools.lru_cache(maxsize=256)
def _methods(methods: frozenset[Method]) -> tuple[tuple[str, ...], str, str]:
    """The sorted method names, their JSON (as the ``methods`` filter column keeps it), compact JSON."""
    names = tuple(sorted(str(m) for m in methods))
    return names, _spaced(names), _compact(names)


def _key_parts(edge: Edge) -> tuple[dict[str, str], dict[str, Any]]:
    """The client and target objects of :func:`edge_dict`, their keys already sorted."""
    c, t = edge.client, edge.target
    client = {"kind": c.kind, "name": c.name, "namespace": c.namespace}
    target: dict[str, Any]
    if isinstance(t, WorkloadIdentity):
        target = {"kind": t.kind, "name": t.name, "namespace": t.namespace, "type": "workload"}
    elif isinstance(t, InternetTarget):
        target = {"dnsName": t.dns_name, "ips": list(t.ips), "port": t.port, "type": "internet"}
    else:
        target = {"arn": t.arn, "type": "aws"}
    return client, target


class EncodedEdge:
    """An edge with its key hash and stored text, each computed once (:func:`encode`).

    Built from a document (``documents.encode_struct``) it holds no :class:`Edge` until one is asked
    for (decoded from the text then): a brand-new edge is stored without ever building one.
    """

    __slots__ = ("_edge", "_row", "key_hash", "live", "text")

    def __init__(
        self,
        key_hash: str,
        text: str,
        edge: Edge | None = None,
        row: tuple[str, str, str | None, str | None, str, float] | None = None,
    ) -> None:
        self.key_hash, self.text, self._edge, self._row = key_hash, text, edge, row
        self.live = False  # set by the caller from the uploaded document

    @property
    def edge(self) -> Edge:
        if self._edge is None:
            self._edge = decode_edge(self.text)
        return self._edge

    @property
    def row(self) -> tuple[str, str, str | None, str | None, str, float]:
        """:func:`filter_row` of the edge."""
        if self._row is None:
            self._row = filter_row(self.edge)
        return self._row


def encode(edge: Edge) -> EncodedEdge:
    """The key hash (of :func:`edge_key_json`) and stored text (canonical JSON) of an edge, in one pass.

    Writes the JSON of :func:`edge_dict` (sorted keys) directly, each string quoted by the json
    module's own C quoting: byte-equal to ``json.dumps(edge_dict(edge), sort_keys=True, ...)``.
    """
    c, t = edge.client, edge.target
    ck, cn, cns = _q(c.kind), _q(c.name), _q(c.namespace)
    if type(t) is not WorkloadIdentity or type(edge.count) is not int or type(edge.ambiguous) is not bool:
        return _encode_dicts(edge)
    tk, tn, tns = _q(t.kind), _q(t.name), _q(t.namespace)
    key = (
        f'{{"client": {{"kind": {ck}, "name": {cn}, "namespace": {cns}}},'
        f' "target": {{"kind": {tk}, "name": {tn}, "namespace": {tns}, "type": "workload"}}}}'
    )
    http = _compact(_http(edge)) if edge.http else "[]"
    kafka = _compact(_kafka(edge)) if edge.kafka_topics else "[]"
    aws = _compact(sorted(edge.aws_actions)) if edge.aws_actions else "[]"
    text = (
        f'{{"ambiguous":{"true" if edge.ambiguous else "false"},"awsActions":{aws},'
        f'"client":{{"kind":{ck},"name":{cn},"namespace":{cns}}},"count":{edge.count},'
        f'"firstSeen":"{_time(edge.first_seen)}","http":{http},"kafkaTopics":{kafka},'
        f'"lastSeen":"{_time(edge.last_seen)}","methods":{_methods(edge.methods)[2]},'
        f'"target":{{"kind":{tk},"name":{tn},"namespace":{tns},"type":"workload"}},'
        f'"targetService":{_q(edge.target_service)}}}'
    )
    return EncodedEdge(hashlib.sha256(key.encode()).hexdigest()[:32], text, edge)


def _http(edge: Edge) -> list[dict[str, Any]]:
    return [{"methods": sorted(r.methods), "path": r.path} for r in sorted(edge.http)]


def _kafka(edge: Edge) -> list[dict[str, Any]]:
    return [{"name": k.name, "operations": sorted(k.operations)} for k in sorted(edge.kafka_topics)]


def _encode_dicts(edge: Edge) -> EncodedEdge:
    """:func:`encode` through dicts (any target kind): keys in sorted order, no ``sort_keys``."""
    client, target = _key_parts(edge)
    key = '{"client": ' + _spaced(client) + ', "target": ' + _spaced(target) + "}"
    whole = {
        "ambiguous": edge.ambiguous,
        "awsActions": sorted(edge.aws_actions),
        "client": client,
        "count": edge.count,
        "firstSeen": _time(edge.first_seen),
        "http": _http(edge),
        "kafkaTopics": _kafka(edge),
        "lastSeen": _time(edge.last_seen),
        "methods": _methods(edge.methods)[0],
        "target": target,
        "targetService": edge.target_service,
    }
    return EncodedEdge(hashlib.sha256(key.encode()).hexdigest()[:32], _compact(whole), edge)


def edge_key_json(edge: Edge) -> str:
    """The canonical JSON of an edge's key (client and target)."""
    client, target = _key_parts(edge)
    return '{"client": ' + _spaced(client) + ', "target": ' + _spaced(target) + "}"


def decode_edge(text: str) -> Edge:
    return edge_from_dict(json.loads(text))


def coalesce_encodings(encodings: Iterable[EncodedEdge]) -> dict[str, EncodedEdge]:
    """Encoded edges by key hash, edges with equal keys merged (and re-encoded)."""
    merged: dict[str, EncodedEdge] = {}
    for encoded in encodings:
        found = merged.get(encoded.key_hash)
        if found is not None:
            if found.text == encoded.text:
                found.live = encoded.live  # the later document's flag wins
                continue
            again = encode(merge_edges(found.edge, encoded.edge))
            again.live = encoded.live
            merged[encoded.key_hash] = again
        else:
            merged[encoded.key_hash] = encoded
    return merged


def merged_encoded(
    stored: str | None, incoming: EncodedEdge, stored_live: bool = False
) -> EncodedEdge | None:
    """``incoming`` merged into the ``stored`` text (and live flag); None if that changes nothing.

    A new edge is taken as it is, and a text equal to the stored one is not decoded at all. The
    result's ``live`` is the incoming one.
    """
    if stored is None:
        return incoming
    if stored == incoming.text:
        return None if stored_live == incoming.live else incoming
    merged = encode(merge_edges(decode_edge(stored), incoming.edge))
    merged.live = incoming.live
    return None if merged.text == stored and stored_live == incoming.live else merged


def effective(edge: Edge, live: bool, heartbeat: float | None) -> Edge:
    """The edge as read: a live edge was seen at least at its cluster's heartbeat."""
    if live and heartbeat is not None and heartbeat > edge.last_seen:
        return dataclasses.replace(edge, last_seen=round(heartbeat * 1_000_000) / 1_000_000)
    return edge


def filter_row(edge: Edge) -> tuple[str, str, str | None, str | None, str, float]:
    """:func:`filter_fields` as a row: client namespace and name, workload-target namespace and
    name, the methods' JSON and ``last_seen`` (microseconds, as stored)."""
    target = edge.target
    workload = target if isinstance(target, WorkloadIdentity) else None
    return (
        edge.client.namespace,
        edge.client.name,
        workload.namespace if workload else None,
        workload.name if workload else None,
        _methods(edge.methods)[1],
        round(edge.last_seen * 1_000_000) / 1_000_000,  # = parse_rfc3339(rfc3339(last_seen))
    )


def filter_fields(edge: Edge) -> dict[str, Any]:
    """The columns/attributes kept beside an edge's JSON so stores can filter without decoding."""
    target = edge.target
    workload = target if isinstance(target, WorkloadIdentity) else None
    return {
        "client_namespace": edge.client.namespace,
        "client_name": edge.client.name,
        "target_namespace": workload.namespace if workload else None,
        "target_name": workload.name if workload else None,
        "methods": list(_methods(edge.methods)[0]),
        "last_seen": round(edge.last_seen * 1_000_000) / 1_000_000,  # as stored: microsecond precision
    }


def sort_stored(edges: Iterable[StoredEdge]) -> list[StoredEdge]:
    return sorted(edges, key=lambda s: (s.cluster_id, edge_key_json(s.edge)))
