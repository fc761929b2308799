"""``POST /v1/ingest``: a cluster's uploader sends a batch of edges (its JSON export form).

The cluster comes from the ingest token, never from the body. A batch is stored once per
``batchId``: a retried batch answers ``stored: false`` with 200, so uploaders may retry freely.
Edges are parsed with :func:`agent.exports.jsonexport.edge_from_dict` (the exporters' own
inverse); a malformed edge answers 422 naming it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Annotated, Any

from aws_lambda_powertools.event_handler.depends import Depends
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from agent.exports.jsonexport import edge_from_dict
from agent.model import Edge, Method
from cloud_functions.auth import ApiError, current_caller, current_store, require
from cloud_functions.store.base import GraphStore, TokenRecord

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
    # Validated as objects here (fast), then parsed by edge_from_dict; the schema documents them.
    edges: Annotated[
        list[dict[str, Any]],
        WithJsonSchema({"type": "array", "maxItems": MAX_BATCH, "items": EDGE_SCHEMA}),
    ] = Field(max_length=MAX_BATCH)


class IngestOut(BaseModel):
    stored: bool = Field(description="False when the batch id was seen before (nothing written).")
    edgesWritten: int


def _in_range(edge: Edge) -> Edge:
    if not (EPOCH <= edge.first_seen < YEAR_10000 and EPOCH <= edge.last_seen < YEAR_10000):
        raise ValueError("firstSeen and lastSeen must be between 1970 and 9999")
    return edge


def parse_edges(objects: Sequence[dict[str, Any]]) -> list[Edge]:
    """The batch's edges; :class:`ApiError` 422 listing the malformed ones (at most 20)."""
    edges: list[Edge] = []
    details: list[dict[str, Any]] = []
    for index, obj in enumerate(objects):
        try:
            edges.append(_in_range(edge_from_dict(obj)))
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as error:
            if len(details) < 20:
                details.append({"loc": ["body", "edges", index], "type": "edge_invalid", "msg": str(error)})
    if details:
        raise ApiError(422, "validation_error", "malformed edges", details)
    return edges


@router.post("/v1/ingest", security=[{"bearerAuth": []}], tags=["ingest"], summary="Upload a batch of edges")
def ingest(
    body: IngestIn,
    store: Annotated[GraphStore, Depends(current_store)],
    caller: Annotated[TokenRecord | None, Depends(current_caller)],
) -> IngestOut:
    token = require(caller, "ingest")
    if not token.cluster_id:
        raise ApiError(403, "forbidden", "the ingest token is bound to no cluster")
    result = store.ingest(
        token.tenant_id, token.cluster_id, body.batchId, parse_edges(body.edges), time.time()
    )
    return IngestOut(stored=result.stored, edgesWritten=result.edges_written)
