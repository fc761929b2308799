"""``network-mapper snapshot save|list|export|load|delete`` and ``network-mapper diff``.

Snapshots live in the mapper's store (its GraphQL ``snapshots``/``snapshot`` queries and the
``saveSnapshot``/``loadSnapshot``/``deleteSnapshot`` mutations, :mod:`agent.cli.queries`); a file
(``snapshot export``) holds one as :mod:`agent.snapshotwire`'s document. ``diff`` compares two maps
— snapshots by name, files, or the live map (:mod:`agent.cli.mapsource`) — with :mod:`agent.mapdiff`
and prints the diff as text, JSON or a Markdown table. Registered by :mod:`agent.cli.main`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from agent import snapshotwire
from agent.cli import mapsource, queries
from agent.cli.output import CliError, UsageError, write
from agent.mapdiff import diff, diff_json, diff_markdown, diff_text
from agent.mapperclient import HttpMapperClient, Transport
from agent.model import Snapshot
from agent.wiretime import format_time

_NAME = re.compile(r"[a-z0-9]([-a-z0-9._]{0,61}[a-z0-9])?")
AUTO_PREFIX = "auto-"
INTERVAL_HINT = (
    "the mapper saves an automatic snapshot every MAPPER_SNAPSHOT_INTERVAL (default 1h) and keeps the"
    " last MAPPER_AUTO_SNAPSHOTS (default 48)"
)

DIFF_EPILOG = """which maps:
  diff A B            snapshot A (older) against snapshot B
  diff A  |  diff A --now
                      snapshot A against the live map
  diff --since 2h     the newest snapshot taken at or before 2h ago (automatic ones too) against
                      the live map; the mapper saves an automatic snapshot every
                      MAPPER_SNAPSHOT_INTERVAL (default 1h), keeping MAPPER_AUTO_SNAPSHOTS (48)
  A and B are names the mapper keeps (network-mapper snapshot list) or files (a path ending in
  .json, or with a /: a snapshot export or a JSON export), so CI can diff files with no mapper.

what the diff shows:
  added    edges (client → target) in B that A lacks
  gone     edges of A that B lacks, or that B has not seen since A was taken (the mapper keeps
           edges it saw once, so "gone" also means "no longer seen")
  changed  edges in both, seen since A, whose details differ: Kafka topics and operations, HTTP
           paths and methods, AWS actions, TCP server ports (+ new in B, - no longer in B)
  --format markdown writes a table (change | client | target | details) to paste into a pull request.

exit status: 0 done (whatever the diff); 1 the mapper is unreachable or refused, or no snapshot is
old enough for --since; 2 a bad flag, name or file"""


def snapshot_name(text: str) -> str:
    """``snapshot save NAME``: a DNS-like name, not one of the mapper's own ``auto-`` names."""
    if not _NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a snapshot name: lower-case letters, digits, '-', '.' and '_', at most 63,"
            " starting and ending with a letter or digit"
        )
    if text.startswith(AUTO_PREFIX):
        raise argparse.ArgumentTypeError(f"{text!r}: names starting {AUTO_PREFIX!r} are the mapper's own")
    return text


def add_parsers(sub: Any, output_file: Callable[[str], Path]) -> None:
    """Registers ``snapshot`` and ``diff`` on ``sub`` (the main parser's subparsers)."""
    snap = sub.add_parser(
        "snapshot",
        help="save, list, export, load or delete snapshots of the map in the mapper",
        description=f"Snapshots of the map (edges and cluster facts) kept by the mapper; {INTERVAL_HINT}.",
    )
    actions = snap.add_subparsers(dest="action", required=True, metavar="ACTION")
    save = actions.add_parser("save", help="save the map now as NAME (replacing a snapshot of that name)")
    save.add_argument("name", type=snapshot_name, metavar="NAME")
    actions.add_parser("list", help="list the snapshots, newest first")
    exp = actions.add_parser("export", help="write snapshot NAME as a JSON document")
    exp.add_argument("name", metavar="NAME")
    exp.add_argument("-o", "--output", type=output_file, help="file to write (default: stdout)")
    load = actions.add_parser("load", help="upload a snapshot document (or a JSON export) to the mapper")
    load.add_argument("file", type=Path, metavar="FILE")
    load.add_argument("--name", type=snapshot_name, help="save it under this name (needed for a JSON export)")
    delete = actions.add_parser("delete", help="delete snapshot NAME")
    delete.add_argument("name", metavar="NAME")
    snap.set_defaults(handler=run_snapshot)

    dif = sub.add_parser(
        "diff",
        help="what changed between two maps: edges added, gone and changed",
        epilog=DIFF_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dif.add_argument("a", nargs="?", metavar="A", help="the older map: a snapshot name or a .json file")
    dif.add_argument("b", nargs="?", metavar="B", help="the newer map (default: the live map)")
    dif.add_argument("--now", action="store_true", help="compare A with the live map (the default without B)")
    dif.add_argument(
        "--since",
        type=mapsource.duration,
        metavar="DURATION",
        help="A = the newest snapshot at or before DURATION ago",
    )
    dif.add_argument("--format", choices=["text", "json", "markdown"], default="text")
    dif.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="only edges with the client or target here (repeatable)",
    )
    dif.add_argument("-o", "--output", type=output_file, help="file to write (default: stdout)")
    dif.set_defaults(handler=run_diff)


# --------------------------------------------------------------------------- snapshot


def _info_line(info: queries.SnapshotSummary, verb: str = "") -> str:
    auto = " (automatic)" if info.auto else ""
    return f"{verb}{info.name}{auto}: {info.edges} edges, taken at {format_time(info.taken_at)}"


def _listing(infos: list[queries.SnapshotSummary]) -> str:
    if not infos:
        return f"No snapshots yet: network-mapper snapshot save NAME saves one, and {INTERVAL_HINT}."
    width = max(len("NAME"), *(len(i.name) for i in infos))
    lines = [f"{'NAME':<{width}}  {'TAKEN AT':<27}  {'EDGES':>7}  AUTO"]
    lines += [
        f"{i.name:<{width}}  {format_time(i.taken_at):<27}  {i.edges:>7}  {'yes' if i.auto else 'no'}"
        for i in infos
    ]
    return "\n".join(lines)


def _load_document(args: argparse.Namespace) -> str:
    snapshot = mapsource.snapshot_file(args.file, "load")
    if args.name:
        snapshot = replace(snapshot, name=args.name)
    elif not _NAME.fullmatch(snapshot.name) or snapshot.name.startswith(AUTO_PREFIX):
        # a JSON export (no name) or an automatic snapshot (the mapper's own names)
        raise UsageError(
            f"load: {args.file} holds no snapshot name the mapper accepts ({snapshot.name!r}); give --name"
        )
    return snapshotwire.encode_snapshot(replace(snapshot, auto=False)).decode()


def _snapshot(client: HttpMapperClient, args: argparse.Namespace, document: str) -> str:
    if args.action == "save":
        info = queries.snapshot_summary(
            client.execute(queries.SAVE_SNAPSHOT_MUTATION, {"name": args.name})["saveSnapshot"]
        )
        return _info_line(info, "saved snapshot ")
    if args.action == "list":
        return _listing(mapsource.snapshot_infos(client))
    if args.action == "load":
        answer = client.execute(queries.LOAD_SNAPSHOT_MUTATION, {"document": document})["loadSnapshot"]
        return _info_line(queries.snapshot_summary(answer), "loaded snapshot ")
    if args.action == "delete":
        if not client.execute(queries.DELETE_SNAPSHOT_MUTATION, {"name": args.name})["deleteSnapshot"]:
            raise UsageError(
                f"the mapper has no snapshot named {args.name!r} (network-mapper snapshot list shows them)"
            )
        return f"deleted snapshot {args.name}"
    text = client.execute(queries.SNAPSHOT_QUERY, {"name": args.name})["snapshot"]  # export
    if text is None:
        raise UsageError(
            f"the mapper has no snapshot named {args.name!r} (network-mapper snapshot list shows them)"
        )
    pretty = json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"
    if args.output:
        write(args.output, pretty)
        return f"wrote snapshot {args.name} to {args.output}"
    return pretty.rstrip("\n")


def run_snapshot(args: argparse.Namespace, transport: Transport | None) -> int:
    # a file to load is read and checked first: a bad one is a usage error before anything is sent
    document = _load_document(args) if args.action == "load" else ""
    with mapsource.mapper(args, transport) as client:
        print(_snapshot(client, args, document))
    return 0


# --------------------------------------------------------------------------- diff


def _sides_checked(args: argparse.Namespace) -> None:
    if args.since is not None and (args.a or args.b):
        raise UsageError("diff --since DURATION picks snapshot A itself: give no A or B with it")
    if args.since is None and not args.a:
        raise UsageError("diff needs snapshot A (a name or a .json file), or --since DURATION")
    if args.now and args.b:
        raise UsageError("diff: give B or --now, not both")


def _named_file(path: Path) -> Snapshot:
    """A file's map, named after the file when it has no name (a JSON export)."""
    snapshot = mapsource.snapshot_file(path, "diff")
    return snapshot if snapshot.name else replace(snapshot, name=path.name)


def _since(client: HttpMapperClient, seconds: float) -> Snapshot:
    cutoff = time.time() - seconds
    for info in mapsource.snapshot_infos(client):  # newest first
        if info.taken_at <= cutoff:
            return mapsource.named_snapshot(client, info.name)
    raise CliError(
        f"no snapshot was taken at or before {format_time(cutoff)}: {INTERVAL_HINT}, so one may not be that"
        " old yet (network-mapper snapshot list shows them)"
    )


def _render(args: argparse.Namespace, a: Snapshot, b: Snapshot) -> str:
    d = diff(a, b, args.namespace or None)
    if args.format == "json":
        return json.dumps(diff_json(d), indent=2, ensure_ascii=False) + "\n"
    if args.format == "markdown":
        return diff_markdown(d)
    return diff_text(d) + "\n"


def run_diff(args: argparse.Namespace, transport: Transport | None) -> int:
    _sides_checked(args)
    # files first: a bad one is a usage error before the mapper is asked (and two files need no mapper)
    files = {s: _named_file(Path(s)) for s in (args.a, args.b) if s and mapsource.is_file_name(s)}
    with mapsource.mapper(args, transport) as client:

        def side(text: str) -> Snapshot:
            return files.get(text) or mapsource.named_snapshot(client, text)

        a = _since(client, args.since) if args.since is not None else side(args.a)
        b = side(args.b) if args.b else mapsource.live_snapshot(client)
        text = _render(args, a, b)
    if args.output:
        write(args.output, text)
        print(f"wrote the diff of {a.name} and {b.name} to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
