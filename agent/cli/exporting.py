"""``network-mapper export``: the map's edges → the chosen format, through :mod:`agent.exports`
(ClientIntents, NetworkPolicies, CiliumNetworkPolicies, Istio AuthorizationPolicies, Strimzi
KafkaUsers or kafka-acls.sh lines, IAM policies, JSON), printed or written where ``-o`` says (one
file per document with ``--distinct-files``). ``--exclude-dns-only`` leaves out, here and for every
format, the edges seen only through DNS (:attr:`agent.model.Edge.dns_only`). The edges, labels and
cluster facts (pod labels, hostNetwork, node addresses: the ``clusterFacts`` query) come from the
mapper through :mod:`agent.cli.main`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

from agent.cli.output import UsageError, mkdir, write
from agent.exports import clientintents, iam_policies, jsonexport, kafkaacl, networkpolicy, yaml_documents
from agent.exports.cilium import cilium_network_policies
from agent.exports.istio import authorization_policies
from agent.exports.protectedservices import protected_services
from agent.model import ClusterFacts, Edge, WorkloadIdentity

# documents: --distinct-files can split them
YAML_FORMATS = ("yaml", "networkpolicy", "cilium", "istio", "kafka-acl")
# these read the workloads' labels
LABELLED_FORMATS = frozenset({"networkpolicy", "cilium", "istio", "kafka-acl"})
# these also read the cluster's facts (pod labels, hostNetwork workloads, node addresses)
FACT_FORMATS = frozenset({"networkpolicy", "cilium"})
NETWORKPOLICY_FLAGS = ("exact_ports", "egress")
FORMAT_HELP = """what to export (default yaml):
  yaml                ClientIntents (--intents-version); --protect: ProtectedServices too
  networkpolicy       Kubernetes NetworkPolicies admitting the observed clients (all ports;
                      --exact-ports: only the observed TCP ports; --egress: also per-client
                      egress policies, DNS always allowed)
  cilium              CiliumNetworkPolicies: per client, egress to what it was seen reaching,
                      Internet names as toFQDNs (with the DNS rule toFQDNs needs)
  istio               Istio AuthorizationPolicies: the observed principals on the observed HTTP paths
  kafka-acl           Strimzi KafkaUsers (--kafka-user-version): per observed principal, one ACL per
                      topic operation the brokers allowed (never a denied one)
  kafka-acl-commands  the same ACLs as kafka-acls.sh lines, for the principals exactly as observed
                      (User:ANONYMOUS too); '#' lines note accesses of unknown principals
  iam, json           AWS IAM policies; the edges (JSON)"""


Labels = dict[tuple[str, str], dict[str, str]]


def documents(
    edges: list[Edge], args: argparse.Namespace, labels: Labels, facts: ClusterFacts | None = None
) -> list[dict[str, Any]]:
    """The documents of a YAML format. ``facts``: the cluster's facts, when the mapper gave them
    (pod labels from them first, hostNetwork clients admitted by node address)."""

    # Select pods (and find Strimzi's cluster label) by their real labels when the mapper knows them.
    def labels_of(w: WorkloadIdentity) -> dict[str, str]:
        return labels.get((w.namespace, w.name)) or networkpolicy.default_labels(w)

    if args.format == "networkpolicy":
        return networkpolicy.network_policies(
            edges,
            labels_of=labels_of,
            facts=facts,
            exact_ports=getattr(args, "exact_ports", False),
            egress=getattr(args, "egress", False),
        )
    if args.format == "cilium":
        return cilium_network_policies(edges, labels_of=labels_of, facts=facts)
    if args.format == "istio":
        return authorization_policies(edges, labels_of=labels_of)
    if args.format == "kafka-acl":
        for note in kafkaacl.without_kafka_user(edges):
            print(f"network-mapper: {note}", file=sys.stderr)
        return kafkaacl.kafka_users(edges, args.kafka_user_version, labels_of=labels_of)
    docs = clientintents.client_intents(edges, version=args.intents_version)
    if getattr(args, "protect", False):
        docs += protected_services(edges, version=args.intents_version)
    return docs


def file_name(doc: dict[str, Any]) -> str:
    meta = doc["metadata"]
    return f"{meta['namespace']}.{meta['name']}.yaml"


def export(
    edges: list[Edge], args: argparse.Namespace, labels: Labels, facts: ClusterFacts | None = None
) -> str:
    """Writes the export where asked; returns what to print (the export itself, or a summary)."""
    if getattr(args, "exclude_dns_only", False):  # the exporters need nothing else: filtered once, here
        edges = [e for e in edges if not e.dns_only]
    if args.format in {"json", "iam"}:
        doc: Any = jsonexport.edges_document(edges) if args.format == "json" else iam_policies(edges)
        text = json.dumps(doc, indent=2) + "\n"
        docs = [doc]
    elif args.format == "kafka-acl-commands":
        lines = kafkaacl.kafka_acl_commands(edges)
        text = "".join(f"{line}\n" for line in lines)
        docs = [line for line in lines if not line.startswith("#")]
    else:
        docs = documents(edges, args, labels, facts)
        text = yaml_documents(docs)
    if args.distinct_files:
        mkdir(args.output)  # even for no documents, as the user asked for the directory
        for doc in docs:
            write(args.output / file_name(doc), yaml.safe_dump(doc, sort_keys=False))
        return f"wrote {len(docs)} files to {args.output}"
    if args.output:
        write(args.output, text)
        what = "commands" if args.format == "kafka-acl-commands" else "documents"
        return f"wrote {len(docs)} {what} to {args.output}"
    return text.rstrip("\n")


def check_export(args: argparse.Namespace) -> None:
    """What argparse cannot check alone: -o's kind depends on --distinct-files; --exact-ports and
    --egress shape NetworkPolicies only, --protect ClientIntents only."""
    if getattr(args, "protect", False) and args.format != "yaml":
        raise UsageError("--protect needs --format yaml")
    for flag in NETWORKPOLICY_FLAGS:
        if getattr(args, flag, False) and args.format != "networkpolicy":
            raise UsageError(f"--{flag.replace('_', '-')} needs --format networkpolicy")
    if args.distinct_files:
        if not args.output or args.format not in YAML_FORMATS:
            raise UsageError(f"--distinct-files needs --output DIR and a format of {', '.join(YAML_FORMATS)}")
        if args.output.exists() and not args.output.is_dir():
            raise UsageError(f"argument -o/--output: {args.output} is not a directory (--distinct-files)")
    elif args.output and args.output.is_dir():
        raise UsageError(
            f"argument -o/--output: {args.output} is a directory; name a file, or add --distinct-files"
        )
