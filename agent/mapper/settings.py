"""The mapper's settings, grouped by concern (api, store, snapshots, retention, upload, anonymization,
telemetry, cluster, recording, OpenTelemetry), built once by :func:`agent.settings.load` from flags over
environment over defaults and passed down to :mod:`agent.mapper` and its stages."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from agent.settings import (
    CheckedSettings,
    SettingsError,
    annotation_key,
    cidrs,
    http_url,
    kubeconfig_setting,
    metric_name,
    namespaces,
    parse_address,
    setting,
)


@dataclasses.dataclass(frozen=True, slots=True)
class ApiSettings(CheckedSettings):
    """The GraphQL API (agent.mapper.api): where it listens, who may report, how much it takes."""

    listen_address: str = setting(
        "0.0.0.0:9090", "MAPPER_LISTEN_ADDRESS", "host:port of the GraphQL API", check=parse_address
    )
    token: str = setting("", "NETWORK_MAPPER_TOKEN", "agent token that report mutations must carry")
    open_queries: bool = setting(True, "MAPPER_OPEN_QUERIES", "serve queries without the token")
    max_body_bytes: int = setting(16 << 20, "MAPPER_MAX_BODY_BYTES", "largest request body accepted")
    queue_batches: int = setting(256, "MAPPER_QUEUE_BATCHES", "report batches waiting for resolution")
    request_timeout: float = setting(
        30.0, "MAPPER_REQUEST_TIMEOUT", "seconds a request may take to arrive (stalled ones are closed)"
    )
    coverage_stale_after: float = setting(
        90.0,
        "MAPPER_COVERAGE_STALE_AFTER",
        "seconds after which a node whose sniffer has not reported is uncovered, a component silent",
    )

    @property
    def address(self) -> tuple[str, int]:
        """``listen_address`` as (host, port)."""
        return parse_address(self.listen_address)


@dataclasses.dataclass(frozen=True, slots=True)
class StoreSettings(CheckedSettings):
    """The edge store (agent.mapper.store)."""

    data_dir: Path = setting(
        Path("/var/lib/network-mapper"), "MAPPER_DATA_DIR", "where the edge store (SQLite) lives"
    )


@dataclasses.dataclass(frozen=True, slots=True)
class SnapshotSettings(CheckedSettings):
    """Snapshots of the map in the edge store (agent.mapper.snapshots): saved by users, and taken
    automatically."""

    limit: int = setting(
        50, "MAPPER_SNAPSHOT_LIMIT", "user snapshots kept; saving one more deletes the oldest saved"
    )
    interval: float = setting(
        3600.0, "MAPPER_SNAPSHOT_INTERVAL", "seconds between automatic snapshots (auto-<time>)"
    )
    auto: int = setting(
        48, "MAPPER_AUTO_SNAPSHOTS", "automatic snapshots kept; taking one more deletes the oldest"
    )


DAY = 86400.0


@dataclasses.dataclass(frozen=True, slots=True)
class RetentionSettings(CheckedSettings):
    """How long edges stay (agent.mapper.retention): shown while recent, then hidden, then deleted."""

    visible_for: float = setting(
        30 * DAY,
        "MAPPER_EDGE_RETENTION",
        "seconds an edge stays in the map after it was last seen (helm mapper.retention.visibleFor):"
        " older edges leave the queries, hence list and every export, and the upload's live set",
    )
    prune_after: float = setting(
        90 * DAY,
        "MAPPER_EDGE_PRUNE_AFTER",
        "seconds after an edge was last seen before it is deleted from the store (helm"
        " mapper.retention.pruneAfter); at least MAPPER_EDGE_RETENTION",
    )
    prune_interval: float = setting(
        3600.0,
        "MAPPER_EDGE_PRUNE_INTERVAL",
        "seconds between deletions of the edges past MAPPER_EDGE_PRUNE_AFTER",
    )

    def __post_init__(self) -> None:
        CheckedSettings.__post_init__(self)  # not super(): slotted dataclasses are rebuilt classes
        if self.prune_after < self.visible_for:
            raise SettingsError(
                f"--edge-prune-after (env MAPPER_EDGE_PRUNE_AFTER) {self.prune_after:g} is shorter than"
                f" --edge-retention (env MAPPER_EDGE_RETENTION) {self.visible_for:g}: edges would be"
                " deleted while still shown"
            )


@dataclasses.dataclass(frozen=True, slots=True)
class UploadSettings(CheckedSettings):
    """Uploads of edges to the cloud backend (agent.mapper.uploader)."""

    cloud_url: str = setting(
        "", "NETWORK_MAPPER_CLOUD_URL", "the cloud backend's base URL (empty: no upload)"
    )
    cloud_token: str = setting("", "NETWORK_MAPPER_CLOUD_TOKEN", "this cluster's ingest token for the cloud")
    interval: float = setting(
        60.0, "NETWORK_MAPPER_UPLOAD_INTERVAL", "seconds between uploads of changed edges"
    )
    granularity: float = setting(
        3600.0,
        "NETWORK_MAPPER_UPLOAD_GRANULARITY",
        "seconds within which a seen edge counts as live: a live edge is uploaded once and kept current"
        " by one heartbeat per this period; an edge idle for longer is re-sent once, as not live",
    )
    retry_attempts: int = setting(
        5,
        "NETWORK_MAPPER_UPLOAD_RETRY_ATTEMPTS",
        "attempts per batch while the cloud is unavailable, before the cycle gives up until the next",
    )
    retry_initial: float = setting(
        1.0,
        "NETWORK_MAPPER_UPLOAD_RETRY_INITIAL",
        "seconds before the first retry, doubling after each (plus up to as much again at random)",
    )
    retry_max: float = setting(30.0, "NETWORK_MAPPER_UPLOAD_RETRY_MAX", "most seconds between two retries")
    request_timeout: float = setting(
        30.0, "NETWORK_MAPPER_UPLOAD_REQUEST_TIMEOUT", "seconds per request to the cloud"
    )


@dataclasses.dataclass(frozen=True, slots=True)
class AnonymizationSettings(CheckedSettings):
    """Anonymized uploads (agent.anonymize): names replaced by keyed hashes before they leave."""

    enabled: bool = setting(
        False, "NETWORK_MAPPER_ANONYMIZE", "upload keyed hashes instead of names and namespaces"
    )
    key_file: str = setting(
        "", "NETWORK_MAPPER_ANONYMIZE_KEY_FILE", "file holding the anonymization key (required to anonymize)"
    )

    def __post_init__(self) -> None:
        if self.enabled and not self.key_file:
            raise SettingsError(
                "--anonymize (env NETWORK_MAPPER_ANONYMIZE) needs --anonymize-key-file"
                " (env NETWORK_MAPPER_ANONYMIZE_KEY_FILE): a Secret mounted as a file"
            )


@dataclasses.dataclass(frozen=True, slots=True)
class TelemetrySettings(CheckedSettings):
    """Anonymous usage counts (agent.mapper.telemetry); any of the opt-outs turns them off."""

    enabled: bool = setting(True, "OTTERIZE_TELEMETRY_ENABLED", "send anonymous usage counts (never names)")
    url: str = setting("", "NETWORK_MAPPER_TELEMETRY_URL", "where telemetry goes (empty: the cloud URL)")
    interval: float = setting(300.0, "NETWORK_MAPPER_TELEMETRY_INTERVAL", "seconds between telemetry exports")


WORKLOAD_NAME_ANNOTATION = "intents.otterize.com/workload-name"  # Otterize's default key


@dataclasses.dataclass(frozen=True, slots=True)
class ClusterSettings(CheckedSettings):
    """The cluster (agent.mapper.kube, agent.mapper.cluster, agent.mapper.resolver): how to reach
    it, its names and ranges."""

    kubeconfig: str = kubeconfig_setting()
    domain: str = setting("cluster.local", "CLUSTER_DOMAIN", "the cluster's DNS domain")
    pod_cidrs: tuple[str, ...] = setting(
        (),
        "MAPPER_POD_CIDRS",
        "the cluster's pod CIDRs, comma-separated (e.g. 10.244.0.0/16): unknown IPs in them are"
        " never Internet edges (empty: unknown)",
        check=cidrs,
    )
    service_cidrs: tuple[str, ...] = setting(
        (),
        "MAPPER_SERVICE_CIDRS",
        "the cluster's Service (ClusterIP) CIDRs, comma-separated (e.g. 10.96.0.0/12): unknown IPs"
        " in them are never Internet edges (empty: unknown)",
        check=cidrs,
    )
    workload_name_annotation: str = setting(
        WORKLOAD_NAME_ANNOTATION,
        "MAPPER_WORKLOAD_NAME_ANNOTATION",
        "pod annotation naming the pod's workload (helm global.serviceNameOverrideAnnotationName), read"
        " after the otterize/service-name label and before the deprecated intents.otterize.com/service-name",
        check=annotation_key,
    )

    @property
    def internal_cidrs(self) -> tuple[str, ...]:
        """The pod and service CIDRs: unknown IPs in them are never Internet edges."""
        return self.pod_cidrs + self.service_cidrs


@dataclasses.dataclass(frozen=True, slots=True)
class RecordingSettings(CheckedSettings):
    """What the resolver (agent.mapper.resolver) records: edges it drops are counted by reason."""

    exclude_namespaces: tuple[str, ...] = setting(
        (),
        "MAPPER_EXCLUDE_NAMESPACES",
        "namespaces whose traffic is not recorded, comma-separated (helm mapper.excludeNamespaces): an"
        " edge whose client or server is in one is dropped",
        check=namespaces,
    )
    internet_traffic_reporting: bool = setting(
        True,
        "MAPPER_INTERNET_TRAFFIC_REPORTING",
        "record traffic to the Internet (helm enableInternetFacingTrafficReporting); false drops it",
    )


@dataclasses.dataclass(frozen=True, slots=True)
class OtelSettings(CheckedSettings):
    """The service graph pushed over OTLP/HTTP to the user's own collector
    (agent.mapper.servicegraph): unlike telemetry, it carries names."""

    enabled: bool = setting(
        False,
        "MAPPER_OTEL_ENABLED",
        "export the service-graph counter over OTLP/HTTP (helm opentelemetry.enable)",
    )
    metric_name: str = setting(
        "traces_service_graph_request_total",
        "MAPPER_OTEL_METRIC_NAME",
        "the service-graph counter's name, over OTLP and at GET /metrics (helm opentelemetry.metricName)",
        check=metric_name,
    )
    endpoint: str = setting(
        "http://localhost:4318",
        "MAPPER_OTEL_ENDPOINT",
        "the collector's OTLP/HTTP base URL: metrics go to ENDPOINT/v1/metrics",
        check=http_url,
    )
    export_interval: float = setting(
        60.0, "MAPPER_OTEL_EXPORT_INTERVAL", "seconds between exports of the service-graph counter"
    )


@dataclasses.dataclass(frozen=True, slots=True)
class MapperSettings:
    """The mapper: cluster state, resolution, the edge store, its snapshots and retention, the
    GraphQL API, uploads, telemetry, the service graph over OTLP."""

    api: ApiSettings = dataclasses.field(default_factory=ApiSettings)
    store: StoreSettings = dataclasses.field(default_factory=StoreSettings)
    snapshots: SnapshotSettings = dataclasses.field(default_factory=SnapshotSettings)
    retention: RetentionSettings = dataclasses.field(default_factory=RetentionSettings)
    upload: UploadSettings = dataclasses.field(default_factory=UploadSettings)
    anonymization: AnonymizationSettings = dataclasses.field(default_factory=AnonymizationSettings)
    telemetry: TelemetrySettings = dataclasses.field(default_factory=TelemetrySettings)
    cluster: ClusterSettings = dataclasses.field(default_factory=ClusterSettings)
    recording: RecordingSettings = dataclasses.field(default_factory=RecordingSettings)
    otel: OtelSettings = dataclasses.field(default_factory=OtelSettings)
