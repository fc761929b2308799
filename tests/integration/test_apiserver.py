"""The sandbox API server driven by real clients: the Python `kubernetes` client, kubectl, requests."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from sandbox.apiserver import CONTEXT_NAME, ApiServer
from tests.support.mapper_process import wait_until

REPO = Path(__file__).resolve().parents[2]
NS = "shop"
WAIT = 10.0  # seconds for the API server's answers to change


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ApiServer]:
    (tmp_path / "logs").mkdir()
    api_server = ApiServer(log_dir=tmp_path / "logs")
    api_server.start()
    yield api_server
    api_server.stop()


@pytest.fixture
def kubeconfig(server: ApiServer, tmp_path: Path) -> Path:
    return server.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def api_client(kubeconfig: Path) -> Iterator[client.ApiClient]:
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    with client.ApiClient(configuration) as api:
        yield api


@pytest.fixture
def v1(api_client: client.ApiClient) -> client.CoreV1Api:
    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
    return core


def make_pod(name: str, ip: str, labels: dict[str, str] | None = None, owner: Any = None) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(
            name=name, labels=labels or {}, owner_references=[owner] if owner else None
        ),
        spec=client.V1PodSpec(containers=[client.V1Container(name="main", image="demo")], node_name="node-1"),
        status=client.V1PodStatus(phase="Running", pod_ip=ip),
    )


def owner_ref(obj: Any, kind: str, api_version: str) -> client.V1OwnerReference:
    return client.V1OwnerReference(
        api_version=api_version, kind=kind, name=obj.metadata.name, uid=obj.metadata.uid, controller=True
    )


def kubectl(kubeconfig: Path, tmp_path: Path, *args: str) -> str:
    result = subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "kcache"), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_preloaded_objects_and_stable_kube_system_uid(v1: client.CoreV1Api) -> None:
    names = {n.metadata.name: n.metadata.uid for n in v1.list_namespace().items}
    assert {"default", "kube-system", "kube-public", NS} <= set(names)
    assert names["kube-system"] == ApiServer(cluster_name="sandbox").stable_uid("Namespace", "kube-system")
    assert names["kube-system"] != ApiServer(cluster_name="other").stable_uid("Namespace", "kube-system")
    kubernetes_svc = v1.read_namespaced_service("kubernetes", "default")
    assert kubernetes_svc.spec.cluster_ip == "10.96.0.1"
    assert kubernetes_svc.spec.ports[0].port == 443


def test_create_and_list_every_resource_kind_with_the_real_client(
    api_client: client.ApiClient, v1: client.CoreV1Api
) -> None:
    apps, batch = client.AppsV1Api(api_client), client.BatchV1Api(api_client)
    discovery_api = client.DiscoveryV1Api(api_client)
    selector = client.V1LabelSelector(match_labels={"app": "web"})
    template = client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels={"app": "web"}),
        spec=client.V1PodSpec(containers=[client.V1Container(name="main", image="demo")]),
    )
    deployment = apps.create_namespaced_deployment(
        NS,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1DeploymentSpec(selector=selector, template=template),
        ),
    )
    replicaset = apps.create_namespaced_replica_set(
        NS,
        client.V1ReplicaSet(
            metadata=client.V1ObjectMeta(
                name="web-5d9c", owner_references=[owner_ref(deployment, "Deployment", "apps/v1")]
            ),
            spec=client.V1ReplicaSetSpec(selector=selector, template=template),
        ),
    )
    created_pod = v1.create_namespaced_pod(
        NS,
        make_pod(
            "web-5d9c-x1", "10.244.0.11", {"app": "web"}, owner_ref(replicaset, "ReplicaSet", "apps/v1")
        ),
    )
    assert created_pod.status.pod_ip == "10.244.0.11"  # the sandbox keeps status given at create
    assert created_pod.metadata.owner_references[0].uid == replicaset.metadata.uid
    job_template = client.V1JobTemplateSpec(
        spec=client.V1JobSpec(
            template=client.V1PodTemplateSpec(
                spec=client.V1PodSpec(
                    restart_policy="Never", containers=[client.V1Container(name="main", image="demo")]
                )
            )
        )
    )
    cronjob = batch.create_namespaced_cron_job(
        NS,
        client.V1CronJob(
            metadata=client.V1ObjectMeta(name="report"),
            spec=client.V1CronJobSpec(schedule="*/5 * * * *", job_template=job_template),
        ),
    )
    batch.create_namespaced_job(
        NS,
        client.V1Job(
            metadata=client.V1ObjectMeta(
                name="report-28000", owner_references=[owner_ref(cronjob, "CronJob", "batch/v1")]
            ),
            spec=job_template.spec,
        ),
    )
    service = v1.create_namespaced_service(
        NS,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1ServiceSpec(selector={"app": "web"}, ports=[client.V1ServicePort(port=80)]),
        ),
    )
    assert service.spec.cluster_ip.startswith("10.96.") and service.spec.cluster_ip not in (
        "10.96.0.0",
        "10.96.0.1",
    )
    v1.create_namespaced_endpoints(
        NS,
        client.V1Endpoints(
            metadata=client.V1ObjectMeta(name="web"),
            subsets=[
                client.V1EndpointSubset(
                    addresses=[client.V1EndpointAddress(ip="10.244.0.11")],
                    ports=[client.CoreV1EndpointPort(port=80)],
                )
            ],
        ),
    )
    discovery_api.create_namespaced_endpoint_slice(
        NS,
        client.V1EndpointSlice(
            metadata=client.V1ObjectMeta(name="web-abc", labels={"kubernetes.io/service-name": "web"}),
            address_type="IPv4",
            endpoints=[client.V1Endpoint(addresses=["10.244.0.11"])],
            ports=[client.DiscoveryV1EndpointPort(port=80, protocol="TCP")],
        ),
    )

    pods = v1.list_pod_for_all_namespaces()
    assert [p.metadata.name for p in pods.items] == ["web-5d9c-x1"]
    assert int(pods.metadata.resource_version) >= int(created_pod.metadata.resource_version)
    assert {s.metadata.name for s in v1.list_service_for_all_namespaces().items} == {"kubernetes", "web"}
    assert v1.list_namespaced_endpoints(NS).items[0].subsets[0].addresses[0].ip == "10.244.0.11"
    assert apps.list_deployment_for_all_namespaces().items[0].spec.replicas == 1
    assert apps.list_namespaced_replica_set(NS).items[0].metadata.owner_references[0].kind == "Deployment"
    assert batch.list_namespaced_job(NS).items[0].metadata.owner_references[0].name == "report"
    assert batch.list_cron_job_for_all_namespaces().items[0].spec.schedule == "*/5 * * * *"
    slices = discovery_api.list_namespaced_endpoint_slice(NS, label_selector="kubernetes.io/service-name=web")
    assert slices.items[0].endpoints[0].addresses == ["10.244.0.11"]

    # Deleting the Deployment garbage-collects its ReplicaSet and that ReplicaSet's pod.
    apps.delete_namespaced_deployment("web", NS)
    assert apps.list_namespaced_replica_set(NS).items == []
    assert v1.list_namespaced_pod(NS).items == []


def test_updates_patches_and_the_status_subresource(v1: client.CoreV1Api) -> None:
    v1.create_namespaced_pod(NS, make_pod("a", "10.244.0.5", {"app": "web"}))
    merged = v1.patch_namespaced_pod("a", NS, {"metadata": {"labels": {"tier": "front"}}})
    assert merged.metadata.labels == {"app": "web", "tier": "front"}
    patched = v1.patch_namespaced_pod(
        "a", NS, [{"op": "remove", "path": "/metadata/labels/app"}]
    )  # json-patch
    assert patched.metadata.labels == {"tier": "front"}
    ignored = v1.patch_namespaced_pod("a", NS, {"status": {"phase": "Failed"}})
    assert ignored.status.phase == "Running"  # status only changes through /status
    updated = v1.patch_namespaced_pod_status("a", NS, {"status": {"phase": "Succeeded"}})
    assert updated.status.phase == "Succeeded"
    current = v1.read_namespaced_pod("a", NS)
    current.metadata.annotations = {"note": "x"}
    replaced = v1.replace_namespaced_pod("a", NS, current)
    assert replaced.metadata.annotations == {"note": "x"}
    with pytest.raises(ApiException) as caught:
        v1.replace_namespaced_pod("a", NS, current)  # stale resourceVersion
    assert caught.value.status == 409


def test_deleting_a_namespace_deletes_its_contents(v1: client.CoreV1Api) -> None:
    v1.create_namespaced_pod(NS, make_pod("a", "10.244.0.5"))
    v1.create_namespaced_service(
        NS, client.V1Service(metadata=client.V1ObjectMeta(name="s"), spec=client.V1ServiceSpec())
    )
    v1.delete_namespace(NS)
    assert v1.list_namespaced_pod(NS).items == [] and v1.list_namespaced_service(NS).items == []
    assert NS not in {n.metadata.name for n in v1.list_namespace().items}
    with pytest.raises(ApiException) as caught:
        v1.delete_namespace("default")
    assert caught.value.status == 403


def test_label_and_field_selectors_on_list(v1: client.CoreV1Api) -> None:
    v1.create_namespaced_pod(NS, make_pod("web-1", "10.244.0.5", {"app": "web", "tier": "front"}))
    v1.create_namespaced_pod(NS, make_pod("web-2", "10.244.0.6", {"app": "web", "canary": "true"}))
    v1.create_namespaced_pod(NS, make_pod("db-1", "10.244.0.7", {"app": "db", "tier": "back"}))

    def names(**kwargs: Any) -> list[str]:
        return [p.metadata.name for p in v1.list_namespaced_pod(NS, **kwargs).items]

    assert names(label_selector="app=web,!canary") == ["web-1"]
    assert names(label_selector="tier in (front,back)") == ["db-1", "web-1"]
    assert names(label_selector="app notin (web)") == ["db-1"]
    assert names(field_selector="status.podIP=10.244.0.6") == ["web-2"]
    assert names(field_selector="metadata.name!=web-1,spec.nodeName=node-1") == ["db-1", "web-2"]
    with pytest.raises(ApiException) as caught:
        v1.list_namespaced_pod(NS, field_selector="spec.unknown=x")
    assert caught.value.status == 400


def test_watch_sees_deleted_then_added_when_a_pod_is_recreated(v1: client.CoreV1Api) -> None:
    v1.create_namespaced_pod(NS, make_pod("web-1", "10.244.0.5", {"app": "web"}))
    events: queue.Queue[tuple[str, str, str]] = queue.Queue()
    watcher, stopping = watch.Watch(), threading.Event()

    def run() -> None:
        try:
            for event in watcher.stream(v1.list_namespaced_pod, NS, timeout_seconds=20):
                pod = event["object"]
                events.put((event["type"], pod.metadata.name, pod.status.pod_ip))
        except Exception as error:
            # Watch.stop() shuts the client's own socket down, so urllib3 may raise
            # "Response ended prematurely" afterwards; anything before stop is a failure.
            if not stopping.is_set():
                events.put(("ERROR", repr(error), ""))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert events.get(timeout=10) == ("ADDED", "web-1", "10.244.0.5")  # initial state, as in the real server
    v1.delete_namespaced_pod("web-1", NS)
    v1.create_namespaced_pod(NS, make_pod("web-1", "10.244.0.9", {"app": "web"}))
    assert events.get(timeout=10) == ("DELETED", "web-1", "10.244.0.5")
    assert events.get(timeout=10) == ("ADDED", "web-1", "10.244.0.9")
    stopping.set()
    watcher.stop()
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_watch_from_a_compacted_resource_version_gets_410_and_recovers_by_relisting(
    server: ApiServer, v1: client.CoreV1Api
) -> None:
    v1.create_namespaced_pod(NS, make_pod("a", "10.244.0.5"))
    listed = v1.list_namespaced_pod(NS)
    old_rv = listed.metadata.resource_version
    v1.create_namespaced_pod(NS, make_pod("b", "10.244.0.6"))
    server.compact()

    # The informer loop: watch from the last RV; on 410, re-list and watch from the new RV.
    cache = {p.metadata.name for p in listed.items}
    resource_version, expirations = old_rv, 0
    while "c" not in cache:
        try:
            for event in watch.Watch().stream(
                v1.list_namespaced_pod, NS, resource_version=resource_version, timeout_seconds=5
            ):
                name = event["object"].metadata.name
                (cache.discard if event["type"] == "DELETED" else cache.add)(name)
                resource_version = event["object"].metadata.resource_version
                if "c" in cache:
                    break
        except ApiException as error:
            assert error.status == 410 and expirations == 0
            expirations += 1
            relisted = v1.list_namespaced_pod(NS)
            cache = {p.metadata.name for p in relisted.items}
            resource_version = relisted.metadata.resource_version
            v1.create_namespaced_pod(NS, make_pod("c", "10.244.0.7"))  # arrives through the new watch
    assert expirations == 1
    assert cache == {"a", "b", "c"}


def test_raw_watch_wire_format(server: ApiServer, v1: client.CoreV1Api) -> None:
    rv = v1.list_namespaced_pod(NS).metadata.resource_version
    v1.create_namespaced_pod(NS, make_pod("a", "10.244.0.5"))
    url = f"{server.url}/api/v1/namespaces/{NS}/pods"
    with requests.get(
        url, params={"watch": "true", "resourceVersion": rv, "timeoutSeconds": "1"}, stream=True
    ) as r:
        assert r.headers["Transfer-Encoding"] == "chunked"
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert [(e["type"], e["object"]["kind"], e["object"]["metadata"]["name"]) for e in lines] == [
        ("ADDED", "Pod", "a")
    ]
    server.compact()
    with requests.get(url, params={"watch": "1", "resourceVersion": rv}, stream=True, timeout=10) as r:
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert len(lines) == 1 and lines[0]["type"] == "ERROR"
    status = lines[0]["object"]
    assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")
    assert status["message"].startswith(f"too old resource version: {rv} (")


def test_stop_ends_open_watches(server: ApiServer, v1: client.CoreV1Api) -> None:
    v1.create_namespaced_pod(NS, make_pod("a", "10.244.0.5"))
    streaming, done = threading.Event(), threading.Event()

    def run() -> None:
        for _ in watch.Watch().stream(v1.list_namespaced_pod, NS, timeout_seconds=60):
            streaming.set()
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert streaming.wait(10), "the watch never delivered the initial ADDED"
    server.stop()
    assert done.wait(10), "the watch did not end when the server stopped"


def write_cri_log(path: Path, lines: list[tuple[str, str]]) -> None:
    with path.open("a") as handle:
        for stamp, message in lines:
            handle.write(f"{stamp} stdout F {message}\n")


def read_log(v1: client.CoreV1Api, name: str, **kwargs: Any) -> str:
    # kubernetes 36.x returns the repr of the bytes ("b'...'") from read_namespaced_pod_log
    # (kubernetes-client/python#2596); the raw response is the reliable way to read the text.
    response = v1.read_namespaced_pod_log(name, NS, _preload_content=False, **kwargs)
    return str(response.data.decode())


def test_pod_logs_since_time_tail_and_follow(server: ApiServer, v1: client.CoreV1Api, tmp_path: Path) -> None:
    v1.create_namespaced_pod(NS, make_pod("kafka-0", "10.244.0.20"))
    log_file = tmp_path / "logs" / f"{NS}_kafka-0.log"
    assert read_log(v1, "kafka-0") == ""  # no file yet: empty, not an error
    write_cri_log(
        log_file,
        [
            ("2024-05-01T12:00:00.100000000Z", "old line"),
            ("2024-05-01T12:00:05.000000000Z", "at the bound"),
            ("2024-05-01T12:00:09.250000000Z", "new line"),
        ],
    )
    assert read_log(v1, "kafka-0") == "old line\nat the bound\nnew line\n"
    assert read_log(v1, "kafka-0", tail_lines=1) == "new line\n"
    url = f"{server.url}/api/v1/namespaces/{NS}/pods/kafka-0/log"
    since = requests.get(url, params={"sinceTime": "2024-05-01T12:00:05Z"}, timeout=10)
    assert since.status_code == 200 and since.headers["Content-Type"].startswith("text/plain")
    assert since.text == "at the bound\nnew line\n"  # >= sinceTime, like the kubelet
    stamped = requests.get(
        url, params={"sinceTime": "2024-05-01T12:00:06Z", "timestamps": "true"}, timeout=10
    )
    assert stamped.text == "2024-05-01T12:00:09.250000000Z new line\n"

    with requests.get(url, params={"follow": "true", "tailLines": "1"}, stream=True, timeout=10) as followed:
        chunks = followed.iter_content(chunk_size=None)
        assert next(chunks) == b"new line\n"
        write_cri_log(log_file, [("2024-05-01T12:00:10Z", "appended")])
        assert next(chunks) == b"appended\n"
        v1.delete_namespaced_pod("kafka-0", NS)
        assert b"".join(chunks) == b""  # the stream ends once the pod is gone

    with pytest.raises(ApiException) as caught:
        v1.read_namespaced_pod_log("missing", NS)
    assert caught.value.status == 404


def test_kubectl_get_pods_and_services(kubeconfig: Path, tmp_path: Path, v1: client.CoreV1Api) -> None:
    v1.create_namespaced_pod(NS, make_pod("web-1", "10.244.0.5", {"app": "web"}))
    v1.create_namespaced_pod(NS, make_pod("db-1", "10.244.0.7", {"app": "db"}))
    v1.create_namespaced_service(
        NS,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1ServiceSpec(
                selector={"app": "web"}, ports=[client.V1ServicePort(port=80, target_port=8080)]
            ),
        ),
    )
    kc = yaml.safe_load(kubeconfig.read_text())
    assert kc["current-context"] == CONTEXT_NAME and kc["users"][0]["user"]["token"]

    pods = kubectl(kubeconfig, tmp_path, "get", "pods", "-A", "-o", "wide").splitlines()
    header = ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE"]
    assert pods[0].split() == [*header, "READINESS", "GATES"]
    rows = {line.split()[1]: line.split() for line in pods[1:]}
    assert rows["web-1"][0] == NS and rows["web-1"][6] == "10.244.0.5" and rows["web-1"][7] == "node-1"
    assert rows["db-1"][6] == "10.244.0.7"

    services = kubectl(kubeconfig, tmp_path, "get", "svc", "-A").splitlines()
    assert services[0].split() == ["NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    svc_rows = {line.split()[1]: line.split() for line in services[1:]}
    assert svc_rows["kubernetes"][:6] == [
        "default",
        "kubernetes",
        "ClusterIP",
        "10.96.0.1",
        "<none>",
        "443/TCP",
    ]
    assert svc_rows["web"][4:6] == ["<none>", "80/TCP"]

    assert kubectl(kubeconfig, tmp_path, "get", "deploy", "-n", NS, "-o", "name") == ""
    by_label = kubectl(kubeconfig, tmp_path, "get", "po", "-n", NS, "-l", "app=db", "-o", "name")
    assert by_label.split() == ["pod/db-1"]


def test_bad_input_gets_status_errors_and_the_server_keeps_serving(
    server: ApiServer, v1: client.CoreV1Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = server.url
    pods_url = f"{base}/api/v1/namespaces/{NS}/pods"
    json_header = {"Content-Type": "application/json"}

    def status_of(response: requests.Response) -> tuple[int, str]:
        body = response.json()
        assert (
            body["kind"] == "Status" and body["status"] == "Failure" and body["code"] == response.status_code
        )
        return response.status_code, body["reason"]

    assert status_of(requests.get(f"{base}/api/v1/widgets", timeout=10)) == (404, "NotFound")
    assert status_of(requests.get(f"{base}/apis/apps/v1/namespaces/{NS}/gizmos", timeout=10)) == (
        404,
        "NotFound",
    )
    missing = requests.get(f"{pods_url}/nope", timeout=10)
    assert status_of(missing) == (404, "NotFound")
    assert missing.json()["details"] == {"name": "nope", "kind": "pods"}
    assert status_of(requests.post(pods_url, data=b"{not json", headers=json_header, timeout=10)) == (
        400,
        "BadRequest",
    )
    assert status_of(requests.post(pods_url, data=b"[1, 2]", headers=json_header, timeout=10))[0] == 400
    wrong_kind = {"kind": "Service", "apiVersion": "v1", "metadata": {"name": "x"}}
    assert status_of(requests.post(pods_url, json=wrong_kind, timeout=10))[0] == 400
    for params in ({"resourceVersion": "abc"}, {"watch": "true", "resourceVersion": "abc"}):
        assert status_of(requests.get(pods_url, params=params, timeout=10)) == (400, "BadRequest")
    body = {"metadata": {"name": "dup"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
    assert requests.post(pods_url, json=body, timeout=10).status_code == 201
    assert status_of(requests.post(pods_url, json=body, timeout=10)) == (409, "AlreadyExists")
    assert status_of(requests.put(pods_url, json=body, timeout=10)) == (405, "MethodNotAllowed")
    unnamed = {"metadata": {}, "spec": {}}
    assert status_of(requests.post(pods_url, json=unnamed, timeout=10)) == (422, "Invalid")
    assert status_of(requests.post(f"{base}/api/v1/namespaces/nowhere/pods", json=body, timeout=10))[0] == 404

    def explode(*_args: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(server.api, "_list", explode)
    assert status_of(requests.get(pods_url, timeout=10)) == (500, "InternalError")
    monkeypatch.undo()

    assert requests.get(f"{base}/version", timeout=10).json()["gitVersion"].startswith("v1.")
    assert [p.metadata.name for p in v1.list_namespaced_pod(NS).items] == ["dup"]


def test_discovery_documents_and_tables(server: ApiServer) -> None:
    aggregated = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    apis = requests.get(f"{server.url}/apis", headers={"Accept": aggregated}, timeout=10)
    assert apis.headers["Content-Type"] == "application/json" and apis.json()["kind"] == "APIGroupList"
    assert {g["name"] for g in apis.json()["groups"]} == {
        "apps",
        "batch",
        "discovery.k8s.io",
        "admissionregistration.k8s.io",
        "rbac.authorization.k8s.io",
        "networking.k8s.io",
    }
    core = requests.get(f"{server.url}/api/v1", timeout=10).json()
    by_name = {r["name"]: r for r in core["resources"]}
    assert by_name["pods"]["shortNames"] == ["po"] and "watch" in by_name["pods"]["verbs"]
    assert by_name["namespaces"]["namespaced"] is False and "pods/log" in by_name
    table_accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    table = requests.get(
        f"{server.url}/api/v1/namespaces", headers={"Accept": table_accept}, timeout=10
    ).json()
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert [row["cells"][0] for row in table["rows"]] == ["default", "kube-public", "kube-system"]
    openapi = requests.get(f"{server.url}/openapi/v2", timeout=10)  # empty: kubectl validates nothing
    assert openapi.status_code == 200 and openapi.content == b"", openapi.text


def test_module_entry_point_serves_writes_files_and_stops_on_sigterm(tmp_path: Path) -> None:
    kubeconfig, ready = tmp_path / "kc", tmp_path / "ready"
    command = [sys.executable, "-m", "sandbox.apiserver", "--port", "0", "--kubeconfig", str(kubeconfig)]
    with (tmp_path / "stderr.log").open("w") as stderr:
        process = subprocess.Popen(
            [*command, "--ready-file", str(ready), "--log-dir", str(tmp_path)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stderr=stderr,
        )
    try:
        port = int(wait_until(lambda: ready.exists() and ready.read_text().strip(), WAIT, "ready file"))
        kc = yaml.safe_load(kubeconfig.read_text())
        assert kc["clusters"][0]["cluster"]["server"] == f"http://127.0.0.1:{port}"
        configuration = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        with client.ApiClient(configuration) as api:
            assert "kube-system" in {n.metadata.name for n in client.CoreV1Api(api).list_namespace().items}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
