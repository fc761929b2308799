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


class SocketScanLoop:
    """Scans ``/proc`` every ``interval`` seconds into the collector."""

    def __init__(
        self, scanner: SocketScanner, collector: PairCollector, interval: float, metrics: SnifferMetrics
    ) -> None:
        self.scanner, self.collector, self.interval, self.metrics = scanner, collector, interval, metrics
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="socket-scan", daemon=True)

    def start(self) -> SocketScanLoop:
        self._thread.start()
        return self

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while True:
            result = self.scanner.scan(time.time())
            for obs in result.observations:
                self.collector.add(obs)
            self.metrics.socket_scans.inc()
            if self._stop.wait(self.interval):
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
    scans = SocketScanLoop(
        SocketScanner(settings.proc_root), collector, settings.socket_scan_interval, metrics
    ).start()
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

    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stopping.wait()
    capture.stop()
    scans.stop()
    reporter.stop()  # flushes what is pending
    health.stop()
    log.info("sniffer stopped %s", metrics.snapshot())
    return 0


if __name__ == "__main__":
    sys.exit(main())
