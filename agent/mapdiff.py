"""What changed between two maps (pure): two :class:`~agent.model.Snapshot` objects in, a
:class:`MapDiff` out, and the diff as text, a JSON value or a Markdown table.

The snapshots come from the mapper's store or a file (the CLI's ``network-mapper diff``, through
:mod:`agent.snapshotwire`), or from the cloud's stores (its ``diff`` route); the renderings go to
the user's terminal, a CI job, or a pull request. ``a`` is the older map, ``b`` the newer:

* **added**: edges whose key (client, target) is in ``b`` and not in ``a``;
* **gone**: edges of ``a`` that ``b`` lacks, or that ``b`` has not seen since ``a`` was taken
  (``b.last_seen <= a.taken_at``: the store keeps edges, so absence is not the only way to go;
  this needs ``b`` taken after ``a``, so a map compared with itself shows no change);
* **changed**: edges in both, seen since ``a`` was taken, whose details differ: Kafka topics and
  operations, HTTP paths and methods, AWS actions, TCP server ports; what ``b`` has that ``a``
  lacked (added values) and what ``b`` lacks that ``a`` had (removed values).

Edges are named as ``network-mapper list`` names them (``frontend in namespace shop`` →
``cartservice``, ``billing in namespace extras``, ``api.example.com (Internet: 1.2.3.4)``, an ARN).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from agent import wire
from agent.model import Edge, InternetTarget, Snapshot, Target, WorkloadIdentity
from agent.wiretime import format_time

KIND = "MapDiff"


@dataclass(frozen=True, slots=True)
class Details:
    """The detail values of an edge that a diff compares (each tuple sorted)."""

    kafka: tuple[tuple[str, str], ...] = ()  # (topic, operation); operation "" for a topic seen without one
    http: tuple[tuple[str, str], ...] = ()  # (path, method); method "" for a path seen without one
    aws_actions: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.kafka or self.http or self.aws_actions or self.ports)


@dataclass(frozen=True, slots=True)
class EdgeChange:
    """An edge in both maps whose details differ: ``added`` are in ``after`` only, ``removed`` in
    ``before`` only."""

    before: Edge
    after: Edge
    added: Details
    removed: Details


@dataclass(frozen=True, slots=True)
class MapDiff:
    """The diff of map ``a`` (older, named ``a_name``) and map ``b``; each list in edge order."""

    a_name: str
    a_taken_at: float
    b_name: str
    b_taken_at: float
    added: tuple[Edge, ...] = ()
    gone: tuple[Edge, ...] = ()
    changed: tuple[EdgeChange, ...] = ()
    namespaces: tuple[str, ...] = field(default=())  # the filter applied (empty: none)

    def __bool__(self) -> bool:
        return bool(self.added or self.gone or self.changed)


# --------------------------------------------------------------------------- the diff


def details(edge: Edge) -> Details:
    """The values of ``edge`` a diff compares. Kafka: operations the broker allowed, any principal."""
    kafka = {(t.name, op) for t in edge.kafka_topics for op in t.operations}
    kafka |= {(t.name, "") for t in edge.kafka_topics if not t.operations}
    http = {(h.path, m) for h in edge.http for m in h.methods} | {
        (h.path, "") for h in edge.http if not h.methods
    }
    return Details(
        tuple(sorted(kafka)),
        tuple(sorted(http)),
        tuple(sorted(set(edge.aws_actions))),
        tuple(sorted(set(edge.ports))),
    )


def _minus(a: Details, b: Details) -> Details:
    """The values of ``a`` that ``b`` lacks."""

    def only(x: tuple[Any, ...], y: tuple[Any, ...]) -> tuple[Any, ...]:
        seen = set(y)
        return tuple(v for v in x if v not in seen)

    return Details(
        only(a.kafka, b.kafka),
        only(a.http, b.http),
        only(a.aws_actions, b.aws_actions),
        only(a.ports, b.ports),
    )


def in_namespaces(edge: Edge, namespaces: Collection[str]) -> bool:
    """Whether the edge's client, or its target when a workload, is in one of ``namespaces``."""
    if edge.client.namespace in namespaces:
        return True
    return isinstance(edge.target, WorkloadIdentity) and edge.target.namespace in namespaces


def _target_order(t: Target) -> tuple[Any, ...]:
    if isinstance(t, WorkloadIdentity):
        return (0, t.namespace, t.name, t.kind)
    if isinstance(t, InternetTarget):
        return (1, t.dns_name, t.ips, t.port)
    return (2, t.arn)


def edge_order(edge: Edge) -> tuple[Any, ...]:
    """Client (namespace, name, kind), then workload, Internet and AWS targets: a total order of keys."""
    c = edge.client
    return (c.namespace, c.name, c.kind, _target_order(edge.target))


def diff(a: Snapshot, b: Snapshot, namespaces: Collection[str] | None = None) -> MapDiff:
    """What changed from ``a`` (older) to ``b``; only edges in ``namespaces`` when given (see
    :func:`in_namespaces`)."""
    wanted = frozenset(namespaces or ())

    def by_key(edges: Iterable[Edge]) -> dict[tuple[WorkloadIdentity, Target], Edge]:
        return {e.key: e for e in edges if not wanted or in_namespaces(e, wanted)}

    old, new = by_key(a.edges), by_key(b.edges)
    # "Not seen since a" needs time between the maps: a map compared with itself (or an older one)
    # has no window in which anything could be seen, and then only presence counts.
    window = b.taken_at > a.taken_at
    added = [e for k, e in new.items() if k not in old]
    gone: list[Edge] = []
    changed: list[EdgeChange] = []
    for key, before in old.items():
        after = new.get(key)
        if after is None or (window and after.last_seen <= a.taken_at):
            gone.append(before)
            continue
        was, now = details(before), details(after)
        if was != now:
            changed.append(EdgeChange(before, after, _minus(now, was), _minus(was, now)))
    return MapDiff(
        a.name,
        a.taken_at,
        b.name,
        b.taken_at,
        tuple(sorted(added, key=edge_order)),
        tuple(sorted(gone, key=edge_order)),
        tuple(sorted(changed, key=lambda c: edge_order(c.after))),
        tuple(sorted(wanted)),
    )


# --------------------------------------------------------------------------- names and values


def client_name(client: WorkloadIdentity) -> str:
    return f"{client.name} in namespace {client.namespace}"


def target_name(client: WorkloadIdentity, target: Target) -> str:
    """The target as ``network-mapper list`` shows it under ``client`` (the port of an Internet
    target added, as it tells apart edges that are otherwise named alike)."""
    if isinstance(target, WorkloadIdentity):
        if target.namespace == client.namespace:
            return target.name
        return f"{target.name} in namespace {target.namespace}"
    if isinstance(target, InternetTarget):
        where = ", ".join(target.ips)
        name = target.dns_name or where
        port = f":{target.port}" if target.port else ""
        return f"{name}{port} (Internet{': ' + where if target.dns_name and where else ''})"
    return f"{target.arn} (AWS)"


def _values(d: Details) -> list[str]:
    """Each value of ``d`` as a short phrase, in a fixed order."""
    out = [f"port {p}" for p in d.ports]
    out += [f"HTTP {m} {p}" if m else f"HTTP {p}" for p, m in d.http]
    out += [f"Kafka {t} {op}" if op else f"Kafka {t}" for t, op in d.kafka]
    out += [f"AWS {a}" for a in d.aws_actions]
    return out


def change_phrases(change: EdgeChange) -> list[str]:
    """``+port 8080``, ``-HTTP GET /old``: the added values, then the removed ones."""
    return [f"+{v}" for v in _values(change.added)] + [f"-{v}" for v in _values(change.removed)]


def _summary(d: MapDiff) -> str:
    counts = f"{len(d.added)} added, {len(d.gone)} gone, {len(d.changed)} changed"
    scope = f" (namespaces {', '.join(d.namespaces)})" if d.namespaces else ""
    a, b = f"{d.a_name} ({format_time(d.a_taken_at)})", f"{d.b_name} ({format_time(d.b_taken_at)})"
    return f"{a} → {b}{scope}: {counts}"


# --------------------------------------------------------------------------- renderings


def edge_name(edge: Edge) -> str:
    """``frontend in namespace shop → cartservice``."""
    return f"{client_name(edge.client)} → {target_name(edge.client, edge.target)}"


def diff_text(d: MapDiff) -> str:
    """One line per edge: ``+`` added, ``-`` gone, ``~`` changed (with what changed)."""
    lines = [_summary(d)]
    for e in d.added:
        extra = _values(details(e))
        lines.append(f"+ {edge_name(e)}" + (f" [{'; '.join(extra)}]" if extra else ""))
    lines += [f"- {edge_name(e)} (last seen {format_time(e.last_seen)})" for e in d.gone]
    lines += [f"~ {edge_name(c.after)}: {'; '.join(change_phrases(c))}" for c in d.changed]
    return "\n".join(lines)


def _details_json(d: Details) -> dict[str, Any]:
    return {
        "ports": list(d.ports),
        "http": [{"path": p, "method": m} for p, m in d.http],
        "kafka": [{"topic": t, "operation": op} for t, op in d.kafka],
        "awsActions": list(d.aws_actions),
    }


def _ends(edge: Edge) -> dict[str, Any]:
    doc: dict[str, Any] = wire.plain(wire.to_doc(edge))
    return {"client": doc["client"], "target": doc["target"]}


def diff_json(d: MapDiff) -> dict[str, Any]:
    """The diff as a JSON value (every key always present, lists in edge order: equal diffs give
    equal documents). Added and gone edges are whole edge documents (:mod:`agent.wire`)."""
    return {
        "apiVersion": wire.EXPORT_API_VERSION,
        "kind": KIND,
        "from": {"name": d.a_name, "takenAt": format_time(d.a_taken_at)},
        "to": {"name": d.b_name, "takenAt": format_time(d.b_taken_at)},
        "namespaces": list(d.namespaces),
        "added": [wire.plain(wire.to_doc(e)) for e in d.added],
        "gone": [wire.plain(wire.to_doc(e)) for e in d.gone],
        "changed": [
            {
                **_ends(c.after),
                "lastSeen": format_time(c.after.last_seen),
                "added": _details_json(c.added),
                "removed": _details_json(c.removed),
            }
            for c in d.changed
        ],
    }


def _cell(text: str) -> str:
    """Text safe in a GitHub table cell: a ``|`` would end the cell, a newline the row, ``<`` start HTML."""
    text = " ".join(text.split())
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _row(*cells: str) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def diff_markdown(d: MapDiff) -> str:
    """A summary line and a GitHub-flavoured Markdown table (change | client | target | details),
    to paste into a pull request."""
    head = f"**Network map diff**: {_cell(_summary(d))}"
    if not d:
        return head + "\n\nNo edges added, gone or changed.\n"
    rows = ["| change | client | target | details |", "| --- | --- | --- | --- |"]
    for e in d.added:
        rows.append(
            _row(
                "added",
                client_name(e.client),
                target_name(e.client, e.target),
                "; ".join(_values(details(e))),
            )
        )
    for e in d.gone:
        rows.append(
            _row(
                "gone",
                client_name(e.client),
                target_name(e.client, e.target),
                f"last seen {format_time(e.last_seen)}",
            )
        )
    for c in d.changed:
        e = c.after
        rows.append(
            _row(
                "changed",
                client_name(e.client),
                target_name(e.client, e.target),
                "; ".join(change_phrases(c)),
            )
        )
    return head + "\n\n" + "\n".join(rows) + "\n"
