"""The webhook's serving certificate, read from its Secret through the Kubernetes API and renewed
before it expires; the TLS context new connections are served with.

How renewal works:

1. The chart makes the first certificate (``genCA`` + ``genSignedCert`` in the
   ``<release>-aws-webhook-tls`` Secret, type kubernetes.io/tls: ``tls.crt``, ``tls.key``,
   ``ca.crt``; kept across upgrades through ``lookup``) and puts ``ca.crt`` in the
   MutatingWebhookConfiguration's ``caBundle``, so the webhook is trusted from the install on.
2. The chart sets ``AWS_WEBHOOK_TLS_SECRET`` (``namespace/name`` of that Secret) and
   ``AWS_WEBHOOK_CONFIGURATION`` (the configuration's name). At start and then every
   ``AWS_WEBHOOK_CERT_CHECK_INTERVAL`` seconds (default an hour) :class:`CertRenewer` reads the
   Secret and serves what it holds (so a certificate renewed by another replica, or replaced by
   hand, is picked up) and reads the configuration (its webhooks' Services give the names the
   certificate must carry: ``<svc>.<ns>.svc`` and ``<svc>.<ns>.svc.<cluster domain>``).
3. When the Secret is unparsable (a key missing, not PEM, key and certificate not a pair, or no CA of
   ``ca.crt`` signed it), or the certificate expires within ``AWS_WEBHOOK_RENEW_BEFORE`` seconds
   (default 30 days), or lacks one of those names, it makes a new CA and certificate
   (:func:`agent.aws.webhookcerts.issue`), then, in this order: patches ``caBundle`` of every webhook
   of the configuration to the new CA plus the old certificate's CA (both verify, so replicas still
   serving the old one keep working); updates the Secret (a ``replace`` carrying the
   resourceVersion it read: a concurrent change fails it with 409 rather than being overwritten);
   and serves the new certificate — new connections get it, open ones keep theirs, no restart.
   When nothing needs renewing it still sets ``caBundle`` to ``ca.crt`` where they differ (a patch
   that failed after an update is repaired at the next check); otherwise it writes nothing.
4. A failed check (API error, 409, no Service in the configuration) is logged in one line, counted
   (``network_mapper_aws_webhook_cert_check_errors_total``) and retried at the next interval; the
   server keeps serving the certificate it has. Only at start, with nothing servable, is it fatal.

RBAC the webhook's ServiceAccount needs for this (besides its ConfigMap and Service access):
``secrets`` ``get`` + ``update`` with ``resourceNames: [<release>-aws-webhook-tls]`` (a Role in the
release namespace) and ``admissionregistration.k8s.io`` ``mutatingwebhookconfigurations`` ``get`` +
``patch`` with ``resourceNames: [<release>-aws-visibility]`` (a ClusterRole). No ``create``: the
chart makes the Secret; a Secret that is gone is an error until the chart makes it again.
"""

from __future__ import annotations

import datetime
import logging
import os
import ssl
import threading
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from agent.aws.settings import AwsWebhookSettings
from agent.aws.webhookcerts import (
    CertificateError,
    ServingMaterial,
    ca_bundle_patch,
    issue,
    parse_secret_data,
    renewal_reason,
    secret_data,
    service_names,
)
from agent.metrics import Counter

API_TIMEOUT = 5.0  # seconds per call: a check is not on any request's path
API_ERRORS = (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError)

log = logging.getLogger("agent.aws.webhookrenewal")


class RenewalError(Exception):
    """One check could not finish: the message says which object and why."""


def describe(exc: BaseException) -> str:
    """An API failure in a few words (never the response body, which may echo the request)."""
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status} {exc.reason}"
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def tls_context(cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """A server context for the PEM certificate and key. ``ssl`` loads chains from paths only, and the
    container's root filesystem is read-only: the PEM goes through an anonymous memory file."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    fd = os.memfd_create("webhook-tls", os.MFD_CLOEXEC)
    try:
        os.write(fd, key_pem + b"\n" + cert_pem)
        context.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
    return context


class ServingTls:
    """The context each new connection is wrapped with; replaced under a lock, never mutated."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self._lock = threading.Lock()
        self._context = context

    def current(self) -> ssl.SSLContext:
        with self._lock:
            if self._context is None:
                raise ssl.SSLError("no serving certificate loaded yet")
            return self._context

    def replace(self, context: ssl.SSLContext) -> None:
        with self._lock:
            self._context = context


class RenewalMetrics:
    """The renewal's counters, served with the webhook's other metrics."""

    def __init__(self, prefix: str) -> None:
        self.checks = Counter(f"{prefix}cert_checks_total", "Reads of the serving certificate's Secret.")
        self.check_errors = Counter(
            f"{prefix}cert_check_errors_total", "Checks that failed (retried at the next interval)."
        )
        self.renewals = Counter(f"{prefix}cert_renewals_total", "Serving certificates made and stored.")
        self.loads = Counter(f"{prefix}cert_loads_total", "Serving certificates loaded (new connections).")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class CertRenewer:
    """Reads, renews and serves the certificate of ``secret`` (``namespace/name``); see the module."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        secret: str,
        configuration: str,
        cluster_domain: str,
        renew_before: datetime.timedelta,
        metrics: RenewalMetrics,
        tls: ServingTls,
        interval: float = 3600.0,
        clock: Callable[[], datetime.datetime] = _now,
    ) -> None:
        self._core = client.CoreV1Api(api)
        self._admission = client.AdmissionregistrationV1Api(api)
        self._namespace, _, self._name = secret.partition("/")
        self._configuration = configuration
        self._cluster_domain = cluster_domain
        self._renew_before = renew_before
        self._metrics = metrics
        self._tls = tls
        self._clock = clock
        self._served: ServingMaterial | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), name="webhook-cert", daemon=True)

    @property
    def served(self) -> ServingMaterial | None:
        return self._served

    def check(self) -> str:
        """One check (see the module); the error, logged once, or empty. Never raises an API error."""
        self._metrics.checks.inc()
        try:
            self._check()
        except RenewalError as exc:
            self._metrics.check_errors.inc()
            log.warning("serving certificate check failed, retried next interval: %s", exc)
            return str(exc)
        return ""

    def start(self) -> None:
        """Checks every ``interval`` seconds in a thread (the first check is the caller's)."""
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self, interval: float) -> None:
        while not self._stopping.wait(interval):
            self.check()

    def _check(self) -> None:
        secret = self._call(
            f"Secret {self._namespace}/{self._name}",
            self._core.read_namespaced_secret,
            self._name,
            self._namespace,
        )
        current: ServingMaterial | None = None
        try:
            current = parse_secret_data(secret.data)
            self._serve(current)
            problem = ""
        except (CertificateError, ssl.SSLError) as exc:
            problem = f"the Secret is unusable ({exc})"
        configuration = self._call(
            f"MutatingWebhookConfiguration {self._configuration}",
            self._admission.read_mutating_webhook_configuration,
            self._configuration,
        )
        webhooks = list(configuration.webhooks or [])
        services = [
            (w.client_config.service.namespace, w.client_config.service.name)
            for w in webhooks
            if w.client_config is not None and w.client_config.service is not None
        ]
        names = service_names(services, self._cluster_domain)
        if not names:
            raise RenewalError(f"no webhook of {self._configuration} names a Service")
        now = self._clock()
        bundles = [w.client_config.ca_bundle if w.client_config else None for w in webhooks]
        version = str(configuration.metadata.resource_version)
        if current is not None and not problem:
            reason = renewal_reason(current, names, now, self._renew_before)
            if not reason:
                self._patch_bundles(bundles, current.ca_bundle_pem, version)
                return
        else:
            reason = problem
        log.info("serving certificate renewing reason=%s", reason)
        renewed = issue(names, now, current)
        self._patch_bundles(bundles, renewed.ca_bundle_pem, version)
        secret.data = secret_data(renewed)
        self._call(
            f"Secret {self._namespace}/{self._name} update",
            self._core.replace_namespaced_secret,
            self._name,
            self._namespace,
            secret,
        )
        self._metrics.renewals.inc()
        self._serve(renewed)
        log.info(
            "serving certificate renewed not_after=%s names=%s",
            renewed.not_after.isoformat(),
            ",".join(names),
        )

    def _patch_bundles(self, bundles: list[str | None], bundle_pem: bytes, version: str) -> None:
        patch = ca_bundle_patch(bundles, bundle_pem, version)
        if not patch:
            return
        self._call(
            f"MutatingWebhookConfiguration {self._configuration} caBundle patch",
            self._admission.patch_mutating_webhook_configuration,
            self._configuration,
            patch,
        )
        log.info("webhook caBundle set configuration=%s webhooks=%d", self._configuration, len(patch) - 1)

    def _serve(self, material: ServingMaterial) -> None:
        if self._served is not None and self._served.cert_pem == material.cert_pem:
            return
        self._tls.replace(tls_context(material.cert_pem, material.key_pem))
        self._served = material
        self._metrics.loads.inc()
        log.info("serving certificate loaded not_after=%s", material.not_after.isoformat())

    @staticmethod
    def _call(what: str, method: Callable[..., Any], *args: Any) -> Any:
        try:
            return method(*args, _request_timeout=API_TIMEOUT)
        except API_ERRORS as exc:
            raise RenewalError(f"{what}: {describe(exc)}") from None


def serving_tls(
    settings: AwsWebhookSettings, api: client.ApiClient, metrics: RenewalMetrics
) -> tuple[ServingTls, CertRenewer | None]:
    """The serving certificate: from the Secret, checked once now and then renewed (with
    ``--tls-secret``), else from the files, never renewed. RenewalError when there is none to serve;
    OSError or ssl.SSLError for the files."""
    if not settings.tls_secret:
        cert, key = settings.tls_cert_file.read_bytes(), settings.tls_key_file.read_bytes()
        return ServingTls(tls_context(cert, key)), None
    tls = ServingTls()
    renewer = CertRenewer(
        api,
        secret=settings.tls_secret,
        configuration=settings.webhook_configuration,
        cluster_domain=settings.cluster_domain,
        renew_before=datetime.timedelta(seconds=settings.renew_before),
        metrics=metrics,
        tls=tls,
        interval=settings.cert_check_interval,
    )
    error = renewer.check()
    if renewer.served is None:
        raise RenewalError(f"no serving certificate: {error}")
    return tls, renewer
