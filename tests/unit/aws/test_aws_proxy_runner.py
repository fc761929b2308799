"""agent.aws.proxy_runner without the proxy running: the mitmproxy options it runs with, the files
it needs, its name resolution seam, the console entry (also through ``agent.aws.proxy_addon``),
and the leaf certificates it has mitmproxy issue: they verify against a CA made by Helm's
``genCA`` (the chart's, rendered here), whose Subject Key Identifier is not the SHA-1 of its key,
in a real TLS handshake trusting only the chart's ``ca.crt``; mitmproxy's own leaves do not."""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
import tomllib
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from mitmproxy import certs
from mitmproxy.certs import CertStore

from agent.aws.proxy_addon import PLACEHOLDER
from agent.aws.proxy_runner import (
    CA_FILE,
    DHPARAM_FILE,
    MITMPROXY_LEAF,
    ResolvingEventLoop,
    check_files,
    issue_leaves_with_issuer_key_id,
    main,
    mitm_options,
    runtime_confdir,
    with_issuer_key_id,
)
from agent.aws.settings import AwsProxySettings
from agent.settings import SettingsError
from tests.support.chart import CHART
from tests.support.tls import handshake

HOST = "s3.amazonaws.com"


def test_mitmproxy_runs_in_reverse_mode_lazily_keeping_the_host(tmp_path: Path) -> None:
    settings = AwsProxySettings(
        listen_address="127.0.0.1:8443", upstream_ca_bundle="/b.pem", domains=("a.example",)
    )
    opts = mitm_options(settings, tmp_path)
    assert opts["mode"] == [f"reverse:http://{PLACEHOLDER}:443"]
    assert (opts["listen_host"], opts["listen_port"], opts["confdir"]) == ("127.0.0.1", 8443, str(tmp_path))
    assert opts["connection_strategy"] == "lazy" and opts["keep_host_header"] is True
    assert opts["upstream_cert"] is False and opts["ssl_insecure"] is False
    assert opts["ssl_verify_upstream_trusted_ca"] == "/b.pem" and opts["aws_domains"] == ["a.example"]
    system = mitm_options(AwsProxySettings(), tmp_path)  # empty bundle: the system's, not certifi's
    assert system.get("ssl_verify_upstream_trusted_ca") or system.get("ssl_verify_upstream_trusted_confdir")


def test_the_ca_key_and_certificate_must_be_in_confdir(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=CA_FILE):
        check_files(AwsProxySettings(confdir=tmp_path))
    CertStore.create_store(tmp_path, "mitmproxy", 2048)
    check_files(AwsProxySettings(confdir=tmp_path))
    cert_only = tmp_path / "cert-only"
    cert_only.mkdir()
    (cert_only / CA_FILE).write_bytes((tmp_path / "mitmproxy-ca-cert.pem").read_bytes())
    with pytest.raises(SettingsError, match="key and certificate"):
        check_files(AwsProxySettings(confdir=cert_only))
    with pytest.raises(SettingsError, match="upstream-ca-bundle"):
        check_files(AwsProxySettings(confdir=tmp_path, upstream_ca_bundle=str(tmp_path / "missing.pem")))


def test_mitmproxy_gets_a_private_directory_so_confdir_stays_read_only(tmp_path: Path) -> None:
    confdir, runtime = tmp_path / "secret", tmp_path / "runtime"
    confdir.mkdir()
    runtime.mkdir()
    (confdir / CA_FILE).write_text("key and cert")
    assert runtime_confdir(confdir, runtime) == runtime
    assert [p.name for p in runtime.iterdir()] == [CA_FILE]
    assert (runtime / CA_FILE).read_text() == "key and cert"


def test_asyncio_resolves_through_the_seam() -> None:
    asked: list[tuple[Any, Any]] = []

    def resolver(
        host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> list[Any]:
        asked.append((host, port))
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", listener_port))]

    async def connect() -> bytes:
        server = await asyncio.start_server(lambda r, w: w.write(b"hi"), "127.0.0.1", 0)
        nonlocal listener_port
        listener_port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("sts.amazonaws.com", 443)
        data = await reader.read(2)
        writer.close()
        server.close()
        return data

    listener_port = 0
    with asyncio.Runner(loop_factory=lambda: ResolvingEventLoop(resolver)) as runner:
        assert runner.run(connect()) == b"hi"
    assert asked == [("sts.amazonaws.com", 443)]


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["--listen-address", "nowhere"], {}, "--listen-address"),
        ([], {"AWS_PROXY_DOMAINS": ""}, "AWS_PROXY_DOMAINS"),
        (["--confdir", "/nonexistent/confdir"], {}, "mitmproxy-ca.pem"),
    ],
)
def test_main_refuses_bad_settings_with_one_line(
    argv: list[str], environ: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv, environ) == 2
    err = capsys.readouterr().err
    assert err.startswith("network-mapper-aws-proxy: ") and message in err and err.count("\n") == 1


def test_the_console_script_is_the_runners_main() -> None:
    # pyproject's network-mapper-aws-proxy (the chart's command); the sandbox runs its module.
    pyproject = tomllib.loads((Path(__file__).resolve().parents[3] / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["network-mapper-aws-proxy"] == "agent.aws.proxy_runner:main"


# ---------------------------------------------------------------------------- leaf certificates


@pytest.fixture(scope="module")
def chart_ca() -> tuple[bytes, str]:
    """The chart's proxy CA (aws.visibility.enabled): the Secret's ``mitmproxy-ca.pem`` (key and
    certificate) and the ConfigMap's ``ca.crt`` (what pods trust)."""
    files = helm.Chart.load(CHART).render(
        {"aws": {"visibility": {"enabled": True}}}, name="nm", namespace="ns"
    )
    manifests = [text for path, text in files.items() if path.endswith(".yaml")]  # not NOTES.txt
    docs = [doc for text in manifests for doc in yaml.safe_load_all(text) if isinstance(doc, dict)]
    [secret] = [d for d in docs if d["kind"] == "Secret" and CA_FILE in d.get("data", {})]
    [config] = [
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-aws-proxy-ca-cert")
    ]
    return base64.b64decode(secret["data"][CA_FILE]), config["data"]["ca.crt"]


def store_in(tmp_path: Path, ca_pem: bytes) -> CertStore:
    """mitmproxy's cert store over a confdir holding ``ca_pem``, as the proxy's TLS addon loads it."""
    confdir = tmp_path / "confdir"
    confdir.mkdir(exist_ok=True)
    (confdir / CA_FILE).write_bytes(ca_pem)
    (confdir / DHPARAM_FILE).write_bytes(certs.DEFAULT_DHPARAM)
    return CertStore.from_store(confdir, "mitmproxy", 2048)


def leaf_handshake(tmp_path: Path, trusted: str, entry: certs.CertStoreEntry, hostname: str = HOST) -> None:
    """:func:`tests.support.tls.handshake` against a server with the leaf ``entry``."""
    key = entry.privatekey.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    handshake(tmp_path, trusted, entry.cert.to_pem().decode(), key.decode(), hostname)


def leaf_for(store: CertStore, host: str = HOST) -> certs.CertStoreEntry:
    return store.get_cert(host, [x509.DNSName(host)])  # as mitmproxy's TLS addon asks for an SNI


def test_the_chart_ca_has_a_key_identifier_that_is_not_sha1(chart_ca: tuple[bytes, str]) -> None:
    ca = x509.load_pem_x509_certificate(chart_ca[1].encode())
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski != x509.SubjectKeyIdentifier.from_public_key(ca.public_key())  # the case mitmproxy misses


def test_leaves_verify_against_a_ca_made_by_helm(
    chart_ca: tuple[bytes, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pem, trusted = chart_ca
    monkeypatch.setattr(certs, "dummy_cert", MITMPROXY_LEAF)  # restored after the test
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
        leaf_handshake(tmp_path, trusted, leaf_for(store_in(tmp_path, pem)))  # mitmproxy 11.0's own leaf
    issue_leaves_with_issuer_key_id()  # as the runner does at start-up
    entry = leaf_for(store_in(tmp_path, pem))
    leaf_handshake(tmp_path, trusted, entry)
    with pytest.raises(ssl.SSLCertVerificationError):
        leaf_handshake(tmp_path, trusted, entry, "sts.amazonaws.com")  # and for its own name only
    ca = x509.load_pem_x509_certificate(trusted.encode())
    leaf = x509.load_pem_x509_certificate(entry.cert.to_pem())
    assert leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier == (
        ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    )


def test_the_leaf_keeps_everything_else_mitmproxy_wrote(chart_ca: tuple[bytes, str], tmp_path: Path) -> None:
    pem = chart_ca[0]
    store = store_in(tmp_path, pem)
    mitm = x509.load_pem_x509_certificate(
        MITMPROXY_LEAF(
            store.default_privatekey,
            x509.load_pem_x509_certificate(store.default_ca.to_pem()),
            HOST,
            [x509.DNSName(HOST)],
        ).to_pem()
    )
    ca = x509.load_pem_x509_certificate(store.default_ca.to_pem())
    fixed = with_issuer_key_id(mitm, ca, store.default_privatekey)
    assert fixed is not mitm
    fixed.verify_directly_issued_by(ca)
    for name in ("subject", "issuer", "serial_number", "not_valid_before_utc", "not_valid_after_utc"):
        assert getattr(fixed, name) == getattr(mitm, name), name
    assert fixed.public_key() == mitm.public_key()

    def others(cert: x509.Certificate) -> list[Any]:
        return [
            (e.oid, e.critical, e.value) for e in cert.extensions if e.oid != x509.AuthorityKeyIdentifier.oid
        ]

    assert others(fixed) == others(mitm) and others(mitm)


def test_a_leaf_of_a_ca_whose_identifier_is_sha1_is_left_as_it_is(tmp_path: Path) -> None:
    made = tmp_path / "made"
    CertStore.create_store(made, "mitmproxy", 2048)  # mitmproxy's own CA: SHA-1 identifier
    store = CertStore.from_store(made, "mitmproxy", 2048)
    ca = x509.load_pem_x509_certificate(store.default_ca.to_pem())
    leaf = x509.load_pem_x509_certificate(
        MITMPROXY_LEAF(store.default_privatekey, ca, HOST, [x509.DNSName(HOST)]).to_pem()
    )
    assert with_issuer_key_id(leaf, ca, store.default_privatekey) is leaf
    bare = (  # a CA without a Subject Key Identifier: nothing to copy
        x509.CertificateBuilder()
        .subject_name(ca.subject)
        .issuer_name(ca.subject)
        .public_key(ca.public_key())
        .serial_number(1)
        .not_valid_before(ca.not_valid_before_utc)
        .not_valid_after(ca.not_valid_after_utc)
        .sign(store.default_privatekey, hashes.SHA256())
    )
    assert with_issuer_key_id(leaf, bare, store.default_privatekey) is leaf
