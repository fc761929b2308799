"""The admission webhook's process: HTTPS for kube-apiserver, the Kubernetes lookups a patch needs,
and ``main`` (console script ``network-mapper-aws-webhook``).

Requests come from kube-apiserver (``POST /mutate``, ``application/json``, an AdmissionReview of at
most 3 MiB) and the kubelet's probes (``GET /healthz``; ``/metrics`` for scrapes), on the one TLS
port of ``settings.listen_address``, with the certificate of :mod:`agent.aws.webhookrenewal` (read
from its Secret and renewed before it expires; or, without ``--tls-secret``, from mounted files).
Each review is answered by :func:`agent.aws.webhook.admit` and logged in one line (uid, namespace,
pod name or generateName, outcome, reason: never pod content).
Framing errors (path, method, content type, no Content-Length, oversized body) get a ``v1`` Status
with the matching 4xx, never a 500.

:class:`KubeCluster` is the :class:`~agent.aws.webhook.Cluster` over the real ``kubernetes`` client:
it makes the CA bundle ConfigMap in a patched pod's namespace (created, or updated when its bundle
differs) and reads the forwarder Service's ClusterIP, both cached ``CACHE_SECONDS`` so a burst of
pods costs no API call per pod. A failure is never cached (the next pod re-checks), and a ConfigMap
deleted by hand is made again within that time (its pods wait in ContainerCreating meanwhile).

Why the standard library's ``ThreadingHTTPServer`` + ``ssl`` rather than starlette/uvicorn: the
work per request is blocking (the ``kubernetes`` client), there are three paths, and
:mod:`agent.health` serves the same way; an event loop would need a thread pool for the client
anyway. The TLS handshake runs in the connection's thread, with a timeout, so a client that stalls
it cannot block the accept loop.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from agent.aws.settings import AwsWebhookSettings
from agent.aws.webhook import (
    BUNDLE_KEY,
    MALFORMED,
    MAX_BODY_BYTES,
    PATCHED,
    SKIPPED,
    Admission,
    BundleError,
    ClusterError,
    PatchTarget,
    admit,
    ca_bundle,
    error_status,
)
from agent.aws.webhookrenewal import (
    API_ERRORS,
    CertRenewer,
    RenewalError,
    RenewalMetrics,
    ServingTls,
    describe,
    serving_tls,
)
from agent.metrics import CONTENT_TYPE, Counter, Gauge, Metrics
from agent.settings import SettingsError, load, parse_address

PROG = "network-mapper-aws-webhook"
PREFIX = "network_mapper_aws_webhook_"
# Seconds per Kubernetes call, with one retry: a review's calls stay inside kube-apiserver's 10 s.
API_TIMEOUT = 2.0
CACHE_SECONDS = 60.0
CONNECTION_TIMEOUT = 30.0  # handshake, reads, and idle keep-alive connections
MANAGED_BY = {"app.kubernetes.io/managed-by": "network-mapper-aws-webhook"}

log = logging.getLogger("agent.aws.webhookserver")


class StartError(Exception):
    """The webhook cannot start: a file, the TLS material or the Kubernetes configuration is wrong."""


class WebhookMetrics(Metrics):
    """Every metric of the webhook, served at ``/metrics`` (the certificate's after the reviews')."""

    def __init__(self) -> None:
        self.renewal = RenewalMetrics(PREFIX)
        self.patched = Counter(f"{PREFIX}patched_total", "Pod creations answered with a patch.")
        self.skipped = Counter(f"{PREFIX}skipped_total", "Reviews allowed with no patch (not ours to patch).")
        self.unpatched = Counter(
            f"{PREFIX}unpatched_total",
            "Labelled pods left unpatched: the bundle or forwarder was unavailable.",
        )
        self.malformed = Counter(f"{PREFIX}malformed_total", "Requests answered with an error (4xx or 400).")

    def count(self, outcome: str) -> None:
        counters = {PATCHED: self.patched, SKIPPED: self.skipped, MALFORMED: self.malformed}
        counters.get(outcome, self.unpatched).inc()

    def metrics(self) -> tuple[Counter | Gauge, ...]:
        renewal = self.renewal
        return (*super().metrics(), renewal.checks, renewal.check_errors, renewal.renewals, renewal.loads)


class KubeCluster:
    """The bundle ConfigMap and the forwarder's address through the Kubernetes API (see the module)."""

    def __init__(
        self,
        core: client.CoreV1Api,
        settings: AwsWebhookSettings,
        bundle: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._core = core
        self._configmap = settings.bundle_configmap
        self._fixed_forwarder = settings.forwarder_address
        namespace, _, name = settings.forwarder_service.partition("/")
        self._service = (namespace, name)
        self._bundle = bundle
        self._clock = clock
        self._lock = threading.Lock()
        self._ensure_lock = threading.Lock()  # a burst of pods in a new namespace makes one ConfigMap
        self._ensured: dict[str, float] = {}  # namespace → when to check again
        self._forwarder: tuple[str, float] | None = None  # (ClusterIP, when to read again)

    def _fresh(self, namespace: str) -> bool:
        with self._lock:
            return self._ensured.get(namespace, 0.0) > self._clock()

    def ensure_bundle(self, namespace: str) -> None:
        if self._fresh(namespace):
            return
        with self._ensure_lock:
            if self._fresh(namespace):
                return
            try:
                self._ensure(namespace)
            except API_ERRORS as exc:
                raise ClusterError(f"ConfigMap {namespace}/{self._configmap}: {describe(exc)}") from None
            with self._lock:
                self._ensured[namespace] = self._clock() + CACHE_SECONDS

    def _ensure(self, namespace: str) -> None:
        name, timeout = self._configmap, API_TIMEOUT
        try:
            current = self._core.read_namespaced_config_map(name, namespace, _request_timeout=timeout)
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": namespace, "labels": MANAGED_BY},
                "data": {BUNDLE_KEY: self._bundle},
            }
            try:
                self._core.create_namespaced_config_map(namespace, body, _request_timeout=timeout)
            except ApiException as create_exc:
                if create_exc.status != 409:  # 409: another replica made it meanwhile
                    raise
                current = self._core.read_namespaced_config_map(name, namespace, _request_timeout=timeout)
            else:
                log.info("bundle configmap created namespace=%s name=%s", namespace, name)
                return
        data = dict(current.data or {})
        if data.get(BUNDLE_KEY) == self._bundle:
            return
        current.data = {**data, BUNDLE_KEY: self._bundle}
        self._core.replace_namespaced_config_map(name, namespace, current, _request_timeout=timeout)
        log.info("bundle configmap updated namespace=%s name=%s", namespace, name)

    def forwarder_ip(self) -> str:
        if self._fixed_forwarder:
            return self._fixed_forwarder
        with self._lock:
            cached = self._forwarder
        if cached is not None and cached[1] > self._clock():
            return cached[0]
        namespace, name = self._service
        try:
            service = self._core.read_namespaced_service(name, namespace, _request_timeout=API_TIMEOUT)
            address = str(ipaddress.ip_address(service.spec.cluster_ip if service.spec else ""))
        except API_ERRORS as exc:
            problem = f"Service {namespace}/{name}: {describe(exc)}"
            if cached is None:
                raise ClusterError(problem) from None
            # A Service rarely changes its ClusterIP: keep the last one, and read again next time.
            log.warning("forwarder service unreadable, last address kept address=%s %s", cached[0], problem)
            return cached[0]
        with self._lock:
            self._forwarder = (address, self._clock() + CACHE_SECONDS)
        return address


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        tls: ServingTls,
        answer: Callable[[bytes], Admission],
        metrics: WebhookMetrics,
    ) -> None:
        self.tls = tls
        self.answer = answer
        self.metrics = metrics
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exception()
        if isinstance(exc, OSError):  # a client gone mid-request (reset, TLS alert, timeout): one line
            log.info("connection error client=%s error=%s", client_address[0], type(exc).__name__)
        else:
            log.error("request failed client=%s", client_address[0], exc_info=exc)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Runs in the connection's thread: the TLS handshake here, not in the accept loop."""
        request.settimeout(CONNECTION_TIMEOUT)
        try:
            # The context of this moment: a renewed certificate serves every connection from now on.
            connection = self.tls.current().wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.info("tls handshake failed client=%s error=%s", client_address[0], type(exc).__name__)
            return
        try:
            _Handler(connection, client_address, self)
        finally:
            connection.close()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "network-mapper"
    protocol_version = "HTTP/1.1"  # kube-apiserver keeps connections alive
    timeout = CONNECTION_TIMEOUT

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._send(200, "text/plain; charset=utf-8", b"ok\n")
        elif path == "/metrics":
            self._send(200, CONTENT_TYPE, self.server.metrics.render().encode())
        else:
            self._error(404 if path != "/mutate" else 405, f"GET {path[:100]} is not served")

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/mutate":  # kube-apiserver adds ?timeout=10s
            self._error(404, "only /mutate takes reviews")
            return
        content_type = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        length_text = self.headers.get("Content-Length", "")
        if content_type != "application/json":
            self._error(415, "an AdmissionReview is sent as application/json")
        elif not length_text.isdigit():
            self._error(411, "Content-Length is required")
        elif int(length_text) > MAX_BODY_BYTES:
            self._error(413, f"the body is over {MAX_BODY_BYTES} bytes")
        else:
            body = self.rfile.read(int(length_text))
            if len(body) < int(length_text):  # the client went away mid-body
                self.close_connection = True
                return
            admission = self.server.answer(body)
            self.server.metrics.count(admission.outcome)
            level = logging.WARNING if admission.outcome not in (PATCHED, SKIPPED) else logging.INFO
            log.log(
                level,
                "admission uid=%s namespace=%s pod=%s outcome=%s reason=%s",
                admission.uid or "-",
                admission.namespace or "-",
                admission.pod or "-",
                admission.outcome,
                admission.reason,
            )
            self._send(admission.http_status, "application/json", json.dumps(admission.body).encode())

    def _error(self, status: int, message: str) -> None:
        """A framing error: counted, logged, answered with a Status. A body of a known, allowed size
        is read and dropped first (closing on unread bytes resets the connection, which can lose
        the answer); any other body closes the connection after the answer."""
        self.server.metrics.count(MALFORMED)
        log.warning("request refused client=%s status=%d reason=%s", self.client_address[0], status, message)
        length = self.headers.get("Content-Length", "0")
        if length.isdigit() and int(length) <= MAX_BODY_BYTES and "Transfer-Encoding" not in self.headers:
            self.rfile.read(int(length))
        else:
            self.close_connection = True  # the unread body would be taken for the next request
        self._send(status, "application/json", json.dumps(error_status(status, message)).encode())

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        # Each review has its own line above; probes every few seconds stay out of the INFO log.
        log.debug("served client=%s %s", self.client_address[0], format % args)


class WebhookServer:
    """Serves the webhook over HTTPS on ``address`` (``host:port``; port 0 picks one) in a thread; with
    ``renewer``, its certificate checks run meanwhile."""

    def __init__(
        self,
        address: str,
        tls: ServingTls,
        answer: Callable[[bytes], Admission],
        metrics: WebhookMetrics,
        *,
        renewer: CertRenewer | None = None,
    ) -> None:
        self._server = _Server(parse_address(address), tls, answer, metrics)  # OSError: address taken
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="webhook", kwargs={"poll_interval": 0.2}, daemon=True
        )
        self._renewer = renewer

    def start(self) -> None:
        self._thread.start()
        if self._renewer is not None:
            self._renewer.start()
        log.info("webhook listening port=%d", self.port)

    def stop(self) -> None:
        if self._renewer is not None:
            self._renewer.stop()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        log.info("webhook stopped")

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])


def api_client(kubeconfig: str) -> client.ApiClient:
    """The kubeconfig file's cluster, or the in-cluster configuration when ``kubeconfig`` is empty."""
    configuration = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        config.load_incluster_config(client_configuration=configuration)
    configuration.retries = 1  # urllib3's default 3 would outlast the review's timeout
    return client.ApiClient(configuration)


def create_server(settings: AwsWebhookSettings, metrics: WebhookMetrics) -> WebhookServer:
    """Everything ``main`` wires, bound but not started. SettingsError for a forwarder setting that
    is not an IP or ``namespace/name``; StartError for a file, TLS, Kubernetes or address problem."""
    if settings.forwarder_address:
        try:
            ipaddress.ip_address(settings.forwarder_address)
        except ValueError:
            raise SettingsError(
                "--forwarder-address (env AWS_WEBHOOK_FORWARDER_ADDRESS): not an IP"
            ) from None
    elif settings.forwarder_service.count("/") != 1 or "" in settings.forwarder_service.split("/"):
        raise SettingsError("--forwarder-service (env AWS_WEBHOOK_FORWARDER_SERVICE): not namespace/name")
    if settings.tls_secret and not settings.webhook_configuration:
        raise SettingsError(
            "--webhook-configuration (env AWS_WEBHOOK_CONFIGURATION): needed with --tls-secret"
        )
    try:
        bundle = ca_bundle(settings.proxy_ca_file.read_text(), settings.system_ca_file.read_text())
        api = api_client(settings.kubeconfig)
        tls, renewer = serving_tls(settings, api, metrics.renewal)
    except (OSError, ssl.SSLError, BundleError, ConfigException, RenewalError) as exc:
        raise StartError(f"{type(exc).__name__}: {exc}") from None
    cluster = KubeCluster(client.CoreV1Api(api), settings, bundle)
    target = PatchTarget.from_settings(settings)
    try:
        return WebhookServer(
            settings.listen_address,
            tls,
            lambda body: admit(body, target, cluster),
            metrics,
            renewer=renewer,
        )
    except OSError as exc:
        raise StartError(f"cannot serve {settings.listen_address} ({exc})") from None


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stdout
    )
    metrics = WebhookMetrics()
    try:
        settings = load(AwsWebhookSettings, argv, os.environ if environ is None else environ, prog=PROG)
        server = create_server(settings, metrics)
    except SettingsError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except StartError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        "webhook starting listen=%s tls=%s forwarder=%s configmap=%s mount_path=%s domain=%s",
        settings.listen_address,
        f"secret:{settings.tls_secret}" if settings.tls_secret else settings.tls_cert_file,
        settings.forwarder_address or settings.forwarder_service,
        settings.bundle_configmap,
        settings.mount_path,
        settings.cluster_domain,
    )
    server.start()
    stopping.wait()
    server.stop()
    log.info("stopped prog=%s %s", PROG, metrics.snapshot())
    return 0


if __name__ == "__main__":
    sys.exit(main())
