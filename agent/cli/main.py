"""``network-mapper``: the user's command line for the mapper.

Reads the map from the mapper's GraphQL API (over ``--mapper-url``, usually a
``kubectl port-forward`` to 127.0.0.1:9090) through :mod:`agent.mapperclient`, and shows it
(``list``, ``visualize``) or writes it as policies (``export``, through :mod:`agent.exports`).
``reset`` clears the mapper's captured data. ``deanonymize`` maps a cloud export made from
anonymized uploads back to real names, with the cluster's key and the mapper's edges.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from agent.cli import queries
from agent.cli.render import NO_EDGES, dot, listing
from agent.exports import clientintents, iam_policies, jsonexport, networkpolicy, yaml_documents
from agent.mapperclient import HttpMapperClient, MapperError, MapperRejected, MapperUnavailable
from agent.model import Edge, WorkloadIdentity

DEFAULT_URL = "http://127.0.0.1:9090/query"
PORT_FORWARD = "kubectl port-forward -n otterize-system svc/network-mapper 9090"


class CliError(Exception):
    """A user-facing failure: printed as one line, exit status 1."""


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="network-mapper",
        description="Show and export the map of who talks to whom, from the network-mapper's API.",
        epilog=f"Reach an in-cluster mapper first: {PORT_FORWARD}",
    )
    parser.add_argument(
        "--mapper-url",
        default=environ.get("OTTERIZE_MAPPER_API", DEFAULT_URL),
        help=f"the mapper's GraphQL endpoint (env OTTERIZE_MAPPER_API; default {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token",
        default=environ.get("NETWORK_MAPPER_TOKEN", ""),
        help="token for mutations such as reset (env NETWORK_MAPPER_TOKEN)",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def filters(p: argparse.ArgumentParser) -> None:
        repeated: dict[str, Any] = {"action": "append", "default": []}
        p.add_argument("-n", "--namespace", **repeated, help="only clients in this namespace (repeatable)")
        p.add_argument(
            "-l", "--label", **repeated, metavar="KEY[=VALUE]", help="only clients with this label"
        )

    filters(sub.add_parser("list", help="list each client and what it calls"))
    vis = sub.add_parser("visualize", help="draw the map with graphviz")
    filters(vis)
    vis.add_argument("-o", "--output", type=Path, required=True, help="file to write (.png or .svg)")
    vis.add_argument("--format", choices=["png", "svg"], help="image format (default: from the file name)")
    exp = sub.add_parser("export", help="export ClientIntents, NetworkPolicies or JSON")
    filters(exp)
    exp.add_argument(
        "--format",
        choices=["yaml", "json", "networkpolicy", "iam"],
        default="yaml",
        help="yaml: ClientIntents; networkpolicy: Kubernetes NetworkPolicies; iam: AWS IAM policies (JSON)",
    )
    exp.add_argument(
        "-o", "--output", type=Path, help="file, or directory with --distinct-files (default: stdout)"
    )
    exp.add_argument("--distinct-files", action="store_true", help="one file per document in --output DIR")
    exp.add_argument("--server", metavar="NAME.NAMESPACE", help="only edges to this server")
    exp.add_argument(
        "--intents-version",
        choices=["v2beta1", "v1alpha3"],
        default="v2beta1",
        help="ClientIntents API version",
    )
    sub.add_parser("reset", help="forget everything the mapper has captured")
    dea = sub.add_parser(
        "deanonymize", help="restore real names in a cloud export (JSON or YAML) of anonymized edges"
    )
    dea.add_argument(
        "--key-file", type=Path, required=True, help="the anonymization key (the Secret's value)"
    )
    dea.add_argument("--input", type=Path, help="the cloud export to read (default: stdin)")
    dea.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    dea.set_defaults(namespace=[], label=[])  # every edge: its names are the way back
    return parser


def _label_match(labels: Mapping[str, str], wanted: Sequence[str]) -> bool:
    for item in wanted:
        key, _, value = item.partition("=")
        if key not in labels or ("=" in item and labels[key] != value):
            return False
    return True


Labels = dict[tuple[str, str], dict[str, str]]


def fetch_labels(client: HttpMapperClient, args: argparse.Namespace) -> Labels:
    variables: dict[str, Any] = {"namespaces": args.namespace or None}
    return queries.labels_from_intents(client.execute(queries.LABELS_QUERY, variables)["intents"])


def fetch_edges(client: HttpMapperClient, args: argparse.Namespace) -> list[Edge]:
    variables: dict[str, Any] = {"namespaces": args.namespace or None}
    found = [queries.edge_from_json(e) for e in client.execute(queries.EDGES_QUERY, variables)["edges"]]
    if args.label:
        labels = fetch_labels(client, args)
        found = [
            e for e in found if _label_match(labels.get((e.client.namespace, e.client.name), {}), args.label)
        ]
    if getattr(args, "server", None):
        name, _, ns = args.server.partition(".")
        found = [e for e in found if e.target == WorkloadIdentity(ns, name, getattr(e.target, "kind", ""))]
    return found


def _documents(edges: list[Edge], args: argparse.Namespace, labels: Labels) -> list[dict[str, Any]]:
    if args.format == "networkpolicy":
        # Select pods by their real labels when the mapper knows them.
        def labels_of(w: WorkloadIdentity) -> dict[str, str]:
            return labels.get((w.namespace, w.name)) or networkpolicy.default_labels(w)

        return networkpolicy.network_policies(edges, labels_of=labels_of)
    return clientintents.client_intents(edges, version=args.intents_version)


def _file_name(doc: dict[str, Any]) -> str:
    meta = doc["metadata"]
    return f"{meta['namespace']}.{meta['name']}.yaml"


def export(edges: list[Edge], args: argparse.Namespace, labels: Labels) -> str:
    """Writes the export where asked; returns what to print (the export itself, or a summary)."""
    if args.format in {"json", "iam"}:
        doc: Any = jsonexport.edges_document(edges) if args.format == "json" else iam_policies(edges)
        text = json.dumps(doc, indent=2) + "\n"
        docs = [doc]
    else:
        docs = _documents(edges, args, labels)
        text = yaml_documents(docs)
    if args.distinct_files:
        if not args.output or args.format in {"json", "iam"}:
            raise CliError("--distinct-files needs --output DIR and a yaml or networkpolicy format")
        args.output.mkdir(parents=True, exist_ok=True)
        for doc in docs:
            (args.output / _file_name(doc)).write_text(yaml.safe_dump(doc, sort_keys=False))
        return f"wrote {len(docs)} files to {args.output}"
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        return f"wrote {len(docs)} documents to {args.output}"
    return text.rstrip("\n")


def visualize(edges: list[Edge], args: argparse.Namespace) -> str:
    fmt = args.format or (args.output.suffix.lstrip(".") or "png")
    if fmt not in {"png", "svg"}:
        raise CliError(f"cannot tell the image format from {args.output}; pass --format png|svg")
    if not shutil.which("dot"):
        raise CliError("graphviz's 'dot' is not installed (apt-get install graphviz)")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["dot", f"-T{fmt}", "-o", str(args.output)],
        input=dot(edges),
        text=True,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise CliError(f"graphviz failed: {proc.stderr.strip()}")
    return f"wrote {fmt} of {len(edges)} edges to {args.output}"


def deanonymize(edges: list[Edge], args: argparse.Namespace) -> str:
    """Writes the de-anonymized export where asked; returns what to print."""
    from agent.anonymize import AnonymizationKeyError, Deanonymizer, load_key

    try:
        key = load_key(args.key_file)
    except AnonymizationKeyError as exc:
        raise CliError(str(exc)) from exc
    try:
        text = args.input.read_text() if args.input else sys.stdin.read()
    except OSError as exc:
        raise CliError(f"cannot read {args.input}: {exc.strerror or exc}") from exc
    deanonymizer = Deanonymizer(key, edges)
    try:
        restored = deanonymizer.export_text(text)
    except (ValueError, KeyError, TypeError) as exc:
        raise CliError(f"cannot read the export: {exc}") from exc
    unknown = deanonymizer.unknown(restored)
    if unknown:
        print(
            f"network-mapper: {len(unknown)} hashed names are not in the mapper's map (forgotten"
            " since, or another cluster's key); they are left as they are",
            file=sys.stderr,
        )
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(restored)
        return f"wrote the de-anonymized export to {args.output}"
    return restored.rstrip("\n")


def run(args: argparse.Namespace) -> str:
    client = HttpMapperClient(args.mapper_url, args.token, args.timeout)
    try:
        if args.command == "reset":
            client.execute(queries.RESET_MUTATION, {})
            return "mapper data reset"
        edges = fetch_edges(client, args)
        if args.command == "list":
            return listing(edges) if edges else NO_EDGES
        if args.command == "visualize":
            return visualize(edges, args)
        if args.command == "deanonymize":
            return deanonymize(edges, args)
        return export(edges, args, fetch_labels(client, args) if args.format == "networkpolicy" else {})
    except MapperUnavailable as exc:
        raise CliError(
            f"cannot reach the mapper at {args.mapper_url} ({exc}). Is it running? "
            f"{PORT_FORWARD}, or set --mapper-url"
        ) from exc
    except MapperRejected as exc:
        hint = " (set --token or NETWORK_MAPPER_TOKEN)" if exc.status in {401, 403} else ""
        raise CliError(f"the mapper refused the request: {exc}{hint}") from exc
    except (MapperError, queries.EdgeFormatError) as exc:
        raise CliError(f"the mapper answered with an error: {exc}") from exc
    finally:
        client.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser(os.environ).parse_args(argv)
    try:
        print(run(args))
    except CliError as exc:
        print(f"network-mapper: {exc}", file=sys.stderr)
        return 1
    return 0
