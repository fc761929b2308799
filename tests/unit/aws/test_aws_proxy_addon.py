"""agent.aws.proxy_addon, its parts without sockets: which endpoint a request goes to (and what
is refused), what the addon hands to the IAM mapping and collects, what it counts, and how calls
whose ARN lacks the account wait for it (an STS caller identity's response, the one response
read; expiry on an injected clock).

Flows are mitmproxy's own test flows (``mitmproxy.test.tflow``) driven through the addon's hooks
in a ``taddons`` context, as mitmproxy would call them."""

from __future__ import annotations

import gzip
import logging
from collections.abc import Mapping
from typing import Any

import pytest
from mitmproxy import exceptions, http
from mitmproxy.connection import Server
from mitmproxy.proxy.server_hooks import ServerConnectionHookData
from mitmproxy.test import taddons, tflow

from agent.aws.accounts import AccountBook
from agent.aws.iam_actions import RequestError
from agent.aws.proxy_addon import (
    HOST_KEY,
    IDENTITY_KEY,
    PLACEHOLDER,
    AwsProxyMetrics,
    IamProxy,
    NotForwarded,
    upstream_host,
)
from agent.aws.proxyreports import OperationKey, combine
from agent.model import IamCall
from agent.pending import Pending

DOMAINS = ("amazonaws.com",)
S3 = "s3.us-east-1.amazonaws.com"
OBJECT = "arn:aws:s3:::yak-bucket/a.txt"
AUTH = (
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240501/us-east-1/s3/aws4_request, "
    "SignedHeaders=host;x-amz-date, "
    "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
)


# ---------------------------------------------------------------------------- which endpoint


@pytest.mark.parametrize(
    ("sni", "authority", "expected"),
    [
        (S3, S3, S3),
        (S3, None, S3),  # HTTP/1.0 without Host: the TLS name
        (None, S3, S3),  # no SNI: the Host
        ("S3.US-East-1.AmazonAWS.com.", f"{S3}:443", S3),  # case, root dot and port do not matter
        ("amazonaws.com", None, "amazonaws.com"),
        ("yak-bucket.s3.amazonaws.com", "yak-bucket.s3.amazonaws.com", "yak-bucket.s3.amazonaws.com"),
    ],
)
def test_the_endpoint_is_the_tls_name_else_the_host(
    sni: str | None, authority: str | None, expected: str
) -> None:
    assert upstream_host(sni, authority, DOMAINS) == expected


@pytest.mark.parametrize(
    ("sni", "authority", "why"),
    [
        ("example.com", "example.com", "not an AWS endpoint"),
        ("evilamazonaws.com", None, "not an AWS endpoint"),  # a suffix, not a parent domain
        ("amazonaws.com.evil.example", None, "not an AWS endpoint"),
        (None, "10.0.0.1", "not an AWS endpoint"),
        ("sts.amazonaws.com", "attacker.example", "another endpoint"),  # the signed Host wins nothing
        ("sts.amazonaws.com", "s3.amazonaws.com", "another endpoint"),
        (None, None, "names no endpoint"),
        (None, "bad host name!", "not a host name"),
    ],
)
def test_other_endpoints_are_refused(sni: str | None, authority: str | None, why: str) -> None:
    with pytest.raises(NotForwarded, match=why):
        upstream_host(sni, authority, DOMAINS)


# ---------------------------------------------------------------------------- the addon's hooks


class FakeMapping:
    """Stands in for agent.aws.iam_actions.iam_calls: records its arguments, answers ``calls``."""

    def __init__(self, calls: tuple[IamCall, ...] = (), error: Exception | None = None) -> None:
        self.calls, self.error = calls, error
        self.seen: list[tuple[str, str, str, str, Mapping[str, str], bytes]] = []

    def __call__(
        self, method: str, host: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[IamCall, ...]:
        self.seen.append((method, host, path, query, dict(headers), body))
        if self.error is not None:
            raise self.error
        return self.calls


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def addon_with(
    mapping: FakeMapping, bound: int = 100, clock: Clock | None = None, wait: float = 10.0
) -> IamProxy:
    collector: Pending[OperationKey, float] = Pending(bound, combine)
    metrics = AwsProxyMetrics()
    book = AccountBook(metrics, wait=wait)
    return IamProxy(collector, metrics, calls_for=mapping, book=book, clock=clock or Clock())


def flow(
    sni: str | None = S3,
    host_header: str | None = S3,
    *,
    tls: bool = True,
    peer: str = "10.244.1.7",
    method: bytes = b"PUT",
    path: bytes = b"/yak-bucket/a.txt?x-id=PutObject&tagging",
    body: bytes = b"hello",
    extra: tuple[tuple[bytes, bytes], ...] = (),
) -> http.HTTPFlow:
    """A request as it reaches the addon in reverse mode: request.host is the placeholder."""
    f = tflow.tflow()
    f.client_conn.sni, f.client_conn.tls, f.client_conn.peername = sni, tls, (peer, 40000)
    headers = [(b"Authorization", AUTH.encode()), (b"X-Amz-Date", b"20240501T000000Z"), *extra]
    if host_header is not None:
        headers.insert(0, (b"Host", host_header.encode()))
    f.request = http.Request(
        PLACEHOLDER, 443, method, b"http", b"", path, b"HTTP/1.1", http.Headers(headers), body, None, 0, 0
    )
    return f


def run_request(addon: IamProxy, f: http.HTTPFlow) -> None:
    addon.requestheaders(f)
    addon.request(f)


@pytest.fixture
def domains_set() -> Any:
    """A context where the addon's aws_domains option is set, as the proxy sets it."""

    def make(addon: IamProxy) -> Any:
        context = taddons.context(addon)
        context.configure(addon, aws_domains=list(DOMAINS))
        return context

    return make


def test_a_signed_request_goes_to_its_endpoint_unchanged_and_its_calls_are_collected(
    domains_set: Any,
) -> None:
    put = IamCall("s3", "PutObject", "s3:PutObject", OBJECT, "us-east-1")
    mapping = FakeMapping((put,))
    addon = addon_with(mapping)
    f = flow(host_header="S3.us-east-1.amazonaws.com", peer="::ffff:10.244.1.7", extra=((b"X-Amz-A", b"1"),))
    with domains_set(addon):
        run_request(addon, f)
    request = f.request
    assert (request.host, request.port, request.scheme) == (S3, 443, "https")
    assert request.headers["Host"] == "S3.us-east-1.amazonaws.com"  # the signed Host, byte for byte
    assert f.response is None and f.metadata[HOST_KEY] == S3
    assert mapping.seen == [
        (
            "PUT",
            S3,
            "/yak-bucket/a.txt",
            "x-id=PutObject&tagging",
            {
                "host": "S3.us-east-1.amazonaws.com",
                "authorization": AUTH,
                "x-amz-date": "20240501T000000Z",
                "x-amz-a": "1",
            },
            b"hello",
        )
    ]
    assert addon.collector.drain().entries.keys() == {OperationKey("10.244.1.7", OBJECT, "s3:PutObject")}
    assert addon.metrics.requests.value == addon.metrics.calls_mapped.value == 1


def test_the_raw_body_is_mapped_even_when_content_encoded(domains_set: Any) -> None:
    mapping = FakeMapping()
    addon = addon_with(mapping)
    f = flow(extra=((b"Content-Encoding", b"gzip"),), body=b"\x1f\x8bnot really gzip")
    with domains_set(addon):
        run_request(addon, f)
    assert mapping.seen[0][5] == b"\x1f\x8bnot really gzip"


def test_unknown_operations_are_counted_and_still_reported(domains_set: Any) -> None:
    odd = IamCall("s3", "Frobnicate", "s3:Frobnicate", OBJECT, "us-east-1", known=False)
    addon = addon_with(FakeMapping((odd,)))
    with domains_set(addon):
        run_request(addon, flow())
    assert addon.metrics.calls_unknown.value == 1 and addon.metrics.calls_mapped.value == 0
    assert OperationKey("10.244.1.7", OBJECT, "s3:Frobnicate") in addon.collector.drain().entries


def test_an_unsigned_request_is_forwarded_and_counted_but_not_logged_in_detail(
    domains_set: Any, caplog: pytest.LogCaptureFixture
) -> None:
    addon = addon_with(FakeMapping(error=RequestError("X-Amz-Signature=abc123 in the query")))
    f = flow(path=b"/yak-bucket/a.txt?X-Amz-Signature=abc123&X-Amz-Security-Token=tok456")
    with caplog.at_level(logging.DEBUG), domains_set(addon):
        run_request(addon, f)
    assert f.response is None and f.request.host == S3  # still forwarded
    assert addon.metrics.unsigned.value == 1 and len(addon.collector) == 0
    assert "unsigned request" in caplog.text
    assert "abc123" not in caplog.text and "tok456" not in caplog.text


@pytest.mark.parametrize(
    ("sni", "host_header", "tls"),
    [
        ("example.com", "example.com", True),
        ("sts.amazonaws.com", "attacker.example", True),
        (None, None, True),
        (None, S3, False),  # plain HTTP to the TLS port
    ],
)
def test_refused_requests_get_421_and_are_never_mapped(
    domains_set: Any, sni: str | None, host_header: str | None, tls: bool
) -> None:
    mapping = FakeMapping()
    addon = addon_with(mapping)
    f = flow(sni, host_header, tls=tls)
    with domains_set(addon):
        run_request(addon, f)
        addon.responseheaders(f)
    assert f.response is not None and f.response.status_code == 421
    assert f.response.text is not None and f.response.text.startswith("network-mapper-aws-proxy: ")
    assert not f.response.stream  # our own short answer, sent whole
    assert f.request.host == PLACEHOLDER and HOST_KEY not in f.metadata
    assert mapping.seen == [] and addon.metrics.rejected.value == 1


def test_connect_is_refused_and_the_connection_killed(domains_set: Any) -> None:
    addon = addon_with(FakeMapping())
    f = flow(method=b"CONNECT", path=b"")
    with domains_set(addon):
        addon.http_connect(f)
    assert f.error is not None and f.error.msg == "Connection killed."
    assert addon.metrics.rejected.value == 1


def test_responses_of_forwarded_requests_are_streamed(domains_set: Any) -> None:
    addon = addon_with(FakeMapping())
    f = flow()
    with domains_set(addon):
        run_request(addon, f)
        f.response = http.Response.make(200, b"x" * 10)
        addon.responseheaders(f)
    assert f.response.stream is True


def test_the_proxy_only_ever_connects_to_aws_endpoints(domains_set: Any) -> None:
    addon = addon_with(FakeMapping())
    with domains_set(addon):
        for address, allowed in [((S3, 443), True), ((PLACEHOLDER, 443), False), (("10.0.0.1", 443), False)]:
            server = Server(address=address)
            addon.server_connect(ServerConnectionHookData(server=server, client=tflow.tclient_conn()))
            assert (server.error is None) == allowed


def test_upstream_failures_are_counted(domains_set: Any, caplog: pytest.LogCaptureFixture) -> None:
    addon = addon_with(FakeMapping())
    server = Server(address=(S3, 443), error="Name or service not known")
    with caplog.at_level(logging.WARNING), domains_set(addon):
        addon.server_connect_error(ServerConnectionHookData(server=server, client=tflow.tclient_conn()))
    assert addon.metrics.upstream_errors.value == 1
    assert f"upstream connection failed host={S3} error=Name or service not known" in caplog.text


def test_aws_domains_must_be_names(domains_set: Any) -> None:
    addon = addon_with(FakeMapping())
    with domains_set(addon) as context, pytest.raises(exceptions.OptionsError):
        context.configure(addon, aws_domains=["amazonaws.com", ""])


def test_not_serving_before_running() -> None:
    assert not addon_with(FakeMapping()).serving()


# ---------------------------------------------------------------------------- the account of ARNs

ACCOUNT = "123456789012"
TABLE = "arn:aws:dynamodb:us-east-1:*:table/network-mapper-demo"
TABLE_FILLED = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/network-mapper-demo"
PUT_ITEM = IamCall("dynamodb", "PutItem", "dynamodb:PutItem", TABLE, "us-east-1")
WHO = IamCall("sts", "GetCallerIdentity", "sts:GetCallerIdentity", "*", "us-east-1")
IDENTITY = (
    b'<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult>'
    b"<Arn>arn:aws:sts::123456789012:assumed-role/demo/s</Arn><UserId>AROAUSERIDSECRETISH:s</UserId>"
    b"<Account>123456789012</Account></GetCallerIdentityResult></GetCallerIdentityResponse>"
)


def answer(f: http.HTTPFlow, addon: IamProxy, body: bytes, status: int = 200, **headers: str) -> None:
    """The upstream's response through the addon's response hooks, as mitmproxy calls them."""
    f.response = http.Response.make(status, body, {"Content-Type": "text/xml", **headers})
    addon.responseheaders(f)
    addon.response(f)


def reported(addon: IamProxy) -> set[OperationKey]:
    return set(addon.collector.drain().entries)


def test_a_call_without_its_account_waits_for_the_caller_identity_of_its_credential(
    domains_set: Any, caplog: pytest.LogCaptureFixture
) -> None:
    mapping = FakeMapping((PUT_ITEM,))
    addon = addon_with(mapping)
    with caplog.at_level(logging.DEBUG), domains_set(addon):
        put = flow(path=b"/", body=b"{}")
        run_request(addon, put)
        answer(put, addon, b"{}")
        assert put.response is not None and put.response.stream is True  # not read
        assert len(addon.collector) == 0 and addon.metrics.calls_held.value == 1
        mapping.calls = (WHO,)
        who = flow(path=b"/", body=b"Action=GetCallerIdentity&Version=2011-06-15")
        run_request(addon, who)
        assert who.metadata[IDENTITY_KEY] == addon.book.fingerprint("AKIDEXAMPLE")
        answer(who, addon, IDENTITY)
    assert who.response is not None and who.response.stream is False  # read: it is tiny
    assert reported(addon) == {
        OperationKey("10.244.1.7", TABLE_FILLED, "dynamodb:PutItem"),
        OperationKey("10.244.1.7", "*", "sts:GetCallerIdentity"),
    }
    assert addon.metrics.accounts_learned.value == 1 and addon.metrics.calls_account_filled.value == 1
    assert "AROAUSERIDSECRETISH" not in caplog.text and "AKIDEXAMPLE" not in caplog.text
    mapping.calls = (PUT_ITEM,)
    run_request(addon, flow(path=b"/", body=b"{}"))  # known now: filled at once
    assert reported(addon) == {OperationKey("10.244.1.7", TABLE_FILLED, "dynamodb:PutItem")}


def test_a_compressed_caller_identity_is_read_too(domains_set: Any) -> None:
    addon = addon_with(FakeMapping((WHO,)))
    with domains_set(addon):
        who = flow(path=b"/")
        run_request(addon, who)
        answer(who, addon, IDENTITY, **{"Content-Encoding": "gzip"})  # make() compresses it
    assert who.response is not None and who.response.raw_content is not None
    assert gzip.decompress(who.response.raw_content) == IDENTITY
    assert addon.book.account_of(addon.book.fingerprint("AKIDEXAMPLE")) == ACCOUNT


@pytest.mark.parametrize(
    ("status", "body", "headers"),
    [
        (403, b"<Error><Code>ExpiredToken</Code></Error>", {}),  # no identity
        (200, IDENTITY + b" " * (64 * 1024), {}),  # larger than an identity: streamed
        (200, IDENTITY, {"Transfer-Encoding": "chunked"}),  # no length: streamed
    ],
)
def test_other_answers_to_a_caller_identity_teach_nothing(
    domains_set: Any, status: int, body: bytes, headers: dict[str, str]
) -> None:
    addon = addon_with(FakeMapping((WHO,)))
    with domains_set(addon):
        who = flow(path=b"/")
        run_request(addon, who)
        who.response = http.Response.make(status, body, headers)
        if "Transfer-Encoding" in headers:
            who.response.headers.pop("content-length", None)
        addon.responseheaders(who)
        addon.response(who)
    assert addon.metrics.accounts_learned.value == 0
    assert who.response.stream is True


def test_held_calls_are_reported_with_any_account_when_the_wait_is_over(domains_set: Any) -> None:
    clock = Clock()
    addon = addon_with(FakeMapping((PUT_ITEM,)), clock=clock, wait=10.0)
    with domains_set(addon):
        run_request(addon, flow())
    clock.now += 9.5
    addon.release_expired()
    assert len(addon.collector) == 0
    clock.now += 0.5
    addon.release_expired()
    assert reported(addon) == {OperationKey("10.244.1.7", TABLE, "dynamodb:PutItem")}
    assert addon.metrics.calls_account_unfilled.value == 1


def test_held_calls_are_reported_at_shutdown(domains_set: Any) -> None:
    addon = addon_with(FakeMapping((PUT_ITEM,)))
    with domains_set(addon):
        run_request(addon, flow())
    addon.release_held()
    assert reported(addon) == {OperationKey("10.244.1.7", TABLE, "dynamodb:PutItem")}
