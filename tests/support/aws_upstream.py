"""A stand-in for AWS over TLS on 127.0.0.1, for the tests of what sits between pods and AWS
(the IAM proxy, the DNS forwarder's fail-open path).

* :class:`TestCa`: a throw-away CA (``cryptography``) that issues leaf certificates; its
  certificate is what the test trusts in place of the public CAs real endpoints chain to. Made
  with ``helm_style=True`` it is an RSA CA whose Subject Key Identifier is the truncated SHA-256
  of its key, as Helm's ``genCA`` (Go >= 1.24) makes the chart's proxy CA, and
  :meth:`TestCa.mitmproxy_pem` is then the proxy's ``confdir`` file.
* :class:`AwsUpstream`: moto's server app (``moto.server.DomainDispatcherApplication``, which picks
  the service from the Host header as AWS does) behind a WSGI middleware that records every request
  as it arrived (:class:`ReceivedRequest`: method, raw URI, headers, body), served by werkzeug over
  TLS with a leaf for the AWS names in :data:`UPSTREAM_NAMES`. moto checks no signature: compare the
  recorded requests with what the client sent to see that nothing was changed on the way.
* :func:`aws_names_to`: a ``socket.getaddrinfo`` stand-in that resolves every name under
  ``amazonaws.com`` (port 443) to 127.0.0.1 and a given port and anything else as the system does:
  the proxy's resolver seam, and, patched into ``socket`` in a client process, the DNS forwarder's
  answer "the proxy is here".
"""

from __future__ import annotations

import datetime
import io
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

AWS_DOMAIN = "amazonaws.com"
UPSTREAM_NAMES = (
    "*.amazonaws.com",
    "*.us-east-1.amazonaws.com",
    "s3.us-east-1.amazonaws.com",
    "*.s3.us-east-1.amazonaws.com",
    "*.s3.amazonaws.com",
)

_REAL_GETADDRINFO = socket.getaddrinfo  # before any test patches it


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def sha256_key_identifier(public_key: rsa.RSAPublicKey) -> x509.SubjectKeyIdentifier:
    """The Subject Key Identifier Go >= 1.24 writes (so Helm's ``genCA``): SHA-256 of the
    subjectPublicKey bits (an RSA key's PKCS#1 DER), truncated to 160 bits (RFC 7093 method 1)."""
    bits = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(bits)
    return x509.SubjectKeyIdentifier(digest.finalize()[:20])


class TestCa:
    """A CA made now, valid for a day; :meth:`issue` makes TLS server leaves. EC P-256 with a SHA-1
    key identifier (fast); ``helm_style``: RSA 2048 with a truncated SHA-256 one, as Helm's."""

    __test__ = False  # not a pytest test class

    def __init__(
        self, common_name: str = "network-mapper test public root", *, helm_style: bool = False
    ) -> None:
        self.key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
        if helm_style:
            self.key = rsa.generate_private_key(65537, 2048)
            key_id = sha256_key_identifier(self.key.public_key())
        else:
            self.key = ec.generate_private_key(ec.SECP256R1())
            key_id = x509.SubjectKeyIdentifier.from_public_key(self.key.public_key())
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(key_id, critical=False)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def mitmproxy_pem(self) -> bytes:
        """The key then the certificate: mitmproxy's ``mitmproxy-ca.pem`` (the chart's Secret)."""
        key = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        return key + self.cert_pem

    def write_cert(self, path: Path) -> Path:
        path.write_bytes(self.cert_pem)
        return path

    def issue(self, names: Iterable[str]) -> tuple[bytes, bytes]:
        """A leaf for ``names`` (DNS names, wildcards allowed): (certificate PEM, key PEM)."""
        names = list(names)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                    self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
                ),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return cert.public_bytes(serialization.Encoding.PEM), key_pem

    def server_context(self, names: Iterable[str], directory: Path) -> ssl.SSLContext:
        """A TLS server context with a leaf for ``names`` (files written under ``directory``)."""
        cert_pem, key_pem = self.issue(names)
        cert_file, key_file = directory / "leaf.pem", directory / "leaf.key"
        cert_file.write_bytes(cert_pem)
        key_file.write_bytes(key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        return context


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the upstream received it: header names lower-cased, values as sent."""

    method: str
    uri: str  # the request target as sent: path and query, not decoded
    headers: dict[str, str]
    body: bytes

    @property
    def host(self) -> str:
        return self.headers.get("host", "")


def _headers(environ: dict[str, Any]) -> dict[str, str]:
    headers = {
        key[5:].replace("_", "-").lower(): value for key, value in environ.items() if key.startswith("HTTP_")
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    return headers


class _Recorder:
    """WSGI middleware: records the request, then hands moto a rewound body."""

    def __init__(self, app: Callable[..., Any], upstream: AwsUpstream) -> None:
        self.app = app
        self.upstream = upstream

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        stream, length = environ["wsgi.input"], environ.get("CONTENT_LENGTH")
        if environ.get("wsgi.input_terminated"):  # chunked: werkzeug de-chunks up to the end
            body = stream.read()
        else:
            body = stream.read(int(length)) if length else b""
        uri = environ.get("REQUEST_URI") or environ.get("RAW_URI") or environ.get("PATH_INFO", "")
        self.upstream._record(ReceivedRequest(environ["REQUEST_METHOD"], uri, _headers(environ), body))
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)


class AwsUpstream:
    """``with AwsUpstream(ca, tmp_path) as aws: ... aws.port ... aws.received()``: moto over TLS
    on 127.0.0.1 (a free port), answering for :data:`UPSTREAM_NAMES` with a leaf from ``ca``."""

    def __init__(self, ca: TestCa, directory: Path, names: Iterable[str] = UPSTREAM_NAMES) -> None:
        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        self._lock = threading.Lock()
        self._received: list[ReceivedRequest] = []
        app = _Recorder(DomainDispatcherApplication(create_backend_app), self)
        context = ca.server_context(names, directory)
        self._server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=context)
        self.port: int = self._server.server_port
        self._thread: threading.Thread | None = None

    def start(self) -> AwsUpstream:
        self._thread = threading.Thread(target=self._server.serve_forever, name="aws-upstream", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def _record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self._received.append(request)

    def received(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._received)

    def resolver(self, missing: Iterable[str] = ()) -> Callable[..., list[Any]]:
        """Resolves AWS names to this upstream, but ``missing`` (see :func:`aws_names_to`)."""
        return aws_names_to(self.port, missing=missing)

    def __enter__(self) -> AwsUpstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def aws_names_to(
    port: int, host: str = "127.0.0.1", domain: str = AWS_DOMAIN, missing: Iterable[str] = ()
) -> Callable[..., list[Any]]:
    """A ``socket.getaddrinfo`` that answers ``(<name under domain>, 443)`` with ``host:port``
    (``resolved`` lists the names asked), fails for the names in ``missing`` as for a name that
    does not exist, and passes anything else to the real one."""
    resolved: list[str] = []
    missing = frozenset(missing)

    def getaddrinfo(
        name: Any, service: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> list[Any]:
        text = name.decode() if isinstance(name, bytes) else str(name or "")
        if text in missing:
            resolved.append(text)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if (text == domain or text.endswith("." + domain)) and str(service) == "443":
            resolved.append(text)
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))]
        return _REAL_GETADDRINFO(name, service, family, type, proto, flags)

    getaddrinfo.resolved = resolved  # type: ignore[attr-defined]
    return getaddrinfo
