"""agent.aws.webhookcerts: the serving certificate as data, checked with real X.509 and TLS.

* :func:`issue` makes a CA + serving certificate that a strict client verifies for every Service
  name (a TLS handshake in memory), and keeps the replaced certificate's CA in the bundle only while
  that certificate is valid;
* :func:`parse_secret_data` reads what :func:`secret_data` writes, what the sandbox's certificates
  and what the chart's ``genCA``/``genSignedCert`` make (rendered with the Helm SDK), and refuses each
  kind of broken Secret with a message naming the key;
* :func:`renewal_reason` renews inside ``renew_before`` or when a name is missing, not otherwise;
* :func:`ca_bundle_patch` touches only the webhooks whose bundle differs, guarded by resourceVersion.
"""

from __future__ import annotations

import base64
import datetime
import ssl
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from cryptography import x509

from agent.aws.webhookcerts import (
    CA_KEY,
    CERT_KEY,
    KEY_KEY,
    VALIDITY,
    CertificateError,
    ServingMaterial,
    ca_bundle_patch,
    issue,
    parse_secret_data,
    renewal_reason,
    secret_data,
    service_names,
)
from sandbox import certs
from tests.support.chart import CHART
from tests.support.tls import handshake

NAMES = service_names([("otterize-system", "network-mapper-aws-webhook")], "cluster.local")
NOW = datetime.datetime.now(datetime.UTC)
THIRTY_DAYS = datetime.timedelta(days=30)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def fresh() -> ServingMaterial:
    return issue(NAMES, NOW)


def test_service_names_are_the_charts() -> None:
    assert NAMES == (
        "network-mapper-aws-webhook.otterize-system.svc",
        "network-mapper-aws-webhook.otterize-system.svc.cluster.local",
    )
    assert service_names([("a", "s"), ("a", "s")], "x.local") == ("s.a.svc", "s.a.svc.x.local")


def test_issued_certificate_verifies_for_every_name(tmp_path: Path, fresh: ServingMaterial) -> None:
    for name in NAMES:
        handshake(
            tmp_path, fresh.ca_bundle_pem.decode(), fresh.cert_pem.decode(), fresh.key_pem.decode(), name
        )
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(
            tmp_path,
            fresh.ca_bundle_pem.decode(),
            fresh.cert_pem.decode(),
            fresh.key_pem.decode(),
            "other.svc",
        )
    assert fresh.names == frozenset(NAMES)
    assert fresh.not_after == NOW + VALIDITY
    assert len(x509.load_pem_x509_certificates(fresh.ca_bundle_pem)) == 1


def test_secret_round_trip(fresh: ServingMaterial) -> None:
    data = secret_data(fresh)
    assert set(data) == {CERT_KEY, KEY_KEY, CA_KEY}
    parsed = parse_secret_data(data)
    assert parsed.cert_pem == fresh.cert_pem and parsed.key_pem == fresh.key_pem
    assert parsed.ca_bundle_pem == fresh.ca_bundle_pem and parsed.issuer_pem == fresh.issuer_pem
    assert parsed.names == fresh.names
    # X.509 keeps whole seconds.
    assert abs(parsed.not_after - fresh.not_after) < datetime.timedelta(seconds=1)


def test_renewal_keeps_the_old_ca_while_the_old_certificate_is_valid(tmp_path: Path) -> None:
    old = issue(NAMES, NOW - VALIDITY + datetime.timedelta(days=1))  # expires in a day
    new = issue(NAMES, NOW, previous=parse_secret_data(secret_data(old)))
    bundle = new.ca_bundle_pem.decode()
    assert len(x509.load_pem_x509_certificates(new.ca_bundle_pem)) == 2
    # Both the replica still serving the old certificate and the one serving the new verify.
    handshake(tmp_path, bundle, old.cert_pem.decode(), old.key_pem.decode(), NAMES[0])
    handshake(tmp_path, bundle, new.cert_pem.decode(), new.key_pem.decode(), NAMES[0])
    expired = issue(NAMES, NOW - VALIDITY - datetime.timedelta(days=1))
    after_expired = issue(NAMES, NOW, previous=parse_secret_data(secret_data(expired)))
    assert after_expired.ca_bundle_pem == after_expired.issuer_pem


def test_parses_the_sandboxs_certificates() -> None:
    ca, ca_key = certs.make_ca("some CA")
    other_ca, _ = certs.make_ca("another CA")
    leaf, leaf_key = certs.make_leaf(ca, ca_key, list(NAMES))
    material = parse_secret_data({CERT_KEY: b64(leaf), KEY_KEY: b64(leaf_key), CA_KEY: b64(other_ca + ca)})
    assert material.issuer_pem == ca and material.names == frozenset(NAMES)
    assert renewal_reason(material, NAMES, NOW, THIRTY_DAYS) == ""


def test_parses_what_the_chart_makes() -> None:
    """helm's genCA/genSignedCert (RSA, 3650 days by default) through the code that reads them."""
    files = helm.Chart.load(CHART).render(
        {"aws": {"visibility": {"enabled": True}}}, name="network-mapper", namespace="otterize-system"
    )
    docs = [
        doc
        for path, text in files.items()
        if not path.endswith(".txt")
        for doc in yaml.safe_load_all(text)
        if isinstance(doc, dict)
    ]
    secret = next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"].endswith("webhook-tls"))
    config = next(d for d in docs if d["kind"] == "MutatingWebhookConfiguration")
    material = parse_secret_data(secret["data"])
    services = [
        (w["clientConfig"]["service"]["namespace"], w["clientConfig"]["service"]["name"])
        for w in config["webhooks"]
    ]
    assert renewal_reason(material, service_names(services, "cluster.local"), NOW, THIRTY_DAYS) == ""
    bundles = [w["clientConfig"]["caBundle"] for w in config["webhooks"]]
    assert ca_bundle_patch(bundles, material.ca_bundle_pem, "1") == []


def _broken(fresh: ServingMaterial) -> dict[str, tuple[dict[str, str], str]]:
    good = secret_data(fresh)
    other = issue(NAMES, NOW)
    return {
        "missing cert": ({KEY_KEY: good[KEY_KEY], CA_KEY: good[CA_KEY]}, "tls.crt is missing"),
        "empty ca": ({**good, CA_KEY: ""}, "ca.crt is missing"),
        "not base64": ({**good, KEY_KEY: "%%%"}, "tls.key is not base64"),
        "not pem": ({**good, CERT_KEY: b64(b"hello")}, "tls.crt is not a PEM certificate"),
        "ca not pem": ({**good, CA_KEY: b64(b"hello")}, "ca.crt is not a PEM certificate bundle"),
        "key not pem": ({**good, KEY_KEY: good[CERT_KEY]}, "tls.key is not an unencrypted PEM private key"),
        "other key": ({**good, KEY_KEY: b64(other.key_pem)}, "tls.key is not the key of tls.crt"),
        "other ca": ({**good, CA_KEY: b64(other.ca_bundle_pem)}, "no CA in ca.crt signed tls.crt"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing cert",
        "empty ca",
        "not base64",
        "not pem",
        "ca not pem",
        "key not pem",
        "other key",
        "other ca",
    ],
)
def test_broken_secrets_are_refused(fresh: ServingMaterial, case: str) -> None:
    data, message = _broken(fresh)[case]
    with pytest.raises(CertificateError) as caught:
        parse_secret_data(data)
    assert str(caught.value) == message
    with pytest.raises(CertificateError, match=r"tls\.crt is missing"):
        parse_secret_data(None)


def test_renewal_reason(fresh: ServingMaterial) -> None:
    expiring = issue(NAMES, NOW - VALIDITY + datetime.timedelta(days=1))
    assert renewal_reason(expiring, NAMES, NOW, THIRTY_DAYS).startswith("expires ")
    assert renewal_reason(fresh, NAMES, NOW, THIRTY_DAYS) == ""
    # The boundary: exactly renew_before left renews; a second more does not.
    assert renewal_reason(fresh, NAMES, fresh.not_after - THIRTY_DAYS, THIRTY_DAYS) != ""
    early = fresh.not_after - THIRTY_DAYS - datetime.timedelta(seconds=1)
    assert renewal_reason(fresh, NAMES, early, THIRTY_DAYS) == ""
    renamed = service_names([("otterize-system", "nm-aws-webhook")], "cluster.local")
    assert renewal_reason(fresh, renamed, NOW, THIRTY_DAYS) == (
        "lacks the names nm-aws-webhook.otterize-system.svc, nm-aws-webhook.otterize-system.svc.cluster.local"
    )


def test_ca_bundle_patch(fresh: ServingMaterial) -> None:
    current = b64(fresh.ca_bundle_pem)
    assert ca_bundle_patch([current, current], fresh.ca_bundle_pem, "7") == []
    patch: list[dict[str, Any]] = ca_bundle_patch([current, None, "not base64!"], fresh.ca_bundle_pem, "7")
    assert patch == [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
        {"op": "add", "path": "/webhooks/1/clientConfig/caBundle", "value": current},
        {"op": "add", "path": "/webhooks/2/clientConfig/caBundle", "value": current},
    ]


def test_issue_needs_a_name() -> None:
    with pytest.raises(ValueError, match="at least one DNS name"):
        issue([], NOW)
