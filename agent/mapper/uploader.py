"""The mapper's uploader: ships the edge store's changes to the cloud, idempotently.

Data comes from the store's change tracking (:meth:`EdgeStore.changed_since`, by ``seq`` from the
upload cursor that its :class:`~agent.mapper.uploadledger.UploadLedger` keeps) and goes, as the wire's
edge documents (:mod:`agent.wire`), to the cloud's ``POST /v1/ingest`` through a
:class:`CloudClient` (the seam: :class:`HttpCloudClient` in production, any object with
``ingest`` in tests), optionally through an :class:`~agent.anonymize.Anonymizer`. Then the mapper's
snapshots not yet uploaded go to ``POST /v1/snapshots`` (:mod:`agent.mapper.snapshotupload` says
which, and in what form when anonymized), and the coverage document (:mod:`agent.mapper.coverage`)
to ``POST /v1/coverage``.

Liveness, so that steady traffic costs the cloud nothing: each edge document carries ``live``,
true when the edge was seen within the last ``granularity`` seconds at upload time (or within the
mapper's retention, ``visible_for``, when shorter: an edge gone from the map is never live), and the
uploader sends the cluster's heartbeat (a request with no edges and ``seenAt``) at most once per
``granularity``, which tells the cloud "every edge I last sent live was seen within
``granularity`` before ``seenAt``". The cloud reads a live edge as last seen at least at the
heartbeat, so a steady edge is sent once, live, and never again while it stays steady.

What is sent, per changed edge, compared with what was last uploaded of it (``upload_state``):

* a NEW edge (never uploaded);
* an edge whose content changed other than ``last_seen``/``count``/``first_seen`` (methods, HTTP
  resources, Kafka topics, AWS actions, ``target_service``, ``ambiguous``: :func:`digest`);
* an edge live now that was last sent not live (it came back);
* an edge neither live now nor when last sent that was seen since (e.g. after a long outage).

A live edge last sent live is skipped (the heartbeat keeps it current). An edge that stops being
seen changes no row, so each cycle starts with the idle sweep (:meth:`UploadLedger.gone_quiet`): the
edges last sent live but last seen ``granularity`` or more ago are sent ``live=false`` with their
true ``last_seen``. Then the changed edges, then the heartbeat: every cycle uses one ``now``, so
no heartbeat ever vouches for an edge that was not seen within ``granularity`` before it. The cost
of a steady cluster: one heartbeat per ``granularity``, zero edge writes; an edge that goes quiet
costs one write, and one more when it comes back. The cloud's ``last_seen`` of an edge is off by
at most about ``granularity`` (plus the upload interval).

Each edge is sent with its CUMULATIVE state; the cloud's merge is idempotent (min/max/union,
count = MAX; ``live``: the last one sent). Batches hold at most ``batch_size`` (≤ 500) edges, and
their id is a sha256 of their content (the sorted edge documents, ``live`` included, and the
``anonymized`` flag): a mapper that crashes after the cloud stored a batch but before
:meth:`UploadLedger.mark_uploaded` re-sends the same content under the same id after its restart,
and the cloud stores it once. Before a batch takes ``live`` away from edges sent live, their marks
say so (:meth:`UploadLedger.mark_demoting`), so that such a crash cannot leave the mapper believing
the cloud holds them live when it does not, or the reverse. The cursor only moves (in the same
transaction as the marks) after a 200, past what was sent or skipped, so an outage of any length
or a restart loses nothing. Within a cycle, failures (heartbeats' included) are retried with
exponential backoff and jitter (tenacity); a cycle that still fails leaves everything for the
next one.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import tenacity

from agent import wire
from agent.anonymize import Anonymizer
from agent.mapper.background import Background
from agent.mapper.cloudclient import (
    CloudClient,
    CloudError,
    CloudRejected,
    CloudUnavailable,
    HttpCloudClient,
    IngestResult,
)
from agent.mapper.coverage import coverage_body
from agent.mapper.snapshotupload import SnapshotSource, SnapshotUploads
from agent.mapper.store import EdgeStore
from agent.mapper.uploadledger import UploadKey, UploadLedger, UploadMark
from agent.model import Edge

__all__ = [  # the cloud client's names, where the uploader's users have always found them
    "MAX_BATCH",
    "CloudClient",
    "CloudError",
    "CloudRejected",
    "CloudUnavailable",
    "CycleResult",
    "HttpCloudClient",
    "IngestResult",
    "Uploader",
    "batch_id",
    "digest",
]

log = logging.getLogger("agent.mapper.uploader")
T = TypeVar("T")

MAX_BATCH = 500
_NO_TIME = wire.moment(wire.EARLIEST)


def digest(edge: Edge) -> str:
    """The content that re-sends an edge when it changes: all but times, count and provenance (its
    per-method times and counts; the methods themselves are in ``methods``) (16 hex)."""
    content = msgspec.structs.replace(
        wire.to_doc(edge), firstSeen=_NO_TIME, lastSeen=_NO_TIME, count=0, provenance=()
    )
    return hashlib.sha256(wire.encode(content)).hexdigest()[:16]


def batch_id(anonymized: bool, edges: list[wire.EdgeDoc]) -> str:
    """A batch's id: sha256 of its content, so re-sending the same content reuses it."""
    content = hashlib.sha256(b"anonymized" if anonymized else b"plain")
    for text in sorted(wire.encode(e) for e in edges):
        content.update(b"\n" + text)
    return content.hexdigest()


@dataclass
class CycleResult:
    """What one :meth:`Uploader.upload_once` did."""

    batches: int = 0
    edges: int = 0
    duplicates: int = 0  # batches the cloud already had
    skipped: int = 0  # changed edges the cloud holds current already (or kept current by heartbeats)
    cursor: int = 0
    quiet: int = 0  # of ``edges``: sent live=false by the idle sweep
    heartbeats: int = 0
    snapshots: int = 0  # snapshots uploaded (or refused for good)
    coverage: int = 0  # coverage documents uploaded


class _Stopping(Exception):
    """The uploader is stopping: abandon the cycle (nothing was marked)."""


class Uploader(Background):
    """Uploads the store's changes now, then every ``interval`` seconds, on a daemon thread (see the
    module doc). :meth:`stop` lets a batch in flight finish or time out; nothing unsent is marked."""

    thread_name = "cloud-uploader"

    visible_for: float | None = None
    """The mapper's retention (``MAPPER_EDGE_RETENTION``): an edge not seen for longer has left the
    map, so it is never live in the cloud (None: no such bound)."""

    def __init__(
        self,
        store: EdgeStore,
        client: CloudClient,
        *,
        interval: float = 60.0,
        granularity: float = 3600.0,
        visible_for: float | None = None,
        batch_size: int = MAX_BATCH,
        anonymizer: Anonymizer | None = None,
        snapshots: SnapshotSource | None = None,
        coverage: Callable[[], dict[str, Any]] | None = None,
        clock: Callable[[], float] = time.time,
        retry_attempts: int = 5,
        retry_initial: float = 1.0,
        retry_max: float = 30.0,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}, got {batch_size}")
        super().__init__()
        self.store, self.client = store, client
        self.ledger = UploadLedger(store)
        self.interval, self.granularity, self.batch_size = interval, granularity, batch_size
        self.visible_for = visible_for
        self.anonymizer = anonymizer
        self.snapshots = None if snapshots is None else SnapshotUploads(snapshots, self.ledger, anonymizer)
        self.coverage = coverage  # the coverage document, sent each cycle (agent.mapper.coverage)
        self._said_no_coverage_route = False
        self._clock = clock
        self._retry_attempts = retry_attempts
        self._wait = tenacity.wait_exponential_jitter(
            multiplier=retry_initial, max=retry_max, jitter=retry_initial
        )
        self._outage_since: float | None = None
        self._failed_attempts = 0
        self._last_heartbeat: float | None = None  # in memory: a restart sends one right away

    # ------------------------------------------------------------------ selection

    @property
    def live_for(self) -> float:
        """How recently an edge must have been seen to be live: ``granularity``, or the retention
        when shorter."""
        return self.granularity if self.visible_for is None else min(self.granularity, self.visible_for)

    def is_live(self, edge: Edge, now: float) -> bool:
        """Seen within the last ``live_for`` seconds (``granularity``, or the retention if shorter)."""
        return edge.last_seen > now - self.live_for  # the complement of the sweep's cutoff

    def wanted(self, edge: Edge, mark: UploadMark | None, now: float) -> bool:
        """Whether ``edge`` must be sent at ``now``, given what was last uploaded of it
        (``(last_seen, digest, live)``; ``None``: nothing)."""
        if mark is None:
            return True
        uploaded_last_seen, uploaded_digest, uploaded_live = mark
        if digest(edge) != uploaded_digest:
            return True
        if self.is_live(edge, now):
            return not uploaded_live  # live and sent live: the heartbeat keeps it current
        return uploaded_live or edge.last_seen > uploaded_last_seen

    # ------------------------------------------------------------------ one cycle

    def upload_once(self) -> CycleResult:
        """The idle sweep, every change since the cursor, then the heartbeat if one is due (see
        the module doc); raises :class:`CloudError` (after the retries) or ``StoreError``, leaving
        the marks and the cursor after the last batch that made it."""
        now = self._clock()
        result = CycleResult(cursor=self.ledger.upload_cursor())
        while not self._stopping.is_set():  # the idle sweep
            quiet = self.ledger.gone_quiet(now - self.live_for, self.batch_size)
            if not quiet:
                break
            self._ship([(e, False) for e in quiet], [e.key for e in quiet], None, result)
            result.quiet += len(quiet)
        while not self._stopping.is_set():  # the changes
            rows = self.store.changed_since(result.cursor, self.batch_size)
            if not rows:
                break
            marks = self.ledger.upload_marks([edge.key for _, edge in rows])
            chosen = [edge for _, edge in rows if self.wanted(edge, marks.get(edge.key), now)]
            result.skipped += len(rows) - len(chosen)
            flagged = [(e, self.is_live(e, now)) for e in chosen]
            demoted = [e.key for e, live in flagged if not live and (m := marks.get(e.key)) and m[2]]
            self._ship(flagged, demoted, rows[-1][0], result)
            result.cursor = rows[-1][0]
        if not self._stopping.is_set():
            self._heartbeat(now, result)
        if self.snapshots is not None and not self._stopping.is_set():
            send = functools.partial(self._retried, self.client.upload_snapshot)
            result.snapshots = self.snapshots.upload_all(send, self._stopping.is_set)
        if self.coverage is not None and not self._stopping.is_set():
            result.coverage = self._upload_coverage(self.coverage())
        return result

    def _upload_coverage(self, document: dict[str, Any]) -> int:
        """Send the coverage document (names hashed when anonymizing); 1 when the cloud took it.
        A refused token fails the cycle (as a batch's would); a cloud without the route (404) or
        one refusing the document is said once, and the next cycle sends the newer document."""
        body = coverage_body(document, self.anonymizer.hash if self.anonymizer else None)
        try:
            self._retried(self.client.upload_coverage, body)
        except CloudRejected as error:
            if error.status in (401, 403):
                raise
            if not self._said_no_coverage_route:
                log.warning("the cloud refused the coverage document (%s); sent again each cycle", error)
                self._said_no_coverage_route = True
            return 0
        return 1

    def _ship(
        self,
        edges: list[tuple[Edge, bool]],
        demoted: list[UploadKey],
        cursor: int | None,
        result: CycleResult,
    ) -> None:
        """Send ``(edge, live)`` (if any), then mark them and move the cursor to ``cursor``."""
        if edges:
            self.ledger.mark_demoting(demoted)
            reply = self._send(edges)
            result.batches += 1
            result.edges += len(edges)
            result.duplicates += not reply.stored
        self.ledger.mark_uploaded([(e.key, e.last_seen, digest(e), live) for e, live in edges], cursor)

    def _heartbeat(self, now: float, result: CycleResult) -> None:
        """Send ``seenAt = now`` when the cloud may hold an edge live and none went out within
        ``granularity`` (an edge marked live at this cycle's ``now`` was seen within it)."""
        if self._last_heartbeat is not None and now - self._last_heartbeat < self.granularity:
            return
        if not self.ledger.has_live_uploads():
            return
        seen_at = wire.format_time(now)
        self._deliver(f"heartbeat-{seen_at}", [], now, f"heartbeat seenAt={seen_at}")
        self._last_heartbeat = now
        result.heartbeats += 1

    def _send(self, edges: list[tuple[Edge, bool]]) -> IngestResult:
        anonymize = self.anonymizer.anonymize if self.anonymizer else None
        sent = [wire.to_doc(anonymize(edge) if anonymize else edge, live) for edge, live in edges]
        ident = batch_id(self.anonymizer is not None, sent)
        return self._deliver(ident, sent, None, f"batch id={ident[:12]} edges={len(sent)}")

    def _retried(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``call(*args, **kwargs)``, retried while the cloud is unavailable (each failure noted)."""
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
            answer = retrying(call, *args, **kwargs)
        except CloudUnavailable as exc:
            self._note_failure(exc)
            raise
        self._note_reachable()
        return answer

    def _deliver(
        self, ident: str, documents: list[wire.EdgeDoc], seen_at: float | None, what: str
    ) -> IngestResult:
        """One ingest request, retried while the cloud is unavailable."""
        anonymized = self.anonymizer is not None
        reply = self._retried(self.client.ingest, ident, anonymized, documents, seen_at=seen_at)
        log.info("uploaded %s %s", what, "stored" if reply.stored else "duplicate (already stored)")
        return reply

    def _note_reachable(self) -> None:
        """A request made it: the end of an outage, if one was under way, is logged."""
        if self._outage_since is not None:
            log.info(
                "cloud reachable again after %.0fs and %d failed attempts",
                self._clock() - self._outage_since,
                self._failed_attempts,
            )
            self._outage_since, self._failed_attempts = None, 0

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
