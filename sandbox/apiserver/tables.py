"""Server-side `meta.k8s.io/v1 Table` rendering, which `kubectl get` asks for (`Accept: ...;as=Table`).

Stored objects come in from `server.py` (list, get and watch responses); the Table goes back to
kubectl, which prints the columns as given (plus NAMESPACE for `-A`, taken from each row's object
metadata). Columns copy kubernetes/pkg/printers/internalversion for the common resources;
priority-1 columns are the ones `-o wide` adds. Pure functions of the object and `now`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]
Column = tuple[str, str, int, Callable[[Obj, datetime], Any]]  # name, type, priority, cell


def table_version(accept: str | None) -> str | None:
    """`v1`/`v1beta1` if the Accept header asks for a meta.k8s.io Table first-acceptably, else None."""
    for media in (accept or "").split(","):
        params = dict(p.strip().split("=", 1) for p in media.split(";")[1:] if "=" in p)
        if (
            params.get("as") == "Table"
            and params.get("g") == "meta.k8s.io"
            and params.get("v") in ("v1", "v1beta1")
        ):
            return params["v"]
    return None


def human_duration(seconds: float) -> str:  # noqa: PLR0911 - mirrors the Go ladder of cases
    """apimachinery's duration.HumanDuration: 45s, 5m10s, 3h, 2d4h, 400d, 3y10d."""
    if seconds < -1:
        return "<invalid>"
    s = max(int(seconds), 0)
    minutes, hours, days = s // 60, s // 3600, s // 86400
    if s < 120:
        return f"{s}s"
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    if days < 365 * 8:
        return f"{days // 365}y{days % 365}d" if days % 365 else f"{days // 365}y"
    return f"{days // 365}y"


def _get(obj: Obj, *path: str, default: Any = None) -> Any:
    current: Any = obj
    for part in path:
        if not isinstance(current, dict):
            return default
        current = current.get(part)
    return default if current is None else current


def _age(obj: Obj, now: datetime) -> str:
    stamp = _get(obj, "metadata", "creationTimestamp")
    if not stamp:
        return "<unknown>"
    created = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    return human_duration((now - created).total_seconds())


def _name(obj: Obj, _now: datetime) -> str:
    return str(_get(obj, "metadata", "name", default=""))


def _pod_status(obj: Obj, _now: datetime) -> str:
    reason = str(_get(obj, "status", "reason") or _get(obj, "status", "phase", default="Pending"))
    for cs in _get(obj, "status", "containerStatuses", default=[]):
        waiting = _get(cs, "state", "waiting", "reason")
        terminated = _get(cs, "state", "terminated")
        if waiting:
            reason = str(waiting)
        elif terminated:
            reason = str(terminated.get("reason") or f"ExitCode:{terminated.get('exitCode', 0)}")
    if _get(obj, "metadata", "deletionTimestamp"):
        reason = "Terminating"
    return reason


def _pod_ready(obj: Obj, _now: datetime) -> str:
    total = len(_get(obj, "spec", "containers", default=[]))
    ready = sum(1 for cs in _get(obj, "status", "containerStatuses", default=[]) if cs.get("ready"))
    return f"{ready}/{total}"


def _pod_restarts(obj: Obj, _now: datetime) -> str:
    return str(
        sum(int(cs.get("restartCount", 0)) for cs in _get(obj, "status", "containerStatuses", default=[]))
    )


def _or_none(value: Any) -> str:
    return str(value) if value not in (None, "", []) else "<none>"


def _svc_external_ip(obj: Obj, _now: datetime) -> str:
    svc_type = _get(obj, "spec", "type", default="ClusterIP")
    external = list(_get(obj, "spec", "externalIPs", default=[]))
    if svc_type == "ExternalName":
        return str(_get(obj, "spec", "externalName", default="<none>"))
    if svc_type == "LoadBalancer":
        for ingress in _get(obj, "status", "loadBalancer", "ingress", default=[]):
            external.append(ingress.get("ip") or ingress.get("hostname") or "")
        return ",".join(e for e in external if e) or "<pending>"
    return ",".join(external) or "<none>"


def _svc_ports(obj: Obj, _now: datetime) -> str:
    parts = []
    for port in _get(obj, "spec", "ports", default=[]):
        protocol = port.get("protocol", "TCP")
        node_port = port.get("nodePort")
        parts.append(
            f"{port.get('port')}:{node_port}/{protocol}" if node_port else f"{port.get('port')}/{protocol}"
        )
    return ",".join(parts) or "<none>"


def _selector(obj: Obj, _now: datetime) -> str:
    selector = _get(obj, "spec", "selector", default={})
    if isinstance(selector, dict) and "matchLabels" in selector:
        selector = selector["matchLabels"] or {}
    return (
        ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        if isinstance(selector, dict) and selector
        else "<none>"
    )


def _endpoints(obj: Obj, _now: datetime) -> str:
    addresses: list[str] = []
    for subset in _get(obj, "subsets", default=[]):
        ports = [p.get("port") for p in subset.get("ports") or []] or [None]
        for address in subset.get("addresses") or []:
            addresses.extend(f"{address.get('ip')}:{p}" if p else str(address.get("ip")) for p in ports)
    if not addresses:
        return "<none>"
    shown = ",".join(addresses[:3])
    return shown + (f" + {len(addresses) - 3} more..." if len(addresses) > 3 else "")


def _node_status(obj: Obj, _now: datetime) -> str:
    for condition in _get(obj, "status", "conditions", default=[]):
        if condition.get("type") == "Ready":
            return {"True": "Ready", "False": "NotReady"}.get(condition.get("status"), "Unknown")
    return "Unknown"


def _node_roles(obj: Obj, _now: datetime) -> str:
    prefix = "node-role.kubernetes.io/"
    roles = sorted(
        k[len(prefix) :] for k in _get(obj, "metadata", "labels", default={}) if k.startswith(prefix)
    )
    return ",".join(roles) or "<none>"


def _field(*path: str, default: Any = 0) -> Callable[[Obj, datetime], Any]:
    return lambda obj, _now: _get(obj, *path, default=default)


def _ratio(ready: tuple[str, ...], total: tuple[str, ...]) -> Callable[[Obj, datetime], str]:
    return lambda obj, _now: f"{_get(obj, *ready, default=0)}/{_get(obj, *total, default=0)}"


def _images(obj: Obj, key: str) -> str:
    containers = _get(obj, "spec", "template", "spec", "containers", default=[])
    return ",".join(str(c.get(key, "")) for c in containers) or "<none>"


_NAME: Column = ("Name", "string", 0, _name)
_AGE: Column = ("Age", "string", 0, _age)

COLUMNS: dict[str, list[Column]] = {
    "pods": [
        _NAME,
        ("Ready", "string", 0, _pod_ready),
        ("Status", "string", 0, _pod_status),
        ("Restarts", "string", 0, _pod_restarts),
        _AGE,
        ("IP", "string", 1, lambda o, _n: _or_none(_get(o, "status", "podIP"))),
        ("Node", "string", 1, lambda o, _n: _or_none(_get(o, "spec", "nodeName"))),
        ("Nominated Node", "string", 1, lambda o, _n: _or_none(_get(o, "status", "nominatedNodeName"))),
        ("Readiness Gates", "string", 1, lambda o, _n: _or_none(_get(o, "spec", "readinessGates"))),
    ],
    "services": [
        _NAME,
        ("Type", "string", 0, _field("spec", "type", default="ClusterIP")),
        ("Cluster-IP", "string", 0, lambda o, _n: _or_none(_get(o, "spec", "clusterIP"))),
        ("External-IP", "string", 0, _svc_external_ip),
        ("Port(s)", "string", 0, _svc_ports),
        _AGE,
        ("Selector", "string", 1, _selector),
    ],
    "endpoints": [_NAME, ("Endpoints", "string", 0, _endpoints), _AGE],
    "namespaces": [_NAME, ("Status", "string", 0, _field("status", "phase", default="Active")), _AGE],
    "nodes": [
        _NAME,
        ("Status", "string", 0, _node_status),
        ("Roles", "string", 0, _node_roles),
        _AGE,
        ("Version", "string", 0, _field("status", "nodeInfo", "kubeletVersion", default="")),
    ],
    "configmaps": [_NAME, ("Data", "integer", 0, lambda o, _n: len(o.get("data") or {})), _AGE],
    "secrets": [
        _NAME,
        ("Type", "string", 0, _field("type", default="")),
        ("Data", "integer", 0, lambda o, _n: len(o.get("data") or {})),
        _AGE,
    ],
    "admissionregistration.k8s.io/mutatingwebhookconfigurations": [
        _NAME,
        ("Webhooks", "integer", 0, lambda o, _n: len(o.get("webhooks") or [])),
        _AGE,
    ],
    "apps/deployments": [
        _NAME,
        ("Ready", "string", 0, _ratio(("status", "readyReplicas"), ("spec", "replicas"))),
        ("Up-to-date", "integer", 0, _field("status", "updatedReplicas")),
        ("Available", "integer", 0, _field("status", "availableReplicas")),
        _AGE,
        ("Containers", "string", 1, lambda o, _n: _images(o, "name")),
        ("Images", "string", 1, lambda o, _n: _images(o, "image")),
        ("Selector", "string", 1, _selector),
    ],
    "apps/replicasets": [
        _NAME,
        ("Desired", "integer", 0, _field("spec", "replicas")),
        ("Current", "integer", 0, _field("status", "replicas")),
        ("Ready", "integer", 0, _field("status", "readyReplicas")),
        _AGE,
    ],
    "apps/statefulsets": [
        _NAME,
        ("Ready", "string", 0, _ratio(("status", "readyReplicas"), ("spec", "replicas"))),
        _AGE,
    ],
    "apps/daemonsets": [
        _NAME,
        ("Desired", "integer", 0, _field("status", "desiredNumberScheduled")),
        ("Current", "integer", 0, _field("status", "currentNumberScheduled")),
        ("Ready", "integer", 0, _field("status", "numberReady")),
        _AGE,
    ],
    "batch/jobs": [
        _NAME,
        ("Completions", "string", 0, _ratio(("status", "succeeded"), ("spec", "completions"))),
        _AGE,
    ],
    "batch/cronjobs": [
        _NAME,
        ("Schedule", "string", 0, _field("spec", "schedule", default="")),
        ("Suspend", "boolean", 0, _field("spec", "suspend", default=False)),
        ("Active", "integer", 0, lambda o, _n: len(_get(o, "status", "active", default=[]))),
        _AGE,
    ],
    "events": [
        ("Last Seen", "string", 0, lambda o, n: _age({"metadata": {"creationTimestamp": _last_seen(o)}}, n)),
        ("Type", "string", 0, _field("type", default="")),
        ("Reason", "string", 0, _field("reason", default="")),
        ("Object", "string", 0, lambda o, _n: f"{_involved(o, 'kind').lower()}/{_involved(o, 'name')}"),
        ("Message", "string", 0, _field("message", default="")),
    ],
}


def _last_seen(obj: Obj) -> Any:
    return obj.get("lastTimestamp") or obj.get("eventTime") or _get(obj, "metadata", "creationTimestamp")


def _involved(obj: Obj, key: str) -> str:
    return str(_get(obj, "involvedObject", key, default=""))


def _row_object(obj: Obj, include: str) -> Obj | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


def render_table(
    resource_key: str,
    objects: list[Obj],
    resource_version: str,
    *,
    version: str = "v1",
    include_object: str = "Metadata",
    now: datetime | None = None,
) -> Obj:
    """A Table of `objects`; `include_object` is the `includeObject` query (None|Metadata|Object)."""
    now = now or datetime.now(UTC)
    columns = COLUMNS.get(resource_key, [_NAME, _AGE])
    rows = []
    for obj in objects:
        row: Obj = {"cells": [cell(obj, now) for _, _, _, cell in columns]}
        row_object = _row_object(obj, include_object)
        if row_object is not None:
            row["object"] = row_object
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [
            {
                "name": name,
                "type": kind,
                "format": "name" if name == "Name" else "",
                "description": "",
                "priority": priority,
            }
            for name, kind, priority, _ in columns
        ],
        "rows": rows,
    }
