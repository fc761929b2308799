"""The one client every producer and the CLI use to reach the mapper's GraphQL API, and the
HTTP transport seam it (and the mapper's cloud uploader) sends through.

Requests go to the mapper's ``/query`` endpoint (the sniffer's and watchers' reports, the CLI's
queries); answers come back as the GraphQL ``data`` or as one of the errors below.
:class:`MapperClient` is the seam at the GraphQL level (any object with ``execute``);
:data:`Transport` the seam at the HTTP level, in the spirit of httpx's ``MockTransport``: a plain
callable :class:`Request` → :class:`Response`, :class:`RequestsTransport` in production, one that
calls an app in the same process in tests (``tests/support/transports.py``). :func:`post_json` is
the one mapping of HTTP outcomes to errors, for this client and the cloud uploader
(:class:`agent.mapper.uploader.HttpCloudClient`, with its own error classes) alike.

Errors::

    MapperError
    ├── MapperUnavailable   connection refused, timeout, HTTP 5xx/429, not GraphQL (retry)
    ├── GraphQLErrors       the mapper answered with GraphQL ``errors`` (retry)
    └── MapperRejected      HTTP 4xx other than 429: bad token, invalid request (don't)

    TransportError          a transport got no answer (connection refused or reset, ...)
    └── TransportTimeout    ... within the request's timeout
"""

from __future__ import annotations

import json
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests


class MapperError(Exception):
    """A report did not reach the mapper, or the mapper did not accept it."""


class MapperUnavailable(MapperError):
    """Connection refused, timeout, HTTP 5xx or 429, or a response that is not GraphQL: retried."""


class GraphQLErrors(MapperError):
    """The mapper answered with GraphQL ``errors``: retried."""


class MapperRejected(MapperError):
    """HTTP 4xx other than 429 (bad token, invalid request): not retried within a cycle."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status


# --------------------------------------------------------------------------- the transport


class TransportError(Exception):
    """The request got no answer: connection refused or reset, a name that does not resolve ..."""


class TransportTimeout(TransportError):
    """No answer within the request's ``timeout``."""


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request. ``timeout``: seconds to wait for the answer (None: no limit)."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class Response:
    """One HTTP answer; header names are lower case."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


Transport = Callable[[Request], Response]
"""Sends a request and returns its answer (any status), or raises :class:`TransportError`."""


class RequestsTransport:
    """The default :data:`Transport`: ``requests`` with a pooled session; redirects are not followed."""

    def __init__(self, session: requests.Session | None = None) -> None:
        self._session = session or requests.Session()

    def __call__(self, request: Request) -> Response:
        try:
            answer = self._session.request(
                request.method,
                request.url,
                data=request.body,
                headers=dict(request.headers),
                timeout=request.timeout,
                allow_redirects=False,
            )
        except requests.Timeout as exc:
            raise TransportTimeout(f"no answer within {request.timeout}s") from exc
        except requests.RequestException as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        headers = {name.lower(): value for name, value in answer.headers.items()}
        return Response(answer.status_code, headers, answer.content)

    def close(self) -> None:
        self._session.close()


def post_json(
    transport: Transport,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    timeout: float,
    *,
    unavailable: Callable[[str], Exception],
    rejected: Callable[[int, str], Exception],
    ok: Container[int] = range(100, 300),
    not_json: str | None = None,
) -> Any:
    """POST ``body`` through ``transport`` and return the answer's decoded JSON, or raise:

    * ``unavailable(message)``: no answer (:class:`TransportError`), HTTP 429 or 5xx, or a body
      that is not JSON (``not_json``, by default ``"HTTP <status> with a body that is not JSON"``);
    * ``rejected(status, detail)``: any other status not in ``ok`` (``detail``: the body's start).

    Whether the JSON is the expected reply is the caller's to check.
    """
    try:
        response = transport(Request("POST", url, headers, body, timeout))
    except TransportError as exc:
        raise unavailable(str(exc)) from exc
    status = response.status
    if status == 429 or status >= 500:
        raise unavailable(f"HTTP {status}")
    if status not in ok:
        raise rejected(status, response.text[:200].strip())
    try:
        return json.loads(response.body)
    except ValueError as exc:  # includes UnicodeDecodeError
        raise unavailable(not_json or f"HTTP {status} with a body that is not JSON") from exc


# --------------------------------------------------------------------------- the GraphQL client


class MapperClient(Protocol):
    def execute(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """Run one GraphQL operation; return its ``data``; raise a :class:`MapperError`."""
        ...


class HttpMapperClient:
    """GraphQL over HTTP POST through ``transport`` (by default a :class:`RequestsTransport`,
    closed by :meth:`close`), sending ``Authorization: Bearer <token>``."""

    def __init__(self, url: str, token: str, timeout: float, transport: Transport | None = None) -> None:
        self.url = url
        self._timeout = timeout
        self._owned: RequestsTransport | None = None
        if transport is None:
            transport = self._owned = RequestsTransport()
        self._transport = transport
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    def execute(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        # Strict JSON: NaN or infinity (which requests' ``json=`` refused with an InvalidJSONError)
        # stay "unavailable", as they always were.
        try:
            request = json.dumps({"query": query, "variables": variables}, allow_nan=False).encode()
        except ValueError as exc:
            raise MapperUnavailable(f"InvalidJSONError: {exc}") from exc
        body = post_json(
            self._transport,
            self.url,
            request,
            self._headers,
            self._timeout,
            unavailable=MapperUnavailable,
            rejected=MapperRejected,
        )
        if not isinstance(body, dict):
            raise MapperUnavailable("GraphQL response is not a JSON object")
        if body.get("errors"):
            messages = [str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in body["errors"]]
            raise GraphQLErrors("; ".join(messages)[:300])
        data = body.get("data")
        if not isinstance(data, dict):
            raise MapperUnavailable("GraphQL response has no data")
        return data

    def close(self) -> None:
        """Close the default transport (a transport passed in is its owner's to close)."""
        if self._owned is not None:
            self._owned.close()
