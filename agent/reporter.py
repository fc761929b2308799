"""Reporting a producer's pending observations to the mapper, with retries: the sniffer's pairs,
the Kafka watcher's topic accesses, the Istio watcher's HTTP requests.

:class:`Reporter` drains a :class:`agent.pending.Pending` every ``interval`` seconds, turns the
batch into the producer's mutations (a pure ``mutations_for(batch)``: the sniffer's
:mod:`agent.sniffer.reports`, the watchers' in :mod:`agent.watchers`) and sends them through a
:class:`~agent.mapperclient.MapperClient`, with two tiers of retry:

* short blips: each mutation is retried ``attempts`` times with exponential backoff and
  jitter (tenacity) on connection errors, timeouts, HTTP 5xx/429 and GraphQL ``errors``;
* outages: when the retries are exhausted the unsent entries are merged back into the
  collector (same bound, values combined) and the next cycle waits an exponentially
  growing, jittered delay (capped at ``backoff_max``). Nothing pending is lost while the
  mapper is down unless the bound overflows, and then the overflow is counted as dropped.

HTTP 4xx other than 429 (a bad token, a schema mismatch) is not retried within the cycle and
is logged as one ERROR line per occurrence. The entries are still kept and the reporter backs
off as for an outage: a rejected token is usually fixed outside the producer (the secret is
rotated, the mapper restarted) and the data should then still arrive; the bound caps memory
meanwhile, and the backoff keeps the error to one line per ``backoff_max`` at most. What the
collector refused since the last cycle is logged once per cycle, with the counts.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping
from typing import Any, Generic, Protocol, TypeVar

import tenacity

from agent.mapperclient import GraphQLErrors, MapperClient, MapperError, MapperRejected, MapperUnavailable
from agent.metrics import Counter
from agent.pending import Batch, Pending

log = logging.getLogger("agent.reporter")

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclasses.dataclass(frozen=True, slots=True)
class Mutation(Generic[K, V]):
    """One GraphQL request: ``field`` names the mutation; ``entries`` are what it carries (put
    back into the collector when it fails)."""

    field: str
    query: str
    variables: dict[str, Any]
    entries: Mapping[K, V] = dataclasses.field(repr=False)


class ReportCounters(Protocol):
    """The reporter's metrics, part of each producer's :class:`agent.metrics.Metrics`."""

    @property
    def reports_sent(self) -> Counter: ...

    @property
    def report_failures(self) -> Counter: ...


def sorted_chunks(entries: Mapping[K, V], size: int) -> Iterator[dict[K, V]]:
    """``entries`` in key order (stable output), ``size`` at most per chunk: what one mutation
    carries when a batch is too large for one request."""
    ordered = sorted(entries.items())
    for start in range(0, len(ordered), size):
        yield dict(ordered[start : start + size])


def report_counters(prefix: str) -> tuple[Counter, Counter]:
    """A producer's :class:`ReportCounters`, named ``<prefix>reports_sent_total`` and
    ``<prefix>report_failures_total``: ``self.reports_sent, self.report_failures = report_counters(...)``."""
    return (
        Counter(f"{prefix}reports_sent_total", "Report mutations accepted by the mapper."),
        Counter(f"{prefix}report_failures_total", "Failed requests to the mapper (each attempt counts)."),
    )


class Reporter(Generic[K, V]):
    """Every ``interval`` seconds, drain ``collector`` and send ``mutations_for`` its batch through
    ``client``; ``name`` names the thread and the log lines (``sniffer``, ``kafka-watcher`` ...).

    ``attempts``, ``backoff_initial`` and ``backoff_max`` tune the retries (see the module
    docstring); tests pass short ones. :meth:`stop` flushes one last time.
    """

    def __init__(
        self,
        collector: Pending[K, V],
        mutations_for: Callable[[Batch[K, V]], list[Mutation[K, V]]],
        client: MapperClient,
        interval: float,
        *,
        metrics: ReportCounters,
        name: str = "reporter",
        attempts: int = 3,
        backoff_initial: float = 0.5,
        backoff_max: float = 60.0,
    ) -> None:
        if interval <= 0 or attempts < 1 or backoff_initial <= 0 or backoff_max < backoff_initial:
            raise ValueError("need interval > 0, attempts >= 1 and 0 < backoff_initial <= backoff_max")
        self._collector = collector
        self._mutations_for = mutations_for
        self._client = client
        self._interval = interval
        self._metrics = metrics
        self._name = name
        self._attempts = attempts
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed_cycles = 0

    @property
    def failed_cycles(self) -> int:
        """Consecutive report cycles that failed (0 once the mapper accepts again)."""
        return self._failed_cycles

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("reporter already started")
        self._thread = threading.Thread(target=self._run, name=f"{self._name}-reporter", daemon=True)
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the loop and flush once (one attempt per mutation); what still fails stays
        in the collector and is logged."""
        self._stop.set()
        if self._thread is None:
            self._flush()
        else:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self._next_delay()):
            self.report_once()
        self._flush()

    def _flush(self) -> None:
        if not self.report_once():
            log.warning("entries not delivered at shutdown count=%d", len(self._collector))

    def _next_delay(self) -> float:
        if self._failed_cycles == 0:
            return self._interval
        exponent = min(self._failed_cycles - 1, 32)
        backoff = min(self._backoff_max, self._backoff_initial * 2.0**exponent)
        jitter = random.uniform(0, min(backoff, self._backoff_initial))  # noqa: S311 - jitter, not crypto
        return max(self._interval, backoff + jitter)

    def report_once(self) -> bool:
        """Drain and send now. False when a mutation failed; its entries and those of the
        mutations not yet sent are back in the collector."""
        batch = self._collector.drain()
        if batch.dropped:
            log.warning("entries dropped at bound dropped=%d bound=%d", batch.dropped, self._collector.bound)
        if batch.bad_times:
            log.warning("observations refused, time out of range [2000, 2100) refused=%d", batch.bad_times)
        mutations = self._mutations_for(batch)
        for index, mutation in enumerate(mutations):
            try:
                self._send(mutation)
            except MapperError as exc:
                kept = sum(len(m.entries) for m in mutations[index:])
                for unsent in mutations[index:]:
                    self._collector.merge(unsent.entries)
                self._log_failure(mutation, exc, kept)
                self._failed_cycles += 1
                return False
            self._metrics.reports_sent.inc()
        if self._failed_cycles and mutations:
            log.info("mapper accepts reports again after failed_cycles=%d", self._failed_cycles)
            self._failed_cycles = 0
        return True

    def _log_failure(self, mutation: Mutation[K, V], exc: MapperError, kept: int) -> None:
        if isinstance(exc, MapperRejected):  # every occurrence: someone has to fix the config
            log.error("report rejected mutation=%s error=%s kept=%d", mutation.field, exc, kept)
        else:  # an outage: one WARNING when it starts, DEBUG while it lasts
            level = logging.WARNING if self._failed_cycles == 0 else logging.DEBUG
            log.log(level, "report failed mutation=%s error=%s kept=%d", mutation.field, exc, kept)

    def _send(self, mutation: Mutation[K, V]) -> None:
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type((MapperUnavailable, GraphQLErrors)),
            stop=tenacity.stop_after_attempt(self._attempts) | tenacity.stop_when_event_set(self._stop),
            wait=tenacity.wait_exponential(multiplier=self._backoff_initial, max=self._backoff_max)
            + tenacity.wait_random(0, self._backoff_initial),
            sleep=self._sleep,
            reraise=True,
        )
        retrying(self._execute, mutation)

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)  # stop() interrupts a backoff

    def _execute(self, mutation: Mutation[K, V]) -> None:
        try:
            self._client.execute(mutation.query, mutation.variables)
        except MapperError:
            self._metrics.report_failures.inc()
            raise
