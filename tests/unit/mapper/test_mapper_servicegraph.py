"""The service graph: the ``/metrics`` text (its name from ``MAPPER_OTEL_METRIC_NAME``) and, with
``MAPPER_OTEL_ENABLED``, the same counter pushed over OTLP/HTTP to ``MAPPER_OTEL_ENDPOINT`` — received
here by a real HTTP server standing in for the user's collector and decoded with opentelemetry-proto:
names and namespaces as labels, cumulative values that follow the store, nothing sent when off."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from agent.mapper.servicegraph import (
    SERVICE_GRAPH_METRIC,
    ServiceGraphExport,
    metrics_route,
    service_graph_series,
    service_graph_text,
    skipped_text,
)
from agent.mapper.settings import MapperSettings, OtelSettings
from agent.mapper.telemetry import otlp_exporter
from agent.model import AwsTarget, Edge, InternetTarget, Method, WorkloadIdentity
from agent.settings import SettingsError, load

FRONTEND = WorkloadIdentity("shop", "frontend", "Deployment")
CART = WorkloadIdentity("shop", "cartservice", "Deployment")
EDGES = [
    Edge(FRONTEND, CART, 1.0, 2.0, frozenset({Method.TCP, Method.DNS}), count=5),
    Edge(FRONTEND, InternetTarget("api.example.com", ("93.184.216.34",), 443), 1.0, 2.0, count=2),
    Edge(CART, AwsTarget("arn:aws:s3:::orders"), 1.0, 2.0, frozenset({Method.AWS})),
]
Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Received:
    path: str
    content_type: str
    request: ExportMetricsServiceRequest

    def points(self) -> dict[str, dict[Labels, int]]:
        """metric name → {sorted attributes: value}, checking each is a cumulative monotonic sum."""
        found: dict[str, dict[Labels, int]] = {}
        for rm in self.request.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    assert metric.sum.is_monotonic, metric.name
                    assert (
                        metric.sum.aggregation_temporality
                        == AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
                    )
                    for p in metric.sum.data_points:
                        labels = tuple(sorted((a.key, a.value.string_value) for a in p.attributes))
                        found.setdefault(metric.name, {})[labels] = p.as_int
        return found

    def resource(self) -> dict[str, str]:
        return {
            a.key: a.value.string_value
            for rm in self.request.resource_metrics
            for a in rm.resource.attributes
        }


class Collector:
    """An OTLP/HTTP metrics receiver on 127.0.0.1: keeps every request, answers as a collector does."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._changed = threading.Condition()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportMetricsServiceRequest()
                request.ParseFromString(body)
                with collector._changed:
                    collector.received.append(Received(self.path, self.headers["Content-Type"], request))
                    collector._changed.notify_all()
                reply = ExportMetricsServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None: ...

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def wait_for(self, condition: Callable[[list[Received]], bool], timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition(self.received):
                left = deadline - time.monotonic()
                assert left > 0, f"collector got {len(self.received)} requests, not what was awaited"
                self._changed.wait(left)
            return list(self.received)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    yield server
    server.close()


def otel(collector: Collector, **fields: Any) -> OtelSettings:
    return OtelSettings(**{"enabled": True, "endpoint": collector.url, **fields})


def test_series_and_text() -> None:
    assert service_graph_series(EDGES) == {
        ("frontend", "shop", "cartservice", "shop", ""): 5,
        ("frontend", "shop", "api.example.com", "", "virtual_node"): 2,
        ("cartservice", "shop", "arn:aws:s3:::orders", "", "virtual_node"): 1,
    }
    lines = service_graph_text(EDGES).splitlines()
    assert lines[0].startswith("# HELP traces_service_graph_request_total")
    assert lines[1] == "# TYPE traces_service_graph_request_total counter"
    assert (
        'traces_service_graph_request_total{client="frontend",client_namespace="shop",'
        'server="cartservice",server_namespace="shop"} 5'
    ) in lines
    assert any(
        'server="api.example.com"' in line and 'connection_type="virtual_node"' in line for line in lines
    )
    assert len(lines) == 5
    odd = Edge(WorkloadIdentity("n", 'a"b\\c'), CART, 1.0, 2.0)
    assert 'client="a\\"b\\\\c"' in service_graph_text([odd])
    renamed = service_graph_text(EDGES, "edges_seen_total").splitlines()
    assert renamed[1] == "# TYPE edges_seen_total counter" and all(
        line.startswith(("# HELP edges_seen_total", "# TYPE edges_seen_total", "edges_seen_total{"))
        for line in renamed
    )


def test_edges_between_the_same_pair_are_summed() -> None:
    other_kind = WorkloadIdentity("shop", "cartservice", "StatefulSet")
    text = service_graph_text([EDGES[0], Edge(FRONTEND, other_kind, 1.0, 2.0, count=4)])
    assert text.splitlines()[2].endswith("} 9")


def test_metrics_route_serves_the_text_it_is_given() -> None:
    from starlette.requests import Request

    route = metrics_route(lambda: service_graph_text(EDGES, "custom_total") + skipped_text({}, 0))
    assert route.path == "/metrics" and route.methods is not None and "GET" in route.methods
    scope = {"type": "http", "method": "GET", "path": "/metrics", "headers": [], "query_string": b""}
    response = asyncio.run(route.endpoint(Request(scope)))  # type: ignore[misc, arg-type]
    assert response.body.decode() == service_graph_text(EDGES, "custom_total") + skipped_text({}, 0)
    assert "custom_total{" in response.body.decode()
    assert response.media_type.startswith("text/plain")


def test_disabled_builds_no_exporter_and_sends_nothing(collector: Collector) -> None:
    built: list[str] = []
    off = (
        OtelSettings(endpoint=collector.url),
        load(MapperSettings, [], {"MAPPER_OTEL_ENDPOINT": collector.url}).otel,
    )
    for settings in off:
        assert settings.enabled is False
        export = ServiceGraphExport.from_settings(
            settings, lambda: EDGES, exporter_factory=lambda url: built.append(url) or otlp_exporter(url)
        )
        assert export is None
    assert built == [] and collector.received == []


def test_enabled_pushes_the_counter_with_names_to_the_collector(collector: Collector) -> None:
    built: list[str] = []
    export = ServiceGraphExport.from_settings(
        otel(collector, endpoint=collector.url + "/"),
        lambda: EDGES,
        exporter_factory=lambda url: built.append(url) or otlp_exporter(url),
        export_interval=3600,  # only the flush at shutdown exports
    )
    assert export is not None and built == [f"{collector.url}/v1/metrics"]
    export.shutdown()
    export.shutdown()
    [received] = collector.wait_for(lambda got: len(got) >= 1)
    assert received.path == "/v1/metrics" and received.content_type == "application/x-protobuf"
    assert received.resource()["service.name"] == "network-mapper"
    assert received.points() == {
        SERVICE_GRAPH_METRIC: {
            (
                ("client", "frontend"),
                ("client_namespace", "shop"),
                ("server", "cartservice"),
                ("server_namespace", "shop"),
            ): 5,
            (
                ("client", "frontend"),
                ("client_namespace", "shop"),
                ("connection_type", "virtual_node"),
                ("server", "api.example.com"),
                ("server_namespace", ""),
            ): 2,
            (
                ("client", "cartservice"),
                ("client_namespace", "shop"),
                ("connection_type", "virtual_node"),
                ("server", "arn:aws:s3:::orders"),
                ("server_namespace", ""),
            ): 1,
        }
    }


def test_periodic_exports_follow_the_store_under_the_configured_name(collector: Collector) -> None:
    edges = [EDGES[0]]
    env = {
        "MAPPER_OTEL_ENABLED": "true",
        "MAPPER_OTEL_ENDPOINT": collector.url,
        "MAPPER_OTEL_METRIC_NAME": "edges_total",
    }
    settings = load(MapperSettings, [], env).otel
    export = ServiceGraphExport.from_settings(settings, lambda: list(edges), export_interval=0.05)
    assert export is not None
    try:

        def cart_count(got: list[Received], value: int) -> bool:
            return any(value in r.points().get("edges_total", {}).values() for r in got)

        collector.wait_for(lambda got: cart_count(got, 5))
        edges[0] = Edge(FRONTEND, CART, 1.0, 3.0, frozenset({Method.TCP}), count=9)  # the store moved on
        collector.wait_for(lambda got: cart_count(got, 9))
    finally:
        export.shutdown()
    assert all(set(r.points()) <= {"edges_total"} for r in collector.received)


def test_otel_settings_load_and_check() -> None:
    assert load(MapperSettings, [], {}).otel == OtelSettings(
        False, "traces_service_graph_request_total", "http://localhost:4318", 60.0
    )
    flags = ["--otel-enabled=true", "--otel-metric-name", "edges_total", "--otel-endpoint", "https://c:4318"]
    assert load(MapperSettings, [*flags, "--otel-export-interval", "15"], {}).otel == OtelSettings(
        True, "edges_total", "https://c:4318", 15.0
    )
    for env, named in [
        ({"MAPPER_OTEL_METRIC_NAME": "edges.total"}, "MAPPER_OTEL_METRIC_NAME.*metric name"),
        ({"MAPPER_OTEL_METRIC_NAME": "9edges"}, "MAPPER_OTEL_METRIC_NAME"),
        ({"MAPPER_OTEL_ENDPOINT": "collector:4318"}, "MAPPER_OTEL_ENDPOINT.*http"),
        ({"MAPPER_OTEL_ENDPOINT": "ftp://collector"}, "MAPPER_OTEL_ENDPOINT"),
        ({"MAPPER_OTEL_ENABLED": "yes please"}, "MAPPER_OTEL_ENABLED"),
        ({"MAPPER_OTEL_EXPORT_INTERVAL": "0"}, "MAPPER_OTEL_EXPORT_INTERVAL"),
    ]:
        with pytest.raises(SettingsError, match=named):
            load(MapperSettings, [], env)
