"""The Istio sidecar stand-in's telemetry: peer identities and the Prometheus series Envoy exports.

Data in: one :meth:`Telemetry.record` per HTTP request a sidecar (:mod:`sandbox.istiosidecar`)
forwarded — who called whom (the two :class:`Peer` identities: the sidecar's own, and the one the
other side's sidecar sent in its peer-metadata header, Istio's metadata exchange), the method,
the path with its query string, the response code and the sizes. Data out: the Prometheus text
exposition format, written by ``prometheus_client`` (a collector in a registry of its own, so no
``_created`` series appear — Envoy has none), which ``GET :15090/stats/prometheus`` serves:
``istio_requests_total`` with Istio's standard labels plus the ``request_method`` and
``request_path`` tag overrides the Otterize chart installs, ``istio_request_duration_milliseconds``,
``istio_request_bytes`` and ``istio_response_bytes`` histograms, and a few ``envoy_*`` series.
Counts live in memory: they start at 0 with the process, as Envoy's do. Pure but for the clock
read by ``envoy_server_uptime``.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

PEER_METADATA_HEADER = "x-envoy-peer-metadata"
PEER_METADATA_ID_HEADER = "x-envoy-peer-metadata-id"
UNKNOWN = "unknown"

# Istio's standard labels, in the order Envoy's stats print them.
STANDARD_LABELS = (
    "reporter",
    "source_workload",
    "source_canonical_service",
    "source_canonical_revision",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_service_name",
    "destination_service_namespace",
    "destination_cluster",
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
)
# The Telemetry tag overrides on REQUEST_COUNT (``request.method``, ``request.path``).
REQUEST_LABELS = (*STANDARD_LABELS, "request_method", "request_path")
DURATION_BUCKETS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
BYTES_BUCKETS = (1, 10, 100, 1000, 10000, 100000, 1000000, 10000000)


@dataclass(frozen=True, slots=True)
class Peer:
    """A workload's identity, as the metadata exchange carries it between sidecars."""

    workload: str
    namespace: str
    app: str
    canonical_service: str
    service_account: str
    canonical_revision: str = "latest"
    cluster: str = "Kubernetes"
    trust_domain: str = "cluster.local"

    @property
    def principal(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"


def encode_peer(peer: Peer) -> str:
    """The peer-metadata header's value (Istio sends a base64 protobuf Struct; this, base64 JSON)."""
    return base64.b64encode(json.dumps(asdict(peer), sort_keys=True).encode()).decode()


def decode_peer(value: str | None) -> Peer | None:
    """The identity in a peer-metadata header; None when absent or unreadable."""
    if not value:
        return None
    try:
        return Peer(**json.loads(base64.b64decode(value, validate=True)))
    except (binascii.Error, ValueError, TypeError):
        return None


def service_fqdn(host: str, namespace: str, cluster_domain: str) -> str:
    """The Service a request's host names, as a full name (``server`` → ``server.<ns>.svc.<domain>``)."""
    name = host.partition(":")[0].rstrip(".")
    parts = name.split(".")
    if len(parts) == 1:
        return f"{name}.{namespace}.svc.{cluster_domain}"
    if len(parts) == 2:
        return f"{name}.svc.{cluster_domain}"
    if len(parts) == 3 and parts[2] == "svc":
        return f"{name}.{cluster_domain}"
    return name


def request_labels(
    reporter: str,
    source: Peer | None,
    destination: Peer | None,
    destination_service: str,
    *,
    response_code: int,
    response_flags: str = "-",
) -> dict[str, str]:
    """Istio's standard labels of one request (``unknown`` for a side without metadata)."""
    src_principal = source.principal if source else UNKNOWN
    dst_principal = destination.principal if destination else UNKNOWN
    service_parts = destination_service.split(".")
    # Only the server side sees the connection's TLS; a peer with metadata came over mTLS.
    security = ("mutual_tls" if source else "none") if reporter == "destination" else UNKNOWN
    return {
        "reporter": reporter,
        "source_workload": source.workload if source else UNKNOWN,
        "source_canonical_service": source.canonical_service if source else UNKNOWN,
        "source_canonical_revision": source.canonical_revision if source else UNKNOWN,
        "source_workload_namespace": source.namespace if source else UNKNOWN,
        "source_principal": src_principal,
        "source_app": source.app if source else UNKNOWN,
        "source_version": UNKNOWN,
        "source_cluster": source.cluster if source else UNKNOWN,
        "destination_workload": destination.workload if destination else UNKNOWN,
        "destination_workload_namespace": destination.namespace if destination else UNKNOWN,
        "destination_principal": dst_principal,
        "destination_app": destination.app if destination else UNKNOWN,
        "destination_version": UNKNOWN,
        "destination_service": destination_service,
        "destination_canonical_service": destination.canonical_service if destination else UNKNOWN,
        "destination_canonical_revision": destination.canonical_revision if destination else UNKNOWN,
        "destination_service_name": service_parts[0],
        "destination_service_namespace": service_parts[1] if len(service_parts) > 1 else UNKNOWN,
        "destination_cluster": destination.cluster if destination else UNKNOWN,
        "request_protocol": "http",
        "response_code": str(response_code),
        "grpc_response_status": "",
        "response_flags": response_flags,
        "connection_security_policy": security,
    }


class _Histogram:
    """One series' cumulative bucket counts (the last is +Inf) and sum; updated under a lock."""

    __slots__ = ("buckets", "total")

    def __init__(self, size: int) -> None:
        self.buckets = [0] * size
        self.total = 0.0

    def observe(self, bounds: tuple[float, ...], value: float) -> None:
        for i, bound in enumerate(bounds):
            if value <= bound:
                self.buckets[i] += 1
        self.buckets[-1] += 1  # +Inf
        self.total += value

    def cumulative(self, bounds: tuple[float, ...]) -> list[tuple[str, float]]:
        return [*((str(float(b)), float(n)) for b, n in zip(bounds, self.buckets, strict=False))] + [
            ("+Inf", float(self.buckets[-1]))
        ]


class Telemetry(Collector):
    """The sidecar's counters, exposed through a registry of their own."""

    def __init__(self, started: float | None = None) -> None:
        self._lock = threading.Lock()
        self._started = time.time() if started is None else started
        self._requests: dict[tuple[str, ...], int] = {}
        self._durations: dict[tuple[str, ...], _Histogram] = {}
        self._request_bytes: dict[tuple[str, ...], _Histogram] = {}
        self._response_bytes: dict[tuple[str, ...], _Histogram] = {}
        self._cluster_cx: dict[str, int] = {}
        self._cluster_rq: dict[tuple[str, str], int] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def record(
        self,
        labels: dict[str, str],
        method: str,
        path: str,
        *,
        millis: float,
        request_bytes: int,
        response_bytes: int,
        upstream_cluster: str,
    ) -> None:
        """Count one request (``labels`` from :func:`request_labels`)."""
        standard = tuple(labels[k] for k in STANDARD_LABELS)
        key = (*standard, method, path)
        with self._lock:
            self._requests[key] = self._requests.get(key, 0) + 1
            for table, bounds, value in (
                (self._durations, DURATION_BUCKETS, millis),
                (self._request_bytes, BYTES_BUCKETS, float(request_bytes)),
                (self._response_bytes, BYTES_BUCKETS, float(response_bytes)),
            ):
                table.setdefault(standard, _Histogram(len(bounds) + 1)).observe(bounds, value)
            self._cluster_cx[upstream_cluster] = self._cluster_cx.get(upstream_cluster, 0) + 1
            rq = (upstream_cluster, labels["response_code"])
            self._cluster_rq[rq] = self._cluster_rq.get(rq, 0) + 1

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily | GaugeMetricFamily]:
        with self._lock:
            requests = CounterMetricFamily(
                "istio_requests", "Requests handled by this proxy.", labels=REQUEST_LABELS
            )
            for key, count in sorted(self._requests.items()):
                requests.add_metric(list(key), count)
            families: list[CounterMetricFamily | HistogramMetricFamily | GaugeMetricFamily] = [requests]
            for name, table, bounds in (
                ("istio_request_duration_milliseconds", self._durations, DURATION_BUCKETS),
                ("istio_request_bytes", self._request_bytes, BYTES_BUCKETS),
                ("istio_response_bytes", self._response_bytes, BYTES_BUCKETS),
            ):
                histogram = HistogramMetricFamily(name, f"{name} of requests.", labels=STANDARD_LABELS)
                for standard, h in sorted(table.items()):
                    histogram.add_metric(list(standard), h.cumulative(bounds), h.total)
                families.append(histogram)
            cx = CounterMetricFamily(
                "envoy_cluster_upstream_cx", "Upstream connections.", labels=["cluster_name"]
            )
            for cluster, count in sorted(self._cluster_cx.items()):
                cx.add_metric([cluster], count)
            rq = CounterMetricFamily(
                "envoy_cluster_upstream_rq", "Upstream requests.", labels=["response_code", "cluster_name"]
            )
            for (cluster, code), count in sorted(self._cluster_rq.items()):
                rq.add_metric([code, cluster], count)
            families += [cx, rq]
        live = GaugeMetricFamily("envoy_server_live", "1 while the server is live.", value=1)
        uptime = GaugeMetricFamily(
            "envoy_server_uptime", "Seconds since start.", value=int(time.time() - self._started)
        )
        yield from (*families, live, uptime)

    def exposition(self) -> bytes:
        """``GET /stats/prometheus``'s body."""
        return generate_latest(self.registry)
