"""The Istio watcher's scrapes → its pending requests, and its metrics (no I/O: the scrape loop
in :mod:`agent.watchers.istiowatcher` fetches; the bench drives this with texts in memory).

Where the data comes from: one scrape cycle's sidecar scrapes, each as its
``istio_requests_total`` lines (:func:`agent.watchers.istio.select_lines`) or parsed series, with
its pod and the time it was fetched, and the pods listed that cycle
(:mod:`agent.watchers.istiopods`). Where it goes: :class:`ScrapeProcessor` turns each scrape's
increases (:class:`agent.watchers.istiodeltas.CounterTracker`, which parses the lines that
changed) into requests (:func:`agent.watchers.istio.request_of`) put in the
:class:`RequestCollector`, which :class:`agent.reporter.Reporter` drains; every step is counted
in :class:`IstioWatcherMetrics`, which :mod:`agent.health` serves at ``/metrics``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from agent import pending
from agent.metrics import Counter, Gauge, Metrics
from agent.reporter import report_counters
from agent.watchers.istio import (
    RequestKey,
    RequestLines,
    RequestSeen,
    Scrape,
    ScrapeError,
    Series,
    Skip,
    combine,
    request_of,
)
from agent.watchers.istiodeltas import CounterTracker, Observed, PodRef
from agent.watchers.istiopods import SidecarPod

__all__ = ["PREFIX", "IstioWatcherMetrics", "RequestCollector", "ScrapeProcessor"]

log = logging.getLogger("agent.watchers.istio")
PREFIX = "network_mapper_istio_watcher_"
MAX_IDENTITIES = 8  # names a pod's sidecar reports itself by: one, or two across a rename


class IstioWatcherMetrics(Metrics):
    """Every metric of the Istio watcher, served at ``/metrics``."""

    def __init__(self) -> None:
        self.cycles = Counter(
            f"{PREFIX}cycles_total", "Scrape cycles completed (every sidecar scraped once)."
        )
        self.scrapes = Counter(f"{PREFIX}scrapes_total", "Sidecar scrapes fetched (HTTP 200, whole).")
        self.scrape_failures = Counter(
            f"{PREFIX}scrape_failures_total",
            "Sidecar scrapes not fetched (connection, timeout, HTTP status, size).",
        )
        self.unparsable_scrapes = Counter(
            f"{PREFIX}unparsable_scrapes_total",
            "Failed scrapes whose istio_requests_total is not Prometheus text.",
        )
        self.pod_list_failures = Counter(f"{PREFIX}pod_list_failures_total", "Failed lists of sidecar pods.")
        self.series_over_cap = Counter(
            f"{PREFIX}series_over_cap_total", "Series left out of a scrape over the per-pod series cap."
        )
        self.bad_values = Counter(f"{PREFIX}bad_values_total", "Samples whose value is no counter's.")
        self.increases = Counter(f"{PREFIX}increases_total", "Series that grew since the previous scrape.")
        self.requests_counted = Counter(
            f"{PREFIX}requests_counted_total", "Requests (counter increases) turned into reports."
        )
        self.skipped_unknown = Counter(
            f"{PREFIX}skipped_unknown_total", "Increases skipped: unknown source or destination."
        )
        self.skipped_no_path = Counter(
            f"{PREFIX}skipped_no_path_total", "Increases skipped: no request_path."
        )
        self.skipped_method = Counter(
            f"{PREFIX}skipped_method_total", "Increases skipped: a method the mapper does not take (HEAD)."
        )
        self.skipped_duplicate = Counter(
            f"{PREFIX}skipped_duplicate_total",
            "Increases skipped: client-side counts of requests the server's sidecar reports.",
        )
        self.sidecars = Gauge(f"{PREFIX}sidecars", "Running pods with a sidecar, as last listed.")
        self.series_tracked = Gauge(f"{PREFIX}series_tracked", "Series whose last value is kept.")
        self.requests_pending = Gauge(f"{PREFIX}requests_pending", "Requests waiting to be reported.")
        self.requests_dropped = Counter(
            f"{PREFIX}requests_dropped_total", "New requests refused because the pending bound was reached."
        )
        self.reports_sent, self.report_failures = report_counters(PREFIX)


class RequestCollector(pending.Pending[RequestKey, RequestSeen]):
    """Pending requests (:class:`agent.pending.Pending`), combined by
    :func:`agent.watchers.istio.combine`."""

    def __init__(self, bound: int, metrics: IstioWatcherMetrics | None = None) -> None:
        super().__init__(bound, combine, on_drop=metrics.requests_dropped.inc if metrics else None)
        if metrics is not None:
            metrics.requests_pending.set_function(self.__len__)


_SKIP_COUNTERS = {
    Skip.UNKNOWN: "skipped_unknown",
    Skip.NO_PATH: "skipped_no_path",
    Skip.METHOD: "skipped_method",
    Skip.DUPLICATE: "skipped_duplicate",
}


class ScrapeProcessor:
    """One cycle's scrapes → pending requests (no I/O; used by the scrape loop's thread).

    ``meshed`` (who has a sidecar of its own, for :func:`~agent.watchers.istio.request_of`) is,
    for each pod scraped this cycle, its workload as Istio names it and every workload its
    sidecar has reported as itself (``reporter="destination"``): a destination whose sidecars
    could not be scraped this cycle is not meshed, so its clients' counts are taken instead of
    being lost (when its scrape comes back, what it counted meanwhile is reported a second time:
    a repeat, never a loss)."""

    def __init__(
        self,
        collector: pending.Pending[RequestKey, RequestSeen],
        metrics: IstioWatcherMetrics,
        watcher_started: float,
        *,
        templates: bool = True,
    ) -> None:
        self.collector = collector
        self.metrics = metrics
        self.templates = templates
        self.tracker = CounterTracker(watcher_started)
        self._identities: dict[str, set[tuple[str, str]]] = {}  # pod UID → who its sidecar reports as
        self._sidecars = 0
        metrics.series_tracked.set_function(self.tracker.series_count)
        metrics.sidecars.set_function(lambda: self._sidecars)

    def process(
        self,
        pods: Sequence[SidecarPod],
        scrapes: Sequence[tuple[SidecarPod, RequestLines | Scrape, float]],
        *,
        listed: bool,
    ) -> int:
        """``scrapes`` (pod, its lines or parsed series, when it was fetched) of the ``pods``
        listed this cycle; ``listed``: the list is fresh, so pods not in it are forgotten. Returns
        how many scrapes were not Prometheus text (counted; those pods keep their counters)."""
        observed: list[tuple[Observed, float]] = []
        ok: list[tuple[SidecarPod, RequestLines | Scrape, float]] = []
        metrics, unparsable = self.metrics, 0
        for pod, scrape, seen_at in scrapes:
            ref = PodRef(pod.uid, pod.started_at)
            metrics.series_over_cap.inc(scrape.over_cap)
            if isinstance(scrape, Scrape):
                observed.append(
                    (Observed(self.tracker.observe(ref, scrape), scrape.series, scrape.bad_values), seen_at)
                )
                ok.append((pod, scrape, seen_at))
                continue
            try:
                observed.append((self.tracker.observe_lines(ref, scrape), seen_at))
                ok.append((pod, scrape, seen_at))
            except ScrapeError as exc:
                unparsable += 1
                log.warning("scrape not Prometheus text pod=%s/%s error=%s", pod.namespace, pod.name, exc)
        metrics.unparsable_scrapes.inc(unparsable)
        meshed = self._meshed([(pod, o.parsed) for (pod, _, _), (o, _) in zip(ok, observed, strict=True)])
        put, templates = self.collector.put, self.templates
        for seen, seen_at in observed:
            metrics.bad_values.inc(seen.bad_values)
            metrics.increases.inc(len(seen.increases))
            for increase in seen.increases:
                found = request_of(increase.series.labels, templates=templates, meshed=meshed)
                if isinstance(found, Skip):
                    getattr(metrics, _SKIP_COUNTERS[found]).inc()
                    continue
                key, principals, codes = found
                put(key, RequestSeen(seen_at, principals, codes), seen_at)
                metrics.requests_counted.inc(int(increase.delta))
        if listed:
            self.tracker.retain(p.uid for p in pods)
            listed_uids = {p.uid for p in pods}
            self._identities = {u: ids for u, ids in self._identities.items() if u in listed_uids}
        self._sidecars = len(pods)
        return unparsable

    def _meshed(self, scraped: Iterable[tuple[SidecarPod, Sequence[Series]]]) -> set[tuple[str, str]]:
        """Who has a sidecar scraped this cycle: each scraped pod's identities (see the class)."""
        meshed: set[tuple[str, str]] = set()
        for pod, parsed in scraped:
            identities = self._identities.setdefault(pod.uid, {(pod.namespace, pod.workload)})
            for s in parsed:
                if s.labels.get("reporter") == "destination" and len(identities) < MAX_IDENTITIES:
                    identities.add(
                        (
                            s.labels.get("destination_workload_namespace", ""),
                            s.labels.get("destination_workload", ""),
                        )
                    )
            meshed |= identities
        return meshed
