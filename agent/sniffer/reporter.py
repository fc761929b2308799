"""Batching the sniffer's observations and reporting them to the mapper.

Observations come from the capture loop (``DnsAnswer`` and ``TcpConnection``, one per packet)
and the socket scan (``SocketConnection``); they go to the mapper's GraphQL API as the three
Otterize-compatible mutations ``reportCaptureResults`` (DNS), ``reportTCPCaptureResults`` (TCP
SYNs) and ``reportSocketScanResults`` (established sockets).

:class:`PairCollector` aggregates observations by (kind, source, destination, port), keeping
the latest time, so memory is bounded by distinct pairs, not packets, and hard-bounded by
``max_pairs``: a new pair beyond the bound is dropped and counted (updates to known pairs
always succeed). The conversion to mutation variables is pure (:func:`mutations_for`).

:class:`Reporter` drains the collector every ``interval`` seconds and sends the non-empty
mutations through a :class:`MapperClient`, with two tiers of retry:

* short blips: each mutation is retried ``attempts`` times with exponential backoff and
  jitter (tenacity) on connection errors, timeouts, HTTP 5xx/429 and GraphQL ``errors``;
* outages: when the retries are exhausted the unsent pairs are merged back into the
  collector (same bound, newest time wins) and the next cycle waits an exponentially
  growing, jittered delay (capped at ``backoff_max``). Nothing pending is lost while the
  mapper is down unless the bound overflows, and then the overflow is counted as dropped.

HTTP 4xx other than 429 (a bad token, a schema mismatch) is not retried within the cycle and
is logged as one ERROR line per occurrence. The pairs are still kept and the reporter backs
off as for an outage: a rejected token is usually fixed outside the sniffer (the secret is
rotated, the mapper restarted) and the data should then still arrive; the bound caps memory
meanwhile, and the backoff keeps the error to one line per ``backoff_max`` at most.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import tenacity

from agent.mapperclient import (
    GraphQLErrors,
    HttpMapperClient,
    MapperClient,
    MapperError,
    MapperRejected,
    MapperUnavailable,
)
from agent.model import DnsAnswer, Method, SocketConnection, TcpConnection
from agent.settings import SnifferSettings
from agent.sniffer.metrics import SnifferMetrics

log = logging.getLogger("agent.sniffer.reporter")

MAX_IPS_PER_NAME = 16
"""A DNS pair keeps the union of the IPs it resolved to, newest first, up to this many."""

ReportedObservation = DnsAnswer | TcpConnection | SocketConnection


class PairKey(NamedTuple):
    kind: Method  # DNS, TCP or SOCKET_SCAN
    source: str  # client IP
    destination: str  # DNS: queried name; TCP and socket scan: server IP
    port: int  # server port; 0 for DNS


class Seen(NamedTuple):
    last_seen: float
    ips: tuple[str, ...] = ()  # DNS only
    ttl: int = 0  # DNS only
    hostname: str = ""  # socket scan only: the client's hostname


_new = tuple.__new__  # builds a NamedTuple in half the time of its constructor (hot path)
_DNS, _TCP, _SOCKET = Method.DNS, Method.TCP, Method.SOCKET_SCAN


def _pair_of(o: ReportedObservation) -> tuple[PairKey, Seen]:
    if isinstance(o, TcpConnection):
        key = _new(PairKey, (_TCP, o.client_ip, o.server_ip, o.server_port))
        return key, _new(Seen, (o.seen_at, (), 0, ""))
    if isinstance(o, DnsAnswer):
        return _new(PairKey, (_DNS, o.client_ip, o.qname, 0)), _new(Seen, (o.seen_at, o.ips, o.ttl, ""))
    if isinstance(o, SocketConnection):
        key = _new(PairKey, (_SOCKET, o.client_ip, o.server_ip, o.server_port))
        return key, _new(Seen, (o.seen_at, (), 0, o.client_hostname))
    raise TypeError(f"not a sniffer observation: {type(o).__name__}")


def _combine(a: Seen, b: Seen) -> Seen:
    """The same pair seen twice: the newest time wins, DNS IPs are unioned (newest first)."""
    new, old = (b, a) if b.last_seen >= a.last_seen else (a, b)
    ips = new.ips
    if old.ips and old.ips != ips:
        ips = (ips + tuple(ip for ip in old.ips if ip not in ips))[:MAX_IPS_PER_NAME]
    if ips is new.ips and (new.hostname or not old.hostname):
        return new
    return Seen(new.last_seen, ips, new.ttl, new.hostname or old.hostname)


@dataclass(frozen=True, slots=True)
class Batch:
    """What one drain took: the pending pairs, and how many new pairs were refused since the
    previous drain (because the bound was reached)."""

    pairs: Mapping[PairKey, Seen]
    dropped: int = 0

    def __len__(self) -> int:
        return len(self.pairs)


class PairCollector:
    """Pending pairs, aggregated and bounded. Thread-safe: the capture and scanner threads
    :meth:`add`, the reporter thread :meth:`drain` and :meth:`merge`."""

    def __init__(self, max_pairs: int, metrics: SnifferMetrics | None = None) -> None:
        if max_pairs < 1:
            raise ValueError(f"max_pairs must be at least 1, got {max_pairs}")
        self.max_pairs = max_pairs
        self._metrics = metrics
        self._lock = threading.Lock()
        self._pending: dict[PairKey, Seen] = {}
        self._dropped_total = 0
        self._dropped_since_drain = 0
        if metrics is not None:
            metrics.pairs_pending.set_function(self.__len__)

    def add(self, observation: ReportedObservation) -> bool:
        """Record one observation; False when it was a new pair refused by the bound."""
        key, seen = _pair_of(observation)
        with self._lock:
            pending = self._pending
            old = pending.get(key)
            if old is not None:
                pending[key] = _combine(old, seen)
                return True
            if len(pending) < self.max_pairs:
                pending[key] = seen
                return True
            self._dropped_total += 1
            self._dropped_since_drain += 1
        if self._metrics is not None:
            self._metrics.pairs_dropped.inc()
        return False

    def merge(self, pairs: Mapping[PairKey, Seen]) -> int:
        """Put pairs back (a batch that failed to send): same bound, newest time wins.
        Returns how many were dropped because the bound was reached."""
        return self._put(pairs)

    def _put(self, pairs: Mapping[PairKey, Seen]) -> int:
        dropped = 0
        with self._lock:
            pending = self._pending
            for key, seen in pairs.items():
                old = pending.get(key)
                if old is not None:
                    pending[key] = _combine(old, seen)
                elif len(pending) < self.max_pairs:
                    pending[key] = seen
                else:
                    dropped += 1
            if dropped:
                self._dropped_total += dropped
                self._dropped_since_drain += dropped
        if dropped and self._metrics is not None:
            self._metrics.pairs_dropped.inc(dropped)
        return dropped

    def drain(self) -> Batch:
        """Take every pending pair (swapping dicts: O(1) under the lock)."""
        with self._lock:
            pairs, self._pending = self._pending, {}
            dropped, self._dropped_since_drain = self._dropped_since_drain, 0
        return Batch(pairs, dropped)

    @property
    def dropped(self) -> int:
        """New pairs refused by the bound since the collector was made."""
        return self._dropped_total

    def __len__(self) -> int:
        return len(self._pending)


# --------------------------------------------------------------------------- mutations


def rfc3339(timestamp: float) -> str:
    """Epoch seconds → GraphQL ``Time`` (RFC 3339, UTC, microseconds): ``2026-11-28T02:15:06.918878Z``."""
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class _MutationSpec:
    field: str
    input_type: str

    @property
    def query(self) -> str:
        return f"mutation {self.field}($results: {self.input_type}!) {{ {self.field}(results: $results) }}"


_SPECS: dict[Method, _MutationSpec] = {
    Method.DNS: _MutationSpec("reportCaptureResults", "CaptureResults"),
    Method.TCP: _MutationSpec("reportTCPCaptureResults", "CaptureTCPResults"),
    Method.SOCKET_SCAN: _MutationSpec("reportSocketScanResults", "SocketScanResults"),
}


@dataclass(frozen=True, slots=True)
class Mutation:
    """One GraphQL request: ``field`` names the mutation; ``pairs`` are what it carries (put
    back into the collector when it fails)."""

    kind: Method
    field: str
    query: str
    variables: dict[str, Any]
    pairs: Mapping[PairKey, Seen] = dataclasses.field(repr=False)


def _destinations(key: PairKey, seen: Seen) -> list[dict[str, Any]]:
    last_seen = rfc3339(seen.last_seen)
    if key.kind is Method.DNS:
        if not seen.ips:
            return [{"destination": key.destination, "TTL": seen.ttl, "lastSeen": last_seen}]
        return [
            {"destination": key.destination, "destinationIP": ip, "TTL": seen.ttl, "lastSeen": last_seen}
            for ip in seen.ips
        ]
    return [{"destination": key.destination, "destinationPort": key.port, "lastSeen": last_seen}]


def results_for(pairs: Mapping[PairKey, Seen]) -> dict[str, Any]:
    """Pairs of one kind → the ``results`` input (``CaptureResults`` and its siblings):
    one ``RecordedDestinationsForSrc`` per source IP, sorted for stable output."""
    by_source: dict[str, tuple[list[dict[str, Any]], float, str]] = {}
    for key, seen in sorted(pairs.items()):
        destinations, hostname_seen, hostname = by_source.get(key.source, ([], -1.0, ""))
        destinations.extend(_destinations(key, seen))
        if seen.hostname and seen.last_seen > hostname_seen:
            hostname_seen, hostname = seen.last_seen, seen.hostname
        by_source[key.source] = (destinations, hostname_seen, hostname)
    return {
        "results": [
            {"srcIp": source, "srcHostname": hostname, "destinations": destinations}
            for source, (destinations, _, hostname) in by_source.items()
        ]
    }


def mutations_for(batch: Batch | Mapping[PairKey, Seen]) -> list[Mutation]:
    """A drained batch → the mutations to send (DNS, TCP, socket scan; empty ones skipped)."""
    pairs = batch.pairs if isinstance(batch, Batch) else batch
    by_kind: dict[Method, dict[PairKey, Seen]] = {kind: {} for kind in _SPECS}
    for key, seen in pairs.items():
        by_kind[key.kind][key] = seen
    mutations = []
    for kind, spec in _SPECS.items():
        if by_kind[kind]:
            variables = {"results": results_for(by_kind[kind])}
            mutations.append(Mutation(kind, spec.field, spec.query, variables, by_kind[kind]))
    return mutations


# --------------------------------------------------------------------------- the reporter


class Reporter:
    """Every ``interval`` seconds, drain ``collector`` and send it through ``client``.

    ``attempts``, ``backoff_initial`` and ``backoff_max`` tune the retries (see the module
    docstring); tests pass short ones. :meth:`stop` flushes one last time.
    """

    def __init__(
        self,
        collector: PairCollector,
        client: MapperClient,
        interval: float,
        *,
        metrics: SnifferMetrics | None = None,
        attempts: int = 3,
        backoff_initial: float = 0.5,
        backoff_max: float = 60.0,
    ) -> None:
        if interval <= 0 or attempts < 1 or backoff_initial <= 0 or backoff_max < backoff_initial:
            raise ValueError("need interval > 0, attempts >= 1 and 0 < backoff_initial <= backoff_max")
        self._collector = collector
        self._client = client
        self._interval = interval
        self._metrics = metrics or SnifferMetrics()
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
        self._thread = threading.Thread(target=self._run, name="sniffer-reporter", daemon=True)
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
            log.warning("pairs not delivered at shutdown count=%d", len(self._collector))

    def _next_delay(self) -> float:
        if self._failed_cycles == 0:
            return self._interval
        exponent = min(self._failed_cycles - 1, 32)
        backoff = min(self._backoff_max, self._backoff_initial * 2.0**exponent)
        jitter = random.uniform(0, min(backoff, self._backoff_initial))  # noqa: S311 - jitter, not crypto
        return max(self._interval, backoff + jitter)

    def report_once(self) -> bool:
        """Drain and send now. False when a mutation failed; its pairs and those of the
        mutations not yet sent are back in the collector."""
        batch = self._collector.drain()
        if batch.dropped:
            log.warning(
                "pairs dropped at bound dropped=%d bound=%d", batch.dropped, self._collector.max_pairs
            )
        mutations = mutations_for(batch)
        for index, mutation in enumerate(mutations):
            try:
                self._send(mutation)
            except MapperError as exc:
                kept = sum(len(m.pairs) for m in mutations[index:])
                for unsent in mutations[index:]:
                    self._collector.merge(unsent.pairs)
                self._log_failure(mutation, exc, kept)
                self._failed_cycles += 1
                return False
            self._metrics.reports_sent.inc()
        if self._failed_cycles and mutations:
            log.info("mapper accepts reports again after failed_cycles=%d", self._failed_cycles)
            self._failed_cycles = 0
        return True

    def _log_failure(self, mutation: Mutation, exc: MapperError, kept: int) -> None:
        if isinstance(exc, MapperRejected):  # every occurrence: someone has to fix the config
            log.error("report rejected mutation=%s error=%s kept_pairs=%d", mutation.field, exc, kept)
        else:  # an outage: one WARNING when it starts, DEBUG while it lasts
            level = logging.WARNING if self._failed_cycles == 0 else logging.DEBUG
            log.log(level, "report failed mutation=%s error=%s kept_pairs=%d", mutation.field, exc, kept)

    def _send(self, mutation: Mutation) -> None:
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

    def _execute(self, mutation: Mutation) -> None:
        try:
            self._client.execute(mutation.query, mutation.variables)
        except MapperError:
            self._metrics.report_failures.inc()
            raise


def reporter_from_settings(
    settings: SnifferSettings, metrics: SnifferMetrics
) -> tuple[PairCollector, Reporter]:
    """The collector and reporter the sniffer's ``__main__`` wires to capture and scan."""
    collector = PairCollector(settings.max_pending_pairs, metrics)
    client = HttpMapperClient(settings.mapper_url, settings.token, settings.request_timeout)
    reporter = Reporter(collector, client, settings.report_interval, metrics=metrics)
    return collector, reporter
