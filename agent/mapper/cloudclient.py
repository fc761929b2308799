"""The mapper's client of the cloud's upload routes: ``POST /v1/ingest`` (batches of edge
documents, :mod:`agent.wire`), ``POST /v1/snapshots`` (snapshot documents,
:mod:`agent.snapshotwire`) and ``POST /v1/coverage`` (:mod:`agent.mapper.coverage`'s document),
with a per-cluster bearer token.

The uploader (:mod:`agent.mapper.uploader`) calls it through :class:`CloudClient` (the seam:
:class:`HttpCloudClient` in production, any object with the same methods in tests) and retries
what fails with :class:`CloudUnavailable`; :class:`CloudRejected` is the cloud's refusal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from agent import wire
from agent.mapperclient import RequestsTransport, Transport, post_json

_NO_REPLY = "HTTP 200 without the ingest reply {stored, edgesWritten}"


class CloudError(Exception):
    """A batch did not reach the cloud, or the cloud did not accept it."""


class CloudUnavailable(CloudError):
    """Connection refused, timeout, HTTP 5xx or 429, or an answer that is not the ingest reply."""


class CloudRejected(CloudError):
    """HTTP 4xx other than 429 (bad token, invalid batch): not retried within a cycle."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status


@dataclass(frozen=True, slots=True)
class IngestResult:
    stored: bool  # False: the cloud had this batch id already (a re-send), which is fine
    edges_written: int


class CloudClient(Protocol):
    def ingest(
        self, batch_id: str, anonymized: bool, edges: list[wire.EdgeDoc], seen_at: float | None = None
    ) -> IngestResult:
        """``POST /v1/ingest`` one batch (with ``seenAt`` when ``seen_at`` is given: a heartbeat);
        raise a :class:`CloudError` unless the cloud answered 200."""
        ...

    def upload_snapshot(self, document: bytes) -> None:
        """``POST /v1/snapshots`` a snapshot document; a :class:`CloudError` unless answered 200."""
        ...

    def upload_coverage(self, document: bytes) -> None:
        """``POST /v1/coverage`` the coverage document; a :class:`CloudError` unless answered 200."""
        ...


class HttpCloudClient:
    """The cloud's ingest API over HTTP through ``transport`` (by default a
    :class:`~agent.mapperclient.RequestsTransport`, closed by :meth:`close`), sending
    ``Authorization: Bearer <token>``."""

    def __init__(self, url: str, token: str, timeout: float, transport: Transport | None = None) -> None:
        self.url = url.rstrip("/") + "/v1/ingest"
        self.snapshots_url = url.rstrip("/") + "/v1/snapshots"
        self.coverage_url = url.rstrip("/") + "/v1/coverage"
        self._timeout = timeout
        self._owned: RequestsTransport | None = None
        if transport is None:
            transport = self._owned = RequestsTransport()
        self._transport = transport
        self._headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}

    def ingest(
        self, batch_id: str, anonymized: bool, edges: list[wire.EdgeDoc], seen_at: float | None = None
    ) -> IngestResult:
        body = wire.IngestBody(
            version=wire.FORMAT_VERSION,
            batchId=batch_id,
            anonymized=anonymized,
            seenAt=None if seen_at is None else wire.moment(seen_at),
            edges=tuple(edges),
        )
        reply = post_json(
            self._transport,
            self.url,
            wire.encode(body),
            self._headers,
            self._timeout,
            unavailable=CloudUnavailable,
            rejected=CloudRejected,
            ok=(200,),
            not_json=_NO_REPLY,
        )
        try:
            return IngestResult(bool(reply["stored"]), int(reply["edgesWritten"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise CloudUnavailable(_NO_REPLY) from exc

    def upload_snapshot(self, document: bytes) -> None:
        self._post_document(self.snapshots_url, document, "snapshot")

    def upload_coverage(self, document: bytes) -> None:
        self._post_document(self.coverage_url, document, "coverage")

    def _post_document(self, url: str, document: bytes, what: str) -> None:
        """POST a JSON document the cloud answers with a JSON reply (200)."""
        post_json(
            self._transport,
            url,
            document,
            self._headers,
            self._timeout,
            unavailable=CloudUnavailable,
            rejected=CloudRejected,
            ok=(200,),
            not_json=f"HTTP 200 without the {what} reply",
        )

    def close(self) -> None:
        """Close the default transport (a transport passed in is its owner's to close)."""
        if self._owned is not None:
            self._owned.close()
