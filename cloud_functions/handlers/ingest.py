"""``POST /v1/ingest``: a cluster's uploader sends a batch of edges (the codec's edge documents).

The raw body (``router.current_event``) is decoded and checked in one pass by the codec
(:func:`agent.wire.decode_ingest`: typed, a tagged union of target kinds; version 1 bodies, without
``version``, are read too); the edges go to the store's ingest (the one ingest service,
:mod:`cloud_functions.store.ingestion`). The cluster comes from the ingest token, never from the
body. A batch is stored once per ``batchId``: a retried batch answers ``stored: false`` with 200,
so uploaders may retry freely.

A malformed body answers 422 ``validation_error`` whose ``details`` locate what is wrong as the
codec reports it (``loc``: ``["body", "edges", 3, "firstSeen"]``): when it is an edge, every
malformed edge is listed (the body is then decoded again, edge by edge, to find them all). Times
must lie in [1970, 10000).

Liveness (see :mod:`cloud_functions.store.base`): each edge may say ``"live": true`` (seen within
the uploader's granularity), and a body may carry ``seenAt``, the cluster's heartbeat, which keeps
every live edge's last-seen time current without re-sending it. A body with no edges and a
``seenAt`` is a heartbeat only. A ``seenAt`` later than the cloud's own clock counts as now.
"""

from __future__ import annotations

import re
import time
from typing import Any

import msgspec
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel, Field

from agent import wire
from agent.wire import IngestBody, WireError
from cloud_functions.auth import ApiError, require
from cloud_functions.handlers.schemas import ingest_schema
from cloud_functions.store.base import GraphStore
from cloud_functions.store.ingestion import InvalidEdges

router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]  # powertools leaves __init__ bare

MAX_BATCH = 500
MAX_DETAILS = 20
BATCH_ID = r"^[^\x00-\x1f\x7f#]+$"
"""A batch id: no control characters, no ``#`` (it becomes part of a key), at most 128 of them."""
_BATCH_ID = re.compile(BATCH_ID)


def request_schema() -> dict[str, Any]:
    """The OpenAPI request body: the codec's upload body, with this route's limits."""
    schema = ingest_schema()
    properties = schema["properties"]
    properties["batchId"] |= {
        "minLength": 1,
        "maxLength": 128,
        "pattern": BATCH_ID,
        "description": "Idempotency key of the batch (no control characters, no '#').",
    }
    properties["edges"]["maxItems"] = MAX_BATCH
    return schema


class IngestOut(BaseModel):
    stored: bool = Field(description="False when the batch id was seen before (nothing written).")
    edgesWritten: int


# --------------------------------------------------------------------------- errors


_AT = re.compile(r"(?s)(.*) - at `\$(.*)`")
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_TYPES = (
    ("JSON is malformed", "json_invalid"),
    ("Input data was truncated", "json_invalid"),
    ("Object missing required field", "missing"),
    ("Object contains unknown field", "extra_forbidden"),
)


def detail(error: WireError, loc: list[Any]) -> dict[str, Any]:
    """A 422 detail of a codec error: its message, and its location (``$.edges[3].firstSeen``)
    appended to ``loc``."""
    message = str(error)
    found = _AT.fullmatch(message)
    if found is not None:
        message = found[1]
        loc = loc + [name or int(index) for name, index in _STEP.findall(found[2])]
    kind = next((t for prefix, t in _TYPES if message.startswith(prefix)), "value_error")
    return {"loc": loc, "type": kind, "msg": message}


def invalid(details: list[dict[str, Any]]) -> ApiError:
    return ApiError(422, "validation_error", "the request is invalid", details[:MAX_DETAILS])


def edge_details(text: str) -> list[dict[str, Any]]:
    """Every malformed edge of a body that did not decode, each decoded on its own (none when the
    body is not an object with a list of edges)."""
    try:
        plain = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return []
    edges = plain.get("edges") if isinstance(plain, dict) else None
    details = []
    for index, value in enumerate(edges if isinstance(edges, list) else ()):
        try:
            wire.edge_from_plain(value)
        except WireError as error:
            details.append(detail(error, ["body", "edges", index]))
    return details


def decode_body(text: str) -> IngestBody:
    """The upload body, checked; :class:`ApiError` 422 with the details of what is wrong."""
    try:
        body = wire.decode_ingest(text)
    except WireError as error:
        first = detail(error, ["body"])
        is_edge = first["loc"][:2] == ["body", "edges"] and len(first["loc"]) > 2
        raise invalid((edge_details(text) if is_edge else []) or [first]) from None
    if len(body.batchId) > 128 or _BATCH_ID.match(body.batchId) is None:
        msg = "1 to 128 characters, no control characters and no '#'"
        raise invalid([{"loc": ["body", "batchId"], "type": "value_error", "msg": msg}])
    if len(body.edges) > MAX_BATCH:
        msg = f"at most {MAX_BATCH} edges a batch"
        raise invalid([{"loc": ["body", "edges"], "type": "too_long", "msg": msg}])
    if body.seenAt is not None and not wire.EARLIEST <= body.seenAt.timestamp() < wire.END:
        msg = "must lie in [1970, 10000)"
        raise invalid([{"loc": ["body", "seenAt"], "type": "value_error", "msg": msg}])
    return body


# --------------------------------------------------------------------------- the route


@router.post("/v1/ingest", security=[{"bearerAuth": []}], tags=["ingest"], summary="Upload a batch of edges")
def ingest() -> IngestOut:
    # The store and caller straight from the context, not through Depends like other routes:
    # resolving dependencies costs powertools a get_type_hints per request, on the hot path.
    store: GraphStore = router.context["store"]
    token = require(router.context.get("caller"), "ingest")
    if not token.cluster_id:
        raise ApiError(403, "forbidden", "the ingest token is bound to no cluster")
    body = decode_body(router.current_event.decoded_body or "")
    now = time.time()
    seen_at = None if body.seenAt is None else min(body.seenAt.timestamp(), now)
    try:
        result = store.ingest(
            token.tenant_id, token.cluster_id, body.batchId, body.edges, now, seen_at=seen_at
        )
    except InvalidEdges as error:
        edges = [{"loc": ["body", "edges", i], "type": "value_error", "msg": m} for i, m in error.problems]
        raise invalid(edges) from None
    return IngestOut(stored=result.stored, edgesWritten=result.edges_written)
