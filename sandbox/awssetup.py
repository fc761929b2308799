"""What the sandbox makes for AWS visibility before any pod starts: trust, keys and API objects.

Called by :mod:`sandbox.supervisor`. Certificates come from :mod:`sandbox.certs`; files go under the
sandbox's state directory (never the machine's trust store), API objects to the API server:

* "AWS"'s own CA and its leaf for the ``*.amazonaws.com`` names (:data:`sandbox.awscloud.AWS_CERT_NAMES`),
  and the **public roots** bundle — the system CAs plus that CA, standing for the public CAs real AWS
  certificates chain to. Every sandbox pod trusts it (``AWS_CA_BUNDLE``, as an image's trust store).
  (The product's own certificates and webhook configuration are the chart's, installed with it.)
* The demo clients' AWS credentials, random per sandbox, in a Secret of their namespace.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox import certs
from sandbox.awscloud import AWS_CERT_NAMES
from sandbox.awsdemo import AWS_DEMO_NS, CREDENTIALS_SECRET

Manifest = dict[str, Any]
TLS_SECRET_TYPE = "kubernetes.io/tls"  # noqa: S105 (a Secret's type)


@dataclass(frozen=True, slots=True)
class AwsTrust:
    """The files of "AWS"'s TLS and of the public roots."""

    public_roots: Path
    cert_file: Path
    key_file: Path


def write_trust(directory: Path) -> AwsTrust:
    ca_cert, ca_key = certs.make_ca("sandbox AWS stand-in root CA")
    leaf_cert, leaf_key = certs.make_leaf(ca_cert, ca_key, AWS_CERT_NAMES)
    roots = certs.public_roots_bundle(certs.SYSTEM_BUNDLE, [ca_cert])
    return AwsTrust(
        certs.write_pem(directory / "public-roots.pem", roots),
        certs.write_pem(directory / "aws-tls.crt", leaf_cert),
        certs.write_pem(directory / "aws-tls.key", leaf_key, private=True),
    )


def _secret(namespace: str, name: str, data: dict[str, bytes], kind: str = "Opaque") -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": kind,
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def credentials_secret() -> Manifest:
    """Random AWS credentials for the demo's clients (the stand-in accepts any): an access key id, a
    secret key and a session token, so a test can look for each in every log and store."""
    return _secret(
        AWS_DEMO_NS,
        CREDENTIALS_SECRET,
        {
            "access-key-id": ("ASIA" + secrets.token_hex(8).upper()).encode(),
            "secret-access-key": secrets.token_urlsafe(30).encode(),
            "session-token": secrets.token_urlsafe(96).encode(),
        },
    )
