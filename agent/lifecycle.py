"""How a producer process runs once its ``main`` has wired it (the sniffer, the Kafka and Istio
watchers, the AWS components): its parts (capture, scans, log polling, scraping, serving) and its
reporter run in threads of their own; ``/healthz`` (:mod:`agent.health`) says healthy while every one
is alive; SIGTERM or SIGINT stops the parts, flushes the reporter (what is pending goes to the mapper
once more) and stops the health endpoint, in that order.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, Protocol

from agent.health import HealthServer
from agent.metrics import Metrics
from agent.reporter import Reporter

log = logging.getLogger("agent.lifecycle")


class Part(Protocol):
    """A thread, or anything started once and alive until stopped (the sniffer's capture)."""

    def start(self) -> object: ...

    def is_alive(self) -> bool: ...


def serve_until_signalled(  # noqa: PLR0917 - a main's parts, in the order they run
    prog: str,
    health_address: str,
    metrics: Metrics,
    parts: Sequence[Part],
    reporter: Reporter[Any, Any] | None,
    stopping: threading.Event,
    stop_parts: Callable[[], None],
) -> int:
    """Run ``parts`` and ``reporter`` (None for a component that reports nothing, the DNS forwarder)
    until a signal sets ``stopping``; then ``stop_parts()``, the reporter's last flush, the health
    endpoint's stop. 1 when the health address cannot be served (nothing started), else 0."""
    health = HealthServer(
        health_address,
        metrics,
        lambda: all(p.is_alive() for p in parts) and (reporter is None or reporter.is_alive()),
    )
    try:
        health.start()
    except OSError as exc:
        print(f"{prog}: cannot serve {health_address} ({exc})", file=sys.stderr)
        return 1
    for part in parts:
        part.start()
    if reporter is not None:
        reporter.start()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stopping.wait()
    stop_parts()
    if reporter is not None:
        reporter.stop()  # flushes what is pending
    health.stop()
    log.info("stopped prog=%s %s", prog, metrics.snapshot())
    return 0
