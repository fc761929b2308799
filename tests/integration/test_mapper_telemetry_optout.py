"""Telemetry opt-outs, with the real mapper process (issue 6).

The real cloud (tests/support/local_cloud.py: CloudApp over SQLite, served on 127.0.0.1, with a
tenant and a cluster whose ingest token the mapper uploads with) is both where the mapper uploads
edges and the telemetry endpoint (``/v1/metrics``, the default: the cloud URL); every request it
answers is recorded. The mapper runs against the sandbox API server with ``--upload-interval 1
--telemetry-interval 1``, is reported edges, uploads them, stays up for at least one and a half
telemetry intervals (the window in which an opted-in mapper exports), and is stopped with SIGTERM
(shutdown flushes telemetry).

* ``--telemetry-enabled=false`` and ``OTTERIZE_TELEMETRY_ENABLED=false``: not one metrics
  request (every request the cloud got was an ingest, and it kept no telemetry), while the
  uploads arrive (the cloud was reachable all along).
* helm ``--set global.telemetry.enabled=false``: the chart (helm/network-mapper) is rendered
  offline with that value, and the mapper runs with the plain ``value`` variables of the rendered
  Deployment's mapper container (Secret references are the cloud's ingest token): not one
  metrics request either.
* telemetry on: metrics arrive, as OTLP protobuf, with the counters and the hashed cluster id
  (which the cloud files them under), and not one workload, pod, Service or namespace name, nor
  the raw ``kube-system`` UID.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from google.protobuf.message import Message  # type: ignore[import-untyped, unused-ignore]
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from tests.support.chart import CHART
from tests.support.local_cloud import LocalCloud
from tests.support.mapper_process import (
    CART,
    FRONTEND,
    REDIS,
    Cluster,
    MapperProcess,
    running_cluster,
    wait_until,
)

CONNECTIONS = [(FRONTEND, CART, 7070), (CART, REDIS, 6379)]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path) as running:
        yield running


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[LocalCloud]:
    with LocalCloud(tmp_path / "cloud") as server:
        yield server


def strings(message: Message) -> Iterator[str]:
    """Every string value anywhere in a protobuf message (keys, values, names, descriptions)."""
    for _, value in message.ListFields():
        single = isinstance(value, Message | str | bytes | int | float)  # else a repeated field
        values = [value] if single else value
        for item in values:
            if isinstance(item, Message):
                yield from strings(item)
            elif isinstance(item, str):
                yield item
            elif isinstance(item, bytes):
                yield item.decode("utf-8", "replace")


def metric_names(request: ExportMetricsServiceRequest) -> set[str]:
    return {
        metric.name
        for resource in request.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }


def resource_attributes(request: ExportMetricsServiceRequest) -> dict[str, str]:
    return {
        attribute.key: attribute.value.string_value
        for resource in request.resource_metrics
        for attribute in resource.resource.attributes
    }


def run_mapper(
    cluster: Cluster, cloud: LocalCloud, directory: Path, args: list[str], env: dict[str, str]
) -> MapperProcess:
    """Run the mapper until its edges reached the cloud, then SIGTERM it; returns it stopped."""
    mapper = MapperProcess(
        cluster,
        directory,
        ["--cloud-url", cloud.url, "--upload-interval", "1", "--telemetry-interval", "1", *args],
        env={"NETWORK_MAPPER_CLOUD_TOKEN": cloud.token, **env},
    )
    with mapper:
        started = time.monotonic()
        mapper.report_tcp(CONNECTIONS)
        expected = {(src, dst) for src, dst, _ in CONNECTIONS}
        mapper.wait_for_edges(expected)
        wait_until(
            lambda: expected <= set(cloud.edges()), 15, f"the upload to reach the cloud:\n{mapper.log()}"
        )
        # The observation window: at least one telemetry interval (and a half) with the mapper up,
        # in which an opted-in mapper exports (test_telemetry_on_...), before shutdown.
        time.sleep(max(0.0, 1.5 - (time.monotonic() - started)))
        status = mapper.stop()
    assert status == 0, f"the mapper exited with {status} on SIGTERM:\n{mapper.log()}"
    return mapper


def assert_uploads_only(cloud: LocalCloud) -> None:
    """Not one telemetry request reached the cloud, which was reachable: the uploads did."""
    assert cloud.metrics_requests() == []
    assert cloud.telemetry() == []  # and the cloud kept none
    assert cloud.batches(), "no upload arrived"
    sent = {(e.method, e.path) for e in cloud.exchanges()}
    uploads = {("POST", "/v1/ingest"), ("POST", "/v1/coverage"), ("POST", "/v1/snapshots")}
    assert ("POST", "/v1/ingest") in sent and sent <= uploads, sent  # the uploads only


@pytest.mark.parametrize(
    ("args", "env"),
    [
        pytest.param(["--telemetry-enabled=false"], {}, id="flag"),
        pytest.param([], {"OTTERIZE_TELEMETRY_ENABLED": "false"}, id="env"),
    ],
)
def test_opted_out_not_one_telemetry_request_leaves(
    cluster: Cluster, cloud: LocalCloud, tmp_path: Path, args: list[str], env: dict[str, str]
) -> None:
    mapper = run_mapper(cluster, cloud, tmp_path, args, env)
    assert_uploads_only(cloud)
    assert "telemetry on" not in mapper.log()


def helm_mapper_env(values: dict[str, Any]) -> dict[str, str]:
    """The plain ``value`` variables of the mapper container in the chart rendered with ``values``."""
    rendered = helm.Chart.load(CHART).render(values, name="network-mapper", namespace="network-mapper")
    manifests = [text for path, text in rendered.items() if not path.endswith("NOTES.txt")]
    docs = [doc for text in manifests for doc in yaml.safe_load_all(text) if doc]
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    [mapper] = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "mapper"]
    return {e["name"]: e["value"] for e in mapper["env"] if "value" in e}


def test_helm_set_telemetry_disabled_not_one_telemetry_request_leaves(
    cluster: Cluster, cloud: LocalCloud, tmp_path: Path
) -> None:
    values = {"global": {"telemetry": {"enabled": False}}, "cloud": {"url": cloud.url, "token": cloud.token}}
    env = helm_mapper_env(values)
    assert env["OTTERIZE_TELEMETRY_ENABLED"] == "false", env
    assert env["NETWORK_MAPPER_CLOUD_URL"] == cloud.url, env
    # The chart's default (telemetry on) differs only in that variable: the opt-out is the chart's.
    default = helm_mapper_env({"cloud": {"url": cloud.url, "token": cloud.token}})
    assert default == {**env, "OTTERIZE_TELEMETRY_ENABLED": "true"}, default

    mapper = run_mapper(cluster, cloud, tmp_path, [], env)
    assert_uploads_only(cloud)
    assert "telemetry on" not in mapper.log()


def test_telemetry_on_carries_counts_and_never_names(
    cluster: Cluster, cloud: LocalCloud, tmp_path: Path
) -> None:
    mapper = run_mapper(cluster, cloud, tmp_path, [], {})
    requests = cloud.metrics_requests()
    assert requests, f"no telemetry arrived:\n{mapper.log()}"
    assert all(request.status == 200 for request in requests)
    assert cloud.batches(), "no upload arrived"
    decoded = []
    for request in requests:
        headers = {k.lower(): v for k, v in request.headers.items()}
        assert headers.get("content-type") == "application/x-protobuf"
        message = ExportMetricsServiceRequest()
        message.ParseFromString(request.body)
        decoded.append(message)
    names = set().union(*(metric_names(m) for m in decoded))
    assert {"components_started", "workloads_seen", "edges"} <= names, names
    hashed = hashlib.sha256(cluster.kube_system_uid.encode()).hexdigest()
    kept = cloud.telemetry()  # the cloud read the hashed id from each payload and filed it under it
    assert len(kept) == len(requests) and {cluster_hash for cluster_hash, _, _ in kept} == {hashed}
    for message in decoded:
        assert resource_attributes(message).get("cluster.id") == hashed
        assert resource_attributes(message).get("service.name") == "network-mapper"
    # The last export (at shutdown) has seen the edges: 3 workloads, 2 TCP edges.
    last = decoded[-1]
    gauges = {
        metric.name: [
            (p.as_int, {a.key: a.value.string_value for a in p.attributes}) for p in metric.gauge.data_points
        ]
        for resource in last.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.HasField("gauge")
    }
    assert gauges.get("workloads_seen") == [(3, {})], gauges
    assert gauges.get("edges") == [(2, {"method": "tcp"})], gauges

    secrets = [*cluster.names, cluster.kube_system_uid]
    for request, message in zip(requests, decoded, strict=True):
        values = list(strings(message))
        assert {"cluster.id", "components_started", "mapper"} <= set(values)  # the walk sees them
        for secret in secrets:
            assert secret.encode() not in request.body, f"{secret!r} in a telemetry body"
            leaked = [v for v in values if secret in v]
            assert not leaked, f"{secret!r} in telemetry values {leaked}"
