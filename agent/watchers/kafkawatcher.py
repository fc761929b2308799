"""``network-mapper-kafka-watcher``: which client reads and writes which Kafka topic, from the
brokers' authorizer log.

Where the data comes from: Kafka brokers that log ``kafka.authorizer.logger`` at DEBUG (allowed
accesses; denied ones are logged at INFO and kept too), read from their pod logs through the
Kubernetes API (:mod:`.kafkalogs`, the ``--kafka-servers`` items) and from log files on a mounted
volume (:mod:`.logtail`, the ``--log-files`` items), every ``--poll-interval`` seconds, without
replaying what was logged before the watcher started. Each line is classified
(:func:`agent.watchers.kafka.classify_authorizer_line`): a topic access is aggregated per (client
IP, broker pod, topic, operation, principal, allowed) in an :class:`agent.pending.Pending`; lines
about groups, transactional ids or the cluster and audit-looking lines that match no layout are
only counted. Where it goes: the mapper, through :class:`agent.reporter.Reporter` (bounded,
retried, losses counted) with :mod:`.kafkareports`' ``reportKafkaMapperResults`` mutations every
``--report-interval`` seconds. :mod:`agent.health` serves ``/healthz`` and ``/metrics``. Settings
come from flags over environment (:class:`agent.settings.KafkaWatcherSettings`).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.lifecycle import serve_until_signalled
from agent.mapperclient import HttpMapperClient
from agent.metrics import Counter, Gauge, Metrics
from agent.pending import Pending
from agent.reporter import Reporter, report_counters
from agent.settings import KafkaWatcherSettings, SettingsError, load, log_file_item, server_item
from agent.statusreport import metric_counters, status_reporter
from agent.watchers.kafka import LineKind, TopicAccess, classify_authorizer_line
from agent.watchers.kafkalogs import PodLogSource, ServerPattern
from agent.watchers.kafkareports import AccessKey, access_key, combine, mutations_for
from agent.watchers.logtail import FileTail

log = logging.getLogger("agent.watchers.kafkawatcher")

PROG = "network-mapper-kafka-watcher"
PREFIX = "network_mapper_kafka_"


class KafkaWatcherMetrics(Metrics):
    """Every metric of the Kafka watcher (served at ``/metrics``)."""

    def __init__(self) -> None:
        self.lines_read = Counter(f"{PREFIX}lines_read_total", "Log lines read (pod logs and files).")
        self.lines_other_resource = Counter(
            f"{PREFIX}lines_other_resource_total",
            "Authorizer lines about a group, transactional id, cluster ... (no topic access).",
        )
        self.lines_unparsed = Counter(
            f"{PREFIX}lines_unparsed_total", "Lines that look like authorizer lines but match no layout."
        )
        self.accesses = Counter(f"{PREFIX}accesses_total", "Topic accesses read (allowed and denied).")
        self.accesses_pending = Gauge(
            f"{PREFIX}accesses_pending", "Distinct topic accesses waiting to be reported."
        )
        self.accesses_dropped = Counter(
            f"{PREFIX}accesses_dropped_total", "New accesses refused because the pending bound was reached."
        )
        self.reports_sent, self.report_failures = report_counters(PREFIX)
        self.polls = Counter(f"{PREFIX}polls_total", "Completed polls of the log sources.")
        self.poll_failures = Counter(
            f"{PREFIX}poll_failures_total", "Failed reads of a source (an API request, a log file)."
        )


@dataclass(frozen=True, slots=True)
class LogFile:
    """One ``--log-files`` item: ``PATH=POD.NAMESPACE``, the file and the broker pod that writes it."""

    path: Path
    namespace: str
    pod: str

    @classmethod
    def parse(cls, item: str) -> LogFile:
        path, pod, namespace = log_file_item(item)
        return cls(Path(path), namespace, pod)


class AccessRecorder:
    """Classifies log lines of one broker pod into the collector, counting what is not an access."""

    def __init__(self, collector: Pending[AccessKey, float], metrics: KafkaWatcherMetrics) -> None:
        self.collector = collector
        self.metrics = metrics

    def record(self, namespace: str, pod: str, lines: Iterable[tuple[str, float]]) -> None:
        """``lines``: (text, seen at) pairs logged by the broker pod ``pod.namespace``."""
        read = other = unparsed = accesses = 0
        for text, seen_at in lines:
            read += 1
            result = classify_authorizer_line(text)
            if isinstance(result, TopicAccess):
                accesses += 1
                self.collector.put(access_key(result, namespace, pod), seen_at, seen_at)
            elif result is LineKind.OTHER_RESOURCE:
                other += 1
            elif result is LineKind.UNPARSED:
                unparsed += 1
        # Counted once per batch: a poll brings thousands of lines, each inc() takes a lock.
        self.metrics.lines_read.inc(read)
        self.metrics.lines_other_resource.inc(other)
        self.metrics.lines_unparsed.inc(unparsed)
        self.metrics.accesses.inc(accesses)


class KafkaLogWatcher:
    """Reads the sources into the recorder: :meth:`poll_once`, or :meth:`run` until stopped."""

    def __init__(
        self,
        recorder: AccessRecorder,
        pods: PodLogSource | None,
        files: Sequence[tuple[LogFile, FileTail]],
    ) -> None:
        self.recorder = recorder
        self.pods = pods
        self.files = list(files)
        self._failing_files: set[Path] = set()

    def poll_once(self) -> None:
        metrics = self.recorder.metrics
        if self.pods is not None:
            polled = self.pods.poll()
            metrics.poll_failures.inc(polled.failures)
            by_pod: dict[tuple[str, str], list[tuple[str, float]]] = {}
            for line in polled.lines:
                by_pod.setdefault((line.namespace, line.pod), []).append((line.text, line.seen_at))
            for (namespace, pod), timed in by_pod.items():
                self.recorder.record(namespace, pod, timed)
        for item, tail in self.files:
            try:
                lines = tail.read_lines()
            except OSError as exc:
                metrics.poll_failures.inc()
                if item.path not in self._failing_files:  # one WARNING until it reads again
                    log.warning("log file unreadable path=%s error=%s", item.path, exc)
                self._failing_files.add(item.path)
                continue
            self._failing_files.discard(item.path)
            now = time.time()  # the layouts' own timestamps carry no zone: the time read is the time
            self.recorder.record(item.namespace, item.pod, ((text, now) for text in lines))
        metrics.polls.inc()

    def run(self, interval: float, stop: threading.Event) -> None:
        """Poll now and every ``interval`` seconds until ``stop`` is set."""
        while True:
            self.poll_once()
            if stop.wait(interval):
                return


def _api_client(kubeconfig: str) -> Any:
    """A Kubernetes API client from ``kubeconfig``, or the in-cluster configuration when empty."""
    from kubernetes import client, config

    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)
    configuration = client.Configuration()
    config.load_incluster_config(client_configuration=configuration)
    return client.ApiClient(configuration)


def watcher_from_settings(
    settings: KafkaWatcherSettings, metrics: KafkaWatcherMetrics, started_at: float
) -> tuple[KafkaLogWatcher, Reporter[AccessKey, float]]:
    """The watcher over the configured sources, and the reporter of its accesses. Raises
    ``kubernetes.config.ConfigException`` or OSError when the API configuration is unusable."""
    collector: Pending[AccessKey, float] = Pending(
        settings.max_pending, combine, on_drop=metrics.accesses_dropped.inc
    )
    metrics.accesses_pending.set_function(collector.__len__)
    pods = None
    if settings.kafka_servers:
        patterns = [ServerPattern.parse(item) for item in settings.kafka_servers]
        api = _api_client(settings.kubeconfig)
        pods = PodLogSource(api, patterns, started_at, settings.request_timeout)
    files = [(item, FileTail(item.path)) for item in map(LogFile.parse, settings.log_files)]
    client = HttpMapperClient(settings.mapper_url, settings.token, settings.request_timeout)
    reporter = Reporter(
        collector, mutations_for, client, settings.report_interval, metrics=metrics, name="kafka-watcher"
    )
    return KafkaLogWatcher(AccessRecorder(collector, metrics), pods, files), reporter


def watched_servers(settings: KafkaWatcherSettings) -> list[str]:
    """The Kafka servers the watcher is configured for, as ``namespace/pod`` (globs kept), sorted."""
    servers = {f"{ns}/{pod}" for pod, ns, _ in map(server_item, settings.kafka_servers)}
    servers.update(f"{ns}/{pod}" for _, pod, ns in map(log_file_item, settings.log_files))
    return sorted(servers)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stdout
    )
    try:
        settings = load(KafkaWatcherSettings, argv, os.environ, prog=PROG)
    except SettingsError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    if not settings.kafka_servers and not settings.log_files:
        print(f"{PROG}: nothing to watch: set --kafka-servers or --log-files", file=sys.stderr)
        return 2
    from kubernetes.config import ConfigException

    started_at = time.time()  # what was logged before is history, not reported
    metrics = KafkaWatcherMetrics()
    try:
        watcher, reporter = watcher_from_settings(settings, metrics, started_at)
    except (ConfigException, OSError) as exc:
        print(f"{PROG}: cannot read the logs: {exc}", file=sys.stderr)
        return 1
    stopping = threading.Event()
    poller = threading.Thread(
        target=watcher.run, args=(settings.poll_interval, stopping), name="kafka-log-poller", daemon=True
    )
    counters = {
        "queue_full": metrics.accesses_dropped.name,
        "parse_errors": metrics.lines_unparsed.name,
        "poll_failures": metrics.poll_failures.name,
        "report_failures": metrics.report_failures.name,
    }
    status = status_reporter(
        settings,
        HttpMapperClient(settings.mapper_url, settings.token, settings.request_timeout),
        "kafka-watcher",
        watched_servers(settings),
        metric_counters(metrics, counters),
        stopping,
    )
    log.info(
        "kafka watcher starting servers=%s files=%d mapper_url=%s poll_interval=%.1fs report_interval=%.1fs",
        ",".join(settings.kafka_servers) or "-",
        len(settings.log_files),
        settings.mapper_url,
        settings.poll_interval,
        settings.report_interval,
    )
    return serve_until_signalled(
        PROG,
        settings.health_address,
        metrics,
        [poller, status],
        reporter,
        stopping,
        lambda: poller.join(settings.request_timeout + 5),
    )


if __name__ == "__main__":
    sys.exit(main())
