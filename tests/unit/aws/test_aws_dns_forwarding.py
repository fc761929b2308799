"""The AWS DNS forwarder without sockets: a query's bytes in, the reply's bytes out, with the upstream
and the proxy's health stood in by functions (the injection seams); its settings' checks; ``main``'s
exit on bad settings."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.aws.dns_forwarder import QueryHandler, main, upstream_of
from agent.aws.dnsanswers import ResolvConf
from agent.aws.dnsupstream import (
    DnsForwarderMetrics,
    ProxyHealth,
    ProxyResolver,
    ProxyUnresolved,
    UpstreamError,
)
from agent.aws.settings import DnsForwarderSettings
from agent.settings import SettingsError, load

PROXY = "10.96.0.50"


class FakeUpstream:
    """Answers A queries from ``records`` (NXDOMAIN otherwise), records what it was sent; raises
    UpstreamError for ``failing`` names; answers truncated over UDP for ``truncated`` names."""

    def __init__(self, records: dict[str, str] | None = None) -> None:
        self.records = records or {}
        self.failing: set[str] = set()
        self.truncated: set[str] = set()
        self.sent: list[tuple[bytes, bool]] = []

    def __call__(self, query: bytes, tcp: bool) -> bytes:
        self.sent.append((query, tcp))
        request = DNSRecord.parse(query)
        name = str(request.q.qname).rstrip(".")
        if name in self.failing:
            raise UpstreamError("no answer within 2s")
        reply = request.reply()
        if name in self.truncated and not tcp:
            reply.header.tc = 1
        elif name in self.records:
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(self.records[name]), ttl=30))
        else:
            reply.header.rcode = RCODE.NXDOMAIN
        return bytes(reply.pack())


class Switch:
    def __init__(self, address: str | None = PROXY) -> None:
        self.address = address

    def __call__(self) -> str | None:
        return self.address


def handler_with(
    upstream: FakeUpstream, proxy: Switch | None = None
) -> tuple[QueryHandler, DnsForwarderMetrics]:
    metrics = DnsForwarderMetrics()
    handler = QueryHandler(("amazonaws.com",), 5, proxy or Switch(), upstream, metrics)
    return handler, metrics


def reply_to(handler: QueryHandler, query: DNSRecord, *, tcp: bool = False) -> DNSRecord:
    data = handler(query.pack(), tcp)
    assert data is not None
    reply = DNSRecord.parse(data)
    assert reply.header.id == query.header.id
    return reply


def test_aws_a_and_aaaa_are_answered_while_the_proxy_is_healthy() -> None:
    upstream = FakeUpstream({"s3.amazonaws.com": "52.216.0.10"})
    handler, metrics = handler_with(upstream)
    reply = reply_to(handler, DNSRecord.question("s3.amazonaws.com"))
    assert [(str(rr.rdata), rr.ttl) for rr in reply.rr] == [(PROXY, 5)]
    assert reply_to(handler, DNSRecord.question("s3.amazonaws.com", "AAAA"), tcp=True).rr == []
    assert upstream.sent == []
    snapshot = metrics.snapshot()
    assert snapshot["network_mapper_aws_dns_answered_with_proxy_total"] == 2
    assert snapshot["network_mapper_aws_dns_queries_udp_total"] == 1
    assert snapshot["network_mapper_aws_dns_queries_tcp_total"] == 1


def test_aws_names_are_forwarded_while_the_proxy_is_down() -> None:
    upstream = FakeUpstream({"s3.amazonaws.com": "52.216.0.10"})
    proxy = Switch(None)
    handler, metrics = handler_with(upstream, proxy)
    assert [str(rr.rdata) for rr in reply_to(handler, DNSRecord.question("s3.amazonaws.com")).rr] == [
        "52.216.0.10"
    ]
    proxy.address = PROXY
    assert [str(rr.rdata) for rr in reply_to(handler, DNSRecord.question("s3.amazonaws.com")).rr] == [PROXY]
    assert metrics.forwarded.value == 1
    assert metrics.answered_with_proxy.value == 1


@pytest.mark.parametrize("tcp", [False, True])
def test_other_queries_are_forwarded_unchanged_over_the_same_transport(tcp: bool) -> None:
    upstream = FakeUpstream({"example.org": "93.184.216.34"})
    handler, metrics = handler_with(upstream)
    for name, qtype in (("example.org", "A"), ("s3.amazonaws.com", "TXT"), ("notamazonaws.com", "A")):
        query = DNSRecord.question(name, qtype)
        reply_to(handler, query, tcp=tcp)
        assert upstream.sent[-1] == (query.pack(), tcp)
    assert metrics.forwarded.value == 3


def test_the_upstream_answer_gets_the_client_id() -> None:
    query = DNSRecord.question("example.org")

    def other_id(data: bytes, tcp: bool) -> bytes:
        reply = DNSRecord.parse(data).reply()
        reply.header.id = (query.header.id + 1) % 65536
        return bytes(reply.pack())

    handler = QueryHandler(("amazonaws.com",), 5, Switch(), other_id, DnsForwarderMetrics())
    assert reply_to(handler, query).header.rcode == RCODE.NOERROR


def test_upstream_failure_is_servfail_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    upstream = FakeUpstream({"example.org": "93.184.216.34"})
    upstream.failing.add("slow.example.org")
    handler, metrics = handler_with(upstream)
    with caplog.at_level(logging.INFO, logger="agent.aws.dns_forwarder"):
        for _ in range(3):
            reply = reply_to(handler, DNSRecord.question("slow.example.org"))
            assert reply.header.rcode == RCODE.SERVFAIL
            assert str(reply.q.qname) == "slow.example.org."
        reply_to(handler, DNSRecord.question("example.org"))
    assert metrics.servfail.value == 3
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]


@pytest.mark.parametrize("tcp", [False, True])
def test_malformed_queries(tcp: bool) -> None:
    upstream = FakeUpstream()
    handler, metrics = handler_with(upstream)
    query = DNSRecord.question("example.org").pack()
    for malformed in (query[:-3], query[:12] + b"\xff\xfe\x01", query[:12]):
        data = handler(malformed, tcp)
        assert data is not None
        assert DNSRecord.parse(data).header.rcode == RCODE.FORMERR
    assert handler(query[:5], tcp) is None  # no header to echo
    assert handler(DNSRecord.question("example.org").reply().pack(), tcp) is None  # a response
    assert (metrics.formerr.value, metrics.dropped.value) == (3, 2)
    assert upstream.sent == []


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_get_an_answer_or_nothing_never_an_exception(data: bytes) -> None:
    handler, _ = handler_with(FakeUpstream(), Switch())

    def forward(query: bytes, tcp: bool) -> bytes:
        return query[:2] + b"\x81\x80" + query[4:]  # echo back as a response, whatever it is

    handler.forward = forward
    for tcp in (False, True):
        reply = handler(data, tcp)
        assert reply is None or reply[:2] == data[:2]


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=40), st.integers(min_value=0, max_value=60))
def test_valid_queries_with_bytes_changed_never_raise(patch: bytes, at: int) -> None:
    query = bytearray(DNSRecord.question("bucket.s3.amazonaws.com", "AAAA").pack())
    query[at : at + len(patch)] = patch
    handler, _ = handler_with(FakeUpstream(), Switch())
    handler(bytes(query), False)


# --- the proxy's health ----------------------------------------------------------------------------


class Probe:
    def __init__(self) -> None:
        self.failure: str | None = None

    def __call__(self) -> str | None:
        return self.failure


class Resolve:
    def __init__(self, address: str | None) -> None:
        self.address = address

    def __call__(self) -> str:
        if self.address is None:
            raise ProxyUnresolved("no A record for proxy.")
        return self.address


def test_health_follows_the_probe_and_logs_each_change_once(caplog: pytest.LogCaptureFixture) -> None:
    metrics = DnsForwarderMetrics()
    probe, resolve = Probe(), Resolve(PROXY)
    health = ProxyHealth(resolve, probe, metrics)
    assert health.address() is None  # down until the first check says otherwise
    with caplog.at_level(logging.INFO, logger="agent.aws.dns_forwarder"):
        health.check()
        health.check()
        assert (health.address(), metrics.proxy_healthy.value) == (PROXY, 1)
        probe.failure = "HTTP 503"
        health.check()
        health.check()
        assert (health.address(), metrics.proxy_healthy.value) == (None, 0)
        probe.failure = None
        resolve.address = "10.96.0.77"
        health.check()
        assert health.address() == "10.96.0.77"
    assert metrics.health_checks_failed.value == 2
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        f"proxy healthy address={PROXY}",
        "proxy down reason=HTTP 503",
        f"proxy address changed from={PROXY} to=10.96.0.77",
        "proxy healthy address=10.96.0.77",
    ]


def test_a_failed_resolution_keeps_the_last_address_but_no_address_is_down() -> None:
    metrics = DnsForwarderMetrics()
    resolve = Resolve(None)
    health = ProxyHealth(resolve, Probe(), metrics)
    health.check()
    assert health.address() is None
    assert metrics.health_checks_failed.value == 1
    resolve.address = PROXY
    health.check()
    resolve.address = None
    health.check()
    assert health.address() == PROXY


def test_an_unhealthy_first_check_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    probe = Probe()
    probe.failure = "ConnectionRefusedError: [Errno 111] Connection refused"
    health = ProxyHealth(Resolve(PROXY), probe, DnsForwarderMetrics())
    with caplog.at_level(logging.INFO, logger="agent.aws.dns_forwarder"):
        health.check()
        health.check()
    assert len(caplog.records) == 1
    assert caplog.records[0].getMessage().startswith("proxy down reason=ConnectionRefusedError")


def test_the_proxy_name_is_resolved_with_the_search_path() -> None:
    upstream = FakeUpstream({"network-mapper-aws-proxy.otterize-system.svc.cluster.local": PROXY})
    conf = ResolvConf(("10.96.0.10",), ("default.svc.cluster.local", "otterize-system.svc.cluster.local"), 5)
    resolver = ProxyResolver("network-mapper-aws-proxy", conf, upstream)
    assert resolver() == PROXY
    assert len(upstream.sent) == 2  # the first search domain had no such name


def test_a_truncated_answer_is_asked_again_over_tcp() -> None:
    upstream = FakeUpstream({"proxy.example.": PROXY})
    upstream.truncated.add("proxy.example")
    upstream.records["proxy.example"] = PROXY
    assert ProxyResolver("proxy.example.", ResolvConf(), upstream)() == PROXY
    assert [tcp for _, tcp in upstream.sent] == [False, True]


def test_an_address_is_not_resolved_and_failures_say_why() -> None:
    upstream = FakeUpstream()
    assert ProxyResolver("10.96.0.9", ResolvConf(), upstream)() == "10.96.0.9"
    assert upstream.sent == []
    with pytest.raises(ProxyUnresolved, match=r"no A record for proxy\.example\."):
        ProxyResolver("proxy.example", ResolvConf(), upstream)()
    upstream.failing.add("proxy.example")
    with pytest.raises(ProxyUnresolved, match="no answer within"):
        ProxyResolver("proxy.example", ResolvConf(), upstream)()


# --- settings and main -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "flag"),
    [
        ("AWS_DNS_HEALTH_INTERVAL", "5.5", "--health-interval"),
        ("AWS_DNS_HEALTH_INTERVAL", "0", "--health-interval"),
        ("AWS_DNS_ANSWER_TTL", "6", "--answer-ttl"),
        ("AWS_DNS_ANSWER_TTL", "0", "--answer-ttl"),
        ("AWS_DNS_DOMAINS", ",", "--domains"),
        ("AWS_DNS_UPSTREAM", "10.96.0.10", "--upstream"),
    ],
)
def test_settings_are_checked(variable: str, value: str, flag: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load(DnsForwarderSettings, [], {variable: value})
    with pytest.raises(SettingsError, match=flag):
        load(DnsForwarderSettings, [flag, value], {})


def test_settings_at_the_bounds_are_accepted() -> None:
    loaded = load(DnsForwarderSettings, [], {"AWS_DNS_HEALTH_INTERVAL": "5", "AWS_DNS_ANSWER_TTL": "5"})
    assert (loaded.health_interval, loaded.answer_ttl) == (5.0, 5)
    with pytest.raises(SettingsError, match="at most 5"):
        DnsForwarderSettings(answer_ttl=6)


def test_the_upstream_comes_from_resolv_conf_unless_given(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("search ns.svc.cluster.local\nnameserver 10.96.0.10\n")
    address, conf = upstream_of(DnsForwarderSettings(resolv_conf=resolv))
    assert (address, conf.search) == ("10.96.0.10:53", ("ns.svc.cluster.local",))
    address, _ = upstream_of(DnsForwarderSettings(resolv_conf=resolv, upstream="10.0.0.2:5353"))
    assert address == "10.0.0.2:5353"
    missing = tmp_path / "missing.conf"
    assert upstream_of(DnsForwarderSettings(resolv_conf=missing, upstream="10.0.0.2:53")) == (
        "10.0.0.2:53",
        ResolvConf(),
    )
    with pytest.raises(SettingsError, match="cannot be read"):
        upstream_of(DnsForwarderSettings(resolv_conf=missing))
    resolv.write_text("search ns.svc.cluster.local\n")
    with pytest.raises(SettingsError, match="names no nameserver"):
        upstream_of(DnsForwarderSettings(resolv_conf=resolv))


@pytest.mark.parametrize(
    ("argv", "environ", "says"),
    [
        (["--health-interval", "6"], {}, "--health-interval"),
        ([], {"AWS_DNS_ANSWER_TTL": "30"}, "AWS_DNS_ANSWER_TTL"),
        (
            [],
            {"AWS_DNS_UPSTREAM": "10.0.0.2:53", "AWS_DNS_PROXY_HEALTH_URL": "ftp://x/"},
            "--proxy-health-url",
        ),
        ([], {"AWS_DNS_RESOLV_CONF": "/nonexistent/resolv.conf"}, "cannot be read"),
    ],
)
def test_main_exits_2_with_one_line_on_bad_settings(
    argv: list[str], environ: dict[str, str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv, environ) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("network-mapper-aws-dns-forwarder: ")
    assert says in err
