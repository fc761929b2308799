"""Edges → Otterize ``ClientIntents`` documents (``k8s.otterize.com/v2beta1`` or ``v1alpha3``).

Data comes from the store's edges (``agent.model.Edge``); the documents go to the CLI
(``network-mapper export``, which writes the files), the mapper's API and the cloud's export
handler. Pure: no I/O, except that :func:`validate` reads the CRD file it is given. :func:`validate`
checks any exporter's documents against the CRD of their kind (KafkaUser, AuthorizationPolicy too).

The shapes follow the intents operator's real CRD (``shared/data/clientintents-crd.yaml``):

* one ClientIntents per client workload, named after it (``<name>-<kind>`` when two kinds of
  workload share a name in one namespace), in the client's namespace;
* a workload target is ``kubernetes{name, kind, http}`` (v1alpha3: a call ``{name, kind}``,
  ``type: http`` with ``HTTPResources`` when HTTP was seen). The name is ``<name>`` in the
  client's namespace and ``<name>.<namespace>`` across namespaces. ``kind`` is kept: Otterize
  guesses the kind when it's missing, and the identity never drops it;
* a ``service{name, http}`` target (v1alpha3: ``kind: Service``) names a Kubernetes Service. It
  is used for identities of kind ``Service`` (a Service with no workload behind it, such as
  ``kubernetes.default``), and for every edge with ``target_service`` when
  ``prefer_services=True``;
* Kafka edges become ``kafka{name: <server>.<namespace>, topics}`` (v1alpha3: ``type: kafka``
  with ``kafkaTopics``), a topic's operations merged over the principals that used it. Only the
  operations the broker allowed are exported: denied ones (``KafkaTopic.denied``) never are, as
  that would grant what was refused. If no allowed topic operation maps to the CRD's enum, the
  edge falls back to a plain workload target, so the connection is still allowed;
* HTTP paths are written as Istio matches them (:func:`agent.exports.istio.path_pattern`: the
  operator copies them into AuthorizationPolicies), so a template ``/orders/{id}`` becomes
  ``/orders/*``; paths that become one merge their methods;
* internet edges become one ``internet`` target per destination: per DNS name
  (``domains: [name]``) or, without a name, per IP (``ips: [ip]``), with ``ports`` being the
  union of the ports seen (omitted when none is known). Resolved IPs of named targets are
  not exported: the operator resolves names itself, and pod-observed IPs go stale;
* AWS edges become one ``aws{arn, actions}`` target per ARN (the CRD field is ``arn``, one
  ARN per target); v1alpha3 has ``{name: <arn>, type: aws, awsActions}``.

Enum mapping (the CRD rejects other values):

* HTTP methods are upper-cased; ``HEAD`` maps to ``GET`` (the CRD has no ``HEAD``, and a
  HEAD is a GET without a body); other methods are dropped. A resource whose observed
  methods are all dropped is dropped; a resource seen with no method keeps ``methods: []``.
* Kafka operations: Kafka's ACL names map to Otterize's (``Read``→``consume``,
  ``Write``→``produce``, ``Describe``→``describe`` ...), case-, ``-`` and ``_``-insensitive;
  unknown ones are dropped, and so is a topic left with none.
"""

from __future__ import annotations

import functools
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.exports.istio import path_pattern
from agent.model import AwsTarget, Edge, HttpResource, InternetTarget, KafkaTopic, WorkloadIdentity

API_GROUP = "k8s.otterize.com"
KIND = "ClientIntents"
VERSIONS = ("v2beta1", "v1alpha3")

HTTP_METHODS = ("GET", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH", "CONNECT")
_HTTP_ALIASES = {"HEAD": "GET"}

# The CRD's enum, in its order: Otterize's own names, then Kafka's ACL operations.
KAFKA_OPERATIONS = ("all", "consume", "produce", "create", "alter", "delete", "describe") + (
    "ClusterAction",
    "DescribeConfigs",
    "AlterConfigs",
    "IdempotentWrite",
)
_KAFKA_ALIASES = {op.lower(): op for op in KAFKA_OPERATIONS} | {"read": "consume", "write": "produce"}


def http_methods(methods: Iterable[str]) -> list[str]:
    """Our methods → the CRD's enum, deduplicated, in the CRD's order (see module docstring)."""
    mapped = {_HTTP_ALIASES.get(m.strip().upper(), m.strip().upper()) for m in methods}
    return [m for m in HTTP_METHODS if m in mapped]


def kafka_operations(operations: Iterable[str]) -> list[str]:
    """Our (or Kafka's) operations → the CRD's enum, deduplicated, in the CRD's order."""
    mapped = {_KAFKA_ALIASES.get(re.sub(r"[-_\s]", "", op).lower()) for op in operations}
    return [op for op in KAFKA_OPERATIONS if op in mapped]


# --------------------------------------------------------------------------- aggregation


@dataclass
class _Client:
    """Everything one client reaches, merged over its edges."""

    # (target, service name or "") → path → methods; no paths: plain network access
    workloads: dict[tuple[WorkloadIdentity, str], dict[str, set[str]]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    kafka: dict[WorkloadIdentity, dict[str, set[str]]] = field(default_factory=lambda: defaultdict(dict))
    domains: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    ips: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    aws: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))


def _add_http(paths: dict[str, set[str]], resources: Iterable[HttpResource]) -> None:
    for resource in resources:
        methods = http_methods(resource.methods)
        if resource.methods and not methods:
            continue
        paths.setdefault(path_pattern(resource.path), set()).update(methods)


def _add_kafka(topics: dict[str, set[str]], observed: Iterable[KafkaTopic]) -> bool:
    added = False
    for topic in observed:
        operations = kafka_operations(topic.operations)  # allowed only: never topic.denied
        if operations:
            topics.setdefault(topic.name, set()).update(operations)
            added = True
    return added


def _aggregate(edges: Iterable[Edge], prefer_services: bool) -> dict[WorkloadIdentity, _Client]:
    clients: dict[WorkloadIdentity, _Client] = defaultdict(_Client)
    for edge in edges:
        calls = clients[edge.client]
        target = edge.target
        if isinstance(target, WorkloadIdentity):
            kafka = bool(edge.kafka_topics) and _add_kafka(calls.kafka[target], edge.kafka_topics)
            if kafka and not edge.http:
                continue
            service = target.name if target.kind == "Service" else ""
            if prefer_services and edge.target_service:
                service = edge.target_service
            _add_http(calls.workloads[(target, service)], edge.http)
        elif isinstance(target, InternetTarget):
            ports = {target.port} if target.port > 0 else set()
            name = target.dns_name.strip().rstrip(".").lower()
            if name:
                calls.domains[name] |= ports
            else:
                for ip in target.ips:
                    calls.ips[ip] |= ports
        elif isinstance(target, AwsTarget):
            calls.aws[target.arn].update(edge.aws_actions)
    return clients


def _qualified(name: str, namespace: str, client: WorkloadIdentity) -> str:
    return name if namespace == client.namespace else f"{name}.{namespace}"


def _http(paths: dict[str, set[str]]) -> list[dict[str, Any]]:
    return [{"path": p, "methods": [m for m in HTTP_METHODS if m in paths[p]]} for p in sorted(paths)]


def _topics(topics: dict[str, set[str]]) -> list[dict[str, Any]]:
    return [
        {"name": t, "operations": [op for op in KAFKA_OPERATIONS if op in topics[t]]} for t in sorted(topics)
    ]


def _internet(domain: str, ip: str, ports: set[int]) -> dict[str, Any]:
    body: dict[str, Any] = {"domains": [domain]} if domain else {"ips": [ip]}
    if ports:
        body["ports"] = sorted(ports)
    return body


# --------------------------------------------------------------------------- documents


def _targets_v2(client: WorkloadIdentity, calls: _Client) -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = []
    for (target, service), paths in sorted(calls.workloads.items()):
        if service:
            body: dict[str, Any] = {"name": _qualified(service, target.namespace, client)}
            key = "service"
        else:
            body = {"name": _qualified(target.name, target.namespace, client)}
            if target.kind:
                body["kind"] = target.kind
            key = "kubernetes"
        if paths:
            body["http"] = _http(paths)
        targets.append({key: body})
    for server, topics in sorted(calls.kafka.items()):
        if topics:
            targets.append(
                {"kafka": {"name": f"{server.name}.{server.namespace}", "topics": _topics(topics)}}
            )
    targets += [{"internet": _internet(d, "", calls.domains[d])} for d in sorted(calls.domains)]
    targets += [{"internet": _internet("", ip, calls.ips[ip])} for ip in sorted(calls.ips)]
    for arn, actions in sorted(calls.aws.items()):
        aws: dict[str, Any] = {"arn": arn}
        if actions:
            aws["actions"] = sorted(actions)
        targets.append({"aws": aws})
    return targets


def _calls_v1(client: WorkloadIdentity, calls: _Client) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    for (target, service), paths in sorted(calls.workloads.items()):
        call: dict[str, Any] = {"name": _qualified(service or target.name, target.namespace, client)}
        kind = "Service" if service else target.kind
        if kind:
            call["kind"] = kind
        if paths:
            call["type"] = "http"
            call["HTTPResources"] = _http(paths)
        result.append(call)
    for server, topics in sorted(calls.kafka.items()):
        if topics:
            name = f"{server.name}.{server.namespace}"
            result.append({"name": name, "type": "kafka", "kafkaTopics": _topics(topics)})
    result += [
        {"type": "internet", "internet": _internet(d, "", calls.domains[d])} for d in sorted(calls.domains)
    ]
    result += [{"type": "internet", "internet": _internet("", ip, calls.ips[ip])} for ip in sorted(calls.ips)]
    for arn, actions in sorted(calls.aws.items()):
        call = {"name": arn, "type": "aws"}
        if actions:
            call["awsActions"] = sorted(actions)
        result.append(call)
    return result


def _document_names(clients: Iterable[WorkloadIdentity]) -> dict[WorkloadIdentity, str]:
    """``<name>``, or ``<name>-<kind>`` when kinds of one name share a namespace."""
    by_name: dict[tuple[str, str], list[WorkloadIdentity]] = defaultdict(list)
    for client in clients:
        by_name[(client.namespace, client.name)].append(client)
    names = {}
    for group in by_name.values():
        for client in group:
            clash = len(group) > 1 and client.kind
            names[client] = f"{client.name}-{client.kind.lower()}" if clash else client.name
    return names


def client_intents(
    edges: Iterable[Edge], version: str = "v2beta1", *, prefer_services: bool = False
) -> list[dict[str, Any]]:
    """One ClientIntents per client workload, sorted by (namespace, name, kind).

    ``version`` is ``"v2beta1"`` (the operator's current format) or ``"v1alpha3"``.
    With ``prefer_services``, targets reached through a Kubernetes Service
    (``Edge.target_service``) name that Service instead of the workload behind it.
    Clients with nothing exportable get no document.
    """
    if version not in VERSIONS:
        raise ValueError(f"unsupported ClientIntents version {version!r}; expected one of {VERSIONS}")
    clients = _aggregate(edges, prefer_services)
    names = _document_names(clients)
    documents: list[dict[str, Any]] = []
    for client in sorted(clients):
        workload: dict[str, Any] = {"name": client.name}
        if client.kind:
            workload["kind"] = client.kind
        if version == "v2beta1":
            spec: dict[str, Any] = {"workload": workload, "targets": _targets_v2(client, clients[client])}
            entries = spec["targets"]
        else:
            spec = {"service": workload, "calls": _calls_v1(client, clients[client])}
            entries = spec["calls"]
        if not entries:
            continue
        documents.append(
            {
                "apiVersion": f"{API_GROUP}/{version}",
                "kind": KIND,
                "metadata": {"name": names[client], "namespace": client.namespace},
                "spec": spec,
            }
        )
    return documents


# --------------------------------------------------------------------------- validation

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _strict(schema: Any) -> Any:
    """Reject unknown fields, as the API server does under ``kubectl --validate=strict``."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def crd_schemas(crd: Mapping[str, Any]) -> dict[str, Any]:
    """A parsed CRD → ``{version: openAPIV3Schema}``."""
    return {
        v["name"]: v["schema"]["openAPIV3Schema"]
        for v in crd.get("spec", {}).get("versions", [])
        if "schema" in v and "openAPIV3Schema" in v["schema"]
    }


@functools.lru_cache(maxsize=8)
def _load_crd(path: str) -> dict[str, Any]:
    import yaml

    with Path(path).open(encoding="utf-8") as stream:
        loaded: dict[str, Any] = yaml.safe_load(stream)
    return loaded


def _object_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A CRD's root schema with what every object has: Istio's CRDs leave out the ``apiVersion``,
    ``kind`` and ``metadata`` that the API server always accepts (strictness would reject them)."""
    implicit = {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}}
    return {**schema, "properties": {**implicit, **schema.get("properties", {})}}


def validate(
    document: Mapping[str, Any], crd: str | os.PathLike[str] | Mapping[str, Any], *, strict: bool = True
) -> list[str]:
    """Problems with a ``document`` against the CRD of its kind (a path or the parsed CRD): a
    ClientIntents against the intents operator's, a KafkaUser against Strimzi's, an
    AuthorizationPolicy against Istio's.

    Checks apiVersion (the CRD's group and one of its versions with a schema) and kind, metadata
    name and namespace (DNS-1123) and label values, and the version's ``openAPIV3Schema`` with
    ``jsonschema``; ``strict`` also rejects unknown fields, as ``kubectl apply`` does by default.
    ``x-kubernetes-*`` extensions (CEL rules) are not evaluated. Returns ``[]`` when the document is
    valid. Needs ``jsonschema`` (a dev dependency).
    """
    import jsonschema  # type: ignore[import-untyped, unused-ignore]

    parsed = crd if isinstance(crd, Mapping) else _load_crd(os.fspath(crd))
    schemas = crd_schemas(parsed)
    crd_spec = parsed.get("spec", {})
    crd_group, crd_kind = crd_spec.get("group", API_GROUP), crd_spec.get("names", {}).get("kind", KIND)
    api_version = str(document.get("apiVersion", ""))
    group, _, version = api_version.partition("/")
    problems: list[str] = []
    if group != crd_group or version not in schemas:
        return [f"apiVersion: {api_version!r} is not one of {sorted(f'{crd_group}/{v}' for v in schemas)}"]
    if document.get("kind") != crd_kind:
        problems.append(f"kind: {document.get('kind')!r} is not {crd_kind!r}")
    problems += _metadata_problems(document.get("metadata"))
    schema = _object_schema(schemas[version])
    validator = jsonschema.Draft7Validator(_strict(schema) if strict else schema)
    for error in sorted(validator.iter_errors(dict(document)), key=lambda e: list(map(str, e.absolute_path))):
        where = ".".join(str(p) for p in error.absolute_path) or "<root>"
        problems.append(f"{where}: {error.message}")
    return problems


_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _metadata_problems(metadata: Any) -> list[str]:
    metadata = metadata if isinstance(metadata, Mapping) else {}
    problems = []
    name, namespace = metadata.get("name"), metadata.get("namespace")
    if not (isinstance(name, str) and len(name) <= 253 and DNS_SUBDOMAIN.match(name)):
        problems.append(f"metadata.name: {name!r} is not a DNS-1123 subdomain")
    if namespace is not None and not (
        isinstance(namespace, str) and len(namespace) <= 63 and _DNS_LABEL.match(namespace)
    ):
        problems.append(f"metadata.namespace: {namespace!r} is not a DNS-1123 label")
    labels = metadata.get("labels") or {}
    for key, value in labels.items() if isinstance(labels, Mapping) else ():
        if not (isinstance(value, str) and len(value) <= 63 and _LABEL_VALUE.match(value)):
            problems.append(f"metadata.labels.{key}: {value!r} is not a label value")
    return problems
