"""Edges ⇄ the JSON export: a stable, versioned document of the whole map.

Data comes from the store's edges (``agent.model.Edge``); the document goes to the CLI
(``network-mapper export --format json``, which writes the file), the mapper's API and the
cloud (which reads it back with :func:`edges_from_document`). Pure: no I/O.

Shape (``apiVersion: network-mapper/v1``)::

    {"apiVersion": "network-mapper/v1",
     "edges": [{"client": {"name", "namespace", "kind"},
                "target": {"type": "workload", "name", "namespace", "kind"}
                        | {"type": "internet", "dnsName", "ips", "port"}
                        | {"type": "aws", "arn"},
                "methods": [...], "firstSeen": RFC 3339, "lastSeen": RFC 3339, "count": n,
                "http": [{"path", "methods"}], "kafkaTopics": [{"name", "operations"}],
                "awsActions": [...], "targetService": "", "ambiguous": false}]}

Every key is always present, lists are sorted and edges are sorted by (client, target), so
equal maps give byte-equal documents. Times are RFC 3339 in UTC with microseconds, and
round-trip exactly for times with at most microsecond precision.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.model import (
    AwsTarget,
    Edge,
    HttpResource,
    InternetTarget,
    KafkaTopic,
    Method,
    Target,
    WorkloadIdentity,
)

API_VERSION = "network-mapper/v1"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class DocumentError(ValueError):
    """A JSON export that is not a ``network-mapper/v1`` document."""


def rfc3339(timestamp: float) -> str:
    """Epoch seconds → ``2026-11-28T02:15:06.918878Z`` (rounded to the microsecond, exactly)."""
    moment = _EPOCH + timedelta(microseconds=round(timestamp * 1_000_000))
    # %Y is not zero-padded for years before 1000 on glibc; RFC 3339 needs four digits.
    return f"{moment.year:04d}" + moment.strftime("-%m-%dT%H:%M:%S.%fZ")


def parse_rfc3339(text: str) -> float:
    """RFC 3339 (any offset, any fraction; beyond microseconds is cut) → epoch seconds."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise DocumentError(f"time without an offset: {text!r}")
    return ((moment - _EPOCH) // _MICROSECOND) / 1_000_000


# --------------------------------------------------------------------------- edges → document


def _workload(identity: WorkloadIdentity) -> dict[str, str]:
    return {"name": identity.name, "namespace": identity.namespace, "kind": identity.kind}


def _target(target: Target) -> dict[str, Any]:
    if isinstance(target, WorkloadIdentity):
        return {"type": "workload"} | _workload(target)
    if isinstance(target, InternetTarget):
        return {"type": "internet", "dnsName": target.dns_name, "ips": list(target.ips), "port": target.port}
    return {"type": "aws", "arn": target.arn}


def _sort_key(edge: Edge) -> tuple[WorkloadIdentity, int, tuple[Any, ...]]:
    order = {WorkloadIdentity: 0, InternetTarget: 1, AwsTarget: 2}[type(edge.target)]
    target = edge.target
    fields: tuple[Any, ...]
    if isinstance(target, WorkloadIdentity):
        fields = (target.namespace, target.name, target.kind)
    elif isinstance(target, InternetTarget):
        fields = (target.dns_name, target.ips, target.port)
    else:
        fields = (target.arn,)
    return (edge.client, order, fields)


def edge_dict(edge: Edge) -> dict[str, Any]:
    """One edge as it appears in the document."""
    return {
        "client": _workload(edge.client),
        "target": _target(edge.target),
        "methods": sorted(str(m) for m in edge.methods),
        "firstSeen": rfc3339(edge.first_seen),
        "lastSeen": rfc3339(edge.last_seen),
        "count": edge.count,
        "http": [{"path": r.path, "methods": sorted(r.methods)} for r in sorted(edge.http)],
        "kafkaTopics": [
            {"name": t.name, "operations": sorted(t.operations)} for t in sorted(edge.kafka_topics)
        ],
        "awsActions": sorted(edge.aws_actions),
        "targetService": edge.target_service,
        "ambiguous": edge.ambiguous,
    }


def edges_document(edges: Iterable[Edge]) -> dict[str, Any]:
    """The JSON export of ``edges`` (a plain dict, ready for ``json.dumps``)."""
    keyed = [(_sort_key(e), json.dumps(d := edge_dict(e), sort_keys=True), d) for e in edges]
    keyed.sort(key=lambda k: (k[0], k[1]))  # the whole edge breaks ties: a total order
    return {"apiVersion": API_VERSION, "edges": [d for _, _, d in keyed]}


# --------------------------------------------------------------------------- document → edges


def _str(obj: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str):
        raise DocumentError(f"{key!r} must be a string, got {value!r}")
    return value


def _int(obj: Mapping[str, Any], key: str, default: int) -> int:
    value = obj.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise DocumentError(f"{key!r} must be an integer, got {value!r}")
    return value


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise DocumentError(f"{what} must be an object, got {value!r}")
    return value


def _strings(obj: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = obj.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DocumentError(f"{key!r} must be a list of strings, got {value!r}")
    return tuple(value)


def _objects(obj: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = obj.get(key, [])
    if not isinstance(value, list):
        raise DocumentError(f"{key!r} must be a list, got {value!r}")
    return [_mapping(v, key) for v in value]


def _identity(obj: Mapping[str, Any]) -> WorkloadIdentity:
    return WorkloadIdentity(_str(obj, "namespace"), _str(obj, "name"), _str(obj, "kind", ""))


def _target_from(obj: Mapping[str, Any]) -> Target:
    kind = _str(obj, "type")
    if kind == "workload":
        return _identity(obj)
    if kind == "internet":
        return InternetTarget(_str(obj, "dnsName", ""), _strings(obj, "ips"), _int(obj, "port", 0))
    if kind == "aws":
        return AwsTarget(_str(obj, "arn"))
    raise DocumentError(f"unknown target type {kind!r}")


def edge_from_dict(obj: Mapping[str, Any]) -> Edge:
    """The inverse of :func:`edge_dict`; raises :class:`DocumentError` on a malformed edge."""
    ambiguous = obj.get("ambiguous", False)
    if not isinstance(ambiguous, bool):
        raise DocumentError(f"'ambiguous' must be a boolean, got {ambiguous!r}")
    return Edge(
        client=_identity(_mapping(obj.get("client"), "client")),
        target=_target_from(_mapping(obj.get("target"), "target")),
        first_seen=parse_rfc3339(_str(obj, "firstSeen")),
        last_seen=parse_rfc3339(_str(obj, "lastSeen")),
        methods=frozenset(Method(m) for m in _strings(obj, "methods")),
        count=_int(obj, "count", 1),
        http=tuple(HttpResource(_str(r, "path"), _strings(r, "methods")) for r in _objects(obj, "http")),
        kafka_topics=tuple(
            KafkaTopic(_str(t, "name"), _strings(t, "operations")) for t in _objects(obj, "kafkaTopics")
        ),
        aws_actions=_strings(obj, "awsActions"),
        target_service=_str(obj, "targetService", ""),
        ambiguous=ambiguous,
    )


def edges_from_document(document: Mapping[str, Any]) -> list[Edge]:
    """The edges of a JSON export; raises :class:`DocumentError` on another apiVersion or bad data."""
    if document.get("apiVersion") != API_VERSION:
        raise DocumentError(f"apiVersion must be {API_VERSION!r}, got {document.get('apiVersion')!r}")
    edges = []
    for index, obj in enumerate(_objects(document, "edges")):
        try:
            edges.append(edge_from_dict(obj))
        except ValueError as error:  # bad times and methods raise plain ValueError
            raise DocumentError(f"edges[{index}]: {error}") from error
    return edges
