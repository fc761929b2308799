"""The simulated cluster of ``bench_cluster_sim.py``: its layout, its Kubernetes objects, and its pod churn.

A :class:`Layout` names everything deterministically (nodes, namespaces, Deployments with one
ReplicaSet each, their pods, one Service per Deployment with Endpoints and an EndpointSlice, and
the call graph: which Services and which Internet names each Deployment calls). :class:`Placement`
is which pod holds which replica slot — its name, uid, IP and node — as churn changes it.

Churn (:func:`churn_plan`) reschedules pairs of Deployments a replica at a time and swaps their
IPs: replica ``r`` of Deployment ``a`` is recreated on the node, and with the IP, that replica ``r``
of ``b`` just freed, and the reverse, so every churned IP is reused at once by ANOTHER workload —
the case a resolver gets wrong if it ignores observation times. Everything here is pure data: the
API server process turns it into stored objects, the bench's churn driver into API requests, and
the observation stream (``simstream.py``) into sniffer reports.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]
DOMAIN = "cluster.local"
SERVICE_PORT, TARGET_PORT = 80, 8080


def stamp(moment: float) -> str:
    """An API timestamp (RFC 3339, whole seconds, as the API server writes them)."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Layout:
    """The cluster's shape and names; ``t0`` is when it was created (before the simulated day)."""

    nodes: int
    pods: int
    replicas: int
    namespaces: int
    calls: int
    externals: int
    t0: float

    @property
    def deployments(self) -> int:
        return self.pods // self.replicas

    def namespace(self, d: int) -> str:
        return f"ns-{d % self.namespaces:03d}"

    def deployment(self, d: int) -> str:
        return f"svc-{d:05d}"

    def node_name(self, n: int) -> str:
        return f"node-{n:05d}"

    def node_ip(self, n: int) -> str:
        return f"172.16.{n // 250}.{n % 250 + 1}"

    def pod_ip(self, n: int, slot: int) -> str:
        """The ``slot``-th pod address of node ``n`` (each node has its own /24 of 10.64.0.0/10)."""
        return f"10.{64 + n // 256}.{n % 256}.{slot + 2}"

    def cluster_ip(self, d: int) -> str:
        return f"10.100.{d // 250}.{d % 250 + 1}"

    def service_dns(self, d: int) -> str:
        return f"{self.deployment(d)}.{self.namespace(d)}.svc.{DOMAIN}"

    def callees(self, d: int) -> tuple[int, ...]:
        """The Deployments (by index) whose Service ``d`` calls: a fixed, sparse call graph."""
        picked = {(d * 7919 + k * 104729 + 1) % self.deployments for k in range(self.calls)}
        picked.discard(d)
        return tuple(sorted(picked))

    def external(self, d: int) -> tuple[str, str]:
        """(name, IP) of the one Internet name Deployment ``d`` calls."""
        e = d % self.externals
        return f"api-{e}.partner-{e % 17}.example.com", f"203.0.{e // 250}.{e % 250 + 1}"

    def edges(self) -> set[tuple[str, str]]:
        """Every (client, server) a correct map may hold: workloads as namespace/name, Internet
        servers by name or IP."""
        found = set()
        for d in range(self.deployments):
            client = f"{self.namespace(d)}/{self.deployment(d)}"
            found.update((client, f"{self.namespace(c)}/{self.deployment(c)}") for c in self.callees(d))
            found.update((client, e) for e in self.external(d))
        return found


@dataclass(slots=True)
class Placement:
    """Who holds each replica slot ``p = d * replicas + r``: pod name, uid, IP and node, and
    which slots each node runs (changed by churn)."""

    layout: Layout
    name: list[str] = field(default_factory=list)
    uid: list[str] = field(default_factory=list)
    ip: list[str] = field(default_factory=list)
    node: list[int] = field(default_factory=list)
    on_node: list[set[int]] = field(default_factory=list)

    @classmethod
    def initial(cls, layout: Layout) -> Placement:
        placement = cls(layout, on_node=[set() for _ in range(layout.nodes)])
        for p in range(layout.pods):
            d, r = divmod(p, layout.replicas)
            n, slot = p % layout.nodes, p // layout.nodes
            placement.name.append(f"{layout.deployment(d)}-5d8f7b-{r:03d}")
            placement.uid.append(f"pod-{p:06d}-0")
            placement.ip.append(layout.pod_ip(n, slot))
            placement.node.append(n)
            placement.on_node[n].add(p)
        return placement

    def move(self, p: int, name: str, uid: str, ip: str, node: int) -> None:
        self.on_node[self.node[p]].discard(p)
        self.name[p], self.uid[p], self.ip[p], self.node[p] = name, uid, ip, node
        self.on_node[node].add(p)


# ------------------------------------------------------------------ objects


def _meta(name: str, uid: str, created: float, namespace: str = "", **extra: Any) -> Obj:
    meta = {"name": name, "uid": uid, "creationTimestamp": stamp(created), **extra}
    if namespace:
        meta["namespace"] = namespace
    return meta


def node_obj(layout: Layout, n: int) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": _meta(layout.node_name(n), f"node-{n}", layout.t0),
        "spec": {"podCIDR": f"{layout.pod_ip(n, -2)}/24"},
        "status": {"addresses": [{"type": "InternalIP", "address": layout.node_ip(n)}]},
    }


def namespace_obj(layout: Layout, i: int) -> Obj:
    name = layout.namespace(i)
    labels = {"kubernetes.io/metadata.name": name}
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": _meta(name, f"ns-{i}", layout.t0, labels=labels),
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def _app(layout: Layout, d: int) -> dict[str, str]:
    return {"app": layout.deployment(d)}


def deployment_obj(layout: Layout, d: int) -> Obj:
    template = {"metadata": {"labels": _app(layout, d)}, "spec": {"containers": [{"name": "app"}]}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(layout.deployment(d), f"dep-{d}", layout.t0, layout.namespace(d)),
        "spec": {
            "replicas": layout.replicas,
            "selector": {"matchLabels": _app(layout, d)},
            "template": template,
        },
        "status": {"replicas": layout.replicas, "readyReplicas": layout.replicas},
    }


def replicaset_obj(layout: Layout, d: int) -> Obj:
    owner = {"apiVersion": "apps/v1", "kind": "Deployment", "name": layout.deployment(d), "uid": f"dep-{d}"}
    meta = _meta(f"{layout.deployment(d)}-5d8f7b", f"rs-{d}", layout.t0, layout.namespace(d))
    meta["ownerReferences"] = [{**owner, "controller": True, "blockOwnerDeletion": True}]
    meta["labels"] = {**_app(layout, d), "pod-template-hash": "5d8f7b"}
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": meta,
        "spec": {"replicas": layout.replicas, "selector": {"matchLabels": _app(layout, d)}},
        "status": {"replicas": layout.replicas},
    }


def pod_obj(layout: Layout, placement: Placement, p: int, started: float) -> Obj:
    """The pod in slot ``p`` as its kubelet reports it running (``started``: its startTime). No
    creationTimestamp: the API server stamps it (on the simulated clock)."""
    d = p // layout.replicas
    node = placement.node[p]
    owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{layout.deployment(d)}-5d8f7b"}
    ports = [{"containerPort": TARGET_PORT, "protocol": "TCP"}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": placement.name[p],
            "namespace": layout.namespace(d),
            "uid": placement.uid[p],
            "labels": {**_app(layout, d), "pod-template-hash": "5d8f7b"},
            "ownerReferences": [{**owner, "uid": f"rs-{d}", "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": {
            "nodeName": layout.node_name(node),
            "containers": [{"name": "app", "image": "registry.example/app:1", "ports": ports}],
        },
        "status": {
            "phase": "Running",
            "podIP": placement.ip[p],
            "podIPs": [{"ip": placement.ip[p]}],
            "hostIP": layout.node_ip(node),
            "startTime": stamp(started),
        },
    }


def service_obj(layout: Layout, d: int) -> Obj:
    port = {"name": "http", "port": SERVICE_PORT, "targetPort": TARGET_PORT, "protocol": "TCP"}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(layout.deployment(d), f"svc-{d}", layout.t0, layout.namespace(d)),
        "spec": {
            "type": "ClusterIP",
            "clusterIP": layout.cluster_ip(d),
            "clusterIPs": [layout.cluster_ip(d)],
            "selector": _app(layout, d),
            "ports": [port],
        },
    }


def _target(layout: Layout, placement: Placement, p: int) -> Obj:
    d = p // layout.replicas
    return {
        "kind": "Pod",
        "namespace": layout.namespace(d),
        "name": placement.name[p],
        "uid": placement.uid[p],
    }


def endpoints_subsets(layout: Layout, placement: Placement, d: int) -> list[Obj]:
    slots = range(d * layout.replicas, (d + 1) * layout.replicas)
    addresses = [
        {
            "ip": placement.ip[p],
            "nodeName": layout.node_name(placement.node[p]),
            "targetRef": _target(layout, placement, p),
        }
        for p in slots
    ]
    return [{"addresses": addresses, "ports": [{"name": "http", "port": TARGET_PORT, "protocol": "TCP"}]}]


def slice_endpoints(layout: Layout, placement: Placement, d: int) -> list[Obj]:
    slots = range(d * layout.replicas, (d + 1) * layout.replicas)
    return [
        {
            "addresses": [placement.ip[p]],
            "conditions": {"ready": True},
            "nodeName": layout.node_name(placement.node[p]),
            "targetRef": _target(layout, placement, p),
        }
        for p in slots
    ]


def endpoints_obj(layout: Layout, placement: Placement, d: int) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": _meta(layout.deployment(d), f"ep-{d}", layout.t0, layout.namespace(d)),
        "subsets": endpoints_subsets(layout, placement, d),
    }


def slice_name(layout: Layout, d: int) -> str:
    return f"{layout.deployment(d)}-abcde"


def slice_obj(layout: Layout, placement: Placement, d: int) -> Obj:
    labels = {"kubernetes.io/service-name": layout.deployment(d)}
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": _meta(slice_name(layout, d), f"eps-{d}", layout.t0, layout.namespace(d), labels=labels),
        "addressType": "IPv4",
        "endpoints": slice_endpoints(layout, placement, d),
        "ports": [{"name": "http", "port": TARGET_PORT, "protocol": "TCP"}],
    }


def cluster_objects(layout: Layout, placement: Placement) -> dict[str, list[Obj]]:
    """Every object of the initial cluster, by the API server's resource key."""
    deployments = range(layout.deployments)
    started = layout.t0 + 60
    return {
        "namespaces": [namespace_obj(layout, i) for i in range(layout.namespaces)],
        "nodes": [node_obj(layout, n) for n in range(layout.nodes)],
        "apps/deployments": [deployment_obj(layout, d) for d in deployments],
        "apps/replicasets": [replicaset_obj(layout, d) for d in deployments],
        "pods": [{**pod_obj(layout, placement, p, started)} for p in range(layout.pods)],
        "services": [service_obj(layout, d) for d in deployments],
        "endpoints": [endpoints_obj(layout, placement, d) for d in deployments],
        "discovery.k8s.io/endpointslices": [slice_obj(layout, placement, d) for d in deployments],
    }


# ------------------------------------------------------------------ churn


@dataclass(frozen=True, slots=True)
class Swap:
    """Slots ``a`` and ``b`` (same replica of two Deployments) rescheduled onto each other's node
    and IP at simulated time ``at``: the old pods (names) go, new pods come in their places."""

    at: float
    a: int
    b: int
    gone: tuple[tuple[str, str], tuple[str, str]]  # (namespace, name) of the two deleted pods


def churn_plan(
    layout: Layout, placement: Placement, at: float, pairs: int, rng: random.Random, generation: int
) -> list[Swap]:
    """Reschedule ``pairs`` pairs of Deployments (every replica) at ``at``, updating ``placement``;
    the swaps say what to delete and create."""
    swaps = []
    picked = rng.sample(range(layout.deployments), 2 * pairs)
    for da, db in zip(picked[::2], picked[1::2], strict=True):
        for r in range(layout.replicas):
            a, b = da * layout.replicas + r, db * layout.replicas + r
            gone = ((layout.namespace(da), placement.name[a]), (layout.namespace(db), placement.name[b]))
            ip_a, node_a, ip_b, node_b = (
                placement.ip[a],
                placement.node[a],
                placement.ip[b],
                placement.node[b],
            )
            for p, d, ip, node in ((a, da, ip_b, node_b), (b, db, ip_a, node_a)):
                name = f"{layout.deployment(d)}-5d8f7b-{p % layout.replicas:03d}g{generation}"
                placement.move(p, name, f"pod-{p:06d}-{generation}", ip, node)
            swaps.append(Swap(at, a, b, gone))
    return swaps
