"""Where the ``check``, ``snapshot`` and ``diff`` commands get their maps: the mapper's GraphQL API
(the live edges and cluster facts, snapshots by name, through :mod:`agent.mapperclient` and the
queries of :mod:`agent.cli.queries`) or a file (a snapshot document or a JSON export, read by
:mod:`agent.snapshotwire`), so CI can work from files with no mapper. Also the flags' value types
they share (``--since DURATION``, ``--namespace``). Failures become :mod:`agent.cli.output`'s
one-line errors.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from agent import snapshotwire
from agent.cli import queries
from agent.cli.output import CliError, UsageError
from agent.mapdiff import in_namespaces
from agent.mapperclient import HttpMapperClient, MapperError, MapperRejected, MapperUnavailable, Transport
from agent.model import ClusterFacts, Edge, Snapshot
from agent.wire import WireError

PORT_FORWARD = "kubectl port-forward -n otterize-system svc/network-mapper 9090"

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
MAX_DURATION = 100 * 365 * 86400.0  # a century: anything longer means "everything", and is a typo


def duration(text: str) -> float:
    """``--since``: ``30m``, ``2h``, ``7d``, ``1h30m`` (units s, m, h, d, w) → seconds (> 0)."""
    parts = _DURATION.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 30m, 2h, 7d or 1h30m")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not 0 < seconds <= MAX_DURATION:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration between 1s and 100 years")
    return seconds


class MapperUnreachable(CliError):
    """The mapper did not answer (``check`` exits 3 for it, so CI tells an outage from a verdict)."""

    status = 3


@contextmanager
def mapper(
    args: argparse.Namespace, transport: Transport | None, unreachable: type[CliError] = CliError
) -> Iterator[HttpMapperClient]:
    """A client for ``--mapper-url``, its errors as one-line :class:`CliError` (``unreachable`` for
    no answer). Nothing is sent until a query is: a command that reads files only never connects."""
    client = HttpMapperClient(args.mapper_url, args.token, args.timeout, transport)
    try:
        yield client
    except MapperUnavailable as exc:
        raise unreachable(
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


# --------------------------------------------------------------------------- maps


def live_edges(client: HttpMapperClient) -> list[Edge]:
    return [
        queries.edge_from_json(e) for e in client.execute(queries.EDGES_QUERY, {"namespaces": None})["edges"]
    ]


def live_facts(client: HttpMapperClient) -> ClusterFacts:
    return queries.facts_from_json(client.execute(queries.CLUSTER_FACTS_QUERY, {})["clusterFacts"])


def live_snapshot(client: HttpMapperClient, with_facts: bool = False) -> Snapshot:
    """The map now: the mapper's edges (and, when asked, its cluster facts), named ``now``."""
    at = time.time()
    facts = live_facts(client) if with_facts else ClusterFacts()
    return Snapshot("now", at, tuple(live_edges(client)), facts)


def read_text(path: Path, flag: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{flag}: cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"{flag}: cannot read {path}: not UTF-8 text ({exc.reason})") from exc


def snapshot_file(path: Path, flag: str) -> Snapshot:
    """A snapshot document or a JSON export (which has no name: "")."""
    try:
        return snapshotwire.decode_snapshot(read_text(path, flag))
    except WireError as exc:
        raise UsageError(f"{flag}: {path} is not a snapshot or a JSON export: {exc}") from exc


def is_file_name(text: str) -> bool:
    """A snapshot argument names a file when it ends in ``.json`` or has a directory (snapshot names
    are DNS-like: no ``/``, and ``.json`` is not a name one would choose)."""
    return text.lower().endswith(".json") or "/" in text


def named_snapshot(client: HttpMapperClient, name: str) -> Snapshot:
    """The mapper's snapshot ``name``; :class:`UsageError` when it has none by that name."""
    text = client.execute(queries.SNAPSHOT_QUERY, {"name": name})["snapshot"]
    if text is None:
        raise UsageError(
            f"the mapper has no snapshot named {name!r} (network-mapper snapshot list shows them)"
        )
    try:
        return snapshotwire.decode_snapshot(text)
    except WireError as exc:
        raise CliError(f"the mapper's snapshot {name!r} cannot be read: {exc}") from exc


def snapshot_infos(client: HttpMapperClient) -> list[queries.SnapshotSummary]:
    """The mapper's snapshots, newest first."""
    infos = [
        queries.snapshot_summary(raw) for raw in client.execute(queries.SNAPSHOTS_QUERY, {})["snapshots"]
    ]
    return sorted(infos, key=lambda s: (-s.taken_at, s.name))


def in_window(
    edges: Iterable[Edge], since: float | None, end: float, namespaces: Collection[str]
) -> list[Edge]:
    """The edges last seen within ``since`` seconds before ``end`` (all: None) whose client or
    workload target is in one of ``namespaces`` (all: empty)."""
    wanted = frozenset(namespaces)
    return [
        e
        for e in edges
        if (since is None or e.last_seen >= end - since) and (not wanted or in_namespaces(e, wanted))
    ]
