"""Telemetry: off means no exporter is ever built and no request leaves; on, the real OTLP/HTTP
payloads (received by the real cloud's ``/v1/metrics``, tests/support/local_cloud.py) carry counts,
the hashed cluster id and closed attribute values, never a name or the raw UID; and the settings'
flag/env forms. (The service graph, which carries names, is test_mapper_servicegraph.py's.)"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from agent.mapper import telemetry as telemetry_module
from agent.mapper.settings import MapperSettings, TelemetrySettings, UploadSettings
from agent.mapper.telemetry import (
    NoTelemetry,
    StoreCounts,
    Telemetry,
    cluster_id,
    otlp_exporter,
)
from agent.model import AwsTarget, Edge, InternetTarget, Method, WorkloadIdentity
from agent.settings import load
from tests.support.local_cloud import LocalCloud

UID = "5c1a6a4e-3f0e-4b8e-9d0a-1234567890ab"
FRONTEND = WorkloadIdentity("shop", "frontend", "Deployment")
CART = WorkloadIdentity("shop", "cartservice", "Deployment")
EDGES = [
    Edge(FRONTEND, CART, 1.0, 2.0, frozenset({Method.TCP, Method.DNS}), count=5),
    Edge(FRONTEND, InternetTarget("api.example.com", ("93.184.216.34",), 443), 1.0, 2.0, count=2),
    Edge(CART, AwsTarget("arn:aws:s3:::orders"), 1.0, 2.0, frozenset({Method.AWS})),
]


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[LocalCloud]:
    with LocalCloud(tmp_path / "cloud") as server:
        yield server


def settings(cloud_url: str = "", **telemetry: Any) -> MapperSettings:
    """Mapper settings with the upload's ``cloud_url`` and ``telemetry`` group fields."""
    return MapperSettings(
        upload=UploadSettings(cloud_url=cloud_url), telemetry=TelemetrySettings(**telemetry)
    )


def decode(cloud: LocalCloud) -> list[ExportMetricsServiceRequest]:
    requests = []
    for recorded in cloud.metrics_requests():
        request = ExportMetricsServiceRequest()
        request.ParseFromString(recorded.body)
        requests.append(request)
    return requests


def test_disabled_builds_no_exporter_and_sends_nothing(cloud: LocalCloud) -> None:
    built: list[str] = []

    def factory(endpoint: str) -> Any:
        built.append(endpoint)
        return otlp_exporter(endpoint)

    for off in (
        settings(cloud.url, enabled=False),
        load(MapperSettings, ["--telemetry-enabled=false", f"--cloud-url={cloud.url}"], {}),
        load(
            MapperSettings, [], {"OTTERIZE_TELEMETRY_ENABLED": "false", "NETWORK_MAPPER_CLOUD_URL": cloud.url}
        ),
    ):
        assert off.telemetry.enabled is False
        tel = Telemetry.from_settings(off, UID, exporter_factory=factory, export_interval=0.05)
        assert isinstance(tel, NoTelemetry)
        tel.component_started("mapper")
        tel.exported("yaml")
        tel.observe(lambda: 3, lambda: {"tcp": 1})
        tel.shutdown()
    assert built == []
    assert cloud.count() == 0
    assert cloud.telemetry() == []


def test_no_url_means_no_telemetry() -> None:
    assert isinstance(Telemetry.from_settings(settings(), UID), NoTelemetry)


def test_enabled_payloads_carry_counts_and_never_names(cloud: LocalCloud) -> None:
    built: list[str] = []

    def factory(endpoint: str) -> Any:
        built.append(endpoint)
        return otlp_exporter(endpoint)

    tel = Telemetry.from_settings(
        settings(cloud.url + "/"), UID, exporter_factory=factory, export_interval=3600
    )
    assert isinstance(tel, Telemetry)
    assert built == [f"{cloud.url}/v1/metrics"]
    counts = StoreCounts(lambda: EDGES)
    tel.observe(counts.workloads, counts.edges_by_method)
    tel.component_started("mapper")
    tel.component_started("mapper")
    tel.component_started("frontend")  # not a component: reported as "other", never as given
    tel.exported("yaml")
    tel.exported("shop/frontend")
    tel.shutdown()  # flushes
    tel.shutdown()

    received = cloud.metrics_requests()
    raw = b"".join(r.body for r in received)
    assert raw, "nothing was exported"
    assert all(r.status == 200 for r in received)
    # The cloud kept each payload as sent, filed under the hashed cluster id it read from it.
    kept = cloud.telemetry()
    assert sorted(body for _, _, body in kept) == sorted(r.body for r in received)
    assert {cluster for cluster, _, _ in kept} == {cluster_id(UID)}
    for secret in (UID, "frontend", "cartservice", "shop", "api.example.com", "orders", "93.184"):
        assert secret.encode() not in raw, secret
    resource: dict[str, str] = {}
    points: dict[str, list[tuple[dict[str, str], float]]] = {}
    for request in decode(cloud):
        for rm in request.resource_metrics:
            resource.update({a.key: a.value.string_value for a in rm.resource.attributes})
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    data = metric.sum.data_points if metric.HasField("sum") else metric.gauge.data_points
                    for p in data:
                        attrs = {a.key: a.value.string_value for a in p.attributes}
                        points.setdefault(metric.name, []).append((attrs, p.as_int or p.as_double))
    assert resource["service.name"] == "network-mapper"
    assert resource["cluster.id"] == hashlib.sha256(UID.encode()).hexdigest() == cluster_id(UID)
    assert sorted(points["components_started"], key=repr) == [
        ({"component": "mapper"}, 2),
        ({"component": "other"}, 1),
    ]
    assert sorted(points["exports"], key=repr) == [({"format": "other"}, 1), ({"format": "yaml"}, 1)]
    assert points["workloads_seen"] == [({}, 2)]
    assert sorted(points["edges"], key=repr) == [
        ({"method": "aws"}, 1),
        ({"method": "dns"}, 1),
        ({"method": "tcp"}, 1),
    ]
    allowed = telemetry_module.COMPONENTS | telemetry_module.FORMATS | telemetry_module.METHODS | {"other"}
    assert all(v in allowed for series in points.values() for attrs, _ in series for v in attrs.values())


def test_telemetry_url_overrides_the_cloud_url(cloud: LocalCloud) -> None:
    built: list[str] = []
    tel = Telemetry.from_settings(
        settings("http://cloud.invalid", url=cloud.url),
        "",
        exporter_factory=lambda endpoint: built.append(endpoint) or otlp_exporter(endpoint),
    )
    tel.shutdown()
    assert built == [f"{cloud.url}/v1/metrics"]
    assert cluster_id("") == "unknown"
