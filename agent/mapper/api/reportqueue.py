"""The report queue: the bounded hand-off between the API's request threads and resolution.

Mutation handlers (producers' reports over HTTP) convert their input to observations and
:meth:`ReportQueue.submit` them as one batch onto a bounded ``queue.Queue``; when it is full,
``submit`` raises :class:`Busy` and the mutation answers a GraphQL error ("mapper busy,
retry") so the reporter retries. Worker threads take batches, ``resolve`` each observation
(``agent.mapper.resolver``) and ``record`` the batch's edges in the store with one call.

``submit`` returns a :class:`concurrent.futures.Future` that completes once the batch's edges are
committed to the store (or fails with :class:`RecordFailed`): the API answers a report ``true``
only then, so an acknowledged report survives a kill -9 (the store commits before ``record``
returns). A failure is logged once per batch, with the batch size, and the worker carries on.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from agent.mapper.api.protocols import EdgeSink, ObservationResolver
from agent.model import Edge, Observation

log = logging.getLogger("agent.mapper.api.reportqueue")

_STOP = None
GROUP_BATCHES = 32
"""Queued batches a worker records in one store transaction (group commit)."""
GROUP_LINGER = 0.005
"""Seconds a worker waits for more batches to join a group before recording it."""


class Busy(RuntimeError):
    """The report queue is full: the report was not accepted and should be retried."""


class RecordFailed(RuntimeError):
    """The batch's edges could not be recorded in the store: the report is not acknowledged."""


_Item = tuple[Sequence[Observation], "Future[int]"]


@dataclass(slots=True)
class ReportQueueStats:
    """Counters since start (read without a lock: for tests, logs and health output)."""

    batches_accepted: int = 0
    observations_accepted: int = 0
    batches_refused: int = 0
    batches_done: int = 0
    edges_recorded: int = 0
    resolve_errors: int = 0
    record_errors: int = 0


class ReportQueue:
    """A bounded queue of observation batches and the workers that resolve and store them."""

    def __init__(
        self, resolver: ObservationResolver, sink: EdgeSink, *, max_batches: int, workers: int = 1
    ) -> None:
        if max_batches < 1 or workers < 1:
            raise ValueError(f"need max_batches >= 1 and workers >= 1, got {max_batches}, {workers}")
        self._resolver = resolver
        self._sink = sink
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=max_batches)
        self._workers = workers
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self.stats = ReportQueueStats()

    # ------------------------------------------------------------------ producers' side

    def submit(self, batch: Sequence[Observation]) -> Future[int]:
        """Queue one batch for resolution, or raise :class:`Busy` at once when the queue is full.

        The future's result is the number of edges recorded, set once they are committed; it
        fails with :class:`RecordFailed` when the store refused them. An empty batch is done at once.
        """
        done: Future[int] = Future()
        if not batch:
            done.set_result(0)
            return done
        try:
            self._queue.put_nowait((batch, done))
        except queue.Full:
            with self._stats_lock:
                self.stats.batches_refused += 1
            raise Busy("mapper busy, retry") from None
        with self._stats_lock:
            self.stats.batches_accepted += 1
            self.stats.observations_accepted += len(batch)
        return done

    @property
    def pending(self) -> int:
        """Batches waiting or being resolved."""
        return self._queue.unfinished_tasks

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the worker threads (idempotent)."""
        with self._lock:
            if self._threads:
                return
            for i in range(self._workers):
                thread = threading.Thread(target=self._work, name=f"mapper-reports-{i}", daemon=True)
                thread.start()
                self._threads.append(thread)
        log.info("report queue started workers=%d max_batches=%d", self._workers, self._queue.maxsize)

    def drain(self, timeout: float) -> bool:
        """Wait until every accepted batch is resolved and recorded; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._queue.all_tasks_done.wait(remaining):
                    return self._queue.unfinished_tasks == 0
        return True

    def stop(self, timeout: float = 10.0) -> bool:
        """Drain (up to ``timeout``), then stop the workers. False when batches were left behind."""
        drained = self.drain(timeout)
        with self._lock:
            threads, self._threads = self._threads, []
        for _ in threads:
            self._queue.put(_STOP)  # blocks only while workers still make room
        for thread in threads:
            thread.join(timeout)
        if not drained:
            log.warning("report queue stopped with batches pending=%d", self.pending)
        else:
            log.info(
                "report queue stopped batches=%d edges=%d", self.stats.batches_done, self.stats.edges_recorded
            )
        return drained

    # ------------------------------------------------------------------ workers

    def _work(self) -> None:
        while True:
            items = [self._queue.get()]
            # Group commit: the batches queued behind this one, and those arriving within
            # GROUP_LINGER, go to the store in the same transaction. Many nodes' small reports (a
            # sniffer's second holds a dozen observations) would otherwise cost a transaction
            # each; their reporters wait for the commit anyway, so a few ms more is nothing to them.
            linger_until = time.monotonic() + GROUP_LINGER
            while len(items) < GROUP_BATCHES and items[-1] is not _STOP:
                try:
                    items.append(self._queue.get(timeout=max(0.0, linger_until - time.monotonic())))
                except queue.Empty:
                    break
            try:
                work = [item for item in items if item is not _STOP]
                if work:
                    self._process(work)
            finally:
                for _ in items:
                    self._queue.task_done()
            if items[-1] is _STOP:
                return

    def _process(self, items: Sequence[_Item]) -> None:
        """Resolve a group of batches and record their edges in one store call; complete each
        batch's future with its edge count, or :class:`RecordFailed` for all when the store fails.

        An observation that fails to resolve is logged and counted but does not fail its batch:
        a retry would fail the same way, and the rest of the batch is recorded. An accepted batch
        is recorded even when nobody waits for it any more (cancelled)."""
        waiting = [done.set_running_or_notify_cancel() for _, done in items]
        edges: list[Edge] = []
        counts: list[int] = []
        failed, first_error = 0, ""
        resolve = self._resolver.resolve
        for batch, _ in items:
            before = len(edges)
            for obs in batch:
                try:
                    edges.extend(resolve(obs))
                except Exception as exc:  # noqa: BLE001 (one bad observation must not lose its batch)
                    failed += 1
                    if not first_error:
                        first_error = f"{type(exc).__name__}: {exc} ({type(obs).__name__})"
            counts.append(len(edges) - before)
        observations = sum(len(batch) for batch, _ in items)
        if failed:
            log.error(
                "resolve failed batch_size=%d failed=%d first_error=%s", observations, failed, first_error
            )
        error = ""
        try:
            if edges:
                self._sink.record(edges)
        except Exception as exc:  # noqa: BLE001 (the worker must survive a failing store)
            error = f"{type(exc).__name__}: {exc}"
            log.error(  # noqa: TRY400 (one line per event; the sizes say what was lost)
                "record failed batches=%d batch_size=%d edges=%d error=%s",
                len(items),
                observations,
                len(edges),
                error,
            )
        with self._stats_lock:
            self.stats.resolve_errors += failed
            self.stats.record_errors += 1 if error else 0
            self.stats.edges_recorded += 0 if error else len(edges)
            self.stats.batches_done += len(items)
        for (_, done), waited, count in zip(items, waiting, counts, strict=True):
            if not waited:
                continue
            if error:
                done.set_exception(RecordFailed(f"report not recorded: {error}"))
            else:
                done.set_result(count)
