"""agent.watchers.kafkalogs, the pure half: which pods' logs are read (globs, containers, restarts)
and which lines of each read are new (the cursor over ``sinceTime`` reads that overlap by up to a
second), over log texts. The bodies are rendered by the sandbox API server's own log code
(``sandbox.apiserver.logs``: the kubelet's ``sinceTime`` and ``timestamps=true`` rules) from CRI
records stamped as containerd stamps them (RFC3339Nano, trailing zeros trimmed as Go prints them)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.watchers.kafkalogs import (
    LogCursor,
    LogTarget,
    ServerPattern,
    Taken,
    log_targets,
    parse_stamp,
    since_time,
    take_new_lines,
)
from sandbox.apiserver.logs import LogOptions, parse_record, parse_time, render

NS = 1_000_000_000
BASE = 1_714_564_800 * NS  # 2024-05-01T12:00:00Z


def stamp(ns: int) -> str:
    """RFC3339Nano as Go formats it: the fraction's trailing zeros trimmed, no fraction when 0."""
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // NS))
    fraction = f"{ns % NS:09d}".rstrip("0")
    return f"{whole}.{fraction}Z" if fraction else f"{whole}Z"


def cri(ns: int, message: str, partial: bool = False) -> str:
    return f"{stamp(ns)} stdout {'P' if partial else 'F'} {message}"


def body(records: list[str], cursor: LogCursor) -> str:
    """What ``GET .../log?timestamps=true&sinceTime=<since_time(cursor)>`` returns for ``records``."""
    since = parse_time(since_time(cursor)) if cursor.since_ns else None
    options = LogOptions(since=since, timestamps=True)
    return render([parse_record(r) for r in records], options).decode()


def read(records: list[str], cursor: LogCursor) -> Taken:
    return take_new_lines(cursor, body(records, cursor))


# --------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T12:00:00Z", BASE),
        ("2024-05-01T12:00:00.5Z", BASE + 500_000_000),
        ("2024-05-01T12:00:00.123456789Z", BASE + 123_456_789),
        ("2024-05-01T12:00:00.000000001Z", BASE + 1),
        ("2024-05-01T14:00:00.25+02:00", BASE + 250_000_000),
        ("2024-05-01T11:30:00-00:30", BASE),
    ],
)
def test_parse_stamp(text: str, expected: int) -> None:
    assert parse_stamp(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "2024-05-01", "2024-05-01T12:00:00", "2024-02-30T12:00:00Z", "2024-05-01T12:00:00.1234567890Z", "x"],
)
def test_parse_stamp_refuses_what_is_no_rfc3339_time(text: str) -> None:
    assert parse_stamp(text) is None


def test_since_time_is_the_cursors_second() -> None:
    assert since_time(LogCursor(BASE + 999_999_999)) == "2024-05-01T12:00:00Z"
    assert LogCursor.at(1_714_564_800.25) == LogCursor(BASE + 250_000_000)


# --------------------------------------------------------------------------- new lines


def test_overlapping_reads_take_each_line_once() -> None:
    records = [cri(BASE + 100_000_000, "one"), cri(BASE + 200_000_000, "two")]
    first = read(records, LogCursor(BASE))
    assert first.lines == ((BASE + 100_000_000, "one"), (BASE + 200_000_000, "two"))
    # Same second: sinceTime=12:00:00 returns "one" and "two" again.
    records.append(cri(BASE + 300_000_000, "three"))
    second = read(records, first.cursor)
    assert second.lines == ((BASE + 300_000_000, "three"),)
    records.append(cri(BASE + NS + 50_000_000, "four"))
    third = read(records, second.cursor)
    assert third.lines == ((BASE + NS + 50_000_000, "four"),)
    assert third.cursor.since_ns == BASE + NS  # moved to the newest line's second
    assert read(records, third.cursor).lines == ()


def test_history_before_the_cursor_is_skipped_within_its_second() -> None:
    records = [cri(BASE + 100, "before start"), cri(BASE + 900, "after start")]
    assert read(records, LogCursor(BASE + 500)).lines == ((BASE + 900, "after start"),)


def test_a_repeated_line_at_the_same_instant_is_taken_as_often_as_it_was_logged() -> None:
    same = cri(BASE + 7, "fetch")
    first = read([same], LogCursor(BASE))
    assert first.lines == ((BASE + 7, "fetch"),)
    second = read([same, same, same], first.cursor)
    assert second.lines == ((BASE + 7, "fetch"), (BASE + 7, "fetch"))


def test_a_line_logged_late_with_an_earlier_time_in_the_same_second_is_taken() -> None:
    records = [cri(BASE + 900_000_000, "stdout line")]
    first = read(records, LogCursor(BASE))
    records.append(cri(BASE + 200_000_000, "stderr line, stamped earlier"))
    assert read(records, first.cursor).lines == ((BASE + 200_000_000, "stderr line, stamped earlier"),)


def test_a_record_still_being_written_waits_for_its_end() -> None:
    records = [cri(BASE + 1, "done"), cri(BASE + 2, "half of ", partial=True)]
    first = read(records, LogCursor(BASE))
    assert first.lines == ((BASE + 1, "done"),)
    records.append(cri(BASE + 3, "a line"))
    # The API joins a partial record to the next one, keeping the first part's timestamp.
    assert read(records, first.cursor).lines == ((BASE + 2, f"half of {stamp(BASE + 3)} a line"),)


def test_lines_without_a_timestamp_are_skipped() -> None:
    taken = take_new_lines(LogCursor(BASE), f"no stamp\n{stamp(BASE + 5)} fine\n")
    assert taken.lines == ((BASE + 5, "fine"),)


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(
    logged=st.lists(
        st.tuples(st.integers(0, 700_000_000), st.sampled_from(["read", "write", "describe"])),
        min_size=1,
        max_size=40,
    ),
    cuts=st.lists(st.integers(0, 40), max_size=8),
    start=st.integers(0, 4 * NS),
)
def test_any_sequence_of_polls_takes_every_line_after_the_start_once_in_order(
    logged: list[tuple[int, str]], cuts: list[int], start: int
) -> None:
    """Lines with equal or close timestamps, identical texts, polls at any point: the lines taken
    over all polls are exactly the lines logged at or after the start, in log order."""
    stamps, moment = [], BASE
    for gap, _ in logged:
        moment += gap
        stamps.append(moment)
    records = [cri(ns, text) for ns, (_, text) in zip(stamps, logged, strict=True)]
    cursor = LogCursor(BASE + start)
    taken: list[tuple[int, str]] = []
    for cut in [*sorted(cuts), len(records)]:
        result = read(records[:cut], cursor)
        taken += result.lines
        cursor = result.cursor
    expected = [(ns, text) for ns, (_, text) in zip(stamps, logged, strict=True) if ns >= BASE + start]
    assert taken == expected


# --------------------------------------------------------------------------- restarts


def test_a_restart_reads_the_old_instances_tail_from_the_covered_cursor() -> None:
    """The status shows the restart at the next poll: the previous log from the last poll's
    covered cursor, then the new instance's log from the cursor."""
    old = [cri(BASE + 100, "a1"), cri(BASE + 200, "a2")]
    poll1 = read(old, LogCursor(BASE))
    old.append(cri(BASE + 300, "a3, after the poll"))  # then the container restarts
    new = [cri(BASE + 400, "b1"), cri(BASE + NS, "b2")]
    previous = read(old, poll1.covered)
    current = read(new, poll1.cursor)
    assert [text for _, text in poll1.lines + previous.lines + current.lines] == [
        "a1",
        "a2",
        "a3, after the poll",
        "b1",
        "b2",
    ]


def test_a_restart_seen_late_in_the_status_neither_loses_nor_repeats() -> None:
    """The API's status lags: poll 2 already reads the new instance's file under the old restart
    count. Poll 3 sees the restart and reads the previous log from poll 2's covered cursor: the old
    instance's tail arrives and nothing is taken twice."""
    old = [cri(BASE + 100, "a1")]
    poll1 = read(old, LogCursor(BASE))
    old.append(cri(BASE + 150, "a2"))
    new = [cri(BASE + 200, "b1")]
    poll2 = read(new, poll1.cursor)  # the new file, the old count
    new.append(cri(BASE + 250, "b2"))
    previous = read(old, poll2.covered)  # poll 3: the count rose
    current = read(new, poll2.cursor)
    texts = [text for _, text in poll1.lines + poll2.lines + previous.lines + current.lines]
    assert sorted(texts) == ["a1", "a2", "b1", "b2"]


# --------------------------------------------------------------------------- which logs


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("kafka-0.kafka", ServerPattern("kafka-0", "kafka")),
        ("my-cluster-kafka-*.streaming", ServerPattern("my-cluster-kafka-*", "streaming")),
        ("broker.v2-0.kafka:broker", ServerPattern("broker.v2-0", "kafka", "broker")),
        ("kafka-?.*", ServerPattern("kafka-?", "*")),
    ],
)
def test_server_pattern_parse(item: str, expected: ServerPattern) -> None:
    assert ServerPattern.parse(item) == expected


@pytest.mark.parametrize("item", ["kafka", ".kafka", "kafka-0.", "kafka-0.kafka:", ""])
def test_server_pattern_parse_refuses(item: str) -> None:
    with pytest.raises(ValueError, match=r"POD\.NAMESPACE"):
        ServerPattern.parse(item)


def pod(
    namespace: str,
    name: str,
    containers: list[str],
    *,
    statuses: list[dict[str, Any]] | None = None,
    uid: str = "",
) -> dict[str, Any]:
    running = [{"name": c, "restartCount": 0, "state": {"running": {}}} for c in containers]
    return {
        "metadata": {"namespace": namespace, "name": name, "uid": uid or f"uid-{namespace}-{name}"},
        "spec": {"containers": [{"name": c} for c in containers]},
        "status": {"containerStatuses": running if statuses is None else statuses},
    }


def test_globs_pick_pods_and_the_first_container_by_default() -> None:
    pods = [
        pod("kafka", "kafka-0", ["kafka", "metrics"]),
        pod("kafka", "kafka-1", ["kafka"]),
        pod("kafka", "zookeeper-0", ["zk"]),
        pod("other", "kafka-0", ["kafka"]),
    ]
    targets = log_targets([ServerPattern.parse("kafka-*.kafka")], pods)
    assert [(t.namespace, t.pod, t.container) for t in targets] == [
        ("kafka", "kafka-0", "kafka"),
        ("kafka", "kafka-1", "kafka"),
    ]
    everywhere = log_targets([ServerPattern.parse("kafka-0.*")], pods)
    assert [(t.namespace, t.pod) for t in everywhere] == [("kafka", "kafka-0"), ("other", "kafka-0")]
    assert ServerPattern.parse("kafka-0.*").any_namespace
    assert not ServerPattern.parse("kafka-*.kafka").any_namespace


def test_a_named_container_and_patterns_that_overlap_give_one_target_per_log() -> None:
    pods = [pod("kafka", "kafka-0", ["istio-proxy", "kafka"])]
    patterns = [ServerPattern.parse("kafka-0.kafka:kafka"), ServerPattern.parse("kafka-*.kafka:kafka")]
    assert log_targets(patterns, pods) == [LogTarget("kafka", "kafka-0", "uid-kafka-kafka-0", "kafka")]


def test_restarts_and_when_the_previous_instance_ended_come_from_the_status() -> None:
    statuses = [
        {
            "name": "kafka",
            "restartCount": 2,
            "state": {"running": {"startedAt": "2024-05-01T12:00:05Z"}},
            "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T12:00:04Z"}},
        }
    ]
    [target] = log_targets(
        [ServerPattern.parse("kafka-0.kafka")], [pod("kafka", "kafka-0", ["kafka"], statuses=statuses)]
    )
    assert (target.restarts, target.last_finished) == (2, BASE / NS + 4)


def test_a_container_that_never_ran_has_no_log_yet_but_an_unknown_name_is_kept() -> None:
    waiting = [{"name": "kafka", "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]
    pods = [
        pod("kafka", "kafka-0", ["kafka"], statuses=waiting),
        pod("kafka", "kafka-1", ["kafka"], statuses=[]),
    ]
    assert log_targets([ServerPattern.parse("kafka-*.kafka")], pods) == []
    # A misconfigured container name is read, so the API's refusal is logged and counted.
    [target] = log_targets([ServerPattern.parse("kafka-1.kafka:broker")], pods)
    assert target.container == "broker"


def test_a_recreated_pod_is_a_new_log() -> None:
    patterns = [ServerPattern.parse("kafka-0.kafka")]
    before = log_targets(patterns, [pod("kafka", "kafka-0", ["kafka"], uid="u1")])
    after = log_targets(patterns, [pod("kafka", "kafka-0", ["kafka"], uid="u2")])
    assert (before[0].uid, after[0].uid) == ("u1", "u2")
