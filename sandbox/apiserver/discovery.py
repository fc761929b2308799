"""The resource table of the sandbox API server and the discovery documents built from it.

`RESOURCES` is the single source of truth for which resources exist, their kinds, scope and
supported field selectors; `server.py` routes by it and serves the documents below at `/api`,
`/api/v1`, `/apis`, `/apis/{group}` and `/apis/{group}/{version}` so kubectl's discovery (and its
short names such as `po`, `svc`, `deploy`) works. Pure data and functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SERVER_VERSION = {
    "major": "1",
    "minor": "30",
    "gitVersion": "v1.30.0-sandbox",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-04-17T00:00:00Z",
    "goVersion": "go1.22.2",
    "compiler": "gc",
    "platform": "linux/amd64",
}

_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
_BASE_FIELDS = ("metadata.name", "metadata.namespace")
# Field labels the real registries accept for pods and events (others: name/namespace only).
_POD_FIELDS = (
    *_BASE_FIELDS,
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
)
_EVENT_FIELDS = (
    *_BASE_FIELDS,
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)


@dataclass(frozen=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    # "status" and "log" are the subresources served (Secrets and webhook configurations have none).
    subresources: tuple[str, ...] = ("status",)
    field_selectors: tuple[str, ...] = _BASE_FIELDS
    categories: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        """Store key: `plural` for the core group, `group/plural` otherwise."""
        return f"{self.group}/{self.plural}" if self.group else self.plural


RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "namespace", "Namespace", False, ("ns",)),
    ResourceType(
        "",
        "v1",
        "pods",
        "pod",
        "Pod",
        True,
        ("po",),
        ("status", "log"),
        _POD_FIELDS,
        ("all",),
    ),
    ResourceType("", "v1", "services", "service", "Service", True, ("svc",), categories=("all",)),
    ResourceType("", "v1", "endpoints", "endpoints", "Endpoints", True, ("ep",), subresources=()),
    ResourceType("", "v1", "nodes", "node", "Node", False, ("no",)),
    ResourceType("", "v1", "configmaps", "configmap", "ConfigMap", True, ("cm",), subresources=()),
    ResourceType("", "v1", "secrets", "secret", "Secret", True, (), (), (*_BASE_FIELDS, "type")),
    ResourceType("", "v1", "events", "event", "Event", True, ("ev",), (), _EVENT_FIELDS),
    ResourceType("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", True, ("sa",), ()),
    ResourceType(
        "", "v1", "persistentvolumeclaims", "persistentvolumeclaim", "PersistentVolumeClaim", True, ("pvc",)
    ),
    ResourceType(
        "discovery.k8s.io", "v1", "endpointslices", "endpointslice", "EndpointSlice", True, subresources=()
    ),
    ResourceType(
        "apps", "v1", "deployments", "deployment", "Deployment", True, ("deploy",), categories=("all",)
    ),
    ResourceType("apps", "v1", "replicasets", "replicaset", "ReplicaSet", True, ("rs",), categories=("all",)),
    ResourceType(
        "apps", "v1", "statefulsets", "statefulset", "StatefulSet", True, ("sts",), categories=("all",)
    ),
    ResourceType("apps", "v1", "daemonsets", "daemonset", "DaemonSet", True, ("ds",), categories=("all",)),
    ResourceType("batch", "v1", "jobs", "job", "Job", True, categories=("all",)),
    ResourceType("batch", "v1", "cronjobs", "cronjob", "CronJob", True, ("cj",), categories=("all",)),
    # Stored as a cluster keeps them (the chart's RBAC, its optional NetworkPolicy); not enforced.
    *(
        ResourceType(
            "rbac.authorization.k8s.io", "v1", plural, plural[:-1], kind, namespaced, subresources=()
        )
        for plural, kind, namespaced in (
            ("roles", "Role", True),
            ("rolebindings", "RoleBinding", True),
            ("clusterroles", "ClusterRole", False),
            ("clusterrolebindings", "ClusterRoleBinding", False),
        )
    ),
    ResourceType(
        "networking.k8s.io", "v1", "networkpolicies", "networkpolicy", "NetworkPolicy", True, ("netpol",), ()
    ),
    ResourceType(
        "admissionregistration.k8s.io",
        "v1",
        "mutatingwebhookconfigurations",
        "mutatingwebhookconfiguration",
        "MutatingWebhookConfiguration",
        False,
        subresources=(),
        categories=("api-extensions",),
    ),
)

_BY_PATH: dict[tuple[str, str, str], ResourceType] = {(r.group, r.version, r.plural): r for r in RESOURCES}


def lookup(group: str, version: str, plural: str) -> ResourceType | None:
    return _BY_PATH.get((group, version, plural))


def by_key(key: str) -> ResourceType:
    for resource in RESOURCES:
        if resource.key == key:
            return resource
    raise KeyError(key)


def group_versions() -> dict[str, list[str]]:
    """Non-core groups and their versions, in table order."""
    groups: dict[str, list[str]] = {}
    for resource in RESOURCES:
        if resource.group and resource.version not in groups.setdefault(resource.group, []):
            groups[resource.group].append(resource.version)
    return groups


def api_versions(server_address: str) -> dict[str, Any]:
    """`GET /api`: the legacy core group's versions."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def api_group(name: str) -> dict[str, Any] | None:
    """`GET /apis/{group}`, or None for an unknown group."""
    versions = group_versions().get(name)
    if versions is None:
        return None
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": name,
        "versions": entries,
        "preferredVersion": entries[0],
    }


def api_group_list() -> dict[str, Any]:
    """`GET /apis`."""
    groups = []
    for name in group_versions():
        group = api_group(name)
        if group is not None:
            group.pop("kind")
            group.pop("apiVersion")
            groups.append(group)
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_resource_list(group: str, version: str) -> dict[str, Any] | None:
    """`GET /api/v1` or `/apis/{group}/{version}`, or None if that group/version is not served."""
    members = [r for r in RESOURCES if r.group == group and r.version == version]
    if not members:
        return None
    resources: list[dict[str, Any]] = []
    for r in members:
        entry: dict[str, Any] = {
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": list(_VERBS),
        }
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        resources.append(entry)
        for sub in r.subresources:
            verbs = ["get", "patch", "update"] if sub == "status" else ["get"]
            kind = r.kind if sub == "status" else "Pod"
            resources.append(
                {
                    "name": f"{r.plural}/{sub}",
                    "singularName": "",
                    "namespaced": r.namespaced,
                    "kind": kind,
                    "verbs": verbs,
                }
            )
    group_version = f"{group}/{version}" if group else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }
