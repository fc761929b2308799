"""The mapper's view of the cluster: pods, their workloads, services, endpoints, and who held which IP when.

Data comes in from `agent.mapper.kube` (list + watch) through `apply` (one watch event) and
`replace_all` (a (re)list) as the API's JSON dicts, read by `agent.mapper.kuberecords`; pods and
nodes are kept here, Services and their endpoints by `agent.mapper.servicestate`, owners by
`agent.mapper.owners`. It goes out to `agent.mapper.resolver` (`pod_span_at`,
`service_span_at_ip`, `service_targets` ...) and to the API (`labels_of`; `facts`, the cluster as
policies see it, built by `agent.mapper.clusterfacts`, also kept in snapshots). Pure: no I/O.

Thread-safe for one writer and many readers: writes hold `_lock`; the hot readers (lookups by IP
or name, ~200k/s from the resolver) take no lock and rely on single dict reads being atomic under
the GIL plus copy-on-write histories (`agent.mapper.history`); `generation` counts writes so
readers can cache answers. Readers that iterate mutable collections take the lock.

A pod holds its IP from `status.startTime` (when the kubelet took it, just before its sandbox got
the IP; never before `creationTimestamp`) until it terminates or is deleted, or a newer pod claims
the IP. Deleted objects keep answering for earlier times for `retention` seconds, then are pruned.
Identities (DESIGN.md §3) are computed on the writer side into `PodInfo.identity`, and again for
every pod below an owner that arrives or changes its own owner; the workload-name annotation key
they read is given at construction (`ClusterSettings.workload_name_annotation`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace

from agent.mapper.clusterfacts import Labels, build_facts, node_names
from agent.mapper.history import INF, History, Span
from agent.mapper.kuberecords import (
    OWNER_KINDS,
    Change,
    Obj,
    OwnerRef,
    PodInfo,
    ServiceInfo,
    change,
    namespace_labels,
    node_addresses,
    object_key,
    read_pod,
    workload_name,
)
from agent.mapper.owners import OwnerTree
from agent.mapper.servicestate import ANY_NAMESPACE, ServiceSpan, ServiceState
from agent.mapper.settings import WORKLOAD_NAME_ANNOTATION
from agent.model import ClusterFacts, WorkloadIdentity

__all__ = ["RETENTION_SECONDS", "ClusterState", "PodInfo", "ServiceInfo"]

RETENTION_SECONDS = 3600.0
_PRUNE_EVERY = 60.0
_RELIST_CHUNK = 500  # objects of a (re)list applied per hold of the lock


class ClusterState:
    """Everything the resolver needs to know about the cluster, as of any time in the last `retention` s."""

    def __init__(
        self, retention: float = RETENTION_SECONDS, workload_annotation: str = WORKLOAD_NAME_ANNOTATION
    ) -> None:
        self.retention = retention
        self._workload_annotation = workload_annotation  # the pod annotation that names a workload
        self._lock = threading.Lock()
        self.generation = 0
        self._now = 0.0
        self._last_prune = 0.0
        self._pods: dict[str, PodInfo] = {}  # uid → pod, deleted ones too until pruned
        self._pod_by_name: dict[tuple[str, str], str] = {}  # live pods
        self._pod_ip: dict[str, str] = {}  # uid → the IP it is indexed under
        self._ip_history: dict[str, History] = {}
        self._node_spans: dict[str, list[Span]] = {}  # node IP → pods reachable on it (may overlap)
        self._node_ips: set[str] = set()
        self._owners = OwnerTree()
        self._live_by_identity: dict[WorkloadIdentity, set[str]] = {}
        self._kind_by_name: dict[tuple[str, str], str] = {}
        self._labels_by_identity: dict[WorkloadIdentity, Mapping[str, str]] = {}
        self._interned: dict[tuple[str, str, str], WorkloadIdentity] = {}
        self._services = ServiceState()
        self._namespaces: dict[str, str] = {}
        self._namespace_labels: dict[str, Labels] = {}
        self._nodes: dict[str, tuple[str, ...]] = {}  # watched Node objects: name → addresses
        self._facts: tuple[int, ClusterFacts] | None = None  # (generation, facts) of the last facts()
        self._node_names: tuple[int, list[str]] | None = None  # (_node_version, names) of node_names()
        self._node_version = 0  # moves when a pod comes, goes or changes node, or a Node changes
        # kind → key → (namespace, name, uid): what a relist that misses the object deletes. Tuples,
        # not stub objects: at 150k pods the dicts alone cost ~100 MB.
        self._known: dict[str, dict[str, tuple[str, str, str]]] = {}
        self._handlers: dict[str, Callable[[Change], None]] = {
            "Service": self._services.apply_service,
            "Endpoints": self._services.apply_endpoints,
            "EndpointSlice": self._services.apply_slice,
            "Namespace": self._apply_namespace,
            "Node": self._apply_node,
        }

    # -- writer ------------------------------------------------------------------------------

    def apply(self, event_type: str, kind: str, obj: Obj, at: float) -> None:
        """Apply one watch event (ADDED / MODIFIED / DELETED) of `kind` (e.g. "Pod") seen at `at`."""
        with self._lock:
            changed = self._apply(event_type, kind, obj, at)
            self._maybe_prune(at)
            # Most events of a large cluster change nothing we keep (a pod's readiness, its
            # conditions): the resolver's memos, checked against the generation, stay valid.
            if changed:
                self.generation += 1

    def replace_all(self, kind: str, items: Iterable[Obj], at: float) -> None:
        """A (re)list of `kind`: upsert every item; known objects missing from it were deleted at `at`.

        `items` may be a lazy iterable (the list's pages as they arrive, so 150k pods are never
        all in memory at once as raw JSON): it is consumed `_RELIST_CHUNK` items at a time, each
        chunk applied under the lock, so readers and other kinds' watches wait for one chunk, not
        for the whole list. The deletions are applied last, once every item was seen."""
        seen: set[str] = set()
        chunk: list[Obj] = []
        for obj in items:
            chunk.append(obj)
            if len(chunk) >= _RELIST_CHUNK:
                self._upsert(kind, chunk, at, seen)
                chunk = []
        self._upsert(kind, chunk, at, seen)
        with self._lock:
            for key, (ns, name, uid) in list(self._known.get(kind, {}).items()):
                if key not in seen:
                    stub = {"metadata": {"namespace": ns, "name": name, "uid": uid}}
                    self._apply("DELETED", kind, stub, at)
            self._maybe_prune(at)
            self.generation += 1

    def _upsert(self, kind: str, chunk: list[Obj], at: float, seen: set[str]) -> None:
        with self._lock:
            for obj in chunk:
                seen.add(object_key(kind, obj))
                self._apply("MODIFIED", kind, obj, at)
            self.generation += 1

    def prune(self, now: float) -> None:
        """Forget objects and IP spans that ended more than `retention` seconds before `now`."""
        with self._lock:
            self._prune(now)
            self.generation += 1

    def _apply(self, event_type: str, kind: str, obj: Obj, at: float) -> bool:
        """Apply one event; False when it changed nothing the state keeps (a pod's status only)."""
        self._now = max(self._now, at)
        c = change(event_type, obj, at)
        known, key = self._known.setdefault(kind, {}), object_key(kind, obj)
        if c.deleted:
            known.pop(key, None)
        else:
            known[key] = (c.ns, c.name, c.uid)
        if kind == "Pod":
            return self._apply_pod(c)
        if kind in OWNER_KINDS:
            if self._owners.apply(kind, c):
                self._reresolve_below(c.uid)
        elif kind in self._handlers:
            self._handlers[kind](c)
        return True

    def _apply_namespace(self, c: Change) -> None:
        if c.deleted:
            self._namespaces.pop(c.name, None)
            self._namespace_labels.pop(c.name, None)
        else:
            self._namespaces[c.name] = c.meta.get("uid") or ""
            self._namespace_labels[c.name] = namespace_labels(c)

    def _apply_node(self, c: Change) -> None:
        self._node_version += 1
        if c.deleted:
            # Its IPs stay in _node_ips: traffic seen from them before still came from a node.
            self._nodes.pop(c.name, None)
        else:
            addresses = node_addresses(c.obj)
            self._node_ips.update(addresses)
            self._nodes[c.name] = tuple(addresses)

    # -- pods --------------------------------------------------------------------------------

    def _apply_pod(self, c: Change) -> bool:
        """Apply a pod's event; False when the pod is as it was (only its status moved)."""
        uid, at = c.uid, c.at
        old = self._pods.get(uid)
        if c.deleted:
            if old is not None and old.deleted_at is None:
                self._end_pod(old, at)
                self._forget_live(old)
                self._pods[uid] = replace(old, deleted_at=at)
                self._services.forget_targets(old.namespace)
                self._node_version += 1
                return True
            return False
        read = read_pod(c, old)
        self._owners.set_pod(uid, read.ref)
        pod = replace(read.pod, identity=self._identity(read.pod, read.ref))
        if pod == old:  # everything below would be done again to the same effect
            return False
        if old is None or _placement(old) != _placement(pod):
            self._node_version += 1  # the nodes pods are on may have changed
        self._pods[uid] = pod
        if old is None or old.deleted_at is not None or old.identity != pod.identity:
            if old is not None:
                self._forget_live(old)
            self._live_by_identity.setdefault(pod.identity, set()).add(uid)
            self._services.forget_targets(pod.namespace)
        self._pod_by_name[(c.ns, c.name)] = uid
        self._kind_by_name[(pod.identity.namespace, pod.identity.name)] = pod.identity.kind
        self._labels_by_identity[pod.identity] = pod.labels
        if pod.host_ip:
            self._node_ips.add(pod.host_ip)
        if pod.ip and not pod.host_network:  # hostNetwork pods share the node IP: never index by IP
            self._index_ip(pod, read.start, at)
        if pod.host_ip and (pod.host_network or pod.host_ports):
            spans = self._node_spans.setdefault(pod.host_ip, [])
            if not any(s.key == uid for s in spans):
                spans.append(Span(read.start, INF, uid))
        if read.finished_at is not None:  # a finished pod's IP is free for reuse at once
            self._end_pod(pod, read.finished_at)
            self._services.forget_targets(pod.namespace)
        return True

    def _index_ip(self, pod: PodInfo, start: float, at: float) -> None:
        """Record that ``pod`` holds its IP from ``start`` (its first) or ``at`` (a new one)."""
        indexed = self._pod_ip.get(pod.uid)
        if indexed != pod.ip:
            if indexed is not None:
                self._ip_history[indexed].end(pod.uid, at)
            self._ip_history.setdefault(pod.ip, History()).add(start if indexed is None else at, pod.uid)
            self._pod_ip[pod.uid] = pod.ip
            self._services.forget_targets(pod.namespace)  # targets found by IP may change

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

    def _identity(self, pod: PodInfo, ref: OwnerRef | None) -> WorkloadIdentity:
        kind, name = self._owners.root(ref) or ("Pod", pod.name)
        key = (
            pod.namespace,
            workload_name(pod.labels, pod.annotations, name, self._workload_annotation),
            kind,
        )
        identity = self._interned.get(key)
        if identity is None:
            identity = self._interned[key] = WorkloadIdentity(*key)
        return identity

    def _reresolve_below(self, owner_uid: str) -> None:
        """An owner changed: rename the pods below it whose root owner is now another."""
        for uid in self._owners.pods_below(owner_uid, self._pods.__contains__):
            pod = self._pods[uid]
            identity = self._identity(pod, self._owners.pod_ref(uid))
            if identity != pod.identity:
                if pod.deleted_at is None:
                    self._forget_live(pod)
                    self._live_by_identity.setdefault(identity, set()).add(uid)
                    self._pod_by_name[(pod.namespace, pod.name)] = uid
                self._pods[uid] = replace(pod, identity=identity)
                self._kind_by_name[(identity.namespace, identity.name)] = identity.kind
                self._labels_by_identity[identity] = pod.labels
                self._services.forget_targets(pod.namespace)

    # -- the pods behind a service ------------------------------------------------------------

    def _compute_targets(self, service: ServiceInfo) -> tuple[WorkloadIdentity, ...]:
        found: dict[WorkloadIdentity, None] = {}
        read = {service.namespace}  # whose pods' changes make this answer stale
        for uid, ref_ns, ref_name, ip in self._services.endpoint_refs(service):
            pod_uid = uid if uid in self._pods else self._pod_by_name.get((ref_ns, ref_name))
            pod = self._pods.get(pod_uid) if pod_uid else self.pod_at(ip, self._now)
            read.add(ref_ns if pod_uid else ANY_NAMESPACE)
            if pod is not None:
                found[pod.identity] = None
                read.add(pod.namespace)
        if not found and service.selector and service.deleted_at is None:
            # No endpoints (yet, or none ready): the pods the selector picks are the intended targets.
            selector = service.selector.items()
            for uid in self._pod_by_name.values():
                pod = self._pods[uid]
                if pod.namespace == service.namespace and selector <= pod.labels.items():
                    found[pod.identity] = None
        return self._services.remember_targets(service, tuple(sorted(found)), read)

    # -- readers: lock-free unless they iterate (see the module doc); keep the writer's updates
    # single dict/set writes and History replacements, or the hot readers need the lock.

    def pod_span_at(self, ip: str, t: float) -> tuple[float, float, PodInfo] | None:
        """(start, end, pod) of the (non-hostNetwork) pod that held `ip` at `t`; never one created later."""
        history = self._ip_history.get(ip)
        span = history.span_at(t) if history is not None else None
        pod = self._pods.get(span.key) if span is not None else None
        return (span.start, span.end, pod) if pod is not None and span is not None else None

    def pod_at(self, ip: str, t: float) -> PodInfo | None:
        found = self.pod_span_at(ip, t)
        return found[2] if found is not None else None

    def pods_with_ip(self, ip: str) -> list[PodInfo]:
        """Every retained holder of `ip`, oldest first."""
        history = self._ip_history.get(ip)
        spans = history.data[1] if history is not None else []
        pods = [self._pods.get(s.key) for s in spans]
        return [pod for pod in pods if pod is not None]

    def host_network_pods(self, node_ip: str, t: float) -> list[PodInfo]:
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
        return ip in self._ip_history or self._services.has_cluster_ip(ip) or ip in self._node_ips

    def service_span_at_ip(self, ip: str, t: float) -> ServiceSpan | None:
        return self._services.span_at_ip(ip, t)

    def service_span_named(self, namespace: str, name: str, t: float) -> ServiceSpan | None:
        return self._services.span_named(namespace, name, t)

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
        targets = self._services.memoised_targets(service)
        if targets is None:
            with self._lock:
                targets = self._compute_targets(service)
        return targets

    def labels_of(self, identity: WorkloadIdentity) -> dict[str, str]:
        """The labels of a current pod of `identity` (else of the last one seen), for includeLabels."""
        with self._lock:
            for uid in self._live_by_identity.get(identity, ()):
                return dict(self._pods[uid].labels)
            return dict(self._labels_by_identity.get(identity, {}))

    def workload_kind(self, namespace: str, name: str) -> str:
        """The kind of the workload `namespace`/`name` (from pods' identities or root owners), or ""."""
        return self._kind_by_name.get((namespace, name)) or self._owners.root_kind(namespace, name)

    def facts(self) -> ClusterFacts:
        """The cluster now, as policies see it (`agent.mapper.clusterfacts`): current pods by
        workload, namespaces with their labels, nodes with their addresses. Built under the lock
        from the live pods (O(pods)), and kept until the next write."""
        with self._lock:
            cached = self._facts
            if cached is not None and cached[0] == self.generation:
                return cached[1]
            live = [self._pods[uid] for uids in self._live_by_identity.values() for uid in uids]
            facts = build_facts(live, self._namespace_labels, self._nodes)
            self._facts = (self.generation, facts)
            return facts

    def node_names(self) -> list[str]:
        """The names of :meth:`facts`'s nodes, without building the facts (coverage asks often),
        kept until a pod comes, goes or moves, or a Node changes (not every write: at 150k pods
        endpoints and readiness change all the time, and each answer reads every pod)."""
        with self._lock:
            cached = self._node_names
            if cached is None or cached[0] != self._node_version:
                live = (self._pods[uid] for uids in self._live_by_identity.values() for uid in uids)
                cached = self._node_names = (self._node_version, node_names(live, self._nodes))
            return list(cached[1])

    def namespace_uid(self, name: str) -> str:
        return self._namespaces.get(name, "")

    def counts(self) -> dict[str, int]:
        """Sizes, for metrics and logs."""
        with self._lock:
            return {
                "pods": len(self._pod_by_name),
                "pods_retained": len(self._pods),
                "services": len(self._services),
                "pod_ips": len(self._ip_history),
                "owners": len(self._owners),
            }

    # -- pruning -----------------------------------------------------------------------------

    def _maybe_prune(self, at: float) -> None:
        if at - self._last_prune >= _PRUNE_EVERY:
            self._prune(at)

    def _prune(self, now: float) -> None:
        self._last_prune = now
        cutoff = now - self.retention
        for ip in [ip for ip, history in self._ip_history.items() if history.prune(cutoff)]:
            del self._ip_history[ip]
        for node_ip, spans in list(self._node_spans.items()):
            self._node_spans[node_ip] = [s for s in spans if s.end >= cutoff]
        for uid in [u for u, p in self._pods.items() if p.deleted_at is not None and p.deleted_at < cutoff]:
            del self._pods[uid]
            self._pod_ip.pop(uid, None)
            self._owners.forget_pod(uid)
        self._services.prune(cutoff)


def _placement(pod: PodInfo) -> tuple[object, ...]:
    """What :meth:`ClusterState.node_names` reads of a pod."""
    return pod.node_name, pod.host_ip, pod.host_ips, pod.deleted_at
