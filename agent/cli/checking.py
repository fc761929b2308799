"""``network-mapper check POLICY_FILE...``: which observed edges would these policies deny?

Policies come from the user's files (Kubernetes NetworkPolicies and Otterize ClientIntents, read
by :func:`agent.policy.load_policies`); edges and cluster facts from the mapper's API or from a
file (``--edges``: a snapshot document or a JSON export, :mod:`agent.cli.mapsource`). The verdict
is :func:`agent.policy.check`'s; the report (text, JSON or JUnit XML, :mod:`agent.policy`) goes to
stdout or ``-o FILE``, and the exit status tells CI what happened. Registered by :mod:`agent.cli.main`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.cli import mapsource
from agent.cli.output import UsageError, write
from agent.mapperclient import Transport
from agent.model import ClusterFacts, Edge
from agent.policy import PolicyError, PolicySet, check, load_policies, report_json, report_junit, report_text

POLICY_SUFFIXES = (".yaml", ".yml", ".json")

DESCRIPTION = """\
Evaluates every edge the mapper observed (or the edges of --edges FILE) against Kubernetes
NetworkPolicies and Otterize ClientIntents, and reports each edge they would deny, with the policy
that denies it, its last-seen time and count. Run it before applying policies: nothing reported
means no call path seen so far would break."""

EPILOG = """\
evaluation model:
  NetworkPolicy (networking.k8s.io/v1), as Kubernetes defines it, ingress and egress: a pod
    selected by a policy of a policy type is isolated in that direction and admits only what one
    of the rules of the policies selecting it allows (rules add up; an empty rule list, such as
    "ingress: []", admits nothing). A connection needs the client's egress and the server's
    ingress. podSelector, namespaceSelector (namespace labels from the mapper's cluster facts),
    ipBlock with except, numbered and named ports. hostNetwork clients are matched by their
    node's addresses (ipBlock), Internet targets by their IPs (egress).
  ClientIntents (k8s.otterize.com v2beta1 and v1alpha3), as Otterize's intents operator enforces
    them by default, ingress only: a server that any ClientIntents names as a target admits only
    the clients that declared it; a server no intent names is unaffected, unless a
    ProtectedService in the files protects it (`export --format yaml --protect` writes one per
    server). Kafka topics and operations, and HTTP paths and methods, are checked where the edge
    carries them.
  AWS targets and Service-kind targets are skipped (counted in the report).

ports unknown:
  An edge's server ports are the TCP ports of the connections seen (SYN capture, socket scan).
  An edge seen only through DNS, Kafka logs, Istio or the AWS proxy has none: "ports unknown".
  Such an edge is judged on its peers only (a rule that admits the client admits it whatever the
  rule's ports), so a port-only restriction cannot be confirmed for it; the report counts them.

window:
  --since keeps edges last seen within DURATION (30m, 2h, 7d, 1h30m) before now, or, with
  --edges, before the file's time (its takenAt; a JSON export's newest lastSeen).
  --namespace keeps edges whose client, or whose target workload, is in one of the namespaces.

exit status:
  0  no edge would be denied
  1  at least one edge would be denied (each is reported)
  2  bad input or usage: a policy file that cannot be read or parsed (the message names the
     file, the document number and the field), an unreadable --edges file, a bad flag
  3  the mapper cannot be reached (--edges FILE checks without one)"""


def add_parser(sub: Any, output_file: Callable[[str], Path]) -> None:
    """Registers ``check`` on ``sub`` (the main parser's subparsers)."""
    p = sub.add_parser(
        "check",
        help="which observed edges would these NetworkPolicies / ClientIntents deny? (for CI)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "policies",
        nargs="+",
        type=Path,
        metavar="POLICY_FILE",
        help="YAML or JSON files of NetworkPolicy and ClientIntents documents (a directory: its"
        f" {', '.join('*' + s for s in POLICY_SUFFIXES)} files)",
    )
    p.add_argument(
        "--since", type=mapsource.duration, metavar="DURATION", help="only edges seen this recently"
    )
    p.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="only edges with the client or target here (repeatable)",
    )
    p.add_argument(
        "--edges", type=Path, metavar="FILE", help="a snapshot or JSON export to check instead of the mapper"
    )
    p.add_argument(
        "--format", choices=["text", "json", "junit"], default="text", help="report format (default text)"
    )
    p.add_argument("-o", "--output", type=output_file, help="file to write the report to (default: stdout)")
    p.set_defaults(handler=run_check)


def policy_files(paths: list[Path]) -> list[Path]:
    """The files named, a directory's policy files in name order in its place."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.suffix.lower() in POLICY_SUFFIXES and p.is_file())
            if not inside:
                raise UsageError(f"{path}: no {', '.join(POLICY_SUFFIXES)} files in this directory")
            found += inside
        else:
            found.append(path)
    return found


def read_policies(paths: list[Path]) -> PolicySet:
    """The policies of ``paths``; :class:`UsageError` naming the file, document and field."""
    sources = [(str(path), mapsource.read_text(path, "policy file")) for path in policy_files(paths)]
    try:
        return load_policies(sources)
    except PolicyError as exc:
        raise UsageError(str(exc)) from exc


def _map(args: argparse.Namespace, transport: Transport | None) -> tuple[list[Edge], ClusterFacts, float]:
    """The edges, the facts and the time the window ends at."""
    if args.edges:
        snapshot = mapsource.snapshot_file(args.edges, "--edges")
        return list(snapshot.edges), snapshot.facts, snapshot.taken_at
    with mapsource.mapper(args, transport, mapsource.MapperUnreachable) as client:
        at = time.time()
        return mapsource.live_edges(client), mapsource.live_facts(client), at


def run_check(args: argparse.Namespace, transport: Transport | None) -> int:
    policies = read_policies(
        args.policies
    )  # before the mapper is asked: a bad file is the first thing to fix
    edges, facts, end = _map(args, transport)
    result = check(mapsource.in_window(edges, args.since, end, args.namespace), policies, facts)
    if args.format == "json":
        report = json.dumps(report_json(result), indent=2, ensure_ascii=False) + "\n"
    elif args.format == "junit":
        report = report_junit(result, policies)
    else:
        report = report_text(result)
    if not report.endswith("\n"):
        report += "\n"
    if args.output:
        write(args.output, report)
        verdict = f"{len({d.edge.key for d in result.denials})} of {result.evaluated} edges would be denied"
        print(f"{verdict}; report written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(report)
    return 1 if result.denials else 0
