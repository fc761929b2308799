"""Edges → Istio ``security.istio.io/v1`` AuthorizationPolicies that allow the observed HTTP calls.

Data comes from the store's edges (``agent.model.Edge``) whose ``http`` resources the Istio watcher
filled from the sidecars' ``istio_requests_total`` (path, method, source principal); the policies go
to the CLI (``network-mapper export --format istio``) and the cloud's export handler
(``format=istio``). Pure: no I/O. :func:`path_pattern`, Istio's form of an observed path, is also
what the ClientIntents export writes (the intents operator copies those paths into Istio policies).

Rules:

* one ``ALLOW`` policy per server workload with observed HTTP resources, in the server's namespace,
  named as its NetworkPolicy is (``access-to-<server>-from-observed-clients``:
  :func:`agent.exports.networkpolicy.policy_name`), labelled ``app.kubernetes.io/managed-by``;
* it selects the server's pods by ``labels_of(server)``, as the NetworkPolicy export does: the
  caller that knows the cluster (the CLI, through the mapper) passes the pods' real labels; the
  default is ``app.kubernetes.io/name: <name>``, which the user must check. A server without labels
  gets no policy: a policy without a selector applies to every workload of its namespace;
* one rule per client workload: ``from`` the source principals it was seen calling as, in Istio's
  form (``spiffe://`` dropped: ``cluster.local/ns/<ns>/sa/<sa>``), or, when none was seen, its
  namespace (``source.namespaces``). Both are mTLS-only fields (Istio derives them from the peer
  certificate), so a client whose requests really are plaintext matches neither and is refused once
  the policy selects the server: the policy assumes the mesh's mTLS (STRICT, or the client moved to
  a sidecar);
* ``to``: one operation per set of methods, holding the paths observed with exactly those methods
  (one operation listing every path and every method would allow each method on each path). Methods
  are upper-cased (Istio compares them literally); a path seen without a method allows any;
* targets that are not workloads, identities of kind ``Service``, and edges without HTTP resources
  give nothing. Only what the sidecars reported is allowed: nothing here widens a rule.

Path templates: the Istio watcher writes a segment of IDs as ``{id}`` (any segment holding ``{`` or
``}`` is one). Istio would take ``{id}`` for a malformed template, so :func:`path_pattern` writes a
template in the last segment as a prefix (``/api/orders/{id}`` → ``/api/orders/*``) and any other as
Istio's one-segment template (``/api/orders/{id}/items`` → ``/api/orders/{*}/items``; with both, the
last one as ``{*}`` too, since Istio does not mix templates with ``*`` prefixes). Templates need
Istio 1.22, as the ``v1`` API does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.exports.networkpolicy import MANAGED_BY, LabelsOf, default_labels, policy_name
from agent.model import Edge, WorkloadIdentity

API_VERSION = "security.istio.io/v1"
KIND = "AuthorizationPolicy"
SPIFFE = "spiffe://"
SEGMENT_TEMPLATE = "{*}"


def _is_template(segment: str) -> bool:
    return "{" in segment or "}" in segment


def path_pattern(path: str) -> str:
    """An observed path (maybe with ``{id}`` segments) → the path pattern Istio matches it with."""
    segments = path.split("/")
    templated = [i for i, segment in enumerate(segments) if _is_template(segment)]
    if not templated:
        return path
    if templated == [len(segments) - 1]:
        return "/".join(segments[:-1]) + "/*"
    return "/".join(SEGMENT_TEMPLATE if _is_template(s) else s for s in segments)


def istio_principal(principal: str) -> str:
    """``spiffe://cluster.local/ns/x/sa/y`` → ``cluster.local/ns/x/sa/y``, Istio's ``principals`` form."""
    return principal.removeprefix(SPIFFE)


@dataclass
class _Calls:
    """What one client was seen doing on one server, merged over its edges."""

    principals: set[str] = field(default_factory=set)
    methods: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # path → methods
    any_method: set[str] = field(default_factory=set)  # paths seen without a method


def _aggregate(edges: Iterable[Edge]) -> dict[WorkloadIdentity, dict[WorkloadIdentity, _Calls]]:
    servers: dict[WorkloadIdentity, dict[WorkloadIdentity, _Calls]] = defaultdict(lambda: defaultdict(_Calls))
    for edge in edges:
        server = edge.target
        if not edge.http or not isinstance(server, WorkloadIdentity) or server.kind == "Service":
            continue
        calls = servers[server][edge.client]
        for resource in edge.http:
            path = path_pattern(resource.path)
            methods = {m.strip().upper() for m in resource.methods if m.strip()}
            if methods:
                calls.methods[path] |= methods
            else:
                calls.any_method.add(path)
            calls.principals.update(istio_principal(p) for p in resource.principals if p)
    return servers


def _operations(calls: _Calls) -> list[dict[str, Any]]:
    by_methods: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for path in sorted(set(calls.methods) | calls.any_method):
        methods = () if path in calls.any_method else tuple(sorted(calls.methods[path]))
        by_methods[methods].append(path)
    operations = []
    for methods, paths in sorted(by_methods.items(), key=lambda item: (item[1], item[0])):
        operation: dict[str, Any] = {"paths": paths}
        if methods:
            operation["methods"] = list(methods)
        operations.append({"operation": operation})
    return operations


def _rule(client: WorkloadIdentity, calls: _Calls) -> dict[str, Any]:
    source: dict[str, Any] = (
        {"principals": sorted(calls.principals)} if calls.principals else {"namespaces": [client.namespace]}
    )
    return {"from": [{"source": source}], "to": _operations(calls)}


def _selector(labels: Mapping[str, str]) -> dict[str, Any]:
    return {"matchLabels": {k: labels[k] for k in sorted(labels)}}


def authorization_policies(edges: Iterable[Edge], labels_of: LabelsOf | None = None) -> list[dict[str, Any]]:
    """ALLOW AuthorizationPolicies, one per server workload with observed HTTP calls, sorted by
    (namespace, name, kind); see the module docstring."""
    labels_of = labels_of or default_labels
    servers = _aggregate(edges)
    kinds_of_name: dict[tuple[str, str], int] = defaultdict(int)
    for server in servers:
        kinds_of_name[(server.namespace, server.name)] += 1
    policies: list[dict[str, Any]] = []
    for server in sorted(servers):
        labels = labels_of(server)
        if not labels:
            continue
        clients = servers[server]
        name = policy_name(server, qualify_kind=kinds_of_name[(server.namespace, server.name)] > 1)
        policies.append(
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "metadata": {"name": name, "namespace": server.namespace, "labels": dict(MANAGED_BY)},
                "spec": {
                    "selector": _selector(labels),
                    "action": "ALLOW",
                    "rules": [_rule(client, clients[client]) for client in sorted(clients)],
                },
            }
        )
    return policies
