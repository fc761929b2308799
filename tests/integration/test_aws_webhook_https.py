"""The admission webhook over real HTTPS, against the sandbox's in-process Kubernetes API through the
real ``kubernetes`` client: the fixtures in tests/data/aws/admission posted as kube-apiserver posts
them, the client verifying the serving certificate for the webhook Service's DNS name."""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes import client

from agent.aws.settings import AwsWebhookSettings
from agent.aws.webhookserver import WebhookMetrics, WebhookServer, create_server, main
from agent.settings import SettingsError
from sandbox import certs
from sandbox.apiserver.patch import json_patch
from tests.support.apiserver import RunningApi, running_api

ADMISSION = Path(__file__).parents[1] / "data" / "aws" / "admission"
SERVICE_DNS = "network-mapper-aws-webhook.otterize-system.svc"
SYSTEM_CAS = Path("/etc/ssl/certs/ca-certificates.crt")
NAMESPACES = ("aws-visibility-demo", "payments", "billing", "analytics", "monitoring", "otterize-system")
SECRET_VALUE = "env-secret-3f9c1d7be2a8"  # an env value in pod-create-labelled.json


@dataclass(frozen=True)
class Pki:
    webhook_ca: Path  # what the MutatingWebhookConfiguration's caBundle holds
    tls_cert: Path
    tls_key: Path
    proxy_ca_file: Path  # key + certificate, as mitmproxy keeps them: only the certificate may leave
    proxy_ca_cert: str


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca, ca_key = certs.make_ca("network-mapper-aws-webhook-ca")
    leaf, leaf_key = certs.make_leaf(ca, ca_key, [SERVICE_DNS, SERVICE_DNS + ".cluster.local"])
    proxy, proxy_key = certs.make_ca("network-mapper-aws-proxy-ca")
    certs.write_pem(directory / "ca.crt", ca)
    certs.write_pem(directory / "tls.crt", leaf)
    certs.write_pem(directory / "tls.key", leaf_key, private=True)
    certs.write_pem(directory / "mitmproxy-ca.pem", proxy_key + proxy, private=True)
    return Pki(
        directory / "ca.crt",
        directory / "tls.crt",
        directory / "tls.key",
        directory / "mitmproxy-ca.pem",
        proxy.decode(),
    )


@pytest.fixture
def api(tmp_path: Path) -> Iterator[RunningApi]:
    with running_api(tmp_path) as running:
        for name in NAMESPACES:
            running.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        running.core.create_namespaced_service(
            "otterize-system",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "network-mapper-aws-dns"},
                "spec": {
                    "selector": {"app": "network-mapper-aws-dns"},
                    "ports": [
                        {"name": "dns", "port": 53, "targetPort": 5353, "protocol": "UDP"},
                        {"name": "dns-tcp", "port": 53, "targetPort": 5353, "protocol": "TCP"},
                    ],
                },
            },
        )
        yield running


def settings_for(pki: Pki, api: RunningApi) -> AwsWebhookSettings:
    return AwsWebhookSettings(
        listen_address="127.0.0.1:0",
        tls_cert_file=pki.tls_cert,
        tls_key_file=pki.tls_key,
        proxy_ca_file=pki.proxy_ca_file,
        system_ca_file=SYSTEM_CAS,
        kubeconfig=str(api.kubeconfig),
    )


@pytest.fixture
def webhook(pki: Pki, api: RunningApi) -> Iterator[WebhookServer]:
    server = create_server(settings_for(pki, api), WebhookMetrics())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def https(pki: Pki, webhook: WebhookServer) -> Iterator[urllib3.HTTPSConnectionPool]:
    """kube-apiserver's side: trusts only the webhook CA, checks the Service's DNS name."""
    context = ssl.create_default_context(cafile=str(pki.webhook_ca))
    pool = urllib3.HTTPSConnectionPool(
        "127.0.0.1",
        webhook.port,
        ssl_context=context,
        server_hostname=SERVICE_DNS,
        assert_hostname=SERVICE_DNS,
        retries=False,
        timeout=10,
    )
    yield pool
    pool.close()


def post(pool: urllib3.HTTPSConnectionPool, body: bytes, content_type: str = "application/json") -> Any:
    return pool.request(
        "POST", "/mutate?timeout=10s", body=body, headers={"Content-Type": content_type}, preload_content=True
    )


def fixture(name: str) -> dict[str, Any]:
    return json.loads((ADMISSION / name).read_text())


def bundle_data(api: RunningApi, namespace: str) -> dict[str, str] | None:
    try:
        configmap = api.core.read_namespaced_config_map("network-mapper-aws-ca-bundle", namespace)
    except client.ApiException as exc:
        assert exc.status == 404
        return None
    return dict(configmap.data or {})


def test_labelled_pod_gets_patch_and_the_bundle_configmap(api: RunningApi, https: Any, pki: Pki) -> None:
    review = fixture("pod-create-labelled.json")
    assert bundle_data(api, "aws-visibility-demo") is None
    response = post(https, json.dumps(review).encode())
    assert response.status == 200
    answer = json.loads(response.data)
    assert answer["response"]["uid"] == review["request"]["uid"]
    assert answer["response"]["allowed"] is True
    patch = json.loads(base64.b64decode(answer["response"]["patch"]))
    pod = json_patch(review["request"]["object"], patch)

    data = bundle_data(api, "aws-visibility-demo")
    assert data is not None and list(data) == ["ca-bundle.pem"]
    bundle = data["ca-bundle.pem"]
    assert bundle.startswith(pki.proxy_ca_cert.strip() + "\n")  # the proxy CA first
    assert "PRIVATE KEY" not in bundle  # its key never leaves
    system = SYSTEM_CAS.read_text()
    assert bundle.count("-----BEGIN CERTIFICATE-----") == 1 + system.count("-----BEGIN CERTIFICATE-----")
    for block in system.split("-----END CERTIFICATE-----")[:-1]:
        body = block.split("-----BEGIN CERTIFICATE-----")[1]
        assert body in bundle

    cluster_ip = api.core.read_namespaced_service("network-mapper-aws-dns", "otterize-system").spec.cluster_ip
    assert pod["spec"]["dnsConfig"]["nameservers"] == [cluster_ip]
    assert pod["spec"]["dnsConfig"]["searches"] == [
        "aws-visibility-demo.svc.cluster.local",
        "svc.cluster.local",
        "cluster.local",
    ]
    container = pod["spec"]["containers"][0]
    assert {"name": "AWS_CA_BUNDLE", "value": "/etc/network-mapper/aws-ca/ca-bundle.pem"} in container["env"]
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "network-mapper-aws-ca")
    assert volume["configMap"]["name"] == "network-mapper-aws-ca-bundle"


PATCHED = {
    "pod-create-labelled.json",
    "pod-create-init-containers.json",
    "pod-create-existing-ca-bundle.json",
    "pod-create-dnsconfig.json",
    "pod-create-hostnetwork.json",
    "pod-create-no-volumes.json",
    "pod-create-dry-run.json",
    "pod-create-dns-default.json",
}


def test_every_fixture_over_https(api: RunningApi, https: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.aws.webhookserver")
    names = sorted(p.name for p in ADMISSION.glob("*.json"))
    assert set(names) > PATCHED
    for name in names:
        review = fixture(name)
        response = post(https, json.dumps(review).encode())
        assert response.status == 200, name
        answer = json.loads(response.data)["response"]
        assert answer["uid"] == review["request"]["uid"]
        assert ("patch" in answer) == (name in PATCHED), name
        assert answer["allowed"] is (name != "review-v1beta1.json"), name
    for namespace in ("aws-visibility-demo", "payments", "billing", "analytics", "monitoring", "default"):
        assert bundle_data(api, namespace) is not None, namespace
    assert bundle_data(api, "otterize-system") is None  # no pod of its was patched
    decisions = [r.getMessage() for r in caplog.records if r.getMessage().startswith("admission ")]
    assert len(decisions) == len(names)  # one line per review
    assert any("pod=aws-client-5c9f8d7b6d- outcome=patched" in line for line in decisions)
    assert all(SECRET_VALUE not in r.getMessage() for r in caplog.records)


def test_dry_run_writes_no_configmap(api: RunningApi, https: Any) -> None:
    response = post(https, (ADMISSION / "pod-create-dry-run.json").read_bytes())
    assert "patch" in json.loads(response.data)["response"]
    assert bundle_data(api, "default") is None


def test_configmap_with_other_content_is_updated(api: RunningApi, https: Any, pki: Pki) -> None:
    api.core.create_namespaced_config_map(
        "payments",
        {"metadata": {"name": "network-mapper-aws-ca-bundle"}, "data": {"ca-bundle.pem": "stale", "x": "1"}},
    )
    response = post(https, (ADMISSION / "pod-create-init-containers.json").read_bytes())
    assert "patch" in json.loads(response.data)["response"]
    data = bundle_data(api, "payments")
    assert data is not None
    assert data["x"] == "1"
    assert data["ca-bundle.pem"].startswith(pki.proxy_ca_cert.strip())


def test_unensurable_bundle_allows_unpatched_then_rechecks(
    api: RunningApi, https: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agent.aws.webhookserver")
    review = fixture("pod-create-labelled.json")
    review["request"]["namespace"] = "not-yet"  # no such namespace: the ConfigMap cannot be made
    answer = json.loads(post(https, json.dumps(review).encode()).data)["response"]
    assert answer["allowed"] is True
    assert "patch" not in answer
    assert answer["warnings"] == ["network-mapper: pod left unpatched, AWS visibility unavailable"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("outcome=unpatched" in m and "HTTP 404" in m for m in warnings)
    api.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="not-yet")))
    answer = json.loads(post(https, json.dumps(review).encode()).data)["response"]
    assert "patch" in answer  # the failure was not cached
    assert bundle_data(api, "not-yet") is not None


def test_no_forwarder_service_allows_unpatched(api: RunningApi, https: Any) -> None:
    api.core.delete_namespaced_service("network-mapper-aws-dns", "otterize-system")
    answer = json.loads(post(https, (ADMISSION / "pod-create-labelled.json").read_bytes()).data)["response"]
    assert (answer["allowed"], "patch" in answer) == (True, False)


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"", "application/json", 400),
        (b'{"kind": "AdmissionReview"}', "application/json", 400),
        (b"{}", "text/plain", 415),
    ],
)
def test_malformed_request_gets_a_message_not_a_500(
    https: Any, body: bytes, content_type: str, status: int
) -> None:
    response = post(https, body, content_type)
    assert response.status == status
    answer = json.loads(response.data)
    assert answer["kind"] == "Status"
    assert answer["code"] == status
    assert answer["message"]


def test_review_with_uid_it_cannot_read_is_refused_with_a_message(https: Any) -> None:
    review = fixture("pod-create-labelled.json")
    review["request"]["object"]["spec"]["containers"] = "client"
    response = post(https, json.dumps(review).encode())
    assert response.status == 200
    assert json.loads(response.data)["response"] == {
        "uid": review["request"]["uid"],
        "allowed": False,
        "status": {"code": 400, "message": "spec.containers is not an array"},
    }


def test_oversized_body_is_refused_unread(pki: Pki, webhook: WebhookServer) -> None:
    context = ssl.create_default_context(cafile=str(pki.webhook_ca))
    with (
        socket.create_connection(("127.0.0.1", webhook.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=SERVICE_DNS) as tls,
    ):
        head = f"POST /mutate HTTP/1.1\r\nHost: {SERVICE_DNS}\r\nContent-Type: application/json\r\n"
        tls.sendall((head + f"Content-Length: {3 * 1024 * 1024 + 1}\r\n\r\n").encode())
        reply = b""
        while chunk := tls.recv(65536):
            reply += chunk
    status_line, _, rest = reply.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413")
    assert json.loads(rest.split(b"\r\n\r\n", 1)[1])["reason"] == "RequestEntityTooLarge"


def test_paths_and_health(https: Any) -> None:
    assert https.request("GET", "/healthz").status == 200
    metrics = https.request("GET", "/metrics").data.decode()
    assert "network_mapper_aws_webhook_patched_total" in metrics
    assert (
        https.request("POST", "/validate", body=b"{}", headers={"Content-Type": "application/json"}).status
        == 404
    )
    assert https.request("GET", "/mutate").status == 405


def test_client_that_does_not_trust_the_ca_cannot_talk(webhook: WebhookServer, https: Any) -> None:
    pool = urllib3.HTTPSConnectionPool(
        "127.0.0.1",
        webhook.port,
        ssl_context=ssl.create_default_context(),
        server_hostname=SERVICE_DNS,
        retries=False,
    )
    with pytest.raises(urllib3.exceptions.SSLError):
        pool.request("GET", "/healthz")
    # ... and the server still answers (a failed handshake ends in its own thread).
    assert https.request("GET", "/healthz").status == 200


def test_webhook_does_not_start_without_the_proxy_ca(pki: Pki, api: RunningApi, capsys: Any) -> None:
    env = {
        "AWS_WEBHOOK_LISTEN_ADDRESS": "127.0.0.1:0",
        "AWS_WEBHOOK_TLS_CERT_FILE": str(pki.tls_cert),
        "AWS_WEBHOOK_TLS_KEY_FILE": str(pki.tls_key),
        "AWS_WEBHOOK_PROXY_CA_FILE": str(pki.tls_key),  # a key, no certificate
        "KUBECONFIG": str(api.kubeconfig),
    }
    assert main([], env) == 1
    assert capsys.readouterr().err.strip() == (
        "network-mapper-aws-webhook: BundleError: the proxy CA file holds no PEM certificate"
    )
    assert main(["--listen-address", "nowhere"], {}) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_main_serves_until_sigterm(pki: Pki, api: RunningApi) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ) | {
        "AWS_WEBHOOK_LISTEN_ADDRESS": f"127.0.0.1:{port}",
        "AWS_WEBHOOK_TLS_CERT_FILE": str(pki.tls_cert),
        "AWS_WEBHOOK_TLS_KEY_FILE": str(pki.tls_key),
        "AWS_WEBHOOK_PROXY_CA_FILE": str(pki.proxy_ca_file),
        "AWS_WEBHOOK_FORWARDER_ADDRESS": "10.96.0.53",
        "KUBECONFIG": str(api.kubeconfig),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "agent.aws.webhookserver"],
        env=env,
        cwd=Path(__file__).parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        pool = urllib3.HTTPSConnectionPool(
            "127.0.0.1",
            port,
            ssl_context=ssl.create_default_context(cafile=str(pki.webhook_ca)),
            server_hostname=SERVICE_DNS,
            retries=False,
            timeout=5,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                assert pool.request("GET", "/healthz").status == 200
                break
            except urllib3.exceptions.HTTPError:
                assert process.poll() is None, process.communicate()[0]
                assert time.monotonic() < deadline, "webhook did not come up"
                time.sleep(0.05)
        answer = json.loads(post(pool, (ADMISSION / "pod-create-labelled.json").read_bytes()).data)[
            "response"
        ]
        patch = json.loads(base64.b64decode(answer["patch"]))
        assert {"op": "add", "path": "/spec/dnsPolicy", "value": "None"} in patch
        pool.close()
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=10)[0].decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    assert "outcome=patched" in output
    assert SECRET_VALUE not in output
    assert "stopped prog=network-mapper-aws-webhook" in output


def test_forwarder_address_must_be_an_ip(pki: Pki, api: RunningApi, capsys: Any) -> None:
    settings = replace(settings_for(pki, api), forwarder_address="not-an-ip")
    with pytest.raises(SettingsError, match="not an IP"):
        create_server(settings, WebhookMetrics())
    env = {"AWS_WEBHOOK_FORWARDER_ADDRESS": "dns.example", "KUBECONFIG": str(api.kubeconfig)}
    assert main([], env) == 2
    assert capsys.readouterr().err == (
        "network-mapper-aws-webhook: --forwarder-address (env AWS_WEBHOOK_FORWARDER_ADDRESS): not an IP\n"
    )
