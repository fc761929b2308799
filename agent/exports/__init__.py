"""Pure exporters: the store's edges → ClientIntents, NetworkPolicies (ingress and egress),
CiliumNetworkPolicies, Istio AuthorizationPolicies, Strimzi KafkaUsers and ``kafka-acls.sh`` lines,
IAM policies, the JSON export, and Otterize ProtectedServices.

Used alike by the CLI (which writes the files), the mapper's API and the cloud, which imports
only ``agent.model`` and ``agent.exports`` from the agent. Every function takes edges (or a
document) and returns plain dicts/lists ready for ``yaml``/``json`` dumping; nothing here
writes files or talks to the network.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from agent.exports.cilium import cilium_network_policies
from agent.exports.clientintents import client_intents, validate
from agent.exports.iam import iam_policies
from agent.exports.istio import authorization_policies
from agent.exports.jsonexport import edges_document, edges_from_document
from agent.exports.kafkaacl import kafka_acl_commands, kafka_users
from agent.exports.networkpolicy import network_policies
from agent.exports.protectedservices import protected_services


def yaml_documents(documents: Iterable[Mapping[str, Any]]) -> str:
    """Documents → multi-document YAML (``---`` between them), keys in document order."""
    import yaml

    return yaml.safe_dump_all(
        [dict(d) for d in documents], sort_keys=False, default_flow_style=False, explicit_start=True
    )


__all__ = [
    "authorization_policies",
    "cilium_network_policies",
    "client_intents",
    "edges_document",
    "edges_from_document",
    "iam_policies",
    "kafka_acl_commands",
    "kafka_users",
    "network_policies",
    "protected_services",
    "validate",
    "yaml_documents",
]
