"""The cluster DNS server over real UDP and TCP sockets, fed a fixed (injected) cluster state."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from sandbox.clusterdns import ClusterDNSServer, ClusterResolver, ClusterState, Pod, Service, Zone

ZONE = Zone.from_flags(
    "cluster.local", ["api.example.com=198.51.100.10"], ["www.example.com=api.example.com"]
)
STATE = ClusterState(
    services={
        ("shop", "cartservice"): Service("shop", "cartservice", "10.96.0.12"),
        ("shop", "kafka"): Service("shop", "kafka", None, {"app": "kafka"}),
    },
    pods={("shop", "kafka-0"): Pod("shop", "kafka-0", "10.244.0.3", {"app": "kafka"})},
)


class MutableState:
    """A state source the test can change between queries, like a watch would."""

    def __init__(self, state: ClusterState) -> None:
        self.state = state

    def __call__(self) -> ClusterState:
        return self.state


_SOURCE = MutableState(STATE)


@pytest.fixture
def source() -> MutableState:
    _SOURCE.state = STATE
    return _SOURCE


@pytest.fixture(scope="module")
def server() -> Iterator[ClusterDNSServer]:
    dns = ClusterDNSServer(ClusterResolver(ZONE, _SOURCE), "127.0.0.1", 0)
    dns.start()
    yield dns
    dns.stop()


def ask(server: ClusterDNSServer, name: str, qtype: str = "A", *, tcp: bool = False) -> DNSRecord:
    query = DNSRecord.question(name, qtype)
    reply = DNSRecord.parse(query.send("127.0.0.1", server.port, tcp=tcp, timeout=2))
    assert reply.header.id == query.header.id
    assert str(reply.q.qname) == str(query.q.qname)
    return reply


def rrs(reply: DNSRecord) -> list[tuple[str, str, str]]:
    return [(str(rr.rname).rstrip("."), QTYPE[rr.rtype], str(rr.rdata).rstrip(".")) for rr in reply.rr]


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_service_headless_and_external_answers(
    server: ClusterDNSServer, source: MutableState, tcp: bool
) -> None:
    reply = ask(server, "cartservice.shop.svc.cluster.local", tcp=tcp)
    assert reply.header.rcode == RCODE.NOERROR
    assert rrs(reply) == [("cartservice.shop.svc.cluster.local", "A", "10.96.0.12")]
    assert rrs(ask(server, "kafka.shop.svc.cluster.local", tcp=tcp)) == [
        ("kafka.shop.svc.cluster.local", "A", "10.244.0.3")
    ]
    assert rrs(ask(server, "www.example.com", tcp=tcp)) == [
        ("www.example.com", "CNAME", "api.example.com"),
        ("api.example.com", "A", "198.51.100.10"),
    ]


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_nxdomain_and_empty_aaaa(server: ClusterDNSServer, source: MutableState, tcp: bool) -> None:
    missing = ask(server, "nothing.shop.svc.cluster.local", tcp=tcp)
    assert missing.header.rcode == RCODE.NXDOMAIN
    assert missing.rr == []
    aaaa = ask(server, "cartservice.shop.svc.cluster.local", "AAAA", tcp=tcp)
    assert aaaa.header.rcode == RCODE.NOERROR
    assert aaaa.rr == []


def test_answer_echoes_the_question_spelling(server: ClusterDNSServer, source: MutableState) -> None:
    reply = ask(server, "CartService.Shop.SVC.cluster.local")
    assert [str(rr.rname) for rr in reply.rr] == ["CartService.Shop.SVC.cluster.local."]
    assert str(reply.rr[0].rdata) == "10.96.0.12"


def test_each_query_sees_the_current_state(server: ClusterDNSServer, source: MutableState) -> None:
    assert ask(server, "new.shop.svc.cluster.local").header.rcode == RCODE.NXDOMAIN
    source.state = ClusterState(services={("shop", "new"): Service("shop", "new", "10.96.0.99")})
    assert rrs(ask(server, "new.shop.svc.cluster.local")) == [
        ("new.shop.svc.cluster.local", "A", "10.96.0.99")
    ]
    source.state = ClusterState(synced=False)
    assert ask(server, "new.shop.svc.cluster.local", tcp=True).header.rcode == RCODE.SERVFAIL


def test_udp_and_tcp_share_one_port(server: ClusterDNSServer, source: MutableState) -> None:
    assert server.port > 0
    assert (
        ask(server, "api.example.com").header.rcode == ask(server, "api.example.com", tcp=True).header.rcode
    )


@pytest.fixture(scope="module")
def suffix_server() -> Iterator[ClusterDNSServer]:
    zone = Zone.from_flags("cluster.local", [], [], ["amazonaws.com=198.51.100.30"])
    dns = ClusterDNSServer(ClusterResolver(zone, lambda: STATE), "127.0.0.1", 0)
    dns.start()
    yield dns
    dns.stop()


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_suffix_names_at_any_depth(suffix_server: ClusterDNSServer, tcp: bool) -> None:
    for name in ("sts.amazonaws.com", "network-mapper-demo.s3.us-east-1.amazonaws.com"):
        reply = ask(suffix_server, name, tcp=tcp)
        assert reply.header.rcode == RCODE.NOERROR
        assert rrs(reply) == [(name, "A", "198.51.100.30")]
        assert reply.rr[0].ttl == 30
    assert ask(suffix_server, "notamazonaws.com", tcp=tcp).header.rcode == RCODE.NXDOMAIN
    assert rrs(ask(suffix_server, "cartservice.shop.svc.cluster.local", tcp=tcp)) == [
        ("cartservice.shop.svc.cluster.local", "A", "10.96.0.12")
    ]
