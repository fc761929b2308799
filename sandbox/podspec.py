"""A stored pod → what the sandbox's kubelet runs: processes, environment, mounted files, resolv.conf.

Data comes from the API server: the pod as stored (after any mutating admission webhook patched it),
and the Secrets and ConfigMaps it refers to, looked up through the callables the caller passes. It
goes to :mod:`sandbox.kubelet` (one :class:`~sandbox.kubelet.ContainerSpec` per container, with its
mounts) and to :func:`sandbox.network.write_resolv_conf`. Pure: no I/O.

What is honoured, as the kubelet does it:

* ``command``/``args``: the sandbox's images are Python: a container's command is either
  ``["python", "-m", <module>]`` or the name of one of the product's console scripts (what the
  agent image has on its ``PATH``: ``network-mapper-mapper``, ...), found in ``scripts``; its args
  follow; ``$(VAR)`` references in args are expanded from the container's env.
* the service account: unless the pod sets ``automountServiceAccountToken: false``, every
  container gets the ``kube-api-access`` volume at ``/var/run/secrets/kubernetes.io/serviceaccount``
  (``token``, ``ca.crt``, ``namespace``), and every pod ``KUBERNETES_SERVICE_HOST``/``_PORT``: what
  the ``kubernetes`` client's in-cluster configuration reads.
* ``persistentVolumeClaim`` volumes: a directory per claim that outlives the pod (``PodRun.claims``).
* probes: ``httpGet`` readiness and liveness probes (named or numbered ports) become
  :class:`Probe` s of each container, for the kubelet to run.
* ``env``: ``value``, ``valueFrom.secretKeyRef`` / ``configMapKeyRef`` (a missing optional key is
  left out; a missing required one is a :class:`PodSpecError`, as the kubelet refuses to start the
  container), ``valueFrom.fieldRef`` for ``metadata.name``, ``metadata.namespace``,
  ``status.podIP``, ``spec.nodeName``, ``status.hostIP``; ``envFrom`` is not used by the sandbox's
  pods and is refused rather than ignored.
* ``volumes`` of kind ``secret`` and ``configMap`` (with ``items`` to pick and rename keys) become
  files; ``emptyDir`` an empty directory; each ``volumeMount`` of a container binds one of them at
  its ``mountPath`` (``readOnly`` honoured), ``subPath`` not supported. Init containers are refused.
* DNS: ``dnsPolicy`` ``ClusterFirst`` (the default) gives the cluster DNS, the namespace's search
  path and ``ndots:5``; ``ClusterFirstWithHostNet`` the same for hostNetwork pods; ``Default`` on a
  hostNetwork pod the node's; ``None`` exactly ``dnsConfig``; other policies merge ``dnsConfig``'s
  nameservers, searches and options after the policy's own.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Obj = Mapping[str, Any]
Lookup = Callable[[str, str], Mapping[str, bytes] | None]
"""(namespace, name) → the object's data (values as bytes), or None when it does not exist."""


_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


@dataclass(frozen=True, slots=True)
class Sources:
    """Where Secrets' and ConfigMaps' data come from (the API server, or a test's dicts)."""

    secrets: Lookup
    config_maps: Lookup


class PodSpecError(ValueError):
    """The pod cannot be started as stored: a referenced Secret/ConfigMap or key is missing, or it
    uses something the sandbox's kubelet does not implement."""


@dataclass(frozen=True, slots=True)
class Mount:
    """One volume bound into a container: the volume's name, where, and whether read-only."""

    volume: str
    path: str
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class Probe:
    """An ``httpGet`` probe, its port resolved to a number."""

    path: str
    port: int
    scheme: str = "HTTP"
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    failure_threshold: int = 3


@dataclass(frozen=True, slots=True)
class ContainerRun:
    name: str
    argv: tuple[str, ...]  # the interpreter's arguments: ("-m", module, *args) or (script, *args)
    env: Mapping[str, str]
    mounts: tuple[Mount, ...] = ()
    readiness: Probe | None = None
    liveness: Probe | None = None


@dataclass(frozen=True, slots=True)
class ApiAccess:
    """What a pod's service account gives it: the API's in-cluster address, its CA and a token."""

    host: str
    port: int
    ca_pem: bytes
    token: str


SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
API_ACCESS_VOLUME = "kube-api-access"


@dataclass(frozen=True, slots=True)
class ResolvConf:
    nameservers: tuple[str, ...]
    searches: tuple[str, ...]
    options: tuple[str, ...]

    def text(self) -> str:
        lines = [f"nameserver {n}" for n in self.nameservers]
        if self.searches:
            lines.append("search " + " ".join(self.searches))
        if self.options:
            lines.append("options " + " ".join(self.options))
        return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class PodRun:
    containers: tuple[ContainerRun, ...]
    volumes: Mapping[str, Mapping[str, bytes]]  # volume name → file name → content
    resolv: ResolvConf
    claims: Mapping[str, str] = field(default_factory=dict)  # volume name → PersistentVolumeClaim name
    restart_policy: str = "Always"


@dataclass(frozen=True, slots=True)
class ClusterDns:
    """What the kubelet is configured with: the cluster DNS address and domain, the node's resolver."""

    server: str
    domain: str
    node_nameservers: tuple[str, ...] = ()


def cluster_search(namespace: str, domain: str) -> tuple[str, ...]:
    """The search path the kubelet gives a ClusterFirst pod of ``namespace``."""
    return (f"{namespace}.svc.{domain}", f"svc.{domain}", domain)


def resolv_conf(pod: Obj, dns: ClusterDns) -> ResolvConf:
    spec = pod.get("spec") or {}
    namespace = (pod.get("metadata") or {}).get("namespace", "default")
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    host_network = bool(spec.get("hostNetwork"))
    config = spec.get("dnsConfig") or {}
    options = [
        f"{o['name']}:{o['value']}" if o.get("value") is not None else str(o["name"])
        for o in config.get("options") or ()
    ]
    extra = ResolvConf(tuple(config.get("nameservers") or ()), tuple(config.get("searches") or ()), ())
    if policy == "None":
        return ResolvConf(extra.nameservers, extra.searches, tuple(options))
    cluster = policy == "ClusterFirstWithHostNet" or (policy == "ClusterFirst" and not host_network)
    if cluster:
        base = ResolvConf((dns.server,), cluster_search(namespace, dns.domain), ("ndots:5",))
    else:
        base = ResolvConf(dns.node_nameservers, (), ())
    names = {o.split(":")[0] for o in options}
    return ResolvConf(
        (*base.nameservers, *extra.nameservers),
        (*base.searches, *(s for s in extra.searches if s not in base.searches)),
        (*(o for o in base.options if o.split(":")[0] not in names), *options),
    )


def _key(lookup: Lookup, kind: str, namespace: str, ref: Obj) -> str | None:
    data = lookup(namespace, ref["name"])
    if data is None or ref["key"] not in data:
        if ref.get("optional"):
            return None
        raise PodSpecError(f"{kind} {namespace}/{ref['name']} has no key {ref['key']!r}")
    return data[ref["key"]].decode()


def _env(
    container: Obj, pod: Obj, pod_ip: str, sources: Sources, base: Mapping[str, str], *, host_ip: str = ""
) -> dict[str, str]:
    if container.get("envFrom"):
        raise PodSpecError(f"container {container['name']}: envFrom is not supported by the sandbox")
    meta = pod.get("metadata") or {}
    namespace = meta.get("namespace", "default")
    fields = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": namespace,
        "status.podIP": pod_ip,
        "spec.nodeName": (pod.get("spec") or {}).get("nodeName", ""),
        "status.hostIP": host_ip,
    }
    env = dict(base)
    for item in container.get("env") or ():
        source = item.get("valueFrom")
        if source is None:
            env[item["name"]] = _VAR_REF.sub(lambda m: env.get(m[1], m[0]), str(item.get("value", "")))
            continue
        value: str | None
        if "secretKeyRef" in source:
            value = _key(sources.secrets, "Secret", namespace, source["secretKeyRef"])
        elif "configMapKeyRef" in source:
            value = _key(sources.config_maps, "ConfigMap", namespace, source["configMapKeyRef"])
        elif "fieldRef" in source and source["fieldRef"]["fieldPath"] in fields:
            value = fields[source["fieldRef"]["fieldPath"]]
        else:
            raise PodSpecError(f"env {item['name']}: unsupported valueFrom {sorted(source)}")
        if value is not None:
            env[item["name"]] = value
    return env


def _argv(container: Obj, env: Mapping[str, str], scripts: Mapping[str, str]) -> tuple[str, ...]:
    command = list(container.get("command") or ())
    args = [_VAR_REF.sub(lambda m: env.get(m[1], m[0]), a) for a in container.get("args") or ()]
    if command[:2] == ["python", "-m"] and len(command) >= 3:
        return ("-m", *command[2:], *args)
    if len(command) >= 1 and command[0] in scripts:
        return (scripts[command[0]], *command[1:], *args)
    raise PodSpecError(f"container {container['name']}: command {command!r} is not an image of the sandbox")


def _probe(container: Obj, key: str) -> Probe | None:
    probe = container.get(key)
    if not probe:
        return None
    get = probe.get("httpGet")
    if get is None:
        raise PodSpecError(f"container {container['name']}: only httpGet {key}s are run by the sandbox")
    port = get["port"]
    if isinstance(port, str):
        named = {p.get("name"): p["containerPort"] for p in container.get("ports") or ()}
        if port not in named:
            raise PodSpecError(f"container {container['name']}: {key} names no port {port!r}")
        port = named[port]
    return Probe(
        get.get("path", "/"),
        int(port),
        get.get("scheme", "HTTP"),
        float(probe.get("initialDelaySeconds", 0)),
        float(probe.get("periodSeconds", 10)),
        float(probe.get("timeoutSeconds", 1)),
        int(probe.get("failureThreshold", 3)),
    )


def _volume_files(volume: Obj, namespace: str, sources: Sources) -> dict[str, bytes]:
    if "emptyDir" in volume or "persistentVolumeClaim" in volume:
        return {}
    for kind, lookup, ref_key, name_key in (
        ("Secret", sources.secrets, "secret", "secretName"),
        ("ConfigMap", sources.config_maps, "configMap", "name"),
    ):
        if ref_key not in volume:
            continue
        ref = volume[ref_key]
        data = lookup(namespace, ref[name_key])
        if data is None:
            if ref.get("optional"):
                return {}
            raise PodSpecError(f"volume {volume['name']}: {kind} {namespace}/{ref[name_key]} not found")
        items = ref.get("items")
        if not items:
            return dict(data)
        files = {}
        for item in items:
            if item["key"] not in data:
                raise PodSpecError(f"volume {volume['name']}: {kind} has no key {item['key']!r}")
            files[item["path"]] = data[item["key"]]
        return files
    raise PodSpecError(
        f"volume {volume.get('name')}: only secret, configMap, emptyDir and persistentVolumeClaim"
        " are supported"
    )


def _mounts(container: Obj, volumes: Mapping[str, Any]) -> tuple[Mount, ...]:
    mounts = []
    for m in container.get("volumeMounts") or ():
        if m.get("subPath"):
            raise PodSpecError(f"container {container['name']}: subPath mounts are not supported")
        if m["name"] not in volumes:
            raise PodSpecError(f"container {container['name']}: no volume {m['name']!r}")
        mounts.append(Mount(m["name"], m["mountPath"], bool(m.get("readOnly"))))
    return tuple(mounts)


def pod_run(
    pod: Obj,
    pod_ip: str,
    dns: ClusterDns,
    sources: Sources,
    base_env: Mapping[str, str] | None = None,
    *,
    api: ApiAccess | None = None,
    scripts: Mapping[str, str] | None = None,
    host_ip: str = "",
) -> PodRun:
    """What to run for ``pod`` as stored. ``base_env`` is what the image sets (overridden by the spec);
    ``api`` what the service account gives (None: no API access at all); ``scripts`` the console
    scripts on the image's PATH (name → file); ``host_ip`` the address of the pod's node."""
    spec = pod.get("spec") or {}
    namespace = (pod.get("metadata") or {}).get("namespace", "default")
    if spec.get("initContainers"):
        raise PodSpecError("init containers are not run by the sandbox's kubelet")
    volumes = {v["name"]: _volume_files(v, namespace, sources) for v in spec.get("volumes") or ()}
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in spec.get("volumes") or ()
        if "persistentVolumeClaim" in v
    }
    env_base = dict(base_env or {})
    automount = api is not None and spec.get("automountServiceAccountToken") is not False
    if api is not None:
        env_base |= {"KUBERNETES_SERVICE_HOST": api.host, "KUBERNETES_SERVICE_PORT": str(api.port)}
    if api is not None and automount:
        volumes[API_ACCESS_VOLUME] = {
            "token": api.token.encode(),
            "ca.crt": api.ca_pem,
            "namespace": namespace.encode(),
        }
    containers = []
    for c in spec.get("containers") or ():
        env = _env(c, pod, pod_ip, sources, env_base, host_ip=host_ip)
        mounts = _mounts(c, volumes)
        if automount and all(m.path != SERVICE_ACCOUNT_DIR for m in mounts):
            mounts += (Mount(API_ACCESS_VOLUME, SERVICE_ACCOUNT_DIR, read_only=True),)
        argv = _argv(c, env, scripts or {})
        containers.append(
            ContainerRun(
                c["name"], argv, env, mounts, _probe(c, "readinessProbe"), _probe(c, "livenessProbe")
            )
        )
    return PodRun(
        tuple(containers), volumes, resolv_conf(pod, dns), claims, spec.get("restartPolicy") or "Always"
    )


def secret_data(obj: Obj | None) -> dict[str, bytes] | None:
    """A Secret as the API returns it (``data`` base64) → its decoded data."""
    if obj is None:
        return None
    return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}


def config_map_data(obj: Obj | None) -> dict[str, bytes] | None:
    if obj is None:
        return None
    out = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
    out.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return out
