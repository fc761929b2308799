"""``POST /v1/ingest``: a cluster's uploader sends a batch of edges (the codec's edge documents).

The raw body is decoded and checked in one pass by the codec (:func:`agent.wire.decode_ingest`);
the edges go to the store's ingest (:mod:`cloud_functions.store.ingestion`). The cluster comes
from the ingest token, never from the body. A retried batch (same ``batchId``, same edges) answers
``stored: false`` with 200, so uploaders may retry freely; the same ``batchId`` with other edges
is a 409 ``conflict``. A malformed body answers 422
``validation_error`` whose ``details`` locate what is wrong as the codec reports it (``loc``:
``["body", "edges", 3, "firstSeen"]``), every malformed edge listed. ``seenAt`` is the cluster's
heartbeat (liveness: :mod:`cloud_functions.store.base`); one later than the cloud's clock counts
as now.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import msgspec
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel, Field

from agent import boundedjson, wire, wirechecks
from agent.wire import IngestBody, WireError
from cloud_functions.auth import SECURITY, ApiError, require
from cloud_functions.store.base import GraphStore
from cloud_functions.store.ingestion import InvalidEdges

router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]  # powertools leaves __init__ bare

MAX_BATCH = 500
MAX_DETAILS = 20
BATCH_ID = r"^[^\x00-\x1f\x7f#]+$"
"""A batch id: no control characters, no ``#`` (it becomes part of a key), at most 128 of them."""
_BATCH_ID = re.compile(BATCH_ID)


def check_bounds(text: str) -> None:
    """:class:`ApiError` 400 for a body nested too deep or with too long a number
    (:mod:`agent.boundedjson`), before any parser sees it."""
    try:
        boundedjson.check(text)
    except boundedjson.JsonTooComplex as error:
        raise ApiError(400, "bad_request", f"the body: {error}") from None


def parse_json(text: str) -> Any:
    """The JSON bodies of every route that takes a body parameter (the resolver's deserializer)."""
    check_bounds(text)
    return json.loads(text)


def request_schema() -> dict[str, Any]:
    """The OpenAPI request body: the codec's upload body, with this route's limits."""
    schema = wire.ingest_schema()
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


def _invalid_field(name: str, kind: str, message: str) -> ApiError:
    return invalid([{"loc": ["body", name], "type": kind, "msg": message}])


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
    check_bounds(text)
    try:
        body = wire.decode_ingest(text)
    except WireError as error:
        first = detail(error, ["body"])
        is_edge = first["loc"][:2] == ["body", "edges"] and len(first["loc"]) > 2
        raise invalid((edge_details(text) if is_edge else []) or [first]) from None
    if len(body.batchId) > 128 or _BATCH_ID.match(body.batchId) is None:
        raise _invalid_field(
            "batchId", "value_error", "1 to 128 characters, no control characters and no '#'"
        )
    if len(body.edges) > MAX_BATCH:
        raise _invalid_field("edges", "too_long", f"at most {MAX_BATCH} edges a batch")
    if body.seenAt is not None and not wire.EARLIEST <= body.seenAt.timestamp() < wire.END:
        raise _invalid_field("seenAt", "value_error", f"must lie in {wire.RANGE}")
    problems = [
        {"loc": ["body", "edges", index, *loc], "type": "value_error", "msg": why}
        for index, doc in enumerate(body.edges)
        for loc, why in wirechecks.problems(doc)
    ]
    if problems:
        raise invalid(problems)
    return body


@router.post(
    "/v1/ingest",
    security=SECURITY,
    tags=["ingest"],
    summary="Upload a batch of edges",
    description="A batch is stored once per `batchId`: re-sending the same edges under the same id "
    "(a retry) answers 200 with `stored: false` and writes nothing; re-using the id for different "
    "content answers 409 `conflict` and writes nothing.",
    responses={409: {"description": "The batchId was used before for different content"}},
)
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
