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
"""

from __future__ import annotations

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
        try:
            response = self._session.post(
                self.url,
                json={"query": query, "variables": variables},
                headers=self._headers,
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.Timeout as exc:
            raise MapperUnavailable(f"no answer within {self._timeout}s") from exc
        except requests.RequestException as exc:
            raise MapperUnavailable(f"{type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if status == 429 or status >= 500:
            raise MapperUnavailable(f"HTTP {status}")
        if status >= 300:
            raise MapperRejected(status, response.text[:200].strip())
        try:
            body = response.json()
        except ValueError as exc:
            raise MapperUnavailable(f"HTTP {status} with a body that is not JSON") from exc
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
