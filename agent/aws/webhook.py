"""The admission webhook's decision: an AdmissionReview's bytes in, the AdmissionReview response out.

Bytes come from :mod:`agent.aws.webhookserver` (HTTPS ``/mutate``, called by kube-apiserver on pod
CREATE); the answer (HTTP status, JSON body, a log-safe summary) goes back to it. The cluster side
(the CA bundle ConfigMap, the forwarder's ClusterIP) is reached only through the injected
:class:`Cluster`: everything here is pure.

Only a v1 Pod CREATE of a pod labelled ``network-mapper.otterize.com/aws-visibility: "true"`` is
patched; anything else is ``allowed`` with no patch, and so is a pod that carries the annotation
``…/aws-visibility-patched`` or the bundle volume already (idempotent). The JSONPatch (RFC 6902,
pointers escaped per RFC 6901; whole arrays/maps added when absent or null, ``-`` appends
otherwise) adds the ConfigMap volume, mounts it read-only in every container and init container,
sets ``AWS_CA_BUNDLE`` (replacing an entry of that name), and sets ``dnsPolicy: None`` with the
forwarder as nameserver and the kubelet's ClusterFirst search path and ``ndots:5``; the pod's own
``dnsConfig`` is merged after them as the kubelet merges it (searches appended without duplicates,
options by name with the pod's value winning), within the API's limits (3 nameservers, 32 searches,
2048 characters) so the pod still validates. The node's search domains, which the kubelet appends
for ClusterFirst, cannot be known here and are left out.

* hostNetwork pods are patched the same way: ``dnsPolicy: None`` gives them the cluster search path,
  i.e. ``ClusterFirstWithHostNet`` semantics.
* ``dnsPolicy`` ``Default`` or ``None`` is the pod's own choice of resolver: the bundle and
  ``AWS_CA_BUNDLE`` are added, DNS is kept, and a warning says its AWS calls are not observed.
* When the cluster side fails the pod is ``allowed`` unpatched with a warning (better created
  unpatched than not at all; failurePolicy is Ignore too). ``dryRun`` reviews get the patch but no
  ConfigMap is written (``sideEffects: NoneOnDryRun``).

Malformed reviews never raise. With a uid to echo, the answer is HTTP 200, ``allowed: false``,
``status: {code: 400, message}``, as Kubernetes' webhook libraries answer what they cannot decode
(kube-apiserver never sends such a review). Without one (not JSON, not an object, no request or
uid): HTTP 400 with a ``v1`` Status. Messages name the field, never its value (env may hold secrets).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from agent.aws.settings import AwsWebhookSettings

API_VERSION = "admission.k8s.io/v1"
LABEL = "network-mapper.otterize.com/aws-visibility"
PATCHED_ANNOTATION = "network-mapper.otterize.com/aws-visibility-patched"
VOLUME_NAME = "network-mapper-aws-ca"
BUNDLE_KEY = "ca-bundle.pem"
BUNDLE_ENV = "AWS_CA_BUNDLE"
MAX_BODY_BYTES = 3 * 1024 * 1024  # kube-apiserver's own request body limit
# The API server's validation limits for a pod's dnsConfig (dnsPolicy None).
MAX_NAMESERVERS = 3
MAX_SEARCHES = 32
MAX_SEARCH_CHARS = 2048
CLUSTER_DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet")

PATCHED, SKIPPED, UNPATCHED, MALFORMED = "patched", "skipped", "unpatched", "malformed"

Obj = dict[str, Any]
_PEM_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----")
_LOG_SAFE = re.compile(r"[^A-Za-z0-9._:/@-]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # what a namespace name is


class MalformedReview(ValueError):
    """The body is not an AdmissionReview this webhook can answer; ``uid`` when one can be echoed."""

    def __init__(self, message: str, uid: str | None = None) -> None:
        super().__init__(message)
        self.uid = uid


class ClusterError(Exception):
    """The namespace's CA bundle ConfigMap or the forwarder's address could not be had."""


class BundleError(ValueError):
    """The proxy CA file holds no PEM certificate."""


class Cluster(Protocol):
    """The cluster side of a patch, implemented over the Kubernetes API by the server."""

    def ensure_bundle(self, namespace: str) -> None:
        """Make the bundle ConfigMap exist in ``namespace`` with the bundle; ClusterError if not."""

    def forwarder_ip(self) -> str:
        """The DNS forwarder's IP; ClusterError when it cannot be had."""


@dataclass(frozen=True, slots=True)
class PatchTarget:
    """What the patch points a pod at: the bundle's ConfigMap and mount, the cluster's DNS domain."""

    configmap: str
    mount_path: str
    cluster_domain: str

    @classmethod
    def from_settings(cls, settings: AwsWebhookSettings) -> PatchTarget:
        return cls(settings.bundle_configmap, settings.mount_path.rstrip("/") or "/", settings.cluster_domain)

    @property
    def bundle_path(self) -> str:
        return f"{self.mount_path.rstrip('/')}/{BUNDLE_KEY}"


@dataclass(frozen=True, slots=True)
class Admission:
    """One answered review: what to send back and a summary for the one log line (names only)."""

    http_status: int
    body: Mapping[str, Any]
    outcome: str  # PATCHED | SKIPPED | UNPATCHED | MALFORMED
    reason: str
    uid: str = ""
    namespace: str = ""
    pod: str = ""


def ca_bundle(proxy_ca_pem: str, system_pem: str) -> str:
    """The pods' trust store: the proxy CA's certificate(s), then the system's. Only CERTIFICATE
    blocks are kept, so a key that shares the proxy CA's file is never distributed."""
    proxy = _PEM_CERTIFICATE.findall(proxy_ca_pem)
    if not proxy:
        raise BundleError("the proxy CA file holds no PEM certificate")
    return "\n".join([*proxy, *_PEM_CERTIFICATE.findall(system_pem)]) + "\n"


def cluster_search(namespace: str, domain: str) -> list[str]:
    return [f"{namespace}.svc.{domain}", f"svc.{domain}", domain]


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


def dns_config(namespace: str, domain: str, forwarder_ip: str, asked: Mapping[str, Any]) -> Obj:
    """The ``dnsConfig`` of ``dnsPolicy: None`` that resolves as ClusterFirst did, through the
    forwarder; ``asked`` is the pod's own (already checked) ``dnsConfig``, merged as the kubelet does."""
    nameservers = _unique([forwarder_ip, *(asked.get("nameservers") or ())])[:MAX_NAMESERVERS]
    searches: list[str] = []
    for search in _unique([*cluster_search(namespace, domain), *(asked.get("searches") or ())]):
        if len(searches) == MAX_SEARCHES or len(" ".join([*searches, search])) > MAX_SEARCH_CHARS:
            break
        searches.append(search)
    options: dict[str, Any] = {"ndots": "5"}
    for option in asked.get("options") or ():
        options[option["name"]] = option.get("value")
    return {
        "nameservers": nameservers,
        "searches": searches,
        "options": [{"name": n} if v is None else {"name": n, "value": v} for n, v in options.items()],
    }


def pointer(*tokens: str | int) -> str:
    """An RFC 6901 JSON pointer: ``~`` → ``~0``, ``/`` → ``~1`` in each token."""
    return "".join("/" + str(t).replace("~", "~0").replace("/", "~1") for t in tokens)


def _add_item(pod_part: Mapping[str, Any], tokens: tuple[str | int, ...], field: str, item: Any) -> Obj:
    """Append ``item`` to the array (or map entry) ``field``: the whole array when it is absent or null."""
    if pod_part.get(field) is None:
        return {"op": "add", "path": pointer(*tokens, field), "value": [item]}
    return {"op": "add", "path": pointer(*tokens, field, "-"), "value": item}


def pod_patch(
    pod: Mapping[str, Any], namespace: str, target: PatchTarget, forwarder_ip: str | None
) -> list[Obj]:
    """The JSONPatch for a (checked) pod; DNS is pointed at ``forwarder_ip`` unless it is None."""
    spec = pod["spec"]
    volume = {
        "name": VOLUME_NAME,
        "configMap": {"name": target.configmap, "items": [{"key": BUNDLE_KEY, "path": BUNDLE_KEY}]},
    }
    mount = {"name": VOLUME_NAME, "mountPath": target.mount_path, "readOnly": True}
    env = {"name": BUNDLE_ENV, "value": target.bundle_path}
    patch = [_add_item(spec, ("spec",), "volumes", volume)]
    for field in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(field) or ()):
            at = ("spec", field, index)
            patch.append(_add_item(container, at, "volumeMounts", mount))
            existing = [i for i, e in enumerate(container.get("env") or ()) if e["name"] == BUNDLE_ENV]
            patch.extend({"op": "replace", "path": pointer(*at, "env", i), "value": env} for i in existing)
            if not existing:
                patch.append(_add_item(container, at, "env", env))
    if forwarder_ip is not None:
        asked = spec.get("dnsConfig") or {}
        config = dns_config(namespace, target.cluster_domain, forwarder_ip, asked)
        patch.append({"op": "add", "path": "/spec/dnsPolicy", "value": "None"})
        patch.append({"op": "add", "path": "/spec/dnsConfig", "value": config})
    if pod["metadata"].get("annotations") is None:
        patch.append({"op": "add", "path": "/metadata/annotations", "value": {PATCHED_ANNOTATION: "true"}})
    else:
        patch.append(
            {"op": "add", "path": pointer("metadata", "annotations", PATCHED_ANNOTATION), "value": "true"}
        )
    return patch


def review_response(
    uid: str,
    patch: Sequence[Mapping[str, Any]] | None = None,
    warnings: Sequence[str] = (),
    error: str | None = None,
) -> Obj:
    """The AdmissionReview answer: allowed (with ``patch`` if any), or refused with ``error``."""
    response: Obj = {"uid": uid, "allowed": error is None}
    if error is not None:
        response["status"] = {"code": 400, "message": error}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(list(patch), separators=(",", ":")).encode()).decode()
    if warnings:
        response["warnings"] = list(warnings)
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}


def error_status(code: int, message: str) -> Obj:
    """A ``v1`` Status: the body of an HTTP error answer that has no review uid to echo."""
    reasons = {400: "BadRequest", 404: "NotFound", 405: "MethodNotAllowed", 411: "LengthRequired"}
    reasons |= {413: "RequestEntityTooLarge", 415: "UnsupportedMediaType"}
    return {
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "message": message,
        "reason": reasons.get(code, "BadRequest"),
        "code": code,
    }


def log_safe(value: object, limit: int = 80) -> str:
    """A name for a log line: no spaces, quotes or newlines (the input is the client's), bounded."""
    return _LOG_SAFE.sub("?", value if isinstance(value, str) else "")[:limit] or "-"


def one_line(text: str, limit: int = 200) -> str:
    """A reason for a log line or a warning: no control characters, bounded."""
    return _CONTROL.sub("?", text)[:limit]


# --- reading the review: every field touched is checked, so any JSON gets an answer ---


def _object(value: Any, where: str, uid: str | None, *, optional: bool = False) -> Obj:
    if value is None and optional:
        return {}
    if not isinstance(value, dict):
        raise MalformedReview(f"{where} is not an object", uid)
    return value


def _objects(value: Any, where: str, uid: str) -> list[Obj]:
    """An optional array of objects (absent and null read as empty)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedReview(f"{where} is not an array", uid)
    return [_object(item, f"{where}[{i}]", uid) for i, item in enumerate(value)]


def _strings(value: Any, where: str, uid: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise MalformedReview(f"{where} is not an array of strings", uid)
    return value


def _named(items: list[Obj], where: str, uid: str) -> None:
    for i, item in enumerate(items):
        if not isinstance(item.get("name"), str):
            raise MalformedReview(f"{where}[{i}].name is not a string", uid)


def _check_pod(pod: Obj, uid: str) -> None:
    """Raise MalformedReview unless every part of the pod the patch reads has the right type."""
    metadata = _object(pod.get("metadata"), "request.object.metadata", uid)
    _object(metadata.get("annotations"), "request.object.metadata.annotations", uid, optional=True)
    spec = _object(pod.get("spec"), "request.object.spec", uid)
    _named(_objects(spec.get("volumes"), "spec.volumes", uid), "spec.volumes", uid)
    if not isinstance(spec.get("dnsPolicy", ""), str):
        raise MalformedReview("spec.dnsPolicy is not a string", uid)
    if not spec.get("containers"):
        raise MalformedReview("spec.containers is empty", uid)
    for field in ("initContainers", "containers"):
        for i, container in enumerate(_objects(spec.get(field), f"spec.{field}", uid)):
            at = f"spec.{field}[{i}]"
            _named(_objects(container.get("env"), f"{at}.env", uid), f"{at}.env", uid)
            mounts = _objects(container.get("volumeMounts"), f"{at}.volumeMounts", uid)
            _named(mounts, f"{at}.volumeMounts", uid)
            if not all(isinstance(m.get("mountPath"), str) for m in mounts):
                raise MalformedReview(f"{at}.volumeMounts has a mountPath that is not a string", uid)
    dns = _object(spec.get("dnsConfig"), "spec.dnsConfig", uid, optional=True)
    _strings(dns.get("nameservers"), "spec.dnsConfig.nameservers", uid)
    _strings(dns.get("searches"), "spec.dnsConfig.searches", uid)
    options = _objects(dns.get("options"), "spec.dnsConfig.options", uid)
    _named(options, "spec.dnsConfig.options", uid)
    if not all(isinstance(o.get("value", ""), str | None) for o in options):
        raise MalformedReview("spec.dnsConfig.options has a value that is not a string", uid)


def _conflict(pod: Obj, target: PatchTarget) -> tuple[str, list[str]] | None:
    """(reason, warnings) when the pod already has the bundle volume, or its mount path is taken."""
    spec = pod["spec"]
    mounts = [
        m
        for c in [*(spec.get("initContainers") or ()), *spec["containers"]]
        for m in c.get("volumeMounts") or ()
    ]
    if any(v["name"] == VOLUME_NAME for v in spec.get("volumes") or ()) or any(
        m["name"] == VOLUME_NAME for m in mounts
    ):
        return "already patched (volume present)", []
    if any(m["mountPath"].rstrip("/") == target.mount_path.rstrip("/") for m in mounts):
        return "mount path in use", [
            f"network-mapper: {target.mount_path} is already mounted; AWS CA not added"
        ]
    return None


def _load(body: bytes) -> tuple[Obj, str]:
    """The review and its uid; MalformedReview (with the uid once known) when it is not one."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise MalformedReview(f"the body is not JSON ({type(exc).__name__})") from None
    if not isinstance(document, dict):
        raise MalformedReview("the body is not an AdmissionReview object")
    request = document.get("request")
    if not isinstance(request, dict):
        raise MalformedReview("the AdmissionReview has no request")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise MalformedReview("the AdmissionReview's request has no uid")
    if document.get("apiVersion") != API_VERSION or document.get("kind") != "AdmissionReview":
        raise MalformedReview(f"only AdmissionReview {API_VERSION} is served", uid)
    return request, uid


def admit(body: bytes, target: PatchTarget, cluster: Cluster) -> Admission:
    """Answer one AdmissionReview body; never raises (malformed bodies get an error answer)."""
    try:
        return _admit(body, target, cluster)
    except MalformedReview as exc:
        if exc.uid is None:
            return Admission(400, error_status(400, str(exc)), MALFORMED, one_line(str(exc)))
        answer = review_response(exc.uid, error=str(exc))
        return Admission(200, answer, MALFORMED, one_line(str(exc)), log_safe(exc.uid))


def _why_not(request: Obj, uid: str, target: PatchTarget) -> tuple[str, list[str]] | None:
    """Why the review gets no patch (reason, warnings), or None for a labelled pod, checked, to patch."""
    kind = _object(request.get("kind"), "request.kind", uid)
    if (kind.get("group"), kind.get("version"), kind.get("kind")) != ("", "v1", "Pod"):
        return "not a pod", []
    if request.get("subResource"):
        return "a pod subresource", []
    if request.get("operation") != "CREATE":
        return "not a create", []
    pod = _object(request.get("object"), "request.object", uid)
    if pod.get("kind", "Pod") != "Pod":
        raise MalformedReview("request.object is not a Pod", uid)
    metadata = _object(pod.get("metadata"), "request.object.metadata", uid)
    labels = _object(metadata.get("labels"), "request.object.metadata.labels", uid, optional=True)
    if labels.get(LABEL) != "true":
        return "not labelled", []
    _check_pod(pod, uid)
    if (metadata.get("annotations") or {}).get(PATCHED_ANNOTATION) == "true":
        return "already patched (annotation)", []
    return _conflict(pod, target)


def _namespace(request: Obj, uid: str) -> str:
    """The pod's namespace: the request's (a pod being created often has no metadata.namespace)."""
    for namespace in (request.get("namespace"), request["object"]["metadata"].get("namespace")):
        if isinstance(namespace, str) and namespace:
            if not _DNS_LABEL.fullmatch(namespace):  # it becomes a search domain and an API path
                raise MalformedReview("the pod's namespace is not a DNS label", uid)
            return namespace
    raise MalformedReview("the review names no namespace for the pod", uid)


def _pod_name(request: Obj) -> str:
    pod = request.get("object")
    metadata = pod.get("metadata") if isinstance(pod, dict) else None
    if not isinstance(metadata, dict):
        return log_safe(request.get("name"))
    return log_safe(metadata.get("name") or request.get("name") or metadata.get("generateName"))


def _admit(body: bytes, target: PatchTarget, cluster: Cluster) -> Admission:
    request, uid = _load(body)
    names = {"uid": log_safe(uid), "namespace": log_safe(request.get("namespace")), "pod": _pod_name(request)}
    why_not = _why_not(request, uid, target)
    if why_not is not None:
        return Admission(200, review_response(uid, warnings=why_not[1]), SKIPPED, why_not[0], **names)
    pod: Obj = request["object"]
    namespace = _namespace(request, uid)
    names["namespace"] = log_safe(namespace)
    policy = pod["spec"].get("dnsPolicy") or "ClusterFirst"
    try:
        if request.get("dryRun") is not True:  # sideEffects: NoneOnDryRun
            cluster.ensure_bundle(namespace)
        forwarder = cluster.forwarder_ip() if policy in CLUSTER_DNS_POLICIES else None
    except ClusterError as exc:
        warning = "network-mapper: pod left unpatched, AWS visibility unavailable"
        reason = f"cluster error: {one_line(str(exc))}"
        return Admission(200, review_response(uid, warnings=[warning]), UNPATCHED, reason, **names)
    patch = pod_patch(pod, namespace, target, forwarder)
    if forwarder is not None:
        return Admission(200, review_response(uid, patch), PATCHED, "dns via forwarder", **names)
    policy = log_safe(policy, 40)
    warning = f"network-mapper: dnsPolicy {policy} kept, so this pod's AWS calls are not observed"
    answer = review_response(uid, patch, [warning])
    return Admission(200, answer, PATCHED, f"dns kept (dnsPolicy {policy})", **names)
