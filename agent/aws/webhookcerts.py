"""The webhook's serving certificate as data: read from, checked, made anew, and written back.

Pure (no I/O; the time is passed in). Input: the ``data`` of the kubernetes.io/tls Secret
(``tls.crt``, ``tls.key``, ``ca.crt``, each base64 as the API returns it) and the Service names of
the MutatingWebhookConfiguration's webhooks. Output: :class:`ServingMaterial` (what the server
loads), whether and why it must be renewed, a new CA + serving certificate, the Secret's new
``data``, and the JSON patch that sets the configuration's ``caBundle``. The I/O around it — the
Kubernetes API, the check loop, the TLS context — is :mod:`agent.aws.webhookrenewal`.

Each renewal makes a new CA (its key is used once to sign and then dropped, as the chart's
``genCA`` does: no object holds a CA key) and a serving certificate it signs. ``ca.crt`` and the
``caBundle`` hold the new CA and, while the certificate it replaces is still valid, that
certificate's CA too: a replica still serving the old certificate keeps verifying until it loads
the new one at its next check.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.aws.settings import CERT_VALIDITY_SECONDS

CERT_KEY, KEY_KEY, CA_KEY = "tls.crt", "tls.key", "ca.crt"  # the kubernetes.io/tls Secret's keys
VALIDITY = datetime.timedelta(seconds=CERT_VALIDITY_SECONDS)  # of a renewed certificate and its CA
CLOCK_SKEW = datetime.timedelta(hours=1)  # not_before in the past: kube-apiserver's clock may lag
CA_NAME = "network-mapper AWS webhook CA"


class CertificateError(ValueError):
    """The Secret's material is missing, unparsable or inconsistent (the message says which)."""


@dataclasses.dataclass(frozen=True, slots=True)
class ServingMaterial:
    """A serving certificate with its key and the CA bundle that verifies it (all PEM)."""

    cert_pem: bytes
    key_pem: bytes
    ca_bundle_pem: bytes  # ca.crt: the CA(s) a client trusts, the caBundle of the configuration
    issuer_pem: bytes  # the one CA of ca_bundle_pem that signed cert_pem
    not_after: datetime.datetime  # UTC
    names: frozenset[str]  # the certificate's DNS names


def _decode(data: Mapping[str, str], key: str) -> bytes:
    text = data.get(key)
    if not text:
        raise CertificateError(f"{key} is missing")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise CertificateError(f"{key} is not base64") from None


def parse_secret_data(data: Mapping[str, str] | None) -> ServingMaterial:
    """The material of a Secret's ``data``; CertificateError when a key is missing or unparsable,
    the key does not match the certificate, or no CA of ``ca.crt`` signed it."""
    data = data or {}
    cert_pem, key_pem, ca_pem = (_decode(data, key) for key in (CERT_KEY, KEY_KEY, CA_KEY))
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise CertificateError(f"{CERT_KEY} is not a PEM certificate") from None
    try:
        cas = x509.load_pem_x509_certificates(ca_pem)
    except ValueError:
        raise CertificateError(f"{CA_KEY} is not a PEM certificate bundle") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise CertificateError(f"{KEY_KEY} is not an unencrypted PEM private key") from None
    if _public_der(key.public_key()) != _public_der(cert.public_key()):
        raise CertificateError(f"{KEY_KEY} is not the key of {CERT_KEY}")
    issuer = next((ca for ca in cas if _signed_by(cert, ca)), None)
    if issuer is None:
        raise CertificateError(f"no CA in {CA_KEY} signed {CERT_KEY}")
    return ServingMaterial(
        cert_pem=cert_pem,
        key_pem=key_pem,
        ca_bundle_pem=ca_pem,
        issuer_pem=issuer.public_bytes(serialization.Encoding.PEM),
        not_after=min(cert.not_valid_after_utc, issuer.not_valid_after_utc),
        names=frozenset(_dns_names(cert)),
    )


def _public_der(public_key: Any) -> bytes:
    return bytes(
        public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(name) for name in sans.get_values_for_type(x509.DNSName)]


def service_names(services: Iterable[tuple[str, str]], cluster_domain: str) -> tuple[str, ...]:
    """The DNS names kube-apiserver may check for each ``(namespace, name)`` Service: what the chart's
    first certificate holds (``<name>.<ns>.svc`` and ``<name>.<ns>.svc.<cluster domain>``)."""
    names: list[str] = []
    for namespace, name in services:
        for dns in (f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.{cluster_domain}"):
            if dns not in names:
                names.append(dns)
    return tuple(names)


def renewal_reason(
    material: ServingMaterial,
    names: Iterable[str],
    now: datetime.datetime,
    renew_before: datetime.timedelta,
) -> str:
    """Why ``material`` must be replaced at ``now`` (empty: it need not be): it expires within
    ``renew_before`` (its own or its CA's end), or it lacks one of the Service's ``names``."""
    if material.not_after - now <= renew_before:
        return f"expires {material.not_after.isoformat()} (renewed {renew_before.days} days before)"
    missing = sorted(set(names) - material.names)
    if missing:
        return f"lacks the names {', '.join(missing)}"
    return ""


def issue(
    names: Sequence[str], now: datetime.datetime, previous: ServingMaterial | None = None
) -> ServingMaterial:
    """A new CA and a serving certificate it signs for ``names``, both valid ``VALIDITY`` from ``now``.
    The bundle is the new CA, then ``previous``'s issuer while ``previous`` is still valid."""
    if not names:
        raise ValueError("a serving certificate needs at least one DNS name")
    not_before, not_after = now - CLOCK_SKEW, now + VALIDITY
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    ca = (
        _builder(
            ca_name,
            issuer=ca_name,
            public=ca_key.public_key(),
            issuer_public=ca_key.public_key(),
            not_before=not_before,
            not_after=not_after,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = (
        _builder(
            subject,
            issuer=ca_name,
            public=key.public_key(),
            issuer_public=ca_key.public_key(),
            not_before=not_before,
            not_after=not_after,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    bundle = ca_pem
    if previous is not None and previous.not_after > now and previous.issuer_pem != ca_pem:
        bundle += previous.issuer_pem
    return ServingMaterial(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        ca_bundle_pem=bundle,
        issuer_pem=ca_pem,
        not_after=not_after,
        names=frozenset(names),
    )


def _builder(
    subject: x509.Name,
    *,
    issuer: x509.Name,
    public: ec.EllipticCurvePublicKey,
    issuer_public: ec.EllipticCurvePublicKey,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
) -> x509.CertificateBuilder:
    # SKI/AKI and critical constraints: what strict verifiers (VERIFY_X509_STRICT, Go's x509) ask for.
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public), critical=False)
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,  # ECDSA keys sign; they never encipher
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def secret_data(material: ServingMaterial) -> dict[str, str]:
    """The Secret's new ``data`` (base64, as the API takes it)."""
    pems = {CERT_KEY: material.cert_pem, KEY_KEY: material.key_pem, CA_KEY: material.ca_bundle_pem}
    return {key: base64.b64encode(pem).decode() for key, pem in pems.items()}


def ca_bundle_patch(
    current_bundles: Sequence[str | None], ca_bundle_pem: bytes, resource_version: str
) -> list[dict[str, Any]]:
    """The JSON patch (RFC 6902) that sets ``caBundle`` of each webhook of the configuration whose
    bundle (``current_bundles[i]``, base64 or None) is not ``ca_bundle_pem``; empty when none differs.
    It first tests ``resourceVersion``: webhooks added or reordered meanwhile fail it (422) rather
    than get the patch at the wrong index."""
    wanted = base64.b64encode(ca_bundle_pem).decode()
    operations: list[dict[str, Any]] = [
        {"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": wanted}
        for index, bundle in enumerate(current_bundles)
        if _decoded(bundle) != ca_bundle_pem
    ]
    if not operations:
        return []
    return [{"op": "test", "path": "/metadata/resourceVersion", "value": resource_version}, *operations]


def _decoded(bundle: str | None) -> bytes | None:
    try:
        return base64.b64decode(bundle or "", validate=True)
    except (binascii.Error, ValueError):
        return None
