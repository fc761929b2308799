"""``network-mapper-mapper``: the in-cluster service that turns observations into the map.

Wiring, in the order data flows: the Kubernetes API → :mod:`.kube` (list+watch) →
:mod:`.cluster` (time-indexed state) → :mod:`.resolver` (observations → edges, fed by the
API's ingest workers) → :mod:`.store` (SQLite in ``--data-dir``) → :mod:`.api` (GraphQL at
``--listen-address``). Settings: :class:`agent.settings.MapperSettings`.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

import uvicorn
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException

from agent.mapper.api import create_app
from agent.mapper.cluster import ClusterState
from agent.mapper.kube import ClusterWatcher
from agent.mapper.resolver import Resolver
from agent.mapper.store import EdgeStore, StoreError
from agent.settings import MapperSettings, SettingsError, load, parse_address

log = logging.getLogger("agent.mapper")


def _api_client(settings: MapperSettings) -> object:
    if settings.kubeconfig:
        return k8s_config.new_client_from_config(config_file=settings.kubeconfig)
    k8s_config.load_incluster_config()
    from kubernetes import client

    return client.ApiClient()


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stdout
    )
    try:
        settings = load(MapperSettings, argv, os.environ, prog="network-mapper-mapper")
        host, port = parse_address(settings.listen_address)
    except (SettingsError, ValueError) as exc:
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
    app = create_app(settings, store, Resolver(state, settings.cluster_domain), state)
    log.info(
        "mapper serving address=%s data_dir=%s edges=%d",
        settings.listen_address,
        settings.data_dir,
        store.count(),
    )
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        watcher.stop()
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
