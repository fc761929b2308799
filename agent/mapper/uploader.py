"""The mapper's uploader: ships the edge store's changes to the cloud, idempotently.

Data comes from the store's change tracking (:meth:`EdgeStore.changed_since`, by ``seq`` from the
persisted upload cursor) and goes to the cloud's ``POST /v1/ingest`` through a
:class:`CloudClient` (the seam: :class:`HttpCloudClient` in production, any object with
``ingest`` in tests), optionally through an :class:`~agent.mapper.anonymize.Anonymizer`.

What is sent (per changed edge, compared with what was last uploaded of it, ``upload_state``):

* a NEW edge (never uploaded);
* an edge whose content changed other than ``last_seen``/``count``/``first_seen`` (methods, HTTP
  resources, Kafka topics, AWS actions, ``target_service``, ``ambiguous``: :func:`digest`);
* an edge whose ``last_seen`` advanced at least ``granularity`` seconds past the uploaded one.

Anything else (steady traffic re-recording a known edge) is skipped: the cloud's ``last_seen``
lags by less than ``granularity``, and a steady cluster writes nothing. Each edge is sent with its
CUMULATIVE state; the cloud's merge is idempotent (min/max/union, count = MAX).

Batches hold at most ``batch_size`` (≤ 500) edges, and their id is a sha256 of their content
(the sorted edge documents and the ``anonymized`` flag): a mapper that crashes after the cloud
stored a batch but before :meth:`EdgeStore.mark_uploaded` re-sends the same content under the
same id after its restart, and the cloud stores it once. The cursor only moves (in the same
transaction as the marks) after a 200, past what was sent or skipped, so an outage of any length
or a restart loses nothing. Within a cycle, failures are retried with exponential backoff and
jitter (tenacity); a cycle that still fails leaves everything for the next one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import requests
import tenacity

from agent.exports.jsonexport import edge_dict
from agent.mapper.anonymize import Anonymizer
from agent.mapper.store import EdgeStore
from agent.model import Edge

log = logging.getLogger("agent.mapper.uploader")

MAX_BATCH = 500
_dumps = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode


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
    def ingest(self, batch_id: str, anonymized: bool, edges: list[dict[str, Any]]) -> IngestResult:
        """``POST /v1/ingest`` one batch; raise a :class:`CloudError` unless the cloud answered 200."""
        ...


class HttpCloudClient:
    """The cloud's ingest API over HTTP with ``requests`` and ``Authorization: Bearer <token>``."""

    def __init__(self, url: str, token: str, timeout: float, session: requests.Session | None = None) -> None:
        self.url = url.rstrip("/") + "/v1/ingest"
        self._timeout = timeout
        self._session = session or requests.Session()
        self._headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}

    def ingest(self, batch_id: str, anonymized: bool, edges: list[dict[str, Any]]) -> IngestResult:
        body = {"batchId": batch_id, "anonymized": anonymized, "edges": edges}
        try:
            response = self._session.post(
                self.url,
                data=_dumps(body).encode(),
                headers=self._headers,
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.Timeout as exc:
            raise CloudUnavailable(f"no answer within {self._timeout}s") from exc
        except requests.RequestException as exc:
            raise CloudUnavailable(f"{type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if status == 429 or status >= 500:
            raise CloudUnavailable(f"HTTP {status}")
        if status != 200:
            raise CloudRejected(status, response.text[:200].strip())
        try:
            reply = response.json()
            return IngestResult(bool(reply["stored"]), int(reply["edgesWritten"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise CloudUnavailable("HTTP 200 without the ingest reply {stored, edgesWritten}") from exc

    def close(self) -> None:
        self._session.close()


def digest(edge: Edge) -> str:
    """The content that re-sends an edge when it changes: all but times and count (16 hex)."""
    content = edge_dict(edge)
    for volatile in ("firstSeen", "lastSeen", "count"):
        del content[volatile]
    return hashlib.sha256(_dumps(content).encode()).hexdigest()[:16]


def batch_id(anonymized: bool, edges: list[dict[str, Any]]) -> str:
    """A batch's id: sha256 of its content, so re-sending the same content reuses it."""
    items = sorted(_dumps(e) for e in edges)
    return hashlib.sha256(_dumps({"anonymized": anonymized, "edges": items}).encode()).hexdigest()


@dataclass
class CycleResult:
    """What one :meth:`Uploader.upload_once` did."""

    batches: int = 0
    edges: int = 0
    duplicates: int = 0  # batches the cloud already had
    skipped: int = 0  # changed edges not worth sending yet
    cursor: int = 0


class _Stopping(Exception):
    """The uploader is stopping: abandon the cycle (nothing was marked)."""


class Uploader:
    """Uploads the store's changes every ``interval`` seconds on a thread (see the module doc)."""

    def __init__(
        self,
        store: EdgeStore,
        client: CloudClient,
        *,
        interval: float = 60.0,
        granularity: float = 3600.0,
        batch_size: int = MAX_BATCH,
        anonymizer: Anonymizer | None = None,
        clock: Callable[[], float] = time.time,
        retry_attempts: int = 5,
        retry_initial: float = 1.0,
        retry_max: float = 30.0,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}, got {batch_size}")
        self.store, self.client = store, client
        self.interval, self.granularity, self.batch_size = interval, granularity, batch_size
        self.anonymizer = anonymizer
        self._clock = clock
        self._retry_attempts = retry_attempts
        self._wait = tenacity.wait_exponential_jitter(
            multiplier=retry_initial, max=retry_max, jitter=retry_initial
        )
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._outage_since: float | None = None
        self._failed_attempts = 0

    # ------------------------------------------------------------------ selection

    def wanted(self, edge: Edge, mark: tuple[float, str] | None) -> bool:
        """Whether ``edge`` must be sent, given what was last uploaded of it (``None``: nothing)."""
        if mark is None:
            return True
        uploaded_last_seen, uploaded_digest = mark
        if digest(edge) != uploaded_digest:
            return True
        return edge.last_seen - uploaded_last_seen >= self.granularity

    # ------------------------------------------------------------------ one cycle

    def upload_once(self) -> CycleResult:
        """Walk every change since the cursor; send what is wanted; raises :class:`CloudError`
        (after the retries) or ``StoreError``, leaving the cursor after the last batch that made it."""
        result = CycleResult(cursor=self.store.upload_cursor())
        while not self._stopping.is_set():
            rows = self.store.changed_since(result.cursor, self.batch_size)
            if not rows:
                break
            marks = self.store.upload_marks([edge.key for _, edge in rows])
            chosen = [edge for _, edge in rows if self.wanted(edge, marks.get(edge.key))]
            result.skipped += len(rows) - len(chosen)
            if chosen:
                reply = self._send(chosen)
                result.batches += 1
                result.edges += len(chosen)
                result.duplicates += not reply.stored
            last_seq = rows[-1][0]
            self.store.mark_uploaded([(e.key, e.last_seen, digest(e)) for e in chosen], last_seq)
            result.cursor = last_seq
        return result

    def _send(self, edges: list[Edge]) -> IngestResult:
        anonymized = self.anonymizer is not None
        sent = [edge_dict(self.anonymizer.anonymize(e) if self.anonymizer else e) for e in edges]
        ident = batch_id(anonymized, sent)
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(CloudUnavailable),
            stop=tenacity.stop_after_attempt(self._retry_attempts),
            wait=self._wait,
            sleep=self._sleep,
            before_sleep=lambda state: self._note_failure(
                state.outcome.exception() if state.outcome else None
            ),
            reraise=True,
        )
        try:
            reply = retrying(self.client.ingest, ident, anonymized, sent)
        except CloudUnavailable as exc:
            self._note_failure(exc)
            raise
        if self._outage_since is not None:
            log.info(
                "cloud reachable again after %.0fs and %d failed attempts",
                self._clock() - self._outage_since,
                self._failed_attempts,
            )
            self._outage_since, self._failed_attempts = None, 0
        log.info(
            "uploaded batch id=%s edges=%d %s",
            ident[:12],
            len(sent),
            "stored" if reply.stored else "duplicate (already stored)",
        )
        return reply

    def _sleep(self, seconds: float) -> None:
        if self._stopping.wait(seconds):
            raise _Stopping

    def _note_failure(self, error: BaseException | None) -> None:
        """Count a failed attempt; the first of an outage logs the one WARNING."""
        self._failed_attempts += 1
        if self._outage_since is None:
            self._outage_since = self._clock()
            log.warning("cloud unavailable (%s); retrying, nothing is lost meanwhile", error)

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        while True:
            try:
                self.upload_once()
            except _Stopping:
                return
            except CloudRejected as exc:
                log.error("the cloud rejected a batch: %s; it stays queued (check cloud.token)", exc)  # noqa: TRY400
            except CloudUnavailable:
                pass  # logged once per outage by _note_failure
            except Exception:
                log.exception("upload cycle failed; retrying next cycle")
            if self._stopping.wait(self.interval):
                return

    def start(self) -> Uploader:
        """Upload now, then every ``interval`` seconds, on a daemon thread."""
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="cloud-uploader", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (a batch in flight finishes or times out; nothing unsent is marked)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
