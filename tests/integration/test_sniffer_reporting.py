"""The sniffer's reporter against the real mapper API app: in process through its ASGI app
(delivery with the token and every field the sniffer parsed, a rejected token, injected 5xx, a
busy mapper, the flush at stop), and over real HTTP under uvicorn where the test is about HTTP
(a mapper outage with nothing lost); and the sniffer's health/metrics endpoint over HTTP."""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable, Iterator

import pytest
import requests

from agent.health import HealthServer
from agent.mapperclient import HttpMapperClient, Transport
from agent.metrics import CONTENT_TYPE
from agent.model import DnsAnswer, Observation, SocketConnection, TcpConnection
from agent.reporter import Reporter
from agent.sniffer.metrics import SnifferMetrics
from agent.sniffer.pairs import PairCollector, PairKey, Seen
from agent.sniffer.reports import mutations_for
from agent.wire import format_time, parse_time
from tests.support.mapper_app import InProcessMapper, MapperServer, ObservationLog, mapper_app
from tests.support.mapper_process import wait_until

TOKEN = "agent-token-0f3c9a"
WAIT = 20.0  # seconds for what the reporter sends to arrive
Sniffed = DnsAnswer | TcpConnection | SocketConnection


def on_the_wire(observation: Sniffed) -> Sniffed:
    """What the mapper makes of a sniffed observation: the same, its time to the microsecond."""
    return dataclasses.replace(observation, seen_at=parse_time(format_time(observation.seen_at)))


def untimed(observations: list[Observation]) -> set[Observation]:
    return {dataclasses.replace(o, seen_at=0.0) for o in observations}  # type: ignore[type-var]


def observations(round_: int, count: int) -> list[Sniffed]:
    """``count`` distinct observations of all three kinds for one round of adding."""
    now = time.time()
    made: list[Sniffed] = []
    for i in range(count):
        client = f"10.244.{round_}.{i + 1}"
        kind = i % 3
        if kind == 0:
            made.append(
                DnsAnswer(
                    client,
                    33000 + i,
                    "10.96.0.10",
                    f"svc{i}.r{round_}.example.com",
                    ("93.184.216.34", "2606:2800:220:1::1") if i % 2 else ("10.96.1.1",),
                    now,
                    (f"edge{i}.cdn.example.net",) if i % 2 else (),
                    ttl=5 + i,
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
def mapper() -> Iterator[InProcessMapper]:
    with InProcessMapper(TOKEN) as running:
        yield running


@pytest.fixture
def metrics() -> SnifferMetrics:
    return SnifferMetrics()


@pytest.fixture
def collector(metrics: SnifferMetrics) -> PairCollector:
    return PairCollector(max_pairs=1_000, metrics=metrics)


def make_reporter(
    url: str,
    collector: PairCollector,
    metrics: SnifferMetrics,
    transport: Transport | None = None,
    token: str = TOKEN,
) -> Reporter[PairKey, Seen]:
    client = HttpMapperClient(url, token, timeout=2.0, transport=transport)
    return Reporter(
        collector,
        mutations_for,
        client,
        0.05,
        metrics=metrics,
        attempts=2,
        backoff_initial=0.01,
        backoff_max=0.2,
    )


@pytest.fixture
def reporter(
    mapper: InProcessMapper, collector: PairCollector, metrics: SnifferMetrics
) -> Iterator[Reporter[PairKey, Seen]]:
    running = make_reporter(mapper.url, collector, metrics, mapper.transport)
    running.start()
    yield running
    running.stop(timeout=5)


def test_what_the_sniffer_parsed_arrives_with_the_token(
    mapper: InProcessMapper,
    collector: PairCollector,
    reporter: Reporter,
    metrics: SnifferMetrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    added = observations(1, 9)
    for observation in added:
        collector.add(observation)
    expected = {on_the_wire(o) for o in added}
    wait_until(lambda: set(mapper.observations()) == expected, WAIT, "every observation at the mapper")
    assert len(mapper.observations()) == len(expected)  # each once
    # Counted after the reply.
    wait_until(lambda: metrics.reports_sent.value >= 3, WAIT, "three mutations counted")
    assert sorted(mapper.transport.operations()) == [
        "reportCaptureResults",
        "reportSocketScanResults",
        "reportTCPCaptureResults",
    ]
    assert all(e.request.headers["Authorization"] == f"Bearer {TOKEN}" for e in mapper.transport.exchanges())
    assert metrics.report_failures.value == 0
    assert TOKEN not in caplog.text


def test_a_rejected_token_is_logged_each_time_not_retried_and_the_pairs_are_kept(
    mapper: InProcessMapper,
    collector: PairCollector,
    metrics: SnifferMetrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-token-77e1"
    reporter = make_reporter(mapper.url, collector, metrics, mapper.transport, token=wrong)
    reporter.start()
    try:
        added = observations(2, 3)
        for observation in added:
            collector.add(observation)
        wait_until(lambda: mapper.transport.count(401) >= 3, WAIT, "three rejected reports")
        assert mapper.observations() == []
        assert reporter.is_alive()
        # The secret is rotated on the mapper's side: the kept pairs arrive after all.
        mapper.restart(token=wrong)
        expected = {on_the_wire(o) for o in added}
        wait_until(
            lambda: set(mapper.observations()) == expected, WAIT, "the kept observations at the mapper"
        )
    finally:
        reporter.stop(timeout=5)
    rejected = [r for r in caplog.records if r.levelno == logging.ERROR and "report rejected" in r.message]
    assert len(rejected) == mapper.transport.count(401)  # one line per 401: never retried in a cycle
    assert "HTTP 401" in rejected[0].message
    assert metrics.report_failures.value == mapper.transport.count(401)
    assert wrong not in caplog.text and TOKEN not in caplog.text


def test_outage_over_http_loses_nothing(
    collector: PairCollector, metrics: SnifferMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    log = ObservationLog()
    with MapperServer(mapper_app(TOKEN, log)) as server:
        reporter = make_reporter(server.url, collector, metrics)
        reporter.start()
        try:
            added = observations(10, 6)
            for observation in added:
                collector.add(observation)
            wait_until(lambda: untimed(log.observations()) == untimed(added), WAIT, "the first observations")

            port = server.port
            server.stop()
            for round_ in range(11, 16):  # keep adding while the reporter keeps failing
                failed_cycles = reporter.failed_cycles
                batch = observations(round_, 6)
                for observation in batch:
                    collector.add(observation)
                for observation in added[:3]:  # and newer sightings of pairs already delivered
                    collector.add(dataclasses.replace(observation, seen_at=time.time()))
                added += batch
                wait_until(
                    more_failed_cycles(reporter, failed_cycles),
                    WAIT,
                    f"a failed report cycle in round {round_}",
                )
                assert reporter.is_alive()
            assert reporter.failed_cycles >= 5
            assert metrics.report_failures.value >= 10  # two attempts per cycle
            assert len(collector) > 0  # kept for the mapper

            server.start()
            assert server.port == port
            late = observations(20, 6)
            for observation in late:
                collector.add(observation)
            added += late
            wait_until(
                lambda: untimed(log.observations()) == untimed(added), WAIT, "everything after the outage"
            )
            assert collector.dropped == 0 and metrics.pairs_dropped.value == 0
            wait_until(lambda: reporter.failed_cycles == 0, WAIT, "the reporter to see the mapper back")
        finally:
            reporter.stop(timeout=5)
    # The newer sightings made during the outage arrived too, with their own times.
    arrived = log.observations()
    for first in map(on_the_wire, added[:3]):
        later = [o for o in arrived if dataclasses.replace(o, seen_at=first.seen_at) == first]
        assert max(o.seen_at for o in later) > first.seen_at, first
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "report failed" in r.message]
    assert len(warnings) == 1  # one WARNING when the outage starts, not one per attempt
    assert any("accepts reports again" in r.message for r in caplog.records)


def test_http_errors_from_in_front_of_the_mapper_are_retried(
    mapper: InProcessMapper, collector: PairCollector, reporter: Reporter, metrics: SnifferMetrics
) -> None:
    mapper.transport.fail_with(502)  # a proxy between the sniffer and the mapper
    added = observations(30, 3)
    for observation in added:
        collector.add(observation)
    wait_until(lambda: mapper.transport.count(502) >= 3, WAIT, "three failed attempts")
    mapper.transport.fail_with(None)
    expected = {on_the_wire(o) for o in added}
    wait_until(lambda: set(mapper.observations()) == expected, WAIT, "the observations after the failures")
    assert metrics.report_failures.value >= 3


def test_a_busy_mapper_is_retried_until_it_has_room(
    collector: PairCollector, metrics: SnifferMetrics
) -> None:
    with InProcessMapper(TOKEN, queue_batches=1) as mapper:
        mapper.log.gate.clear()  # the mapper's one worker blocks on the first batch; one more fits
        reporter = make_reporter(mapper.url, collector, metrics, mapper.transport)
        reporter.start()
        try:
            added = observations(31, 3)  # three mutations: the third finds the queue full
            for observation in added:
                collector.add(observation)
            stats = mapper.app.state.ingest.stats
            wait_until(lambda: stats.batches_refused >= 3, WAIT, "three 'mapper busy' answers")
            assert mapper.observations() == []
            mapper.log.gate.set()
            expected = {on_the_wire(o) for o in added}
            wait_until(
                lambda: set(mapper.observations()) == expected, WAIT, "every observation once there is room"
            )
        finally:
            reporter.stop(timeout=5)
    assert metrics.report_failures.value >= stats.batches_refused >= 3


def test_stop_flushes_what_is_pending(
    mapper: InProcessMapper, collector: PairCollector, metrics: SnifferMetrics
) -> None:
    client = HttpMapperClient(mapper.url, TOKEN, timeout=2.0, transport=mapper.transport)
    reporter = Reporter(
        collector, mutations_for, client, 60.0, metrics=metrics
    )  # would not report for a minute
    reporter.start()
    added = observations(40, 3)
    for observation in added:
        collector.add(observation)
    reporter.stop(timeout=5)
    assert not reporter.is_alive()
    assert len(collector) == 0
    expected = {on_the_wire(o) for o in added}
    wait_until(lambda: set(mapper.observations()) == expected, WAIT, "the flushed observations resolved")


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_healthz_and_metrics_over_http(
    mapper: InProcessMapper, collector: PairCollector, metrics: SnifferMetrics
) -> None:
    reporter = make_reporter(mapper.url, collector, metrics, mapper.transport)
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
        expected = {on_the_wire(o) for o in added}
        wait_until(lambda: set(mapper.observations()) == expected, WAIT, "the observations at the mapper")
        wait_until(lambda: metrics.reports_sent.value >= 3, WAIT, "three mutations counted")

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
