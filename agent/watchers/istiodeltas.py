"""Cumulative ``istio_requests_total`` counters, scrape after scrape → what increased since the
previous scrape (pure: no I/O, no clock; times are passed in).

Where the data comes from: each sidecar's ``istio_requests_total`` lines
(:func:`agent.watchers.istio.select_lines`) or parsed series (:func:`agent.watchers.istio.parse_scrape`),
with the pod's identity and its sidecar's start time from the Kubernetes API. Where it goes: the
increased series (and by how much) go to :func:`agent.watchers.istio.request_of` and the pending
requests; only increases are reported, so the mapper never sees the sidecar's history again as
new traffic.

The rules, per pod (keyed by UID) and per series (:attr:`~agent.watchers.istio.Series.id`):

* **first scrape of a pod**: the sidecar counted since it started. If it started after the
  watcher did (:attr:`PodRef.started_at` later than ``watcher_started``), everything it counted
  happened while the watcher ran: every series is an increase by its value. Otherwise (started
  before, or start unknown) the scrape is the pod's **baseline**: nothing is reported, so a
  watcher restart replays nothing. Requests between the watcher's start and a pre-existing
  pod's first scrape are not reported: the price of not persisting counters.
* **a series seen before**: value above the previous one → increase by the difference; equal →
  nothing; below → the counter was reset (the sidecar restarted): increase by the new value.
* **a new series of a known pod**: Envoy creates a series on its first request, so all of its
  value is new, if the pod's previous scrape kept every series. If the previous scrape was over
  the series cap, the new one may be an old series coming back under the cap: it becomes a
  baseline instead (under-report rather than replay).
* **a series gone from a scrape** is forgotten (Envoy drops series only when it restarts).
* **a pod gone from the pod list** is forgotten (:meth:`CounterTracker.retain`). A pod whose
  scrape failed (not fetched, or not Prometheus text) keeps its state: the next good scrape
  reports what grew meanwhile.

:meth:`CounterTracker.observe_lines` parses only the lines whose text changed since the pod's
previous scrape (a line is remembered by its text's hash: a 64-bit collision between a line and
its successor would hide one scrape's increase until the next), since an unchanged line cannot
have grown; that is most of them in steady state, and parsing is most of a scrape's cost.
Memory: a hash and a float per kept series per pod, bounded by the scrape's series cap.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from agent.watchers.istio import RequestLines, Scrape, Series, parse_lines

__all__ = ["CounterTracker", "Increase", "Observed", "PodRef"]


@dataclass(frozen=True, slots=True)
class PodRef:
    """A sidecar pod as the tracker needs it: its UID, and when its sidecar (``istio-proxy``
    container, else the pod) started, in epoch seconds (None: unknown)."""

    uid: str
    started_at: float | None = None


@dataclass(frozen=True, slots=True)
class Increase:
    """One series that grew since the pod's previous scrape, and by how much."""

    series: Series
    delta: float


@dataclass(frozen=True, slots=True)
class Observed:
    """What one scrape of a pod gave: its ``increases``, the series it had to ``parse`` (the
    changed and new ones: their labels are known), and ``bad_values`` left out."""

    increases: list[Increase]
    parsed: Sequence[Series] = ()
    bad_values: int = 0


@dataclass(slots=True)
class _PodCounters:
    counts: dict[int, tuple[int, float]] = field(default_factory=dict)  # id → (line hash, value)
    complete: bool = True  # the previous scrape kept every series (was not over the cap)


class CounterTracker:
    """Last counter values per pod; :meth:`observe_lines` (or :meth:`observe`) each scrape,
    :meth:`retain` the listed pods. Used by one thread (the watcher's scrape loop)."""

    def __init__(self, watcher_started: float) -> None:
        self.watcher_started = watcher_started
        self._pods: dict[str, _PodCounters] = {}

    def __len__(self) -> int:
        """Pods with counters."""
        return len(self._pods)

    def series_count(self) -> int:
        """Series with counters, all pods together."""
        return sum(len(p.counts) for p in self._pods.values())

    def knows(self, uid: str) -> bool:
        return uid in self._pods

    def observe_lines(self, pod: PodRef, selected: RequestLines) -> Observed:
        """The increases of one scrape's lines since ``pod``'s previous scrape, parsing only the
        lines that changed; :class:`~agent.watchers.istio.ScrapeError` (the pod's state kept)
        when those are not Prometheus text."""
        known = self._pods.get(pod.uid)
        previous = known.counts if known is not None else {}
        counts: dict[int, tuple[int, float]] = {}
        changed_lines, changed_ids, line_hashes = [], [], {}
        for series_id, line in zip(selected.ids, selected.lines, strict=True):
            line_hash = hash(line)
            before = previous.get(series_id)
            if before is not None and before[0] == line_hash:
                counts[series_id] = before
            else:
                changed_lines.append(line)
                changed_ids.append(series_id)
                line_hashes[series_id] = line_hash
        parsed, bad = parse_lines(changed_lines, changed_ids)
        for s in parsed:
            counts[s.id] = (line_hashes[s.id], s.value)
        return Observed(self._commit(pod, known, counts, parsed, selected.over_cap == 0), parsed, bad)

    def observe(self, pod: PodRef, scrape: Scrape) -> list[Increase]:
        """The increases of one parsed scrape since ``pod``'s previous scrape (every series is
        compared; the lines' memo of :meth:`observe_lines` is not kept)."""
        counts = {s.id: (0, s.value) for s in scrape.series}
        return self._commit(pod, self._pods.get(pod.uid), counts, scrape.series, scrape.over_cap == 0)

    def _commit(
        self,
        pod: PodRef,
        known: _PodCounters | None,
        counts: dict[int, tuple[int, float]],
        changed: Sequence[Series],
        complete: bool,
    ) -> list[Increase]:
        """Store the pod's new counts; the increases among ``changed`` (the rest did not change)."""
        self._pods[pod.uid] = _PodCounters(counts, complete)
        if known is None:
            if pod.started_at is not None and pod.started_at > self.watcher_started:
                return [Increase(s, s.value) for s in changed if s.value > 0]
            return []
        previous, new_counts = known.counts, known.complete
        increases = []
        for s in changed:
            before = previous.get(s.id)
            if before is None:
                if new_counts and s.value > 0:
                    increases.append(Increase(s, s.value))
            elif s.value > before[1]:
                increases.append(Increase(s, s.value - before[1]))
            elif s.value < before[1] and s.value > 0:
                increases.append(Increase(s, s.value))
        return increases

    def retain(self, uids: Iterable[str]) -> int:
        """Forget every pod not in ``uids`` (deleted, or no longer a running sidecar); how many."""
        keep = set(uids)
        gone = [uid for uid in self._pods if uid not in keep]
        for uid in gone:
            del self._pods[uid]
        return len(gone)
