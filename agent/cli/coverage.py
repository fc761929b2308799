"""``network-mapper coverage``: how far to trust the map, from the mapper's GraphQL ``coverage``
query (:mod:`agent.mapper.coverage` builds the document): nodes with and without a reporting
sniffer, each component's last report, observations received / resolved / dropped per reason, the
top unresolved IPs, silent watchers and the unexplained drops; as text or as the document (JSON).

Exit status, so it can gate CI: 0 every node covered and no component silent, 1 otherwise (or the
mapper refused the query), 3 the mapper unreachable (:class:`agent.cli.mapsource.MapperUnreachable`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from agent.cli import mapsource
from agent.mapperclient import Transport

QUERY = """query Coverage { coverage {
  generatedAt staleAfterSeconds covered
  nodes { name covered sniffers lastReport }
  components { component instance node watching counters { name value } lastReport silent }
  observationsReceived observationsResolved
  drops { reason source count explanation }
  unexplainedDrops
  unresolvedIps { ip count lastSeen }
} }"""

DESCRIPTION = """Show what the map covers: the cluster's nodes with and without a reporting sniffer,
each producer's last status report, observations received / resolved / dropped per reason, the
IPs that could not be attributed, and producers that went silent."""
EPILOG = """exit status:
  0  every node has a reporting sniffer and no producer is silent
  1  a node is uncovered or a producer silent (or the mapper refused the query)
  2  a bad flag or value
  3  the mapper is unreachable"""


def add_parser(sub: Any) -> None:
    """Registers ``coverage`` on ``sub`` (the main parser's subparsers)."""
    p = sub.add_parser(
        "coverage",
        help="which nodes and producers report, and what was dropped (for CI: exit 1 when not covered)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--format", choices=["text", "json"], default="text", help="output format (default text)")
    p.set_defaults(handler=run_coverage)


def _when(text: str | None) -> str:
    return text or "never"


def report_text(doc: dict[str, Any]) -> str:
    """The document as the text report (sections in the order a reader checks them)."""
    lines = [f"coverage: {'complete' if doc['covered'] else 'INCOMPLETE'}", ""]
    nodes = doc["nodes"]
    covered = [n for n in nodes if n["covered"]]
    lines.append(f"nodes: {len(covered)} of {len(nodes)} with a reporting sniffer")
    for node in nodes:
        state = "covered  " if node["covered"] else "UNCOVERED"
        sniffers = ",".join(node["sniffers"]) or "-"
        lines.append(f"  {state} {node['name']}  sniffer={sniffers}  last report {_when(node['lastReport'])}")
    lines += ["", "components:"]
    for c in doc["components"]:
        state = "SILENT" if c["silent"] else "ok    "
        where = f" node={c['node']}" if c["node"] else ""
        lines.append(f"  {state} {c['component']} {c['instance']}{where}  last report {c['lastReport']}")
        if c["watching"]:
            lines.append(f"         watching: {', '.join(c['watching'])}")
    if not doc["components"]:
        lines.append("  (no status report since the mapper started)")
    received, resolved = doc["observationsReceived"], doc["observationsResolved"]
    lines += ["", f"observations: {received} received, {resolved} resolved into edges"]
    lines.append("dropped:")
    for d in doc["drops"]:
        why = d["explanation"] or "UNEXPLAINED"
        lines.append(f"  {d['count']:>8}  {d['reason']} ({d['source']}): {why}")
    if not doc["drops"]:
        lines.append("  nothing")
    lines += ["", "top unresolved IPs:"]
    for u in doc["unresolvedIps"]:
        lines.append(f"  {u['count']:>8}  {u['ip']}  last seen {u['lastSeen']}")
    if not doc["unresolvedIps"]:
        lines.append("  none")
    silent = [f"{c['component']} {c['instance']}" for c in doc["components"] if c["silent"]]
    lines += ["", f"silent watchers: {', '.join(silent) if silent else 'none'}"]
    lines.append(f"unexplained drops: {doc['unexplainedDrops']}")
    return "\n".join(lines) + "\n"


def run_coverage(args: argparse.Namespace, transport: Transport | None) -> int:
    with mapsource.mapper(args, transport, unreachable=mapsource.MapperUnreachable) as client:
        doc: dict[str, Any] = client.execute(QUERY, {})["coverage"]
    if args.format == "json":
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(report_text(doc))
    return 0 if doc["covered"] else 1
