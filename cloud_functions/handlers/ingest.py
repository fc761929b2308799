"""``POST /v1/ingest``: a cluster's uploader sends a batch of edges (its JSON export form).

The cluster comes from the ingest token, never from the body. A batch is stored once per
``batchId``: a retried batch answers ``stored: false`` with 200, so uploaders may retry freely.
Edges are parsed with :func:`agent.exports.jsonexport.edge_from_dict` (the exporters' own
inverse); a malformed edge answers 422 naming it.

Liveness (see :mod:`cloud_functions.store.base`): each edge may say ``"live": true`` (seen within
the uploader's granularity), and a body may carry ``seenAt``, the cluster's heartbeat, which keeps
every live edge's last-seen time current without re-sending it. A body with no edges and a
``seenAt`` is a heartbeat only. A ``seenAt`` later than the cloud's own clock counts as now.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, WithJsonSchema

from agent.exports.jsonexport import edge_from_dict
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
from cloud_functions.auth import ApiError, require
from cloud_functions.store.base import GraphStore
from cloud_functions.store.documents import TypedEdge, encode_struct
from cloud_functions.store.encoding import EncodedEdge, encode

router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]  # powertools leaves __init__ bare

MAX_BATCH = 500
EPOCH, YEAR_10000 = 0.0, 253402300800.0
"""Edge times must lie in [1970, 10000): the export writes four-digit years."""

_WORKLOAD: dict[str, Any] = {
    "type": "object",
    "required": ["name", "namespace"],
    "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}, "kind": {"type": "string"}},
}
_STRINGS: dict[str, Any] = {"type": "array", "items": {"type": "string"}}
EDGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "One edge, as in the JSON export (network-mapper/v1).",
    "required": ["client", "target", "firstSeen", "lastSeen"],
    "properties": {
        "client": _WORKLOAD,
        "target": {
            "oneOf": [
                {
                    "type": "object",
                    "required": ["type", "name", "namespace"],
                    "properties": {"type": {"const": "workload"}} | _WORKLOAD["properties"],
                },
                {
                    "type": "object",
                    "required": ["type"],
                    "properties": {
                        "type": {"const": "internet"},
                        "dnsName": {"type": "string"},
                        "ips": _STRINGS,
                        "port": {"type": "integer", "minimum": 0, "maximum": 65535},
                    },
                },
                {
                    "type": "object",
                    "required": ["type", "arn"],
                    "properties": {"type": {"const": "aws"}, "arn": {"type": "string"}},
                },
            ]
        },
        "methods": {"type": "array", "items": {"enum": [str(m) for m in Method]}},
        "firstSeen": {"type": "string", "format": "date-time"},
        "lastSeen": {"type": "string", "format": "date-time"},
        "count": {"type": "integer", "minimum": 0},
        "http": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["path"],
                "properties": {"path": {"type": "string"}, "methods": _STRINGS},
            },
        },
        "kafkaTopics": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "operations": _STRINGS},
            },
        },
        "awsActions": _STRINGS,
        "targetService": {"type": "string"},
        "ambiguous": {"type": "boolean"},
        "live": {
            "type": "boolean",
            "description": "Seen within the uploader's granularity: last seen at least at the"
            " cluster's heartbeat (seenAt).",
        },
    },
}


class IngestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    batchId: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[^\x00-\x1f\x7f#]+$",
        description="Idempotency key of the batch (no control characters, no '#').",
    )
    anonymized: bool = Field(default=False, description="Names are keyed hashes (cloud.anonymize).")
    seenAt: AwareDatetime | None = Field(
        default=None,
        description="The cluster's heartbeat: every edge last sent with live=true was seen within the"
        " uploader's granularity before this time.",
    )
    # Items arrive as EdgeDoc structs (decode_batch: typed and checked while decoding) or, when the
    # batch is anything else, as JSON values parsed by encode_edges; the schema documents them.
    edges: Annotated[
        list[Any],
        WithJsonSchema({"type": "array", "maxItems": MAX_BATCH, "items": EDGE_SCHEMA}),
    ] = Field(max_length=MAX_BATCH)

    def __repr__(self) -> str:
        # powertools formats the route's arguments into a debug message on every request, logged
        # or not: pydantic's repr of 500 edges cost more than parsing them.
        return (
            f"IngestIn(batchId={self.batchId!r}, anonymized={self.anonymized}, seenAt={self.seenAt},"
            f" edges=<{len(self.edges)}>)"
        )


class IngestOut(BaseModel):
    stored: bool = Field(description="False when the batch id was seen before (nothing written).")
    edgesWritten: int


def _in_range(edge: Edge) -> Edge:
    if not (EPOCH <= edge.first_seen < YEAR_10000 and EPOCH <= edge.last_seen < YEAR_10000):
        raise ValueError("firstSeen and lastSeen must be between 1970 and 9999")
    return edge


_METHODS = {str(m): m for m in Method}
_UTC_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_EMPTY: list[Any] = []  # a default, never changed


def _seconds(text: object) -> float:
    """``parse_rfc3339`` of an exact ``str`` (KeyError otherwise: the careful path decides)."""
    if type(text) is not str:
        raise KeyError(text)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise KeyError(text)
    return ((moment - _UTC_EPOCH) // _MICROSECOND) / 1_000_000


def _text(obj: dict[str, Any], key: str, default: str | None = None) -> str:
    value = obj.get(key, default)
    if type(value) is not str:
        raise KeyError(key)
    return value


def _texts(obj: dict[str, Any], key: str) -> tuple[str, ...]:
    value = obj.get(key, _EMPTY)
    if type(value) is not list or any(type(v) is not str for v in value):
        raise KeyError(key)
    return tuple(value)


def _objects(obj: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = obj.get(key, _EMPTY)
    if type(value) is not list or any(type(v) is not dict for v in value):
        raise KeyError(key)
    return value


def _fast_edge(obj: dict[str, Any]) -> Edge | None:
    """:func:`edge_from_dict` of a plainly typed (JSON-decoded) edge in range, else None.

    Accepts a subset of what ``edge_from_dict`` accepts and builds the same :class:`Edge`; on
    anything unusual (or wrong) it gives up, and :func:`encode_edges` takes the careful path.
    """
    try:
        client, target = obj["client"], obj["target"]
        ambiguous, count = obj.get("ambiguous", False), obj.get("count", 1)
        if type(client) is not dict or type(target) is not dict or type(ambiguous) is not bool:
            return None
        if type(count) is not int:
            return None
        kind = target["type"]
        parsed: Target
        if kind == "workload":
            parsed = WorkloadIdentity(
                _text(target, "namespace"), _text(target, "name"), _text(target, "kind", "")
            )
        elif kind == "internet" and type(target.get("port", 0)) is int:
            parsed = InternetTarget(
                _text(target, "dnsName", ""), _texts(target, "ips"), target.get("port", 0)
            )
        elif kind == "aws":
            parsed = AwsTarget(_text(target, "arn"))
        else:
            return None
        edge = Edge(
            client=WorkloadIdentity(
                _text(client, "namespace"), _text(client, "name"), _text(client, "kind", "")
            ),
            target=parsed,
            first_seen=_seconds(obj["firstSeen"]),
            last_seen=_seconds(obj["lastSeen"]),
            methods=frozenset([_METHODS[m] for m in _texts(obj, "methods")]),
            count=count,
            http=tuple([HttpResource(_text(r, "path"), _texts(r, "methods")) for r in _objects(obj, "http")]),
            kafka_topics=tuple(
                [KafkaTopic(_text(t, "name"), _texts(t, "operations")) for t in _objects(obj, "kafkaTopics")]
            ),
            aws_actions=_texts(obj, "awsActions"),
            target_service=_text(obj, "targetService", ""),
            ambiguous=ambiguous,
        )
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
        return None
    first, last = edge.first_seen, edge.last_seen
    return edge if EPOCH <= first < YEAR_10000 and EPOCH <= last < YEAR_10000 else None


def _check_live(live: object) -> None:
    if type(live) is not bool:
        raise TypeError(f"live must be true or false, not {live!r}")


def encode_edges(objects: Sequence[Any]) -> list[EncodedEdge]:
    """The batch's edges, encoded for the store; :class:`ApiError` 422 listing the malformed ones
    (at most 20). Typed edges (:class:`TypedEdge`) are encoded directly (:func:`encode_struct`);
    the rest parsed."""
    edges: list[EncodedEdge] = []
    details: list[dict[str, Any]] = []
    for index, item in enumerate(objects):
        obj = item
        if type(item) is TypedEdge:  # decoded typed (decode_batch): the fast path
            typed = encode_struct(item.doc)
            if typed is not None:
                typed.live = item.doc.live
                edges.append(typed)
                continue
            obj = item.plain()
        if type(obj) is not dict:
            if len(details) < 20:
                details.append(
                    {"loc": ["body", "edges", index], "type": "edge_invalid", "msg": "not an object"}
                )
            continue
        live = obj.get("live", False)
        try:
            _check_live(live)
            fast = _fast_edge(obj)
            encoded = encode(fast if fast is not None else _in_range(edge_from_dict(obj)))
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as error:
            if len(details) < 20:
                details.append({"loc": ["body", "edges", index], "type": "edge_invalid", "msg": str(error)})
            continue
        encoded.live = live
        edges.append(encoded)
    if details:
        raise ApiError(422, "validation_error", "malformed edges", details)
    return edges


@router.post("/v1/ingest", security=[{"bearerAuth": []}], tags=["ingest"], summary="Upload a batch of edges")
def ingest(body: IngestIn) -> IngestOut:
    # The store and caller straight from the context, not through Depends like other routes:
    # resolving dependencies costs powertools a get_type_hints per request, on the hot path.
    store: GraphStore = router.context["store"]
    token = require(router.context.get("caller"), "ingest")
    if not token.cluster_id:
        raise ApiError(403, "forbidden", "the ingest token is bound to no cluster")
    heartbeat_only = not body.edges and body.seenAt is not None
    if not heartbeat_only and store.has_batch(token.tenant_id, token.cluster_id, body.batchId):
        return IngestOut(stored=False, edgesWritten=0)  # a re-send: skip parsing
    now = time.time()
    seen_at = None if body.seenAt is None else min(body.seenAt.timestamp(), now)
    edges = encode_edges(body.edges)
    result = store.ingest_encoded(
        token.tenant_id, token.cluster_id, body.batchId, edges, now, seen_at=seen_at
    )
    return IngestOut(stored=result.stored, edgesWritten=result.edges_written)
