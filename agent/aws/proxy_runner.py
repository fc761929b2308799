"""``network-mapper-aws-proxy``: the IAM proxy process. :class:`AwsProxy` runs the addon
(:class:`agent.aws.proxy_addon.IamProxy`) under mitmproxy's own runner
(:class:`~mitmproxy.master.Master`, its default addons) in the calling thread, and the reporter and
the health endpoint in threads of their own.

Where the data comes from: settings (:class:`agent.aws.settings.AwsProxySettings`, from flags and
the environment ``main`` passes); the proxy's CA key and certificate in ``confdir`` (a read-only
Secret: :func:`runtime_confdir` gives mitmproxy a private directory linking to them). mitmproxy
listens in reverse mode (:func:`mitm_options`), and asyncio resolves each endpoint through
:class:`ResolvingEventLoop` with the system resolver (this pod's ``resolv.conf``: the cluster DNS,
never the forwarder, so it cannot loop back here); upstream certificates are verified against
``upstream_ca_bundle`` (or the system's CAs).

Where it goes: the addon's collector is drained by :class:`agent.reporter.Reporter` into
``reportAWSOperation`` mutations (bounded, retried); a timer on the proxy's loop releases the calls
the account book held too long, and at shutdown every held call is released before the last flush.
``/healthz`` answers 200 only while the proxy listens and its event loop runs (the forwarder sends
AWS names here only then); ``/metrics`` has the counters (:class:`agent.health.HealthServer`).

Leaf certificates: mitmproxy 11.0's :func:`mitmproxy.certs.dummy_cert` writes each leaf's Authority
Key Identifier as the SHA-1 of the CA's public key, not the CA's Subject Key Identifier (RFC 5280
4.2.1.1). A CA made by Helm's ``genCA`` (the chart's) has a truncated SHA-256 one (Go >= 1.24), and
OpenSSL then finds no issuer for any leaf. :func:`issue_leaves_with_issuer_key_id` makes mitmproxy
copy the CA's identifier instead: applied once at start-up because ``dummy_cert`` is the one seam
(``CertStore.get_cert`` calls it by its module name, and mitmproxy's TLS addon builds its
``CertStore`` itself), and a re-signed copy keeps every other choice of mitmproxy's.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import socket
import ssl
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from mitmproxy import certs, options
from mitmproxy.addons import default_addons
from mitmproxy.master import Master

from agent.aws.accounts import AccountBook
from agent.aws.iam_actions import preload
from agent.aws.proxy_addon import PLACEHOLDER, PROG, UPSTREAM_PORT, AwsProxyMetrics, IamProxy
from agent.aws.proxyreports import OperationKey, combine, mutations_for
from agent.aws.settings import AwsProxySettings
from agent.health import HealthServer
from agent.mapperclient import HttpMapperClient, MapperClient
from agent.pending import Pending
from agent.reporter import Reporter
from agent.settings import SettingsError, load, parse_address
from agent.statusreport import metric_counters, status_reporter

log = logging.getLogger("agent.aws.proxy")

CA_FILE = "mitmproxy-ca.pem"  # mitmproxy's name for the CA's key and certificate in confdir
DHPARAM_FILE = "mitmproxy-dhparam.pem"
# Bodies name the operation (query protocols) and resources (JSON protocols): they are mapped up
# to this size, which covers those APIs' requests (SQS 1 MiB, Kinesis 5 MiB ...); bigger ones are
# uploads whose route is in the path (S3, Lambda) and pass through unbuffered.
STREAM_BODIES_OVER = "8m"
EXPIRY_CHECK = 1.0  # seconds between releases of the calls held too long for their account

Resolver = Callable[..., list[Any]]  # socket.getaddrinfo's shape: tests map names to stand-ins
MITMPROXY_LEAF = getattr(certs.dummy_cert, "__wrapped__", certs.dummy_cert)  # mitmproxy's own


def with_issuer_key_id(
    leaf: x509.Certificate, ca: x509.Certificate, ca_key: rsa.RSAPrivateKey
) -> x509.Certificate:
    """``leaf`` (issued by ``ca``), re-signed with the CA's Subject Key Identifier as its Authority
    Key Identifier when they differ; unchanged when they agree or the CA has no identifier."""
    try:
        ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return leaf
    wanted = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    builder = (
        x509.CertificateBuilder()
        .issuer_name(leaf.issuer)
        .subject_name(leaf.subject)
        .public_key(leaf.public_key())
        .serial_number(leaf.serial_number)
        .not_valid_before(leaf.not_valid_before_utc)
        .not_valid_after(leaf.not_valid_after_utc)
    )
    changed = True
    for extension in leaf.extensions:
        if isinstance(extension.value, x509.AuthorityKeyIdentifier):
            changed = extension.value != wanted
            builder = builder.add_extension(wanted, critical=False)
        else:
            builder = builder.add_extension(extension.value, critical=extension.critical)
    return builder.sign(ca_key, hashes.SHA256()) if changed else leaf  # SHA-256: as mitmproxy signs


@functools.wraps(MITMPROXY_LEAF, assigned=())  # only __wrapped__: found again if this is reloaded
def leaf_with_issuer_key_id(
    privkey: rsa.RSAPrivateKey,
    cacert: x509.Certificate,
    commonname: str | None,
    sans: Iterable[x509.GeneralName],
    organization: str | None = None,
) -> certs.Cert:
    """mitmproxy's leaf for these names, its Authority Key Identifier the CA's: see the module
    docstring."""
    leaf = MITMPROXY_LEAF(privkey, cacert, commonname, sans, organization)
    return certs.Cert(with_issuer_key_id(x509.load_pem_x509_certificate(leaf.to_pem()), cacert, privkey))


def issue_leaves_with_issuer_key_id() -> None:
    """Make mitmproxy issue every leaf with :func:`leaf_with_issuer_key_id` (idempotent)."""
    certs.dummy_cert = leaf_with_issuer_key_id


class ResolvingEventLoop(asyncio.SelectorEventLoop):
    """The proxy's event loop: asyncio resolves every name it connects to through ``resolver``
    (``socket.getaddrinfo`` in production), in the default executor as asyncio itself does."""

    def __init__(self, resolver: Resolver) -> None:
        super().__init__()
        self.resolver = resolver

    async def getaddrinfo(
        self,
        host: bytes | str | None,
        port: bytes | str | int | None,
        *,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[Any]:
        return await self.run_in_executor(None, self.resolver, host, port, family, type, proto, flags)


def mitm_options(settings: AwsProxySettings, confdir: Path) -> dict[str, Any]:
    """mitmproxy's options for the proxy: see the module docstring."""
    host, port = parse_address(settings.listen_address)
    system = ssl.get_default_verify_paths()  # mitmproxy's own default would be certifi's bundle
    trust = (
        {"ssl_verify_upstream_trusted_ca": settings.upstream_ca_bundle or system.cafile}
        if settings.upstream_ca_bundle or system.cafile
        else {"ssl_verify_upstream_trusted_confdir": system.capath}
    )
    return {
        # reverse:http, not https: TLS from clients is still terminated (it starts like TLS), and
        # no UDP/QUIC listener is opened; IamProxy sets scheme https for each request upstream.
        "mode": [f"reverse:http://{PLACEHOLDER}:{UPSTREAM_PORT}"],
        "listen_host": host,
        "listen_port": port,
        "confdir": str(confdir),
        "connection_strategy": "lazy",  # connect only once a request has named its endpoint
        "keep_host_header": True,  # the Host header is signed
        "upstream_cert": False,  # leaf certificates from the SNI alone: no early connection
        "http3": False,
        "ssl_insecure": False,
        **trust,
        "stream_large_bodies": STREAM_BODIES_OVER,
        "block_global": False,  # pods may have globally routable (IPv6) addresses
        "command_history": False,  # nothing written to confdir
        "onboarding": False,
        "keep_alt_svc_header": True,  # responses unchanged too
        "aws_domains": list(settings.domains),
    }


def check_files(settings: AwsProxySettings) -> None:
    """Raises SettingsError unless confdir holds the CA's key and certificate (a CA made up here
    would be trusted by no pod) and the upstream bundle, when set, is a file."""
    ca = settings.confdir / CA_FILE
    try:
        raw = ca.read_bytes()
        load_pem_private_key(raw, None)
        x509.load_pem_x509_certificates(raw)
    except (OSError, ValueError, TypeError) as exc:
        raise SettingsError(f"--confdir: {ca} must hold the proxy CA's key and certificate ({exc})") from exc
    if settings.upstream_ca_bundle and not Path(settings.upstream_ca_bundle).is_file():
        raise SettingsError(f"--upstream-ca-bundle: no such file: {settings.upstream_ca_bundle}")


def runtime_confdir(confdir: Path, runtime: Path) -> Path:
    """mitmproxy writes its DH parameters next to the CA when they are missing, and confdir is a
    read-only Secret: give it ``runtime`` (private, temporary) with links to the files it reads."""
    for name in (CA_FILE, DHPARAM_FILE):
        if (confdir / name).exists():
            (runtime / name).symlink_to((confdir / name).absolute())
    return runtime


class AwsProxy:
    """The proxy process: health endpoint and reporter in threads, mitmproxy in the calling thread.
    :meth:`run` blocks until SIGTERM/SIGINT (``handle_signals``) or :meth:`stop` (any thread), then
    releases the held calls and flushes the reporter. ``resolver`` and ``client`` are seams for
    tests; ``account_wait`` overrides ``settings.account_wait`` (how long a call waits for its
    credential's account, seconds)."""

    def __init__(
        self,
        settings: AwsProxySettings,
        *,
        resolver: Resolver = socket.getaddrinfo,
        client: MapperClient | None = None,
        account_wait: float | None = None,
    ) -> None:
        self.settings = settings
        self.resolver = resolver
        self.metrics = AwsProxyMetrics()
        self.collector: Pending[OperationKey, float] = Pending(
            settings.max_pending, combine, on_drop=self.metrics.operations_dropped.inc
        )
        self.metrics.operations_pending.set_function(self.collector.__len__)
        self.addon = IamProxy(
            self.collector,
            self.metrics,
            book=AccountBook(self.metrics, wait=account_wait or settings.account_wait),
        )
        # The status reporter's thread gets a client of its own, unless a test hands one in.
        status_client = client or HttpMapperClient(
            settings.mapper_url, settings.token, settings.request_timeout
        )
        client = client or HttpMapperClient(settings.mapper_url, settings.token, settings.request_timeout)
        self.reporter = Reporter(
            self.collector,
            mutations_for,
            client,
            settings.report_interval,
            metrics=self.metrics,
            name="aws-proxy",
        )
        self._status_stopping = threading.Event()
        counters = {
            "queue_full": self.metrics.operations_dropped.name,
            "unknown_operations": self.metrics.calls_unknown.name,
            "report_failures": self.metrics.report_failures.name,
        }
        self.status = status_reporter(
            settings,
            status_client,
            "aws-proxy",
            [f"listen:{settings.listen_address}"],
            metric_counters(self.metrics, counters),
            self._status_stopping,
        )
        self.health = HealthServer(settings.health_address, self.metrics, self.healthy)
        self._master: Any = None  # mitmproxy's Master, untyped
        self._stop = threading.Event()

    def healthy(self) -> bool:
        return self.reporter.is_alive() and self.addon.serving()

    def stop(self) -> None:
        self._stop.set()
        if self._master is not None:
            self._master.shutdown()  # thread-safe

    def run(self, *, handle_signals: bool = True) -> int:
        """0 after a stop, 1 when an address cannot be served."""
        try:
            self.health.start()
        except OSError as exc:
            print(f"{PROG}: cannot serve {self.settings.health_address} ({exc})", file=sys.stderr)
            return 1
        self.reporter.start()
        self.status.start()
        try:
            issue_leaves_with_issuer_key_id()
            preload()  # ~0.5 s of datasets, before the proxy listens (and /healthz says 200)
            with (
                tempfile.TemporaryDirectory(prefix="aws-proxy-") as runtime,
                asyncio.Runner(loop_factory=lambda: ResolvingEventLoop(self.resolver)) as runner,
            ):
                confdir = runtime_confdir(self.settings.confdir, Path(runtime))
                runner.run(self._serve(mitm_options(self.settings, confdir), handle_signals))
        finally:
            self.addon.release_held()  # the mitmproxy loop has ended: no hook runs meanwhile
            self._status_stopping.set()
            self.reporter.stop()  # flushes what is pending
            self.health.stop()
            log.info("stopped prog=%s %s", PROG, self.metrics.snapshot())
        return 0 if self.addon.listen_addrs else 1

    @staticmethod
    def _signalled(master: Any, signum: int) -> None:
        log.info("stopping on %s", signal.Signals(signum).name)
        master.shutdown()

    async def _serve(self, opts: dict[str, Any], handle_signals: bool) -> None:
        mitm: Any = options.Options()  # mitmproxy's option manager and addons are untyped
        # mitmproxy's own options first (confdir before any addon reads it), the addons' once all
        # are loaded: an option set while its addon is being added does not reach its configure().
        addon_options = mitm.update_known(**opts)
        master: Any = Master(mitm)
        master.addons.add(*default_addons(), self.addon)  # type: ignore[no-untyped-call]
        mitm.update(**addon_options)
        self._master = master
        if handle_signals:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self._signalled, master, signum)
        if self._stop.is_set():
            return
        expiry = asyncio.create_task(self._release_expired())
        try:
            await master.run()
        finally:
            expiry.cancel()

    async def _release_expired(self) -> None:
        while True:  # on the proxy's loop, as the addon's hooks: the book sees one thread at a time
            await asyncio.sleep(EXPIRY_CHECK)
            self.addon.release_expired()


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stdout
    )
    logging.getLogger("mitmproxy").setLevel(logging.WARNING)  # no line per connection
    try:
        settings = load(AwsProxySettings, argv, os.environ if environ is None else environ, prog=PROG)
        check_files(settings)
    except SettingsError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    log.info("aws proxy starting listen=%s mapper_url=%s", settings.listen_address, settings.mapper_url)
    return AwsProxy(settings).run()


if __name__ == "__main__":
    sys.exit(main())
