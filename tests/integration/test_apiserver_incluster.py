"""The sandbox's API server over HTTPS, reached the way the product's pods reach it: the real
``kubernetes`` client's in-cluster configuration (``KUBERNETES_SERVICE_HOST``/``_PORT``, the service
account's ``token`` and ``ca.crt``), as :mod:`sandbox.podspec` mounts them.

* the in-cluster client lists and creates objects, with the chart's kinds (ServiceAccounts, RBAC,
  PersistentVolumeClaims) served;
* a client that does not trust the CA is refused; a client speaking plain HTTP gets no answer, and
  the server keeps serving others.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, watch
from kubernetes.config.incluster_config import InClusterConfigLoader

from sandbox import podspec
from sandbox.apiserver import ApiServer
from sandbox.nodeconfig import serving_tls


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ApiServer]:
    with ApiServer(tls=serving_tls(tmp_path / "apiserver")) as api:
        yield api


def in_cluster_client(api: ApiServer, directory: Path) -> client.ApiClient:
    """What a pod's ``load_incluster_config()`` builds, from the files the sandbox's kubelet mounts."""
    assert api.tls is not None
    access = podspec.ApiAccess("127.0.0.1", api.port, api.tls.ca_pem, api.token)
    pod = {"metadata": {"name": "p", "namespace": "otterize-system"}, "spec": {"containers": []}}
    run = podspec.pod_run(
        pod, "10.244.1.9", podspec.ClusterDns("10.96.0.10", "cluster.local"), _none(), api=access
    )
    files = run.volumes[podspec.API_ACCESS_VOLUME]
    for name, content in files.items():
        (directory / name).write_bytes(content)
    environ = {"KUBERNETES_SERVICE_HOST": access.host, "KUBERNETES_SERVICE_PORT": str(access.port)}
    configuration = client.Configuration()
    InClusterConfigLoader(
        token_filename=str(directory / "token"), cert_filename=str(directory / "ca.crt"), environ=environ
    ).load_and_set(configuration)
    assert configuration.host == f"https://127.0.0.1:{api.port}"
    return client.ApiClient(configuration)


def _none() -> podspec.Sources:
    return podspec.Sources(lambda _ns, _name: None, lambda _ns, _name: None)


def test_the_in_cluster_client_reads_and_creates_the_charts_kinds(server: ApiServer, tmp_path: Path) -> None:
    api_client = in_cluster_client(server, tmp_path)
    core = client.CoreV1Api(api_client)
    assert "default" in {n.metadata.name for n in core.list_namespace().items}
    core.create_namespaced_service_account("default", {"metadata": {"name": "network-mapper"}})
    claim = {
        "metadata": {"name": "network-mapper-data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    core.create_namespaced_persistent_volume_claim("default", claim)
    rbac = client.RbacAuthorizationV1Api(api_client)
    rule = {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}
    rbac.create_cluster_role({"metadata": {"name": "network-mapper"}, "rules": [rule]})
    assert [r.metadata.name for r in rbac.list_cluster_role().items] == ["network-mapper"]
    assert core.read_namespaced_persistent_volume_claim(
        "network-mapper-data", "default"
    ).spec.access_modes == ["ReadWriteOnce"]


def test_untrusting_and_plain_http_clients_are_refused_and_others_still_served(
    server: ApiServer, tmp_path: Path
) -> None:
    untrusting = ssl.create_default_context()  # the system roots only: not the cluster's CA
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        untrusting.wrap_socket(raw, server_hostname="127.0.0.1")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as plain:
        plain.sendall(b"GET /api HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            answer = plain.recv(1024)
        except ConnectionResetError:  # the handshake failed: the server dropped the connection
            answer = b""
        assert not answer.startswith(b"HTTP/1.1 200")
    core = client.CoreV1Api(in_cluster_client(server, tmp_path))
    assert core.list_namespace().items


def test_watches_stream_over_tls(server: ApiServer, tmp_path: Path) -> None:
    core = client.CoreV1Api(in_cluster_client(server, tmp_path))
    start = core.list_namespace().metadata.resource_version
    core.create_namespace({"metadata": {"name": "watched"}})
    stream = watch.Watch().stream(core.list_namespace, resource_version=start, timeout_seconds=5)
    for event in stream:
        if event["object"].metadata.name == "watched":
            assert event["type"] == "ADDED"
            break
    else:
        raise AssertionError("no ADDED event for the namespace over the TLS watch")
    # The watch connection is dropped by the client; the server notices and goes on serving.
    assert core.read_namespace("watched").metadata.name == "watched"
