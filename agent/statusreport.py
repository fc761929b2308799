"""A producer's periodic status report to the mapper: who it is, what it watches, what it dropped.

Every producer (the sniffer, the Kafka and Istio watchers, the AWS proxy) runs one
:class:`StatusReporter` among its parts (:func:`agent.lifecycle.serve_until_signalled`): every
``interval`` seconds it sends the ``reportComponentStatus`` mutation through the producer's
:class:`~agent.mapperclient.MapperClient`. The mapper keeps the newest report per instance
(:mod:`agent.mapper.coverage`), so a configured watcher that goes silent, or a node whose sniffer
stopped, shows in ``network-mapper coverage``. Where the data comes from: the producer's settings
(component, pod name, node name from the downward API, what it is configured to watch) and its own
:class:`agent.metrics.Metrics` (the counters it names: queue full, parse errors, pcap drops).

A status is a heartbeat, not data: a failed report is not retried or kept (the next one replaces
it); the failure is logged once when it starts and once when reports get through again.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.mapperclient import MapperClient, MapperError
from agent.metrics import Metrics
from agent.wire import format_time

log = logging.getLogger("agent.statusreport")

COMPONENTS = ("sniffer", "kafka-watcher", "istio-watcher", "aws-proxy", "aws-dns", "aws-webhook")
"""The components that report their status (the ``component`` of a status)."""

MUTATION = (
    "mutation reportComponentStatus($status: ComponentStatus!) { reportComponentStatus(status: $status) }"
)


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    """One status report: ``instance`` is the pod name, ``node`` the node's ("" when unknown),
    ``watching`` what the component is configured to watch, ``counters`` its own drops."""

    component: str
    instance: str
    node: str
    watching: tuple[str, ...]
    counters: tuple[tuple[str, int], ...]
    seen_at: float

    def variables(self) -> dict[str, Any]:
        """The mutation's variables (``seenAt`` in the wire's time format)."""
        return {
            "status": {
                "component": self.component,
                "instance": self.instance,
                "node": self.node,
                "watching": list(self.watching),
                "counters": [{"name": name, "value": value} for name, value in self.counters],
                "seenAt": format_time(self.seen_at),
            }
        }


def metric_counters(metrics: Metrics, names: Mapping[str, str]) -> Callable[[], tuple[tuple[str, int], ...]]:
    """A function reading the producer's ``metrics`` as status counters: ``names`` maps a counter's
    reported name (``queue_full``) to its metric's name; sorted by reported name."""

    def read() -> tuple[tuple[str, int], ...]:
        values = metrics.snapshot()
        return tuple(sorted((name, int(values.get(metric, 0))) for name, metric in names.items()))

    return read


class StatusReporter:
    """Sends the producer's status every ``interval`` seconds (the first at once) until ``stopping``
    is set; a :class:`agent.lifecycle.Part` (``start``/``is_alive``)."""

    def __init__(
        self,
        client: MapperClient,
        *,
        component: str,
        instance: str,
        node: str,
        watching: Sequence[str],
        counters: Callable[[], tuple[tuple[str, int], ...]],
        interval: float,
        stopping: threading.Event,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if component not in COMPONENTS:
            raise ValueError(f"unknown component {component!r}")
        if interval <= 0:
            raise ValueError("need interval > 0")
        self._client = client
        self._component, self._instance, self._node = component, instance, node
        self._watching = tuple(watching)
        self._counters = counters
        self._interval = interval
        self._stopping = stopping
        self._clock = clock
        self._thread: threading.Thread | None = None
        self._failing = False
        self.sent = 0

    def status(self) -> ComponentStatus:
        return ComponentStatus(
            self._component, self._instance, self._node, self._watching, self._counters(), self._clock()
        )

    def report_once(self) -> bool:
        """Send one status now; False when the mapper did not take it (logged once per outage)."""
        try:
            self._client.execute(MUTATION, self.status().variables())
        except MapperError as exc:
            if not self._failing:
                log.warning("status report failed component=%s error=%s", self._component, exc)
            self._failing = True
            return False
        if self._failing:
            log.info("status reports get through again component=%s", self._component)
        self._failing = False
        self.sent += 1
        return True

    def start(self) -> StatusReporter:
        if self._thread is not None:
            raise RuntimeError("status reporter already started")
        self._thread = threading.Thread(target=self._run, name=f"{self._component}-status", daemon=True)
        self._thread.start()
        return self

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while True:
            self.report_once()
            if self._stopping.wait(self._interval):
                return


def status_reporter(  # noqa: PLR0917 - a producer's settings and parts
    settings: Any,
    client: MapperClient,
    component: str,
    watching: Sequence[str],
    counters: Callable[[], tuple[tuple[str, int], ...]],
    stopping: threading.Event,
) -> StatusReporter:
    """The reporter of a producer whose settings have ``node_name``, ``pod_name`` and
    ``status_interval`` (:func:`agent.settings.node_name_setting` and its siblings); without a pod
    name the host name (a pod's, under Kubernetes) names the instance."""
    return StatusReporter(
        client,
        component=component,
        instance=settings.pod_name or socket.gethostname(),
        node=settings.node_name,
        watching=watching,
        counters=counters,
        interval=settings.status_interval,
        stopping=stopping,
    )
