"""``network-mapper-mapper``: the in-cluster service that turns observations into the map.

Wiring, in the order data flows: the Kubernetes API → :mod:`.kube` (list+watch) →
:mod:`.cluster` (time-indexed state) → :mod:`.resolver` (observations → edges, fed by the
API's ingest workers) → :mod:`.store` (SQLite in ``--data-dir``) → :mod:`.api` (GraphQL at
``--listen-address``). Settings: :class:`agent.settings.MapperSettings`.
"""

from __future__ import annotations

import gc
import ipaddress
import logging
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType

import uvicorn
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException

from agent.mapper.anonymize import AnonymizationKeyError, Anonymizer, load_key
from agent.mapper.api import create_app
from agent.mapper.cluster import ClusterState
from agent.mapper.kube import ClusterWatcher
from agent.mapper.resolver import Resolver
from agent.mapper.store import EdgeStore, StoreError
from agent.mapper.telemetry import StoreCounts, Telemetry, metrics_route
from agent.mapper.uploader import HttpCloudClient, Uploader
from agent.settings import MapperSettings, SettingsError, load, parse_address

log = logging.getLogger("agent.mapper")


def _api_client(settings: MapperSettings) -> object:
    if settings.kubeconfig:
        return k8s_config.new_client_from_config(config_file=settings.kubeconfig)
    k8s_config.load_incluster_config()
    from kubernetes import client

    return client.ApiClient()


def _internal_cidrs(settings: MapperSettings) -> list[str]:
    """The pod and service CIDRs from the settings (comma-separated); ValueError names a bad one."""
    cidrs = [c.strip() for c in f"{settings.pod_cidrs},{settings.service_cidrs}".split(",") if c.strip()]
    for cidr in cidrs:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ValueError(f"not a CIDR in --pod-cidrs/--service-cidrs: {cidr!r}") from None
    return cidrs


def _telemetry_interval(settings: MapperSettings) -> float:
    """Seconds between telemetry exports; ValueError unless more than 0."""
    if not settings.telemetry_interval > 0:
        raise ValueError(f"--telemetry-interval must be more than 0, not {settings.telemetry_interval}")
    return settings.telemetry_interval


def _anonymizer(settings: MapperSettings) -> Anonymizer | None:
    """The uploads' anonymizer when ``--anonymize``; AnonymizationKeyError without a usable key."""
    if not settings.anonymize:
        return None
    if not settings.anonymize_key_file:
        raise AnonymizationKeyError("--anonymize needs --anonymize-key-file (a Secret mounted as a file)")
    return Anonymizer(load_key(settings.anonymize_key_file))


def _uploader(settings: MapperSettings, store: EdgeStore, anonymizer: Anonymizer | None) -> Uploader | None:
    """The cloud uploader, started, when ``--cloud-url`` is set."""
    if not settings.cloud_url:
        return None
    client = HttpCloudClient(settings.cloud_url, settings.cloud_token, timeout=30.0)
    log.info("uploading edges to %s (anonymized=%s)", settings.cloud_url, anonymizer is not None)
    return Uploader(
        store,
        client,
        interval=settings.upload_interval,
        granularity=settings.upload_granularity,
        anonymizer=anonymizer,
    ).start()


def _already_stopping(signum: int, frame: FrameType | None) -> None:
    log.info("stopping on %s", signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stdout
    )
    try:
        settings = load(MapperSettings, argv, os.environ, prog="network-mapper-mapper")
        host, port = parse_address(settings.listen_address)
        internal_cidrs = _internal_cidrs(settings)
        telemetry_interval = _telemetry_interval(settings)
    except (SettingsError, ValueError) as exc:
        print(f"network-mapper-mapper: {exc}", file=sys.stderr)
        return 2
    try:
        anonymizer = _anonymizer(settings)
    except AnonymizationKeyError as exc:
        print(f"network-mapper-mapper: {exc}", file=sys.stderr)
        return 2
    try:
        store = EdgeStore.in_dir(settings.data_dir)
    except StoreError as exc:
        print(f"network-mapper-mapper: {exc}", file=sys.stderr)
        return 1
    try:
        api_client = _api_client(settings)
    except (ConfigException, OSError) as exc:
        print(f"network-mapper-mapper: no Kubernetes API ({exc}); set --kubeconfig", file=sys.stderr)
        return 1
    state = ClusterState()
    watcher = ClusterWatcher(api_client, state).start()
    if not watcher.wait_synced(60):
        # Serve anyway: reports queue up and resolve once the state is there.
        log.warning("cluster state not synced after 60s; serving while it catches up")
    # The first sync leaves the bulk of the process's long-lived objects (the listed pods,
    # services, their dicts and indexes, imported modules); freezing them keeps every later full
    # GC collection from re-traversing them while the resolver allocates edges at ~100k/s.
    gc.freeze()
    resolver = Resolver(state, settings.cluster_domain, internal_cidrs)
    app = create_app(settings, store, resolver, state)
    # Users' own collectors scrape the service graph here (names stay in-cluster).
    app.router.routes.append(metrics_route(store.edges))
    log.info(
        "mapper serving address=%s data_dir=%s edges=%d",
        settings.listen_address,
        settings.data_dir,
        store.count(),
    )
    telemetry = Telemetry.from_settings(
        settings, state.namespace_uid("kube-system"), export_interval=telemetry_interval
    )
    counts = StoreCounts(store.edges)
    telemetry.observe(counts.workloads, counts.edges_by_method)
    telemetry.component_started("mapper")
    uploader = _uploader(settings, store, anonymizer)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal to the handler
    # it found; the default one would kill the process before the cleanup below (the uploader's
    # stop, telemetry's last export, the store's close) and exit 143. Shutdown is under way then.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _already_stopping)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        if uploader is not None:
            uploader.stop()
        telemetry.shutdown()
        watcher.stop()
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
