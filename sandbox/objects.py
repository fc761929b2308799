"""Kubernetes manifests for the sandbox's workloads (pure: topology in, JSON dicts out).

What a cluster's controllers would create — Deployment → ReplicaSet → Pod, StatefulSet →
Pod, CronJob → Job → Pod, DaemonSet → Pod, Services, Endpoints and EndpointSlices — is
built here as plain dicts and sent to the API server by :mod:`sandbox.supervisor` through
the real ``kubernetes`` client, so the API sees the same objects a real cluster has. Pods list
every container of their workload (its own, then its sidecars); their status is built from the
kubelet's :class:`~sandbox.kubelet.ContainerState` of each (restarts, container IDs, last state).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sandbox.kubelet import ContainerState, Terminated
from sandbox.topology import NODE_IP, NODE_NAME, Container, Volume, Workload

Manifest = dict[str, Any]

_KIND_API = {
    "Deployment": "apps/v1",
    "ReplicaSet": "apps/v1",
    "StatefulSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "Job": "batch/v1",
    "CronJob": "batch/v1",
}
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the alphabet Kubernetes uses for name suffixes


def suffix(seed: str, length: int) -> str:
    """A name suffix as Kubernetes' controllers make them, stable for ``seed``."""
    digest = hashlib.sha256(seed.encode()).digest()
    return "".join(_ALPHABET[b % len(_ALPHABET)] for b in digest[:length])


@dataclass(frozen=True, slots=True)
class PodPlan:
    """One pod to run: its manifests (owners first), its name and its IP."""

    workload: Workload
    pod_name: str
    ip: str
    owners: tuple[Manifest, ...]  # root owner first; each object owns the next
    pod: Manifest


def _meta(name: str, w: Workload, extra_labels: dict[str, str] | None = None) -> Manifest:
    labels = {"app": w.name, **w.labels, **(extra_labels or {})}
    return {"name": name, "namespace": w.namespace, "labels": labels}


def _owned_by(obj: Manifest, owner_kind: str, owner_name: str) -> Manifest:
    """An ownerReference by name; the supervisor fills in the owner's UID once created."""
    obj["metadata"]["ownerReferences"] = [
        {
            "apiVersion": _KIND_API[owner_kind],
            "kind": owner_kind,
            "name": owner_name,
            "uid": "",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    return obj


def _object(kind: str, name: str, w: Workload, spec: Manifest) -> Manifest:
    return {"apiVersion": _KIND_API[kind], "kind": kind, "metadata": _meta(name, w), "spec": spec}


def _image(c: Container) -> str:
    return f"sandbox/{c.module}"


_FIELD_VARS = {"pod_name": ("POD_NAME", "metadata.name"), "pod_ip": ("POD_IP", "status.podIP")}


def _container(c: Container, fill: Mapping[str, str]) -> Manifest:
    """The container as a pod spec states it: the kubelet (:mod:`sandbox.podspec`) runs what is
    stored, so the program, its arguments and environment are all here."""
    # The pod's own name and IP reach a container as in a real manifest: env from fieldRef, and
    # $(VAR) references in args and env, which the kubelet expands.
    fill = {**fill, **{key: f"$({var})" for key, (var, _) in _FIELD_VARS.items()}}
    texts = [*c.args, *c.env.values()]
    env: list[Manifest] = [
        {"name": var, "valueFrom": {"fieldRef": {"fieldPath": path}}}
        for key, (var, path) in _FIELD_VARS.items()
        if any("{" + key + "}" in t for t in texts)
    ]
    env += [{"name": k, "value": v.format(**fill)} for k, v in c.env.items()]
    env += [
        {"name": k, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
        for k, (secret, key) in c.secret_env.items()
    ]
    manifest: Manifest = {
        "name": c.name,
        "image": _image(c),
        "command": ["python", "-m", c.module],
        "args": [a.format(**fill) for a in c.args],
        "ports": [{"containerPort": port, "protocol": "TCP"} for port in c.ports],
    }
    if env:
        manifest["env"] = env
    if c.mounts:
        manifest["volumeMounts"] = [{"name": v, "mountPath": p, "readOnly": True} for v, p in c.mounts]
    return manifest


def _volume(v: Volume) -> Manifest:
    if v.kind == "secret":
        return {"name": v.name, "secret": {"secretName": v.source}}
    return {"name": v.name, "configMap": {"name": v.source}}


def _pod_spec(w: Workload, fill: Mapping[str, str]) -> Manifest:
    spec: Manifest = {"containers": [_container(c, fill) for c in w.containers]}
    if w.volumes:
        spec["volumes"] = [_volume(v) for v in w.volumes]
    if w.service_account:
        spec["serviceAccountName"] = w.service_account
    return spec


def plan_pod(
    w: Workload,
    ip: str,
    generation: int = 0,
    fill: Mapping[str, str] | None = None,
    *,
    node_name: str = NODE_NAME,
    node_ip: str = NODE_IP,
) -> PodPlan:
    """The owner chain and pod manifest of workload ``w``'s pod, as its controllers name them, for
    node ``node_name`` (whose address a hostNetwork pod has).

    ``fill`` gives the values of the ``{placeholders}`` in the containers' args and env (the token,
    the kubeconfig, ...); ``{pod_name}`` and ``{pod_ip}`` become ``$(POD_NAME)``/``$(POD_IP)``."""
    fill = dict(fill or {})
    selector = {"matchLabels": {"app": w.name}}
    # The template as written; an injector's pod labels (``pod_labels``) appear on the pod only.
    template = {"metadata": {"labels": {"app": w.name, **w.labels}}, "spec": _pod_spec(w, fill)}
    spec: Manifest = {"selector": selector, "template": template}
    owners: list[Manifest]
    seed = f"{w.namespace}/{w.name}/{generation}"
    if w.kind == "Deployment":
        rs = f"{w.name}-{suffix(w.name, 10)}"
        owners = [
            _object("Deployment", w.name, w, {**spec, "replicas": 1}),
            _owned_by(_object("ReplicaSet", rs, w, {**spec, "replicas": 1}), "Deployment", w.name),
        ]
        pod_name, owner_kind, owner = f"{rs}-{suffix(seed, 5)}", "ReplicaSet", rs
    elif w.kind == "StatefulSet":
        owners = [_object("StatefulSet", w.name, w, {**spec, "replicas": 1, "serviceName": w.service})]
        pod_name, owner_kind, owner = f"{w.name}-{generation}", "StatefulSet", w.name
    elif w.kind == "DaemonSet":
        owners = [_object("DaemonSet", w.name, w, spec)]
        pod_name, owner_kind, owner = f"{w.name}-{suffix(seed, 5)}", "DaemonSet", w.name
    elif w.kind == "CronJob":
        job = f"{w.name}-{29000000 + generation}"
        owners = [
            _object(
                "CronJob",
                w.name,
                w,
                {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": template}}},
            ),
            _owned_by(_object("Job", job, w, {"template": template}), "CronJob", w.name),
        ]
        pod_name, owner_kind, owner = f"{job}-{suffix(seed, 5)}", "Job", job
    else:
        raise ValueError(f"unsupported workload kind {w.kind!r}")
    pod: Manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**_meta(pod_name, w, w.pod_labels), "annotations": dict(w.annotations)},
        "spec": {"nodeName": node_name, "hostNetwork": w.host_network, **_pod_spec(w, fill)},
    }
    _owned_by(pod, owner_kind, owner)
    return PodPlan(w, pod_name, node_ip if w.host_network else ip, tuple(owners), pod)


def _terminated(t: Terminated) -> Manifest:
    return {
        "exitCode": t.exit_code,
        "reason": t.reason,
        "startedAt": t.started_at,
        "finishedAt": t.finished_at,
        "containerID": t.container_id,
    }


def images(w: Workload) -> tuple[tuple[str, str], ...]:
    """(container name, image) of each of ``w``'s containers, in pod order."""
    return tuple((c.name, _image(c)) for c in w.containers)


def container_status(name: str, image: str, state: ContainerState, ready: bool = True) -> Manifest:
    """One ``status.containerStatuses`` entry, as the kubelet reports it."""
    status: Manifest = {
        "name": name,
        "image": image,
        "imageID": "",
        "containerID": state.container_id,
        "ready": state.running and ready,
        "started": state.running,
        "restartCount": state.restart_count,
        "state": (
            {"running": {"startedAt": state.started_at}}
            if state.exited is None
            else {"terminated": _terminated(state.exited)}
        ),
        "lastState": {"terminated": _terminated(state.last)} if state.last else {},
    }
    return status


def pod_status(
    containers: Sequence[tuple[str, str]],
    ip: str,
    started: str,
    states: tuple[ContainerState, ...],
    ready: bool = True,
    *,
    restart_policy: str = "Always",
    host_ip: str = NODE_IP,
) -> Manifest:
    """What the kubelet reports for the pod once its processes run: ``containers`` are (name, image)
    and ``states`` their states, in container order; ``ready`` is False while a readiness probe fails."""
    ready_text = "True" if ready and all(s.running for s in states) else "False"
    phase = "Running"
    if restart_policy != "Always" and all(s.exited is not None for s in states):
        phase = "Succeeded" if all(s.exited and s.exited.exit_code == 0 for s in states) else "Failed"
    return {
        "status": {
            "phase": phase,
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "startTime": started,
            "conditions": [
                {"type": "Initialized", "status": "True"},
                {"type": "Ready", "status": ready_text},
                {"type": "ContainersReady", "status": ready_text},
                {"type": "PodScheduled", "status": "True"},
            ],
            "containerStatuses": [
                container_status(name, image, s, ready)
                for (name, image), s in zip(containers, states, strict=True)
            ],
        }
    }


def _ports(w: Workload) -> list[Manifest]:
    if w.protocol == "UDP":  # DNS: the same port over UDP and TCP
        return [
            {"name": "dns", "port": w.service_port, "targetPort": w.port, "protocol": "UDP"},
            {"name": "dns-tcp", "port": w.service_port, "targetPort": w.port, "protocol": "TCP"},
        ]
    main = {"name": "main", "port": w.service_port, "targetPort": w.serving_port, "protocol": "TCP"}
    return [main, *({"name": n, "port": p, "targetPort": p, "protocol": "TCP"} for n, p in w.more_ports)]


def service(w: Workload, cluster_ip: str | None = None) -> Manifest:
    spec: Manifest = {"type": "ClusterIP", "selector": {"app": w.name}, "ports": _ports(w)}
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(w.service, w), "spec": spec}


def endpoints(w: Workload, pods: list[tuple[str, str]], node_name: str = NODE_NAME) -> Manifest:
    """Endpoints for ``pods`` given as (pod name, ip), on node ``node_name``."""
    ports = [{"name": p["name"], "port": p["targetPort"], "protocol": p["protocol"]} for p in _ports(w)]
    addresses = [
        {"ip": ip, "nodeName": node_name, "targetRef": {"kind": "Pod", "name": n, "namespace": w.namespace}}
        for n, ip in pods
    ]
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": _meta(w.service, w),
        "subsets": [{"addresses": addresses, "ports": ports}] if addresses else [],
    }


def endpoint_slice(w: Workload, pods: list[tuple[str, str]], node_name: str = NODE_NAME) -> Manifest:
    ports = [{"name": p["name"], "port": p["targetPort"], "protocol": p["protocol"]} for p in _ports(w)]
    meta = _meta(f"{w.service}-{suffix(w.service, 5)}", w, {"kubernetes.io/service-name": w.service})
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": meta,
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": [
            {
                "addresses": [ip],
                "conditions": {"ready": True},
                "nodeName": node_name,
                "targetRef": {"kind": "Pod", "name": n, "namespace": w.namespace},
            }
            for n, ip in pods
        ],
    }
