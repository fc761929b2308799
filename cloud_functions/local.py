"""Serve the cloud's Lambda handler over plain HTTP, for local use (``make demo``, tests).

Each HTTP request becomes an API Gateway HTTP API **v2** event (``version: "2.0"``,
``routeKey: "$default"``, lower-cased headers, base64 bodies for binary content) passed to
the same :class:`~cloud_functions.handlers.CloudApp` the Lambda runs; its response is
written back. On first start with an empty store the platform admin token is created and
written to ``--admin-token-file`` (mode 0600), or printed when no file is given.

    network-mapper-cloud --listen 127.0.0.1:8800 --db cloud.db --admin-token-file admin.token
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import sys
import time
import uuid
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from cloud_functions.auth import PLATFORM_TENANT, issue_token
from cloud_functions.handlers import CloudApp, CloudSettings
from cloud_functions.store.base import GraphStore

MAX_REQUEST_BYTES = 16 * 1024 * 1024
_TOO_LARGE = b'{"error":{"code":"payload_too_large","message":"request body too large"}}'
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


class _Handler(BaseHTTPRequestHandler):
    server: CloudServer
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_REQUEST_BYTES or length < 0:
            self._send(413, [("Content-Type", "application/json")], _TOO_LARGE)
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        event = http_event(self.command, self.path, list(self.headers.items()), body, self.client_address[0])
        status, headers, payload = response_parts(self.server.app(event, None))
        self._send(status, headers, payload)

    def _send(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def __getattr__(self, name: str) -> Any:
        """Every method (``do_GET``, ``do_TRACE`` …) goes to the handler, which answers 404 for
        the ones it has no route for (http.server itself would answer 501, an HTML server error)."""
        if name.startswith("do_") and name[3:].isalpha() and name[3:].isupper():
            return self._serve
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:  # the CloudApp logs each request
        pass


class CloudServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: CloudApp) -> None:
        super().__init__(address, _Handler)
        self.app = app


def ensure_admin_token(store: GraphStore, token_file: Path | None) -> str | None:
    """On an empty store (no admin token), create the platform admin token; return it (else None)."""
    if store.get_tenant(PLATFORM_TENANT) is None:
        store.create_tenant(PLATFORM_TENANT, "platform", time.time())
    if any(t.role == "admin" for t in store.tokens(PLATFORM_TENANT)):
        return None
    _, token = issue_token(store, PLATFORM_TENANT, "admin", time.time())
    if token_file is not None:
        token_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(token + "\n")
    return token


def serve(listen: str, db: Path, admin_token_file: Path | None = None) -> CloudServer:
    """Open the store, bootstrap the admin token, and return a bound (not yet serving) server."""
    from cloud_functions.store.sqlite import SqliteGraphStore

    host, _, port = listen.rpartition(":")
    store = SqliteGraphStore(db)
    token = ensure_admin_token(store, admin_token_file)
    if token is not None:
        where = f"written to {admin_token_file}" if admin_token_file else token
        print(f"network-mapper-cloud: created the admin token: {where}", flush=True)
    settings = CloudSettings(store=f"sqlite:{db}")
    return CloudServer((host or "127.0.0.1", int(port)), CloudApp(store, settings))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="network-mapper-cloud", description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:8800", help="host:port (default %(default)s)")
    parser.add_argument("--db", type=Path, default=Path("network-mapper-cloud.db"), help="SQLite file")
    parser.add_argument("--admin-token-file", type=Path, help="where to write the admin token on first start")
    args = parser.parse_args(argv)
    server = serve(args.listen, args.db, args.admin_token_file)
    host = args.listen.rpartition(":")[0]
    print(f"network-mapper-cloud: serving on http://{host}:{server.server_port}", flush=True)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
