"""The cluster's Services: who held which ClusterIP and name when, their endpoints and targets.

Service, Endpoints and EndpointSlice events come in from `agent.mapper.cluster.ClusterState`'s
writer, under its lock, already read by `agent.mapper.kuberecords`. Out go, to the state's
lock-free readers, the Service that held a ClusterIP or a name at a time (names are reused like
IPs), and to its writer a Service's endpoint references (the state joins them with its pods) and
the memoised targets.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from agent.mapper.history import History
from agent.mapper.kuberecords import Change, EndpointRef, ServiceInfo, endpoint_refs, read_service, slice_refs
from agent.model import WorkloadIdentity

ServiceSpan = tuple[float, float, ServiceInfo]  # (start, end, service)


ANY_NAMESPACE = "*"
"""What a service's targets read when a pod was looked up by IP: a change of any pod drops them."""


class ServiceState:
    def __init__(self) -> None:
        self._services: dict[str, ServiceInfo] = {}  # uid → service, deleted ones too until pruned
        self._live: dict[tuple[str, str], str] = {}  # (ns, name) → uid of the live service
        self._cluster_ip_history: dict[str, History] = {}
        self._name_history: dict[tuple[str, str], History] = {}
        self._endpoints: dict[tuple[str, str], tuple[EndpointRef, ...]] = {}
        self._slices: dict[tuple[str, str], tuple[str, tuple[EndpointRef, ...]]] = {}
        # (namespace, service name) → slice name → its refs: a service's slices without a scan
        self._service_slices: dict[tuple[str, str], dict[str, tuple[EndpointRef, ...]]] = {}
        self._targets: dict[str, tuple[WorkloadIdentity, ...]] = {}  # service uid → memo
        self._last_targets: dict[str, tuple[WorkloadIdentity, ...]] = {}
        # namespace (ANY_NAMESPACE: a pod found by IP, any namespace) → uids of the services whose
        # memo read that namespace's pods: a pod's change drops those memos, not every one (with
        # thousands of Services and steady pod churn, recomputing all of them was the ceiling)
        self._readers: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._live)

    def apply_service(self, c: Change) -> None:
        ns, name, uid, at = c.ns, c.name, c.uid, c.at
        old = self._services.get(uid)
        if c.deleted:
            if old is not None and old.deleted_at is None:
                for ip in old.cluster_ips:
                    self._cluster_ip_history[ip].end(uid, at)
                self._name_history[(ns, name)].end(uid, at)
                self._services[uid] = replace(old, deleted_at=at)
                if self._live.get((ns, name)) == uid:
                    del self._live[(ns, name)]
            return
        service = read_service(c, old)
        self._services[uid] = service
        self._live[(ns, name)] = uid
        self._targets.pop(uid, None)
        if old is None or old.deleted_at is not None:
            for ip in service.cluster_ips:  # ClusterIPs are immutable: index once per service
                self._cluster_ip_history.setdefault(ip, History()).add(service.created_at, uid)
            self._name_history.setdefault((ns, name), History()).add(service.created_at, uid)

    def apply_endpoints(self, c: Change) -> None:
        key = (c.ns, c.name)
        refs = () if c.deleted else endpoint_refs(c.obj, c.ns)
        if refs:
            self._endpoints[key] = refs
        else:
            self._endpoints.pop(key, None)
        self._invalidate(*key)

    def apply_slice(self, c: Change) -> None:
        old = self._slices.pop((c.ns, c.name), None)
        if old is not None:
            listed = self._service_slices.get((c.ns, old[0]), {})
            listed.pop(c.name, None)
            if not listed:
                self._service_slices.pop((c.ns, old[0]), None)
            self._invalidate(c.ns, old[0])
        if c.deleted:
            return
        service, refs = slice_refs(c)
        self._slices[(c.ns, c.name)] = (service, refs)
        self._service_slices.setdefault((c.ns, service), {})[c.name] = refs
        self._invalidate(c.ns, service)

    def _invalidate(self, ns: str, name: str) -> None:
        uid = self._live.get((ns, name))
        if uid is not None:
            self._targets.pop(uid, None)

    def forget_targets(self, namespace: str) -> None:
        """A pod of `namespace` changed (its identity, or it is gone): drop the memoised answers
        that read that namespace's pods, or looked a pod up by IP."""
        for key in (namespace, ANY_NAMESPACE):
            for uid in self._readers.pop(key, ()):
                self._targets.pop(uid, None)

    def endpoint_refs(self, service: ServiceInfo) -> list[EndpointRef]:
        """Every address of `service`'s Endpoints and EndpointSlices (iterates: under the lock)."""
        key = (service.namespace, service.name)
        refs = list(self._endpoints.get(key, ()))
        for listed in self._service_slices.get(key, {}).values():
            refs.extend(listed)
        return refs

    def remember_targets(
        self, service: ServiceInfo, targets: tuple[WorkloadIdentity, ...], read: Iterable[str]
    ) -> tuple[WorkloadIdentity, ...]:
        """Memoise `targets` for `service` (computed from the pods of the namespaces `read`;
        ANY_NAMESPACE: a pod looked up by IP), or its last non-empty answer when they are empty."""
        for namespace in read:
            self._readers.setdefault(namespace, set()).add(service.uid)
        if targets:
            self._last_targets[service.uid] = targets
        else:
            targets = self._last_targets.get(service.uid, ())
        self._targets[service.uid] = targets
        return targets

    def prune(self, cutoff: float) -> None:
        """Forget ClusterIP/name spans and deleted Services that ended before `cutoff`."""
        for table in (self._cluster_ip_history, self._name_history):
            for key in [k for k, history in table.items() if history.prune(cutoff)]:
                del table[key]  # type: ignore[arg-type]
        for uid, service in list(self._services.items()):
            if service.deleted_at is not None and service.deleted_at < cutoff:
                del self._services[uid]
                self._last_targets.pop(uid, None)
                self._targets.pop(uid, None)

    # -- readers: single dict reads and History snapshots, safe without the lock -------------

    def span_at_ip(self, ip: str, t: float) -> ServiceSpan | None:
        """(start, end, service) whose ClusterIP `ip` was at `t`."""
        return self._span(self._cluster_ip_history.get(ip), t)

    def span_named(self, namespace: str, name: str, t: float) -> ServiceSpan | None:
        """(start, end, service) named `namespace`/`name` at `t`."""
        return self._span(self._name_history.get((namespace, name)), t)

    def _span(self, history: History | None, t: float) -> ServiceSpan | None:
        span = history.span_at(t) if history is not None else None
        service = self._services.get(span.key) if span is not None else None
        return (span.start, span.end, service) if service is not None and span is not None else None

    def has_cluster_ip(self, ip: str) -> bool:
        return ip in self._cluster_ip_history

    def memoised_targets(self, service: ServiceInfo) -> tuple[WorkloadIdentity, ...] | None:
        """The memoised targets of `service`, or None when they must be computed (under the lock)."""
        return self._targets.get(service.uid)
