"""Pod logs of multi-container pods through the sandbox API server, read with the real `kubernetes`
client: `container=`, `previous=true`, `sinceSeconds`, `sinceTime`, `timestamps`, `tailLines`, and a
followed log that ends when its container restarts. The CRI files are written through
`sandbox.kubelet.log_path`, as the sandbox's kubelet (and other tests) write them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import client
from kubernetes.client.rest import ApiException

from sandbox.apiserver import ApiServer
from sandbox.kubelet import cri_timestamp, log_path
from tests.support.apiserver import RunningApi, running_api

NS = "mesh"
POD = "server-7d4b9c8f6d-x2x5k"


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    (tmp_path / "logs").mkdir()
    return tmp_path / "logs"


@pytest.fixture
def running(log_dir: Path, tmp_path: Path) -> Iterator[RunningApi]:
    with running_api(tmp_path, log_dir) as api:
        yield api


@pytest.fixture
def server(running: RunningApi) -> ApiServer:
    return running.server


@pytest.fixture
def api_client(running: RunningApi) -> client.ApiClient:
    return running.api


@pytest.fixture
def v1(api_client: client.ApiClient) -> client.CoreV1Api:
    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
    return core


def _status(name: str, container_id: str, restarts: int = 0) -> dict[str, Any]:
    return {
        "name": name,
        "containerID": container_id,
        "ready": True,
        "restartCount": restarts,
        "image": "demo",
        "imageID": "",
        "state": {"running": {"startedAt": "2024-05-01T12:00:00Z"}},
    }


def make_pod(v1: client.CoreV1Api, name: str, containers: list[str]) -> None:
    body = {
        "metadata": {"name": name},
        "spec": {"nodeName": "node-1", "containers": [{"name": c, "image": "demo"} for c in containers]},
        "status": {
            "phase": "Running",
            "podIP": "10.244.1.60",
            "containerStatuses": [_status(c, f"containerd://{c}-1") for c in containers],
        },
    }
    v1.create_namespaced_pod(NS, body)


def write(path: Path, lines: list[tuple[str, str]]) -> None:
    with path.open("a") as handle:
        for stamp, message in lines:
            handle.write(f"{stamp} stdout F {message}\n")


def read(v1: client.CoreV1Api, name: str, **kwargs: Any) -> str:
    # kubernetes 36.x returns the repr of the bytes from read_namespaced_pod_log
    # (kubernetes-client/python#2596); the raw response is the reliable way to read the text.
    return str(v1.read_namespaced_pod_log(name, NS, _preload_content=False, **kwargs).data.decode())


def refused(v1: client.CoreV1Api, name: str, **kwargs: Any) -> tuple[int, str]:
    with pytest.raises(ApiException) as caught:
        v1.read_namespaced_pod_log(name, NS, **kwargs)
    status = json.loads(caught.value.body)
    assert (status["kind"], status["reason"]) == ("Status", "BadRequest")
    return int(caught.value.status), str(status["message"])


def test_container_selects_the_log_and_is_required_with_two_containers(
    v1: client.CoreV1Api, log_dir: Path
) -> None:
    make_pod(v1, POD, ["server", "istio-proxy"])
    write(log_path(log_dir, NS, POD), [("2024-05-01T12:00:00.1Z", "server line")])
    write(log_path(log_dir, NS, POD, "istio-proxy"), [("2024-05-01T12:00:00.2Z", "proxy line")])
    assert read(v1, POD, container="server") == "server line\n"
    assert read(v1, POD, container="istio-proxy") == "proxy line\n"
    assert refused(v1, POD) == (
        400,
        f"a container name must be specified for pod {POD}, choose one of: [server istio-proxy]",
    )
    assert refused(v1, POD, container="nope") == (400, f"container nope is not valid for pod {POD}")


def test_the_first_container_may_be_written_under_its_own_name(v1: client.CoreV1Api, log_dir: Path) -> None:
    make_pod(v1, "kafka-0", ["kafka"])
    write(log_path(log_dir, NS, "kafka-0", "kafka"), [("2024-05-01T12:00:00Z", "named")])
    assert read(v1, "kafka-0") == "named\n"  # the only container needs no name
    assert read(v1, "kafka-0", container="kafka") == "named\n"


def test_previous_returns_the_old_instance_or_the_kubelets_400(v1: client.CoreV1Api, log_dir: Path) -> None:
    make_pod(v1, POD, ["server", "istio-proxy"])
    write(log_path(log_dir, NS, POD, "istio-proxy", previous=True), [("2024-05-01T11:00:00Z", "before")])
    write(log_path(log_dir, NS, POD, "istio-proxy"), [("2024-05-01T12:00:00Z", "after")])
    assert read(v1, POD, container="istio-proxy", previous=True) == "before\n"
    assert read(v1, POD, container="istio-proxy", previous=False) == "after\n"
    assert refused(v1, POD, container="server", previous=True) == (
        400,
        f'previous terminated container "server" in pod "{POD}" not found',
    )


def test_since_seconds_timestamps_and_tail_lines(v1: client.CoreV1Api, log_dir: Path) -> None:
    make_pod(v1, POD, ["server", "istio-proxy"])
    now = datetime.now(UTC)
    old, recent = cri_timestamp(now - timedelta(minutes=10)), cri_timestamp(now - timedelta(seconds=1))
    write(log_path(log_dir, NS, POD), [(old, "old"), (recent, "recent one"), (recent, "recent two")])
    assert read(v1, POD, container="server", since_seconds=60) == "recent one\nrecent two\n"
    assert read(v1, POD, container="server", since_seconds=60, timestamps=True) == (
        f"{recent} recent one\n{recent} recent two\n"
    )
    assert read(v1, POD, container="server", tail_lines=1) == "recent two\n"
    assert read(v1, POD, container="server", tail_lines=2, since_seconds=60) == "recent one\nrecent two\n"


def test_since_time_through_call_api_and_plain_requests(
    server: ApiServer, api_client: client.ApiClient, v1: client.CoreV1Api, log_dir: Path
) -> None:
    """`read_namespaced_pod_log` has no since_time argument; the query parameter still works."""
    make_pod(v1, POD, ["server", "istio-proxy"])
    write(
        log_path(log_dir, NS, POD, "istio-proxy"),
        [
            ("2024-05-01T12:00:00.5Z", "early"),
            ("2024-05-01T12:00:05Z", "at the bound"),
            ("2024-05-01T12:00:09Z", "late"),
        ],
    )
    response = api_client.call_api(
        "/api/v1/namespaces/{namespace}/pods/{name}/log",
        "GET",
        path_params={"namespace": NS, "name": POD},
        query_params=[("container", "istio-proxy"), ("sinceTime", "2024-05-01T12:00:05Z")],
        header_params={"Accept": "text/plain"},
        auth_settings=["BearerToken"],
        _preload_content=False,
        _return_http_data_only=True,
    )
    assert response.data.decode() == "at the bound\nlate\n"
    url = f"{server.url}/api/v1/namespaces/{NS}/pods/{POD}/log"
    plain = requests.get(
        url,
        params={"container": "istio-proxy", "sinceTime": "2024-05-01T12:00:06Z", "timestamps": "true"},
        timeout=10,
    )
    assert plain.status_code == 200 and plain.text == "2024-05-01T12:00:09Z late\n"
    both = requests.get(
        url, params={"container": "istio-proxy", "sinceTime": "x", "sinceSeconds": "5"}, timeout=10
    )
    assert both.status_code == 400


def test_a_followed_log_ends_when_its_container_restarts(
    server: ApiServer, v1: client.CoreV1Api, log_dir: Path
) -> None:
    """As with the kubelet, following reads one container instance: when the kubelet renames its
    file to the previous log and reports a new container ID, the stream delivers the old instance's
    last lines and ends; the new instance's lines are not mixed in."""
    make_pod(v1, POD, ["server", "istio-proxy"])
    current = log_path(log_dir, NS, POD, "istio-proxy")
    write(current, [("2024-05-01T12:00:00Z", "first")])
    url = f"{server.url}/api/v1/namespaces/{NS}/pods/{POD}/log"
    params = {"container": "istio-proxy", "follow": "true"}
    with requests.get(url, params=params, stream=True, timeout=10) as followed:
        chunks = (c for c in followed.iter_content(chunk_size=None) if c)
        assert next(chunks) == b"first\n"
        write(current, [("2024-05-01T12:00:01Z", "last words")])
        current.replace(log_path(log_dir, NS, POD, "istio-proxy", previous=True))  # the kubelet restarts it
        write(current, [("2024-05-01T12:00:02Z", "new instance")])
        statuses = [
            _status("server", "containerd://server-1"),
            _status("istio-proxy", "containerd://proxy-2", 1),
        ]
        v1.patch_namespaced_pod_status(POD, NS, {"status": {"containerStatuses": statuses}})
        assert b"".join(chunks) == b"last words\n"
    assert read(v1, POD, container="istio-proxy") == "new instance\n"
    assert read(v1, POD, container="istio-proxy", previous=True) == "first\nlast words\n"
