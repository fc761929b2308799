"""Policy files → :class:`~agent.policy.documents.PolicySet`.

Sources are (file label, YAML text) pairs from the CLI (files), the mapper or the cloud (request
bodies). A source holds any number of YAML documents (``---``), each a Kubernetes
``networking.k8s.io/v1`` NetworkPolicy, an Otterize ClientIntents (``k8s.otterize.com/v2beta1`` or
``v1alpha3``, read by ``agent.policy.intentdocs``), an Otterize ``ProtectedService`` or a
``kind: List`` of them; empty documents are
skipped. Everything is checked as the API server would before an object could be enforced: every
problem raises :class:`PolicyError` naming the file, the 1-based document number, the object
and the field path. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from agent.policy.documents import (
    ClientIntents,
    IpBlock,
    NetworkPolicy,
    Peer,
    PolicyError,
    PolicyRef,
    PolicySet,
    PortRule,
    Requirement,
    Rule,
    Selector,
)
from agent.policy.fields import (
    Where,
    describe,
    mapping,
    optional_list,
    optional_mapping,
    sequence,
    string,
    strings,
)
from agent.policy.intentdocs import (
    INTENTS_API_VERSIONS,
    INTENTS_KIND,
    PROTECTED_API_VERSIONS,
    PROTECTED_KIND,
    client_intents,
    protected_service,
)

NETWORK_POLICY_API_VERSION = "networking.k8s.io/v1"
PROTOCOLS = frozenset({"TCP", "UDP", "SCTP"})
OPERATORS = frozenset({"In", "NotIn", "Exists", "DoesNotExist"})
# IANA_SVC_NAME, as Kubernetes validates a named container port
_PORT_NAME = re.compile(r"^(?=.{1,15}$)(?=.*[a-z])(?!.*--)[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_SPEC = frozenset({"podSelector", "policyTypes", "ingress", "egress"})
_SELECTOR = frozenset({"matchLabels", "matchExpressions"})
_EXPRESSION = frozenset({"key", "operator", "values"})
_PEER = frozenset({"podSelector", "namespaceSelector", "ipBlock"})
_PORT = frozenset({"protocol", "port", "endPort"})
_API_VERSIONS = {
    "NetworkPolicy": (NETWORK_POLICY_API_VERSION,),
    INTENTS_KIND: INTENTS_API_VERSIONS,
    PROTECTED_KIND: PROTECTED_API_VERSIONS,
}
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_policies(sources: Iterable[tuple[str, str]]) -> PolicySet:
    """Every policy of every source, in order. Raises :class:`PolicyError` on the first problem."""
    policies: list[NetworkPolicy] = []
    intents: list[ClientIntents] = []
    for source, text in sources:
        for number, document in _documents(source, text):
            where = Where(source, number)
            for path, obj in _objects(where, document):
                parsed = _object(where, path, obj)
                if isinstance(parsed, NetworkPolicy):
                    policies.append(parsed)
                else:
                    intents.append(parsed)
    return PolicySet(tuple(policies), tuple(intents))


def _documents(source: str, text: str) -> Iterable[tuple[int, Any]]:
    """(1-based number, parsed document) of each non-empty YAML document of ``text``."""
    number = 0
    # libyaml's loader when PyYAML has it: exported policy files run to tens of megabytes
    stream = yaml.load_all(text, Loader=_LOADER)
    while True:
        try:
            document = next(stream)
        except StopIteration:
            return
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark or error.context_mark
            line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = error.problem or error.context or "invalid YAML"
            raise PolicyError(f"{source}: document {number + 1}: YAML error{line}: {problem}") from error
        except (yaml.YAMLError, ValueError, RecursionError) as error:
            # ValueError: a scalar YAML reads as a bad date (``2001-02-30``) or number
            raise PolicyError(f"{source}: document {number + 1}: YAML error: {error}") from error
        number += 1
        if document is not None:
            yield number, document


def _objects(where: Where, document: Any) -> list[tuple[str, Mapping[str, Any]]]:
    """A document's objects with their paths: itself, or the items of a ``kind: List``."""
    obj = mapping(where, document, "")
    if obj.get("kind") != "List":
        return [("", obj)]
    items = sequence(where, obj.get("items", []), "items")
    return [(f"items[{i}]", mapping(where, item, f"items[{i}]")) for i, item in enumerate(items)]


def _object(where: Where, path: str, obj: Mapping[str, Any]) -> NetworkPolicy | ClientIntents:
    def at(field: str) -> str:
        return f"{path}.{field}" if path else field

    kind = string(where, obj, "kind", path)
    api_version = string(where, obj, "apiVersion", path)
    if kind == "List":
        where.fail(at("kind"), "a List inside a List is not supported")
    if kind not in _API_VERSIONS:
        where.fail(at("kind"), f"unknown kind {kind!r} (expected one of {', '.join(_API_VERSIONS)})")
    metadata = mapping(where, obj.get("metadata"), at("metadata"))
    name = string(where, metadata, "name", at("metadata"))
    namespace = string(where, metadata, "namespace", at("metadata"), required=False) or "default"
    where = Where(where.source, where.document, f"{kind} {namespace}/{name}")
    expected = _API_VERSIONS[kind]
    if api_version not in expected:
        where.fail(at("apiVersion"), f"{api_version!r} is not an apiVersion of {kind} (expected {expected})")
    ref = PolicyRef(kind, namespace, name, where.source, where.document)
    if kind == INTENTS_KIND:
        return client_intents(where, ref, api_version, obj, path)
    if kind == PROTECTED_KIND:
        return protected_service(where, ref, obj, path)
    return _network_policy(where, ref, obj, at("spec"))


def _network_policy(where: Where, ref: PolicyRef, obj: Mapping[str, Any], path: str) -> NetworkPolicy:
    spec = mapping(where, obj.get("spec"), path, _SPEC)
    selector = optional_mapping(where, spec, "podSelector", path)
    ingress = optional_list(where, spec, "ingress", path)
    egress = optional_list(where, spec, "egress", path)
    types = optional_list(where, spec, "policyTypes", path)
    if types is None:
        # Kubernetes' default: Ingress always, Egress when the policy has egress rules
        kinds = {"Ingress"} | ({"Egress"} if egress else set())
    else:
        kinds = set(strings(where, types, f"{path}.policyTypes"))
        for i, value in enumerate(types):
            if value not in {"Ingress", "Egress"}:
                where.fail(f"{path}.policyTypes[{i}]", f"{value!r} is not Ingress or Egress")
    return NetworkPolicy(
        ref=ref,
        pod_selector=selector_of(where, selector, f"{path}.podSelector"),
        ingress_isolates="Ingress" in kinds,
        egress_isolates="Egress" in kinds,
        ingress=tuple(_rule(where, r, f"{path}.ingress[{i}]", "from") for i, r in enumerate(ingress or [])),
        egress=tuple(_rule(where, r, f"{path}.egress[{i}]", "to") for i, r in enumerate(egress or [])),
    )


def _rule(where: Where, value: Any, path: str, peers_key: str) -> Rule:
    rule = mapping(where, value, path, frozenset({peers_key, "ports"}))
    peers = optional_list(where, rule, peers_key, path)
    ports = optional_list(where, rule, "ports", path)
    return Rule(
        # an absent or empty list means every peer / every port
        peers=tuple(_peer(where, p, f"{path}.{peers_key}[{i}]") for i, p in enumerate(peers))
        if peers
        else None,
        ports=tuple(_port(where, p, f"{path}.ports[{i}]") for i, p in enumerate(ports)) if ports else None,
    )


def _peer(where: Where, value: Any, path: str) -> Peer:
    peer = mapping(where, value, path, _PEER)
    pods = optional_mapping(where, peer, "podSelector", path)
    namespaces = optional_mapping(where, peer, "namespaceSelector", path)
    block = optional_mapping(where, peer, "ipBlock", path, frozenset({"cidr", "except"}))
    if block is not None and (pods is not None or namespaces is not None):
        where.fail(path, "ipBlock cannot be combined with podSelector or namespaceSelector")
    if block is None and pods is None and namespaces is None:
        where.fail(path, "must have a podSelector, a namespaceSelector or an ipBlock")
    return Peer(
        pods=None if pods is None else selector_of(where, pods, f"{path}.podSelector"),
        namespaces=None
        if namespaces is None
        else selector_of(where, namespaces, f"{path}.namespaceSelector"),
        ip_block=None if block is None else _ip_block(where, block, f"{path}.ipBlock"),
    )


def _network(where: Where, value: str, path: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if "/" not in value:
        where.fail(path, f"{value!r} is not a CIDR (address/prefix length)")
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError as error:
        where.fail(path, f"{value!r} is not a CIDR: {error}")


def _ip_block(where: Where, block: Mapping[str, Any], path: str) -> IpBlock:
    cidr = _network(where, string(where, block, "cidr", path), f"{path}.cidr")
    excepted = []
    for i, text in enumerate(strings(where, block.get("except") or [], f"{path}.except")):
        net = _network(where, text, f"{path}.except[{i}]")
        if net.version != cidr.version or not net.subnet_of(cidr) or net == cidr:  # type: ignore[arg-type]
            where.fail(f"{path}.except[{i}]", f"{text!r} is not a strict subset of cidr {cidr}")
        excepted.append(net)
    return IpBlock(cidr, tuple(excepted))


def _port(where: Where, value: Any, path: str) -> PortRule:
    entry = mapping(where, value, path, _PORT)
    protocol = string(where, entry, "protocol", path, required=False) or "TCP"
    if protocol not in PROTOCOLS:
        where.fail(f"{path}.protocol", f"{protocol!r} is not one of {sorted(PROTOCOLS)}")
    port, end = entry.get("port"), entry.get("endPort")
    if port is not None:
        if isinstance(port, str):
            if not _PORT_NAME.match(port):
                where.fail(f"{path}.port", f"{port!r} is not a port number or a port name (IANA_SVC_NAME)")
        elif isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            where.fail(f"{path}.port", f"{port!r} is not a port number (1-65535) or a port name")
    if end is not None:
        if isinstance(end, bool) or not isinstance(end, int) or not 1 <= end <= 65535:
            where.fail(f"{path}.endPort", f"{end!r} is not a port number (1-65535)")
        if not isinstance(port, int):
            where.fail(f"{path}.endPort", "needs a numbered port")
        if end < port:
            where.fail(f"{path}.endPort", f"{end} is less than port {port}")
    return PortRule(protocol, port, end)


def selector_of(where: Where, value: Mapping[str, Any] | None, path: str) -> Selector:
    """A label selector (``None``, like ``{}``, selects everything)."""
    if value is None:
        return Selector()
    mapping(where, value, path, _SELECTOR)
    labels = optional_mapping(where, value, "matchLabels", path) or {}
    for key, label in labels.items():
        if not isinstance(label, str):
            where.fail(f"{path}.matchLabels.{key}", f"must be a string, not {describe(label)}")
    requirements = []
    for i, item in enumerate(optional_list(where, value, "matchExpressions", path) or []):
        at = f"{path}.matchExpressions[{i}]"
        expression = mapping(where, item, at, _EXPRESSION)
        key = string(where, expression, "key", at)
        operator = string(where, expression, "operator", at)
        if operator not in OPERATORS:
            where.fail(f"{at}.operator", f"{operator!r} is not one of In, NotIn, Exists, DoesNotExist")
        values = strings(where, expression.get("values") or [], f"{at}.values")
        if operator in {"In", "NotIn"} and not values:
            where.fail(f"{at}.values", f"must not be empty for operator {operator}")
        if operator in {"Exists", "DoesNotExist"} and values:
            where.fail(f"{at}.values", f"must be empty for operator {operator}")
        requirements.append(Requirement(key, operator, frozenset(values)))
    return Selector(tuple(sorted(labels.items())), tuple(requirements))
