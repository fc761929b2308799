"""The webhook's serving-certificate renewal for real: the sandbox's Kubernetes API server in this
process (real ``kubernetes`` client, real HTTP), the webhook server running with ``--tls-secret``,
and real TLS handshakes to it.

* a certificate expiring in a day (renew_before 30 days) is replaced while the server runs: the
  Secret holds a new certificate for the Service's names, every webhook's ``caBundle`` verifies it,
  and the running server (same port, no restart) presents exactly that certificate to a client
  trusting only the new ``caBundle``;
* a certificate far from expiry is left alone: checks happen, nothing is written;
* an unparsable Secret is replaced; a Secret that another replica (or a person) changed is served;
* API errors (the configuration missing) are logged in one line per check, counted, retried at the
  next interval, and the server keeps serving; once the configuration exists the renewal happens;
* at start, with nothing to serve, the webhook refuses to start with the reason.
"""

from __future__ import annotations

import base64
import datetime
import logging
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from kubernetes import client

from agent.aws.settings import DAY, AwsWebhookSettings
from agent.aws.webhookcerts import VALIDITY, issue, secret_data, service_names
from agent.aws.webhookserver import StartError, WebhookMetrics, WebhookServer, create_server
from sandbox import certs, chartrun
from sandbox.apiserver.discovery import RESOURCES
from tests.support.apiserver import RunningApi, running_api
from tests.support.mapper_process import wait_until

NS = "otterize-system"
WEBHOOK_CONFIGURATION = "network-mapper-aws-visibility"
WEBHOOK_TLS_SECRET = "network-mapper-aws-webhook-tls"


def chart_configuration(ca_b64: str) -> dict[str, Any]:
    """The chart's own MutatingWebhookConfiguration (rendered with AWS visibility on), with ``ca_b64``."""
    values = {"aws": {"visibility": {"enabled": True}}}
    release = chartrun.render(values, NS, [r.kind for r in RESOURCES])
    (found,) = [o for o in release.objects if o["kind"] == "MutatingWebhookConfiguration"]
    assert found["metadata"]["name"] == WEBHOOK_CONFIGURATION
    for webhook in found["webhooks"]:
        webhook["clientConfig"]["caBundle"] = ca_b64
    return found


NAMES = service_names([(NS, "network-mapper-aws-webhook")], "cluster.local")
SYSTEM_CAS = Path("/etc/ssl/certs/ca-certificates.crt")
DEADLINE = 10.0
INTERVAL = 0.05  # seconds between checks: many checks within a test's deadline


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def long_lived() -> dict[str, str]:
    """A certificate for a year, made as the sandbox (and, in RSA, the chart) makes them."""
    ca, ca_key = certs.make_ca("network-mapper-aws-webhook-ca")
    leaf, leaf_key = certs.make_leaf(ca, ca_key, list(NAMES))
    return {"tls.crt": b64(leaf), "tls.key": b64(leaf_key), "ca.crt": b64(ca)}


def expiring_in_a_day() -> dict[str, str]:
    now = datetime.datetime.now(datetime.UTC)
    return secret_data(issue(NAMES, now - VALIDITY + datetime.timedelta(days=1)))


@dataclass
class Cluster:
    api: RunningApi
    proxy_ca_file: Path

    @property
    def admission(self) -> client.AdmissionregistrationV1Api:
        return client.AdmissionregistrationV1Api(self.api.api)

    def secret(self) -> client.V1Secret:
        return self.api.core.read_namespaced_secret(WEBHOOK_TLS_SECRET, NS)

    def configuration(self) -> client.V1MutatingWebhookConfiguration:
        return self.admission.read_mutating_webhook_configuration(WEBHOOK_CONFIGURATION)

    def put_secret(self, data: dict[str, str]) -> None:
        secret = self.secret()
        secret.data = data
        self.api.core.replace_namespaced_secret(WEBHOOK_TLS_SECRET, NS, secret)

    def create_configuration(self, ca_b64: str) -> None:
        self.admission.create_mutating_webhook_configuration(chart_configuration(ca_b64))

    def settings(self, **changes: Any) -> AwsWebhookSettings:
        values: dict[str, Any] = {
            "listen_address": "127.0.0.1:0",
            "tls_secret": f"{NS}/{WEBHOOK_TLS_SECRET}",
            "webhook_configuration": WEBHOOK_CONFIGURATION,
            "renew_before": 30 * DAY,
            "cert_check_interval": INTERVAL,
            "proxy_ca_file": self.proxy_ca_file,
            "system_ca_file": SYSTEM_CAS,
            "forwarder_address": "10.96.0.53",
            "kubeconfig": str(self.api.kubeconfig),
        }
        return AwsWebhookSettings(**(values | changes))


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    proxy, proxy_key = certs.make_ca("network-mapper-aws-proxy-ca")
    proxy_ca_file = certs.write_pem(tmp_path / "mitmproxy-ca.pem", proxy_key + proxy, private=True)
    with running_api(tmp_path) as api:
        api.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
        yield Cluster(api, proxy_ca_file)


def start_with(
    cluster: Cluster, data: dict[str, str], *, configuration: bool = True
) -> tuple[WebhookServer, WebhookMetrics]:
    body = {
        "metadata": {"name": WEBHOOK_TLS_SECRET, "namespace": NS},
        "type": "kubernetes.io/tls",
        "data": data,
    }
    cluster.api.core.create_namespaced_secret(NS, body)
    if configuration:
        cluster.create_configuration(data["ca.crt"])
    metrics = WebhookMetrics()
    server = create_server(cluster.settings(), metrics)
    server.start()
    return server, metrics


@pytest.fixture
def stop() -> Iterator[list[WebhookServer]]:
    started: list[WebhookServer] = []
    yield started
    for server in started:
        server.stop()


def served_certificate(port: int, ca_bundle_b64: str, hostname: str = NAMES[0]) -> bytes:
    """The DER certificate the server presents to a client trusting only ``ca_bundle_b64`` (strict
    X.509 checks, the Service's name checked); ssl.SSLCertVerificationError when it does not verify."""
    context = ssl.create_default_context(cadata=base64.b64decode(ca_bundle_b64).decode())
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=hostname) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def presents(port: int, ca_bundle_b64: str, cert_b64: str, hostname: str = NAMES[0]) -> bool:
    """Whether the server presents ``cert_b64`` verified by ``ca_bundle_b64`` (False while it still
    serves a certificate that bundle does not verify)."""
    try:
        return served_certificate(port, ca_bundle_b64, hostname) == der(cert_b64)
    except ssl.SSLCertVerificationError:
        return False


def der(pem_b64: str) -> bytes:
    return x509.load_pem_x509_certificate(base64.b64decode(pem_b64)).public_bytes(Encoding.DER)


def test_an_expiring_certificate_is_renewed_while_serving(
    cluster: Cluster, stop: list[WebhookServer]
) -> None:
    server, metrics = start_with(cluster, long_lived())
    stop.append(server)
    port, first = server.port, cluster.secret().data
    assert served_certificate(port, first["ca.crt"]) == der(first["tls.crt"])
    # A day before expiry, as time would bring it: the next check renews.
    cluster.put_secret(expiring_in_a_day())
    old = cluster.secret().data
    wait_until(lambda: metrics.renewal.renewals.value >= 1, DEADLINE, "a renewal")
    new = cluster.secret().data
    assert new["tls.crt"] != old["tls.crt"] and new["ca.crt"] != old["ca.crt"]
    cert = x509.load_pem_x509_certificate(base64.b64decode(new["tls.crt"]))
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == list(NAMES)
    assert cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC) > datetime.timedelta(days=300)
    bundles = [w.client_config.ca_bundle for w in cluster.configuration().webhooks]
    assert bundles == [new["ca.crt"]]
    # The running server (same port) presents the new certificate, verified by the new caBundle alone
    # for each of the Service's names.
    wait_until(lambda: presents(port, bundles[0], new["tls.crt"]), DEADLINE, "the new certificate served")
    for name in NAMES:
        assert served_certificate(port, bundles[0], name) == der(new["tls.crt"])
    # The bundle also holds the replaced certificate's CA (still valid for a day): a replica that has
    # not yet loaded the new certificate stays trusted.
    old_ca = base64.b64decode(old["ca.crt"])
    assert base64.b64decode(new["ca.crt"]).endswith(old_ca)
    assert server.port == port


def test_a_certificate_far_from_expiry_is_left_alone(cluster: Cluster, stop: list[WebhookServer]) -> None:
    server, metrics = start_with(cluster, long_lived())
    stop.append(server)
    secret_version = cluster.secret().metadata.resource_version
    config_version = cluster.configuration().metadata.resource_version
    wait_until(lambda: metrics.renewal.checks.value >= 5, DEADLINE, "five checks")
    assert cluster.secret().metadata.resource_version == secret_version
    assert cluster.configuration().metadata.resource_version == config_version
    assert metrics.renewal.renewals.value == 0 and metrics.renewal.check_errors.value == 0
    assert metrics.renewal.loads.value == 1


def test_an_unparsable_secret_is_replaced(cluster: Cluster, stop: list[WebhookServer]) -> None:
    server, metrics = start_with(cluster, long_lived())
    stop.append(server)
    cluster.put_secret({"tls.crt": b64(b"not a certificate"), "tls.key": "", "ca.crt": b64(b"nor this")})
    wait_until(lambda: metrics.renewal.renewals.value >= 1, DEADLINE, "a renewal")
    new = cluster.secret().data
    bundle = cluster.configuration().webhooks[0].client_config.ca_bundle
    assert bundle == new["ca.crt"]  # nothing of the broken Secret is kept
    wait_until(lambda: presents(server.port, bundle, new["tls.crt"]), DEADLINE, "the new certificate")


def test_a_certificate_changed_elsewhere_is_served(cluster: Cluster, stop: list[WebhookServer]) -> None:
    """Another replica's renewal (or a person's): loaded at the next check, and the caBundle set to
    its ``ca.crt`` (as after an update whose patch failed); the Secret is not written."""
    server, metrics = start_with(cluster, long_lived())
    stop.append(server)
    other = long_lived()
    cluster.put_secret(other)
    version = cluster.secret().metadata.resource_version
    wait_until(lambda: presents(server.port, other["ca.crt"], other["tls.crt"]), DEADLINE, "the other served")
    wait_until(
        lambda: cluster.configuration().webhooks[0].client_config.ca_bundle == other["ca.crt"],
        DEADLINE,
        "the caBundle repaired",
    )
    assert metrics.renewal.renewals.value == 0
    assert cluster.secret().metadata.resource_version == version


def test_api_errors_are_logged_once_per_check_and_retried(
    cluster: Cluster, stop: list[WebhookServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agent.aws.webhookrenewal")
    data = expiring_in_a_day()
    server, metrics = start_with(cluster, data, configuration=False)  # the configuration is missing
    stop.append(server)
    wait_until(lambda: metrics.renewal.check_errors.value >= 3, DEADLINE, "three failed checks")
    # The server serves the certificate it has meanwhile.
    assert served_certificate(server.port, data["ca.crt"]) == der(data["tls.crt"])
    cluster.create_configuration(data["ca.crt"])
    wait_until(
        lambda: metrics.renewal.renewals.value >= 1, DEADLINE, "the renewal once the configuration exists"
    )
    failures = [r for r in caplog.records if "check failed" in r.getMessage()]
    assert len(failures) == metrics.renewal.check_errors.value  # one line per failed check
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in failures)
    assert (
        failures[0]
        .getMessage()
        .endswith(f"MutatingWebhookConfiguration {WEBHOOK_CONFIGURATION}: HTTP 404 Not Found")
    )
    new = cluster.secret().data
    assert cluster.configuration().webhooks[0].client_config.ca_bundle == new["ca.crt"]


def test_nothing_to_serve_at_start_is_fatal(cluster: Cluster) -> None:
    body = {
        "metadata": {"name": WEBHOOK_TLS_SECRET, "namespace": NS},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": b64(b"garbage"), "tls.key": b64(b"garbage"), "ca.crt": b64(b"garbage")},
    }
    cluster.api.core.create_namespaced_secret(NS, body)
    # Unparsable, and the configuration that names the certificate's Service is missing.
    with pytest.raises(StartError, match="no serving certificate: MutatingWebhookConfiguration"):
        create_server(cluster.settings(), WebhookMetrics())
    with pytest.raises(StartError, match=f"no serving certificate: Secret {NS}/missing: HTTP 404"):
        create_server(cluster.settings(tls_secret=f"{NS}/missing"), WebhookMetrics())
