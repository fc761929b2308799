"""Otterize ClientIntents documents (``k8s.otterize.com/v2beta1`` and ``v1alpha3``) → the one
:class:`~agent.policy.documents.ClientIntents` shape the evaluator reads (``agent.policy.intents``).

Called by ``agent.policy.parsing`` for each ClientIntents object. The shapes are the intents
operator's CRD (``shared/data/clientintents-crd.yaml``): v2beta1 ``spec.workload{name, kind}`` and
``spec.targets[]`` of exactly one of ``kubernetes{name, kind, http[]}``, ``service{name, http[]}``,
``kafka{name, topics[{name, operations}]}`` or a target the check does not judge (internet, aws,
sql, azure, gcp); v1alpha3 ``spec.service{name, kind}`` and ``spec.calls[]`` of ``{name, kind,
type, HTTPResources, kafkaTopics}``. A server name is ``<name>`` in the document's namespace or
``<name>.<namespace>``, split at the first dot as the operator does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.exports.clientintents import HTTP_METHODS, kafka_operations
from agent.policy.documents import ClientIntents, HttpRule, IntentTarget, PolicyRef, TopicRule
from agent.policy.fields import Where, mapping, optional_list, sequence, string, strings

INTENTS_KIND = "ClientIntents"
INTENTS_API_VERSIONS = ("k8s.otterize.com/v2beta1", "k8s.otterize.com/v1alpha3")
PROTECTED_KIND = "ProtectedService"
# The ProtectedService CRD (tests/data/otterize/protectedservices-crd.yaml) serves v2, v1beta1,
# v1alpha3 and v1alpha2; earlier operators served v2beta1 and v2alpha1
PROTECTED_API_VERSIONS = tuple(
    f"k8s.otterize.com/{v}" for v in ("v2", "v2beta1", "v2alpha1", "v1beta1", "v1alpha3", "v1alpha2")
)
_UNJUDGED_V2 = frozenset({"internet", "aws", "sql", "azure", "gcp"})
_TARGETS_V2 = frozenset({"kubernetes", "service", "kafka"}) | _UNJUDGED_V2
_CALL_TYPES = frozenset({"http", "kafka", "database", "aws", "internet", "gcp", "azure"})
_CALL_FIELDS = frozenset(
    {"name", "kind", "type", "HTTPResources", "kafkaTopics", "awsActions", "internet", "databaseResources"}
    | {"azureKeyVaultPolicy", "azureRoles", "gcpPermissions"}
)
_METHODS = frozenset(HTTP_METHODS) | {"ALL"}


def client_intents(
    where: Where, ref: PolicyRef, api_version: str, obj: Mapping[str, Any], path: str
) -> ClientIntents:
    spec_path = f"{path}.spec" if path else "spec"
    if api_version.endswith("/v2beta1"):
        spec = mapping(where, obj.get("spec"), spec_path, frozenset({"workload", "targets"}))
        client = mapping(where, spec.get("workload"), f"{spec_path}.workload", frozenset({"name", "kind"}))
        entries = sequence(where, spec.get("targets"), f"{spec_path}.targets")
        read = _target_v2
        entries_path = f"{spec_path}.targets"
    else:
        spec = mapping(where, obj.get("spec"), spec_path, frozenset({"service", "calls"}))
        client = mapping(where, spec.get("service"), f"{spec_path}.service", frozenset({"name", "kind"}))
        entries = sequence(where, spec.get("calls"), f"{spec_path}.calls")
        read = _call_v1
        entries_path = f"{spec_path}.calls"
    name = string(where, client, "name", spec_path + (".workload" if "targets" in spec else ".service"))
    kind = string(where, client, "kind", spec_path, required=False)
    targets = [read(where, ref.namespace, entry, f"{entries_path}[{i}]") for i, entry in enumerate(entries)]
    return ClientIntents(ref, name, kind, tuple(t for t in targets if t is not None))


def protected_service(where: Where, ref: PolicyRef, obj: Mapping[str, Any], path: str) -> ClientIntents:
    """A ``ProtectedService`` (``spec.name``: a workload of its namespace; ``spec.kind``, where the
    version has it, its kind), which protects its server with no intent naming it: read as
    intents of no client that name the server."""
    spec_path = f"{path}.spec" if path else "spec"
    spec = mapping(where, obj.get("spec"), spec_path, frozenset({"name", "kind"}))
    server = IntentTarget(
        "workload",
        string(where, spec, "name", spec_path),
        ref.namespace,
        workload_kind=string(where, spec, "kind", spec_path, required=False),
    )
    return ClientIntents(ref, "", "", (server,))


def _server(name: str, namespace: str) -> tuple[str, str]:
    server, _, other = name.partition(".")
    return server, (other.split(".")[0] if other else namespace)


def _target_v2(where: Where, namespace: str, value: Any, path: str) -> IntentTarget | None:
    target = mapping(where, value, path, _TARGETS_V2)
    if len(target) != 1:
        where.fail(path, f"must have exactly one of {sorted(_TARGETS_V2)}")
    ((key, body),) = target.items()
    at = f"{path}.{key}"
    if key in _UNJUDGED_V2:
        mapping(where, body, at)
        return None  # Internet, AWS, databases, clouds: not enforced at a server's ingress
    fields = {
        "kubernetes": {"name", "kind", "http"},
        "service": {"name", "http"},
        "kafka": {"name", "topics"},
    }
    body = mapping(where, body, at, frozenset(fields[key]))
    server, server_namespace = _server(string(where, body, "name", at), namespace)
    if key == "kafka":
        return IntentTarget("kafka", server, server_namespace, topics=_topics(where, body, "topics", at))
    return IntentTarget(
        "workload" if key == "kubernetes" else "service",
        server,
        server_namespace,
        workload_kind=string(where, body, "kind", at, required=False),
        http=_http(where, body, "http", at),
    )


def _call_v1(where: Where, namespace: str, value: Any, path: str) -> IntentTarget | None:
    call = mapping(where, value, path, _CALL_FIELDS)
    kind_of_call = string(where, call, "type", path, required=False)
    if kind_of_call and kind_of_call not in _CALL_TYPES:
        where.fail(f"{path}.type", f"{kind_of_call!r} is not one of {sorted(_CALL_TYPES)}")
    if kind_of_call not in {"", "http", "kafka"}:
        return None  # databases, AWS, Internet, clouds: not enforced at a server's ingress
    server, server_namespace = _server(string(where, call, "name", path), namespace)
    kind = string(where, call, "kind", path, required=False)
    if kind_of_call == "kafka":
        return IntentTarget(
            "kafka", server, server_namespace, topics=_topics(where, call, "kafkaTopics", path)
        )
    return IntentTarget(
        "service" if kind == "Service" else "workload",
        server,
        server_namespace,
        workload_kind="" if kind == "Service" else kind,
        http=_http(where, call, "HTTPResources", path),
    )


def _http(where: Where, body: Mapping[str, Any], key: str, path: str) -> tuple[HttpRule, ...]:
    rules = []
    for i, item in enumerate(optional_list(where, body, key, path) or []):
        at = f"{path}.{key}[{i}]"
        resource = mapping(where, item, at, frozenset({"path", "methods"}))
        methods = strings(where, resource.get("methods") or [], f"{at}.methods")
        for j, method in enumerate(methods):
            if method.upper() not in _METHODS:
                where.fail(f"{at}.methods[{j}]", f"{method!r} is not one of {sorted(_METHODS)}")
        rules.append(HttpRule(string(where, resource, "path", at), frozenset(m.upper() for m in methods)))
    return tuple(rules)


def _topics(where: Where, body: Mapping[str, Any], key: str, path: str) -> tuple[TopicRule, ...]:
    rules = []
    for i, item in enumerate(optional_list(where, body, key, path) or []):
        at = f"{path}.{key}[{i}]"
        topic = mapping(where, item, at, frozenset({"name", "operations"}))
        operations = []
        for j, operation in enumerate(strings(where, topic.get("operations") or [], f"{at}.operations")):
            mapped = kafka_operations([operation])
            if not mapped:
                where.fail(f"{at}.operations[{j}]", f"{operation!r} is not a Kafka operation of the CRD")
            operations += mapped
        rules.append(TopicRule(string(where, topic, "name", at), frozenset(operations)))
    return tuple(rules)
