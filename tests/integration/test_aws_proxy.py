"""The IAM proxy (``agent.aws.proxy_runner.AwsProxy``: mitmproxy's runner with the addon, the
reporter and the health endpoint, in a thread of this process) between real boto3 clients and a
TLS stand-in for AWS (``tests.support.aws_upstream``: moto's server app behind a recorder, with a
leaf from a test CA for the AWS names), reporting to the real mapper API app.

DNS is what is not under test: the proxy resolves AWS names through its resolver seam (to the
stand-in's port), and the clients through ``socket.getaddrinfo`` patched in this process (to the
proxy's port), as the DNS forwarder would answer them. Everything else is real: TLS to the proxy
with leaves minted from its CA (made as Helm's ``genCA`` makes the chart's: RSA, a Subject Key
Identifier that is the truncated SHA-256 of its key; the clients trust its certificate alone),
SigV4 signing, TLS upstream verified against the test CA, and the mutations.

Checked: S3, DynamoDB and STS calls (and a presigned URL) succeed and reach the stand-in
unchanged (method, target, every header the client sent, Host, body); the mapper observes each
call's action and resource from 127.0.0.1, DynamoDB's with the account the caller identity named
(and with ``*`` when no account is learned in time); non-AWS hosts and a Host that is not the TLS name are
refused with 421; an unsigned request is forwarded and counted; an endpoint that does not resolve
is a 502 and an upstream error; ``/healthz`` and ``/metrics``; and no log line of the proxy (at
DEBUG, mitmproxy's included) holds the secret key, the session token or any signature."""

from __future__ import annotations

import base64
import binascii
import logging
import socket
import ssl
import threading
import urllib.parse
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography import x509

from agent.aws.proxy_runner import AwsProxy
from agent.aws.settings import AwsProxySettings
from agent.model import AwsOperation
from tests.support.aws_upstream import AwsUpstream, ReceivedRequest, TestCa, aws_names_to
from tests.support.mapper_app import MapperServer, ObservationLog, mapper_app
from tests.support.mapper_process import wait_until

ACCESS_KEY = "AKIAPROXYTEST7Q2W9E4R"
MOTO_ACCOUNT = "123456789012"  # the account moto answers every caller identity with
SECRET_KEY = "proxyTestSecret/9Xq2Lr7Vw3Tn8Km1Hb6Jc4Pz0Ys5Ud"
SESSION_TOKEN = "proxy-test-session-token-4f1d9c0b7a2e8f6d3c5b"
TOKEN = "aws-proxy-agent-token-91c2"
REGION = "us-east-1"
BUCKET = "yak-proxy-bucket"
KEY = "reports/2024 q1.csv"
UPLOAD = b"id,amount\n1,2.50\n"
TABLE = "zebra-proxy-orders"
MISSING = "nowhere.us-east-1.amazonaws.com"  # under the domain, resolves to nothing
# Loggers of this process's clients and stand-ins, not of the proxy: botocore logs its own signing.
NOT_THE_PROXY = (
    "botocore",
    "boto3",
    "s3transfer",
    "urllib3",
    "moto",
    "werkzeug",
    "uvicorn",
    "passlib",
    "responses",
)
PROXY_LOGGERS = ("agent", "mitmproxy", "asyncio", "h11", "h2", "hpack")


class ProxyLogs(logging.Handler):
    """Every record of the proxy's loggers, formatted with its arguments and traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith(NOT_THE_PROXY):
            self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class Stack:
    proxy: AwsProxy
    upstream: AwsUpstream
    observations: ObservationLog
    proxy_ca: Path
    proxy_ca_cert: x509.Certificate
    logs: ProxyLogs
    port: int
    sent: list[Any] = field(default_factory=list)  # every request the clients sent (botocore's)
    urls: list[str] = field(default_factory=list)  # presigned URLs used

    def metric(self, name: str) -> float:
        text = requests.get(self.proxy.health.url + "/metrics", timeout=5).text
        for line in text.splitlines():
            if line.startswith(f"network_mapper_aws_proxy_{name} "):
                return float(line.split()[1])
        raise AssertionError(f"no metric {name} in {text}")

    def aws(self) -> set[tuple[str, str, str, str]]:
        return {
            (o.client_ip, o.service, o.action, o.resource)
            for o in self.observations.observations()
            if isinstance(o, AwsOperation)
        }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs, levels = ProxyLogs(), {}
    logging.getLogger().addHandler(logs)
    for name in PROXY_LOGGERS:
        levels[name] = logging.getLogger(name).level
        logging.getLogger(name).setLevel(logging.DEBUG)
    tmp = tmp_path_factory.mktemp("aws-proxy")
    ca, proxy_ca = TestCa(), TestCa("network-mapper-aws-proxy test CA", helm_style=True)
    confdir = tmp / "confdir"
    confdir.mkdir()
    (confdir / "mitmproxy-ca.pem").write_bytes(proxy_ca.mitmproxy_pem())  # the chart's Secret
    observations = ObservationLog()
    with AwsUpstream(ca, tmp) as upstream, MapperServer(mapper_app(TOKEN, observations)) as mapper:
        settings = AwsProxySettings(
            mapper_url=mapper.url,
            token=TOKEN,
            listen_address="127.0.0.1:0",
            health_address="127.0.0.1:0",
            confdir=confdir,
            upstream_ca_bundle=str(ca.write_cert(tmp / "public-roots.pem")),
            report_interval=0.2,
        )
        proxy = AwsProxy(settings, resolver=upstream.resolver(missing=[MISSING]))
        exits: list[int] = []
        thread = threading.Thread(target=lambda: exits.append(proxy.run(handle_signals=False)), daemon=True)
        thread.start()
        try:
            wait_until(lambda: proxy.addon.listen_addrs or not thread.is_alive(), 60, "the proxy listening")
            port = proxy.addon.listen_addrs[0][1]
            cafile = proxy_ca.write_cert(tmp / "proxy-ca.crt")  # the chart's ConfigMap
            yield Stack(proxy, upstream, observations, cafile, proxy_ca.cert, logs, port)
        finally:
            proxy.stop()
            thread.join(30)
            logging.getLogger().removeHandler(logs)
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)
        assert exits == [0] and not thread.is_alive()


@pytest.fixture
def routed(stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Stack:
    """This process's AWS names resolve to the proxy (the forwarder's answer); no AWS settings of
    the machine (bundle, endpoints, profiles, proxies) reach the clients."""
    monkeypatch.setattr(socket, "getaddrinfo", aws_names_to(stack.port))
    for name in ("AWS_CA_BUNDLE", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    return stack


def client(stack: Stack, service: str, access_key: str = ACCESS_KEY, **config: Any) -> Any:
    session = boto3.session.Session(
        aws_access_key_id=access_key,
        aws_secret_access_key=SECRET_KEY,
        aws_session_token=SESSION_TOKEN,
        region_name=REGION,
    )
    made = session.client(
        service,
        verify=str(stack.proxy_ca),
        config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=10, **config),
    )
    made.meta.events.register("before-send", lambda request, **_: stack.sent.append(request))
    return made


def aws_chunked(payload: bytes, size: int = 1 << 20) -> bytes:
    """``payload`` as botocore streams an upload: aws-chunked in 1 MiB chunks, a CRC32 trailer."""
    chunks = [payload[i : i + size] for i in range(0, len(payload), size)]
    crc = base64.b64encode(zlib.crc32(payload).to_bytes(4, "big"))
    return (
        b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
        + b"0\r\nx-amz-checksum-crc32:%s\r\n\r\n" % crc
    )


def assert_unchanged(sent: Any, received: ReceivedRequest, uploaded: bytes = b"") -> None:
    """What the stand-in received is what the client sent, but for ``Expect: 100-continue``: mitmproxy
    answers that itself and drops the header (SigV4 never signs it)."""
    url = urllib.parse.urlsplit(sent.url)
    assert received.method == sent.method
    assert received.uri == url.path + (f"?{url.query}" if url.query else "")
    assert received.host == url.hostname  # the real endpoint's name: no port, not the placeholder
    signed = str(sent.headers["Authorization"]).partition("SignedHeaders=")[2].partition(",")[0].split(";")
    assert "host" in signed and "expect" not in signed
    for name, value in sent.headers.items():
        if name.lower() != "expect":
            text = value.decode() if isinstance(value, bytes) else value
            assert received.headers.get(name.lower()) == text, name
    added = set(received.headers) - {name.lower() for name in sent.headers}
    assert added <= {"host", "accept-encoding", "content-length"}, added  # what http.client adds
    if isinstance(sent.body, bytes | str):
        assert received.body == (sent.body.encode() if isinstance(sent.body, str) else sent.body)
    elif sent.body is None:
        assert received.body == b""
    else:  # an upload botocore streams: its aws-chunked bytes, trailer included
        assert received.body == aws_chunked(uploaded)


def test_s3_dynamodb_and_sts_calls_pass_unchanged_and_are_reported(routed: Stack) -> None:
    stack, before = routed, len(routed.upstream.received())
    s3, ddb, sts = client(stack, "s3"), client(stack, "dynamodb"), client(stack, "sts")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=UPLOAD)
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == UPLOAD
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]] == [KEY]
    ddb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.put_item(TableName=TABLE, Item={"id": {"S": "order-1"}, "total": {"N": "2.5"}})
    assert ddb.get_item(TableName=TABLE, Key={"id": {"S": "order-1"}})["Item"]["total"] == {"N": "2.5"}
    assert sts.get_caller_identity()["Account"] == "123456789012"  # moto's account: the stand-in answered

    received = stack.upstream.received()[before:]
    assert len(received) == len(stack.sent) == 8
    for sent, got in zip(stack.sent, received, strict=True):
        assert_unchanged(sent, got, UPLOAD)

    object_arn, bucket_arn = f"arn:aws:s3:::{BUCKET}/{KEY}", f"arn:aws:s3:::{BUCKET}"
    # The account is not in the requests: the caller identity's response named it.
    table_arn = f"arn:aws:dynamodb:{REGION}:{MOTO_ACCOUNT}:table/{TABLE}"
    expected = {
        ("127.0.0.1", "s3", "CreateBucket", bucket_arn),
        ("127.0.0.1", "s3", "PutObject", object_arn),
        ("127.0.0.1", "s3", "GetObject", object_arn),
        ("127.0.0.1", "s3", "ListBucket", bucket_arn),
        ("127.0.0.1", "dynamodb", "CreateTable", table_arn),
        ("127.0.0.1", "dynamodb", "PutItem", table_arn),
        ("127.0.0.1", "dynamodb", "GetItem", table_arn),
        ("127.0.0.1", "sts", "GetCallerIdentity", "*"),
    }
    wait_until(lambda: expected <= stack.aws(), 15, f"{expected - stack.aws()} at the mapper")
    assert not {o for o in stack.aws() if f":*:table/{TABLE}" in o[3]}
    assert stack.metric("calls_mapped_total") >= 8
    assert stack.metric("unknown_operations_total") == 0


def test_dynamodb_arns_get_the_account_the_next_caller_identity_names(routed: Stack) -> None:
    """A credential the proxy has not seen: its DynamoDB calls name no account, so they wait until
    its GetCallerIdentity response (moto's account) teaches it, and reach the mapper filled only."""
    stack, key, table = routed, "AKIAPROXYACCOUNTS0001", "zebra-proxy-accounts"
    ddb, sts = client(stack, "dynamodb", key), client(stack, "sts", key)
    learned, filled = stack.metric("accounts_learned_total"), stack.metric("calls_account_filled_total")
    ddb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.put_item(TableName=table, Item={"id": {"S": "order-2"}})
    assert stack.metric("calls_held") >= 2  # waiting for the account, not reported
    assert sts.get_caller_identity()["Account"] == MOTO_ACCOUNT
    arn = f"arn:aws:dynamodb:{REGION}:{MOTO_ACCOUNT}:table/{table}"
    expected = {("127.0.0.1", "dynamodb", action, arn) for action in ("CreateTable", "PutItem")}
    wait_until(lambda: expected <= stack.aws(), 15, f"{expected - stack.aws()} at the mapper")
    wait_until(lambda: stack.metric("operations_pending") == 0, 15, "every report sent")
    assert not {o for o in stack.aws() if f":table/{table}" in o[3] and o[3] != arn}  # never with *
    assert stack.metric("accounts_learned_total") == learned + 1
    assert stack.metric("calls_account_filled_total") >= filled + 2


def test_without_the_account_in_time_the_arn_keeps_any_account(routed: Stack) -> None:
    stack, key, table = routed, "AKIAPROXYNOACCOUNT001", "zebra-proxy-unlearned"
    unfilled, wait = stack.metric("calls_account_unfilled_total"), stack.proxy.addon.book.wait
    stack.proxy.addon.book.wait = 0.2  # the stack's default is 10 s
    try:
        with pytest.raises(ClientError, match="ResourceNotFound"):  # no such table: mapped all the same
            client(stack, "dynamodb", key).put_item(TableName=table, Item={"id": {"S": "x"}})
        want = ("127.0.0.1", "dynamodb", "PutItem", f"arn:aws:dynamodb:{REGION}:*:table/{table}")
        wait_until(lambda: want in stack.aws(), 15, "the PutItem with any account at the mapper")
    finally:
        stack.proxy.addon.book.wait = wait
    assert stack.metric("calls_account_unfilled_total") == unfilled + 1


def test_leaves_chain_to_a_ca_whose_key_identifier_is_not_sha1(stack: Stack) -> None:
    """Helm's CA: strict OpenSSL finds the issuer of the proxy's leaf by its key identifier."""
    ski = stack.proxy_ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski != x509.SubjectKeyIdentifier.from_public_key(stack.proxy_ca_cert.public_key())
    context = ssl.create_default_context(cafile=str(stack.proxy_ca))
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    with (
        socket.create_connection(("127.0.0.1", stack.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="dynamodb.us-east-1.amazonaws.com") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    leaf = x509.load_der_x509_certificate(der)
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    leaf.verify_directly_issued_by(stack.proxy_ca_cert)


@pytest.mark.parametrize("signature_version", [None, "s3v4"])  # boto3's default for S3 is SigV2
def test_a_presigned_url_is_forwarded_and_mapped(routed: Stack, signature_version: str | None) -> None:
    key = f"presigned-{signature_version}.txt"
    s3 = client(routed, "s3", signature_version=signature_version)
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"shared")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=300)
    routed.urls.append(url)
    assert "security-token=" in url.lower()
    response = requests.get(url, verify=str(routed.proxy_ca), timeout=10)
    assert response.status_code == 200 and response.content == b"shared"
    assert routed.upstream.received()[-1].uri == url[url.index("/", len("https://")) :]
    want = ("127.0.0.1", "s3", "GetObject", f"arn:aws:s3:::{BUCKET}/{key}")
    wait_until(lambda: want in routed.aws(), 15, "the presigned GetObject at the mapper")


def test_a_large_upload_streams_through_and_is_still_mapped(routed: Stack) -> None:
    """Over the proxy's buffering limit (8 MiB) the body is streamed, not held: the call is mapped
    from its route all the same."""
    payload = bytes(range(256)) * (33 * 1024 + 1)  # 8.25 MiB and a bit
    s3 = client(routed, "s3")
    s3.put_object(Bucket=BUCKET, Key="large.bin", Body=payload)
    assert routed.upstream.received()[-1].body == aws_chunked(payload)
    assert s3.head_object(Bucket=BUCKET, Key="large.bin")["ContentLength"] == len(payload)
    want = ("127.0.0.1", "s3", "PutObject", f"arn:aws:s3:::{BUCKET}/large.bin")
    wait_until(lambda: want in routed.aws(), 15, "the streamed PutObject at the mapper")


def raw_request(stack: Stack, sni: str, head: str, leaf: list[Any] | None = None) -> tuple[int, str]:
    """One HTTP/1.1 request over TLS to the proxy with this SNI: (status, body); the proxy's leaf
    certificate (as ``getpeercert()`` gives it) is appended to ``leaf``."""
    context = ssl.create_default_context(cafile=str(stack.proxy_ca))
    with (
        socket.create_connection(("127.0.0.1", stack.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        if leaf is not None:
            leaf.append(tls.getpeercert())
        tls.sendall(head.encode() + b"\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    status_line, _, rest = data.decode(errors="replace").partition("\r\n")
    return int(status_line.split()[1]), rest.partition("\r\n\r\n")[2]


def test_other_hosts_are_refused_before_anything_is_sent(stack: Stack) -> None:
    before, rejected = len(stack.upstream.received()), stack.metric("requests_rejected_total")
    status, body = raw_request(stack, "example.com", "GET / HTTP/1.1\r\nHost: example.com")
    assert status == 421 and "not an AWS endpoint" in body
    status, body = raw_request(stack, "sts.amazonaws.com", "GET / HTTP/1.1\r\nHost: attacker.example")
    assert status == 421 and "another endpoint than the TLS server name" in body
    assert len(stack.upstream.received()) == before
    assert stack.metric("requests_rejected_total") == rejected + 2


def test_an_unsigned_request_is_forwarded_and_counted(stack: Stack) -> None:
    unsigned, leaf = stack.metric("requests_unsigned_total"), []
    head = f"GET /{BUCKET}/public.txt HTTP/1.1\r\nHost: s3.amazonaws.com"
    status, _ = raw_request(stack, "s3.amazonaws.com", head, leaf)
    assert leaf[0]["subjectAltName"] == (("DNS", "s3.amazonaws.com"),)  # the endpoint's name alone
    assert status not in (421, 502)  # the stand-in's answer (moto's 404), not the proxy's
    assert stack.upstream.received()[-1].uri == f"/{BUCKET}/public.txt"
    assert stack.metric("requests_unsigned_total") == unsigned + 1


def test_an_endpoint_that_does_not_resolve_is_a_502_and_an_upstream_error(stack: Stack) -> None:
    errors = stack.metric("upstream_errors_total")
    status, _ = raw_request(stack, MISSING, f"GET / HTTP/1.1\r\nHost: {MISSING}")
    assert status == 502
    assert stack.metric("upstream_errors_total") == errors + 1
    assert f"upstream connection failed host={MISSING}" in stack.logs.text


def test_health_and_metrics(stack: Stack) -> None:
    assert requests.get(stack.proxy.health.url + "/healthz", timeout=5).status_code == 200
    text = requests.get(stack.proxy.health.url + "/metrics", timeout=5).text
    for name in ("requests_total", "requests_rejected_total", "reports_sent_total", "operations_pending"):
        assert f"network_mapper_aws_proxy_{name} " in text
    assert stack.metric("reports_sent_total") >= 1 and stack.metric("report_failures_total") == 0


def test_no_secret_token_or_signature_is_ever_logged(routed: Stack) -> None:
    """Signed, presigned and failing requests (this test's and any the module sent before) leave
    no secret key, session token or signature in the proxy's log, even at DEBUG."""
    s3, sts = client(routed, "s3", signature_version="s3v4"), client(routed, "sts")
    s3.create_bucket(Bucket="yak-secret-bucket")
    s3.put_object(Bucket="yak-secret-bucket", Key="k", Body=b"v")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "yak-secret-bucket", "Key": "k"})
    routed.urls.append(url)
    assert requests.get(url, verify=str(routed.proxy_ca), timeout=10).content == b"v"
    sts.get_caller_identity()
    # The same presigned query towards an endpoint that fails, and with a Host that is refused.
    query = urllib.parse.urlsplit(url).query
    assert raw_request(routed, MISSING, f"GET /k?{query} HTTP/1.1\r\nHost: {MISSING}")[0] == 502
    assert raw_request(routed, "example.com", f"GET /k?{query} HTTP/1.1\r\nHost: example.com")[0] == 421

    signatures = set()
    for request in routed.sent:
        signatures.add(str(request.headers["Authorization"]).rpartition("Signature=")[2].strip("'"))
    for presigned in routed.urls:  # SigV4's X-Amz-Signature or SigV2's Signature
        params = urllib.parse.parse_qs(urllib.parse.urlsplit(presigned).query)
        signatures.add((params.get("X-Amz-Signature") or params["Signature"])[0])
    assert len(signatures) >= 4 and all(len(s) >= 20 for s in signatures)
    text = routed.logs.text
    assert "aws proxy listening" in text and "upstream connection failed" in text  # the capture works
    for secret in (SECRET_KEY, SESSION_TOKEN, *signatures):
        for form in (secret, urllib.parse.quote(secret, safe=""), binascii.hexlify(secret.encode()).decode()):
            assert form not in text
