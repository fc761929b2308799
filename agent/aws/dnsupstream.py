"""The DNS forwarder's two outward sides: its upstream (the cluster DNS) and the proxy's health.

:class:`Upstream` sends a client's query to the cluster DNS over the client's transport and returns
the answer (one socket per query, the answer's ID checked, one timeout for the whole exchange);
:class:`ProxyHealth` — with :class:`ProxyResolver` (the proxy's Service name, resolved through that
upstream) and :class:`HttpProbe` (its ``/healthz``) — says which address AWS names get, and
:mod:`agent.aws.dns_forwarder` answers with it. Counters: :class:`DnsForwarderMetrics`.
"""

from __future__ import annotations

import http.client
import ipaddress
import logging
import socket
import struct
import threading
import time
import urllib.parse
from collections.abc import Callable

from dnslib import DNSError, DNSRecord

from agent.aws import dnsanswers
from agent.aws.dnsanswers import ResolvConf
from agent.metrics import Counter, Gauge, Metrics
from agent.settings import parse_address

log = logging.getLogger("agent.aws.dns_forwarder")
PREFIX = "network_mapper_aws_dns_"
Forward = Callable[[bytes, bool], bytes]  # (query as sent by the client, over TCP?) → upstream's answer


class UpstreamError(Exception):
    """The upstream did not answer the query (timed out, refused, closed the connection)."""


class DnsForwarderMetrics(Metrics):
    def __init__(self) -> None:
        self.queries_udp = Counter(f"{PREFIX}queries_udp_total", "Queries received over UDP.")
        self.queries_tcp = Counter(f"{PREFIX}queries_tcp_total", "Queries received over TCP.")
        self.answered_with_proxy = Counter(
            f"{PREFIX}answered_with_proxy_total",
            "AWS names answered by the forwarder: A with the proxy's address, AAAA empty.",
        )
        self.forwarded = Counter(f"{PREFIX}forwarded_total", "Queries answered by the upstream.")
        self.servfail = Counter(f"{PREFIX}servfail_total", "Queries answered SERVFAIL (upstream failed).")
        self.formerr = Counter(f"{PREFIX}formerr_total", "Malformed queries answered FORMERR.")
        self.dropped = Counter(
            f"{PREFIX}dropped_total", "Datagrams not answered: no header, a response, or too many at once."
        )
        self.handler_errors = Counter(f"{PREFIX}handler_errors_total", "Queries whose handling failed.")
        self.proxy_healthy = Gauge(f"{PREFIX}proxy_healthy", "1 while AWS names get the proxy's address.")
        self.health_checks_failed = Counter(
            f"{PREFIX}health_checks_failed_total", "Proxy health checks that did not get HTTP 200."
        )


class Upstream:
    """The real :data:`Forward`: sends a query to ``host:port`` over UDP or TCP and waits at most
    ``timeout`` seconds in all for the answer with the same ID; :class:`UpstreamError` otherwise."""

    def __init__(self, address: str, timeout: float) -> None:
        self.host, self.port = parse_address(address)
        self.timeout = timeout

    def __call__(self, query: bytes, tcp: bool) -> bytes:
        deadline = time.monotonic() + self.timeout
        try:
            family, kind, proto, _, address = socket.getaddrinfo(
                self.host, self.port, type=socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
            )[0]
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(self.timeout)
                sock.connect(address)  # UDP too: only the upstream's datagrams are received
                return self._tcp(sock, query, deadline) if tcp else self._udp(sock, query, deadline)
        except TimeoutError:
            raise UpstreamError(f"no answer within {self.timeout:g}s") from None
        except OSError as exc:
            raise UpstreamError(f"{type(exc).__name__}: {exc}") from None

    @staticmethod
    def _remaining(deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left

    def _udp(self, sock: socket.socket, query: bytes, deadline: float) -> bytes:
        sock.send(query)
        while True:
            sock.settimeout(self._remaining(deadline))
            answer = sock.recv(65535)
            # A late answer to an earlier query cannot arrive on this fresh socket, but a forged one can.
            if len(answer) >= 12 and answer[:2] == query[:2] and answer[2] & 0x80:
                return answer

    def _tcp(self, sock: socket.socket, query: bytes, deadline: float) -> bytes:
        sock.sendall(struct.pack("!H", len(query)) + query)
        (length,) = struct.unpack("!H", read_exactly(sock, 2, lambda: self._remaining(deadline)))
        answer = read_exactly(sock, length, lambda: self._remaining(deadline))
        if len(answer) < 12 or answer[:2] != query[:2]:
            raise UpstreamError("answer with another ID over TCP")
        return answer


def read_exactly(sock: socket.socket, count: int, timeout: Callable[[], float]) -> bytes:
    """``count`` bytes, each wait bounded by ``timeout()``; ConnectionError when the peer closes first."""
    data = b""
    while len(data) < count:
        sock.settimeout(timeout())
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {count} bytes")
        data += chunk
    return data


class ProxyUnresolved(Exception):
    """The proxy's name has no IPv4 address in the upstream (or the upstream did not say)."""


class ProxyResolver:
    """The proxy's IPv4 address: ``host`` itself when it is one, else asked of the upstream with the
    search path of ``resolv.conf`` (the name in the forwarder's namespace first)."""

    def __init__(self, host: str, conf: ResolvConf, forward: Forward) -> None:
        self.host = host
        self.names = dnsanswers.search_names(host, conf)
        self.forward = forward
        try:
            self.fixed: str | None = str(ipaddress.IPv4Address(host))
        except ValueError:
            self.fixed = None

    def __call__(self) -> str:
        if self.fixed is not None:
            return self.fixed
        for name in self.names:
            query = DNSRecord.question(name, "A")
            try:
                answer = self.forward(query.pack(), False)
                if dnsanswers.is_truncated(answer):
                    answer = self.forward(query.pack(), True)
                address = dnsanswers.first_ipv4(DNSRecord.parse(answer))
            except (UpstreamError, DNSError, ValueError) as exc:
                raise ProxyUnresolved(f"{name}: {exc}") from None
            if address is not None:
                return address
        raise ProxyUnresolved(f"no A record for {' or '.join(self.names)}")


class HttpProbe:
    """GET ``url``: None when it answers 200 within ``timeout`` seconds, else why not."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname, parts.port
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.timeout = timeout

    def __call__(self) -> str | None:
        kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        connection = kind(self.host, self.port, timeout=self.timeout)
        try:
            connection.request("GET", self.path)
            response = connection.getresponse()
            response.read(4096)
        except TimeoutError:
            return f"no answer within {self.timeout:g}s"
        except (OSError, http.client.HTTPException) as exc:
            return f"{type(exc).__name__}: {exc}"
        finally:
            connection.close()
        return None if response.status == 200 else f"HTTP {response.status}"


class ProxyHealth:
    """The proxy's address while it is healthy, None while it is down or its address is unknown;
    :meth:`check` updates it (one resolution, one probe) and logs each change once."""

    def __init__(
        self, resolve: Callable[[], str], probe: Callable[[], str | None], metrics: DnsForwarderMetrics
    ) -> None:
        self.resolve = resolve
        self.probe = probe
        self.metrics = metrics
        self.known: str | None = None  # the last address resolved: kept while the upstream cannot say
        self._healthy: str | None = None
        self._down_reason: str | None = None
        self._checked = False  # the first check's result is logged, up or down
        self._resolve_failing = False
        metrics.proxy_healthy.set_function(lambda: float(self._healthy is not None))

    def address(self) -> str | None:
        return self._healthy

    def check(self) -> None:
        unresolved = self._resolve()
        reason = self.probe()
        if reason is None and self.known is None:
            reason = f"address unknown ({unresolved})"
        if reason is not None:
            self.metrics.health_checks_failed.inc()
        self._healthy = self.known if reason is None else None
        if not self._checked or (reason is None) != (self._down_reason is None):
            if reason is None:
                log.info("proxy healthy address=%s: AWS names answered with it", self.known)
            else:
                log.warning("proxy down reason=%s: AWS names forwarded upstream (real addresses)", reason)
        self._down_reason, self._checked = reason, True

    def _resolve(self) -> str | None:
        """Update :attr:`known`; why it could not be, if so (logged once until it can again)."""
        try:
            resolved = self.resolve()
        except ProxyUnresolved as exc:
            if not self._resolve_failing:
                log.warning("proxy address not resolved error=%s kept=%s", exc, self.known)
            self._resolve_failing = True
            return str(exc)
        if self._resolve_failing:
            log.info("proxy address resolved again address=%s", resolved)
        elif self.known is not None and resolved != self.known:
            log.info("proxy address changed from=%s to=%s", self.known, resolved)
        self._resolve_failing = False
        self.known = resolved
        return None

    def run(self, stop: threading.Event, interval: float) -> None:
        """:meth:`check` every ``interval`` seconds (start to start) until ``stop``."""
        while not stop.is_set():
            started = time.monotonic()
            self.check()
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
