"""The AWS DNS forwarder's pure decisions and answers (agent.aws.dnsanswers): which queries it answers
itself, what it answers, its error answers, and what it reads from resolv.conf."""

from __future__ import annotations

import struct

import pytest
from dnslib import CLASS, OPCODE, QTYPE, RCODE, RR, A, DNSHeader, DNSQuestion, DNSRecord

from agent.aws import dnsanswers
from agent.aws.dnsanswers import ResolvConf, Route

AWS = dnsanswers.domain_labels(["amazonaws.com"])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("s3.amazonaws.com", True),
        ("amazonaws.com", True),
        ("amazonaws.com.", True),
        ("S3.US-East-1.AmazonAWS.COM.", True),
        ("bucket.s3.us-east-1.amazonaws.com", True),
        ("notamazonaws.com", False),
        ("s3.amazonaws.com.evil.example", False),
        ("amazonaws.co", False),
        ("com", False),
        ("example.org", False),
        (".", False),
    ],
)
def test_names_match_the_domains_by_whole_labels(name: str, expected: bool) -> None:
    assert dnsanswers.in_domains(name, AWS) is expected


def test_domains_are_normalised_and_several_are_allowed() -> None:
    domains = dnsanswers.domain_labels(["AmazonAWS.com.", " amazonaws.com.cn "])
    assert domains == ((b"amazonaws", b"com"), (b"amazonaws", b"com", b"cn"))
    assert dnsanswers.in_domains("s3.cn-north-1.amazonaws.com.cn", domains)
    assert dnsanswers.in_domains("sts.amazonaws.com", domains)
    assert not dnsanswers.in_domains("amazonaws.cn", domains)


def question(name: str, qtype: str = "A") -> DNSRecord:
    return DNSRecord.question(name, qtype)


@pytest.mark.parametrize(
    ("name", "qtype", "healthy", "expected"),
    [
        ("s3.amazonaws.com", "A", True, Route.PROXY),
        ("s3.amazonaws.com", "AAAA", True, Route.EMPTY),
        ("amazonaws.com", "A", True, Route.PROXY),
        ("s3.amazonaws.com", "TXT", True, Route.FORWARD),
        ("s3.amazonaws.com", "CNAME", True, Route.FORWARD),
        ("s3.amazonaws.com", "MX", True, Route.FORWARD),
        ("s3.amazonaws.com", "ANY", True, Route.FORWARD),
        ("s3.amazonaws.com", "HTTPS", True, Route.FORWARD),
        ("s3.amazonaws.com", "A", False, Route.FORWARD),
        ("s3.amazonaws.com", "AAAA", False, Route.FORWARD),
        ("example.org", "A", True, Route.FORWARD),
        ("notamazonaws.com", "A", True, Route.FORWARD),
        ("kubernetes.default.svc.cluster.local", "A", True, Route.FORWARD),
    ],
)
def test_route(name: str, qtype: str, healthy: bool, expected: Route) -> None:
    assert dnsanswers.route(question(name, qtype), healthy, AWS) is expected


def test_queries_that_are_not_one_plain_in_question_are_forwarded() -> None:
    chaos = DNSRecord(q=DNSQuestion("s3.amazonaws.com", QTYPE.A, CLASS.CH))
    assert dnsanswers.route(chaos, True, AWS) is Route.FORWARD
    two = question("s3.amazonaws.com")
    two.add_question(DNSQuestion("sqs.amazonaws.com"))
    assert dnsanswers.route(two, True, AWS) is Route.FORWARD
    notify = question("s3.amazonaws.com")
    notify.header.opcode = OPCODE.NOTIFY
    assert dnsanswers.route(notify, True, AWS) is Route.FORWARD
    none = DNSRecord(DNSHeader(id=7))
    assert dnsanswers.route(none, True, AWS) is Route.FORWARD


def test_proxy_reply() -> None:
    query = question("S3.AmazonAWS.com")
    reply = DNSRecord.parse(dnsanswers.proxy_reply(query, "10.96.0.50", 5))
    assert reply.header.id == query.header.id
    assert (reply.header.qr, reply.header.aa, reply.header.ra, reply.header.rd) == (1, 0, 1, 1)
    assert reply.header.rcode == RCODE.NOERROR
    assert reply.questions == query.questions
    assert len(reply.rr) == 1
    record = reply.rr[0]
    assert (str(record.rname), record.rtype, str(record.rdata), record.ttl) == (
        "S3.AmazonAWS.com.",
        QTYPE.A,
        "10.96.0.50",
        5,
    )


def test_empty_and_servfail_replies_echo_the_question() -> None:
    query = question("s3.amazonaws.com", "AAAA")
    query.header.rd = 0
    empty = DNSRecord.parse(dnsanswers.empty_reply(query))
    assert (empty.header.id, empty.header.rcode, empty.rr, empty.auth) == (
        query.header.id,
        RCODE.NOERROR,
        [],
        [],
    )
    assert empty.header.rd == 0
    assert empty.questions == query.questions
    failed = DNSRecord.parse(dnsanswers.servfail_reply(question("example.org")))
    assert failed.header.rcode == RCODE.SERVFAIL
    assert str(failed.q.qname) == "example.org."


def test_formerr_echoes_id_opcode_and_rd() -> None:
    header = struct.pack("!HHHHHH", 0xBEEF, 0x0100 | (OPCODE.STATUS << 11), 1, 0, 0, 0)
    reply = DNSRecord.parse(dnsanswers.formerr_reply(header + b"\xff\xfe"))
    assert reply.header.id == 0xBEEF
    assert (reply.header.qr, reply.header.rd, reply.header.ra) == (1, 1, 1)
    assert reply.header.opcode == OPCODE.STATUS
    assert reply.header.rcode == RCODE.FORMERR
    assert reply.questions == []


def test_formerr_needs_a_whole_query_header() -> None:
    assert dnsanswers.formerr_reply(b"") is None
    assert dnsanswers.formerr_reply(b"\x12\x34\x01\x00") is None
    response = struct.pack("!HHHHHH", 1, 0x8000, 1, 0, 0, 0)
    assert dnsanswers.formerr_reply(response + b"\x00") is None  # never answer a response


def test_with_id_and_truncation() -> None:
    answer = question("example.org").reply().pack()
    assert DNSRecord.parse(dnsanswers.with_id(answer, 4242)).header.id == 4242
    assert dnsanswers.with_id(answer, 4242)[2:] == answer[2:]
    assert not dnsanswers.is_truncated(answer)
    truncated = question("example.org").reply()
    truncated.header.tc = 1
    assert dnsanswers.is_truncated(truncated.pack())
    assert not dnsanswers.is_truncated(b"\x00")


RESOLV_CONF = """\
# written by the kubelet
search otterize-system.svc.cluster.local svc.cluster.local cluster.local
nameserver 10.96.0.10   # cluster DNS
nameserver 10.96.0.11
options ndots:5 timeout:1
"""


def test_parse_resolv_conf() -> None:
    conf = dnsanswers.parse_resolv_conf(RESOLV_CONF)
    assert conf == ResolvConf(
        ("10.96.0.10", "10.96.0.11"),
        ("otterize-system.svc.cluster.local", "svc.cluster.local", "cluster.local"),
        5,
    )
    assert dnsanswers.parse_resolv_conf("") == ResolvConf()
    assert dnsanswers.parse_resolv_conf("nameserver\noptions ndots:x\n") == ResolvConf()
    assert dnsanswers.parse_resolv_conf("search a\nsearch b c\n").search == ("b", "c")


def test_upstream_address() -> None:
    assert dnsanswers.upstream_address("10.96.0.10") == "10.96.0.10:53"
    assert dnsanswers.upstream_address("fd00::a") == "[fd00::a]:53"
    assert dnsanswers.upstream_address("fe80::1%eth0") == "[fe80::1]:53"


def test_search_names() -> None:
    conf = dnsanswers.parse_resolv_conf(RESOLV_CONF)
    assert dnsanswers.search_names("network-mapper-aws-proxy", conf) == (
        "network-mapper-aws-proxy.otterize-system.svc.cluster.local.",
        "network-mapper-aws-proxy.svc.cluster.local.",
        "network-mapper-aws-proxy.cluster.local.",
        "network-mapper-aws-proxy.",
    )
    assert dnsanswers.search_names("proxy.example.org.", conf) == ("proxy.example.org.",)
    few_dots = ResolvConf(search=("cluster.local",), ndots=1)
    assert dnsanswers.search_names("proxy.ns.svc.cluster.local", few_dots) == (
        "proxy.ns.svc.cluster.local.",
        "proxy.ns.svc.cluster.local.cluster.local.",
    )


def test_first_ipv4() -> None:
    reply = question("proxy").reply()
    assert dnsanswers.first_ipv4(reply) is None
    reply.add_answer(*RR.fromZone("proxy. 5 CNAME other."))
    reply.add_answer(RR("other.", QTYPE.A, rdata=A("10.96.0.50")))
    reply.add_answer(RR("other.", QTYPE.A, rdata=A("10.96.0.51")))
    assert dnsanswers.first_ipv4(reply) == "10.96.0.50"
    reply.header.rcode = RCODE.SERVFAIL
    assert dnsanswers.first_ipv4(reply) is None


def test_forwarded_answers_for_aws_names_are_held_no_longer_than_the_proxys() -> None:
    reply = DNSRecord.question("s3.amazonaws.com", "A").reply()
    reply.add_answer(RR("s3.amazonaws.com", QTYPE.A, rdata=A("52.216.0.1"), ttl=30))
    reply.add_answer(RR("s3.amazonaws.com", QTYPE.A, rdata=A("52.216.0.2"), ttl=3))
    capped = DNSRecord.parse(dnsanswers.with_ttl_at_most(reply.pack(), 5))
    assert [(str(rr.rdata), rr.ttl) for rr in capped.rr] == [("52.216.0.1", 5), ("52.216.0.2", 3)]
    short = DNSRecord.question("s3.amazonaws.com", "A").reply()
    short.add_answer(RR("s3.amazonaws.com", QTYPE.A, rdata=A("52.216.0.1"), ttl=2))
    assert dnsanswers.with_ttl_at_most(short.pack(), 5) == short.pack()  # nothing to cut: unchanged
    assert dnsanswers.with_ttl_at_most(b"\x00\x01garbage", 5) == b"\x00\x01garbage"
