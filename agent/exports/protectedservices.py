"""Edges → Otterize ``ProtectedService`` documents, one per server workload of the map.

Data comes from the store's edges (``agent.model.Edge``); the documents go to the CLI
(``network-mapper export --format yaml --protect``, after the ClientIntents). Pure: no I/O.

Why: the intents operator, by default, restricts only a server that some ClientIntents names as
a target; a server no intent names admits everyone. A ProtectedService (``spec.name``: a workload
of its namespace) protects its server even then, so each server admits only the clients whose
ClientIntents declare it. With one per server seen, removing a client's intent to a server cuts
exactly that call, which is what ``network-mapper check`` shows before it is applied.

Shape (the intents operator's CRD, ``tests/data/otterize/protectedservices-crd.yaml``):

* one document per server ``WorkloadIdentity`` target (not kind ``Service``: a Service with no
  workload behind it is not a pod the operator protects), in the server's namespace, named
  ``<server>-protectedservice`` (a DNS-1123 label: longer names are cut and end in a hash);
  ``spec.name`` is the workload's name. Workloads of two kinds sharing a name in one namespace
  get one document: ``spec.kind`` is left out (not in every version), so it names both;
* the apiVersion is ``v1alpha3`` (:data:`VERSIONS`) whatever the ClientIntents version: no
  ProtectedService ``v2beta1`` exists, and ``v1alpha3`` is served by every operator release whose
  CRD we have seen — the newer ``v2`` is not served by the releases that introduced ClientIntents
  ``v2beta1`` (the operator converts between versions, so the meaning is the same);
* labelled ``app.kubernetes.io/managed-by: network-mapper``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agent.exports.networkpolicy import MANAGED_BY, dns_label
from agent.model import Edge, WorkloadIdentity

API_GROUP = "k8s.otterize.com"
KIND = "ProtectedService"
# ClientIntents version → ProtectedService version (see the module docstring)
VERSIONS = {"v2beta1": "v1alpha3", "v1alpha3": "v1alpha3"}
SUFFIX = "-protectedservice"


def protected_services(edges: Iterable[Edge], version: str = "v2beta1") -> list[dict[str, Any]]:
    """One ProtectedService per server workload of ``edges``, sorted by (namespace, name).

    ``version`` is the ClientIntents version the documents go with (``"v2beta1"`` or
    ``"v1alpha3"``), as ``--intents-version`` gives it.
    """
    if version not in VERSIONS:
        raise ValueError(f"unsupported ClientIntents version {version!r}; expected one of {sorted(VERSIONS)}")
    servers = {
        (edge.target.namespace, edge.target.name)
        for edge in edges
        if isinstance(edge.target, WorkloadIdentity) and edge.target.kind != "Service"
    }
    return [
        {
            "apiVersion": f"{API_GROUP}/{VERSIONS[version]}",
            "kind": KIND,
            "metadata": {
                "name": dns_label(name + SUFFIX),
                "namespace": namespace,
                "labels": dict(MANAGED_BY),
            },
            "spec": {"name": name},
        }
        for namespace, name in sorted(servers)
    ]
