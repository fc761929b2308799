"""HTTP requests as API Gateway HTTP API **v2** events, and Lambda proxy responses as HTTP parts:
the local server's translation (:mod:`cloud_functions.localfront`) between the wire and
:class:`~cloud_functions.handlers.CloudApp`, which takes the same events the Lambda gets.

:func:`http_event` builds the event from a request's method, target, headers (as received),
body and peer address: ``version: "2.0"``, ``routeKey: "$default"``, lower-cased headers
(repeated ones joined with commas), query parameters, cookies, and the body as text for text
media types or base64 otherwise. :func:`response_parts` turns the handler's response dict back
into status, headers and body bytes.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

_TEXT_TYPES = ("application/json", "application/yaml", "application/x-www-form-urlencoded", "text/")


def _is_text(content_type: str) -> bool:
    content_type = content_type.lower()
    return any(content_type.startswith(t) for t in _TEXT_TYPES) or content_type.endswith("+json")


def http_event(
    method: str, target: str, headers: Sequence[tuple[str, str]], body: bytes, source_ip: str
) -> dict[str, Any]:
    """One HTTP request → the API Gateway HTTP API v2 event it would produce."""
    url = urlsplit(target)
    lowered: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        lowered[key] = f"{lowered[key]},{value}" if key in lowered else value
    query: dict[str, str] = {}
    for name, value in parse_qsl(url.query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": url.path or "/",
        "rawQueryString": url.query,
        "headers": lowered,
        "requestContext": {
            "accountId": "local",
            "apiId": "local",
            "domainName": lowered.get("host", "localhost"),
            "domainPrefix": lowered.get("host", "localhost").split(".")[0],
            "http": {
                "method": method.upper(),
                "path": unquote(url.path or "/"),
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": lowered.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = query
    if "cookie" in lowered:
        event["cookies"] = [c.strip() for c in lowered["cookie"].split(";") if c.strip()]
    if body:
        text: str | None = None
        if _is_text(lowered.get("content-type", "")):
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        if text is None:
            event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode("ascii"), True
        else:
            event["body"] = text
    return event


def response_parts(response: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    """A Lambda proxy response → (status, headers, body bytes)."""
    headers: list[tuple[str, str]] = []
    for name, value in (response.get("headers") or {}).items():
        headers.extend((name, v) for v in (value if isinstance(value, list) else [value]))
    for name, values in (response.get("multiValueHeaders") or {}).items():
        headers.extend((name, v) for v in values)
    headers.extend(("Set-Cookie", c) for c in response.get("cookies") or [])
    raw = response.get("body") or ""
    body = base64.b64decode(raw) if response.get("isBase64Encoded") else str(raw).encode("utf-8")
    return int(response.get("statusCode", 200)), headers, body
