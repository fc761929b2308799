"""``network-mapper-aws-proxy`` as the chart runs it: ``python -m agent.aws.proxy_addon`` with
flags, a confdir holding only ``mitmproxy-ca.pem`` (read-only, as a Secret mount is; the CA made
as Helm's ``genCA`` makes the chart's, so the clients' strict verification of the proxy's leaves
needs the runner's key-identifier fix), reporting to the real mapper API app; stopped with SIGTERM.

The process resolves names with the system resolver, so the one endpoint it may reach here is
``localhost`` (``--domains localhost``), where nothing listens on 443: a signed STS request is
mapped and answered 502 (an upstream error), and its call reaches the mapper only through the
flush at SIGTERM (the report interval is longer than the test). A non-AWS host is refused. The
process's whole output holds neither the secret key, the session token nor the signature."""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from agent.aws.proxy_runner import AwsProxy
from agent.aws.settings import AwsProxySettings
from agent.model import AwsOperation
from tests.support.aws_upstream import TestCa
from tests.support.mapper_app import MapperServer, ObservationLog, mapper_app
from tests.support.mapper_process import clean_env, free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
TOKEN = "aws-proxy-main-token-5be1"
SECRET_KEY = "mainTestSecret/Hq4Zt8Rw2Lp6Vn0Xc3Bm7Ks9Jd5"
SESSION_TOKEN = "main-test-session-token-8d3a1f6c2b9e"


@pytest.fixture
def confdir(tmp_path: Path) -> Iterator[Path]:
    """The proxy CA's key and certificate alone, in a directory nobody may write to."""
    ca, confdir = TestCa("network-mapper-aws-proxy test CA", helm_style=True), tmp_path / "secret"
    confdir.mkdir()
    (confdir / "mitmproxy-ca.pem").write_bytes(ca.mitmproxy_pem())
    ca.write_cert(tmp_path / "ca.crt")
    confdir.chmod(0o500)
    yield confdir
    confdir.chmod(0o700)


def signed_sts_request(host: str) -> tuple[bytes, str]:
    """A GetCallerIdentity request signed as botocore signs it: (raw HTTP/1.1 bytes, signature)."""
    request = AWSRequest(
        "POST",
        f"https://{host}/",
        data=b"Action=GetCallerIdentity&Version=2011-06-15",
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    SigV4Auth(Credentials("AKIAMAINTEST4R7T1Y9U", SECRET_KEY, SESSION_TOKEN), "sts", "us-east-1").add_auth(
        request
    )
    head = ["POST / HTTP/1.1", f"Host: {host}", "Connection: close", f"Content-Length: {len(request.body)}"]
    head += [f"{name}: {value}" for name, value in request.headers.items()]
    signature = str(request.headers["Authorization"]).rpartition("Signature=")[2]
    return "\r\n".join(head).encode() + b"\r\n\r\n" + request.body, signature


def over_tls(port: int, sni: str, cafile: Path, raw: bytes) -> int:
    context = ssl.create_default_context(cafile=str(cafile))
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as plain,
        context.wrap_socket(plain, server_hostname=sni) as tls,
    ):
        tls.sendall(raw)
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


def test_the_chart_command_serves_reports_on_sigterm_and_logs_no_secret(confdir: Path) -> None:
    observations = ObservationLog()
    port, health = free_port(), free_port()
    with MapperServer(mapper_app(TOKEN, observations)) as mapper:
        argv = [
            "--listen-address", f"127.0.0.1:{port}",
            "--health-address", f"127.0.0.1:{health}",
            "--confdir", str(confdir),
            "--domains", "localhost",
            "--mapper-url", mapper.url,
            "--report-interval", "300",
        ]  # fmt: skip
        process = subprocess.Popen(
            [sys.executable, "-m", "agent.aws.proxy_runner", *argv],
            cwd=REPO,
            env=clean_env({"NETWORK_MAPPER_TOKEN": TOKEN}),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            statuses: list[int] = []

            def healthy() -> bool:
                assert process.poll() is None, process.communicate()[0]
                try:
                    statuses.append(requests.get(f"http://127.0.0.1:{health}/healthz", timeout=2).status_code)
                except requests.ConnectionError:
                    return False
                return statuses[-1] == 200

            wait_until(healthy, 60, "the proxy's /healthz")
            assert statuses[0] == 503  # while the datasets load, before the proxy listens
            cafile = confdir.parent / "ca.crt"
            raw, signature = signed_sts_request("localhost")
            assert over_tls(port, "localhost", cafile, raw) == 502  # mapped, then nothing on :443
            assert (
                over_tls(
                    port,
                    "example.com",
                    cafile,
                    b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
                )
                == 421
            )
            metrics = requests.get(f"http://127.0.0.1:{health}/metrics", timeout=5).text
            assert "network_mapper_aws_proxy_calls_mapped_total 1" in metrics
            assert "network_mapper_aws_proxy_operations_pending 1" in metrics  # held until the flush
            assert observations.observations() == []
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 0, output
    [seen] = observations.observations()
    assert isinstance(seen, AwsOperation)
    assert (seen.client_ip, seen.service, seen.action, seen.resource) == (
        "127.0.0.1",
        "sts",
        "GetCallerIdentity",
        "*",
    )
    assert "request refused" in output and "upstream connection failed host=localhost" in output
    assert "client connect" not in output  # mitmproxy's per-connection lines stay below WARNING
    for secret in (SECRET_KEY, SESSION_TOKEN, signature):
        assert secret not in output
    assert list(confdir.iterdir()) == [confdir / "mitmproxy-ca.pem"]  # nothing written next to the CA


@pytest.mark.parametrize("taken", ["listen_address", "health_address"])
def test_an_address_in_use_ends_the_proxy_with_1(confdir: Path, taken: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        addresses = {"listen_address": "127.0.0.1:0", "health_address": "127.0.0.1:0"}
        addresses[taken] = f"127.0.0.1:{busy.getsockname()[1]}"
        settings = AwsProxySettings(confdir=confdir, mapper_url="http://127.0.0.1:9/query", **addresses)
        proxy = AwsProxy(settings)
        assert proxy.run(handle_signals=False) == 1
        assert not proxy.healthy() and not proxy.reporter.is_alive()
