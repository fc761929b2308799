"""agent.watchers.istiodeltas: cumulative counters scrape after scrape → increases only.

Scrapes are Prometheus text, parsed (agent.watchers.istio.parse_scrape, for observe) or picked
out and parsed as they change (select_lines, for observe_lines, as the watcher does); hypothesis
checks the two ways agree.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.watchers.istio import RequestLines, Scrape, ScrapeError, parse_scrape, select_lines
from agent.watchers.istiodeltas import CounterTracker, PodRef

STARTED = 1_000.0  # the watcher's start
OLD_POD = PodRef("uid-old", started_at=STARTED - 600)  # sidecar started before the watcher
NEW_POD = PodRef("uid-new", started_at=STARTED + 5)  # ... after it
UNKNOWN_START = PodRef("uid-unknown", started_at=None)


def series(path: str, value: float, code: str = "200") -> str:
    return (
        'istio_requests_total{reporter="destination",source_workload="frontend",'
        'source_workload_namespace="shop",destination_workload="cart",destination_workload_namespace="shop",'
        f'response_code="{code}",request_path="{path}",request_method="GET"}} {value}'
    )


def scrape(*lines: str, cap: int | None = None) -> Scrape:
    return parse_scrape("# TYPE istio_requests_total counter\n" + "\n".join(lines) + "\n", cap)


def deltas(tracker: CounterTracker, pod: PodRef, s: Scrape) -> dict[str, float]:
    return {i.series.labels["request_path"]: i.delta for i in tracker.observe(pod, s)}


def test_the_first_scrape_of_a_pod_older_than_the_watcher_is_a_baseline() -> None:
    tracker = CounterTracker(STARTED)
    assert deltas(tracker, OLD_POD, scrape(series("/a", 500), series("/b", 3))) == {}
    assert tracker.knows(OLD_POD.uid)
    assert deltas(tracker, OLD_POD, scrape(series("/a", 502), series("/b", 3))) == {"/a": 2}


def test_a_sidecar_started_after_the_watcher_counted_only_new_requests() -> None:
    tracker = CounterTracker(STARTED)
    assert deltas(tracker, NEW_POD, scrape(series("/a", 4), series("/b", 1))) == {"/a": 4, "/b": 1}


def test_an_unknown_start_is_a_baseline_never_a_replay() -> None:
    tracker = CounterTracker(STARTED)
    assert deltas(tracker, UNKNOWN_START, scrape(series("/a", 4))) == {}


def test_unchanged_counters_give_nothing() -> None:
    tracker = CounterTracker(STARTED)
    tracker.observe(OLD_POD, scrape(series("/a", 7)))
    for _ in range(3):
        assert deltas(tracker, OLD_POD, scrape(series("/a", 7))) == {}


def test_a_counter_lower_than_before_was_reset_and_its_value_is_new() -> None:
    tracker = CounterTracker(STARTED)
    tracker.observe(OLD_POD, scrape(series("/a", 90)))
    assert deltas(tracker, OLD_POD, scrape(series("/a", 4))) == {"/a": 4}
    assert deltas(tracker, OLD_POD, scrape(series("/a", 6))) == {"/a": 2}


def test_a_reset_to_zero_is_no_request() -> None:
    tracker = CounterTracker(STARTED)
    tracker.observe(OLD_POD, scrape(series("/a", 90)))
    assert deltas(tracker, OLD_POD, scrape(series("/a", 0))) == {}


def test_a_new_label_set_of_a_known_pod_counts_in_full() -> None:
    tracker = CounterTracker(STARTED)
    tracker.observe(OLD_POD, scrape(series("/a", 10)))
    found = deltas(tracker, OLD_POD, scrape(series("/a", 10), series("/b", 3), series("/a", 1, code="500")))
    assert found == {"/b": 3, "/a": 1}  # the 500 series of /a


def test_a_series_gone_and_back_is_counted_from_zero() -> None:
    """Envoy drops series only when it restarts: one that comes back counts from zero."""
    tracker = CounterTracker(STARTED)
    tracker.observe(OLD_POD, scrape(series("/a", 10), series("/b", 5)))
    assert deltas(tracker, OLD_POD, scrape(series("/a", 11))) == {"/a": 1}
    assert deltas(tracker, OLD_POD, scrape(series("/a", 11), series("/b", 2))) == {"/b": 2}


def test_after_a_scrape_over_the_cap_new_series_are_baselines() -> None:
    tracker = CounterTracker(STARTED)
    many = [series(f"/p{i}", 10) for i in range(6)]
    capped = scrape(*many, cap=3)
    assert capped.over_cap == 3
    tracker.observe(OLD_POD, capped)
    # Under the cap again: the 3 series that were left out are not new (they had counted all along).
    assert deltas(tracker, OLD_POD, scrape(*many[:5])) == {}
    # The previous scrape was complete: a new series now counts in full, old ones by their growth.
    assert deltas(tracker, OLD_POD, scrape(*many[:5], series("/fresh", 2), series("/p0", 12))) == {
        "/fresh": 2,
        "/p0": 2,
    }


def test_a_failed_scrape_keeps_the_state_and_the_next_one_reports_all_the_growth() -> None:
    tracker = CounterTracker(STARTED)
    tracker.observe(OLD_POD, scrape(series("/a", 10)))
    # scrapes failed for a while: observe() was not called; the pod was still listed
    assert tracker.retain([OLD_POD.uid]) == 0
    assert deltas(tracker, OLD_POD, scrape(series("/a", 25))) == {"/a": 15}


def test_deleted_pods_are_forgotten_and_pods_are_kept_apart() -> None:
    tracker = CounterTracker(STARTED)
    tracker.observe(OLD_POD, scrape(series("/a", 10)))
    tracker.observe(NEW_POD, scrape(series("/a", 3)))
    assert deltas(tracker, NEW_POD, scrape(series("/a", 4))) == {"/a": 1}
    assert (len(tracker), tracker.series_count()) == (2, 2)
    assert tracker.retain([NEW_POD.uid]) == 1
    assert not tracker.knows(OLD_POD.uid)
    # listed again (the same pod, older than the watcher): a baseline again, nothing replayed
    assert deltas(tracker, OLD_POD, scrape(series("/a", 12))) == {}


def test_a_restarted_watcher_reports_nothing_old_and_then_only_what_is_new() -> None:
    first = CounterTracker(STARTED)
    first.observe(OLD_POD, scrape(series("/a", 10)))
    assert deltas(first, OLD_POD, scrape(series("/a", 12))) == {"/a": 2}
    restarted = CounterTracker(STARTED + 100)  # the pods are older than the new watcher
    late_pod = PodRef(NEW_POD.uid, NEW_POD.started_at)  # started after the first, before the second
    assert deltas(restarted, OLD_POD, scrape(series("/a", 12))) == {}
    assert deltas(restarted, late_pod, scrape(series("/b", 40))) == {}
    assert deltas(restarted, OLD_POD, scrape(series("/a", 12))) == {}
    assert deltas(restarted, OLD_POD, scrape(series("/a", 13))) == {"/a": 1}


# --------------------------------------------------------------------------- observe_lines


def lines(*text: str, cap: int | None = None) -> RequestLines:
    return select_lines("# TYPE istio_requests_total counter\n" + "\n".join(text) + "\n", cap)


def test_only_changed_and_new_lines_are_parsed() -> None:
    tracker = CounterTracker(STARTED)
    first = tracker.observe_lines(OLD_POD, lines(series("/a", 1), series("/b", 1), series("/c", 1)))
    assert (len(first.parsed), first.increases) == (3, [])
    second = tracker.observe_lines(
        OLD_POD, lines(series("/a", 1), series("/b", 4), series("/c", 1), series("/d", 2))
    )
    assert sorted(s.labels["request_path"] for s in second.parsed) == ["/b", "/d"]
    assert {i.series.labels["request_path"]: i.delta for i in second.increases} == {"/b": 3, "/d": 2}
    third = tracker.observe_lines(
        OLD_POD, lines(series("/a", 1), series("/b", 4), series("/c", 1), series("/d", 2))
    )
    assert (third.parsed, third.increases) == ([], [])


def test_a_changed_line_that_does_not_parse_raises_and_keeps_the_pods_counters() -> None:
    tracker = CounterTracker(STARTED)
    tracker.observe_lines(OLD_POD, lines(series("/a", 10)))
    broken = series("/a", 12).replace("} 12", "} twelve")
    with pytest.raises(ScrapeError):
        tracker.observe_lines(OLD_POD, lines(broken))
    found = tracker.observe_lines(OLD_POD, lines(series("/a", 13)))
    assert [i.delta for i in found.increases] == [3]


VALUES = st.lists(st.lists(st.integers(0, 5), min_size=4, max_size=4), min_size=1, max_size=6)


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(VALUES, st.booleans(), st.integers(1, 5))
def test_parsing_only_changed_lines_finds_what_parsing_everything_finds(
    history: list[list[int]], fresh: bool, cap: int
) -> None:
    """Each scrape: four series, each present when its value is not 0; values go up and down."""
    pod = NEW_POD if fresh else OLD_POD
    memo, full = CounterTracker(STARTED), CounterTracker(STARTED)
    for values in history:
        text = [series(f"/p{i}", v) for i, v in enumerate(values) if v]
        by_lines = memo.observe_lines(pod, lines(*text, cap=cap)).increases
        by_series = full.observe(pod, scrape(*text, cap=cap))
        assert sorted((i.series.id, i.delta) for i in by_lines) == sorted(
            (i.series.id, i.delta) for i in by_series
        )


JUNK = st.lists(
    st.sampled_from(
        [*'{}="\\,# \n\t0123456789.eE+-_a', "istio_requests_total", "istio_requests_total{", "NaN"]
    ),
    max_size=40,
).map("".join)


@settings(max_examples=1000, derandomize=True, database=None, deadline=None)
@given(st.lists(JUNK, min_size=1, max_size=4))
def test_junk_scrapes_through_the_tracker_give_increases_or_scrape_error(texts: list[str]) -> None:
    tracker = CounterTracker(STARTED)
    for text in texts:
        try:
            observed = tracker.observe_lines(NEW_POD, select_lines(text, 3))
        except ScrapeError:
            continue
        assert all(i.delta > 0 for i in observed.increases)
