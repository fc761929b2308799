"""Edges → Kubernetes ``networking.k8s.io/v1`` NetworkPolicies that admit the observed traffic.

Data comes from the store's edges (``agent.model.Edge``); the policies go to the CLI
(``network-mapper export --format networkpolicy``, which writes the files), the mapper's API
and the cloud's export handler. Pure: no I/O.

Rules:

* one **ingress** policy per server workload (a ``WorkloadIdentity`` target), in the server's
  namespace, named ``access-to-<server>-from-observed-clients`` (a DNS-1123 label of at most
  63 characters: dots become dashes, longer names are cut and end in 8 hex digits of a hash;
  ``<server>-<kind>`` when kinds of one name share a namespace);
* pods are selected by labels from ``labels_of(workload)``. An edge carries no pod labels,
  so the caller that knows the cluster (the mapper) passes them; the default selects
  ``app.kubernetes.io/name: <workload name>``, the recommended Kubernetes label, which the
  user must check matches their pods;
* one ``from`` peer per observed client: its ``podSelector``, plus a ``namespaceSelector`` on
  ``kubernetes.io/metadata.name`` (set by the API server on every namespace) when the client
  lives in another namespace. A client without labels is admitted by its whole namespace
  (broader, but never blocks observed traffic); a server without labels gets no policy
  (an empty podSelector would select, and isolate, every pod of its namespace);
* ports are left unset (all ports from those clients): edges carry no server ports today;
* targets that are not workloads (internet, AWS, identities of kind ``Service``) get nothing:
  they are not pods in the cluster. Egress is not restricted.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from agent.model import Edge, WorkloadIdentity

LabelsOf = Callable[[WorkloadIdentity], Mapping[str, str]]

DEFAULT_SELECTOR_LABEL = "app.kubernetes.io/name"
NAMESPACE_LABEL = "kubernetes.io/metadata.name"
MANAGED_BY = {"app.kubernetes.io/managed-by": "network-mapper"}
MAX_NAME = 63


_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def default_labels(workload: WorkloadIdentity) -> dict[str, str]:
    """The default pod selector of a workload: ``app.kubernetes.io/name: <name>``.

    Empty (no selector) when the name can't be a label value (longer than 63 characters).
    """
    if len(workload.name) > 63 or not _LABEL_VALUE.match(workload.name):
        return {}
    return {DEFAULT_SELECTOR_LABEL: workload.name}


def dns_label(name: str, limit: int = MAX_NAME) -> str:
    """``name`` as a DNS-1123 label: lower-case, ``[a-z0-9-]``, at most ``limit`` characters.

    A name that has to be cut keeps its start and ends in ``-`` + 8 hex digits of its hash, so
    distinct long names stay distinct.
    """
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "x"
    if len(label) <= limit:
        return label
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{label[: limit - 9].rstrip('-')}-{digest}"


def policy_name(server: WorkloadIdentity, qualify_kind: bool = False) -> str:
    """``access-to-<server>-from-observed-clients`` as a valid, ≤ 63-character name."""
    who = f"{server.name}-{server.kind}" if qualify_kind and server.kind else server.name
    return dns_label(f"access-to-{who}-from-observed-clients")


def _selector(labels: Mapping[str, str]) -> dict[str, Any]:
    return {"matchLabels": {k: labels[k] for k in sorted(labels)}}


def _peer(client: WorkloadIdentity, server: WorkloadIdentity, labels_of: LabelsOf) -> dict[str, Any]:
    labels = labels_of(client)
    peer: dict[str, Any] = {}
    if client.namespace != server.namespace or not labels:
        peer["namespaceSelector"] = _selector({NAMESPACE_LABEL: client.namespace})
    if labels:
        peer["podSelector"] = _selector(labels)
    return peer


def network_policies(edges: Iterable[Edge], labels_of: LabelsOf | None = None) -> list[dict[str, Any]]:
    """Ingress NetworkPolicies, one per server workload, sorted by (namespace, name, kind)."""
    labels_of = labels_of or default_labels
    clients_of: dict[WorkloadIdentity, set[WorkloadIdentity]] = defaultdict(set)
    for edge in edges:
        if isinstance(edge.target, WorkloadIdentity) and edge.target.kind != "Service":
            clients_of[edge.target].add(edge.client)
    kinds_of_name: dict[tuple[str, str], int] = defaultdict(int)
    for server in clients_of:
        kinds_of_name[(server.namespace, server.name)] += 1
    policies: list[dict[str, Any]] = []
    for server in sorted(clients_of):
        server_labels = labels_of(server)
        if not server_labels:
            continue
        peers = [_peer(client, server, labels_of) for client in sorted(clients_of[server])]
        unique = list({repr(p): p for p in peers}.values())  # clients sharing labels: one peer
        name = policy_name(server, qualify_kind=kinds_of_name[(server.namespace, server.name)] > 1)
        policies.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": name, "namespace": server.namespace, "labels": dict(MANAGED_BY)},
                "spec": {
                    "podSelector": _selector(server_labels),
                    "policyTypes": ["Ingress"],
                    "ingress": [{"from": unique}],
                },
            }
        )
    return policies
