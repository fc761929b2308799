"""List + watch the Kubernetes API into a `ClusterState`: the mapper's only window onto the cluster.

Data comes from the API server through the real `kubernetes` client (in-cluster or kubeconfig
`ApiClient`, built by the caller and injected); it goes into `agent.mapper.cluster.ClusterState`
as plain JSON dicts (`_preload_content=False` lists, the watch's `raw_object`), so the state never
sees client model classes. One daemon thread per resource kind runs the informer loop:

    list (replace_all, remember resourceVersion) → watch from it → on stream end, watch again
    410 Gone (history compacted)  → re-list at once, then watch again
    connection / API errors       → capped exponential backoff with jitter, then resume

Each (re)list and each error is one log line. `wait_synced` tells the mapper when every kind has
been listed once (before that, resolution would drop edges of pods not yet known).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import urllib3
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from agent.mapper.cluster import ClusterState

log = logging.getLogger("agent.mapper.kube")

HTTP_GONE = 410


class KindSpec(NamedTuple):
    """How to list one resource across all namespaces: API class, list method, object kind."""

    kind: str
    api: str
    list_method: str


KINDS: dict[str, KindSpec] = {
    "pods": KindSpec("Pod", "CoreV1Api", "list_pod_for_all_namespaces"),
    "services": KindSpec("Service", "CoreV1Api", "list_service_for_all_namespaces"),
    "endpoints": KindSpec("Endpoints", "CoreV1Api", "list_endpoints_for_all_namespaces"),
    "endpointslices": KindSpec("EndpointSlice", "DiscoveryV1Api", "list_endpoint_slice_for_all_namespaces"),
    "namespaces": KindSpec("Namespace", "CoreV1Api", "list_namespace"),
    "nodes": KindSpec("Node", "CoreV1Api", "list_node"),
    "replicasets": KindSpec("ReplicaSet", "AppsV1Api", "list_replica_set_for_all_namespaces"),
    "deployments": KindSpec("Deployment", "AppsV1Api", "list_deployment_for_all_namespaces"),
    "statefulsets": KindSpec("StatefulSet", "AppsV1Api", "list_stateful_set_for_all_namespaces"),
    "daemonsets": KindSpec("DaemonSet", "AppsV1Api", "list_daemon_set_for_all_namespaces"),
    "jobs": KindSpec("Job", "BatchV1Api", "list_job_for_all_namespaces"),
    "cronjobs": KindSpec("CronJob", "BatchV1Api", "list_cron_job_for_all_namespaces"),
}
# Nodes are optional (node IPs are also learnt from pods' status.hostIP): watching them needs
# cluster-scoped RBAC on nodes that a minimal install may not grant.
DEFAULT_KINDS: tuple[str, ...] = tuple(k for k in KINDS if k != "nodes")


class _Expired(Exception):
    """The resourceVersion we resume from is gone: re-list."""


class _Pages:
    """A paged list (``limit`` + ``continue``) read lazily: `items` yields each page's objects
    as it arrives; afterwards `resource_version` is the list's and `count` how many there were."""

    def __init__(self, list_func: Callable[..., Any], page_size: int) -> None:
        self._list_func = list_func
        self._page_size = page_size
        self.resource_version = ""
        self.count = 0

    def items(self) -> Iterator[dict[str, Any]]:
        token = None
        while True:
            kwargs: dict[str, Any] = {"limit": self._page_size, "_preload_content": False}
            if token:
                kwargs["_continue"] = token
            response = self._list_func(**kwargs, _request_timeout=(10, 60))
            try:
                body = json.loads(response.data)
            finally:
                response.release_conn()
            items = body.get("items") or []
            self.count += len(items)
            metadata = body.get("metadata") or {}
            token = metadata.get("continue")
            if not token:
                self.resource_version = str(metadata.get("resourceVersion") or "")
            yield from items
            if not token:
                return


class ClusterWatcher:
    """Keeps `state` in step with the API server: a list+watch thread per kind, until `stop()`."""

    def __init__(
        self,
        api_client: Any,
        state: ClusterState,
        kinds: Iterable[str] = DEFAULT_KINDS,
        *,
        watch_timeout: int = 300,
        page_size: int = 500,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kinds = tuple(kinds)
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown:
            raise ValueError(f"unsupported kinds: {', '.join(unknown)}")
        self.state = state
        self.stats: Counter[str] = Counter()  # lists / relists / errors / events, by kind
        self._api_client = api_client
        self._watch_timeout = watch_timeout
        self._page_size = page_size
        self._backoff = (backoff_initial, backoff_max)
        self._clock = clock
        self._stop = threading.Event()
        self._synced = {kind: threading.Event() for kind in self.kinds}
        self._watches: dict[str, Any] = {}
        self._watches_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> ClusterWatcher:
        for kind in self.kinds:
            thread = threading.Thread(target=self._run, args=(kind,), name=f"kube-watch-{kind}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def wait_synced(self, timeout: float | None = None) -> bool:
        """True once every kind has been listed (False if `timeout` s pass first)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for event in self._synced.values():
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not event.wait(remaining):
                return False
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """End every watch (closing its socket, so blocked reads return) and join the threads.

        Watches are stopped repeatedly until the threads end: a thread may be opening a new
        watch just as we stop, and `Watch.stream()` resets a stop that came before it began.
        """
        self._stop.set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(t.is_alive() for t in self._threads):
            with self._watches_lock:
                watches = list(self._watches.values())
            for w in watches:
                w.stop()
            for thread in self._threads:
                thread.join(0.05)

    # -- the informer loop -------------------------------------------------------------------

    def _run(self, kind: str) -> None:
        spec = KINDS[kind]
        list_func = getattr(getattr(client, spec.api)(self._api_client), spec.list_method)
        resource_version: str | None = None
        failures = 0
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    resource_version = self._list(kind, spec, list_func)
                    self._synced[kind].set()
                resource_version = self._watch(kind, spec, list_func, resource_version)
                failures = 0
            except _Expired:
                self.stats[f"expired:{kind}"] += 1
                log.info("watch expired kind=%s resource_version=%s action=relist", kind, resource_version)
                resource_version = None
            except Exception as error:  # noqa: BLE001 - the thread must outlive any one failure
                if self._stop.is_set():
                    break  # stopping closes the socket under the read: ProtocolError etc. are expected
                failures += 1
                self.stats[f"error:{kind}"] += 1
                delay = self._delay(failures)
                log.warning(
                    "watch failed kind=%s error=%s: %s attempt=%d retry_in=%.2fs",
                    kind, type(error).__name__, str(error).splitlines()[0][:200] if str(error) else "",
                    failures, delay,
                )  # fmt: skip
                if isinstance(error, ApiException) and error.status == HTTP_GONE:
                    resource_version = None
                self._stop.wait(delay)
        log.debug("watch thread ended kind=%s", kind)

    def _delay(self, failures: int) -> float:
        initial, cap = self._backoff
        # Full-ish jitter: reconnecting threads (and mapper replicas) do not hit the API in step.
        return min(cap, initial * 2.0 ** (failures - 1)) * random.uniform(0.5, 1.0)  # noqa: S311 - not crypto

    def _list(self, kind: str, spec: KindSpec, list_func: Callable[..., Any]) -> str:
        started = time.monotonic()
        pages = _Pages(list_func, self._page_size)
        relist = self._synced[kind].is_set()
        # Page by page into the state: the raw JSON of one page is alive at a time, not of all
        # 150k pods of a large cluster (~400 MB more at the mapper's peak RSS).
        self.state.replace_all(spec.kind, pages.items(), self._clock())
        self.stats[f"{'relist' if relist else 'list'}:{kind}"] += 1
        log.info(
            "listed kind=%s items=%d resource_version=%s relist=%s seconds=%.3f",
            kind, pages.count, pages.resource_version, relist, time.monotonic() - started,
        )  # fmt: skip
        return pages.resource_version

    def _watch(self, kind: str, spec: KindSpec, list_func: Callable[..., Any], resource_version: str) -> str:
        """Apply events until the server ends the stream; returns the resourceVersion to resume from."""
        # return_type "object" keeps events as dicts: no model deserialisation on the hot path.
        w = watch.Watch(return_type="object")
        with self._watches_lock:
            self._watches[kind] = w
        try:
            stream = w.stream(
                list_func,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=self._watch_timeout,  # also stops the client's own hidden retries
                _request_timeout=(10, self._watch_timeout + 30),
            )
            for event in stream:
                if self._stop.is_set():
                    break
                resource_version = self._handle(kind, spec, event, resource_version)
        except ApiException as error:
            if error.status == HTTP_GONE:
                raise _Expired from error
            raise
        except urllib3.exceptions.HTTPError:
            if self._stop.is_set():
                return resource_version  # kubernetes 36: Watch.stop() surfaces as ProtocolError here
            raise
        finally:
            with self._watches_lock:
                self._watches.pop(kind, None)
        return resource_version

    def _handle(self, kind: str, spec: KindSpec, event: dict[str, Any], resource_version: str) -> str:
        event_type = event.get("type")
        obj = event.get("raw_object") or {}
        resource_version = str((obj.get("metadata") or {}).get("resourceVersion") or resource_version)
        if event_type in ("ADDED", "MODIFIED", "DELETED"):
            try:
                self.state.apply(event_type, spec.kind, obj, self._clock())
                self.stats[f"event:{kind}"] += 1
            except Exception as error:  # noqa: BLE001 - one malformed object must not stop the watch
                self.stats[f"bad_object:{kind}"] += 1
                log.warning("bad object kind=%s error=%s: %s", kind, type(error).__name__, error)
        return resource_version
