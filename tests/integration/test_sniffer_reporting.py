"""The sniffer's reporter against a real HTTP GraphQL endpoint (the recording mapper), and its
health/metrics endpoint over HTTP: delivery with the token, a rejected token, a mapper outage
with nothing lost, injected 5xx and GraphQL errors."""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable, Iterator

import pytest
import requests

from agent.mapperclient import HttpMapperClient
from agent.model import DnsAnswer, SocketConnection, TcpConnection
from agent.sniffer.health import HealthServer
from agent.sniffer.metrics import CONTENT_TYPE, SnifferMetrics
from agent.sniffer.reporter import PairCollector, Reporter
from tests.support.recording_mapper import Pair, RecordingMapper

TOKEN = "agent-token-0f3c9a"
Observation = DnsAnswer | TcpConnection | SocketConnection


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def expected_pair(observation: Observation) -> tuple[str, Pair]:
    if isinstance(observation, DnsAnswer):
        return "reportCaptureResults", (observation.client_ip, observation.qname, None)
    field = "reportTCPCaptureResults" if isinstance(observation, TcpConnection) else "reportSocketScanResults"
    return field, (observation.client_ip, observation.server_ip, observation.server_port)


def expected(observations: list[Observation]) -> dict[str, set[Pair]]:
    result: dict[str, set[Pair]] = {}
    for observation in observations:
        field, pair = expected_pair(observation)
        result.setdefault(field, set()).add(pair)
    return result


def observations(round_: int, count: int) -> list[Observation]:
    """``count`` distinct observations of all three kinds for one round of adding."""
    now = time.time()
    made: list[Observation] = []
    for i in range(count):
        client = f"10.244.{round_}.{i + 1}"
        kind = i % 3
        if kind == 0:
            made.append(
                DnsAnswer(
                    client,
                    5353,
                    "10.96.0.10",
                    f"svc{i}.r{round_}.svc.cluster.local",
                    ("10.96.1.1",),
                    now,
                    ttl=5,
                )
            )
        elif kind == 1:
            made.append(TcpConnection(client, 40000 + i, "10.244.9.9", 8000 + i, now))
        else:
            made.append(SocketConnection(client, 50000 + i, "10.244.9.8", 7000 + i, now, f"pod-{round_}-{i}"))
    return made


def more_failed_cycles(reporter: Reporter, before: int) -> Callable[[], bool]:
    return lambda: reporter.failed_cycles > before


@pytest.fixture
def mapper() -> Iterator[RecordingMapper]:
    with RecordingMapper(token=TOKEN) as recording:
        yield recording


@pytest.fixture
def metrics() -> SnifferMetrics:
    return SnifferMetrics()


@pytest.fixture
def collector(metrics: SnifferMetrics) -> PairCollector:
    return PairCollector(max_pairs=1_000, metrics=metrics)


def make_reporter(
    mapper: RecordingMapper, collector: PairCollector, metrics: SnifferMetrics, token: str = TOKEN
) -> Reporter:
    client = HttpMapperClient(mapper.url, token, timeout=2.0)
    return Reporter(
        collector, client, 0.05, metrics=metrics, attempts=2, backoff_initial=0.01, backoff_max=0.2
    )


@pytest.fixture
def reporter(
    mapper: RecordingMapper, collector: PairCollector, metrics: SnifferMetrics
) -> Iterator[Reporter]:
    running = make_reporter(mapper, collector, metrics)
    running.start()
    yield running
    running.stop(timeout=5)


def test_pairs_arrive_with_the_token(
    mapper: RecordingMapper,
    collector: PairCollector,
    reporter: Reporter,
    metrics: SnifferMetrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    added = observations(1, 9)
    for observation in added:
        collector.add(observation)
    wait_until(lambda: mapper.pairs_by_mutation() == expected(added), "all pairs at the mapper")
    dns_calls = [c for c in mapper.recorded() if c.field == "reportCaptureResults"]
    destination = dns_calls[0].variables["results"]["results"][0]["destinations"][0]
    assert destination["destinationIP"] == "10.96.1.1" and destination["TTL"] == 5
    wait_until(lambda: metrics.reports_sent.value >= 3, "three mutations counted")  # counted after the reply
    assert metrics.report_failures.value == 0
    assert TOKEN not in caplog.text


def test_a_rejected_token_is_logged_each_time_not_retried_and_the_pairs_are_kept(
    mapper: RecordingMapper,
    collector: PairCollector,
    metrics: SnifferMetrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-token-77e1"
    reporter = make_reporter(mapper, collector, metrics, token=wrong)
    reporter.start()
    try:
        added = observations(2, 3)
        for observation in added:
            collector.add(observation)
        wait_until(lambda: mapper.count("unauthorized") >= 3, "three rejected reports")
        assert mapper.recorded() == []
        assert reporter.is_alive()
        # The token is rotated on the mapper's side: the kept pairs arrive after all.
        mapper.token = wrong
        wait_until(lambda: mapper.pairs_by_mutation() == expected(added), "the kept pairs at the mapper")
    finally:
        reporter.stop(timeout=5)
    rejected = [r for r in caplog.records if r.levelno == logging.ERROR and "report rejected" in r.message]
    assert len(rejected) == mapper.count("unauthorized")  # one line per 401: never retried in a cycle
    assert "HTTP 401" in rejected[0].message
    assert metrics.report_failures.value == mapper.count("unauthorized")
    assert wrong not in caplog.text and TOKEN not in caplog.text


def test_outage_loses_nothing(
    mapper: RecordingMapper,
    collector: PairCollector,
    reporter: Reporter,
    metrics: SnifferMetrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    added = observations(10, 6)
    for observation in added:
        collector.add(observation)
    wait_until(lambda: mapper.pairs_by_mutation() == expected(added), "the first pairs")

    port = mapper.port
    mapper.stop()
    for round_ in range(11, 16):  # keep adding while the reporter keeps failing
        failed_cycles = reporter.failed_cycles
        batch = observations(round_, 6)
        for observation in batch:
            collector.add(observation)
        for observation in added[:3]:  # and newer sightings of pairs already delivered
            collector.add(dataclasses.replace(observation, seen_at=time.time()))
        added += batch
        wait_until(more_failed_cycles(reporter, failed_cycles), f"a failed report cycle in round {round_}")
        assert reporter.is_alive()
    assert reporter.failed_cycles >= 5
    assert metrics.report_failures.value >= 10  # two attempts per cycle
    assert len(collector) > 0  # kept for the mapper

    mapper.start()
    assert mapper.port == port
    late = observations(20, 6)
    for observation in late:
        collector.add(observation)
    added += late
    wait_until(lambda: mapper.pairs_by_mutation() == expected(added), "every pair after the outage")
    assert mapper.pairs_by_mutation() == expected(added)
    assert collector.dropped == 0 and metrics.pairs_dropped.value == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "report failed" in r.message]
    assert len(warnings) == 1  # one WARNING when the outage starts, not one per attempt
    wait_until(lambda: reporter.failed_cycles == 0, "the reporter to see the mapper back")
    assert any("accepts reports again" in r.message for r in caplog.records)


@pytest.mark.parametrize("failure", ["http-500", "graphql-errors"])
def test_transient_failures_are_retried(
    mapper: RecordingMapper,
    collector: PairCollector,
    reporter: Reporter,
    metrics: SnifferMetrics,
    failure: str,
) -> None:
    if failure == "http-500":
        mapper.fail_with(500)
    else:
        mapper.graphql_errors = True
    added = observations(30, 3)
    for observation in added:
        collector.add(observation)
    counter = "failed" if failure == "http-500" else "graphql_errors"
    wait_until(lambda: mapper.count(counter) >= 3, "three failed attempts")
    mapper.fail_with(None)
    mapper.graphql_errors = False
    wait_until(lambda: mapper.pairs_by_mutation() == expected(added), "the pairs after the failures")
    assert metrics.report_failures.value >= 3


def test_stop_flushes_what_is_pending(
    mapper: RecordingMapper, collector: PairCollector, metrics: SnifferMetrics
) -> None:
    client = HttpMapperClient(mapper.url, TOKEN, timeout=2.0)
    reporter = Reporter(collector, client, 60.0, metrics=metrics)  # would not report for a minute
    reporter.start()
    added = observations(40, 3)
    for observation in added:
        collector.add(observation)
    reporter.stop(timeout=5)
    assert not reporter.is_alive()
    assert mapper.pairs_by_mutation() == expected(added)


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_healthz_and_metrics_over_http(
    mapper: RecordingMapper, collector: PairCollector, metrics: SnifferMetrics
) -> None:
    reporter = make_reporter(mapper, collector, metrics)
    reporter.start()
    with HealthServer("127.0.0.1:0", metrics, reporter.is_alive) as health:
        health_url = health.url
        response = requests.get(f"{health_url}/healthz", timeout=5)
        assert (response.status_code, response.text) == (200, "ok\n")

        metrics.packets_seen.inc(7)
        metrics.socket_scans.inc()
        added = observations(50, 3)
        for observation in added:
            collector.add(observation)
        wait_until(lambda: mapper.pairs_by_mutation() == expected(added), "the pairs at the mapper")
        wait_until(lambda: metrics.reports_sent.value >= 3, "three mutations counted")

        response = requests.get(f"{health_url}/metrics", timeout=5)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == CONTENT_TYPE
        text = response.text
        for line in text.splitlines():  # Prometheus text format 0.0.4, line by line
            assert re.fullmatch(r"# (HELP|TYPE) \w+ .+|[a-zA-Z_:][\w:]* -?[\d.e+-]+|NaN|[+-]Inf", line), line
        assert _metric(text, "network_mapper_sniffer_packets_seen_total") == 7
        assert _metric(text, "network_mapper_sniffer_socket_scans_total") == 1
        assert _metric(text, "network_mapper_sniffer_reports_sent_total") >= 3
        assert _metric(text, "network_mapper_sniffer_pairs_pending") == 0
        assert _metric(text, "network_mapper_sniffer_pairs_dropped_total") == 0
        assert "# TYPE network_mapper_sniffer_pairs_pending gauge" in text
        assert "# TYPE network_mapper_sniffer_report_failures_total counter" in text

        reporter.stop(timeout=5)
        response = requests.get(f"{health_url}/healthz", timeout=5)
        assert (response.status_code, response.text) == (503, "unhealthy\n")
        assert requests.get(f"{health_url}/nope", timeout=5).status_code == 404
