"""Certificates for the sandbox: a CA, leaf certificates it signs, and the "public roots" bundle.

Inputs are names and addresses from the caller (the supervisor, the tests); outputs are PEM
bytes, which the caller writes under a directory of its own (:func:`write_pem` keeps keys
private). Nothing here touches the machine's trust store: the "public roots" bundle is a new
file made of the machine's CA bundle (read only) plus the sandbox's extra CAs.

Keys are ECDSA P-256 and certificates carry what strict verifiers ask for (critical basic
constraints and key usage, SKI/AKI, SANs, serverAuth): Python's ``ssl`` (also with
``VERIFY_X509_STRICT``), urllib3/botocore, mitmproxy and OpenSSL all accept them.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import certifi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")  # Debian's ca-certificates output
CA_DAYS = 3650
LEAF_DAYS = 365
CLOCK_SKEW = datetime.timedelta(hours=1)  # not_before in the past: clocks of peers may lag

CertAndKey = tuple[bytes, bytes]  # (certificate PEM, private key PEM)


def make_ca(common_name: str) -> CertAndKey:
    """A self-signed CA that may sign leaf certificates only (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def make_leaf(
    ca_cert_pem: bytes,
    ca_key_pem: bytes,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str] = (),
) -> CertAndKey:
    """A server certificate for ``dns_names`` (wildcards allowed) and ``ip_addresses``,
    signed by the CA. The first DNS name (else the first address) is the subject's CN."""
    if not dns_names and not ip_addresses:
        raise ValueError("a leaf certificate needs at least one DNS name or IP address")
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError("the CA key is not an ECDSA key made by make_ca")
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    common_name = dns_names[0] if dns_names else ip_addresses[0]
    now = datetime.datetime.now(datetime.UTC)
    not_after = min(now + datetime.timedelta(days=LEAF_DAYS), ca_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        # Not critical: the subject is not empty (RFC 5280 4.2.1.6).
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def public_roots_bundle(system_bundle: Path, extra_ca_pems: Iterable[bytes]) -> bytes:
    """The system's CA bundle (``system_bundle`` if it exists, else certifi's) followed by
    ``extra_ca_pems``: what the sandbox's pods trust as "the public CAs"."""
    source = system_bundle if system_bundle.is_file() else Path(certifi.where())
    parts = [source.read_bytes()]
    for pem in extra_ca_pems:
        x509.load_pem_x509_certificate(pem)  # a ValueError now beats a bundle nothing can load
        parts.append(pem)
    return b"\n".join(part.strip() + b"\n" for part in parts)


def write_pem(path: Path, data: bytes, *, private: bool = False) -> Path:
    """Write ``data`` to ``path`` (a key with mode 0600 from the start, never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = 0o600 if private else 0o644
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    path.chmod(mode)  # an existing file keeps its old mode through O_CREAT
    return path


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


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
