"""Anonymous usage counts (OpenTelemetry metrics over OTLP/HTTP).

Telemetry: :meth:`Telemetry.from_settings` builds, when ``settings.telemetry.enabled``, a
``MeterProvider`` whose ``PeriodicExportingMetricReader`` pushes to
``{telemetry.url or upload.cloud_url}/v1/metrics`` (the cloud's telemetry handler) every
``telemetry.interval`` seconds. It carries counts, never names:

* resource: ``service.name=network-mapper``, ``cluster.id`` = sha256 of the ``kube-system``
  namespace's UID (never the UID itself);
* ``components_started{component}`` (counter), ``exports{format}`` (counter),
  ``workloads_seen`` (gauge: how many distinct workloads the store's edges name, a number),
  ``edges{method}`` (gauge: how many stored edges were seen by each method).

Every attribute value comes from a closed set (:data:`COMPONENTS`, :data:`FORMATS`, the
``Method`` values), anything else is reported as ``other``, so no workload or namespace name
can reach an attribute. Disabled (any of the opt-outs in :class:`agent.settings.TelemetrySettings`)
gives :class:`NoTelemetry`: the OTLP exporter is never constructed and not one request leaves.

The service graph, which does carry names (the user's own data, for the user's own collectors), is
:mod:`agent.mapper.servicegraph`'s: its own provider and endpoint, sharing only
:func:`otlp_exporter` and the ``ExporterFactory`` seam with this module.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from agent.mapper.settings import MapperSettings
from agent.model import Edge, Method, WorkloadIdentity

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.sdk.metrics.export import MetricExporter

log = logging.getLogger("agent.mapper.telemetry")

SERVICE_NAME = "network-mapper"
COMPONENTS = frozenset(
    {"mapper", "sniffer", "uploader", "kafka-watcher", "istio-watcher", "aws-proxy", "dns-forwarder"}
    | {"webhook", "cli"}
)
FORMATS = frozenset({"yaml", "json", "networkpolicy", "clientintents", "iam", "v2beta1", "v1alpha3"})
METHODS = frozenset(str(m) for m in Method)
OTHER = "other"

ExporterFactory = Callable[[str], "MetricExporter"]


def cluster_id(namespace_uid: str) -> str:
    """The cluster's telemetry id: sha256 of the ``kube-system`` UID (``unknown`` without one)."""
    return hashlib.sha256(namespace_uid.encode()).hexdigest() if namespace_uid else "unknown"


def _closed(value: str, allowed: frozenset[str]) -> str:
    return value if value in allowed else OTHER


def otlp_exporter(endpoint: str) -> MetricExporter:
    """The production exporter: OTLP/HTTP protobuf to ``endpoint``, uncompressed."""
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter(endpoint=endpoint, compression=Compression.NoCompression, timeout=10)


class NoTelemetry:
    """Telemetry switched off: every call does nothing, and nothing was ever constructed."""

    def component_started(self, component: str) -> None: ...
    def exported(self, format: str) -> None: ...
    def observe(
        self, workloads: Callable[[], int], edges_by_method: Callable[[], Mapping[str, int]]
    ) -> None: ...
    def shutdown(self) -> None: ...


class Telemetry:
    """Counts pushed over OTLP every ``export_interval`` seconds (see the module docstring)."""

    def __init__(self, cluster_uid: str, exporter: MetricExporter, export_interval: float) -> None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource

        resource = Resource.create({"service.name": SERVICE_NAME, "cluster.id": cluster_id(cluster_uid)})
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=export_interval * 1000)
        self._provider = MeterProvider(resource=resource, metric_readers=[reader], shutdown_on_exit=False)
        meter = self._provider.get_meter(SERVICE_NAME)
        self._started = meter.create_counter("components_started", description="component starts")
        self._exports = meter.create_counter("exports", description="exports made, by format")
        self._workloads: Callable[[], int] = lambda: 0
        self._edges: Callable[[], Mapping[str, int]] = dict
        meter.create_observable_gauge(
            "workloads_seen", [self._observe_workloads], description="distinct workloads in the map"
        )
        meter.create_observable_gauge("edges", [self._observe_edges], description="edges, by method")
        self._closed = False

    @classmethod
    def from_settings(
        cls,
        settings: MapperSettings,
        cluster_uid: str,
        exporter_factory: ExporterFactory | None = None,
        export_interval: float | None = None,
    ) -> Telemetry | NoTelemetry:
        """Telemetry as configured (``export_interval``, when given, overrides the settings' for
        tests); :class:`NoTelemetry` (no exporter built) when disabled or when there is nowhere to
        send (neither ``telemetry.url`` nor ``upload.cloud_url``)."""
        base = (settings.telemetry.url or settings.upload.cloud_url).rstrip("/")
        if not settings.telemetry.enabled or not base:
            return NoTelemetry()
        endpoint = f"{base}/v1/metrics"
        exporter = (exporter_factory or otlp_exporter)(endpoint)
        log.info("telemetry on (counts only, never names): %s", endpoint)
        interval = settings.telemetry.interval if export_interval is None else export_interval
        return cls(cluster_uid, exporter, interval)

    def component_started(self, component: str) -> None:
        self._started.add(1, {"component": _closed(component, COMPONENTS)})

    def exported(self, format: str) -> None:
        self._exports.add(1, {"format": _closed(format, FORMATS)})

    def observe(self, workloads: Callable[[], int], edges_by_method: Callable[[], Mapping[str, int]]) -> None:
        """Where the gauges read their numbers at each export."""
        self._workloads, self._edges = workloads, edges_by_method

    def _observe_workloads(self, _: CallbackOptions) -> Iterator[Observation]:
        from opentelemetry.metrics import Observation

        yield Observation(int(self._workloads()))

    def _observe_edges(self, _: CallbackOptions) -> Iterator[Observation]:
        from opentelemetry.metrics import Observation

        totals: Tally[str] = Tally()
        for method, count in self._edges().items():
            totals[_closed(str(method), METHODS)] += int(count)
        for method, count in sorted(totals.items()):
            yield Observation(count, {"method": method})

    def shutdown(self) -> None:
        """Export what is pending, then stop (idempotent)."""
        if not self._closed:
            self._closed = True
            self._provider.shutdown()


class StoreCounts:
    """The gauges' numbers from a store's edges, computed at most once per ``max_age`` seconds."""

    def __init__(self, edges: Callable[[], Iterable[Edge]], max_age: float = 5.0) -> None:
        self._edges, self._max_age = edges, max_age
        self._lock = threading.Lock()
        self._at = -max_age
        self._workloads, self._by_method = 0, dict[str, int]()

    def _refresh(self) -> None:
        with self._lock:
            if time.monotonic() - self._at < self._max_age:
                return
            names: set[WorkloadIdentity] = set()
            by_method: Tally[str] = Tally()
            for edge in self._edges():
                names.add(edge.client)
                if isinstance(edge.target, WorkloadIdentity):
                    names.add(edge.target)
                by_method.update(str(m) for m in edge.methods)
            self._workloads, self._by_method = len(names), dict(by_method)
            self._at = time.monotonic()

    def workloads(self) -> int:
        self._refresh()
        return self._workloads

    def edges_by_method(self) -> dict[str, int]:
        self._refresh()
        return dict(self._by_method)
