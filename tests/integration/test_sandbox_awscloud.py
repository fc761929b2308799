"""The sandbox's AWS stand-in (a real ``python -m sandbox.awscloud`` process over TLS), the demo's
resources made by ``prepare`` and the demo client's iteration, end to end over real sockets.

In the sandbox the pods' DNS sends ``*.amazonaws.com`` to the stand-in on port 443. Here the test
process stands in for that DNS: ``socket.getaddrinfo`` is overridden (in this process only, for
the test's duration) so every AWS name resolves to 127.0.0.1 and the stand-in's port, while the
client keeps its real endpoints, ``AWS_CA_BUNDLE`` and environment credentials, as in the pod.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import urllib3

import sandbox.awsclient as awsclient
from sandbox.awscloud import AWS_CERT_NAMES, DEMO_NAME, DEMO_QUEUE_URL, ConnectTo, prepare
from sandbox.certs import SYSTEM_BUNDLE, make_ca, make_leaf, public_roots_bundle, write_pem
from tests.support.mapper_process import wait_until

ACCESS_KEY_ID = "ASIATESTCLIENT000001"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYTESTSECRET"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEXAMPLETOKEN+sandbox/session/token=="
TARGETS = awsclient.Targets(DEMO_NAME, DEMO_NAME, DEMO_QUEUE_URL)
DEADLINE = 20.0


@dataclass
class Cloud:
    port: int
    log: Path
    ca: Path  # the stand-in's CA alone
    bundle: Path  # the "public roots": system CAs + the stand-in's CA
    other_ca: Path  # a CA that did not sign the stand-in's certificate
    queue_url: str

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    tmp = tmp_path_factory.mktemp("awscloud")
    ca_cert, ca_key = make_ca("AWS stand-in test CA")
    leaf_cert, leaf_key = make_leaf(ca_cert, ca_key, AWS_CERT_NAMES)
    ca = write_pem(tmp / "ca.pem", ca_cert)
    bundle = write_pem(tmp / "public-roots.pem", public_roots_bundle(SYSTEM_BUNDLE, [ca_cert]))
    other_ca = write_pem(tmp / "other-ca.pem", make_ca("not the stand-in's CA")[0])
    cert_file, key_file = (
        write_pem(tmp / "leaf.pem", leaf_cert),
        write_pem(tmp / "leaf.key", leaf_key, private=True),
    )
    port, log = free_port(), tmp / "awscloud.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sandbox.awscloud", "--listen", f"127.0.0.1:{port}"]
            + ["--cert-file", str(cert_file), "--key-file", str(key_file)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],
        )
    try:
        wait_until(lambda: accepts(port) or proc.poll() is not None, DEADLINE, "the stand-in to listen")
        assert proc.poll() is None, log.read_text()
        queue_url = prepare(("127.0.0.1", port), bundle)
        yield Cloud(port, log, ca, bundle, other_ca, queue_url)
    finally:
        # A connection left open (here: not even past its handshake) must not delay the stop.
        idle = socket.create_connection(("127.0.0.1", port), timeout=5)
        proc.send_signal(signal.SIGTERM)
        try:
            # Well under the stand-in's 120 s idle timeout, with room for a loaded machine's exit.
            returncode = proc.wait(timeout=DEADLINE)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            idle.close()
    assert returncode == 0, log.read_text()
    assert "signal 15: stopping" in log.read_text()
    assert "awscloud stopped" in log.read_text()


@pytest.fixture
def pod_environment(cloud: Cloud, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What the pod has: the Secret's credentials, AWS_CA_BUNDLE, and DNS sending AWS names to
    the stand-in — here a getaddrinfo override in this process only."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(cloud.bundle))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    real = socket.getaddrinfo

    def cluster_dns(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and (host == "amazonaws.com" or host.endswith(".amazonaws.com")):
            return real("127.0.0.1", cloud.port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", cluster_dns)


def admin_clients(cloud: Cloud) -> dict[str, Any]:
    """Clients that reach the stand-in through ConnectTo, as the supervisor's prepare does."""
    session = boto3.Session(
        aws_access_key_id="AKIAADMIN", aws_secret_access_key="admin", region_name="us-east-1"
    )
    ConnectTo(("127.0.0.1", cloud.port), cloud.ca).attach(session)
    return {name: session.client(name) for name in ("s3", "dynamodb", "sqs")}


def pod_session() -> Any:
    return boto3.Session(region_name="us-east-1")


def test_prepare_returns_the_real_queue_url_and_is_idempotent(cloud: Cloud) -> None:
    assert (
        cloud.queue_url
        == DEMO_QUEUE_URL
        == "https://sqs.us-east-1.amazonaws.com/123456789012/network-mapper-demo"
    )
    assert prepare(("127.0.0.1", cloud.port), cloud.ca) == DEMO_QUEUE_URL
    clients = admin_clients(cloud)
    assert [b["Name"] for b in clients["s3"].list_buckets()["Buckets"]] == [DEMO_NAME]
    table = clients["dynamodb"].describe_table(TableName=DEMO_NAME)["Table"]
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert clients["sqs"].list_queues()["QueueUrls"] == [DEMO_QUEUE_URL]


def test_prepare_refuses_a_server_its_bundle_does_not_trust(cloud: Cloud) -> None:
    from botocore.exceptions import SSLError

    with pytest.raises(SSLError):
        prepare(("127.0.0.1", cloud.port), cloud.other_ca)


def test_client_iteration_makes_seven_calls_and_the_data_round_trips(
    cloud: Cloud, pod_environment: None, tmp_path: Path
) -> None:
    signatures_file = tmp_path / "signatures.txt"
    result = awsclient.run_once(pod_session, TARGETS, 41, signatures_file)
    assert result == awsclient.IterationResult(41, 7, ())

    clients = admin_clients(cloud)
    body = clients["s3"].get_object(Bucket=DEMO_NAME, Key=TARGETS.key)["Body"].read().decode()
    assert body.startswith("iteration 41 ")
    item = clients["dynamodb"].get_item(TableName=DEMO_NAME, Key={"id": {"S": TARGETS.item_id}})["Item"]
    assert item == {"id": {"S": "aws-client"}, "iteration": {"N": "41"}, "body": {"S": body}}
    messages = clients["sqs"].receive_message(QueueUrl=DEMO_QUEUE_URL, MaxNumberOfMessages=10)["Messages"]
    assert body in [m["Body"] for m in messages]

    signatures = signatures_file.read_text().split()
    assert len(signatures) >= 7
    assert all(re.fullmatch(r"[0-9a-f]{64}", s) for s in signatures)
    assert len(set(signatures)) == len(signatures)

    # The stand-in saw each service by its real name, and logged no secret.
    log = cloud.log_text()
    for host in (
        "network-mapper-demo.s3.amazonaws.com",
        "dynamodb.us-east-1.amazonaws.com",
        "sqs.us-east-1.amazonaws.com",
        "sts.us-east-1.amazonaws.com",
    ):
        assert f"host={host} " in log, host
    for secret in [*signatures, SECRET_KEY, SESSION_TOKEN]:
        assert secret not in log


def test_presigned_url_reaches_the_log_without_its_query(cloud: Cloud, pod_environment: None) -> None:
    from botocore.config import Config

    s3 = pod_session().client("s3", config=Config(signature_version="s3v4"))  # SigV4 query signing
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": DEMO_NAME, "Key": TARGETS.key}, ExpiresIn=60
    )
    signature = re.search(r"X-Amz-Signature=([0-9a-f]{64})", url)
    assert signature is not None
    with urllib3.PoolManager(ca_certs=str(cloud.bundle)) as http:
        response = http.request("GET", url, retries=False)
    assert response.status == 200
    assert response.data.startswith(b"iteration ")
    log = cloud.log_text()
    assert f"method=GET host=network-mapper-demo.s3.amazonaws.com path=/{TARGETS.key} status=200" in log
    for secret in (signature.group(1), SESSION_TOKEN, "X-Amz-Credential", "X-Amz-Security-Token"):
        assert secret not in log


def test_bad_request_lines_are_logged_without_their_text(cloud: Cloud) -> None:
    import ssl

    context = ssl.create_default_context(cafile=str(cloud.ca))
    with (
        socket.create_connection(("127.0.0.1", cloud.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="s3.amazonaws.com") as tls,
    ):
        tls.sendall(b"GET /x?X-Amz-Signature=feedfacefeedface BROKEN LINE\r\n\r\n")
        answer = b""
        while chunk := tls.recv(4096):
            answer += chunk
    assert b"Error code: 400" in answer
    wait_until(lambda: "http error" in cloud.log_text(), DEADLINE, "the error line")
    assert "feedfacefeedface" not in cloud.log_text()


def test_client_fails_each_call_when_its_bundle_does_not_trust_the_server(
    cloud: Cloud, pod_environment: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AWS_CA_BUNDLE", str(cloud.other_ca))
    monkeypatch.setattr(awsclient, "MAX_ATTEMPTS", 1)  # no backoff between retries: fail fast
    result = awsclient.run_once(pod_session, TARGETS, 1)
    assert result.ok == 0
    assert {(f.operation, f.error) for f in result.failures} == {
        (operation, "SSLError")
        for operation in (
            "s3.PutObject",
            "s3.GetObject",
            "s3.ListObjectsV2",
            "dynamodb.PutItem",
            "dynamodb.GetItem",
            "sqs.SendMessage",
            "sts.GetCallerIdentity",
        )
    }
    with caplog.at_level("INFO", logger="sandbox.awsclient"):
        awsclient.log_result(result)
    assert caplog.messages[-1] == "iteration=1 ok=0 failed=7"
    assert "iteration=1 failed operation=sqs.SendMessage error=SSLError code=-" in caplog.messages
    assert not any("amazonaws.com" in message for message in caplog.messages)


def test_client_main_loops_with_the_pods_configuration(
    cloud: Cloud, pod_environment: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import threading

    stop = threading.Event()
    results: list[awsclient.IterationResult] = []

    def record(result: awsclient.IterationResult) -> None:
        results.append(result)
        if len(results) == 2:
            stop.set()  # what SIGTERM does

    monkeypatch.setattr(awsclient, "stop_on_signals", lambda told: stop)
    monkeypatch.setattr(awsclient, "log_result", record)
    signatures_file = tmp_path / "signatures.txt"
    argv = ["--bucket", DEMO_NAME, "--table", DEMO_NAME, "--queue-url", DEMO_QUEUE_URL, "--interval", "0"]
    assert awsclient.main([*argv, "--signatures-file", str(signatures_file)]) == 0
    assert [(r.iteration, r.ok, r.failures) for r in results] == [(1, 7, ()), (2, 7, ())]
    assert len(signatures_file.read_text().split()) >= 14
