"""``network-mapper-sniffer``: the node agent.

Wires the parts, each running in its own thread: libpcap capture (:mod:`.capture`) and the
``/proc`` socket scan (:mod:`.sockets`) add observations to the collector (:mod:`.pairs`); the
reporter (:mod:`agent.reporter`, with :mod:`.reports`' mutations) sends them to the mapper;
:mod:`agent.health` serves ``/healthz`` and ``/metrics``. Settings come from flags over
environment (:class:`agent.settings.SnifferSettings`).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from functools import partial

from agent.lifecycle import serve_until_signalled
from agent.mapperclient import HttpMapperClient
from agent.reporter import Reporter
from agent.settings import SettingsError, SnifferSettings, load
from agent.sniffer.capture import LibpcapSource, PacketCapture
from agent.sniffer.metrics import SnifferMetrics
from agent.sniffer.pairs import PairCollector, PairKey, Seen
from agent.sniffer.reports import mutations_for
from agent.sniffer.sockets import SocketScanner
from agent.statusreport import StatusReporter, metric_counters, status_reporter

log = logging.getLogger("agent.sniffer")


def scan_sockets(
    settings: SnifferSettings, collector: PairCollector, metrics: SnifferMetrics, stop: threading.Event
) -> None:
    """Scans ``/proc`` into the collector every ``socket_scan_interval`` seconds until ``stop`` is set."""
    scanner = SocketScanner(settings.proc_root)
    while True:
        result = scanner.scan(time.time())
        for obs in result.observations:
            collector.add(obs)
        metrics.socket_scans.inc()
        metrics.socket_owners_named.inc(result.node_client_pods)
        metrics.socket_owners_unnamed.inc(result.node_client_sockets - result.node_client_pods)
        metrics.socket_owner_unreadable.inc(result.owner_unreadable)
        if stop.wait(settings.socket_scan_interval):
            return


def reporter_from_settings(
    settings: SnifferSettings, metrics: SnifferMetrics, stopping: threading.Event
) -> tuple[PairCollector, Reporter[PairKey, Seen], StatusReporter]:
    """The collector, the reporter that sends it to the mapper (each report naming the node), and
    the status reporter (what the sniffer watches, what it dropped)."""
    collector = PairCollector(settings.max_pending_pairs, metrics)
    client = HttpMapperClient(settings.mapper_url, settings.token, settings.request_timeout)
    reporter = Reporter(
        collector,
        partial(mutations_for, node=settings.node_name),
        client,
        settings.report_interval,
        metrics=metrics,
        name="sniffer",
    )
    counters = {
        "queue_full": metrics.pairs_dropped.name,
        "parse_errors": metrics.parse_errors.name,
        "report_failures": metrics.report_failures.name,
        "kernel_dropped": metrics.kernel_dropped.name,  # frames the kernel dropped before capture
    }
    watching = ("capture:dns,tcp-syn", f"socket-scan:{settings.proc_root}")
    # A client of its own: the two reporters run in threads of their own (a requests session each).
    status_client = HttpMapperClient(settings.mapper_url, settings.token, settings.request_timeout)
    status = status_reporter(
        settings, status_client, "sniffer", watching, metric_counters(metrics, counters), stopping
    )
    return collector, reporter, status


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stdout
    )
    try:
        settings = load(SnifferSettings, argv, os.environ, prog="network-mapper-sniffer")
    except SettingsError as exc:
        print(f"network-mapper-sniffer: {exc}", file=sys.stderr)
        return 2
    metrics = SnifferMetrics()
    stopping = threading.Event()
    collector, reporter, status = reporter_from_settings(settings, metrics, stopping)
    try:
        source = LibpcapSource()
    except OSError as exc:
        print(
            f"network-mapper-sniffer: cannot capture ({exc}); it needs root or CAP_NET_RAW", file=sys.stderr
        )
        return 1
    capture = PacketCapture(source, collector.add, metrics)
    scans = threading.Thread(
        target=scan_sockets, args=(settings, collector, metrics, stopping), name="socket-scan", daemon=True
    )
    log.info(
        "sniffer starting mapper_url=%s report_interval=%.1fs", settings.mapper_url, settings.report_interval
    )

    def stop_parts() -> None:
        capture.stop()
        scans.join(5)

    return serve_until_signalled(
        "network-mapper-sniffer",
        settings.health_address,
        metrics,
        [capture, scans, status],
        reporter,
        stopping,
        stop_parts,
    )


if __name__ == "__main__":
    sys.exit(main())
