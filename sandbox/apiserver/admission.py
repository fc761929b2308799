"""Validation and defaulting of request bodies before they reach the store.

Bodies come from `handlers.py` (POST/PUT/PATCH) and leave as objects ready for `Store.create` /
`Store.update`. This is where the sandbox imitates the real registries' per-resource strategies:
Service ClusterIP allocation from 10.96.0.0/16 (after admission webhooks, as in the registry), Pod
defaulting (phase, and the spec fields kube's defaulting fills: dnsPolicy, restartPolicy,
imagePullPolicy, ...), Secrets (`stringData` merged into base64 `data` and dropped, type Opaque by
default and immutable), MutatingWebhookConfigurations (`webhookconfig.normalize`), the status
subresource split (a main-resource write keeps the stored status; a status write keeps everything
but status).

Deviation, on purpose: a create keeps the `status` the body carries (the real server drops it),
because the sandbox's pod runner creates pods with status.podIP/phase already known.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import threading
from typing import Any

from sandbox.apiserver import webhookconfig
from sandbox.apiserver.discovery import ResourceType
from sandbox.apiserver.errors import ApiError, bad_request, conflict, invalid

Obj = dict[str, Any]

SERVICE_CIDR = "10.96.0.0/16"
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
SECRET_MAX_BYTES = 1024 * 1024


class ClusterIPAllocator:
    """Hands out Service ClusterIPs: never .0 or .1 (the `kubernetes` Service's), never one in use.

    Allocation rotates through the range instead of reusing the lowest free address, so a
    deleted Service's IP is not immediately handed to the next one (the real allocator is random;
    either way, consumers must not assume reuse is immediate).
    """

    def __init__(self, cidr: str = SERVICE_CIDR) -> None:
        self._network = ipaddress.IPv4Network(cidr)
        self._lock = threading.Lock()
        self._used: set[ipaddress.IPv4Address] = set()
        self._first = self._network.network_address + 2
        self._next = self._first
        self._size = self._network.num_addresses - 3  # minus network, .1, broadcast

    def allocate(self) -> str:
        with self._lock:
            for _ in range(self._size):
                candidate = self._next
                self._next = candidate + 1
                if self._next >= self._network.broadcast_address:
                    self._next = self._first
                if candidate not in self._used:
                    self._used.add(candidate)
                    return str(candidate)
        raise ApiError(500, "InternalError", "failed to allocate a serviceIP: range is full")

    def reserve(self, text: str) -> None:
        """Claim a caller-chosen IP; ValueError says why it cannot be had."""
        address = ipaddress.IPv4Address(text)
        with self._lock:
            if address not in self._network:
                raise ValueError(f"{text}: provided IP is not in the valid range {self._network}")
            if address in self._used:
                raise ValueError(f"{text}: provided IP is already allocated")
            self._used.add(address)

    def release(self, text: str | None) -> None:
        try:
            address = ipaddress.IPv4Address(text or "")
        except ValueError:
            return
        with self._lock:
            self._used.discard(address)


def check_body(rt: ResourceType, body: Any, path_namespace: str | None, path_name: str | None = None) -> Obj:
    """Shape checks every write does: an object of the right kind, in the path's namespace."""
    if not isinstance(body, dict):
        raise bad_request(f"the body of the request must be a JSON object describing a {rt.kind}")
    if body.get("kind") not in (None, "", rt.kind):
        raise bad_request(
            f"the kind in the data ({body['kind']}) does not match the expected kind ({rt.kind})"
        )
    if body.get("apiVersion") not in (None, "", rt.api_version):
        raise bad_request(
            f"the API version in the data ({body['apiVersion']}) does not match the expected API version "
            f"({rt.api_version})"
        )
    metadata = body.setdefault("metadata", {})
    if not isinstance(metadata, dict):
        raise bad_request("metadata must be a JSON object")
    body["kind"], body["apiVersion"] = rt.kind, rt.api_version
    if rt.namespaced:
        given = metadata.get("namespace")
        if given and given != path_namespace:
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        metadata["namespace"] = path_namespace
    else:
        metadata.pop("namespace", None)
    if path_name is not None and metadata.get("name") not in (None, path_name):
        raise bad_request(
            f"the name of the object ({metadata['name']}) does not match the name on the URL ({path_name})"
        )
    if path_name is not None:
        metadata["name"] = path_name
    _check_name(rt, metadata)
    _check_contents(rt, body)
    return body


def _check_contents(rt: ResourceType, body: Obj) -> None:
    metadata = body["metadata"]
    for field in ("labels", "annotations"):
        value = metadata.get(field)
        if value is not None and not (
            isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
        ):
            raise invalid(
                rt.kind, str(metadata.get("name", "")), f"metadata.{field}", "must map strings to strings"
            )
    if rt.plural == "secrets":
        _normalize_secret(body)
    elif rt.group == webhookconfig.GROUP:
        webhookconfig.normalize(body)


def _normalize_secret(secret: Obj) -> None:
    """`stringData` merged into `data` (base64, winning on shared keys) and dropped; type defaulted."""
    data = secret.get("data") or {}
    string_data = secret.pop("stringData", None) or {}
    if not isinstance(data, dict) or not isinstance(string_data, dict):
        raise bad_request("data and stringData of a Secret must be JSON objects")
    data = {key: value or "" for key, value in data.items()}
    for key, value in string_data.items():
        if not isinstance(value, str):
            raise bad_request(f"stringData[{key}] must be a string")
        data[key] = base64.b64encode(value.encode()).decode("ascii")
    secret["type"] = secret.get("type") or "Opaque"
    _check_secret_data(str(secret["metadata"].get("name", "")), secret["type"], data)
    if data:
        secret["data"] = data
    else:
        secret.pop("data", None)  # omitempty, as the real server renders it


def _check_secret_data(name: str, kind: str, data: dict[str, Any]) -> None:
    size = 0
    for key, value in data.items():
        try:
            size += len(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError, TypeError):
            raise bad_request(
                f'Secret in version "v1" cannot be handled as a Secret: data[{key}]: illegal base64 data'
            ) from None
        if not _CONFIG_KEY.match(key):
            raise invalid(
                "Secret",
                name,
                f"data[{key}]",
                f"Invalid value: {key!r}: a valid config key must consist of alphanumeric characters, "
                "'-', '_' or '.'",
            )
    if size > SECRET_MAX_BYTES:
        raise invalid("Secret", name, "data", f"Too long: must have at most {SECRET_MAX_BYTES} bytes")
    if kind == "kubernetes.io/tls":
        for key in ("tls.crt", "tls.key"):
            if key not in data:
                raise invalid("Secret", name, f"data[{key}]", "Required value")


def _check_name(rt: ResourceType, metadata: Obj) -> None:
    name = metadata.get("name")
    if not name:
        if metadata.get("generateName"):
            return
        raise invalid(
            rt.kind, "", "metadata.name", "Required value: name or generateName is required", rt.group
        )
    # Namespaces are DNS-1123 labels, Services DNS-1035 labels, everything else here a subdomain.
    pattern, limit, what = _DNS1123_SUBDOMAIN, 253, "a lowercase RFC 1123 subdomain"
    if rt.plural == "namespaces":
        pattern, limit, what = _DNS1123_LABEL, 63, "a lowercase RFC 1123 label"
    elif rt.plural == "services":
        pattern, limit, what = _DNS1035_LABEL, 63, "a DNS-1035 label"
    if not isinstance(name, str) or len(name) > limit or not pattern.match(name):
        raise invalid(
            rt.kind, str(name), "metadata.name", f"Invalid value: {name!r}: must be {what}", rt.group
        )


def default_fields(rt: ResourceType, obj: Obj) -> Obj:
    """Fill what the real server's defaulting fills (the parts clients here read back), before
    admission webhooks see the object and again after each one patches it."""
    spec = obj.setdefault("spec", {}) if rt.plural not in _SPECLESS else None
    if spec is not None and not isinstance(spec, dict):
        raise bad_request(f"spec of a {rt.kind} must be a JSON object")
    if rt.plural == "pods" and spec is not None:
        _default_pod(obj, spec)
    elif rt.plural == "namespaces":
        obj.setdefault("status", {}).setdefault("phase", "Active")
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"].get(
            "name", ""
        )
    elif rt.plural == "services" and spec is not None:
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
    elif rt.group == "apps" and rt.plural != "daemonsets" and spec is not None:
        spec.setdefault("replicas", 1)
    return obj


# Resources whose objects carry no `spec` at all.
_SPECLESS = frozenset(
    {"endpoints", "configmaps", "events", "endpointslices", "secrets", "mutatingwebhookconfigurations"}
)


def _default_pod(obj: Obj, spec: Obj) -> None:
    # k8s.io/kubernetes/pkg/apis/core/v1/defaults.go, for the fields the sandbox's kubelet and
    # admission webhooks look at.
    status = obj.setdefault("status", {})
    status.setdefault("phase", "Pending")
    if status.get("podIP") and "podIPs" not in status:
        status["podIPs"] = [{"ip": status["podIP"]}]
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        if not isinstance(container, dict):
            continue
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("imagePullPolicy", image_pull_policy(str(container.get("image", ""))))
        for port in container.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")


def image_pull_policy(image: str) -> str:
    """Always for `:latest` or an untagged image, else IfNotPresent (a digest counts as a tag)."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def allocate_cluster_ip(rt: ResourceType, obj: Obj, allocator: ClusterIPAllocator) -> Obj:
    """A Service's ClusterIP: the one asked for (reserved) or a free one; other objects unchanged."""
    spec = obj.get("spec")
    if rt.plural != "services" or not isinstance(spec, dict) or spec.get("type") == "ExternalName":
        return obj
    cluster_ip = spec.get("clusterIP")
    if cluster_ip == "None":
        spec["clusterIPs"] = ["None"]
        return obj
    if cluster_ip:
        try:
            allocator.reserve(str(cluster_ip))
        except ValueError as error:
            raise invalid(rt.kind, obj["metadata"].get("name", ""), "spec.clusterIP", str(error)) from None
    else:
        spec["clusterIP"] = allocator.allocate()
    spec["clusterIPs"] = [spec["clusterIP"]]
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    return obj


def merge_update(rt: ResourceType, old: Obj, new: Obj, subresource: str | None) -> Obj:
    """The object to store for an update of `old` with `new` (PUT body or patched object)."""
    name = str(old["metadata"].get("name", ""))
    wanted = new.get("metadata", {}).get("resourceVersion")
    if wanted and str(wanted) != old["metadata"].get("resourceVersion"):
        raise conflict(rt.plural, name, rt.group)
    if subresource == "status":
        # The status strategy: only status changes; spec and metadata edits are dropped.
        result = dict(old)
        if "status" in new:
            result["status"] = new["status"]
        else:
            result.pop("status", None)
        return result
    if "status" in rt.subresources:
        # The main resource ignores status edits when a status subresource exists.
        if "status" in old:
            new["status"] = old["status"]
        else:
            new.pop("status", None)
    if rt.plural == "services":
        _keep_cluster_ip(rt, old, new)
    elif rt.plural == "secrets":
        _keep_secret_immutables(old, new)
    return new


def _keep_secret_immutables(old: Obj, new: Obj) -> None:
    name = str(old["metadata"].get("name", ""))
    if new.get("type") != old.get("type"):
        raise invalid("Secret", name, "type", f"Invalid value: {new.get('type')!r}: field is immutable")
    if old.get("immutable") and (new.get("data") != old.get("data") or not new.get("immutable")):
        raise invalid("Secret", name, "data", "Forbidden: field is immutable when `immutable` is set")


def _keep_cluster_ip(rt: ResourceType, old: Obj, new: Obj) -> None:
    old_ip = old.get("spec", {}).get("clusterIP")
    spec = new.setdefault("spec", {})
    if not spec.get("clusterIP"):
        spec["clusterIP"] = old_ip
        if "clusterIPs" in old.get("spec", {}):
            spec["clusterIPs"] = old["spec"]["clusterIPs"]
    elif spec["clusterIP"] != old_ip:
        raise invalid(rt.kind, str(old["metadata"].get("name", "")), "spec.clusterIP", "field is immutable")
