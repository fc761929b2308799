"""The product as ``helm install`` puts it in a cluster: the chart rendered, and what the
cluster's controllers make of it.

Data comes from the chart (``helm/network-mapper``), rendered offline with the Helm SDK
(``helm_python``) as release :data:`RELEASE` in ``otterize-system`` for :func:`sandbox_values`:
the sandbox's only choices are values a user could set (the demo's pace, every component on, the
local cloud's URL and token). It goes to :mod:`sandbox.supervisor`, which creates
:attr:`Release.objects` through the API, then for each of :attr:`Release.workloads` creates the
controllers' objects and the pod (:func:`pod_plan`), runs the pod *as stored* (:mod:`sandbox.podspec`:
command, args, env, volumes, probes) and publishes the Endpoints of the chart's Services that select
it (:func:`endpoints`), as an endpoints controller would. Hook objects (``helm.sh/hook``: the
``helm test`` pod) are kept apart in :attr:`Release.hooks`: an install does not create them.

Pure except for rendering.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sandbox.objects import suffix

Manifest = dict[str, Any]

CHART = Path(__file__).resolve().parents[1] / "helm" / "network-mapper"
RELEASE = "network-mapper"
WORKLOAD_KINDS = ("Deployment", "DaemonSet")
# Start order: the mapper first (everyone reports to it); the IAM proxy before the DNS forwarder
# (which health-checks it) and both before the webhook (which points new pods at the forwarder).
START_ORDER = (
    "network-mapper",
    "network-mapper-sniffer",
    "network-mapper-kafka-watcher",
    "network-mapper-istio-watcher",
    "network-mapper-aws-proxy",
    "network-mapper-aws-dns",
    "network-mapper-aws-webhook",
)
# What `helm install` would apply first: a namespace's objects before what refers to them.
_APPLY_ORDER = (
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "PersistentVolumeClaim",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "NetworkPolicy",
)


def sandbox_values(cloud_url: str, cloud_token: str, agent_token: str = "") -> dict[str, Any]:
    """The values the sandbox "installs" the chart with: every component on, the demo's pace (the
    chart's defaults are 5-60 s), the local cloud, the edge store on a claim, and the agent token
    (the one the sandbox's state file keeps, so tests and the demo can report to the mapper)."""
    return {
        "agentToken": agent_token,
        "kafkawatcher": {
            "enable": True,
            "kafkaServers": [{"name": "kafka-0", "namespace": "otterize-tutorial-kafka-mapping"}],
            "pollInterval": 2,
            "reportInterval": 2,
        },
        "enableIstioCollection": True,
        "istiowatcher": {"scrapeInterval": 2, "reportInterval": 2},
        "aws": {"visibility": {"enabled": True}},
        "cloud": {"url": cloud_url, "token": cloud_token, "uploadInterval": 5},
        "persistence": {"enabled": True},
    }


@dataclass(frozen=True, slots=True)
class Release:
    objects: tuple[Manifest, ...]  # in apply order; workloads and hooks apart
    workloads: tuple[Manifest, ...]  # Deployments and DaemonSets, in start order
    hooks: tuple[Manifest, ...]
    kinds_skipped: tuple[str, ...]  # rendered kinds the sandbox's API does not serve (e.g. Istio's)


def render(values: Mapping[str, Any], namespace: str, served_kinds: Sequence[str]) -> Release:
    """The chart rendered for ``values``; objects of kinds not in ``served_kinds`` are skipped (named
    in :attr:`Release.kinds_skipped`), as a cluster without that CRD would refuse them."""
    import helm_python as helm  # the Helm SDK loads a Go library: only when rendering

    rendered = helm.Chart.load(CHART).render(dict(values), name=RELEASE, namespace=namespace)
    docs = [
        doc
        for path, text in sorted(rendered.items())
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]
    hooks = tuple(d for d in docs if "helm.sh/hook" in (d["metadata"].get("annotations") or {}))
    installed = [d for d in docs if d not in hooks]
    workloads = sorted(
        (d for d in installed if d["kind"] in WORKLOAD_KINDS),
        key=lambda d: _rank(START_ORDER, d["metadata"]["name"]),
    )
    others = [d for d in installed if d["kind"] not in WORKLOAD_KINDS]
    served = [d for d in others if d["kind"] in served_kinds]
    skipped = tuple(sorted({d["kind"] for d in others if d["kind"] not in served_kinds}))
    objects = sorted(served, key=lambda d: _rank(_APPLY_ORDER, d["kind"]))
    for obj in objects:
        if _namespaced(obj):
            obj["metadata"].setdefault("namespace", namespace)
    return Release(tuple(objects), tuple(workloads), hooks, skipped)


def _rank(order: Sequence[str], key: str) -> int:
    return order.index(key) if key in order else len(order)


def _namespaced(obj: Manifest) -> bool:
    return obj["kind"] not in {"ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration"}


@dataclass(frozen=True, slots=True)
class ChartPod:
    """One pod of a chart workload: its controllers' objects (root first, each owning the next;
    the supervisor fills in the owners' UIDs) and the pod."""

    namespace: str
    name: str
    owners: tuple[Manifest, ...]
    pod: Manifest
    host_network: bool

    @property
    def images(self) -> tuple[tuple[str, str], ...]:
        return tuple((c["name"], c.get("image", "")) for c in self.pod["spec"]["containers"])


def _owner_ref(owner: Manifest) -> list[Manifest]:
    ref = {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"]}
    return [{**ref, "uid": "", "controller": True, "blockOwnerDeletion": True}]


def pod_plan(workload: Manifest, node_name: str, *, per_node: bool = False) -> ChartPod:
    """What the Deployment (→ ReplicaSet → Pod) or DaemonSet (→ Pod) controller makes of ``workload``
    on node ``node_name``; ``per_node`` names the pod after the node too (a DaemonSet's pod on a
    further node: one pod per node, each with a name of its own)."""
    meta = workload["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    template = workload["spec"]["template"]
    labels = dict(template["metadata"].get("labels") or {})
    owners: list[Manifest] = [workload]
    if workload["kind"] == "Deployment":
        template_hash = suffix(f"{namespace}/{name}/template", 10)
        labels["pod-template-hash"] = template_hash
        rs_name = f"{name}-{template_hash}"
        rs_spec = {**workload["spec"], "replicas": 1}
        rs_spec.pop("strategy", None)  # a Deployment's field, not a ReplicaSet's
        rs_spec["template"] = {**template, "metadata": {**template["metadata"], "labels": labels}}
        replica_set: Manifest = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": rs_name,
                "namespace": namespace,
                "labels": labels,
                "ownerReferences": _owner_ref(workload),
            },
            "spec": rs_spec,
        }
        owners.append(replica_set)
    seed = f"{namespace}/{name}/pod" + (f"/{node_name}" if per_node else "")
    pod_name = f"{owners[-1]['metadata']['name']}-{suffix(seed, 5)}"
    spec = dict(template["spec"])
    spec["nodeName"] = node_name
    pod: Manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name,
            "namespace": namespace,
            "labels": labels,
            "annotations": dict(template["metadata"].get("annotations") or {}),
            "ownerReferences": _owner_ref(owners[-1]),
        },
        "spec": spec,
    }
    return ChartPod(namespace, pod_name, tuple(owners), pod, bool(spec.get("hostNetwork")))


@dataclass(frozen=True, slots=True)
class ServiceRoute:
    """One ClusterIP port → the pod's port, for the node's DNAT rules."""

    cluster_ip: str
    port: int
    protocol: str  # "tcp" | "udp"
    pod_ip: str
    target_port: int


def selects(service: Manifest, pod: Manifest) -> bool:
    selector = (service.get("spec") or {}).get("selector") or {}
    labels = pod["metadata"].get("labels") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _target_port(port: Manifest, pod: Manifest) -> int:
    target = port.get("targetPort", port["port"])
    if isinstance(target, int):
        return target
    for container in pod["spec"]["containers"]:
        for p in container.get("ports") or ():
            if p.get("name") == target:
                return int(p["containerPort"])
    raise ValueError(f"no container port named {target!r} in pod {pod['metadata']['name']}")


def endpoints(
    service: Manifest, pod: Manifest, pod_ip: str, node_name: str
) -> tuple[Manifest, Manifest, tuple[ServiceRoute, ...]]:
    """The Endpoints and EndpointSlice of ``service`` (as created, with its ClusterIP) for its one
    pod, and the routes the node needs to reach the pod through the ClusterIP."""
    meta = service["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    ports = [
        {"name": p.get("name", ""), "port": _target_port(p, pod), "protocol": p.get("protocol", "TCP")}
        for p in service["spec"]["ports"]
    ]
    ref = {"kind": "Pod", "name": pod["metadata"]["name"], "namespace": namespace}
    labels = dict(meta.get("labels") or {})
    endpoints_obj: Manifest = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "subsets": [{"addresses": [{"ip": pod_ip, "nodeName": node_name, "targetRef": ref}], "ports": ports}],
    }
    slice_obj: Manifest = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{name}-{suffix(name, 5)}",
            "namespace": namespace,
            "labels": {**labels, "kubernetes.io/service-name": name},
        },
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": [
            {"addresses": [pod_ip], "conditions": {"ready": True}, "nodeName": node_name, "targetRef": ref}
        ],
    }
    cluster_ip = service["spec"]["clusterIP"]
    routes = tuple(
        ServiceRoute(cluster_ip, int(p["port"]), p.get("protocol", "TCP").lower(), pod_ip, target["port"])
        for p, target in zip(service["spec"]["ports"], ports, strict=True)
    )
    return endpoints_obj, slice_obj, routes


def test_hooks(release: Release) -> tuple[Manifest, ...]:
    """The release's ``helm test`` pods, as ``helm test`` runs them."""
    return tuple(
        h
        for h in release.hooks
        if h["kind"] == "Pod" and "test" in (h["metadata"].get("annotations") or {}).get("helm.sh/hook", "")
    )


def hook_pod(hook: Manifest, namespace: str, node_name: str) -> Manifest:
    """A hook Pod as created for its run: in the release's namespace, scheduled on the node."""
    pod = {**hook, "metadata": {**hook["metadata"], "namespace": namespace}}
    pod["spec"] = {**hook["spec"], "nodeName": node_name}
    return pod
