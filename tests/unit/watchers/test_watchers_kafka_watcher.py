"""agent.watchers.kafkawatcher, without a cluster: every fixture line (tests/data/kafka) through the
recorder (accesses aggregated, other resources and unparsed lines counted, nothing fatal), the
watcher polling real log files, and ``main``'s refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.pending import Pending
from agent.settings import KafkaWatcherSettings, SettingsError, load
from agent.watchers.kafka import TopicAccess
from agent.watchers.kafkareports import AccessKey, access_key, combine
from agent.watchers.kafkawatcher import AccessRecorder, KafkaLogWatcher, KafkaWatcherMetrics, LogFile, main
from agent.watchers.logtail import FileTail

DATA = Path(__file__).resolve().parents[2] / "data" / "kafka"
EXPECTED: dict[str, dict[str, Any]] = json.loads((DATA / "expected.json").read_text(encoding="utf-8"))
T = 1_714_564_800.5


def expected_results(name: str) -> list[TopicAccess | str]:
    entry = EXPECTED[name]
    count = len((DATA / name).read_text(encoding="utf-8").splitlines())
    specs = [entry["lines"].get(str(n), entry.get("default")) for n in range(1, count + 1)]
    return [TopicAccess(**spec) if isinstance(spec, dict) else spec for spec in specs]


def recorder() -> AccessRecorder:
    metrics = KafkaWatcherMetrics()
    collector: Pending[AccessKey, float] = Pending(1_000, combine, on_drop=metrics.accesses_dropped.inc)
    metrics.accesses_pending.set_function(collector.__len__)
    return AccessRecorder(collector, metrics)


def test_every_fixture_line_is_counted_by_kind_and_the_accesses_aggregated() -> None:
    rec = recorder()
    expected_keys: dict[AccessKey, float] = {}
    totals = {"lines": 0, "accesses": 0, "other_resource": 0, "unparsed": 0}
    for number, name in enumerate(sorted(EXPECTED)):
        lines = (DATA / name).read_text(encoding="utf-8").splitlines()
        seen_at = T + number
        rec.record("kafka", f"broker-{number}", [(line, seen_at) for line in lines])
        for result in expected_results(name):
            totals["lines"] += 1
            if isinstance(result, TopicAccess):
                totals["accesses"] += 1
                expected_keys[access_key(result, "kafka", f"broker-{number}")] = seen_at
            elif result in ("other_resource", "unparsed"):
                totals[result] += 1
    metrics = rec.metrics
    assert totals["accesses"] > 0 and totals["other_resource"] > 0 and totals["unparsed"] > 0
    assert metrics.lines_read.value == totals["lines"]
    assert metrics.accesses.value == totals["accesses"]
    assert metrics.lines_other_resource.value == totals["other_resource"]
    assert metrics.lines_unparsed.value == totals["unparsed"]
    assert dict(rec.collector.drain().entries) == expected_keys
    assert any(not key.allowed for key in expected_keys)  # denied accesses are kept


def test_repeated_accesses_aggregate_to_the_newest_sighting() -> None:
    rec = recorder()
    line = (DATA / "aclauthorizer.log").read_text(encoding="utf-8").splitlines()[1]
    rec.record("kafka", "kafka-0", [(line, T + 2), (line, T), (line, T + 1)])
    assert rec.metrics.accesses.value == 3
    assert rec.metrics.accesses_pending.value == 1
    [(key, seen)] = rec.collector.drain().entries.items()
    assert (key.client_ip, key.topic, key.operation, seen) == (
        "10.244.0.27",
        "orders.v1-eu_west",
        "Read",
        T + 2,
    )


def test_the_watcher_polls_log_files_as_the_broker_pod_of_their_item(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    fixture = (DATA / "strimzi-aclauthorizer.log").read_text(encoding="utf-8")
    log.write_text(fixture, encoding="utf-8")  # history: there before the watcher
    rec = recorder()
    item = LogFile.parse(f"{log}=my-cluster-kafka-0.streaming")
    assert item == LogFile(log, "streaming", "my-cluster-kafka-0")
    watcher = KafkaLogWatcher(rec, None, [(item, FileTail(item.path))])
    watcher.poll_once()
    assert (rec.metrics.polls.value, rec.metrics.lines_read.value) == (1, 0)
    with log.open("a", encoding="utf-8") as handle:
        handle.write(fixture)
    watcher.poll_once()
    expected = [r for r in expected_results("strimzi-aclauthorizer.log") if isinstance(r, TopicAccess)]
    assert rec.metrics.lines_read.value == len(fixture.splitlines())
    assert rec.metrics.accesses.value == len(expected)
    keys = set(rec.collector.drain().entries)
    assert keys == {access_key(a, "streaming", "my-cluster-kafka-0") for a in expected}


def test_an_unreadable_log_file_is_counted_not_fatal(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.touch()
    rec = recorder()
    watcher = KafkaLogWatcher(rec, None, [(LogFile(log, "kafka", "kafka-0"), FileTail(log))])
    log.unlink()
    log.mkdir()  # the path now names something that cannot be read as a file
    watcher.poll_once()
    watcher.poll_once()
    assert (rec.metrics.polls.value, rec.metrics.poll_failures.value) == (2, 2)
    log.rmdir()
    log.write_text("back\n", encoding="utf-8")
    watcher.poll_once()
    assert (rec.metrics.poll_failures.value, rec.metrics.lines_read.value) == (2, 1)


def test_metric_names() -> None:
    names = set(KafkaWatcherMetrics().snapshot())
    assert names == {
        "network_mapper_kafka_lines_read_total",
        "network_mapper_kafka_lines_other_resource_total",
        "network_mapper_kafka_lines_unparsed_total",
        "network_mapper_kafka_accesses_total",
        "network_mapper_kafka_accesses_pending",
        "network_mapper_kafka_accesses_dropped_total",
        "network_mapper_kafka_reports_sent_total",
        "network_mapper_kafka_report_failures_total",
        "network_mapper_kafka_polls_total",
        "network_mapper_kafka_poll_failures_total",
    }


def test_settings_items() -> None:
    settings = load(
        KafkaWatcherSettings,
        [],
        {
            "OTTERIZE_KAFKA_SERVERS": "kafka-*.kafka, broker-0.ns:broker",
            "KAFKA_WATCHER_LOG_FILES": "/l/s.log=k-0.ns",
        },
    )
    assert settings.kafka_servers == ("kafka-*.kafka", "broker-0.ns:broker")
    assert settings.log_files == ("/l/s.log=k-0.ns",)
    for bad in ({"OTTERIZE_KAFKA_SERVERS": "kafka-0"}, {"OTTERIZE_KAFKA_SERVERS": "kafka-0.kafka:"}):
        with pytest.raises(SettingsError, match="OTTERIZE_KAFKA_SERVERS"):
            load(KafkaWatcherSettings, [], bad)
    for item in ("/l/s.log", "/l/s.log=k-0.ns:kafka", "=k-0.ns"):
        with pytest.raises(SettingsError, match="KAFKA_WATCHER_LOG_FILES"):
            load(KafkaWatcherSettings, [], {"KAFKA_WATCHER_LOG_FILES": item})


def test_main_refuses_bad_settings_and_an_empty_watch_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--kafka-servers", "no-namespace"]) == 2
    assert "POD.NAMESPACE" in capsys.readouterr().err
    assert main([]) == 2
    assert "nothing to watch" in capsys.readouterr().err
    assert main(["--kafka-servers", "kafka-0.kafka", "--kubeconfig", "/nonexistent/kubeconfig"]) == 1
    assert "cannot read the logs" in capsys.readouterr().err
