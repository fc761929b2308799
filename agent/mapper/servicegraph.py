"""The service graph, for the user's own collectors: a counter of connections and requests per
(client, server), served as ``GET /metrics`` text and, when enabled, pushed over OTLP/HTTP.

Data comes from the edge store (``store.edges``, passed in as a function) and, for the mapper's
own counters, from the API (report entries skipped) and the resolver (edges dropped); it goes out
to whoever scrapes ``GET /metrics`` (:func:`metrics_route`) and to the collector at
``MAPPER_OTEL_ENDPOINT`` (:class:`ServiceGraphExport`). This is the user's own data, inside their
cluster, so it carries names: unlike :mod:`agent.mapper.telemetry` (anonymous counts for us,
never names), which has a provider, an exporter and an endpoint of its own.

The counter (:func:`service_graph_series`): one series per (client, client namespace, server,
server namespace, connection type) — the labels Grafana's service graph reads from
``traces_service_graph_request_total``, the default name (``MAPPER_OTEL_METRIC_NAME`` names it, in
both places) —, its value the edges' ``count`` summed, cumulative. Otterize's mapper (its
``otelexporter``) exports an ``Int64Counter`` of that name with the attributes ``client`` and
``server`` only, adding 1 per pair in each upload interval that saw the pair; here the value is the
connections and requests seen, as in ``/metrics``, and the namespaces come along (the same name in
two namespaces is two workloads).
"""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from agent.mapper.settings import OtelSettings
from agent.mapper.telemetry import SERVICE_NAME, ExporterFactory, otlp_exporter
from agent.model import AwsTarget, Edge, InternetTarget, WorkloadIdentity

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.sdk.metrics.export import MetricExporter
    from starlette.routing import Route

log = logging.getLogger("agent.mapper.servicegraph")

SERVICE_GRAPH_METRIC = "traces_service_graph_request_total"
SERIES_MAX = 100_000  # (client, server) series exported over OTLP; the SDK's default is 2,000
LABELS = ("client", "client_namespace", "server", "server_namespace", "connection_type")
Series = tuple[str, str, str, str, str]  # the LABELS' values; connection_type "" for workloads


def _server(edge: Edge) -> tuple[str, str, str]:
    """(server, server namespace, connection type) of an edge's target."""
    target = edge.target
    if isinstance(target, WorkloadIdentity):
        return target.name, target.namespace, ""
    if isinstance(target, InternetTarget):
        return target.dns_name or ",".join(target.ips), "", "virtual_node"
    assert isinstance(target, AwsTarget)
    return target.arn, "", "virtual_node"


def service_graph_series(edges: Iterable[Edge]) -> dict[Series, int]:
    """The counter's series and values (pure): edges between the same pair are summed."""
    totals: Tally[Series] = Tally()
    for edge in edges:
        server, server_ns, connection = _server(edge)
        totals[(edge.client.name, edge.client.namespace, server, server_ns, connection)] += edge.count
    return dict(totals)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def service_graph_text(edges: Iterable[Edge], metric: str = SERVICE_GRAPH_METRIC) -> str:
    """The counter named ``metric`` in the Prometheus text format (pure)."""
    lines = [
        f"# HELP {metric} Connections and requests seen from client to server.",
        f"# TYPE {metric} counter",
    ]
    for series, count in sorted(service_graph_series(edges).items()):
        pairs = zip(LABELS, series, strict=True)
        labels = ",".join(f'{k}="{_label(v)}"' for k, v in pairs if v or k != "connection_type")
        lines.append(f"{metric}{{{labels}}} {count}")
    return "\n".join(lines) + "\n"


SKIPPED_METRIC = "network_mapper_report_entries_skipped_total"
UNREADABLE_METRIC = "network_mapper_stored_edges_unreadable_total"
DROPPED_METRIC = "network_mapper_edges_dropped_total"


def skipped_text(skipped: Mapping[str, int], unreadable: int) -> str:
    """The mapper's own counters in the Prometheus text format (pure): report entries skipped,
    by reason, and stored edges skipped by reads because they no longer read."""
    lines = [
        f"# HELP {SKIPPED_METRIC} Report entries skipped as unusable (the rest of each report is taken).",
        f"# TYPE {SKIPPED_METRIC} counter",
        *(f'{SKIPPED_METRIC}{{reason="{_label(r)}"}} {n}' for r, n in sorted(skipped.items())),
        f"# HELP {UNREADABLE_METRIC} Stored edges reads skip: invalid now, an older version wrote them.",
        f"# TYPE {UNREADABLE_METRIC} counter",
        f"{UNREADABLE_METRIC} {unreadable}",
    ]
    return "\n".join(lines) + "\n"


def dropped_text(dropped: Mapping[str, int]) -> str:
    """The resolver's drops (``Resolver.dropped``) in the Prometheus text format (pure): edges, or
    whole observations, not recorded, by reason (``excluded_namespace``, ``client_unknown_ip``...)."""
    lines = [
        f"# HELP {DROPPED_METRIC} Edges (or whole observations) the resolver did not record, by reason.",
        f"# TYPE {DROPPED_METRIC} counter",
        *(f'{DROPPED_METRIC}{{reason="{_label(r)}"}} {n}' for r, n in sorted(dropped.items())),
    ]
    return "\n".join(lines) + "\n"


def metrics_route(text: Callable[[], str]) -> Route:
    """A Starlette ``GET /metrics`` route serving ``text()`` (e.g. :func:`service_graph_text` of
    ``store.edges()`` followed by the counters' texts), computed off the event loop."""
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def metrics(_: Request) -> PlainTextResponse:
        body: str = await run_in_threadpool(text)
        return PlainTextResponse(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    return Route("/metrics", metrics, methods=["GET"])


class ServiceGraphExport:
    """The counter pushed over OTLP/HTTP every ``export_interval`` seconds: an observable counter
    whose callback reads ``edges()`` at each export (cumulative, like the ``/metrics`` text)."""

    def __init__(
        self,
        edges: Callable[[], Iterable[Edge]],
        metric: str,
        exporter: MetricExporter,
        export_interval: float,
    ) -> None:
        from opentelemetry.sdk.metrics import MeterProvider, ObservableCounter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource

        self._edges = edges
        reader = PeriodicExportingMetricReader(
            exporter,
            export_interval_millis=export_interval * 1000,
            cardinality_limits={ObservableCounter: SERIES_MAX},
        )
        resource = Resource.create({"service.name": SERVICE_NAME})
        self._provider = MeterProvider(resource=resource, metric_readers=[reader], shutdown_on_exit=False)
        meter = self._provider.get_meter(f"{SERVICE_NAME}/servicegraph")
        meter.create_observable_counter(
            metric,
            [self._observe],
            unit="1",
            description="Connections and requests seen from client to server.",
        )
        self._closed = False

    @classmethod
    def from_settings(
        cls,
        settings: OtelSettings,
        edges: Callable[[], Iterable[Edge]],
        exporter_factory: ExporterFactory | None = None,
        export_interval: float | None = None,
    ) -> ServiceGraphExport | None:
        """The export as configured (``export_interval``, when given, overrides the settings' for
        tests); None, with no exporter built, when ``settings.enabled`` is false."""
        if not settings.enabled:
            return None
        endpoint = f"{settings.endpoint.rstrip('/')}/v1/metrics"
        exporter = (exporter_factory or otlp_exporter)(endpoint)
        log.info("service graph exported over OTLP as %s to %s", settings.metric_name, endpoint)
        interval = settings.export_interval if export_interval is None else export_interval
        return cls(edges, settings.metric_name, exporter, interval)

    def _observe(self, _: CallbackOptions) -> Iterator[Observation]:
        from opentelemetry.metrics import Observation

        for series, count in service_graph_series(self._edges()).items():
            attributes = {k: v for k, v in zip(LABELS, series, strict=True) if v or k != "connection_type"}
            yield Observation(count, attributes)

    def shutdown(self) -> None:
        """Export the current counts, then stop (idempotent)."""
        if not self._closed:
            self._closed = True
            self._provider.shutdown()
