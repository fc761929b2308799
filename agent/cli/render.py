"""Text and graph views of the map (pure): edges in, a ``list`` listing or DOT source out.

The listing keeps the Otterize CLI's format (``<client> in namespace <ns> calls:`` then
``  - <server>`` lines, ``in namespace <ns>`` for other namespaces), adding Internet and AWS
targets, which Otterize's listing leaves out, and the HTTP paths and Kafka topics seen in brackets.
Kafka operations the broker denied are shown, marked ``(denied)``, so users see what an ACL made from
the map would refuse: ``[topic mytopic consume/describe; topic payments consume (denied)]``. The DOT
text goes to graphviz (``dot``).

``list --verbose`` adds, under each edge, its provenance: per method that saw it, how often and
when first and last (UTC, to the second), and marks an edge seen only through DNS. An edge stored
before provenance was kept shows its methods together, with the edge's own times and count.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime

from agent.model import AwsTarget, Edge, InternetTarget, KafkaTopic, WorkloadIdentity

DNS_ONLY = "DNS only: a name was resolved, no connection seen"
NO_EDGES = (
    "No connections found. The mapper sees DNS lookups and new TCP connections as they happen, "
    "and open connections at each socket scan: let traffic flow and try again."
)


def _topic_details(topics: Iterable[KafkaTopic]) -> list[str]:
    """Per topic, its principals together: the allowed operations, then those a principal was denied
    and never allowed (an ACL made from the map would refuse them too)."""
    allowed: dict[str, set[str]] = defaultdict(set)
    refused: dict[str, set[str]] = defaultdict(set)
    for topic in topics:
        allowed[topic.name].update(topic.operations)
        refused[topic.name].update(set(topic.denied) - set(topic.operations))
    details = []
    for name in sorted(allowed):
        parts = ["/".join(sorted(allowed[name]))] if allowed[name] else []
        if refused[name]:
            parts.append(f"{'/'.join(sorted(refused[name]))} (denied)")
        details.append(f"topic {name} {', '.join(parts)}".strip())
    return details


def _target_line(client: WorkloadIdentity, edge: Edge) -> str:
    t = edge.target
    if isinstance(t, WorkloadIdentity):
        line = t.name if t.namespace == client.namespace else f"{t.name} in namespace {t.namespace}"
    elif isinstance(t, InternetTarget):
        where = ", ".join(t.ips)
        line = f"{t.dns_name or where} (Internet{': ' + where if t.dns_name and where else ''})"
    else:
        line = f"{t.arn} (AWS: {', '.join(edge.aws_actions) or 'no actions'})"
    details = [f"{h.path} {'/'.join(h.methods)}".strip() for h in edge.http]
    details += _topic_details(edge.kafka_topics)
    if details:
        line += f" [{'; '.join(details)}]"
    if edge.ambiguous:
        line += " (ambiguous)"
    return line


def _sort_key(edge: Edge) -> tuple[int, str]:
    t = edge.target
    if isinstance(t, WorkloadIdentity):
        return (0, f"{t.namespace != edge.client.namespace}{t.namespace}/{t.name}")
    return (1, t.dns_name if isinstance(t, InternetTarget) else t.arn)


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _seen(what: str, count: int, first: float, last: float) -> str:
    times = "1 time" if count == 1 else f"{count} times"
    return f"      {what}: {times}, first {_when(first)}, last {_when(last)}"


def _provenance_lines(edge: Edge) -> list[str]:
    """Which methods saw ``edge``, how often and when; the DNS-only mark."""
    if edge.provenance:
        lines = [_seen(str(s.method), s.count, s.first_seen, s.last_seen) for s in edge.provenance]
    else:  # stored before provenance was kept: only the edge's own times and count are known
        methods = ", ".join(sorted(edge.methods)) or "no method recorded"
        lines = [_seen(methods, edge.count, edge.first_seen, edge.last_seen) + " (per method: not recorded)"]
    if edge.dns_only:
        lines.append(f"      {DNS_ONLY}")
    return lines


def listing(edges: Iterable[Edge], *, verbose: bool = False) -> str:
    """Each client and what it calls; ``verbose``: with each edge's provenance (see the module doc)."""
    by_client: dict[WorkloadIdentity, list[Edge]] = defaultdict(list)
    for e in edges:
        by_client[e.client].append(e)
    lines: list[str] = []
    for client in sorted(by_client, key=lambda c: (c.namespace, c.name)):
        lines.append(f"{client.name} in namespace {client.namespace} calls:")
        for e in sorted(by_client[client], key=_sort_key):
            lines.append(f"  - {_target_line(client, e)}")
            if verbose:
                lines += _provenance_lines(e)
    return "\n".join(lines)


def _node(t: WorkloadIdentity | InternetTarget | AwsTarget) -> str:
    if isinstance(t, WorkloadIdentity):
        return f"{t.namespace}/{t.name}"
    if isinstance(t, InternetTarget):
        return t.dns_name or ", ".join(t.ips)
    return t.arn


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot(edges: Iterable[Edge]) -> str:
    """Graphviz source: one cluster per namespace, Internet and AWS targets as their own shapes."""
    edges = list(edges)
    namespaces: dict[str, set[str]] = defaultdict(set)
    others: dict[str, str] = {}
    for e in edges:
        for end in (e.client, e.target):
            if isinstance(end, WorkloadIdentity):
                namespaces[end.namespace].add(end.name)
            else:
                others[_node(end)] = "cloud" if isinstance(end, InternetTarget) else "cylinder"
    out = [
        "digraph network_map {",
        "  rankdir=LR;",
        '  node [shape=box, style=rounded, fontname="Helvetica"];',
    ]
    for i, ns in enumerate(sorted(namespaces)):
        out.append(f"  subgraph cluster_{i} {{ label={_quote(ns)}; style=dashed;")
        out += [f"    {_quote(f'{ns}/{n}')} [label={_quote(n)}];" for n in sorted(namespaces[ns])]
        out.append("  }")
    out += [f"  {_quote(n)} [shape={shape}];" for n, shape in sorted(others.items())]
    for e in sorted(edges, key=lambda e: (_node(e.client), _node(e.target))):
        attrs = f"tooltip={_quote(','.join(sorted(e.methods)))}" + (", style=dashed" if e.ambiguous else "")
        out.append(f"  {_quote(_node(e.client))} -> {_quote(_node(e.target))} [{attrs}];")
    out.append("}")
    return "\n".join(out) + "\n"
