"""The cloud's Lambda entry: ``handler(event, context)`` for API Gateway HTTP API (v2) events.

Settings are read from the environment once, here (:meth:`CloudSettings.from_environ`), and
passed down: ``CLOUD_STORE`` picks the store (``sqlite:/path`` or ``dynamodb:<table>``),
``CLOUD_DYNAMODB_ENDPOINT`` points boto3 at DynamoDB Local, ``NM_ADMIN_TOKEN_SHA256``
optionally admits a platform admin token by its hash, and ``NM_MAX_BODY_BYTES`` caps bodies.
:class:`CloudApp` binds a store and settings to the routes of :mod:`cloud_functions.handlers.app`;
``cloud_functions.local`` serves the same :class:`CloudApp` over HTTP (:meth:`CloudApp.answer`
also names the tenant the request's token authenticated as), and tests drive it with recorded
events.

Each request is authenticated before routing (except the public routes), so a request without
a valid token gets 401 whatever else is wrong with it; routes then check role and tenant. The web
console's files (``GET /``, ``GET /console/...``) are answered before routing, from the package's
``console`` directory (``CloudSettings.console_dir`` points elsewhere, for tests).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from cloud_functions.auth import ApiError, authenticate
from cloud_functions.handlers import console
from cloud_functions.store.base import GraphStore, TokenRecord

DEFAULT_STORE = "sqlite:/tmp/network-mapper-cloud.db"
DEFAULT_MAX_BODY = 6 * 1024 * 1024  # Lambda's synchronous payload limit


@dataclass(frozen=True)
class CloudSettings:
    """``console_dir``: where the web console's files are ("": the package's own,
    ``cloud_functions/console``)."""

    store: str = DEFAULT_STORE
    admin_token_sha256: str = ""
    max_body_bytes: int = DEFAULT_MAX_BODY
    dynamodb_endpoint: str = ""
    console_dir: str = ""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> CloudSettings:
        env = os.environ if environ is None else environ
        return cls(
            store=env.get("CLOUD_STORE", DEFAULT_STORE),
            admin_token_sha256=env.get("NM_ADMIN_TOKEN_SHA256", "").strip().lower(),
            max_body_bytes=int(env.get("NM_MAX_BODY_BYTES", str(DEFAULT_MAX_BODY))),
            dynamodb_endpoint=env.get("CLOUD_DYNAMODB_ENDPOINT", ""),
        )


def open_store(settings: CloudSettings) -> GraphStore:
    """``sqlite:/path/to.db`` or ``dynamodb:<table>`` (``settings.store``) → the store."""
    spec = settings.store
    kind, _, where = spec.partition(":")
    if kind == "sqlite" and where:
        from cloud_functions.store.sqlite import SqliteGraphStore

        return SqliteGraphStore(where)
    if kind == "dynamodb" and where:
        import boto3  # type: ignore[import-untyped, unused-ignore]

        from cloud_functions.store.dynamodb import DynamoGraphStore

        client = boto3.client("dynamodb", endpoint_url=settings.dynamodb_endpoint or None)
        return DynamoGraphStore(client, where)
    raise ValueError(f"CLOUD_STORE must be sqlite:/path or dynamodb:<table>, got {spec!r}")


def json_error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The Lambda proxy response of an error (``{"error": {"code", "message"}}``): the app's own
    answers outside routing, and the local server's front (:mod:`cloud_functions.localfront`)."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": json.dumps({"error": {"code": code, "message": message}}),
        "isBase64Encoded": False,
    }


@dataclass(frozen=True)
class Answer:
    """What :meth:`CloudApp.answer` returns: the Lambda response, and the tenant of the token
    that authenticated the request ("" when none did: public routes, refused tokens)."""

    response: dict[str, Any]
    tenant: str = ""


class CloudApp:
    """The routes bound to one store and settings; call it with (event, context)."""

    def __init__(self, store: GraphStore, settings: CloudSettings | None = None) -> None:
        from cloud_functions.handlers import app  # its routes import this package

        self.store = store
        self.settings = settings or CloudSettings()
        self._routes = app
        # The resolver keeps the current event in class attributes: one request at a time per
        # process (the local server runs worker processes to answer several at once).
        self._lock = threading.Lock()

    def _admit(self, event: Mapping[str, Any], path: str) -> TokenRecord | None:
        """The caller, once the request passes the checks before routing; :class:`ApiError` 401,
        or 415 for a body that is not JSON (telemetry checks its own types)."""
        headers = event.get("headers")
        headers = headers if isinstance(headers, Mapping) else {}
        caller = None
        if not self._routes.is_public(path):
            authorization = headers.get("authorization")
            caller = authenticate(self.store, authorization, self.settings.admin_token_sha256)
        raw_type = str(headers.get("content-type", ""))
        media_type, _, parameters = raw_type.partition(";")
        media_type = media_type.strip().lower()
        if (
            event.get("body")
            and not self._routes.own_content_type(path)
            and media_type not in ("", "application/json")
        ):
            raise ApiError(415, "unsupported_media_type", "send application/json")
        if media_type == "application/json" and isinstance(headers, MutableMapping):
            # Media types are case-insensitive (RFC 9110), but powertools' body validation
            # compares the header with a case-sensitive startswith("application/json") and
            # answers 415 otherwise: hand it the canonical spelling.
            headers["content-type"] = media_type + (f";{parameters}" if parameters else "")
        return caller

    def _console_file(self, event: Mapping[str, Any], method: str, path: str) -> dict[str, Any]:
        """The console's file at ``path`` (:mod:`cloud_functions.handlers.console`), or a 404."""
        headers = event.get("headers")
        headers = headers if isinstance(headers, Mapping) else {}
        found = console.answer(method, path, headers, self.settings.console_dir)
        return found or json_error(404, "not_found", "no such file in the console")

    def __call__(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        """The Lambda response to ``event``."""
        return self.answer(event, context).response

    def answer(self, event: Mapping[str, Any], context: Any = None) -> Answer:
        """The Lambda response to ``event`` and the tenant its token authenticated as (for the
        local server's per-tenant limits, which know only the bearer token)."""
        started = time.perf_counter()
        request_context = event.get("requestContext")
        http = request_context.get("http") if isinstance(request_context, Mapping) else None
        method, path = http.get("method") if isinstance(http, Mapping) else None, event.get("rawPath")
        if not isinstance(method, str) or not isinstance(path, str):
            return Answer(json_error(400, "bad_event", "not an API Gateway HTTP API (v2) event"))
        limit = self.settings.max_body_bytes
        if len(event.get("body") or "") > limit:
            return Answer(json_error(413, "payload_too_large", f"bodies are limited to {limit} bytes"))
        tenant = ""
        try:
            caller = self._admit(event, path)
            tenant = caller.tenant_id if caller else ""
            if method in ("GET", "HEAD") and console.is_console_path(path):  # files, not routes
                response = self._console_file(event, method, path)
            else:
                with self._lock:
                    self._routes.app.context.update(store=self.store, caller=caller, settings=self.settings)
                    response = self._routes.app.resolve(event, context)
        except ApiError as error:
            response = json_error(error.status, error.code, error.message)
        except Exception:  # a malformed event, or a bug: never a traceback to the client
            self._routes.logger.exception("request failed", extra={"method": method, "path": path})
            response = json_error(500, "internal", "internal error")
        status, ms = response.get("statusCode"), round((time.perf_counter() - started) * 1000, 2)
        log = {"method": method, "path": path, "status": status, "tenant": tenant, "ms": ms}
        self._routes.logger.info("request", extra=log)
        return Answer(response, tenant)


_default: CloudApp | None = None


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point (``cloud_functions.handlers.handler``)."""
    global _default  # noqa: PLW0603 - one store per Lambda container, opened on first use
    if _default is None:
        settings = CloudSettings.from_environ()
        _default = CloudApp(open_store(settings), settings)
    return _default(event, context)


lambda_handler = handler

__all__ = ["Answer", "CloudApp", "CloudSettings", "handler", "json_error", "lambda_handler", "open_store"]
