"""``POST /v1/metrics``: anonymous usage telemetry, OTLP/HTTP metrics (protobuf or JSON).

No token: telemetry carries counts, never names, and its cluster id is already a hash (of the
``kube-system`` namespace UID). The cluster id is read from the resource attribute
``cluster.id`` when the payload parses, else ``unknown``; the raw payload is kept as sent.
Payloads over 1 MB answer 413. The answer is an empty ``ExportMetricsServiceResponse`` in the
request's encoding (``{}`` for JSON, no bytes for protobuf), as OTLP/HTTP specifies.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
from collections.abc import Iterable
from math import ceil
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from cloud_functions.auth import ApiError, Store
from cloud_functions.store.base import MAX_TELEMETRY_BYTES, StoreError

router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]  # powertools leaves __init__ bare

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
UNKNOWN = "unknown"
_CLUSTER_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
PER_MINUTE = 60
"""Payloads one source (client IP) may send a minute: an agent exports every few minutes, so
this only stops a flood on the anonymous route (each request is a store write)."""
WINDOW = 60.0
MAX_SOURCES = 10_000  # sources tracked at once; beyond it, the expired windows are forgotten


class RateLimiter:
    """Fixed one-minute windows per source, in memory: per Lambda container (or local server),
    which bounds what one source costs each warm container without a store round trip."""

    def __init__(self, per_window: int, window: float) -> None:
        self._per_window, self._window = per_window, window
        self._windows: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def retry_after(self, source: str, now: float) -> float:
        """0 when ``source`` may send now (counted), else the seconds until it may."""
        with self._lock:
            start, sent = self._windows.get(source, (now, 0))
            if now - start >= self._window:
                start, sent = now, 0
            if sent >= self._per_window:
                return start + self._window - now
            if len(self._windows) >= MAX_SOURCES and source not in self._windows:
                cutoff = now - self._window
                self._windows = {s: w for s, w in self._windows.items() if w[0] > cutoff}
            self._windows[source] = (start, sent + 1)
            return 0.0

    def clear(self) -> None:
        with self._lock:
            self._windows.clear()


limiter = RateLimiter(PER_MINUTE, WINDOW)


def _first_valid(cluster_ids: Iterable[Any]) -> str:
    """The first well-formed cluster id (read lazily), else ``unknown``."""
    return next((c for c in cluster_ids if isinstance(c, str) and _CLUSTER_ID.match(c)), UNKNOWN)


def cluster_from_json(body: bytes) -> str:
    """``cluster.id`` of the first resource that has one, in an OTLP/JSON payload."""
    try:
        return _first_valid(
            a.get("value", {}).get("stringValue")
            for r in json.loads(body).get("resourceMetrics", [])
            for a in r.get("resource", {}).get("attributes", [])
            if a.get("key") == "cluster.id"
        )
    except (ValueError, AttributeError, TypeError, RecursionError):
        return UNKNOWN


def cluster_from_protobuf(body: bytes) -> str:
    """``cluster.id`` of the first resource that has one, in an OTLP/protobuf payload."""
    try:
        from google.protobuf.message import DecodeError  # type: ignore[import-untyped, unused-ignore]
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    except ImportError:  # pragma: no cover - the OTLP exporter dependency ships both
        return UNKNOWN
    request = ExportMetricsServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, RuntimeError, ValueError):
        return UNKNOWN
    return _first_valid(
        a.value.string_value
        for r in request.resource_metrics
        for a in r.resource.attributes
        if a.key == "cluster.id"
    )


def raw_body(body: str | None, is_base64: bool) -> bytes:
    if not body:
        return b""
    if not is_base64:
        return body.encode("utf-8", "surrogateescape")
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "bad_request", "body is not valid base64") from None


@router.post(
    "/v1/metrics",
    tags=["telemetry"],
    summary="Receive OTLP/HTTP metrics (anonymous)",
    responses={
        200: {"description": "Accepted (an empty ExportMetricsServiceResponse)"},
        413: {"description": "Payload over 1 MB"},
        415: {"description": "Not application/x-protobuf or application/json"},
        429: {"description": f"Over {PER_MINUTE} payloads a minute from one source (see Retry-After)"},
    },
)
def receive_metrics(store: Store) -> Response[Any]:
    event = router.current_event
    source = event.request_context.http.source_ip or UNKNOWN
    wait = limiter.retry_after(source, time.monotonic())
    if wait > 0:
        error = {"error": {"code": "rate_limited", "message": f"at most {PER_MINUTE} payloads a minute"}}
        return Response(429, JSON, json.dumps(error), headers={"Retry-After": str(max(1, ceil(wait)))})
    content_type = (event.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type not in (PROTOBUF, JSON):
        raise ApiError(415, "unsupported_media_type", f"use {PROTOBUF} or {JSON}")
    if len(event.body or "") > MAX_TELEMETRY_BYTES * 4 // 3 + 4:  # before decoding anything
        raise ApiError(413, "payload_too_large", "telemetry payloads are limited to 1 MB")
    body = raw_body(event.body, bool(event.is_base64_encoded))
    if len(body) > MAX_TELEMETRY_BYTES:
        raise ApiError(413, "payload_too_large", "telemetry payloads are limited to 1 MB")
    cluster = cluster_from_protobuf(body) if content_type == PROTOBUF else cluster_from_json(body)
    try:
        store.record_telemetry(cluster, body, content_type, time.time())
    except StoreError as error:
        raise ApiError(413, "payload_too_large", str(error)) from None
    if content_type == PROTOBUF:
        return Response(200, PROTOBUF, b"")
    return Response(200, JSON, "{}")
