"""``network-mapper-istio-watcher``: scrapes Istio sidecars and reports the HTTP requests they
counted since the previous scrape.

Every ``scrape_interval`` seconds the scrape loop lists the pods labelled
``security.istio.io/tlsMode`` through the Kubernetes API (:class:`PodLister`; a failed list keeps
the previous one), fetches each running one's ``http://<podIP>:<metrics_port>/stats/prometheus``
(:class:`SidecarScraper`: at most ``max_concurrent_scrapes`` at once, each within
``scrape_timeout`` seconds and ``max_scrape_bytes`` bytes, or it counts as failed and the pod keeps
its counters), picks out their ``istio_requests_total`` lines
(:func:`agent.watchers.istio.select_lines`) and hands them to
:class:`agent.watchers.istiorequests.ScrapeProcessor`: increases since the previous scrape (the
changed lines parsed, :class:`agent.watchers.istiodeltas.CounterTracker`), requests
(:func:`agent.watchers.istio.request_of`) into the pending collector. The reporter
(:class:`agent.reporter.Reporter`) sends them to the mapper as ``reportIstioConnectionResults``;
:mod:`agent.health` serves ``/healthz`` and ``/metrics``
(:class:`agent.watchers.istiorequests.IstioWatcherMetrics`). Settings:
:class:`agent.settings.IstioWatcherSettings`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException

from agent.lifecycle import serve_until_signalled
from agent.mapperclient import HttpMapperClient
from agent.reporter import Reporter
from agent.settings import IstioWatcherSettings, SettingsError, load
from agent.statusreport import metric_counters, status_reporter
from agent.watchers.istio import RequestLines, Scrape, mutations_for, select_lines
from agent.watchers.istiopods import SIDECAR_LABEL, SidecarPod, sidecar_pods
from agent.watchers.istiorequests import IstioWatcherMetrics, RequestCollector, ScrapeProcessor

log = logging.getLogger("agent.watchers.istio")
PROG = "network-mapper-istio-watcher"
STATS_PATH = "/stats/prometheus"


class ScrapeFailed(Exception):
    """A sidecar did not answer its stats in time, within the size bound, with HTTP 200."""


class SidecarScraper:
    """``GET http://<podIP>:<port>/stats/prometheus`` of one pod, as text; :class:`ScrapeFailed`
    unless it is all read within ``timeout`` seconds (connect included: a timer shuts the socket
    down at the deadline, so a sidecar trickling bytes cannot hold a scrape) and ``max_bytes``."""

    def __init__(self, port: int, timeout: float, max_bytes: int) -> None:
        self.port = port
        self.timeout = timeout
        self.max_bytes = max_bytes

    def __call__(self, pod: SidecarPod) -> str:
        connection = http.client.HTTPConnection(pod.ip, self.port, timeout=self.timeout)
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            sock = connection.sock
            if sock is not None:
                with contextlib.suppress(OSError):  # already closed: nothing to interrupt
                    sock.shutdown(socket.SHUT_RDWR)

        timer = threading.Timer(self.timeout, expire)
        timer.daemon = True
        timer.start()
        try:
            connection.request("GET", STATS_PATH, headers={"Accept": "text/plain"})
            response = connection.getresponse()
            if response.status != 200:
                raise ScrapeFailed(f"HTTP {response.status}")
            body = response.read(self.max_bytes + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise ScrapeFailed("timed out" if expired.is_set() else f"{type(exc).__name__}: {exc}") from None
        finally:
            timer.cancel()
            connection.close()
        if expired.is_set():
            raise ScrapeFailed("timed out")
        if len(body) > self.max_bytes:
            raise ScrapeFailed(f"larger than {self.max_bytes} bytes")
        return body.decode("utf-8", errors="replace")


class PodListError(Exception):
    """The Kubernetes API did not list the pods."""


class PodLister:
    """Lists the running sidecar pods (label ``security.istio.io/tlsMode``) of ``namespaces``
    (all when empty) through the ``kubernetes`` client."""

    def __init__(self, api: client.CoreV1Api, namespaces: Sequence[str], timeout: float) -> None:
        self.api = api
        self.namespaces = tuple(namespaces)
        self.timeout = timeout

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str, namespaces: Sequence[str], timeout: float) -> PodLister:
        """The kubeconfig file's cluster, or the in-cluster configuration when ``kubeconfig`` is empty."""
        configuration = client.Configuration()
        if kubeconfig:
            config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        else:
            config.load_incluster_config(client_configuration=configuration)
        return cls(client.CoreV1Api(client.ApiClient(configuration)), namespaces, timeout)

    def __call__(self) -> list[SidecarPod]:
        options = {
            "label_selector": SIDECAR_LABEL,
            "_preload_content": False,
            "_request_timeout": self.timeout,
        }
        try:
            if not self.namespaces:
                answers = [self.api.list_pod_for_all_namespaces(**options)]
            else:
                answers = [self.api.list_namespaced_pod(ns, **options) for ns in self.namespaces]
            items = [item for answer in answers for item in json.loads(answer.data)["items"] or ()]
        except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError, KeyError, TypeError) as exc:
            raise PodListError(f"{type(exc).__name__}: {str(exc)[:200]}") from None
        return sidecar_pods(items)


class IstioWatcher:
    """The scrape loop: every ``interval`` seconds, list, scrape (``concurrency`` at once), process."""

    def __init__(
        self,
        lister: Callable[[], list[SidecarPod]],
        fetch: Callable[[SidecarPod], str],
        processor: ScrapeProcessor,
        *,
        interval: float,
        concurrency: int,
        max_series: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lister = lister
        self.fetch = fetch
        self.processor = processor
        self.interval = interval
        self.max_series = max_series
        self.clock = clock
        self.metrics = processor.metrics
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="scrape")
        self._pods: list[SidecarPod] = []
        self._failing: set[str] = set()  # UIDs of pods whose previous scrape failed
        self._list_failing = False

    def _scrape(self, pod: SidecarPod) -> tuple[SidecarPod, RequestLines | str, float]:
        """One pod's ``istio_requests_total`` lines and when they were fetched, or why not."""
        try:
            text = self.fetch(pod)
        except ScrapeFailed as exc:
            return pod, str(exc), 0.0
        return pod, select_lines(text, self.max_series), self.clock()

    def cycle(self) -> None:
        """List, scrape every pod, process; one cycle."""
        listed = True
        try:
            self._pods = self.lister()
        except PodListError as exc:
            listed = False
            self.metrics.pod_list_failures.inc()
            # One WARNING when the API becomes unreachable (or forbids the list), DEBUG while it stays so.
            level = logging.DEBUG if self._list_failing else logging.WARNING
            log.log(level, "pod list failed error=%s kept_pods=%d", exc, len(self._pods))
        if listed and self._list_failing:
            log.info("pod list recovered pods=%d", len(self._pods))
        self._list_failing = not listed
        pods = self._pods
        scrapes: list[tuple[SidecarPod, RequestLines | Scrape, float]] = []
        for pod, result, seen_at in self._pool.map(self._scrape, pods):
            if isinstance(result, RequestLines):
                self.metrics.scrapes.inc()
                scrapes.append((pod, result, seen_at))
                if pod.uid in self._failing:
                    self._failing.discard(pod.uid)
                    log.info("scrape recovered pod=%s/%s", pod.namespace, pod.name)
            else:
                self.metrics.scrape_failures.inc()
                level = logging.DEBUG if pod.uid in self._failing else logging.WARNING
                self._failing.add(pod.uid)
                log.log(
                    level, "scrape failed pod=%s/%s ip=%s error=%s", pod.namespace, pod.name, pod.ip, result
                )
        self._failing &= {p.uid for p in pods}
        self.processor.process(pods, scrapes, listed=listed)
        self.metrics.cycles.inc()

    def run(self, stop: threading.Event) -> None:
        """Cycle every ``interval`` seconds (from the start of one to the next) until ``stop``."""
        while not stop.is_set():
            started = time.monotonic()
            self.cycle()
            if stop.wait(max(0.0, self.interval - (time.monotonic() - started))):
                break
        self._pool.shutdown(wait=False, cancel_futures=True)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stdout
    )
    started = time.time()  # before the first list: sidecars started later count from zero
    try:
        settings = load(IstioWatcherSettings, argv, os.environ, prog=PROG)
    except SettingsError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    try:
        lister = PodLister.from_kubeconfig(settings.kubeconfig, settings.namespaces, settings.request_timeout)
    except (ConfigException, OSError) as exc:
        print(f"{PROG}: no Kubernetes configuration ({exc})", file=sys.stderr)
        return 1
    metrics = IstioWatcherMetrics()
    collector = RequestCollector(settings.max_pending, metrics)
    mapper = HttpMapperClient(settings.mapper_url, settings.token, settings.request_timeout)
    reporter = Reporter(
        collector, mutations_for, mapper, settings.report_interval, metrics=metrics, name="istio-watcher"
    )
    processor = ScrapeProcessor(collector, metrics, started, templates=settings.path_templates)
    scraper = SidecarScraper(settings.metrics_port, settings.scrape_timeout, settings.max_scrape_bytes)
    watcher = IstioWatcher(
        lister,
        scraper,
        processor,
        interval=settings.scrape_interval,
        concurrency=settings.max_concurrent_scrapes,
        max_series=settings.max_series_per_pod,
    )
    stopping = threading.Event()
    loop = threading.Thread(target=watcher.run, args=(stopping,), name="istio-scrape", daemon=True)
    counters = {
        "queue_full": metrics.requests_dropped.name,
        "parse_errors": metrics.unparsable_scrapes.name,
        "scrape_failures": metrics.scrape_failures.name,
        "report_failures": metrics.report_failures.name,
    }
    status = status_reporter(
        settings,
        HttpMapperClient(settings.mapper_url, settings.token, settings.request_timeout),
        "istio-watcher",
        [f"namespace:{name}" for name in settings.namespaces] or ["namespace:*"],
        metric_counters(metrics, counters),
        stopping,
    )
    log.info(
        "istio watcher starting mapper_url=%s namespaces=%s scrape_interval=%.1fs port=%d templates=%s",
        settings.mapper_url,
        ",".join(settings.namespaces) or "*",
        settings.scrape_interval,
        settings.metrics_port,
        settings.path_templates,
    )
    return serve_until_signalled(
        PROG,
        settings.health_address,
        metrics,
        [loop, status],
        reporter,
        stopping,
        lambda: loop.join(settings.scrape_timeout * 2 + 5),
    )


if __name__ == "__main__":
    sys.exit(main())
