"""``network-mapper-aws-dns-forwarder``: the DNS server of the pods that opted in to AWS visibility.

Queries come in over UDP and TCP (the forwarder's Service, whose ClusterIP the admission webhook
writes into those pods' ``resolv.conf``). :func:`agent.aws.dnsanswers.route` decides, per query:
``A`` for a name under the AWS domains is answered with the proxy's address while the proxy is
healthy (``AAAA`` with an empty answer), and everything else — other names, other types, and AWS
names while the proxy is down — goes to the upstream (the cluster DNS) unchanged, over the client's
transport, and the upstream's answer goes back with the client's query ID. A UDP answer the
upstream truncated goes back truncated, so the client retries over TCP.

The proxy's state comes from :class:`ProxyHealth`, a thread that every ``health_interval`` seconds
resolves the proxy's name through the upstream (so a new Service IP is followed) and GETs its
``/healthz`` (:class:`HttpProbe`): anything but HTTP 200 within the timeout means down, and AWS
names get their real addresses from the upstream (fail open) until it is up again. Upstream
timeouts are answered SERVFAIL, unparseable queries FORMERR (or dropped when not even the header
is there), and no query makes a server thread raise. Counters go to ``/metrics``
(:class:`DnsForwarderMetrics`, :mod:`agent.health`). Settings:
:class:`agent.aws.settings.DnsForwarderSettings`.
"""

from __future__ import annotations

import logging
import os
import socket
import socketserver
import struct
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dnslib import DNSError, DNSRecord

from agent.aws import dnsanswers
from agent.aws.dnsanswers import ResolvConf, Route
from agent.aws.dnsupstream import (
    DnsForwarderMetrics,
    Forward,
    HttpProbe,
    ProxyHealth,
    ProxyResolver,
    Upstream,
    UpstreamError,
    read_exactly,
)
from agent.aws.settings import DnsForwarderSettings
from agent.lifecycle import serve_until_signalled
from agent.settings import SettingsError, load, parse_address

log = logging.getLogger("agent.aws.dns_forwarder")
PROG = "network-mapper-aws-dns-forwarder"
MAX_UDP_IN_FLIGHT = 256  # queries answered at once (each may wait upstream_timeout); more are dropped
MAX_TCP_CONNECTIONS = 64
TCP_IDLE_SECONDS = 10.0  # a client connection with no new query for this long is closed
MAX_HEALTH_TIMEOUT = 1.0  # a proxy slower than this to say "healthy" is not healthy

Request = socket.socket | tuple[bytes, socket.socket]  # socketserver's: a TCP connection, a datagram


class QueryHandler:
    """One client query (raw bytes) → the bytes to send back, or None to send nothing."""

    def __init__(
        self,
        domains: Sequence[str],
        ttl: int,
        proxy_address: Callable[[], str | None],
        forward: Forward,
        metrics: DnsForwarderMetrics,
    ) -> None:
        self.domains = dnsanswers.domain_labels(domains)
        self.ttl = ttl
        self.proxy_address = proxy_address
        self.forward = forward
        self.metrics = metrics
        self._upstream_failing = False

    def __call__(self, data: bytes, tcp: bool) -> bytes | None:
        (self.metrics.queries_tcp if tcp else self.metrics.queries_udp).inc()
        try:
            query = DNSRecord.parse(data)
        except DNSError as exc:
            reply = dnsanswers.formerr_reply(data)
            (self.metrics.dropped if reply is None else self.metrics.formerr).inc()
            log.debug(
                "malformed query bytes=%d tcp=%s answered=%s error=%s", len(data), tcp, bool(reply), exc
            )
            return reply
        if query.header.qr:
            self.metrics.dropped.inc()  # a response sent to us: answering it could loop
            return None
        address = self.proxy_address()
        decision = dnsanswers.route(query, address is not None, self.domains)
        if address is not None and decision is not Route.FORWARD:
            self.metrics.answered_with_proxy.inc()
            if decision is Route.PROXY:
                return dnsanswers.proxy_reply(query, address, self.ttl)
            return dnsanswers.empty_reply(query)
        try:
            answer = self.forward(data, tcp)
        except UpstreamError as exc:
            self.metrics.servfail.inc()
            # One WARNING when the upstream starts failing, DEBUG while it keeps failing.
            level = logging.DEBUG if self._upstream_failing else logging.WARNING
            self._upstream_failing = True
            log.log(level, "upstream failed, answering SERVFAIL tcp=%s error=%s", tcp, exc)
            return dnsanswers.servfail_reply(query)
        if self._upstream_failing:
            self._upstream_failing = False
            log.info("upstream answering again")
        self.metrics.forwarded.inc()
        if address is None and dnsanswers.route(query, True, self.domains) is not Route.FORWARD:
            # Failing open: the real address, but held no longer than the proxy's would be, so
            # caching resolvers come back to the proxy soon after it does.
            answer = dnsanswers.with_ttl_at_most(answer, self.ttl)
        return dnsanswers.with_id(answer, query.header.id)


class _Bounded(socketserver.ThreadingMixIn):
    """A thread per request, at most ``slots`` at once; beyond that, requests are dropped and counted
    (a flood must not grow threads without bound while each waits for the upstream)."""

    daemon_threads = True
    block_on_close = False
    address_family: int

    def __init__(
        self,
        address: tuple[str, int],
        handler_class: type[socketserver.BaseRequestHandler],
        handle_query: QueryHandler,
        slots: int,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.handle_query = handle_query
        self.slots = threading.BoundedSemaphore(slots)
        super().__init__(address, handler_class)  # type: ignore[call-arg]  # the server class's

    def process_request(self, request: Request, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            self.handle_query.metrics.dropped.inc()
            self.shutdown_request(request)  # type: ignore[attr-defined]
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Request, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: Request, client_address: Any) -> None:
        # The last line of defence: a bug must cost one query, logged, not a traceback on stderr.
        self.handle_query.metrics.handler_errors.inc()
        log.error("query handling failed client=%s error=%r", client_address, sys.exc_info()[1])


class _UdpHandler(socketserver.BaseRequestHandler):
    server: _UdpServer

    def handle(self) -> None:
        data, sock = self.request
        reply = self.server.handle_query(data, False)
        if reply is not None:
            try:
                sock.sendto(reply, self.client_address)
            except OSError as exc:
                log.debug("reply not sent client=%s error=%s", self.client_address, exc)


class _TcpHandler(socketserver.BaseRequestHandler):
    server: _TcpServer

    def handle(self) -> None:
        """Queries one after another on one connection (RFC 7766), until it closes or idles."""
        sock: socket.socket = self.request
        try:
            while True:
                try:
                    (length,) = struct.unpack("!H", read_exactly(sock, 2, lambda: TCP_IDLE_SECONDS))
                except ConnectionError:
                    return  # closed between queries: the normal end
                reply = self.server.handle_query(read_exactly(sock, length, lambda: TCP_IDLE_SECONDS), True)
                if reply is not None:
                    sock.sendall(struct.pack("!H", len(reply)) + reply)
        except OSError as exc:  # idle, cut mid-query, reset: the client's connection ends
            log.debug("tcp connection ended client=%s error=%s", self.client_address, exc)


class _UdpServer(_Bounded, socketserver.UDPServer):
    max_packet_size = 65535


class _TcpServer(_Bounded, socketserver.TCPServer):
    allow_reuse_address = True


def upstream_of(settings: DnsForwarderSettings) -> tuple[str, ResolvConf]:
    """The upstream's ``host:port`` and the ``resolv.conf`` read (empty when absent and not needed)."""
    try:
        conf = dnsanswers.parse_resolv_conf(
            settings.resolv_conf.read_text(encoding="utf-8", errors="replace")
        )
    except OSError as exc:
        if not settings.upstream:
            raise SettingsError(
                f"--upstream is empty and {settings.resolv_conf} cannot be read ({exc})"
            ) from None
        conf = ResolvConf()
    if settings.upstream:
        return settings.upstream, conf
    if not conf.nameservers:
        raise SettingsError(f"--upstream is empty and {settings.resolv_conf} names no nameserver")
    return dnsanswers.upstream_address(conf.nameservers[0]), conf


def _bind(host: str, port: int, handler: QueryHandler) -> tuple[_UdpServer, _TcpServer]:
    """UDP and TCP servers on the same port; with port 0, the first free UDP port that is free for
    TCP too (another process may hold it for TCP: then the next one)."""
    attempts = 1 if port else 10
    while True:
        udp = _UdpServer((host, port), _UdpHandler, handler, MAX_UDP_IN_FLIGHT)
        try:
            return udp, _TcpServer((host, udp.server_address[1]), _TcpHandler, handler, MAX_TCP_CONNECTIONS)
        except OSError:
            udp.server_close()
            attempts -= 1
            if not attempts:
                raise


class DnsForwarder:
    """The forwarder wired from its settings: the UDP and TCP servers on ``listen_address`` (port 0:
    a free one, :attr:`port`) and the proxy's health checker, each in a thread; ``forward`` stands in
    for the upstream (tests). Raises SettingsError (no upstream known, a bad health URL) or OSError
    (the address is taken)."""

    def __init__(self, settings: DnsForwarderSettings, forward: Forward | None = None) -> None:
        self.upstream, conf = upstream_of(settings)
        try:
            probe = HttpProbe(settings.proxy_health_url, min(settings.health_interval, MAX_HEALTH_TIMEOUT))
        except ValueError as exc:
            raise SettingsError(f"--proxy-health-url (env AWS_DNS_PROXY_HEALTH_URL): {exc}") from None
        forward = forward or Upstream(self.upstream, settings.upstream_timeout)
        self.metrics = DnsForwarderMetrics()
        self.health = ProxyHealth(ProxyResolver(settings.proxy_host, conf, forward), probe, self.metrics)
        handler = QueryHandler(
            settings.domains, settings.answer_ttl, self.health.address, forward, self.metrics
        )
        self.udp, self.tcp = _bind(*parse_address(settings.listen_address), handler)
        self.port = int(self.udp.server_address[1])
        self._stopping = threading.Event()
        self._started = False
        self.threads = [
            threading.Thread(
                target=self.health.run,
                args=(self._stopping, settings.health_interval),
                name="proxy-health",
                daemon=True,
            ),
            *(
                threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1}, name=n, daemon=True)
                for s, n in ((self.udp, "dns-udp"), (self.tcp, "dns-tcp"))
            ),
        ]

    def start(self) -> None:
        self._started = True
        for thread in self.threads:
            thread.start()

    def is_alive(self) -> bool:
        """Every thread runs (``/healthz``); the proxy being down does not make the forwarder unhealthy."""
        return all(thread.is_alive() for thread in self.threads)

    def stop(self) -> None:
        self._stopping.set()
        for server in (self.udp, self.tcp):
            if self._started:  # shutdown() waits for serve_forever to return: only once it ran
                server.shutdown()
            server.server_close()
        if self._started:
            self.threads[0].join()  # a check in progress ends within the probe's and upstream's timeouts


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stdout
    )
    try:
        settings = load(DnsForwarderSettings, argv, os.environ if environ is None else environ, prog=PROG)
        forwarder = DnsForwarder(settings)
    except SettingsError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{PROG}: cannot serve {settings.listen_address} ({exc})", file=sys.stderr)
        return 1
    log.info(
        "dns forwarder serving address=%s udp+tcp upstream=%s domains=%s proxy=%s health_url=%s"
        " interval=%gs ttl=%ds",
        *(settings.listen_address, forwarder.upstream, ",".join(settings.domains), settings.proxy_host),
        *(settings.proxy_health_url, settings.health_interval, settings.answer_ttl),
    )
    code = serve_until_signalled(
        PROG, settings.health_address, forwarder.metrics, [forwarder], None, threading.Event(), forwarder.stop
    )
    if code:
        forwarder.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
