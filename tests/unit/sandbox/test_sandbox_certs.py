"""The sandbox's certificates: leaves verify against their CA for each name they carry (with
Python's ssl, in memory, and with the openssl command), and for no other; the public-roots
bundle holds the system CAs and the extra CA."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from sandbox.certs import SYSTEM_BUNDLE, make_ca, make_leaf, public_roots_bundle, write_pem

CA = make_ca("sandbox test CA")
NAMES = ["amazonaws.com", "*.amazonaws.com", "*.s3.us-east-1.amazonaws.com"]
LEAF = make_leaf(*CA, NAMES, ["127.0.0.1"])
OTHER_CA = make_ca("another CA")


def handshake(server_cert: bytes, server_key: bytes, ca_pem: bytes, hostname: str, tmp: Path) -> None:
    """A TLS handshake over memory BIOs; raises ssl.SSLCertVerificationError when it fails."""
    cert_file = write_pem(tmp / "leaf.pem", server_cert)
    key_file = write_pem(tmp / "leaf.key", server_key, private=True)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_file, key_file)
    client_ctx = ssl.create_default_context(cadata=ca_pem.decode())
    client_ctx.verify_flags |= ssl.VERIFY_X509_STRICT  # what Python 3.13 turns on by default
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=hostname)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for side, obj in (("client", client), ("server", server)):
            if not done[side]:
                try:
                    obj.do_handshake()
                    done[side] = True
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLCertVerificationError:
                    raise
                except ssl.SSLError:
                    if side == "server":  # the server sees the client's alert after a failed verify
                        done[side] = True
                    else:
                        raise
            s_in.write(c_out.read())
            c_in.write(s_out.read())
        if all(done.values()):
            break
    client.do_handshake()  # raises if the client never finished


@pytest.mark.parametrize(
    "hostname",
    ["amazonaws.com", "sts.amazonaws.com", "network-mapper-demo.s3.us-east-1.amazonaws.com", "127.0.0.1"],
)
def test_leaf_verifies_for_each_name_it_carries(hostname: str, tmp_path: Path) -> None:
    handshake(*LEAF, CA[0], hostname, tmp_path)


@pytest.mark.parametrize(
    "hostname",
    [
        "example.com",
        "s3.us-east-1.amazonaws.com.evil.example",
        "a.b.amazonaws.com",  # a wildcard covers one label only
        "a.b.s3.us-east-1.amazonaws.com",
        "127.0.0.2",
    ],
)
def test_leaf_does_not_verify_for_other_names(hostname: str, tmp_path: Path) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(*LEAF, CA[0], hostname, tmp_path)


def test_leaf_does_not_verify_against_another_ca(tmp_path: Path) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(*LEAF, OTHER_CA[0], "amazonaws.com", tmp_path)


def test_leaf_carries_server_auth_and_its_names() -> None:
    cert = x509.load_pem_x509_certificate(LEAF[0])
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in eku
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == NAMES
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.issuer == x509.load_pem_x509_certificate(CA[0]).subject


def test_openssl_verifies_the_chain_for_server_use(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    assert openssl, "the openssl command is part of this machine's image"
    ca_file, leaf_file = write_pem(tmp_path / "ca.pem", CA[0]), write_pem(tmp_path / "leaf.pem", LEAF[0])
    ok = subprocess.run(
        [openssl, "verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", ca_file, leaf_file],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    other = write_pem(tmp_path / "other.pem", OTHER_CA[0])
    bad = subprocess.run([openssl, "verify", "-CAfile", other, leaf_file], capture_output=True, check=False)
    assert bad.returncode != 0


def test_leaf_needs_a_name() -> None:
    with pytest.raises(ValueError):
        make_leaf(*CA, [])


def certs_in(bundle: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(bundle)


def test_public_roots_bundle_holds_the_system_cas_and_the_extra_ca(tmp_path: Path) -> None:
    system = tmp_path / "system.pem"
    system.write_bytes(OTHER_CA[0])
    bundle = public_roots_bundle(system, [CA[0]])
    assert [c.subject.rfc4514_string() for c in certs_in(bundle)] == [
        "CN=another CA",
        "CN=sandbox test CA",
    ]
    # It is usable as a trust store: the leaf verifies through it.
    handshake(*LEAF, bundle, "sts.amazonaws.com", tmp_path)


def test_public_roots_bundle_from_this_machine_keeps_every_system_ca() -> None:
    assert SYSTEM_BUNDLE.is_file(), "Debian's ca-certificates bundle is on this machine"
    system = certs_in(SYSTEM_BUNDLE.read_bytes())
    bundle = certs_in(public_roots_bundle(SYSTEM_BUNDLE, [CA[0]]))
    assert len(system) > 100
    assert bundle == [*system, x509.load_pem_x509_certificate(CA[0])]


def test_public_roots_bundle_falls_back_to_certifi(tmp_path: Path) -> None:
    import certifi

    bundle = certs_in(public_roots_bundle(tmp_path / "missing.crt", [CA[0]]))
    assert bundle[:-1] == certs_in(Path(certifi.where()).read_bytes())


def test_public_roots_bundle_rejects_a_non_certificate(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        public_roots_bundle(tmp_path / "missing.crt", [b"not a certificate"])


def test_keys_are_written_private(tmp_path: Path) -> None:
    key = write_pem(tmp_path / "sub" / "leaf.key", LEAF[1], private=True)
    assert key.stat().st_mode & 0o777 == 0o600
    assert write_pem(tmp_path / "leaf.pem", LEAF[0]).stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    "hostname",
    [
        "sts.amazonaws.com",
        "sts.us-east-1.amazonaws.com",
        "sqs.us-east-1.amazonaws.com",
        "dynamodb.us-east-1.amazonaws.com",
        "123456789012.ddb.us-east-1.amazonaws.com",  # DynamoDB's account-based endpoints
        "s3.amazonaws.com",
        "network-mapper-demo.s3.amazonaws.com",
        "network-mapper-demo.s3.us-east-1.amazonaws.com",
        "demo-ap-123456789012.s3-accesspoint.us-east-1.amazonaws.com",
        "123456789012.s3-control.us-east-1.amazonaws.com",
    ],
)
def test_the_aws_stand_ins_names_cover_the_endpoints_boto3_uses(hostname: str, tmp_path: Path) -> None:
    from sandbox.awscloud import AWS_CERT_NAMES

    handshake(*make_leaf(*CA, AWS_CERT_NAMES), CA[0], hostname, tmp_path)
