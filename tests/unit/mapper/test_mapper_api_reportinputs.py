"""The fast decoding of the sniffer's reports (agent.mapper.api.reportinputs) against graphql-core.

The claim the fast path rests on: whenever it accepts a variable value, graphql-core accepts it too
and the report's converter makes the same observations and skips the same entries from both; and
it refuses (hands to graphql-core) every document it is not certain of. The values are generated,
valid and broken alike, so a difference in one corner of GraphQL's input coercion shows here.
"""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
import pytest
from graphql import OperationDefinitionNode, parse
from graphql.execution.values import get_variable_values
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.mapper.api import build_schema, mutations
from agent.mapper.api.app import parse_document
from agent.mapper.api.reportinputs import FAST_REPORTS, ReportInputs, envelope

SCHEMA = build_schema()
INPUTS = ReportInputs(SCHEMA, parse_document)
TYPES = {
    "reportCaptureResults": ("CaptureResults", mutations.capture_results),
    "reportTCPCaptureResults": ("CaptureTCPResults", mutations.tcp_results),
    "reportSocketScanResults": ("SocketScanResults", mutations.socket_results),
}
SEEN = "2024-06-01T12:00:00.123456789Z"


def sniffer_query(name: str) -> str:
    """The document as agent.sniffer.reports writes it."""
    return f"mutation {name}($results: {TYPES[name][0]}!) {{ {name}(results: $results) }}"


def graphql_value(query: str, variables: Any) -> tuple[Any, bool]:
    """(the coerced ``results``, whether graphql-core accepted the variables)."""
    operation = parse(query).definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    coerced = get_variable_values(SCHEMA, operation.variable_definitions or (), variables)
    if isinstance(coerced, list):  # errors
        return None, False
    return coerced.coerced["results"], True


def fast_value(query: str, variables: Any) -> Any:
    request = envelope(json.dumps({"query": query, "variables": variables}).encode())
    assert request is not None
    match = INPUTS.match(request.query, request.operationName)
    assert match is not None
    return INPUTS.variable(match, request.variables)


def same_conversion(name: str, ours: Any, theirs: Any) -> None:
    convert = TYPES[name][1]
    a, b = convert(ours), convert(theirs)
    assert a.observations == b.observations
    assert a.skipped == b.skipped
    assert a.first == b.first


# --------------------------------------------------------------------------- generated values

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**33), max_value=2**33),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=8),
    st.sampled_from(
        ["10.0.0.1", "::1", "api.example.com", SEEN, "2024-13-01T00:00:00Z", "1999-01-01T00:00:00Z"]
    ),
)
FIELD_VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3))
DESTINATION_FIELDS = (
    "destination",
    "destinationIP",
    "destinationPort",
    "TTL",
    "lastSeen",
    "srcPort",
    "dnsServerIP",
    "cnames",
    "clientPodUid",
    "clientPod",
)


@st.composite
def destinations(draw: st.DrawFn) -> dict[str, Any]:
    """A mostly valid destination, with some fields absent, null, of the wrong type, or unknown."""
    base: dict[str, Any] = {
        "destination": draw(st.sampled_from(["api.example.com", "10.0.0.9", "", "x" * 300])),
        "destinationIP": draw(st.sampled_from(["203.0.113.5", "10.0.0.9", "nope", None])),
        "destinationPort": draw(st.sampled_from([80, 443, 70000, -1, None])),
        "TTL": draw(st.sampled_from([30, 0, None])),
        "lastSeen": draw(st.sampled_from([SEEN, "2024-13-01T00:00:00Z", "2024-06-01T12:00:01+02:00"])),
        "srcPort": draw(st.sampled_from([40000, 0, 65536, None])),
        "cnames": draw(st.sampled_from([None, [], ["a.example.com"]])),
        "clientPodUid": draw(st.sampled_from([None, "", "uid-1"])),
        "clientPod": draw(st.sampled_from([None, "shop/cart-1"])),
    }
    for name in draw(st.sets(st.sampled_from(DESTINATION_FIELDS), max_size=2)):
        base.pop(name, None)  # absent
    for name in draw(st.sets(st.sampled_from(DESTINATION_FIELDS), max_size=1)):
        base[name] = draw(FIELD_VALUES)  # any value, right type or not
    if draw(st.integers(0, 9)) == 0:
        base["unknownField"] = 1
    return base


@st.composite
def results(draw: st.DrawFn) -> Any:
    sources = [
        {
            "srcIp": draw(st.sampled_from(["10.1.0.1", "10.1.0.2", "fe80::1", "not-an-ip"])),
            "srcHostname": draw(st.sampled_from(["", "cart-1", None])),
            "destinations": draw(st.lists(destinations(), max_size=4)),
        }
        for _ in range(draw(st.integers(0, 3)))
    ]
    value: dict[str, Any] = {"results": sources}
    if draw(st.booleans()):
        value["node"] = draw(st.sampled_from(["node-1", None, "", 5]))
    return draw(
        st.sampled_from([value, value, value, sources, None, {"results": sources[0] if sources else 1}])
    )


@pytest.mark.parametrize("name", FAST_REPORTS)
@settings(max_examples=300, deadline=None)
@given(value=results())
def test_what_the_fast_path_accepts_graphql_accepts_and_converts_alike(name: str, value: Any) -> None:
    query = sniffer_query(name)
    theirs, accepted = graphql_value(query, {"results": value})
    ours = fast_value(query, {"results": value})
    if ours is not None:
        assert accepted, f"the fast path took what graphql-core refuses: {value!r}"
        same_conversion(name, ours, theirs)


@pytest.mark.parametrize("name", FAST_REPORTS)
def test_the_sniffers_own_reports_take_the_fast_path(name: str) -> None:
    value = {
        "results": [
            {
                "srcIp": "10.1.0.1",
                "srcHostname": "",
                "destinations": [
                    {
                        "destination": "api.example.com",
                        "destinationIP": "203.0.113.5",
                        "TTL": 30,
                        "lastSeen": SEEN,
                    },
                    {"destination": "10.96.0.3", "destinationPort": 443, "srcPort": 40001, "lastSeen": SEEN},
                    {"destination": "10.96.0.4", "destinationPort": 80, "lastSeen": "1999-12-31T23:59:59Z"},
                ],
            }
        ],
        "node": "node-1",
    }
    ours = fast_value(sniffer_query(name), {"results": value})
    assert ours is not None
    theirs, accepted = graphql_value(sniffer_query(name), {"results": value})
    assert accepted
    same_conversion(name, ours, theirs)
    assert math.isnan(
        ours["results"][0]["destinations"][2]["lastSeen"]
    )  # a bad time: NaN, as the scalar gives


@pytest.mark.parametrize(
    ("query", "operation"),
    [
        ("mutation M($r: CaptureResults!) { reportCaptureResults(results: $r) @include(if: true) }", None),
        ("mutation M($r: CaptureResults!) { a: reportCaptureResults(results: $r) b: health }", None),
        ("mutation M($r: CaptureResults!) { reportCaptureResults(results: $r) }", "Other"),
        ("mutation M($r: CaptureResults! = {results: []}) { reportCaptureResults(results: $r) }", None),
        ("mutation M($r: CaptureResults) { reportCaptureResults(results: $r) }", None),
        ("mutation M($r: CaptureTCPResults!) { reportCaptureResults(results: $r) }", None),
        ("mutation { reportCaptureResults(results: {results: []}) }", None),
        (
            "mutation M($r: CaptureResults!) { ...F }"
            " fragment F on Mutation { reportCaptureResults(results: $r) }",
            None,
        ),
        ("mutation M($r: CaptureResults!) { reportCaptureResults(results: $r) } query Q { health }", None),
        ("query Q { health }", None),
        ("mutation M($r: KafkaMapperResults!) { reportKafkaMapperResults(results: $r) }", None),
        ("mutation M($r: CaptureResults!) { reportCaptureResults(results: $r", None),
    ],
)
def test_documents_it_is_not_certain_of_go_to_graphql_core(query: str, operation: str | None) -> None:
    assert INPUTS.match(query, operation) is None


def test_an_alias_and_a_named_operation_keep_their_meaning() -> None:
    match = INPUTS.match("mutation M($x: CaptureResults!) { sent: reportCaptureResults(results: $x) }", "M")
    assert match is not None
    assert (match.field, match.key, match.variable) == ("reportCaptureResults", "sent", "x")


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"[]",
        b'{"query": 5}',
        b'{"variables": {}}',
        b"\xff\xfe",
        b'{"query": "x", "variables": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    ],
)
def test_a_body_that_is_no_request_is_left_to_the_slow_path(body: bytes) -> None:
    request = envelope(body)
    if request is not None:
        match = INPUTS.match(request.query, request.operationName)
        assert match is None or INPUTS.variable(match, request.variables) is None


def test_missing_or_null_variables_are_left_to_graphql_core() -> None:
    match = INPUTS.match(sniffer_query("reportCaptureResults"), None)
    assert match is not None
    for variables in (b"null", b"{}", b'{"results": null}', b'{"other": {"results": []}}', b"[1]"):
        assert INPUTS.variable(match, msgspec.Raw(variables)) is None
