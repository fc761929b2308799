"""``network-mapper``: the user's command line for the mapper.

Reads the map from the mapper's GraphQL API (over ``--mapper-url``, usually a
``kubectl port-forward`` to 127.0.0.1:9090) through :mod:`agent.mapperclient`, and shows it
(``list``, ``visualize``) or writes it as policies (``export``: :mod:`agent.cli.exporting`, through
:mod:`agent.exports`). ``check`` (:mod:`agent.cli.checking`) says which edges policies would
deny; ``snapshot`` and ``diff`` (:mod:`agent.cli.snapshots`) keep maps and compare them. Output
paths and the one-line errors are :mod:`agent.cli.output`'s.
``reset`` clears the mapper's captured data. ``deanonymize`` maps a cloud export made from
anonymized uploads back to real names, with the cluster's key and the mapper's edges.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from agent.cli import checking, coverage, queries, snapshots
from agent.cli.exporting import (
    FACT_FORMATS,
    FORMAT_HELP,
    LABELLED_FORMATS,
    YAML_FORMATS,
    Labels,
    check_export,
    export,
)
from agent.cli.mapsource import PORT_FORWARD, live_facts, mapper
from agent.cli.output import CliError, UsageError, write
from agent.cli.render import NO_EDGES, dot, listing
from agent.exports import kafkaacl
from agent.mapperclient import HttpMapperClient, Transport
from agent.model import Edge, WorkloadIdentity

DEFAULT_URL = "http://127.0.0.1:9090/query"


EXIT_CODES = """exit status:
  0  done
  1  the work failed: the mapper is unreachable or refused, graphviz failed, the export to
     de-anonymize is not one
  2  a bad flag, value or path (output, input, key file; one line on stderr says which)"""

MAX_TIMEOUT = 86400.0  # a day; far larger values overflow the socket layer's time_t


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (no usage dump), still with exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def timeout_seconds(text: str) -> float:
    """``--timeout``: a finite positive number of seconds (0, negatives, nan and inf crash the
    socket layer with a traceback instead of meaning "no limit")."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or not 0 < value <= MAX_TIMEOUT:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds in (0, {MAX_TIMEOUT:g}]")
    return value


def mapper_url(text: str) -> str:
    """``--mapper-url`` (or ``OTTERIZE_MAPPER_API``): an http(s) URL with a host and a valid port,
    checked here so a typo is a usage error rather than "cannot reach the mapper"."""
    example = f"an http(s) URL such as {DEFAULT_URL} (also from OTTERIZE_MAPPER_API)"
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in 0..65535
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not {example}: {exc}") from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise argparse.ArgumentTypeError(f"{text!r} is not {example}")
    return text


_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def server_name(text: str) -> str:
    """``--server NAME.NAMESPACE``: the namespace is a DNS label (no dots), so it is what follows
    the last dot; a name without one would silently match nothing."""
    name, dot_, namespace = text.rpartition(".")
    if not dot_ or not name or not _DNS_LABEL.fullmatch(namespace):
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME.NAMESPACE (e.g. cartservice.shop)")
    return text


def output_path(text: str) -> Path:
    """An output path whose nearest existing ancestor is a directory: a file in the way (say
    ``/etc/hostname/x``) is caught before the mapper is asked anything."""
    path = Path(text)
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise argparse.ArgumentTypeError(f"{parent} is not a directory")
            break
    return path


def output_file(text: str) -> Path:
    """:func:`output_path` that must not be an existing directory."""
    path = output_path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a directory, not a file")
    return path


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="network-mapper",
        description="Show and export the map of who talks to whom, from the network-mapper's API.",
        epilog=f"Reach an in-cluster mapper first: {PORT_FORWARD}\n\n{EXIT_CODES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--mapper-url",
        type=mapper_url,
        default=environ.get("OTTERIZE_MAPPER_API", DEFAULT_URL),
        help=f"the mapper's GraphQL endpoint (env OTTERIZE_MAPPER_API; default {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token",
        default=environ.get("NETWORK_MAPPER_TOKEN", ""),
        help="token for mutations such as reset (env NETWORK_MAPPER_TOKEN)",
    )
    parser.add_argument(
        "--timeout", type=timeout_seconds, default=30.0, help="seconds per request (default 30)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def filters(p: argparse.ArgumentParser) -> None:
        repeated: dict[str, Any] = {"action": "append", "default": []}
        p.add_argument("-n", "--namespace", **repeated, help="only clients in this namespace (repeatable)")
        p.add_argument(
            "-l", "--label", **repeated, metavar="KEY[=VALUE]", help="only clients with this label"
        )

    lst = sub.add_parser("list", help="list each client and what it calls")
    filters(lst)
    lst.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also show, per edge, which methods saw it, how often, first and last seen, and mark "
        "the edges seen only through DNS (a name was resolved, no connection seen)",
    )
    vis = sub.add_parser("visualize", help="draw the map with graphviz")
    filters(vis)
    vis.add_argument("-o", "--output", type=output_file, required=True, help="file to write (.png or .svg)")
    vis.add_argument("--format", choices=["png", "svg"], help="image format (default: from the file name)")
    exp = sub.add_parser(
        "export",
        help="export ClientIntents, NetworkPolicies, Cilium or Istio policies, Kafka ACLs, IAM or JSON",
        formatter_class=argparse.RawTextHelpFormatter,
    )
    filters(exp)
    exp.add_argument(
        "--format",
        choices=[*YAML_FORMATS, "kafka-acl-commands", "iam", "json"],
        default="yaml",
        metavar="FORMAT",
        help=FORMAT_HELP,
    )
    exp.add_argument(
        "-o",
        "--output",
        type=output_path,  # a file or a directory, depending on --distinct-files: see check_export
        help="file, or directory with --distinct-files (default: stdout)",
    )
    exp.add_argument("--distinct-files", action="store_true", help="one file per document in --output DIR")
    exp.add_argument("--server", type=server_name, metavar="NAME.NAMESPACE", help="only edges to this server")
    exp.add_argument(
        "--intents-version",
        choices=["v2beta1", "v1alpha3"],
        default="v2beta1",
        help="ClientIntents API version",
    )
    exp.add_argument(
        "--protect",
        action="store_true",
        help="also write a ProtectedService per server seen, so that each server admits only the\n"
        "clients its ClientIntents declare even when no intent names it (what\n"
        "`network-mapper check` needs to show what removing an intent breaks)",
    )
    exp.add_argument(
        "--exact-ports",
        action="store_true",
        help="networkpolicy: allow only the observed TCP server ports (a client seen only through\n"
        "DNS, Kafka, Istio or AWS keeps all ports). Not the default: UDP other than DNS\n"
        "is not observed, so UDP services would be cut off",
    )
    exp.add_argument(
        "--egress",
        action="store_true",
        help="networkpolicy: also an egress policy per client: DNS to kube-dns always, its\n"
        "observed servers, Internet targets by their IPs (ipBlock)",
    )
    kafka_user_help = "KafkaUser API version (v1beta2: Strimzi up to 0.51; v1: from 0.49)"
    exp.add_argument(
        "--kafka-user-version", choices=kafkaacl.VERSIONS, default="v1beta2", help=kafka_user_help
    )
    exp.add_argument(
        "--exclude-dns-only",
        action="store_true",
        help="leave out the edges seen only through DNS (a name was resolved, no connection\n"
        "seen): no ClientIntents, policies or ACLs for lookups that led nowhere",
    )
    sub.add_parser("reset", help="forget everything the mapper has captured")
    dea = sub.add_parser(
        "deanonymize", help="restore real names in a cloud export (JSON or YAML) of anonymized edges"
    )
    dea.add_argument(
        "--key-file", type=Path, required=True, help="the anonymization key (the Secret's value)"
    )
    dea.add_argument("--input", type=Path, help="the cloud export to read (default: stdin)")
    dea.add_argument("-o", "--output", type=output_file, help="file to write (default: stdout)")
    dea.set_defaults(namespace=[], label=[])  # every edge: its names are the way back
    checking.add_parser(sub, output_file)  # these set a handler: their own output and exit status
    snapshots.add_parsers(sub, output_file)
    coverage.add_parser(sub)
    return parser


def _label_match(labels: Mapping[str, str], wanted: Sequence[str]) -> bool:
    for item in wanted:
        key, _, value = item.partition("=")
        if key not in labels or ("=" in item and labels[key] != value):
            return False
    return True


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
        name, _, ns = args.server.rpartition(".")  # see server_name
        found = [e for e in found if e.target == WorkloadIdentity(ns, name, getattr(e.target, "kind", ""))]
    return found


def _image_format(args: argparse.Namespace) -> str:
    fmt: str = args.format or (args.output.suffix.lstrip(".") or "png")
    if fmt not in {"png", "svg"}:
        raise UsageError(
            f"argument -o/--output: cannot tell the image format of {args.output}; use --format png|svg"
        )
    return fmt


def check(args: argparse.Namespace) -> None:
    """Usage errors found before the mapper is asked anything (no waiting for a useless answer)."""
    if args.command == "export":
        check_export(args)
    elif args.command == "visualize":
        _image_format(args)
        if not shutil.which("dot"):  # the environment, not the map: say so before fetching it
            raise UsageError("visualize needs graphviz's 'dot' on PATH (apt-get install graphviz)")


def visualize(edges: list[Edge], args: argparse.Namespace) -> str:
    fmt = _image_format(args)
    # dot writes to stdout and we write the file, so a bad -o is reported like the other commands'.
    proc = subprocess.run(["dot", f"-T{fmt}"], input=dot(edges).encode(), capture_output=True, check=False)
    if proc.returncode != 0:
        detail = " ".join(proc.stderr.decode(errors="replace").split())  # one line
        raise CliError(f"graphviz failed: {detail}")
    write(args.output, proc.stdout)
    return f"wrote {fmt} of {len(edges)} edges to {args.output}"


def deanonymize(edges: list[Edge], args: argparse.Namespace) -> str:
    """Writes the de-anonymized export where asked; returns what to print."""
    from agent.anonymize import AnonymizationKeyError, Deanonymizer, load_key

    try:
        key = load_key(args.key_file)
    except AnonymizationKeyError as exc:  # a flag pointing at no usable key: a usage error
        raise UsageError(f"--key-file: {exc}") from exc
    source = args.input or "stdin"
    try:
        text = args.input.read_text() if args.input else sys.stdin.read()
    except OSError as exc:
        raise UsageError(f"--input: cannot read {source}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:  # a binary file by mistake; exports are UTF-8 JSON or YAML
        raise UsageError(f"--input: cannot read {source}: not UTF-8 text ({exc.reason})") from exc
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
        write(args.output, restored)
        return f"wrote the de-anonymized export to {args.output}"
    return restored.rstrip("\n")


def run(args: argparse.Namespace, transport: Transport | None = None) -> str:
    """The command's work; what to print. ``transport``: to the mapper (default: HTTP), a test seam."""
    check(args)
    with mapper(args, transport) as client:
        if args.command == "reset":
            client.execute(queries.RESET_MUTATION, {})
            return "mapper data reset"
        edges = fetch_edges(client, args)
        if args.command == "list":
            return listing(edges, verbose=args.verbose) if edges else NO_EDGES
        if args.command == "visualize":
            return visualize(edges, args)
        if args.command == "deanonymize":
            return deanonymize(edges, args)
        facts = live_facts(client) if args.format in FACT_FORMATS else None
        labels = fetch_labels(client, args) if args.format in LABELLED_FORMATS else {}
        return export(edges, args, labels, facts)


def main(argv: Sequence[str] | None = None, transport: Transport | None = None) -> int:
    args = build_parser(os.environ).parse_args(argv)
    try:
        if "handler" in args:  # check, snapshot, diff (agent.cli.checking, agent.cli.snapshots)
            status: int = args.handler(args, transport)
            return status
        print(run(args, transport))
    except UsageError as exc:  # worded like argparse's own usage errors
        print(f"network-mapper: error: {exc}", file=sys.stderr)
        return exc.status
    except CliError as exc:
        print(f"network-mapper: {exc}", file=sys.stderr)
        return exc.status
    return 0
