"""ClusterWatcher against the in-process sandbox API server, through the real `kubernetes` client."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from agent.mapper.cluster import ClusterState
from agent.mapper.kube import ClusterWatcher
from agent.model import WorkloadIdentity
from sandbox.apiserver import ApiServer
from tests.support.mapper_process import wait_until

NS = "mapper-kube"
WAIT = 10.0  # seconds for the watcher to see a change


def make_client(server: ApiServer, path: Path) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(
        config_file=str(server.write_kubeconfig(path)), client_configuration=configuration
    )
    return client.ApiClient(configuration)


@pytest.fixture
def server() -> Iterator[ApiServer]:
    api_server = ApiServer()
    api_server.start()
    yield api_server
    api_server.stop()


@pytest.fixture
def api(server: ApiServer, tmp_path: Path) -> Iterator[client.ApiClient]:
    with make_client(server, tmp_path / "kubeconfig") as api_client:
        client.CoreV1Api(api_client).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=NS))
        )
        yield api_client


@pytest.fixture
def state() -> ClusterState:
    return ClusterState()


@pytest.fixture
def watcher(api: client.ApiClient, state: ClusterState) -> Iterator[ClusterWatcher]:
    w = ClusterWatcher(api, state, watch_timeout=1, backoff_initial=0.05, backoff_max=0.5).start()
    assert w.wait_synced(10)
    yield w
    w.stop()


def ref(obj: Any, kind: str, api_version: str) -> client.V1OwnerReference:
    return client.V1OwnerReference(
        api_version=api_version, kind=kind, name=obj.metadata.name, uid=obj.metadata.uid, controller=True
    )


def create_pod(
    api: client.ApiClient, name: str, ip: str, owner: Any = None, labels: dict[str, str] | None = None
) -> Any:
    body = client.V1Pod(
        metadata=client.V1ObjectMeta(
            name=name, labels=labels or {}, owner_references=[owner] if owner else None
        ),
        spec=client.V1PodSpec(containers=[client.V1Container(name="main", image="demo")], node_name="node-1"),
        status=client.V1PodStatus(phase="Running", pod_ip=ip, host_ip="192.168.50.1"),
    )
    return client.CoreV1Api(api).create_namespaced_pod(NS, body)


def create_deployment(api: client.ApiClient, name: str) -> Any:
    apps = client.AppsV1Api(api)
    selector = client.V1LabelSelector(match_labels={"app": name})
    template = client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels={"app": name}),
        spec=client.V1PodSpec(containers=[client.V1Container(name="main", image="demo")]),
    )
    deployment = apps.create_namespaced_deployment(
        NS,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1DeploymentSpec(selector=selector, template=template),
        ),
    )
    return apps.create_namespaced_replica_set(
        NS,
        client.V1ReplicaSet(
            metadata=client.V1ObjectMeta(
                name=f"{name}-7f8d", owner_references=[ref(deployment, "Deployment", "apps/v1")]
            ),
            spec=client.V1ReplicaSetSpec(selector=selector, template=template),
        ),
    )


def identity_at(state: ClusterState, ip: str, t: float | None = None) -> WorkloadIdentity | None:
    pod = state.pod_at(ip, time.time() if t is None else t)
    return pod.identity if pod is not None else None


def test_syncs_owners_pods_services_and_endpoints(api: client.ApiClient, state: ClusterState) -> None:
    rs = create_deployment(api, "web")
    create_pod(api, "web-7f8d-a", "10.244.5.1", ref(rs, "ReplicaSet", "apps/v1"), {"app": "web"})
    core = client.CoreV1Api(api)
    svc = core.create_namespaced_service(
        NS,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1ServiceSpec(selector={"app": "web"}, ports=[client.V1ServicePort(port=80)]),
        ),
    )
    address = client.V1EndpointAddress(
        ip="10.244.5.1", target_ref=client.V1ObjectReference(kind="Pod", name="web-7f8d-a", namespace=NS)
    )
    core.create_namespaced_endpoints(
        NS,
        client.V1Endpoints(
            metadata=client.V1ObjectMeta(name="web"), subsets=[client.V1EndpointSubset(addresses=[address])]
        ),
    )
    watcher = ClusterWatcher(api, state).start()
    try:
        assert watcher.wait_synced(10)
        web = WorkloadIdentity(NS, "web", "Deployment")
        assert identity_at(state, "10.244.5.1") == web
        service = state.service_at_ip(svc.spec.cluster_ip, time.time())
        assert service is not None and service.name == "web"
        assert state.service_targets(service) == (web,)
        assert state.namespace_uid("kube-system")
        assert state.labels_of(web) == {"app": "web"}
        assert state.is_node_ip("192.168.50.1")
    finally:
        watcher.stop()
    assert not any(t.is_alive() for t in watcher._threads)


def test_watch_follows_delete_and_recreate_with_the_same_ip(
    api: client.ApiClient, state: ClusterState, watcher: ClusterWatcher
) -> None:
    core = client.CoreV1Api(api)
    rs = create_deployment(api, "cart")
    create_pod(api, "cart-7f8d-a", "10.244.5.2", ref(rs, "ReplicaSet", "apps/v1"))
    wait_until(
        lambda: identity_at(state, "10.244.5.2") == WorkloadIdentity(NS, "cart", "Deployment"),
        WAIT,
        "cart pod",
    )
    while_cart = time.time()
    core.delete_namespaced_pod("cart-7f8d-a", NS)
    wait_until(lambda: identity_at(state, "10.244.5.2") is None, WAIT, "cart pod deleted")
    time.sleep(1.1)  # creation timestamps are whole seconds
    create_pod(api, "debug", "10.244.5.2")
    wait_until(
        lambda: identity_at(state, "10.244.5.2") == WorkloadIdentity(NS, "debug", "Pod"), WAIT, "debug pod"
    )
    assert identity_at(state, "10.244.5.2", while_cart) == WorkloadIdentity(NS, "cart", "Deployment")


def test_relists_after_410_and_stays_correct(
    api: client.ApiClient, server: ApiServer, state: ClusterState, watcher: ClusterWatcher
) -> None:
    create_pod(api, "gone", "10.244.5.3")
    wait_until(lambda: identity_at(state, "10.244.5.3") is not None, WAIT, "pod seen")
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="bump")))
    server.store.delete("pods", NS, "gone")  # possibly never seen as an event: compacted right away
    server.compact()
    wait_until(lambda: watcher.stats["relist:pods"] >= 1, WAIT, "pods re-listed after 410")
    assert watcher.stats["expired:pods"] >= 1
    wait_until(lambda: identity_at(state, "10.244.5.3") is None, WAIT, "deleted pod gone after relist")
    create_pod(api, "after", "10.244.5.4")
    wait_until(
        lambda: identity_at(state, "10.244.5.4") == WorkloadIdentity(NS, "after", "Pod"),
        WAIT,
        "watch resumed",
    )


def test_reconnects_with_backoff_until_the_server_comes_up(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ApiServer(port=port)
    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{port}"
    state = ClusterState()
    with client.ApiClient(configuration) as api_client:
        watcher = ClusterWatcher(
            api_client,
            state,
            kinds=["pods", "namespaces"],
            watch_timeout=1,
            backoff_initial=0.05,
            backoff_max=0.2,
        ).start()
        try:
            assert not watcher.wait_synced(0.5)
            assert watcher.stats["error:pods"] >= 1
            server.start()
            assert watcher.wait_synced(10)
            assert state.namespace_uid("default")
        finally:
            watcher.stop()
            server.stop()
