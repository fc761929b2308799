"""The IAM proxy's mitmproxy addon (:class:`IamProxy`): it sees every AWS API call of the pods that
opted in to AWS visibility, sends each request on to its own endpoint unchanged, and collects
(client IP, IAM action, resource) for the mapper. :mod:`agent.aws.proxy_runner` runs it under
mitmproxy's own runner, with the reporter and the health endpoint (``network-mapper-aws-proxy``).

Where the data comes from: the DNS forwarder answers those pods' ``*.amazonaws.com`` queries with
the proxy's address, so they connect over TLS with the endpoint's name as SNI and Host, and
verify the leaf certificates mitmproxy mints per name from the proxy's CA. mitmproxy runs in
reverse mode towards a placeholder never contacted: :class:`IamProxy` points each request at its
own endpoint (SNI, else Host; port 443, TLS, SNI = that name). Every header (Host included) and
body byte is forwarded unchanged: SigV4 signs them. Hosts outside ``aws_domains`` are refused (421).

Where it goes: each request's parts go to :func:`agent.aws.iam_actions.iam_calls` (pure); its calls,
with the request's credential fingerprint, to :class:`agent.aws.accounts.AccountBook`, which fills
the account of ARNs the request leaves as ``*`` once the credential's account is known (from ARNs
of its other calls, or the body of an STS ``GetCallerIdentity`` response: the one response read,
it is tiny) and holds them briefly until then; what it releases is aggregated per
:class:`~agent.aws.proxyreports.OperationKey` in an :class:`agent.pending.Pending` that the
runner's reporter sends. Unsigned requests and unknown operations are counted (unknown ones
reported by name).

Bodies, signatures, session tokens and credentials are never logged or kept: mitmproxy holds a
request only while it is in flight (bodies over 8 MiB and responses are streamed, but caller
identities), the book keeps a keyed hash of the access key id, and log lines name hosts,
actions, clients and counts only.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from mitmproxy import addonmanager, ctx, exceptions, http, tls
from mitmproxy.net.http.url import parse_authority
from mitmproxy.proxy.server_hooks import ServerConnectionHookData

from agent.aws.accounts import AccountBook, AccountMetrics, Sighting, identity_account
from agent.aws.iam_actions import RequestError, iam_calls
from agent.aws.proxyreports import OperationKey, client_ip, operation_key
from agent.metrics import Counter, Gauge
from agent.model import IamCall
from agent.pending import Pending
from agent.reporter import report_counters

log = logging.getLogger("agent.aws.proxy")

PROG = "network-mapper-aws-proxy"
PREFIX = "network_mapper_aws_proxy_"
# The reverse-mode target mitmproxy requires; IamProxy replaces it on every request, and .invalid
# (RFC 6761) never resolves, so nothing can reach it even by mistake.
PLACEHOLDER = "aws-endpoint.invalid"
UPSTREAM_PORT = 443
HOST_KEY = "network_mapper_aws_host"  # flow.metadata: the endpoint a request is forwarded to
IDENTITY_KEY = "network_mapper_aws_identity"  # flow.metadata: the credential a caller identity names
IDENTITY_ACTION = "sts:GetCallerIdentity"
MAX_IDENTITY_BODY = 64 * 1024  # a GetCallerIdentity response is ~0.5 kB; a bigger one is streamed

CallsFor = Callable[[str, str, str, str, Mapping[str, str], bytes], tuple[IamCall, ...]]


class NotForwarded(ValueError):
    """Why a request is refused rather than forwarded (answered 421 Misdirected Request)."""


def under(name: str, domains: Sequence[str]) -> bool:
    """Whether ``name`` is one of ``domains`` or a name below one."""
    return any(name == d or name.endswith("." + d) for d in domains)


def upstream_host(sni: str | None, authority: str | None, domains: Sequence[str]) -> str:
    """The endpoint a request goes to: the TLS server name, else the Host (or HTTP/2 authority)
    without its port, lower-cased. Raises :class:`NotForwarded` when there is neither, when the
    Host names another endpoint than the server name (SigV4 signed the Host: sending it elsewhere
    would misdirect it), or when the name is not under ``domains``."""
    host = ""
    if authority:
        try:
            host = parse_authority(authority, check=True)[0].lower().rstrip(".")
        except ValueError as exc:
            raise NotForwarded("the Host header is not a host name") from exc
    name = (sni or "").lower().rstrip(".")
    if name and host and host != name:
        raise NotForwarded("the Host header names another endpoint than the TLS server name")
    name = name or host
    if not name:
        raise NotForwarded("the request names no endpoint (no TLS server name, no Host)")
    if not under(name, domains):
        raise NotForwarded("not an AWS endpoint served by this proxy")
    return name


class AwsProxyMetrics(AccountMetrics):
    """Every metric of the proxy (served at ``/metrics``), the account book's included."""

    def __init__(self) -> None:
        def counter(name: str, help: str) -> Counter:
            return Counter(f"{PREFIX}{name}_total", help)

        self.requests = counter("requests", "Requests received, for any host.")
        self.calls_mapped = counter("calls_mapped", "IAM calls with a known action.")
        self.calls_unknown = counter("unknown_operations", "IAM calls not in the datasets (sent by name).")
        self.unsigned = counter("requests_unsigned", "Requests with no SigV4 signature (forwarded).")
        self.rejected = counter("requests_rejected", "Requests refused: not AWS, plain HTTP, CONNECT.")
        self.upstream_errors = counter("upstream_errors", "Failed connections to AWS: DNS, TCP, TLS.")
        self.requests_failed = counter("requests_failed", "Requests that ended without a response.")
        self.operations_pending = Gauge(f"{PREFIX}operations_pending", "Operations not yet reported.")
        self.operations_dropped = counter("operations_dropped", "New operations refused at the bound.")
        self.reports_sent, self.report_failures = report_counters(PREFIX)
        super().__init__(PREFIX)


class IamProxy:
    """The mitmproxy addon: points each request at its AWS endpoint, maps it to IAM calls, counts.
    ``book`` defaults to an :class:`~agent.aws.accounts.AccountBook` with its default wait;
    ``clock`` (monotonic) times the book's holds: both are seams for tests."""

    def __init__(
        self,
        collector: Pending[OperationKey, float],
        metrics: AwsProxyMetrics,
        calls_for: CallsFor = iam_calls,
        *,
        book: AccountBook | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.collector = collector
        self.metrics = metrics
        self.calls_for = calls_for
        self.book = book if book is not None else AccountBook(metrics)
        self.clock = clock
        self.domains: tuple[str, ...] = ()
        self.listen_addrs: tuple[tuple[str, int], ...] = ()
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ lifecycle

    def load(self, loader: addonmanager.Loader) -> None:
        # No default: a value is then always an update, so configure() always checks it.
        loader.add_option("aws_domains", Sequence[str], [], "DNS suffixes of the AWS endpoints served")

    def configure(self, updated: set[str]) -> None:
        if "aws_domains" in updated:
            domains = tuple(d.strip().lower().strip(".") for d in ctx.options.aws_domains)
            if not domains or not all(domains):
                problem = f"aws_domains needs non-empty names, not {domains!r}"
                raise exceptions.OptionsError(problem)  # type: ignore[no-untyped-call]
            self.domains = domains

    def running(self) -> None:
        master: Any = ctx.master  # mitmproxy's master and addons are untyped
        self.listen_addrs = tuple(
            (str(a[0]), int(a[1])) for a in master.addons.get("proxyserver").listen_addrs()
        )
        if not self.listen_addrs or not self.domains:  # mitmproxy logged why (an address in use ...)
            log.error("aws proxy is not listening or has no aws_domains, stopping")
            self.listen_addrs = ()
            master.shutdown()
            return
        self._loop = asyncio.get_running_loop()
        log.info("aws proxy listening addresses=%s domains=%s", self.listen_addrs, ",".join(self.domains))

    def done(self) -> None:
        self._loop = None

    def serving(self, timeout: float = 1.0) -> bool:
        """Whether the proxy listens and its event loop runs a callback within ``timeout`` (any
        thread: the health endpoint's)."""
        loop, answered = self._loop, threading.Event()
        if loop is None:
            return False
        try:
            loop.call_soon_threadsafe(answered.set)
        except RuntimeError:  # the loop closed meanwhile
            return False
        return answered.wait(timeout)

    # ------------------------------------------------------------------ connections

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        sni = data.client_hello.sni
        if sni and under(sni.lower(), self.domains):
            # The leaf certificate names the server address besides the SNI: make it the SNI's.
            data.context.server.address = (sni.lower(), UPSTREAM_PORT)

    def server_connect(self, data: ServerConnectionHookData) -> None:
        address = data.server.address
        if address is None or not under(str(address[0]), self.domains):  # only ever AWS endpoints
            data.server.error = "not an AWS endpoint"

    def server_connect_error(self, data: ServerConnectionHookData) -> None:
        self.metrics.upstream_errors.inc()
        host = data.server.address[0] if data.server.address else "-"
        log.warning("upstream connection failed host=%s error=%s", host, data.server.error)

    def tls_failed_server(self, data: tls.TlsData) -> None:
        self.metrics.upstream_errors.inc()
        log.warning("upstream TLS failed host=%s error=%s", data.conn.sni, data.conn.error)

    # ------------------------------------------------------------------ requests

    def http_connect(self, flow: http.HTTPFlow) -> None:
        self.metrics.requests.inc()
        self._refuse(flow, "CONNECT is not served", str(flow.request.host))
        flow.kill()  # type: ignore[no-untyped-call]  # a tunnel would bypass the host check

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self.metrics.requests.inc()
        request = flow.request
        if not flow.client_conn.tls:
            self._refuse(flow, "plain HTTP is not served: use HTTPS", request.host_header or "")
            return
        try:
            host = upstream_host(flow.client_conn.sni, request.host_header, self.domains)
        except NotForwarded as exc:
            self._refuse(flow, str(exc), request.host_header or flow.client_conn.sni or "")
            return
        # request.data, not the properties: those would rewrite the Host header, which is signed.
        request.data.host, request.data.port, request.data.scheme = host, UPSTREAM_PORT, b"https"
        flow.metadata[HOST_KEY] = host

    def request(self, flow: http.HTTPFlow) -> None:
        host = flow.metadata.get(HOST_KEY)
        if host is None or flow.response is not None:  # refused
            return
        request = flow.request
        path, _, query = request.path.partition("?")
        headers = {name.lower(): value for name, value in request.headers.items()}  # type: ignore[no-untyped-call]
        try:
            calls = self.calls_for(request.method, host, path, query, headers, request.raw_content or b"")
        except RequestError:  # its message may quote the request: not logged
            self.metrics.unsigned.inc()
            log.info("unsigned request host=%s method=%.16s", host, request.method)
            return
        src = client_ip(flow.client_conn.peername[0])
        now = time.time()
        for call in calls:
            if call.known:
                self.metrics.calls_mapped.inc()
            else:
                self.metrics.calls_unknown.inc()
                log.info("unknown operation action=%s host=%s client=%s", call.action, host, src)
        credential = self.book.credential(headers, query)
        if credential is not None and any(call.action == IDENTITY_ACTION for call in calls):
            flow.metadata[IDENTITY_KEY] = credential
        sightings = [Sighting(src, call, now) for call in calls]
        self._put(self.book.admit(credential, sightings, self.clock()))

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if HOST_KEY in flow.metadata and response is not None:
            # No response body is needed but a caller identity's account: stream all others.
            length = response.headers.get("content-length", "")
            response.stream = not (
                IDENTITY_KEY in flow.metadata
                and response.status_code == 200
                and length.isdigit()
                and int(length) <= MAX_IDENTITY_BODY
            )

    def response(self, flow: http.HTTPFlow) -> None:
        credential, response = flow.metadata.get(IDENTITY_KEY), flow.response
        if credential is None or response is None or response.stream or response.status_code != 200:
            return
        account = identity_account(response.get_content(strict=False) or b"")  # the account alone
        if account is None:
            log.info("caller identity without an account host=%s", flow.metadata.get(HOST_KEY, "-"))
            return
        new = self.book.account_of(credential) != account
        released = self.book.learn(credential, account)
        if new:  # once per credential, not per call
            log.info("account learned from a caller identity account=%s released=%d", account, len(released))
        self._put(released)

    def error(self, flow: http.HTTPFlow) -> None:
        self.metrics.requests_failed.inc()  # the cause is in flow.error, which may quote the request
        log.debug("request failed host=%s", flow.metadata.get(HOST_KEY, "-"))

    # ------------------------------------------------------------------ held calls (the runner's timer)

    def release_expired(self) -> None:
        """Report the calls that waited for their account long enough, with ``*``."""
        self._put(self.book.expire(self.clock()))

    def release_held(self) -> None:
        """Report every held call (at shutdown, before the last flush)."""
        self._put(self.book.release_all())

    # ------------------------------------------------------------------ helpers

    def _put(self, sightings: Iterable[Sighting]) -> None:
        for sighting in sightings:
            key = operation_key(sighting.client_ip, sighting.call)
            self.collector.put(key, sighting.seen_at, sighting.seen_at)

    def _refuse(self, flow: http.HTTPFlow, reason: str, host: str) -> None:
        self.metrics.rejected.inc()
        src = flow.client_conn.peername[0] if flow.client_conn.peername else "-"
        log.warning("request refused reason=%r host=%.253s client=%s", reason, host, src)
        flow.response = http.Response.make(
            421, f"{PROG}: {reason}\n", {"Content-Type": "text/plain; charset=utf-8"}
        )
