"""The edge store's row encoding: :class:`~agent.model.Edge` values to and from the column tuples of
the ``edges`` table, and the merge of a batch's edges with the stored row of their key. Pure: no
I/O, no SQL beyond the column-name lists.

Edges come in from :meth:`~agent.mapper.store.EdgeStore.record` (the resolver's output, through
the API's report workers): :func:`key_row` gives a row's key and identity columns, :class:`Merged`
accumulates its merged columns. Rows come back from the store's SELECTs (in
:data:`IDENTITY_COLUMNS` then :data:`MERGED_COLUMNS` order) and go out as edges through
:func:`edge_of`, and :func:`forgotten` rebuilds the edge of a key whose row is gone (for
:meth:`~agent.mapper.store.EdgeStore.gone_quiet`).

Encoding: one row per edge key (client, target). The target union is flattened into a
``target_kind`` column (``workload`` | ``internet`` | ``aws``) plus that kind's fields; the row's
primary key is the canonical JSON of the whole key. Set-like details (methods, HTTP resources,
Kafka topics, AWS actions) are canonical (sorted) JSON columns.

Merging, per key: first_seen = min, last_seen = max, count = sum, methods and AWS actions = union,
HTTP resources merged by path with methods unioned, Kafka topics merged by name with operations
unioned (all come back sorted), target_service = the non-empty value seen with the newest
``last_seen`` (an empty one never erases a known service), and ambiguous = AND: one unambiguous
sighting pins the edge to its client for good, since an ambiguous sighting of an already-proven
edge adds no doubt about that edge.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from agent.model import (
    AwsTarget,
    Edge,
    HttpResource,
    InternetTarget,
    KafkaTopic,
    Method,
    Target,
    WorkloadIdentity,
)

IDENTITY_COLUMNS = (
    "key, client_namespace, client_name, client_kind, target_kind, target_namespace, target_name,"
    " target_workload_kind, target_dns_name, target_ips, target_port, target_arn"
)
MERGED_COLUMNS = (
    "first_seen, last_seen, methods, count, http, kafka_topics, aws_actions,"
    " target_service, target_service_seen, ambiguous"
)

dumps = json.JSONEncoder(separators=(",", ":")).encode  # one encoder: json.dumps builds one per call
EMPTY = "[]"


@functools.lru_cache(maxsize=256)
def _methods_json(methods: frozenset[str]) -> str:
    return dumps(sorted(methods))


@functools.lru_cache(maxsize=256)
def _methods_of(column: str) -> frozenset[Method]:
    return frozenset(Method(m) for m in json.loads(column))


def _named_json(named: dict[str, set[str]]) -> str:
    return dumps([[k, sorted(v)] for k, v in sorted(named.items())]) if named else EMPTY


def _loads(column: str) -> Any:
    return json.loads(column) if column != EMPTY else ()


def key_row(edge: Edge) -> tuple[Any, ...]:
    """The key and identity columns of an edge (the first 12 columns of a row)."""
    return key_columns(edge.client, edge.target)


def key_columns(c: WorkloadIdentity, t: Target) -> tuple[Any, ...]:
    """The key and identity columns of the edge key ``(c, t)``; ``[0]`` is the key text."""
    if isinstance(t, WorkloadIdentity):
        target: tuple[Any, ...] = ("workload", t.namespace, t.name, t.kind, "", (), 0, "")
    elif isinstance(t, InternetTarget):
        target = ("internet", "", "", "", t.dns_name, t.ips, t.port, "")
    elif isinstance(t, AwsTarget):
        target = ("aws", "", "", "", "", (), 0, t.arn)
    else:  # pragma: no cover - the Target union is closed
        raise TypeError(f"unknown edge target {t!r}")
    key = dumps([c.namespace, c.name, c.kind, *target])
    ips = dumps(target[5]) if target[5] else EMPTY
    return (key, c.namespace, c.name, c.kind, *target[:5], ips, *target[6:])


class Merged:
    """One key's merged values while a batch is applied: the stored row, then each new edge."""

    __slots__ = (
        "ambiguous",
        "aws",
        "count",
        "first_seen",
        "http",
        "kafka",
        "last_seen",
        "methods",
        "service",
        "service_seen",
    )

    def __init__(self, edge: Edge) -> None:
        self.first_seen, self.last_seen, self.count = edge.first_seen, edge.last_seen, edge.count
        self.methods: set[str] = {str(m) for m in edge.methods}
        self.http: dict[str, set[str]] = {}
        self.kafka: dict[str, set[str]] = {}
        self.aws: set[str] = set(edge.aws_actions)
        self.service, self.service_seen = edge.target_service, edge.last_seen
        self.ambiguous = edge.ambiguous
        for r in edge.http:
            self.http.setdefault(r.path, set()).update(r.methods)
        for t in edge.kafka_topics:
            self.kafka.setdefault(t.name, set()).update(t.operations)

    def add(self, edge: Edge) -> None:
        self.first_seen = min(self.first_seen, edge.first_seen)
        self.last_seen = max(self.last_seen, edge.last_seen)
        self.count += edge.count
        self.methods.update(str(m) for m in edge.methods)
        for r in edge.http:
            self.http.setdefault(r.path, set()).update(r.methods)
        for t in edge.kafka_topics:
            self.kafka.setdefault(t.name, set()).update(t.operations)
        self.aws.update(edge.aws_actions)
        self._take_service(edge.target_service, edge.last_seen)
        self.ambiguous = self.ambiguous and edge.ambiguous

    def add_stored(self, row: tuple[Any, ...]) -> None:
        """Merge a stored row (``MERGED_COLUMNS`` order) into this batch's values."""
        first, last, methods, count, http, kafka, aws, service, service_seen, ambiguous = row
        self.first_seen, self.last_seen = min(self.first_seen, first), max(self.last_seen, last)
        self.count += count
        self.methods.update(_methods_of(methods))
        for name, values in _loads(http):
            self.http.setdefault(name, set()).update(values)
        for name, values in _loads(kafka):
            self.kafka.setdefault(name, set()).update(values)
        self.aws.update(_loads(aws))
        self._take_service(service, service_seen)
        self.ambiguous = self.ambiguous and bool(ambiguous)

    def _take_service(self, service: str, seen: float) -> None:
        if service and (not self.service or seen >= self.service_seen):
            self.service, self.service_seen = service, seen

    def row(self) -> tuple[Any, ...]:
        """The merged columns (``MERGED_COLUMNS`` order) to write."""
        return (
            self.first_seen,
            self.last_seen,
            _methods_json(frozenset(self.methods)),
            self.count,
            _named_json(self.http),
            _named_json(self.kafka),
            dumps(sorted(self.aws)) if self.aws else EMPTY,
            self.service,
            self.service_seen,
            int(self.ambiguous),
        )


def edge_of(row: tuple[Any, ...]) -> Edge:
    """Rebuild an Edge from a row in ``IDENTITY_COLUMNS, MERGED_COLUMNS`` order."""
    (_, c_ns, c_name, c_kind, kind, t_ns, t_name, t_kind, dns, ips, port, arn) = row[:12]
    first, last, methods, count, http, kafka, aws, service, _, ambiguous = row[12:]
    target: WorkloadIdentity | InternetTarget | AwsTarget
    if kind == "workload":
        target = WorkloadIdentity(t_ns, t_name, t_kind)
    elif kind == "internet":
        target = InternetTarget(dns, tuple(_loads(ips)), port)
    else:
        target = AwsTarget(arn)
    return Edge(
        client=WorkloadIdentity(c_ns, c_name, c_kind),
        target=target,
        first_seen=first,
        last_seen=last,
        methods=_methods_of(methods),
        count=count,
        http=tuple(HttpResource(p, tuple(m)) for p, m in _loads(http)),
        kafka_topics=tuple(KafkaTopic(n, tuple(o)) for n, o in _loads(kafka)),
        aws_actions=tuple(_loads(aws)),
        target_service=service,
        ambiguous=bool(ambiguous),
    )


def forgotten(key: str, last_seen: float) -> Edge:
    """The edge of a key whose row is gone: its identity and ``last_seen``, nothing else."""
    c_ns, c_name, c_kind, kind, t_ns, t_name, t_kind, dns, ips, port, arn = json.loads(key)
    identity = (key, c_ns, c_name, c_kind, kind, t_ns, t_name, t_kind, dns, dumps(ips), port, arn)
    merged = (last_seen, last_seen, EMPTY, 1, EMPTY, EMPTY, EMPTY, "", last_seen, 1)
    return edge_of(identity + merged)
