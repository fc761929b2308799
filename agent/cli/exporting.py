"""``network-mapper export``: the map's edges → the chosen format, through :mod:`agent.exports`
(ClientIntents, NetworkPolicies, Istio AuthorizationPolicies, Strimzi KafkaUsers or kafka-acls.sh
lines, IAM policies, JSON), printed or written where ``-o`` says (one file per document with
``--distinct-files``). The edges and labels come from the mapper through :mod:`agent.cli.main`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

from agent.cli.output import UsageError, mkdir, write
from agent.exports import clientintents, iam_policies, jsonexport, kafkaacl, networkpolicy, yaml_documents
from agent.exports.istio import authorization_policies
from agent.model import Edge, WorkloadIdentity

YAML_FORMATS = ("yaml", "networkpolicy", "istio", "kafka-acl")  # documents: --distinct-files can split them
LABELLED_FORMATS = frozenset({"networkpolicy", "istio", "kafka-acl"})  # these read the workloads' labels
FORMAT_HELP = """what to export (default yaml):
  yaml                ClientIntents (--intents-version)
  networkpolicy       Kubernetes NetworkPolicies admitting the observed clients
  istio               Istio AuthorizationPolicies: the observed principals on the observed HTTP paths
  kafka-acl           Strimzi KafkaUsers (--kafka-user-version): per observed principal, one ACL per
                      topic operation the brokers allowed (never a denied one)
  kafka-acl-commands  the same ACLs as kafka-acls.sh lines, for the principals exactly as observed
                      (User:ANONYMOUS too); '#' lines note accesses of unknown principals
  iam, json           AWS IAM policies; the edges (JSON)"""


Labels = dict[tuple[str, str], dict[str, str]]


def documents(edges: list[Edge], args: argparse.Namespace, labels: Labels) -> list[dict[str, Any]]:
    # Select pods (and find Strimzi's cluster label) by their real labels when the mapper knows them.
    def labels_of(w: WorkloadIdentity) -> dict[str, str]:
        return labels.get((w.namespace, w.name)) or networkpolicy.default_labels(w)

    if args.format == "networkpolicy":
        return networkpolicy.network_policies(edges, labels_of=labels_of)
    if args.format == "istio":
        return authorization_policies(edges, labels_of=labels_of)
    if args.format == "kafka-acl":
        for note in kafkaacl.without_kafka_user(edges):
            print(f"network-mapper: {note}", file=sys.stderr)
        return kafkaacl.kafka_users(edges, args.kafka_user_version, labels_of=labels_of)
    return clientintents.client_intents(edges, version=args.intents_version)


def file_name(doc: dict[str, Any]) -> str:
    meta = doc["metadata"]
    return f"{meta['namespace']}.{meta['name']}.yaml"


def export(edges: list[Edge], args: argparse.Namespace, labels: Labels) -> str:
    """Writes the export where asked; returns what to print (the export itself, or a summary)."""
    if args.format in {"json", "iam"}:
        doc: Any = jsonexport.edges_document(edges) if args.format == "json" else iam_policies(edges)
        text = json.dumps(doc, indent=2) + "\n"
        docs = [doc]
    elif args.format == "kafka-acl-commands":
        lines = kafkaacl.kafka_acl_commands(edges)
        text = "".join(f"{line}\n" for line in lines)
        docs = [line for line in lines if not line.startswith("#")]
    else:
        docs = documents(edges, args, labels)
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
    """What argparse cannot check alone: -o's kind depends on --distinct-files."""
    if args.distinct_files:
        if not args.output or args.format not in YAML_FORMATS:
            raise UsageError(f"--distinct-files needs --output DIR and a format of {', '.join(YAML_FORMATS)}")
        if args.output.exists() and not args.output.is_dir():
            raise UsageError(f"argument -o/--output: {args.output} is not a directory (--distinct-files)")
    elif args.output and args.output.is_dir():
        raise UsageError(
            f"argument -o/--output: {args.output} is a directory; name a file, or add --distinct-files"
        )
