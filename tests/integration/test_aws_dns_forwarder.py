"""The AWS DNS forwarder over real UDP and TCP sockets on 127.0.0.1: a real dnslib server as its
upstream (the cluster DNS), a real HTTP endpoint as the proxy's ``/healthz`` that the test turns
up and down, and queries sent with dnslib's ``DNSRecord.send`` or as raw bytes."""

from __future__ import annotations

import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSError, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

from agent.aws.dns_forwarder import DnsForwarder
from agent.aws.dnsupstream import Upstream, UpstreamError
from agent.aws.settings import DnsForwarderSettings
from agent.health import HealthServer
from tests.support.mapper_process import wait_until

INTERVAL = 0.2
WAIT = 5.0  # seconds for a health check or an answer to change
UPSTREAM_TIMEOUT = 0.5
PROXY_NAME = "aws-proxy.otterize-system.svc.cluster.local"
S3 = "s3.us-east-1.amazonaws.com"
S3_REAL = "52.216.0.10"
NEVER_ANSWERED = "blackhole.example.org"
BIG = "big.example.org"


# --- stand-ins -----------------------------------------------------------------------------------


class UpstreamResolver(BaseResolver):  # type: ignore[misc]
    """The cluster DNS: fixed A records (changeable), one name never answered, one big answer."""

    def __init__(self) -> None:
        self.release = threading.Event()  # set at teardown: the threads holding unanswered queries end
        self.records: dict[str, list[str]] = {
            PROXY_NAME: ["10.96.0.50"],
            S3: [S3_REAL],
            "sqs.us-east-1.amazonaws.com": ["52.94.0.20"],
            "example.org": ["93.184.216.34"],
            BIG: [f"198.51.100.{i}" for i in range(1, 61)],  # 60 A records: over 512 bytes
        }

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        name = str(request.q.qname).rstrip(".").lower()
        if name == NEVER_ANSWERED:
            self.release.wait(10)  # past the forwarder's timeout, over UDP and TCP alike
            raise DNSError("never answered")  # dnslib's handler then sends nothing
        reply = request.reply()
        if name not in self.records:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.A:
            for ip in self.records[name]:
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(ip), ttl=30))
        return reply


class ClassicUdpHandler(DNSHandler):  # type: ignore[misc]
    udplen = 512  # no EDNS: UDP answers over 512 bytes are truncated (TC)


class UpstreamDns:
    def __init__(self) -> None:
        self.resolver = UpstreamResolver()
        quiet = DNSLogger(log="-request,-reply,-truncated,-error", prefix=False)
        for _ in range(10):  # a UDP port free for TCP too
            self.udp = DNSServer(self.resolver, "127.0.0.1", 0, logger=quiet, handler=ClassicUdpHandler)
            self.port = self.udp.server.server_address[1]
            try:
                self.tcp = DNSServer(self.resolver, "127.0.0.1", self.port, tcp=True, logger=quiet)
                break
            except OSError:
                self.udp.server.server_close()
        for server in (self.udp, self.tcp):
            threading.Thread(
                target=server.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
            ).start()

    def stop(self) -> None:
        self.resolver.release.set()
        for server in (self.udp, self.tcp):
            server.stop()
            server.server.server_close()


class ProxyHealthz:
    """The proxy's /healthz: answers ``status`` (200 up, 503 down)."""

    def __init__(self) -> None:
        self.status = 200
        healthz = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(healthz.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/healthz"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[UpstreamDns]:
    dns = UpstreamDns()
    yield dns
    dns.stop()


@pytest.fixture
def healthz() -> Iterator[ProxyHealthz]:
    endpoint = ProxyHealthz()
    yield endpoint
    endpoint.stop()


def settings_for(upstream: UpstreamDns, health_url: str, **overrides: Any) -> DnsForwarderSettings:
    values: dict[str, Any] = {
        "listen_address": "127.0.0.1:0",
        "upstream": f"127.0.0.1:{upstream.port}",
        "proxy_host": PROXY_NAME,
        "proxy_health_url": health_url,
        "health_interval": INTERVAL,
        "answer_ttl": 5,
        "upstream_timeout": UPSTREAM_TIMEOUT,
        "health_address": "127.0.0.1:0",
        "resolv_conf": Path("/nonexistent/resolv.conf"),
    }
    return DnsForwarderSettings(**(values | overrides))


@pytest.fixture
def forwarder(upstream: UpstreamDns, healthz: ProxyHealthz) -> Iterator[DnsForwarder]:
    dns = DnsForwarder(settings_for(upstream, healthz.url))
    dns.start()
    yield dns
    dns.stop()
    assert dns.metrics.handler_errors.value == 0


def ask(port: int, name: str, qtype: str = "A", *, tcp: bool = False, timeout: float = 3) -> DNSRecord:
    query = DNSRecord.question(name, qtype)
    reply = DNSRecord.parse(query.send("127.0.0.1", port, tcp=tcp, timeout=timeout))
    assert reply.header.id == query.header.id
    return reply


def addresses(reply: DNSRecord) -> list[str]:
    return [str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A]


def raw_exchange(port: int, data: bytes, *, tcp: bool, timeout: float = 2.0) -> bytes:
    if tcp:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(struct.pack("!H", len(data)) + data)
            header = sock.recv(2)
            (length,) = struct.unpack("!H", header)
            answer = b""
            while len(answer) < length:
                answer += sock.recv(length - len(answer))
            return answer
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(data, ("127.0.0.1", port))
        return sock.recv(65535)


def free_udp_and_tcp_port() -> int:
    """A port free for UDP and TCP now (the process under test binds it right after)."""
    for _ in range(10):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
            udp.bind(("127.0.0.1", 0))
            try:
                tcp.bind(("127.0.0.1", udp.getsockname()[1]))
            except OSError:
                continue
            return int(udp.getsockname()[1])
    raise AssertionError("no port free for both UDP and TCP")


def answered_with_proxy(port: int) -> bool:
    return addresses(ask(port, S3)) == ["10.96.0.50"]


# --- tests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_aws_names_get_the_proxy_address_while_it_is_healthy(forwarder: DnsForwarder, tcp: bool) -> None:
    wait_until(lambda: answered_with_proxy(forwarder.port), WAIT, "the first health check")
    for name in (S3, "S3.US-East-1.AmazonAWS.com", "sqs.us-east-1.amazonaws.com", "amazonaws.com"):
        reply = ask(forwarder.port, name, tcp=tcp)
        assert reply.header.rcode == RCODE.NOERROR
        assert addresses(reply) == ["10.96.0.50"]
        assert str(reply.rr[0].rname) == str(reply.q.qname)  # the question's own spelling
        assert 0 < reply.rr[0].ttl <= 5
    aaaa = ask(forwarder.port, S3, "AAAA", tcp=tcp)
    assert (aaaa.header.rcode, aaaa.rr) == (RCODE.NOERROR, [])
    # Other types of AWS names, and names that only end like them, go to the upstream.
    assert ask(forwarder.port, S3, "TXT", tcp=tcp).header.rcode == RCODE.NOERROR
    assert ask(forwarder.port, "notamazonaws.com", tcp=tcp).header.rcode == RCODE.NXDOMAIN


def test_aws_names_fail_open_while_the_proxy_is_down(forwarder: DnsForwarder, healthz: ProxyHealthz) -> None:
    wait_until(lambda: answered_with_proxy(forwarder.port), WAIT, "the first health check")
    healthz.status = 503
    went_down = time.monotonic()
    wait_until(lambda: addresses(ask(forwarder.port, S3)) == [S3_REAL], WAIT, "the real address")
    assert time.monotonic() - went_down < INTERVAL + 1.5
    assert addresses(ask(forwarder.port, S3, tcp=True)) == [S3_REAL]
    # The upstream's TTL (30 s) is cut to the proxy answers' (5 s): caches come back to the proxy soon.
    assert {rr.ttl for rr in ask(forwarder.port, S3).rr} == {5}
    assert forwarder.metrics.proxy_healthy.value == 0
    assert forwarder.metrics.health_checks_failed.value >= 1
    healthz.status = 200
    came_back = time.monotonic()
    wait_until(lambda: answered_with_proxy(forwarder.port), WAIT, "the proxy address again")
    assert time.monotonic() - came_back < INTERVAL + 1.5
    assert forwarder.metrics.proxy_healthy.value == 1


def test_aws_names_fail_open_when_the_proxy_refuses_connections(upstream: UpstreamDns) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/healthz"  # bound, never listening: refused
        dns = DnsForwarder(settings_for(upstream, url))
        dns.start()
        try:
            wait_until(lambda: dns.metrics.health_checks_failed.value >= 2, WAIT, "two failed checks")
            assert addresses(ask(dns.port, S3)) == [S3_REAL]
            assert ask(dns.port, S3, "AAAA").rr == []  # the upstream's own (empty) AAAA answer
        finally:
            dns.stop()


def test_a_new_proxy_address_is_followed(forwarder: DnsForwarder, upstream: UpstreamDns) -> None:
    wait_until(lambda: answered_with_proxy(forwarder.port), WAIT, "the first health check")
    upstream.resolver.records[PROXY_NAME] = ["10.96.0.77"]
    try:
        wait_until(lambda: addresses(ask(forwarder.port, S3)) == ["10.96.0.77"], WAIT, "the new Service IP")
    finally:
        upstream.resolver.records[PROXY_NAME] = ["10.96.0.50"]


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_other_names_are_forwarded_unchanged(
    forwarder: DnsForwarder, upstream: UpstreamDns, tcp: bool
) -> None:
    for name, qtype in (("example.org", "A"), ("example.org", "MX"), ("missing.example.org", "A")):
        query = DNSRecord.question(name, qtype)
        direct = query.send("127.0.0.1", upstream.port, tcp=tcp, timeout=3)
        forwarded = query.send("127.0.0.1", forwarder.port, tcp=tcp, timeout=3)
        assert forwarded == direct
        assert DNSRecord.parse(forwarded).header.id == query.header.id
    assert forwarder.metrics.forwarded.value >= 3


def test_a_truncated_udp_answer_is_passed_back_and_tcp_gets_it_whole(forwarder: DnsForwarder) -> None:
    over_udp = ask(forwarder.port, BIG)
    assert over_udp.header.tc == 1
    over_tcp = ask(forwarder.port, BIG, tcp=True)
    assert over_tcp.header.tc == 0
    assert len(addresses(over_tcp)) == 60


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_upstream_timeout_gets_servfail(forwarder: DnsForwarder, tcp: bool) -> None:
    started = time.monotonic()
    reply = ask(forwarder.port, NEVER_ANSWERED, tcp=tcp)
    assert reply.header.rcode == RCODE.SERVFAIL
    assert str(reply.q.qname).rstrip(".") == NEVER_ANSWERED
    assert UPSTREAM_TIMEOUT * 0.9 <= time.monotonic() - started < UPSTREAM_TIMEOUT + 1.5
    assert forwarder.metrics.servfail.value >= 1
    assert addresses(ask(forwarder.port, "example.org", tcp=tcp)) == ["93.184.216.34"]  # still serving


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_malformed_queries_get_formerr(forwarder: DnsForwarder, tcp: bool) -> None:
    query = DNSRecord.question("example.org").pack()
    for malformed in (query[:-3], query[:12] + b"\xff\xfe\x01"):
        reply = DNSRecord.parse(raw_exchange(forwarder.port, malformed, tcp=tcp))
        assert reply.header.rcode == RCODE.FORMERR
        assert reply.header.id == struct.unpack("!H", query[:2])[0]
        assert reply.header.qr == 1
    assert forwarder.metrics.formerr.value == 2


def test_garbage_never_stops_the_server(forwarder: DnsForwarder) -> None:
    rng = random.Random(13)
    metrics = forwarder.metrics
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for sent in range(30, 301, 30):  # in batches, so that the socket's receive buffer never overflows
            for _ in range(30):
                sock.sendto(rng.randbytes(rng.randint(0, 300)), ("127.0.0.1", forwarder.port))
            wait_until(lambda n=sent: metrics.queries_udp.value >= n, WAIT, f"{sent} datagrams handled")
    for size in (0, 1, 5, 40, 2000):
        with socket.create_connection(("127.0.0.1", forwarder.port), timeout=2) as sock:
            sock.sendall(struct.pack("!H", size) + rng.randbytes(size))
            sock.shutdown(socket.SHUT_WR)
            sock.recv(65535)  # an answer or the end: either way, no hang
    assert metrics.formerr.value + metrics.dropped.value > 200
    assert addresses(ask(forwarder.port, "example.org")) == ["93.184.216.34"]
    assert addresses(ask(forwarder.port, "example.org", tcp=True)) == ["93.184.216.34"]
    assert forwarder.is_alive()


def test_several_queries_on_one_tcp_connection(forwarder: DnsForwarder) -> None:
    queries = [DNSRecord.question(name) for name in ("example.org", "missing.example.org", "example.org")]
    with socket.create_connection(("127.0.0.1", forwarder.port), timeout=3) as sock:
        for query in queries:
            data = query.pack()
            sock.sendall(struct.pack("!H", len(data)) + data)
            (length,) = struct.unpack("!H", sock.recv(2))
            answer = b""
            while len(answer) < length:
                answer += sock.recv(length - len(answer))
            assert DNSRecord.parse(answer).header.id == query.header.id


def test_metrics_are_served(forwarder: DnsForwarder) -> None:
    ask(forwarder.port, "example.org")
    ask(forwarder.port, "example.org", tcp=True)
    with HealthServer("127.0.0.1:0", forwarder.metrics, forwarder.is_alive) as endpoint:
        text = urllib.request.urlopen(f"{endpoint.url}/metrics", timeout=3).read().decode()
        healthz = urllib.request.urlopen(f"{endpoint.url}/healthz", timeout=3).status
    assert healthz == 200
    for name in (
        "queries_udp_total",
        "queries_tcp_total",
        "answered_with_proxy_total",
        "forwarded_total",
        "servfail_total",
        "formerr_total",
        "proxy_healthy",
        "health_checks_failed_total",
    ):
        assert f"\nnetwork_mapper_aws_dns_{name} " in text


def test_the_console_script_serves_until_sigterm(upstream: UpstreamDns, healthz: ProxyHealthz) -> None:
    port = free_udp_and_tcp_port()
    env = {
        **os.environ,
        "AWS_DNS_LISTEN_ADDRESS": f"127.0.0.1:{port}",
        "AWS_DNS_UPSTREAM": f"127.0.0.1:{upstream.port}",
        "AWS_DNS_PROXY_HOST": "10.96.0.99",
        "AWS_DNS_PROXY_HEALTH_URL": healthz.url,
        "AWS_DNS_HEALTH_INTERVAL": "0.2",
        "AWS_DNS_HEALTH_ADDRESS": "127.0.0.1:0",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "agent.aws.dns_forwarder"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def proxy_answer() -> bool:
            try:
                return addresses(ask(port, S3, timeout=0.2)) == ["10.96.0.99"]
            except OSError:
                return False

        wait_until(proxy_answer, 15, "the forwarder process to answer with the proxy")
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "proxy healthy address=10.96.0.99" in out
    assert "stopped prog=network-mapper-aws-dns-forwarder" in out


def test_the_upstream_client_ignores_answers_with_another_id() -> None:
    query = DNSRecord.question("example.org")
    answer = query.reply()
    answer.add_answer(RR("example.org", QTYPE.A, rdata=A("93.184.216.34")))
    forged = query.reply()
    forged.header.id = (query.header.id + 1) % 65536
    forged.add_answer(RR("example.org", QTYPE.A, rdata=A("203.0.113.66")))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(3)

        def serve(replies: list[bytes]) -> None:
            _, client = server.recvfrom(65535)
            for reply in replies:
                server.sendto(reply, client)

        upstream = Upstream(f"127.0.0.1:{server.getsockname()[1]}", UPSTREAM_TIMEOUT)
        liar = threading.Thread(target=serve, args=([forged.pack(), answer.pack()],))
        liar.start()
        assert upstream(query.pack(), False) == answer.pack()
        liar.join()
        liar = threading.Thread(target=serve, args=([forged.pack()],))
        liar.start()
        with pytest.raises(UpstreamError, match="no answer within"):
            upstream(query.pack(), False)
        liar.join()


def test_the_upstream_client_reports_refusal() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        upstream = Upstream(f"127.0.0.1:{closed.getsockname()[1]}", UPSTREAM_TIMEOUT)
        with pytest.raises(UpstreamError, match="ConnectionRefused"):
            upstream(DNSRecord.question("example.org").pack(), True)
