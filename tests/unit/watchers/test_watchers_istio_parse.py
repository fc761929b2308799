"""agent.watchers.istio: sidecar scrape text → istio_requests_total series → requests → mutations.

Fixture: tests/data/istio/istio-1.5-sidecar-stats.txt, a real Istio 1.5 sidecar scrape (see its
README). Series with request_path / request_method are built from its label order with the two
tag-override labels appended, as Envoy appends extra dimensions. Hypothesis: junk texts and
mutations of the real scrape give a Scrape or ScrapeError, never anything else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from agent.pending import Batch
from agent.watchers.istio import (
    RESULTS_PER_MUTATION,
    RequestKey,
    RequestSeen,
    Scrape,
    ScrapeError,
    Skip,
    combine,
    mutations_for,
    parse_scrape,
    request_lines,
    request_of,
)
from agent.wire import format_time

REAL = (Path(__file__).resolve().parents[2] / "data" / "istio" / "istio-1.5-sidecar-stats.txt").read_text()
HYPOTHESIS = settings(
    max_examples=2_000,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Istio's standard labels in the order Envoy prints them (from the fixture), then the overrides.
BASE = {
    "response_code": "200",
    "reporter": "destination",
    "source_workload": "frontend",
    "source_workload_namespace": "shop",
    "source_principal": "spiffe://cluster.local/ns/shop/sa/frontend",
    "source_app": "frontend",
    "source_version": "v1",
    "destination_workload": "cartservice",
    "destination_workload_namespace": "shop",
    "destination_principal": "spiffe://cluster.local/ns/shop/sa/cartservice",
    "destination_app": "cartservice",
    "destination_version": "v1",
    "destination_service": "cartservice.shop.svc.cluster.local",
    "destination_service_name": "cartservice",
    "destination_service_namespace": "shop",
    "request_protocol": "http",
    "response_flags": "-",
    "grpc_response_status": "",
    "connection_security_policy": "mutual_tls",
    "source_canonical_service": "frontend",
    "destination_canonical_service": "cartservice",
    "source_canonical_revision": "v1",
    "destination_canonical_revision": "v1",
    "request_path": "/api/orders/1234?expand=items",
    "request_method": "GET",
}


def line(value: float | str = 1, **labels: str) -> str:
    merged = {**BASE, **labels}
    return "istio_requests_total{" + ",".join(f'{k}="{v}"' for k, v in merged.items()) + f"}} {value}"


def labels(**changes: str) -> dict[str, str]:
    return {**BASE, **changes}


# --------------------------------------------------------------------------- the real scrape


def test_the_real_scrape_gives_its_seven_series_with_their_labels_and_values() -> None:
    scrape = parse_scrape(REAL)
    assert (scrape.over_cap, scrape.bad_values) == (0, 0)
    assert [s.value for s in scrape.series] == [1, 1, 2, 8, 49, 5, 1]
    first = scrape.series[0].labels
    assert first["reporter"] == "source"
    assert (first["source_workload"], first["source_workload_namespace"]) == ("mongodb-v1", "default")
    assert first["destination_service"] == "security.ubuntu.com"
    assert [s.labels["response_code"] for s in scrape.series] == [
        "304",
        "304",
        "404",
        "200",
        "200",
        "200",
        "304",
    ]
    assert len({s.id for s in scrape.series}) == 7


def test_prefilter_finds_what_the_full_parse_finds_in_the_real_scrape() -> None:
    full = [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(REAL)
        for sample in family.samples
        if sample.name == "istio_requests_total"
    ]
    assert len(request_lines(REAL)) == 7
    assert [(dict(s.labels), s.value) for s in parse_scrape(REAL).series] == full


def test_every_series_of_the_real_scrape_is_skipped_as_unknown() -> None:
    """mongodb-v1 → hosts outside the mesh: destination_workload="unknown"."""
    assert {request_of(s.labels) for s in parse_scrape(REAL).series} == {Skip.UNKNOWN}


def test_prefilter_ignores_comments_lookalike_names_and_other_families() -> None:
    text = "\n".join(
        [
            "# HELP istio_requests_total requests",
            "# TYPE istio_requests_total counter",
            line(3),
            'istio_requests_total_extra{a="b"} 9',
            'istio_request_duration_milliseconds_bucket{le="1"} 4',
            'envoy_x{name="istio_requests_total"} 1',
            "istio_requests_total 7",
        ]
    )
    lines = request_lines(text)
    assert lines == [line(3), "istio_requests_total 7"]
    assert [s.value for s in parse_scrape(text).series] == [3, 7]


def test_no_requests_yet_is_an_empty_scrape_not_an_error() -> None:
    assert parse_scrape("# TYPE envoy_server_live gauge\nenvoy_server_live{} 1\n") == Scrape(())
    assert parse_scrape("") == Scrape(())


def test_same_series_same_id_across_scrapes_and_values_do_not_change_it() -> None:
    one, two = parse_scrape(line(1)), parse_scrape(line(99))
    assert one.series[0].id == two.series[0].id
    assert parse_scrape(line(1, request_method="POST")).series[0].id != one.series[0].id


@pytest.mark.parametrize(
    "text",
    [
        "istio_requests_total{reporter=source} 1",  # unquoted value
        'istio_requests_total{reporter="source"}',  # no value
        'istio_requests_total{reporter="source"} one',
        'istio_requests_total{reporter="source",reporter="x"} 1',  # duplicate label
        'istio_requests_total{reporter="source" 1',
    ],
)
def test_broken_request_lines_raise_scrape_error(text: str) -> None:
    with pytest.raises(ScrapeError):
        parse_scrape(REAL + text + "\n")


def test_values_that_no_counter_has_are_counted_and_left_out() -> None:
    text = "\n".join(
        [line("NaN"), line(-1, request_method="PUT"), line("+Inf", request_method="POST"), line(5)]
    )
    scrape = parse_scrape(text)
    assert scrape.bad_values == 3
    assert [s.value for s in scrape.series] == [5]


# --------------------------------------------------------------------------- the series cap


def test_the_cap_keeps_the_same_series_whatever_their_order_and_counts_the_rest() -> None:
    lines = [line(i, request_path=f"/p/{i}") for i in range(1, 41)]
    forward = parse_scrape("\n".join(lines), max_series=10)
    backward = parse_scrape("\n".join(reversed(lines)), max_series=10)
    assert (forward.over_cap, backward.over_cap) == (30, 30)
    assert {s.id for s in forward.series} == {s.id for s in backward.series}
    assert len(forward.series) == 10
    assert parse_scrape("\n".join(lines), max_series=40).over_cap == 0


# --------------------------------------------------------------------------- requests


def test_a_destination_series_becomes_its_request_with_principal_code_and_templated_path() -> None:
    key, principals, codes = request_of(labels())  # type: ignore[misc]
    assert key == RequestKey(
        "frontend", "shop", "cartservice", "cartservice", "shop", "/api/orders/{id}", "GET"
    )
    assert principals == {"spiffe://cluster.local/ns/shop/sa/frontend"}
    assert codes == {200}


def test_templating_off_keeps_the_path_but_still_strips_the_query() -> None:
    key, _, _ = request_of(labels(), templates=False)  # type: ignore[misc]
    assert key.path == "/api/orders/1234"


def test_paths_with_dots_stay_whole() -> None:
    key, _, _ = request_of(labels(request_path="/static/app.v2.min.js?v=3"))  # type: ignore[misc]
    assert key.path == "/static/app.v2.min.js"


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"source_workload": "unknown"}, Skip.UNKNOWN),
        ({"destination_workload": "unknown"}, Skip.UNKNOWN),
        ({"source_workload_namespace": ""}, Skip.UNKNOWN),
        ({"destination_workload_namespace": "unknown"}, Skip.UNKNOWN),
        ({"request_path": "unknown"}, Skip.NO_PATH),
        ({"request_path": ""}, Skip.NO_PATH),
        ({"request_path": "?only=query"}, Skip.NO_PATH),
        ({"request_method": "HEAD"}, Skip.METHOD),
        ({"request_method": "PROPFIND"}, Skip.METHOD),
    ],
)
def test_unusable_series_say_why(changes: dict[str, str], why: Skip) -> None:
    assert request_of(labels(**changes)) is why


def test_a_series_without_the_path_label_is_no_path() -> None:
    without = labels()
    del without["request_path"]
    assert request_of(without) is Skip.NO_PATH


def test_source_reports_are_duplicates_only_when_the_destination_has_a_scraped_sidecar() -> None:
    source = labels(reporter="source")
    assert request_of(source, meshed={("shop", "cartservice")}) is Skip.DUPLICATE
    assert not isinstance(request_of(source, meshed={("other", "cartservice")}), Skip)
    assert not isinstance(request_of(labels(), meshed={("shop", "cartservice")}), Skip)


def test_unknown_principal_service_and_odd_codes_are_left_out_of_the_request() -> None:
    found = request_of(
        labels(
            source_principal="unknown",
            destination_service_name="unknown",
            response_code="0",
            request_method="",
        )
    )
    key, principals, codes = found  # type: ignore[misc]
    assert (key.destination_service, key.method, principals, codes) == ("", "", frozenset(), frozenset())


def test_lower_case_methods_are_taken_upper_cased() -> None:
    key, _, _ = request_of(labels(request_method="post"))  # type: ignore[misc]
    assert key.method == "POST"


def test_combine_keeps_the_newest_time_and_unions_principals_and_codes() -> None:
    a = RequestSeen(10.0, frozenset({"p1"}), frozenset({200}))
    b = RequestSeen(5.0, frozenset({"p2"}), frozenset({500}))
    assert combine(a, b) == RequestSeen(10.0, frozenset({"p1", "p2"}), frozenset({200, 500}))
    assert combine(b, a) == combine(a, b)
    assert combine(a, a) == a


# --------------------------------------------------------------------------- mutations


KEY = RequestKey("frontend", "shop", "cartservice", "cartservice", "shop", "/api/orders/{id}", "GET")
SEEN_AT = 1_767_225_600.25  # 2026-01-01T00:00:00.25Z


def test_a_batch_becomes_one_connection_per_principal_with_every_code() -> None:
    seen = RequestSeen(SEEN_AT, frozenset({"spiffe://b", "spiffe://a"}), frozenset({500, 200}))
    (mutation,) = mutations_for(Batch({KEY: seen}))
    assert mutation.field == "reportIstioConnectionResults"
    assert "IstioConnectionResults!" in mutation.query
    common: dict[str, Any] = {
        "srcWorkload": "frontend",
        "srcWorkloadNamespace": "shop",
        "dstWorkload": "cartservice",
        "dstServiceName": "cartservice",
        "dstWorkloadNamespace": "shop",
        "path": "/api/orders/{id}",
        "methods": ["GET"],
        "lastSeen": format_time(SEEN_AT),
        "responseCodes": [200, 500],
    }
    assert mutation.variables == {
        "results": {
            "results": [{**common, "srcPrincipal": "spiffe://a"}, {**common, "srcPrincipal": "spiffe://b"}]
        }
    }
    assert mutation.entries == {KEY: seen}


def test_no_principal_no_codes_no_method_leave_those_fields_out() -> None:
    (mutation,) = mutations_for(Batch({KEY._replace(method=""): RequestSeen(SEEN_AT)}))
    (result,) = mutation.variables["results"]["results"]
    assert "srcPrincipal" not in result and "responseCodes" not in result
    assert result["methods"] == []


def test_big_batches_are_split_and_an_empty_one_sends_nothing() -> None:
    entries = {KEY._replace(path=f"/p/{i}"): RequestSeen(SEEN_AT) for i in range(RESULTS_PER_MUTATION + 1)}
    mutations = mutations_for(Batch(entries))
    assert [len(m.entries) for m in mutations] == [RESULTS_PER_MUTATION, 1]
    assert {k for m in mutations for k in m.entries} == set(entries)
    assert mutations_for(Batch({})) == []


# --------------------------------------------------------------------------- junk


JUNK_TOKENS = st.sampled_from(
    [*'{}="\\,# \n\t0123456789.eE+-_aTYPE\r\x00é', "istio_requests_total", "istio_requests_total{"]
    + ["NaN", "+Inf", "# TYPE istio_requests_total counter\n", 'reporter="source"', "} 5\n", '__name__="x"']
)


def _outcome(text: str) -> Scrape | None:
    try:
        return parse_scrape(text, max_series=5)
    except ScrapeError:
        return None


@HYPOTHESIS
@given(st.lists(JUNK_TOKENS, max_size=40).map("".join))
def test_junk_gives_a_scrape_or_scrape_error(text: str) -> None:
    outcome = _outcome(text)
    assert outcome is None or len(outcome.series) <= 5


@HYPOTHESIS
@given(st.text(max_size=300))
def test_any_text_gives_a_scrape_or_scrape_error(text: str) -> None:
    _outcome(text)
    _outcome("istio_requests_total" + text)


@HYPOTHESIS
@given(st.integers(0, len(REAL) - 1), st.integers(1, 40), st.text(max_size=20))
def test_cut_and_spliced_real_scrapes_give_a_scrape_or_scrape_error(at: int, cut: int, insert: str) -> None:
    outcome = _outcome(REAL[:at] + insert + REAL[at + cut :])
    for series in outcome.series if outcome is not None else ():
        assert series.value >= 0
        request_of(series.labels)  # whatever the labels, a request or a Skip
