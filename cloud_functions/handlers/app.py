"""The HTTP API: one powertools ``APIGatewayHttpResolver`` with request validation (pydantic),
every route of the handler modules, the error mapping, the OpenAPI document and the public pages
(health, the OpenAPI document, the web console's files: :mod:`cloud_functions.handlers.console`).

Every error is ``{"error": {"code", "message"}}`` (plus ``details`` for validation errors) with
its 4xx status: 400 unreadable body, 401 no/unknown token, 403 not yours, 404 no such route or
object, 409 conflict, 413 too large, 415 wrong content type, 422 invalid request. A 500 is
only ever a bug or a failing store, and says nothing more than ``internal``.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Callable
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer
from pydantic import BaseModel

from cloud_functions.auth import ApiError
from cloud_functions.handlers import (
    admin,
    console,
    coverage,
    export,
    graph,
    ingest,
    policy,
    session,
    snapshots,
    summary,
    telemetry,
)
from cloud_functions.store.base import Conflict, NotFound, StoreError

logger = Logger(service="network-mapper-cloud")

# Every body parameter is parsed by ingest.parse_json: its limits on depth and number length
# keep bodies of extreme shapes 400s rather than recursion errors (500).
app = APIGatewayHttpResolver(enable_validation=True, json_body_deserializer=ingest.parse_json)
for _module in (admin, session, ingest, graph, summary, export, telemetry, snapshots, policy, coverage):
    app.include_router(_module.router)

TITLE = "network-mapper cloud"
API_VERSION = "1.0.0"
PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json", "/v1/metrics"})  # need no token (and: is_public)


def is_public(path: str) -> bool:
    """Whether a request to ``path`` (raw) needs no token: :data:`PUBLIC_PATHS` and the console's
    files (``/``, ``/console/...``: answered before routing, :meth:`CloudApp.answer
    <cloud_functions.handlers.CloudApp.answer>`)."""
    return path in PUBLIC_PATHS or console.is_console_path(path)


OWN_CONTENT_TYPES = frozenset({"/v1/metrics"})  # read bodies of their own media types, not JSON
_CHECK = re.compile(r"/v1/tenants/[^/]+/check")


def own_content_type(path: str) -> bool:
    """Whether the route at ``path`` (raw) reads a body of its own media type, not only JSON: the
    telemetry's OTLP, the policy check's YAML (:mod:`cloud_functions.handlers.policy`)."""
    return path in OWN_CONTENT_TYPES or _CHECK.fullmatch(path) is not None


RAW_JSON_BODIES = {
    "/v1/ingest": ingest.request_schema,
    "/v1/snapshots": snapshots.request_schema,
    "/v1/coverage": coverage.request_schema,
}
"""Routes that decode their JSON bodies themselves (no body parameter): their request bodies'
schemas, for the OpenAPI document."""
RAW_BODIES = {"/v1/tenants/{tenantId}/check": policy.request_body}
"""Routes that read bodies of other media types themselves: their OpenAPI request bodies."""


def error_response(status: int, code: str, message: str, details: list[Any] | None = None) -> Response[Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return Response(status, "application/json", {"error": error})


def _answer(
    status: int, code: str, message: str, *, say: bool = False
) -> Callable[[Exception], Response[Any]]:
    """An error handler answering ``message`` (``say``: the error's own message, if it has one)."""
    return lambda error: error_response(status, code, (say and str(error)) or message)


def _invalid(error: RequestValidationError) -> Response[Any]:
    details = []
    for e in error.errors()[:50]:
        loc = [part if isinstance(part, int) else str(part) for part in e.get("loc", ())]
        details.append({"loc": loc, "type": str(e.get("type", "")), "msg": str(e.get("msg", ""))})
    return error_response(422, "validation_error", "the request is invalid", details)


def _store_failed(_: StoreError) -> Response[Any]:
    logger.exception("store failed")
    return error_response(503, "store_unavailable", "the store failed; retry later")


def _bug(_: Exception) -> Response[Any]:
    logger.exception("unhandled error")
    return error_response(500, "internal", "internal error")


_ERROR_HANDLERS: list[tuple[type[Exception] | list[type[Exception]], Callable[[Any], Response[Any]]]] = [
    (ApiError, lambda e: error_response(e.status, e.code, e.message, e.details)),
    (RequestValidationError, _invalid),
    (RequestUnsupportedContentType, _answer(415, "unsupported_media_type", "send application/json")),
    (
        [UnicodeDecodeError, binascii.Error],
        _answer(400, "bad_request", "the body is not UTF-8 (or not valid base64)"),
    ),
    (NotFoundError, _answer(404, "not_found", "no such route")),
    (NotFound, _answer(404, "not_found", "not found", say=True)),
    (Conflict, _answer(409, "conflict", "exists already", say=True)),
    (StoreError, _store_failed),
    (Exception, _bug),
]
for _errors, _handle in _ERROR_HANDLERS:
    app.exception_handler(_errors)(_handle)


@cache
def openapi_document() -> str:
    document = json.loads(
        app.get_openapi_json_schema(
            title=TITLE,
            version=API_VERSION,
            description="Per-tenant access graphs uploaded by network-mapper clusters. "
            "Send `Authorization: Bearer <token>`.",
            security_schemes={"bearerAuth": HTTPBearer(bearerFormat="nm_<64 hex>")},
        )
    )
    for path, schema in RAW_JSON_BODIES.items():
        content = {"application/json": {"schema": schema()}}
        document["paths"][path]["post"]["requestBody"] = {"required": True, "content": content}
    for path, body in RAW_BODIES.items():
        document["paths"][path]["post"]["requestBody"] = body()
    return json.dumps(document, indent=2)


class Health(BaseModel):
    status: str


@app.get("/healthz", tags=["meta"], summary="Liveness")
def healthz() -> Health:
    return Health(status="ok")


@app.get("/openapi.json", include_in_schema=False)
def openapi() -> Response[str]:
    return Response(200, "application/json", openapi_document())
