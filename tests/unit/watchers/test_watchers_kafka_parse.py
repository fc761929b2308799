"""agent.watchers.kafka: Kafka authorizer audit lines → TopicAccess | LineKind.

Fixtures: every line of tests/data/kafka/*.log against the hand-written tests/data/kafka/expected.json
(ZooKeeper-era AclAuthorizer, SimpleAclAuthorizer 1.x/2.x, KRaft StandardAuthorizer 3.x/4.x, Strimzi's
Log4j1 and Log4j2 layouts, Kubernetes timestamp prefixes, malformed lines, ordinary broker lines).
Then the operation table, and hypothesis: arbitrary text and mutations of the real lines never raise
and always give one of the declared results.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.mapper.api.queries import kafka_operation
from agent.watchers.kafka import (
    ACL_OPERATIONS,
    LineKind,
    TopicAccess,
    classify_authorizer_line,
    parse_authorizer_line,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "kafka"
EXPECTED: dict[str, dict[str, Any]] = json.loads((DATA / "expected.json").read_text(encoding="utf-8"))
HYPOTHESIS = settings(
    max_examples=3_000,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def fixture_lines(name: str) -> list[str]:
    # newline="" keeps each line's own ending, as a log reader hands it over.
    with (DATA / name).open(encoding="utf-8", newline="") as handle:
        return handle.readlines()


def expected_result(spec: object) -> TopicAccess | LineKind:
    if isinstance(spec, str):
        return LineKind(spec)
    assert isinstance(spec, dict)
    return TopicAccess(**spec)


def all_cases() -> list[tuple[str, int, str, TopicAccess | LineKind]]:
    cases = []
    for name, entry in EXPECTED.items():
        lines = fixture_lines(name)
        listed = {int(number) for number in entry["lines"]}
        assert listed <= set(range(1, len(lines) + 1)), f"{name}: expectation for a line it lacks"
        for number, line in enumerate(lines, start=1):
            spec = entry["lines"].get(str(number), entry.get("default"))
            assert spec is not None, f"{name}:{number} has no expectation"
            cases.append((name, number, line, expected_result(spec)))
    return cases


CASES = all_cases()
REAL_LINES = [line for _, _, line, _ in CASES]


def test_every_fixture_file_has_expectations() -> None:
    assert sorted(EXPECTED) == sorted(path.name for path in DATA.glob("*.log"))


@pytest.mark.parametrize(("name", "number", "line", "expected"), CASES, ids=[f"{c[0]}:{c[1]}" for c in CASES])
def test_fixture_line(name: str, number: int, line: str, expected: TopicAccess | LineKind) -> None:
    assert classify_authorizer_line(line) == expected
    parsed = parse_authorizer_line(line)
    assert parsed == (expected if isinstance(expected, TopicAccess) else None)


def test_fixtures_cover_every_kind_and_shape() -> None:
    results = [expected for *_, expected in CASES]
    accesses = [r for r in results if isinstance(r, TopicAccess)]
    assert {r for r in results if isinstance(r, LineKind)} == set(LineKind)
    assert {a.allowed for a in accesses} == {True, False}
    topic_operations = {
        "Read",
        "Write",
        "Create",
        "Delete",
        "Alter",
        "Describe",
        "DescribeConfigs",
        "AlterConfigs",
    }
    assert {a.operation for a in accesses} == topic_operations
    assert any(":" in a.host for a in accesses)  # IPv6
    assert any("\\," in a.principal and " " in a.principal for a in accesses)  # mTLS DN
    assert any("." in a.topic and "-" in a.topic and "_" in a.topic for a in accesses)


@pytest.mark.parametrize("ending", ["", "\n", "\r\n", "\r"])
def test_line_endings_do_not_matter(ending: str) -> None:
    for _, _, line, expected in CASES:
        assert classify_authorizer_line(line.rstrip("\r\n") + ending) == expected


def test_kubernetes_timestamp_prefix_does_not_matter() -> None:
    for _, _, line, expected in CASES:
        assert classify_authorizer_line("2024-05-01T10:00:00.123456789Z " + line) == expected


AUDIT = (
    "[2023-03-12 13:51:55,904] DEBUG Principal = User:alice is {result} {word} = {operation} "
    "from host = 10.244.0.27 on resource = Topic:{pattern}orders for request = Fetch "
    "with resourceRefCount = 1 (kafka.authorizer.logger)"
)
# Canonical name (SecurityUtils.operationName, what AclAuthorizer logs) → the AclOperation enum
# constant (what KRaft's StandardAuthorizer logs), from org.apache.kafka.common.acl.AclOperation.
ACL_OPERATION_ENUM = {
    "Read": "READ",
    "Write": "WRITE",
    "Create": "CREATE",
    "Delete": "DELETE",
    "Alter": "ALTER",
    "Describe": "DESCRIBE",
    "ClusterAction": "CLUSTER_ACTION",
    "DescribeConfigs": "DESCRIBE_CONFIGS",
    "AlterConfigs": "ALTER_CONFIGS",
    "IdempotentWrite": "IDEMPOTENT_WRITE",
    "All": "ALL",
}


@pytest.mark.parametrize(("canonical", "enum_name"), sorted(ACL_OPERATION_ENUM.items()))
def test_both_spellings_of_every_operation_normalise(canonical: str, enum_name: str) -> None:
    expected = TopicAccess("User:alice", "10.244.0.27", canonical, "orders", True)
    for word, operation in (("Operation", canonical), ("operation", enum_name)):
        line = AUDIT.format(result="Allowed", word=word, operation=operation, pattern="LITERAL:")
        assert parse_authorizer_line(line) == expected


def test_every_acl_operation_is_a_kafka_operation_of_the_mappers_schema() -> None:
    assert sorted(ACL_OPERATIONS) == sorted(ACL_OPERATION_ENUM)
    assert {op: kafka_operation(op) for op in ACL_OPERATIONS} == {
        "Read": "CONSUME",
        "Write": "PRODUCE",
        "Describe": "DESCRIBE",
        "Create": "CREATE",
        "Alter": "ALTER",
        "Delete": "DELETE",
        "DescribeConfigs": "DESCRIBE_CONFIGS",
        "AlterConfigs": "ALTER_CONFIGS",
        "IdempotentWrite": "IDEMPOTENT_WRITE",
        "ClusterAction": "CLUSTER_ACTION",
        "All": "ALL",
    }


@pytest.mark.parametrize(
    ("pattern", "expected"), [("PREFIXED:", "PREFIXED"), ("LITERAL:", "LITERAL"), ("", "LITERAL")]
)
def test_pattern_type(pattern: str, expected: str) -> None:
    line = AUDIT.format(result="Denied", word="Operation", operation="Read", pattern=pattern)
    access = parse_authorizer_line(line)
    assert access is not None
    assert (access.pattern_type, access.allowed) == (expected, False)


@pytest.mark.parametrize("operation", ["read", "Frobnicate", "CreateTokens", "TWO_PHASE_COMMIT"])
def test_operations_that_are_no_topic_operation_are_unparsed(operation: str) -> None:
    line = AUDIT.format(result="Allowed", word="Operation", operation=operation, pattern="LITERAL:")
    assert classify_authorizer_line(line) is LineKind.UNPARSED


def test_principal_longer_than_the_bound_is_unparsed() -> None:
    line = AUDIT.format(result="Allowed", word="Operation", operation="Read", pattern="LITERAL:")
    assert classify_authorizer_line(line.replace("User:alice", "User:" + "a" * 1019)) == TopicAccess(
        "User:" + "a" * 1019, "10.244.0.27", "Read", "orders", True
    )
    assert classify_authorizer_line(line.replace("User:alice", "User:" + "a" * 1020)) is LineKind.UNPARSED


def test_results_stay_right_across_memo_evictions() -> None:
    # More distinct accesses and hosts than the memo tables hold, twice over: each line must still
    # give its own values, and an invalid host must not be remembered as valid or the reverse.
    for round_ in range(2):
        for n in range(6_000):
            host = f"10.{n % 7}.{n // 256 % 256}.{n % 256}"
            line = (
                f"[x] DEBUG Principal = User:u{n} is Allowed Operation = Write from host = {host} "
                f"on resource = Topic:LITERAL:t{n}"
            )
            expected = TopicAccess(f"User:u{n}", host, "Write", f"t{n}", True)
            assert parse_authorizer_line(line) == expected, round_
            bad = line.replace(f"host = {host}", f"host = 10.{n % 7}.{n // 256 % 256}.{256 + n % 256}")
            assert classify_authorizer_line(bad) is LineKind.UNPARSED, round_


def assert_well_typed(line: str) -> None:
    result = classify_authorizer_line(line)
    assert isinstance(result, TopicAccess | LineKind)
    parsed = parse_authorizer_line(line)
    assert parsed == (result if isinstance(result, TopicAccess) else None)
    if isinstance(result, TopicAccess):
        assert result.operation in ACL_OPERATIONS
        assert result.pattern_type in {"LITERAL", "PREFIXED"}
        assert result.topic and result.principal and result.host


@HYPOTHESIS
@given(st.text())
def test_arbitrary_text_never_raises(line: str) -> None:
    assert_well_typed(line)


AUDIT_WORDS = [
    "Principal = ",
    "User:CN=a,O=b\\, c",
    " is Allowed ",
    " is Denied ",
    "Operation = ",
    "operation = ",
    "Read",
    "DESCRIBE_CONFIGS",
    " from host = ",
    "10.244.0.27",
    "fd00:0:0:0:0:0:0:1%eth0",
    " on resource = ",
    "Topic:",
    "Group:",
    "LITERAL:",
    "UNKNOWN:",
    "orders.v1-eu_west",
    " for request = Fetch",
    " for resource type = TOPIC",
    " (kafka.authorizer.logger)",
    " ",
    "\r\n",
]


@HYPOTHESIS
@given(st.lists(st.sampled_from(AUDIT_WORDS) | st.text(max_size=4), max_size=30).map("".join))
def test_audit_vocabulary_soup_never_raises(line: str) -> None:
    assert_well_typed(line)


JUNK = st.text(max_size=12) | st.sampled_from(
    [" is Allowed", " is Denied", "Principal = ", ":", " ", "%", "\x00", "\ud800", "é", "\u0661", "\r", "::"]
)


@st.composite
def mutated_lines(draw: st.DrawFn) -> str:
    line: str = draw(st.sampled_from(REAL_LINES))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["slice", "insert", "delete", "swapcase", "replace", "upper", "lower"]))
        a = draw(st.integers(0, len(line)))
        b = draw(st.integers(a, len(line)))
        if kind == "slice":
            line = line[a:b]
        elif kind == "insert":
            line = line[:a] + draw(JUNK) + line[a:]
        elif kind == "delete":
            line = line[:a] + line[b:]
        elif kind == "swapcase":
            line = line[:a] + line[a:b].swapcase() + line[b:]
        elif kind == "replace":
            line = line[:a] + draw(st.characters()) + line[a + 1 :]
        elif kind == "upper":
            line = line.upper()
        else:
            line = line.lower()
    return line


@HYPOTHESIS
@given(mutated_lines())
def test_mutated_real_lines_never_raise(line: str) -> None:
    assert_well_typed(line)


@settings(HYPOTHESIS, max_examples=500)  # up to 20 lines per example: as many lines as the others
@given(st.lists(mutated_lines(), min_size=1, max_size=20))
def test_memo_never_changes_a_result(lines: list[str]) -> None:
    # The memo keys on the message up to " for request = ": a warm memo (filled by the real lines
    # and the other mutants) must give what an empty one gives, for every mutant.
    for line in REAL_LINES:
        classify_authorizer_line(line)
    warm = [classify_authorizer_line(line) for line in lines]
    cold = [classify_authorizer_line(line, memo={}) for line in lines]
    assert warm == cold


@HYPOTHESIS
@given(st.sampled_from(REAL_LINES), st.integers(1, 2_000))
def test_huge_lines_never_raise(line: str, repeat: int) -> None:
    assert_well_typed(line.rstrip("\n") * repeat)


def test_huge_garbage_line_costs_linear_time() -> None:
    # 1.2 MB of audit fragments that never complete: bounded repeats keep this well under a second
    # (unbounded, lines a fifth this size took seconds). Generous deadline for a loaded CI machine.
    line = "Principal = x is Allowed Operation = Read from host = " * 20_000
    started = time.perf_counter()
    assert classify_authorizer_line(line) is LineKind.UNPARSED
    assert time.perf_counter() - started < 5.0
