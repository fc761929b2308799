"""The producers' status reporter (agent.statusreport) against the real mapper API app in this
process: the mutation's variables, the counters read from a producer's metrics, a failure logged
once per outage, the thread's periodic reports until stopped; and what the Kafka watcher says it
watches."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator

import pytest

from agent.mapper.api import create_app
from agent.mapper.cluster import ClusterState
from agent.mapper.coverage import Coverage
from agent.mapper.resolver import Resolver
from agent.mapper.settings import ApiSettings
from agent.mapperclient import HttpMapperClient
from agent.settings import KafkaWatcherSettings
from agent.sniffer.metrics import SnifferMetrics
from agent.statusreport import StatusReporter, metric_counters
from agent.watchers.kafkawatcher import watched_servers
from tests.support.mapper_app import NoEdges
from tests.support.mapper_process import wait_until
from tests.support.transports import AsgiTransport, RecordingTransport

TOKEN = "status-token"
URL = "http://mapper.in-process:9090/query"


@pytest.fixture
def mapper() -> Iterator[tuple[Coverage, RecordingTransport]]:
    coverage = Coverage(90, nodes=lambda: ["node-1"])
    app = create_app(ApiSettings(token=TOKEN), NoEdges(), Resolver(ClusterState()), coverage=coverage)
    inner = AsgiTransport(app).start()
    yield coverage, RecordingTransport(inner)
    inner.close()


def reporter(
    transport: RecordingTransport, stopping: threading.Event, interval: float = 30
) -> StatusReporter:
    metrics = SnifferMetrics()
    metrics.pairs_dropped.inc(3)
    counters = metric_counters(metrics, {"queue_full": metrics.pairs_dropped.name, "parse_errors": "absent"})
    return StatusReporter(
        HttpMapperClient(URL, TOKEN, 5.0, transport),
        component="sniffer",
        instance="sniffer-1",
        node="node-1",
        watching=["capture:dns,tcp-syn"],
        counters=counters,
        interval=interval,
        stopping=stopping,
        clock=lambda: 1_780_000_000.0,
    )


def test_one_status_carries_the_producers_counters(mapper: tuple[Coverage, RecordingTransport]) -> None:
    coverage, transport = mapper
    assert reporter(transport, threading.Event()).report_once()
    (exchange,) = transport.exchanges()
    sent = json.loads(exchange.request.body)["variables"]["status"]
    assert sent == {
        "component": "sniffer",
        "instance": "sniffer-1",
        "node": "node-1",
        "watching": ["capture:dns,tcp-syn"],
        "counters": [{"name": "parse_errors", "value": 0}, {"name": "queue_full", "value": 3}],
        "seenAt": "2026-05-28T20:26:40Z",
    }
    assert coverage.document()["covered"] is True


def test_an_outage_is_logged_once_and_its_end_too(
    mapper: tuple[Coverage, RecordingTransport], caplog: pytest.LogCaptureFixture
) -> None:
    _, transport = mapper
    status = reporter(transport, threading.Event())
    transport.fail_with(503)
    with caplog.at_level(logging.INFO, logger="agent.statusreport"):
        assert not status.report_once()
        assert not status.report_once()
        transport.fail_with(None)
        assert status.report_once()
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if m.startswith("status report failed")]) == 1
    assert len([m for m in messages if m.startswith("status reports get through again")]) == 1


def test_the_thread_reports_until_stopped(mapper: tuple[Coverage, RecordingTransport]) -> None:
    _, transport = mapper
    stopping = threading.Event()
    status = reporter(transport, stopping, interval=0.05).start()
    wait_until(lambda: status.sent >= 3, 10, "three status reports")
    stopping.set()
    wait_until(lambda: not status.is_alive(), 10, "the status thread's end")
    with pytest.raises(ValueError, match="unknown component"):
        StatusReporter(
            HttpMapperClient(URL, TOKEN, 5.0, transport),
            component="nope",
            instance="i",
            node="",
            watching=[],
            counters=tuple,
            interval=1,
            stopping=stopping,
        )


def test_the_kafka_watcher_names_its_servers_as_namespace_slash_pod() -> None:
    settings = KafkaWatcherSettings(
        kafka_servers=("kafka-*.kafka", "broker-0.data:kafka"), log_files=("/var/log/a.log=kafka-0.kafka",)
    )
    assert watched_servers(settings) == ["data/broker-0", "kafka/kafka-*", "kafka/kafka-0"]
