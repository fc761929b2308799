"""The one client every producer and the CLI use to reach the mapper's GraphQL API.

Requests go to the mapper's ``/query`` endpoint (the sniffer's reports, the watchers'
reports, the CLI's queries); answers come back as the GraphQL ``data`` or as one of the
errors below. :class:`MapperClient` is the seam: tests pass a real HTTP stand-in server's URL
to :class:`HttpMapperClient`, or any object with ``execute``.

Errors::

    MapperError
    ├── MapperUnavailable   connection refused, timeout, HTTP 5xx/429, not GraphQL (retry)
    ├── GraphQLErrors       the mapper answered with GraphQL ``errors`` (retry)
    └── MapperRejected      HTTP 4xx other than 429: bad token, invalid request (don't)

:func:`post_json` is the one mapping of HTTP outcomes to such errors; the mapper's cloud uploader
(:class:`agent.mapper.uploader.HttpCloudClient`) uses it too, with its own error classes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Container
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


def post_json(
    session: requests.Session,
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout: float,
    *,
    unavailable: Callable[[str], Exception],
    rejected: Callable[[int, str], Exception],
    ok: Container[int] = range(100, 300),
    not_json: str | None = None,
) -> Any:
    """POST ``body`` (no redirects) and return the answer's decoded JSON, or raise:

    * ``unavailable(message)``: connection error, timeout, HTTP 429 or 5xx, or a body that is not
      JSON (``not_json``, by default ``"HTTP <status> with a body that is not JSON"``);
    * ``rejected(status, detail)``: any other status not in ``ok`` (``detail``: the body's start).

    Whether the JSON is the expected reply is the caller's to check.
    """
    try:
        response = session.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False)
    except requests.Timeout as exc:
        raise unavailable(f"no answer within {timeout}s") from exc
    except requests.RequestException as exc:
        raise unavailable(f"{type(exc).__name__}: {exc}") from exc
    status = response.status_code
    if status == 429 or status >= 500:
        raise unavailable(f"HTTP {status}")
    if status not in ok:
        raise rejected(status, response.text[:200].strip())
    try:
        return response.json()
    except ValueError as exc:
        raise unavailable(not_json or f"HTTP {status} with a body that is not JSON") from exc


class MapperClient(Protocol):
    def execute(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """Run one GraphQL operation; return its ``data``; raise a :class:`MapperError`."""
        ...


class HttpMapperClient:
    """GraphQL over HTTP POST with ``requests``, sending ``Authorization: Bearer <token>``."""

    def __init__(self, url: str, token: str, timeout: float, session: requests.Session | None = None) -> None:
        self.url = url
        self._timeout = timeout
        self._session = session or requests.Session()
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    def execute(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        # The bytes requests' ``json=`` sent; NaN or infinity, which it refused with an
        # InvalidJSONError (a RequestException), stay "unavailable".
        try:
            request = json.dumps({"query": query, "variables": variables}, allow_nan=False).encode()
        except ValueError as exc:
            raise MapperUnavailable(f"InvalidJSONError: {exc}") from exc
        body = post_json(
            self._session,
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
        self._session.close()
