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

import ipaddress
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import msgspec
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel, Field

from agent import wire
from agent.wire import EdgeDoc, IngestBody, InternetTargetDoc, WireError
from cloud_functions.auth import SECURITY, ApiError, require
from cloud_functions.store.base import GraphStore
from cloud_functions.store.ingestion import InvalidEdges

router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]  # powertools leaves __init__ bare

MAX_BATCH = 500
MAX_DETAILS = 20
BATCH_ID = r"^[^\x00-\x1f\x7f#]+$"
"""A batch id: no control characters, no ``#`` (it becomes part of a key), at most 128 of them."""
_BATCH_ID = re.compile(BATCH_ID)


MAX_JSON_DEPTH = 64
"""Nesting of arrays and objects a JSON body may have: no route needs more than a handful, and
parsers recurse once a level (Python's json hits its recursion limit near 1000: a 500)."""
MAX_NUMBER_CHARS = 100
"""Characters of one number literal: a float needs fewer than 30, an int below 2**63 19, while
Python refuses to convert ints of over 4300 digits (a ValueError: a 500) and takes time
quadratic in the digits below that."""
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
_LONG_NUMBER = re.compile(rf"[-+0-9.eE]{{{MAX_NUMBER_CHARS + 1},}}")


def check_json_shape(text: str) -> None:
    """:class:`ApiError` 400 for a JSON text nested deeper than :data:`MAX_JSON_DEPTH` or with a
    number longer than :data:`MAX_NUMBER_CHARS`; checked on the text before any parser sees it
    (the text may still be malformed otherwise: that is the parser's to report)."""
    bare = _STRING.sub('""', text)  # brackets and digits inside strings are neither
    if _LONG_NUMBER.search(bare):
        raise ApiError(400, "bad_request", f"a number has more than {MAX_NUMBER_CHARS} digits")
    depth = 0
    for bracket in _BRACKET.finditer(bare):
        depth += 1 if bracket[0] in "[{" else -1
        if depth > MAX_JSON_DEPTH:
            raise ApiError(400, "bad_request", f"the body is nested deeper than {MAX_JSON_DEPTH} levels")


def parse_json(text: str) -> Any:
    """The JSON bodies of every route that takes a body parameter (the resolver's deserializer):
    :func:`check_json_shape`, then :func:`json.loads`."""
    check_json_shape(text)
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


MAX_COUNT = 2**53 - 1
"""The largest count ingest takes: JSON readers that hold numbers as doubles (the console's) lose
exactness above it. The codec bounds counts below only (``ge=0``); the bound belongs there."""


def _edge_problems(index: int, doc: EdgeDoc) -> Iterator[dict[str, Any]]:
    """What the ingest schema forbids in one decoded edge that the codec lets through."""
    loc: list[Any] = ["body", "edges", index]
    if doc.count > MAX_COUNT:
        yield {"loc": [*loc, "count"], "type": "less_than_equal", "msg": f"at most {MAX_COUNT}"}
    for name in ("name", "namespace"):
        if not getattr(doc.client, name):
            yield {"loc": [*loc, "client", name], "type": "string_too_short", "msg": "must not be empty"}
    if isinstance(doc.target, InternetTargetDoc):
        for at, ip in enumerate(doc.target.ips):
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                yield {"loc": [*loc, "target", "ips", at], "type": "value_error", "msg": "not an IP address"}


def decode_body(text: str) -> IngestBody:
    """The upload body, checked; :class:`ApiError` 422 with the details of what is wrong."""
    check_json_shape(text)
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
        raise _invalid_field("seenAt", "value_error", "must lie in [1970, 10000)")
    problems = [problem for index, doc in enumerate(body.edges) for problem in _edge_problems(index, doc)]
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
