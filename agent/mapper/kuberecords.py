"""Kubernetes API objects, read: JSON dicts → `PodInfo`, `ServiceInfo`, owner references, endpoint
refs, namespace labels, node addresses.

Data comes in as the API's JSON dicts (`agent.mapper.kube` hands them to
`agent.mapper.cluster.ClusterState`, which passes them here, one watch event at a time); it goes
out as the frozen records and tuples the state indexes. Pure functions: no I/O and no `kubernetes`
client types, so tests feed hand-written dicts. What to *name* a pod's workload is decided here
(`workload_name`, DESIGN.md §3, with the annotation key `ClusterState` is given from
`ClusterSettings.workload_name_annotation`); finding its root owner is `agent.mapper.owners`' job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agent.model import NamedPort, WorkloadIdentity

Obj = dict[str, Any]
OwnerRef = tuple[str, str, str]  # (kind, name, uid) of an object's controller
EndpointRef = tuple[str, str, str, str]  # (pod uid, namespace, pod name, ip) of one endpoint address

LABEL_SERVICE_NAME = "otterize/service-name"
# Read after the configured workload-name annotation, as Otterize's resolver still does.
DEPRECATED_ANNOTATION_SERVICE_NAME = "intents.otterize.com/service-name"
OWNER_KINDS = frozenset({"ReplicaSet", "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"})
SERVICE_NAME_LABEL = "kubernetes.io/service-name"  # an EndpointSlice's Service
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # every namespace's own name, as a label
_TERMINATED = frozenset({"Succeeded", "Failed"})
_KEYED_BY_NAME = frozenset({"Endpoints", "EndpointSlice", "Namespace", "Node"})


@dataclass(frozen=True, slots=True)
class PodInfo:
    namespace: str
    name: str
    uid: str
    ip: str
    host_ip: str
    host_network: bool
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    created_at: float
    deleted_at: float | None
    identity: WorkloadIdentity
    container_ports: tuple[int, ...] = ()
    host_ports: tuple[int, ...] = ()  # reachable on the node IP (hostNetwork ports or hostPort mappings)
    hostname: str = ""  # spec.hostname, else the pod name: what a process in the pod sees
    # What policies see of the pod (agent.mapper.clusterfacts): its containers' ports by name, its
    # node, every pod IP (status.podIPs: dual stack) and node IP (status.hostIPs), and whether it
    # has terminated (its IP is then free for another pod).
    named_ports: tuple[NamedPort, ...] = ()
    node_name: str = ""
    pod_ips: tuple[str, ...] = ()
    host_ips: tuple[str, ...] = ()
    finished: bool = False


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
class Change:
    """One object event, with the metadata every handler needs already picked out."""

    obj: Obj
    meta: Obj
    ns: str
    name: str
    uid: str
    at: float
    deleted: bool


@dataclass(frozen=True, slots=True)
class PodRead:
    """A pod object, read: its record (identity still the bare pod's), controller, IP span start,
    and when it finished if it is terminated (its IP is free for reuse from then on)."""

    pod: PodInfo
    ref: OwnerRef | None
    start: float
    finished_at: float | None


def timestamp(value: Any, default: float) -> float:
    """An API timestamp (RFC 3339) as epoch seconds; `default` when absent or malformed."""
    if not value:
        return default
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return default


def metadata(obj: Obj) -> tuple[Obj, str, str, str]:
    """(metadata, namespace, name, uid); the uid falls back to "ns/name" for objects without one."""
    meta = obj.get("metadata") or {}
    ns, name = meta.get("namespace") or "", meta.get("name") or ""
    return meta, ns, name, meta.get("uid") or f"{ns}/{name}"


def change(event_type: str, obj: Obj, at: float) -> Change:
    meta, ns, name, uid = metadata(obj)
    return Change(obj, meta, ns, name, uid, at, event_type == "DELETED")


def object_key(kind: str, obj: Obj) -> str:
    """How a (re)list matches objects of `kind` to known ones: uid, or ns/name for the kinds keyed so."""
    _, ns, name, uid = metadata(obj)
    return f"{ns}/{name}" if kind in _KEYED_BY_NAME else uid


def controller(meta: Obj) -> OwnerRef | None:
    """The controlling owner reference (else the first one), as (kind, name, uid)."""
    refs = meta.get("ownerReferences") or []
    ref = next((r for r in refs if r.get("controller")), refs[0] if refs else None)
    if not ref:
        return None
    return (ref.get("kind") or "", ref.get("name") or "", ref.get("uid") or ref.get("name") or "")


def workload_name(
    labels: Mapping[str, str], annotations: Mapping[str, str], owner_name: str, annotation: str
) -> str:
    """DESIGN.md §3, first match wins: the `otterize/service-name` label, the workload-name
    `annotation` (its key is a setting: default `intents.otterize.com/workload-name`), the deprecated
    `intents.otterize.com/service-name` annotation, the root owner's name.

    The two annotations in Otterize's order (its `ResolvePodToServiceIdentityUsingAnnotationOnly`).
    Otterize takes an annotation that is present even when its value is empty, which names the
    workload ""; here an empty value is skipped, as a workload needs a name.
    """
    return (
        labels.get(LABEL_SERVICE_NAME)
        or annotations.get(annotation)
        or annotations.get(DEPRECATED_ANNOTATION_SERVICE_NAME)
        or owner_name
    )


def _finished_at(status: Obj, default: float) -> float:
    ends = [
        timestamp(((c.get("state") or {}).get("terminated") or {}).get("finishedAt"), 0.0)
        for c in status.get("containerStatuses") or []
    ]
    return max(ends) if ends and max(ends) > 0 else default


def read_pod(c: Change, old: PodInfo | None) -> PodRead:
    """A Pod event (not a deletion) → its record; `old` is the record it replaces, if any."""
    meta, ns, name, uid, at = c.meta, c.ns, c.name, c.uid, c.at
    spec, status = c.obj.get("spec") or {}, c.obj.get("status") or {}
    created = timestamp(meta.get("creationTimestamp"), old.created_at if old else at)
    host_network = bool(spec.get("hostNetwork"))
    ports = [p for ct in spec.get("containers") or [] for p in ct.get("ports") or []]
    container_ports = tuple(int(p["containerPort"]) for p in ports if p.get("containerPort"))
    host_ports = (
        container_ports if host_network else tuple(int(p["hostPort"]) for p in ports if p.get("hostPort"))
    )
    pod_ip, host_ip = status.get("podIP") or "", status.get("hostIP") or ""
    finished = _finished_at(status, at) if status.get("phase") in _TERMINATED else None
    pod = PodInfo(
        ns, name, uid, pod_ip, host_ip, host_network,
        dict(meta.get("labels") or {}), dict(meta.get("annotations") or {}), created, None,
        WorkloadIdentity(ns, name, "Pod"), container_ports, host_ports, spec.get("hostname") or name,
        named_ports(ports), spec.get("nodeName") or "", _ips(pod_ip, status.get("podIPs")),
        _ips(host_ip, status.get("hostIPs")), finished is not None,
    )  # fmt: skip
    # Never before creation; startTime is when the kubelet took the pod, right before its IP.
    start = max(created, timestamp(status.get("startTime"), created))
    return PodRead(pod, controller(meta), start, finished)


def named_ports(ports: list[Obj]) -> tuple[NamedPort, ...]:
    """A pod's container ports (``spec.containers[].ports``) as (name, number, protocol), sorted and
    deduplicated; entries without a usable number are left out."""
    found: set[NamedPort] = set()
    for p in ports:
        number = p.get("containerPort")
        if isinstance(number, int) and not isinstance(number, bool) and 1 <= number <= 65535:
            found.add(NamedPort(str(p.get("name") or ""), number, str(p.get("protocol") or "TCP")))
    return tuple(sorted(found))


def _ips(first: str, listed: Any) -> tuple[str, ...]:
    """``podIP`` and ``podIPs`` (or ``hostIP`` and ``hostIPs``): the first, then the others, once each."""
    found = dict.fromkeys([first] if first else [])
    for entry in listed or []:
        ip = entry.get("ip") if isinstance(entry, dict) else None
        if ip:
            found[str(ip)] = None
    return tuple(found)


def namespace_labels(c: Change) -> tuple[tuple[str, str], ...]:
    """A Namespace's labels, sorted, always with ``kubernetes.io/metadata.name`` (the API server sets
    it on every namespace since Kubernetes 1.21; an older one's objects lack it)."""
    labels = {str(k): str(v) for k, v in (c.meta.get("labels") or {}).items()}
    labels[NAMESPACE_NAME_LABEL] = c.name
    return tuple(sorted(labels.items()))


def read_service(c: Change, old: ServiceInfo | None) -> ServiceInfo:
    """A Service event (not a deletion) → its record; headless when it has no ClusterIP."""
    spec = c.obj.get("spec") or {}
    ips = [ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip and ip != "None"]
    created = timestamp(c.meta.get("creationTimestamp"), old.created_at if old else c.at)
    return ServiceInfo(
        c.ns, c.name, c.uid, tuple(ips), not ips, spec.get("externalName") or "",
        dict(spec.get("selector") or {}), created, None,
    )  # fmt: skip


def endpoint_refs(obj: Obj, ns: str) -> tuple[EndpointRef, ...]:
    """Every address, ready or not, of an Endpoints object."""
    return tuple(
        _endpoint_ref(address.get("targetRef") or {}, ns, address.get("ip") or "")
        for subset in obj.get("subsets") or []
        for address in (subset.get("addresses") or []) + (subset.get("notReadyAddresses") or [])
    )


def slice_refs(c: Change) -> tuple[str, tuple[EndpointRef, ...]]:
    """An EndpointSlice → (the name of its Service, every address of every endpoint)."""
    refs = tuple(
        _endpoint_ref(endpoint.get("targetRef") or {}, c.ns, ip)
        for endpoint in c.obj.get("endpoints") or []
        for ip in endpoint.get("addresses") or [""]
    )
    return (c.meta.get("labels") or {}).get(SERVICE_NAME_LABEL) or "", refs


def _endpoint_ref(target: Obj, ns: str, ip: str) -> EndpointRef:
    return (target.get("uid") or "", target.get("namespace") or ns, target.get("name") or "", ip)


def node_addresses(obj: Obj) -> list[str]:
    """A Node's internal and external IPs."""
    return [
        address["address"]
        for address in (obj.get("status") or {}).get("addresses") or []
        if address.get("type") in ("InternalIP", "ExternalIP") and address.get("address")
    ]
