"""The mapper's view of the cluster: pods, their workloads, services, endpoints, and who held which IP when.

Data comes in from `agent.mapper.kube` (list + watch) as the API's JSON dicts through
`ClusterState.apply` (one watch event) and `ClusterState.replace_all` (a (re)list); it goes out
to `agent.mapper.resolver` (`pod_at`, `service_at_ip`, `service_named`, `service_targets` ...)
and to the API (`labels_of`). Pure: no I/O and no `kubernetes` client types, so tests feed
hand-written dicts. Thread-safe for one writer and many readers: writes hold `_lock`; the hot
readers (lookups by IP or name, ~200k/s from the resolver) take no lock and rely on single dict
reads being atomic under the GIL plus copy-on-write IP histories; `generation` counts writes so
readers can cache answers. Readers that iterate mutable collections take the lock.

IP reuse is the reason for the *history*: pod IPs and ClusterIPs are recycled, so each IP maps to
non-overlapping spans [start, end) of the objects that held it; `pod_at(ip, t)` bisects on the
start times. A pod's span starts at `status.startTime` (when the kubelet took the pod, just before
its sandbox got the IP), never before `creationTimestamp`; it ends when the pod terminates or is
deleted, or when a newer pod claims the IP (an IP has one holder: the newest claim wins). Deleted
objects keep answering for earlier times for `retention` seconds, then are pruned.

Identities are computed on the writer side (DESIGN.md §3) and stored in `PodInfo.identity`. When
an owner (ReplicaSet, Job, ...) arrives or changes its own owner, every pod below it in the
ownership tree (`_children`) is re-resolved, so a pod seen before its ReplicaSet is first named
after the deepest known owner reference and renamed when the chain completes. Deleted owners are
kept until pruned, so a finished rollout's terminating pods keep their Deployment's name.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, ClassVar

from agent.model import WorkloadIdentity

Obj = dict[str, Any]
RETENTION_SECONDS = 3600.0
LABEL_SERVICE_NAME = "otterize/service-name"
ANNOTATION_WORKLOAD_NAME = "intents.otterize.com/workload-name"
OWNER_KINDS = frozenset({"ReplicaSet", "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"})
_SERVICE_NAME_LABEL = "kubernetes.io/service-name"
_TERMINATED = frozenset({"Succeeded", "Failed"})
_PRUNE_EVERY = 60.0
_MAX_OWNER_DEPTH = 10  # ownership chains are 2-3 deep; this only guards against cycles
_INF = math.inf
_TIMESTAMP_RESOLUTION = 1.0


@dataclass(frozen=True, slots=True)
class PodInfo:
    namespace: str
    name: str
    uid: str
    ip: str
    host_ip: str
    host_network: bool
    node_name: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    created_at: float
    deleted_at: float | None
    identity: WorkloadIdentity
    container_ports: tuple[int, ...] = ()
    host_ports: tuple[int, ...] = ()  # reachable on the node IP (hostNetwork ports or hostPort mappings)
    hostname: str = ""  # spec.hostname, else the pod name: what a process in the pod sees


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    namespace: str
    name: str
    uid: str
    cluster_ips: tuple[str, ...]
    headless: bool
    external_name: str
    selector: Mapping[str, str]
    created_at: float
    deleted_at: float | None


@dataclass(frozen=True, slots=True)
class _Owner:
    uid: str
    ref: tuple[str, str, str] | None  # its own controller: (kind, name, uid)


class _Span:
    __slots__ = ("end", "key", "start")

    def __init__(self, start: float, end: float, key: str) -> None:
        self.start, self.end, self.key = start, end, key


class _History:
    """Non-overlapping spans of one IP's holders, sorted by start (bisect → O(log n)).

    Copy-on-write: `data` (starts, spans) is replaced whole, never edited in place, so lock-free
    readers always see a consistent pair; only a span's `end` is written in place (one float).
    """

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data: tuple[list[float], list[_Span]] = ([], [])

    def add(self, start: float, key: str) -> None:
        starts, spans = self.data
        i = bisect_right(starts, start)
        later = starts[i] if i < len(starts) else _INF
        if i > 0 and start < spans[i - 1].end <= min(start + _TIMESTAMP_RESOLUTION, later):
            # API timestamps are whole seconds (truncated): a holder that ended (as observed) within
            # that second was still the holder; the newcomer starts when it ended.
            start = spans[i - 1].end
        span = _Span(start, later, key)
        self.data = (starts[:i] + [start] + starts[i:], spans[:i] + [span] + spans[i:])
        if i > 0 and spans[i - 1].end > start:
            spans[i - 1].end = start  # one holder at a time: the newer claim ends the older one

    def span_at(self, t: float) -> _Span | None:
        starts, spans = self.data
        i = bisect_right(starts, t) - 1
        if i >= 0:
            span = spans[i]
            if t < span.end:
                return span
        return None

    def end(self, key: str, at: float) -> None:
        for span in self.data[1]:
            if span.key == key and span.end > at:
                span.end = max(at, span.start)

    def prune(self, cutoff: float) -> bool:
        """Drop spans that ended before `cutoff`; True if nothing is left."""
        spans = self.data[1]
        keep = [s for s in spans if s.end >= cutoff]
        if len(keep) != len(spans):
            self.data = ([s.start for s in keep], keep)
        return not keep


def _ts(value: Any, default: float) -> float:
    if not value:
        return default
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return default


def _meta(obj: Obj) -> tuple[Obj, str, str, str]:
    meta = obj.get("metadata") or {}
    ns, name = meta.get("namespace") or "", meta.get("name") or ""
    return meta, ns, name, meta.get("uid") or f"{ns}/{name}"


def _controller(meta: Obj) -> tuple[str, str, str] | None:
    refs = meta.get("ownerReferences") or []
    ref = next((r for r in refs if r.get("controller")), refs[0] if refs else None)
    if not ref:
        return None
    return (ref.get("kind") or "", ref.get("name") or "", ref.get("uid") or ref.get("name") or "")


def _finished_at(status: Obj, default: float) -> float:
    ends = [
        _ts(((c.get("state") or {}).get("terminated") or {}).get("finishedAt"), 0.0)
        for c in status.get("containerStatuses") or []
    ]
    return max(ends) if ends and max(ends) > 0 else default


@dataclass(frozen=True, slots=True)
class _Change:
    """One object event, with the metadata every handler needs already picked out."""

    obj: Obj
    meta: Obj
    ns: str
    name: str
    uid: str
    at: float
    deleted: bool


class ClusterState:
    """Everything the resolver needs to know about the cluster, as of any time in the last `retention` s."""

    def __init__(self, retention: float = RETENTION_SECONDS) -> None:
        self.retention = retention
        self._lock = threading.Lock()
        # Bumped after every write: readers that cache answers (the resolver) drop older entries.
        self.generation = 0
        self._now = 0.0
        self._last_prune = 0.0
        self._pods: dict[str, PodInfo] = {}  # uid → pod, deleted ones too until pruned
        self._pod_by_name: dict[tuple[str, str], str] = {}  # live pods
        self._pod_ip: dict[str, str] = {}  # uid → the IP it is indexed under
        self._ip_history: dict[str, _History] = {}
        self._node_spans: dict[str, list[_Span]] = {}  # node IP → pods reachable on it (may overlap)
        self._node_ips: set[str] = set()
        self._owners: dict[str, _Owner] = {}
        self._owners_deleted: dict[str, float] = {}  # owner uid → deleted at
        self._pod_refs: dict[str, tuple[str, str, str] | None] = {}  # pod uid → its controller
        self._children: dict[str, set[str]] = {}  # owner uid → uids of pods and owners it owns
        self._owner_kinds: dict[tuple[str, str], str] = {}  # (ns, name) of root owners → kind
        self._live_by_identity: dict[WorkloadIdentity, set[str]] = {}
        self._kind_by_name: dict[tuple[str, str], str] = {}
        self._labels_by_identity: dict[WorkloadIdentity, Mapping[str, str]] = {}
        self._interned: dict[tuple[str, str, str], WorkloadIdentity] = {}
        self._services: dict[str, ServiceInfo] = {}
        self._service_live: dict[tuple[str, str], str] = {}
        self._cluster_ip_history: dict[str, _History] = {}
        self._service_name_history: dict[tuple[str, str], _History] = {}
        self._endpoints: dict[tuple[str, str], tuple[tuple[str, str, str, str], ...]] = {}
        self._slices: dict[tuple[str, str], tuple[str, tuple[tuple[str, str, str, str], ...]]] = {}
        self._targets: dict[str, tuple[WorkloadIdentity, ...]] = {}  # service uid → memo
        self._last_targets: dict[str, tuple[WorkloadIdentity, ...]] = {}
        self._namespaces: dict[str, str] = {}
        self._known: dict[str, dict[str, Obj]] = {}  # kind → key → minimal object, for replace_all

    # -- writer ------------------------------------------------------------------------------

    def apply(self, event_type: str, kind: str, obj: Obj, at: float) -> None:
        """Apply one watch event (ADDED / MODIFIED / DELETED) of `kind` (e.g. "Pod") seen at `at`."""
        with self._lock:
            self._apply(event_type, kind, obj, at)
            self._maybe_prune(at)
            self.generation += 1

    def replace_all(self, kind: str, items: Iterable[Obj], at: float) -> None:
        """A (re)list of `kind`: upsert every item; known objects missing from it were deleted at `at`."""
        with self._lock:
            seen: set[str] = set()
            for obj in items:
                seen.add(self._key(kind, obj))
                self._apply("MODIFIED", kind, obj, at)
            for key, stub in list(self._known.get(kind, {}).items()):
                if key not in seen:
                    self._apply("DELETED", kind, stub, at)
            self._maybe_prune(at)
            self.generation += 1

    def prune(self, now: float) -> None:
        """Forget objects and IP spans that ended more than `retention` seconds before `now`."""
        with self._lock:
            self._prune(now)
            self.generation += 1

    @staticmethod
    def _key(kind: str, obj: Obj) -> str:
        _, ns, name, uid = _meta(obj)
        return f"{ns}/{name}" if kind in ("Endpoints", "EndpointSlice", "Namespace", "Node") else uid

    def _apply(self, event_type: str, kind: str, obj: Obj, at: float) -> None:
        self._now = max(self._now, at)
        meta, ns, name, uid = _meta(obj)
        c = _Change(obj, meta, ns, name, uid, at, event_type == "DELETED")
        known, key = self._known.setdefault(kind, {}), self._key(kind, obj)
        if c.deleted:
            known.pop(key, None)
        else:
            known[key] = {"metadata": {"namespace": ns, "name": name, "uid": uid}}
        if kind in OWNER_KINDS:
            self._apply_owner(kind, c)
        elif kind in self._HANDLERS:
            self._HANDLERS[kind](self, c)

    def _apply_endpoints(self, c: _Change) -> None:
        self._set_endpoints((c.ns, c.name), () if c.deleted else self._endpoint_refs(c.obj, c.ns))

    def _apply_namespace(self, c: _Change) -> None:
        if c.deleted:
            self._namespaces.pop(c.name, None)
        else:
            self._namespaces[c.name] = c.meta.get("uid") or ""

    def _apply_node(self, c: _Change) -> None:
        for address in [] if c.deleted else (c.obj.get("status") or {}).get("addresses") or []:
            if address.get("type") in ("InternalIP", "ExternalIP") and address.get("address"):
                self._node_ips.add(address["address"])

    # -- pods --------------------------------------------------------------------------------

    def _apply_pod(self, c: _Change) -> None:
        obj, meta, ns, name, uid, at = c.obj, c.meta, c.ns, c.name, c.uid, c.at
        old = self._pods.get(uid)
        if c.deleted:
            if old is not None and old.deleted_at is None:
                self._end_pod(old, at)
                self._forget_live(old)
                self._pods[uid] = replace(old, deleted_at=at)
                self._targets.clear()
            return
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        created = _ts(meta.get("creationTimestamp"), old.created_at if old else at)
        host_network = bool(spec.get("hostNetwork"))
        ports = [p for c in spec.get("containers") or [] for p in c.get("ports") or []]
        container_ports = tuple(int(p["containerPort"]) for p in ports if p.get("containerPort"))
        host_ports = (
            container_ports if host_network else tuple(int(p["hostPort"]) for p in ports if p.get("hostPort"))
        )
        ref = _controller(meta)
        self._pod_refs[uid] = ref
        if ref is not None:
            self._children.setdefault(ref[2], set()).add(uid)
        pod = PodInfo(
            ns, name, uid, status.get("podIP") or "", status.get("hostIP") or "", host_network,
            spec.get("nodeName") or "", dict(meta.get("labels") or {}), dict(meta.get("annotations") or {}),
            created, None, WorkloadIdentity(ns, name, "Pod"), container_ports, host_ports,
            spec.get("hostname") or name,
        )  # fmt: skip
        pod = replace(pod, identity=self._identity(pod, ref))
        self._pods[uid] = pod
        if old is None or old.deleted_at is not None or old.identity != pod.identity:
            if old is not None:
                self._forget_live(old)
            self._live_by_identity.setdefault(pod.identity, set()).add(uid)
            self._targets.clear()
        self._pod_by_name[(ns, name)] = uid
        self._kind_by_name[(pod.identity.namespace, pod.identity.name)] = pod.identity.kind
        self._labels_by_identity[pod.identity] = pod.labels
        # Never before creation; startTime is when the kubelet took the pod, right before its IP.
        start = max(created, _ts(status.get("startTime"), created))
        if pod.host_ip:
            self._node_ips.add(pod.host_ip)
        if pod.ip and not host_network:  # hostNetwork pods share the node IP: never index them by IP
            indexed = self._pod_ip.get(uid)
            if indexed != pod.ip:
                if indexed is not None:
                    self._ip_history[indexed].end(uid, at)
                self._ip_history.setdefault(pod.ip, _History()).add(start if indexed is None else at, uid)
                self._pod_ip[uid] = pod.ip
        if pod.host_ip and (host_network or host_ports):
            spans = self._node_spans.setdefault(pod.host_ip, [])
            if not any(s.key == uid for s in spans):
                spans.append(_Span(start, _INF, uid))
        if status.get("phase") in _TERMINATED:  # a finished pod's IP is free for reuse at once
            self._end_pod(pod, _finished_at(status, at))

    def _end_pod(self, pod: PodInfo, at: float) -> None:
        indexed = self._pod_ip.get(pod.uid)
        if indexed is not None:
            self._ip_history[indexed].end(pod.uid, at)
        for span in self._node_spans.get(pod.host_ip, ()):
            if span.key == pod.uid and span.end > at:
                span.end = max(at, span.start)

    def _forget_live(self, pod: PodInfo) -> None:
        uids = self._live_by_identity.get(pod.identity)
        if uids is not None:
            uids.discard(pod.uid)
            if not uids:
                del self._live_by_identity[pod.identity]
        if self._pod_by_name.get((pod.namespace, pod.name)) == pod.uid:
            del self._pod_by_name[(pod.namespace, pod.name)]

    def _identity(self, pod: PodInfo, ref: tuple[str, str, str] | None) -> WorkloadIdentity:
        name, kind = pod.name, "Pod"
        for _ in range(_MAX_OWNER_DEPTH):
            if ref is None:
                break
            kind, name = ref[0], ref[1]  # the deepest owner known so far, even if not (yet) watched
            owner = self._owners.get(ref[2])
            ref = owner.ref if owner is not None else None
        chosen = pod.labels.get(LABEL_SERVICE_NAME) or pod.annotations.get(ANNOTATION_WORKLOAD_NAME) or name
        key = (pod.namespace, chosen, kind)
        identity = self._interned.get(key)
        if identity is None:
            identity = self._interned[key] = WorkloadIdentity(*key)
        return identity

    # -- owners ------------------------------------------------------------------------------

    def _apply_owner(self, kind: str, c: _Change) -> None:
        if c.deleted:
            # Kept until pruned: pods of a deleted ReplicaSet (a finished rollout) are still its
            # Deployment's while they terminate, and their past traffic stays theirs.
            if c.uid in self._owners:
                self._owners_deleted[c.uid] = c.at
            return
        ref = _controller(c.meta)
        old = self._owners.get(c.uid)
        self._owners_deleted.pop(c.uid, None)
        if old is not None and old.ref == ref:
            return  # a status-only update: nothing identity-relevant changed
        self._owners[c.uid] = _Owner(c.uid, ref)
        if ref is not None:
            self._children.setdefault(ref[2], set()).add(c.uid)
        else:
            self._owner_kinds[(c.ns, c.name)] = kind
        self._reresolve_below(c.uid)

    def _reresolve_below(self, owner_uid: str) -> None:
        stack, seen = [owner_uid], {owner_uid}
        while stack:
            for child in self._children.get(stack.pop(), ()):
                if child in seen:
                    continue
                seen.add(child)
                pod = self._pods.get(child)
                if pod is None:
                    stack.append(child)
                    continue
                identity = self._identity(pod, self._pod_refs.get(pod.uid))
                if identity != pod.identity:
                    if pod.deleted_at is None:
                        self._forget_live(pod)
                        self._live_by_identity.setdefault(identity, set()).add(pod.uid)
                        self._pod_by_name[(pod.namespace, pod.name)] = pod.uid
                    self._pods[child] = replace(pod, identity=identity)
                    self._kind_by_name[(identity.namespace, identity.name)] = identity.kind
                    self._labels_by_identity[identity] = pod.labels
                    self._targets.clear()

    # -- services and endpoints --------------------------------------------------------------

    def _apply_service(self, c: _Change) -> None:
        obj, ns, name, uid, at = c.obj, c.ns, c.name, c.uid, c.at
        old = self._services.get(uid)
        if c.deleted:
            if old is not None and old.deleted_at is None:
                for ip in old.cluster_ips:
                    self._cluster_ip_history[ip].end(uid, at)
                self._service_name_history[(ns, name)].end(uid, at)
                self._services[uid] = replace(old, deleted_at=at)
                if self._service_live.get((ns, name)) == uid:
                    del self._service_live[(ns, name)]
            return
        spec = obj.get("spec") or {}
        ips = [ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip and ip != "None"]
        created = _ts((obj.get("metadata") or {}).get("creationTimestamp"), old.created_at if old else at)
        service = ServiceInfo(
            ns, name, uid, tuple(ips), not ips, spec.get("externalName") or "",
            dict(spec.get("selector") or {}), created, None,
        )  # fmt: skip
        self._services[uid] = service
        self._service_live[(ns, name)] = uid
        self._targets.pop(uid, None)
        if old is None or old.deleted_at is not None:
            for ip in service.cluster_ips:  # ClusterIPs are immutable: index once per service
                self._cluster_ip_history.setdefault(ip, _History()).add(created, uid)
            self._service_name_history.setdefault((ns, name), _History()).add(created, uid)

    @staticmethod
    def _endpoint_refs(obj: Obj, ns: str) -> tuple[tuple[str, str, str, str], ...]:
        """(pod uid, namespace, name, ip) of every address, ready or not, of an Endpoints object."""
        refs = []
        for subset in obj.get("subsets") or []:
            for address in (subset.get("addresses") or []) + (subset.get("notReadyAddresses") or []):
                target = address.get("targetRef") or {}
                refs.append(
                    (
                        target.get("uid") or "",
                        target.get("namespace") or ns,
                        target.get("name") or "",
                        address.get("ip") or "",
                    )
                )
        return tuple(refs)

    def _apply_slice(self, c: _Change) -> None:
        obj, ns, name = c.obj, c.ns, c.name
        old = self._slices.pop((ns, name), None)
        if old is not None:
            self._invalidate_service(ns, old[0])
        if c.deleted:
            return
        service = (c.meta.get("labels") or {}).get(_SERVICE_NAME_LABEL) or ""
        refs = []
        for endpoint in obj.get("endpoints") or []:
            target = endpoint.get("targetRef") or {}
            for ip in endpoint.get("addresses") or [""]:
                refs.append(
                    (target.get("uid") or "", target.get("namespace") or ns, target.get("name") or "", ip)
                )
        self._slices[(ns, name)] = (service, tuple(refs))
        self._invalidate_service(ns, service)

    def _set_endpoints(self, key: tuple[str, str], refs: tuple[tuple[str, str, str, str], ...]) -> None:
        if refs:
            self._endpoints[key] = refs
        else:
            self._endpoints.pop(key, None)
        self._invalidate_service(*key)

    def _invalidate_service(self, ns: str, name: str) -> None:
        uid = self._service_live.get((ns, name))
        if uid is not None:
            self._targets.pop(uid, None)

    def _compute_targets(self, service: ServiceInfo) -> tuple[WorkloadIdentity, ...]:
        ns, name = service.namespace, service.name
        refs = list(self._endpoints.get((ns, name), ()))
        for svc, slice_refs in self._slices.values():
            if svc == name and slice_refs and slice_refs[0][1] == ns:
                refs.extend(slice_refs)
        found: dict[WorkloadIdentity, None] = {}
        for uid, ref_ns, ref_name, ip in refs:
            pod_uid = uid if uid in self._pods else self._pod_by_name.get((ref_ns, ref_name))
            pod = self._pods.get(pod_uid) if pod_uid else self.pod_at(ip, self._now)
            if pod is not None:
                found[pod.identity] = None
        if not found and service.selector and service.deleted_at is None:
            # No endpoints (yet, or none ready): the pods the selector picks are the intended targets.
            selector = service.selector.items()
            for uid in self._pod_by_name.values():
                pod = self._pods[uid]
                if pod.namespace == ns and selector <= pod.labels.items():
                    found[pod.identity] = None
        targets = tuple(sorted(found))
        if targets:
            self._last_targets[service.uid] = targets
        return targets or self._last_targets.get(service.uid, ())

    # -- readers ---------------------------------------------------------------------------
    # The hot ones (pod/service lookups by IP or name, memo hits) take no lock: they do single
    # dict/set reads (atomic under the GIL) and read `_History` snapshots. Watch that invariant
    # when editing the writer. Anything that iterates a mutable collection takes the lock.

    def pod_span_at(self, ip: str, t: float) -> tuple[float, float, PodInfo] | None:
        """(start, end, pod) of the (non-hostNetwork) pod that held `ip` at `t`: the resolver caches
        its answer for [start, end). Never a pod created after `t`."""
        history = self._ip_history.get(ip)
        span = history.span_at(t) if history is not None else None
        pod = self._pods.get(span.key) if span is not None else None
        return (span.start, span.end, pod) if pod is not None and span is not None else None

    def pod_at(self, ip: str, t: float) -> PodInfo | None:
        """The (non-hostNetwork) pod that held `ip` at `t`, if any; never one created after `t`."""
        found = self.pod_span_at(ip, t)
        return found[2] if found is not None else None

    def pods_with_ip(self, ip: str) -> list[tuple[float, float, PodInfo]]:
        """Every retained holder of `ip` as (start, end, pod), oldest first (end is inf while held)."""
        history = self._ip_history.get(ip)
        spans = history.data[1] if history is not None else []
        found = [(s.start, s.end, self._pods.get(s.key)) for s in spans]
        return [(start, end, pod) for start, end, pod in found if pod is not None]

    def host_network_pods(self, node_ip: str, t: float) -> list[PodInfo]:
        """The hostNetwork pods running on the node with `node_ip` at `t`."""
        with self._lock:
            return [p for p in self._node_pods(node_ip, t) if p.host_network]

    def pods_on_node_port(self, node_ip: str, port: int, t: float) -> list[PodInfo]:
        """Pods reachable at `node_ip`:`port` at `t` (hostNetwork ports and hostPort mappings)."""
        with self._lock:
            return [p for p in self._node_pods(node_ip, t) if port in p.host_ports]

    def _node_pods(self, node_ip: str, t: float) -> list[PodInfo]:
        spans = self._node_spans.get(node_ip, ())
        return [self._pods[s.key] for s in spans if s.start <= t < s.end and s.key in self._pods]

    def pod_named(self, namespace: str, name: str) -> PodInfo | None:
        with self._lock:
            uid = self._pod_by_name.get((namespace, name))
            return self._pods.get(uid) if uid is not None else None

    def is_node_ip(self, ip: str) -> bool:
        return ip in self._node_ips

    def is_known_ip(self, ip: str) -> bool:
        """True if `ip` is or was (within retention) a pod IP, a ClusterIP or a node IP."""
        return ip in self._ip_history or ip in self._cluster_ip_history or ip in self._node_ips

    def service_span_at_ip(self, ip: str, t: float) -> tuple[float, float, ServiceInfo] | None:
        """(start, end, service) whose ClusterIP `ip` was at `t`."""
        return self._service_span(self._cluster_ip_history.get(ip), t)

    def service_span_named(
        self, namespace: str, name: str, t: float
    ) -> tuple[float, float, ServiceInfo] | None:
        """(start, end, service) named `namespace`/`name` at `t` (names are reused too)."""
        return self._service_span(self._service_name_history.get((namespace, name)), t)

    def _service_span(self, history: _History | None, t: float) -> tuple[float, float, ServiceInfo] | None:
        span = history.span_at(t) if history is not None else None
        service = self._services.get(span.key) if span is not None else None
        return (span.start, span.end, service) if service is not None and span is not None else None

    def service_at_ip(self, ip: str, t: float) -> ServiceInfo | None:
        found = self.service_span_at_ip(ip, t)
        return found[2] if found is not None else None

    def service_named(self, namespace: str, name: str, t: float) -> ServiceInfo | None:
        found = self.service_span_named(namespace, name, t)
        return found[2] if found is not None else None

    def service_targets(self, service: ServiceInfo) -> tuple[WorkloadIdentity, ...]:
        """The workloads behind `service`: its endpoint pods' identities (sorted, deduplicated).

        Falls back to the pods its selector picks when it has no endpoints, then to the last
        non-empty answer (a Service briefly without endpoints, or deleted, still had targets).
        Memoised per service; endpoint, pod and owner changes invalidate.
        """
        targets = self._targets.get(service.uid)
        if targets is None:
            with self._lock:
                targets = self._targets[service.uid] = self._compute_targets(service)
        return targets

    def labels_of(self, identity: WorkloadIdentity) -> dict[str, str]:
        """The labels of a current pod of `identity` (else of the last one seen), for includeLabels."""
        with self._lock:
            for uid in self._live_by_identity.get(identity, ()):
                return dict(self._pods[uid].labels)
            return dict(self._labels_by_identity.get(identity, {}))

    def workload_kind(self, namespace: str, name: str) -> str:
        """The kind of the workload `namespace`/`name` (from pods' identities or root owners), or ""."""
        return self._kind_by_name.get((namespace, name)) or self._owner_kinds.get((namespace, name), "")

    def namespace_uid(self, name: str) -> str:
        return self._namespaces.get(name, "")

    def counts(self) -> dict[str, int]:
        """Sizes, for metrics and logs."""
        with self._lock:
            return {
                "pods": len(self._pod_by_name),
                "pods_retained": len(self._pods),
                "services": len(self._service_live),
                "pod_ips": len(self._ip_history),
                "owners": len(self._owners),
            }

    _HANDLERS: ClassVar[dict[str, Callable[[ClusterState, _Change], None]]] = {
        "Pod": _apply_pod,
        "Service": _apply_service,
        "Endpoints": _apply_endpoints,
        "EndpointSlice": _apply_slice,
        "Namespace": _apply_namespace,
        "Node": _apply_node,
    }

    # -- pruning -----------------------------------------------------------------------------

    def _maybe_prune(self, at: float) -> None:
        if at - self._last_prune >= _PRUNE_EVERY:
            self._prune(at)

    def _prune(self, now: float) -> None:
        self._last_prune = now
        cutoff = now - self.retention
        for table in (self._ip_history, self._cluster_ip_history, self._service_name_history):
            for key in [k for k, history in table.items() if history.prune(cutoff)]:
                del table[key]  # type: ignore[arg-type]
        for node_ip, spans in list(self._node_spans.items()):
            self._node_spans[node_ip] = [s for s in spans if s.end >= cutoff]
        for uid in [u for u, p in self._pods.items() if p.deleted_at is not None and p.deleted_at < cutoff]:
            del self._pods[uid]
            self._pod_ip.pop(uid, None)
            ref = self._pod_refs.pop(uid, None)
            if ref is not None and ref[2] in self._children:
                self._children[ref[2]].discard(uid)
        for uid in [
            u for u, s in self._services.items() if s.deleted_at is not None and s.deleted_at < cutoff
        ]:
            del self._services[uid]
            self._last_targets.pop(uid, None)
            self._targets.pop(uid, None)
