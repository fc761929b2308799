"""``network-mapper-sniffer``: the node agent.

Wires the parts, each running in its own thread: libpcap capture (:mod:`.capture`) and the
``/proc`` socket scan (:mod:`.sockets`) add observations to the collector (:mod:`.pairs`); the
reporter (:mod:`.reporter`) sends them to the mapper; :mod:`.health` serves ``/healthz`` and
``/metrics``. Settings come from flags over environment (:class:`agent.settings.SnifferSettings`).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

from agent.settings import SettingsError, SnifferSettings, load
from agent.sniffer.capture import LibpcapSource, PacketCapture
from agent.sniffer.health import HealthServer
from agent.sniffer.metrics import SnifferMetrics
from agent.sniffer.pairs import PairCollector
from agent.sniffer.reporter import reporter_from_settings
from agent.sniffer.sockets import SocketScanner

log = logging.getLogger("agent.sniffer")


def scan_sockets(
    settings: SnifferSettings, collector: PairCollector, metrics: SnifferMetrics, stop: threading.Event
) -> None:
    """Scans ``/proc`` into the collector every ``socket_scan_interval`` seconds until ``stop`` is set."""
    scanner = SocketScanner(settings.proc_root)
    while True:
        for obs in scanner.scan(time.time()).observations:
            collector.add(obs)
        metrics.socket_scans.inc()
        if stop.wait(settings.socket_scan_interval):
            return


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
    collector, reporter = reporter_from_settings(settings, metrics)
    try:
        source = LibpcapSource()
    except OSError as exc:
        print(
            f"network-mapper-sniffer: cannot capture ({exc}); it needs root or CAP_NET_RAW", file=sys.stderr
        )
        return 1
    capture = PacketCapture(source, collector.add, metrics).start()
    stopping = threading.Event()
    scans = threading.Thread(
        target=scan_sockets, args=(settings, collector, metrics, stopping), name="socket-scan", daemon=True
    )
    scans.start()
    reporter.start()
    health = HealthServer(
        settings.health_address,
        metrics,
        lambda: capture.is_alive() and scans.is_alive() and reporter.is_alive(),
    )
    health.start()
    log.info(
        "sniffer started mapper_url=%s report_interval=%.1fs", settings.mapper_url, settings.report_interval
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stopping.wait()
    capture.stop()
    scans.join(5)
    reporter.stop()  # flushes what is pending
    health.stop()
    log.info("sniffer stopped %s", metrics.snapshot())
    return 0


if __name__ == "__main__":
    sys.exit(main())
