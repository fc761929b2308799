"""``network-mapper-mapper``: the in-cluster service that turns observations into the map.

Wiring, in the order data flows: the Kubernetes API → :mod:`.kube` (list+watch) →
:mod:`.cluster` (time-indexed state) → :mod:`.resolver` (observations → edges, fed by the
API's ingest workers) → :mod:`.store` (SQLite in ``--data-dir``; :mod:`.snapshots` keeps saved
maps in the same file and takes one every ``--snapshot-interval``; :mod:`.retention` hides edges
not seen for ``--edge-retention`` from the API and prunes those not seen for ``--edge-prune-after``)
→ :mod:`.api` (GraphQL at ``--listen-address``), and :mod:`.uploader` / :mod:`.telemetry` to the
cloud; the service graph (:mod:`.servicegraph`) at ``GET /metrics`` and, with ``--otel-enabled``,
over OTLP to the user's collector. Settings: :class:`agent.settings.MapperSettings`, checked when
loaded; each part gets its own group (the cluster state the workload-name annotation, the resolver
what to record).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType

import uvicorn
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException

from agent.anonymize import AnonymizationKeyError, Anonymizer, load_key
from agent.httpdeadline import read_deadline_protocol
from agent.mapper import gcpolicy
from agent.mapper.api import create_app
from agent.mapper.cluster import ClusterState
from agent.mapper.coverage import Coverage
from agent.mapper.kube import ClusterWatcher
from agent.mapper.resolver import Resolver
from agent.mapper.retention import Pruner, RecentEdges
from agent.mapper.servicegraph import (
    ServiceGraphExport,
    dropped_text,
    metrics_route,
    service_graph_text,
    skipped_text,
)
from agent.mapper.settings import (
    AnonymizationSettings,
    ClusterSettings,
    MapperSettings,
    RetentionSettings,
    UploadSettings,
)
from agent.mapper.snapshots import AutoSnapshots, SnapshotStore
from agent.mapper.store import EdgeStore, StoreError
from agent.mapper.telemetry import StoreCounts, Telemetry
from agent.mapper.uploader import HttpCloudClient, Uploader
from agent.settings import SettingsError, load

log = logging.getLogger("agent.mapper")


def _api_client(settings: ClusterSettings) -> object:
    if settings.kubeconfig:
        return k8s_config.new_client_from_config(config_file=settings.kubeconfig)
    k8s_config.load_incluster_config()
    from kubernetes import client

    return client.ApiClient()


def _anonymizer(settings: AnonymizationSettings) -> Anonymizer | None:
    """The uploads' anonymizer when ``--anonymize``; AnonymizationKeyError without a usable key."""
    return Anonymizer(load_key(settings.key_file)) if settings.enabled else None


def _uploader(
    settings: UploadSettings,
    store: EdgeStore,
    anonymizer: Anonymizer | None,
    snapshots: SnapshotStore,
    retention: RetentionSettings,
    *,
    coverage: Coverage | None,
) -> Uploader | None:
    """The cloud uploader (edges, snapshots, coverage), started, when ``--cloud-url`` is set."""
    if not settings.cloud_url:
        return None
    client = HttpCloudClient(settings.cloud_url, settings.cloud_token, timeout=settings.request_timeout)
    log.info("uploading edges to %s (anonymized=%s)", settings.cloud_url, anonymizer is not None)
    return Uploader(
        store,
        client,
        interval=settings.interval,
        granularity=settings.granularity,
        visible_for=retention.visible_for,
        anonymizer=anonymizer,
        retry_attempts=settings.retry_attempts,
        retry_initial=settings.retry_initial,
        retry_max=settings.retry_max,
        snapshots=snapshots,
        coverage=coverage.document if coverage is not None else None,
    ).start()


def _schedules(
    settings: MapperSettings, store: EdgeStore, snapshots: SnapshotStore, state: ClusterState
) -> tuple[AutoSnapshots, Pruner]:
    """The store's own schedules, started: automatic snapshots, and pruning of old edges."""
    retention = settings.retention
    return (
        AutoSnapshots(snapshots, state.facts, settings.snapshots.interval).start(),
        Pruner(store, retention.prune_after, retention.prune_interval).start(),
    )


def _already_stopping(signum: int, frame: FrameType | None) -> None:
    log.info("stopping on %s", signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stdout
    )
    try:
        settings = load(MapperSettings, argv, os.environ, prog="network-mapper-mapper")
        anonymizer = _anonymizer(settings.anonymization)
    except (SettingsError, AnonymizationKeyError) as exc:
        print(f"network-mapper-mapper: {exc}", file=sys.stderr)
        return 2
    try:
        store = EdgeStore.in_dir(settings.store.data_dir)
    except StoreError as exc:
        print(f"network-mapper-mapper: {exc}", file=sys.stderr)
        return 1
    try:
        api_client = _api_client(settings.cluster)
    except (ConfigException, OSError) as exc:
        print(f"network-mapper-mapper: no Kubernetes API ({exc}); set --kubeconfig", file=sys.stderr)
        return 1
    state = ClusterState(workload_annotation=settings.cluster.workload_name_annotation)
    watcher = ClusterWatcher(api_client, state).start()
    if not watcher.wait_synced(60):
        # Serve anyway: reports queue up and resolve once the state is there.
        log.warning("cluster state not synced after 60s; serving while it catches up")
    # The first sync leaves the bulk of the process's long-lived objects (the listed pods,
    # services, their dicts and indexes, imported modules); freezing them keeps every later full
    # GC collection from re-traversing them while the resolver allocates edges at ~100k/s.
    gcpolicy.settle()
    recording = settings.recording
    resolver = Resolver(
        state,
        settings.cluster.domain,
        settings.cluster.internal_cidrs,
        exclude_namespaces=recording.exclude_namespaces,
        internet_reporting=recording.internet_traffic_reporting,
    )
    uploads = bool(settings.upload.cloud_url)
    recent = RecentEdges(store, settings.retention.visible_for)  # the one place queries read edges from
    snapshots = SnapshotStore(
        store, limit=settings.snapshots.limit, auto_limit=settings.snapshots.auto, edges=recent.edges
    )
    app = create_app(
        settings.api,
        recent,
        resolver,
        state,
        positions=store.positions if uploads else None,
        facts=state,
        snapshots=snapshots,
        coverage=Coverage(
            settings.api.coverage_stale_after,
            nodes=state.node_names,
            dropped=resolver.dropped,
        ),
    )
    # Users' own collectors scrape the service graph here (names stay in-cluster).
    api_state, metric = app.state.api, settings.otel.metric_name
    app.router.routes.append(
        metrics_route(
            lambda: (
                service_graph_text(store.edges(), metric)
                + skipped_text(api_state.skipped, store.unreadable)
                + dropped_text(resolver.dropped())
            )
        )
    )
    log.info(
        "mapper serving address=%s data_dir=%s edges=%d",
        settings.api.listen_address,
        settings.store.data_dir,
        store.count(),
    )
    telemetry = Telemetry.from_settings(settings, state.namespace_uid("kube-system"))
    counts = StoreCounts(store.edges)
    telemetry.observe(counts.workloads, counts.edges_by_method)
    telemetry.component_started("mapper")
    graph_export = ServiceGraphExport.from_settings(settings.otel, store.edges)
    uploader = _uploader(
        settings.upload, store, anonymizer, snapshots, settings.retention, coverage=api_state.coverage
    )
    schedules = _schedules(settings, store, snapshots, state)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal to the handler
    # it found; the default one would kill the process before the cleanup below (the uploader's
    # stop, telemetry's and the service graph's last exports, the store's close) and exit 143.
    # Shutdown is under way then.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _already_stopping)
    try:
        host, port = settings.api.address
        # A request must arrive whole within request_timeout: uvicorn alone waits forever for a
        # stalled one, and a pod that opens connections and sends nothing would hold them.
        http = read_deadline_protocol(settings.api.request_timeout, "httptools")
        uvicorn.run(app, host=host, port=port, log_level="warning", http=http, loop="uvloop")
    finally:
        for schedule in schedules:
            schedule.stop()
        if uploader is not None:
            uploader.stop()
        telemetry.shutdown()
        if graph_export is not None:
            graph_export.shutdown()
        watcher.stop()
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
