"""The HTTP API: one powertools ``APIGatewayHttpResolver`` with request validation (pydantic),
every route of the handler modules, the error mapping and the OpenAPI document.

Every error is ``{"error": {"code", "message"}}`` (plus ``details`` for validation errors) with
its 4xx status: 400 unreadable body, 401 no/unknown token, 403 not yours, 404 no such route or
object, 409 conflict, 413 too large, 415 wrong content type, 422 invalid request. A 500 is
only ever a bug or a failing store, and says nothing more than ``internal``.
"""

from __future__ import annotations

import binascii
import json
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
from cloud_functions.handlers import admin, console, export, graph, ingest, telemetry
from cloud_functions.store.base import Conflict, NotFound, StoreError

logger = Logger(service="network-mapper-cloud")

app = APIGatewayHttpResolver(enable_validation=True)
for _module in (admin, ingest, graph, export, telemetry, console):
    app.include_router(_module.router)

TITLE = "network-mapper cloud"
API_VERSION = "1.0.0"
PUBLIC_PATHS = frozenset({"/", "/healthz", "/openapi.json", "/v1/metrics"})
"""Routes that need no token; every other request is authenticated before routing."""
OWN_CONTENT_TYPES = frozenset({"/v1/metrics"})
"""Routes that read bodies of their own media types; the others take JSON only."""
RAW_JSON_BODIES = {"/v1/ingest": ingest.request_schema}
"""Routes that decode their JSON bodies themselves (no body parameter): their request bodies'
schemas, for the OpenAPI document."""


def error_response(status: int, code: str, message: str, details: list[Any] | None = None) -> Response[Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return Response(status, "application/json", {"error": error})


def _location(loc: Any) -> list[Any]:
    return [part if isinstance(part, int) else str(part) for part in loc]


def _api_error(error: ApiError) -> Response[Any]:
    return error_response(error.status, error.code, error.message, error.details)


def _invalid(error: RequestValidationError) -> Response[Any]:
    details = [
        {"loc": _location(e.get("loc", ())), "type": str(e.get("type", "")), "msg": str(e.get("msg", ""))}
        for e in error.errors()[:50]
    ]
    return error_response(422, "validation_error", "the request is invalid", details)


def _unsupported(_: RequestUnsupportedContentType) -> Response[Any]:
    return error_response(415, "unsupported_media_type", "send application/json")


def _unreadable(_: Exception) -> Response[Any]:
    return error_response(400, "bad_request", "the body is not UTF-8 (or not valid base64)")


def _no_route(_: NotFoundError) -> Response[Any]:
    return error_response(404, "not_found", "no such route")


def _not_found(error: NotFound) -> Response[Any]:
    return error_response(404, "not_found", str(error) or "not found")


def _conflict(error: Conflict) -> Response[Any]:
    return error_response(409, "conflict", str(error) or "exists already")


def _store_failed(_: StoreError) -> Response[Any]:
    logger.exception("store failed")
    return error_response(503, "store_unavailable", "the store failed; retry later")


def _bug(_: Exception) -> Response[Any]:
    logger.exception("unhandled error")
    return error_response(500, "internal", "internal error")


_ERROR_HANDLERS: list[tuple[type[Exception] | list[type[Exception]], Callable[[Any], Response[Any]]]] = [
    (ApiError, _api_error),
    (RequestValidationError, _invalid),
    (RequestUnsupportedContentType, _unsupported),
    ([UnicodeDecodeError, binascii.Error], _unreadable),
    (NotFoundError, _no_route),
    (NotFound, _not_found),
    (Conflict, _conflict),
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
    return json.dumps(document, indent=2)


class Health(BaseModel):
    status: str


@app.get("/healthz", tags=["meta"], summary="Liveness")
def healthz() -> Health:
    return Health(status="ok")


@app.get("/openapi.json", include_in_schema=False)
def openapi() -> Response[str]:
    return Response(200, "application/json", openapi_document())
