"""What the cloud keeps, and the one interface both stores implement.

Records are frozen, slotted dataclasses; :class:`GraphStore` is the interface, implemented by
:class:`~cloud_functions.store.sqlite.SqliteGraphStore` (embedded, the local default) and
:class:`~cloud_functions.store.dynamodb.DynamoGraphStore` (AWS). Both pass one shared test suite.

Tenancy: every read and write takes a ``tenant_id`` and touches that tenant's data only; no
method lists across tenants. Tokens are stored by hash (the handlers hash them); the one
lookup not scoped by tenant is :meth:`GraphStore.get_token`, which is how a request finds its
tenant in the first place. Telemetry is anonymous (keyed by a hashed cluster id), not per tenant.

Edges are merged with :func:`agent.model.merge_edges` (idempotent: a re-sent edge or a retried
batch changes nothing) and kept as their JSON export form (:func:`agent.exports.jsonexport.edge_dict`).

Liveness, so that steady traffic costs no writes: the uploader marks an edge ``live`` when it was
seen within its granularity, and sends the cluster's heartbeat (``seen_at``) once per granularity
instead of re-sending steady edges. A live edge is read as last seen at
``max(last_seen, heartbeat)`` (:func:`effective`); the uploader sends ``live=False`` with the true
``last_seen`` when an edge goes quiet, before any later heartbeat. ``live`` is the last value sent.

Errors::

    StoreError          anything the store refuses or fails at (e.g. the database is unreachable)
    ├── NotFound        the tenant, cluster or token does not exist (for this tenant)
    ├── Conflict        it exists already (tenant, cluster, token hash or token id)
    └── Invalid         an input it does not accept: an id (see check_id), oversized telemetry
                        (also a ValueError: the caller's fault, worth a 4xx)
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, cast, get_args

from agent.exports.jsonexport import edge_from_dict
from agent.model import Edge, InternetTarget, Method, WorkloadIdentity, merge_edges

Role = Literal["admin", "read", "ingest"]
ROLES: tuple[str, ...] = get_args(Role)

MAX_TELEMETRY_BYTES = 1024 * 1024
"""The largest telemetry payload kept (larger: :class:`StoreError`)."""

MAX_ID_LENGTH = 200


class StoreError(Exception):
    """The store refused or failed an operation."""


class NotFound(StoreError):
    """The tenant, cluster or token does not exist (for the given tenant)."""


class Conflict(StoreError):
    """The tenant, cluster or token exists already."""


class Invalid(StoreError, ValueError):
    """An id or a payload the store does not accept."""


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    name: str
    created_at: float


@dataclass(frozen=True, slots=True)
class Cluster:
    """``heartbeat``: the latest ``seen_at`` the cluster's uploader sent (None: none yet)."""

    tenant_id: str
    id: str
    name: str
    created_at: float
    heartbeat: float | None = field(default=None, kw_only=True)


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A stored token: its hash (never the token), whose it is and what it may do.

    An ``ingest`` token is bound to one cluster (``cluster_id``); ``admin`` and ``read`` tokens
    usually to none (``""``). ``cluster_id`` is keyword-only.
    """

    token_hash: str
    tenant_id: str
    role: Role
    token_id: str
    created_at: float
    cluster_id: str = field(default="", kw_only=True)

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {self.role!r}")


@dataclass(frozen=True, slots=True)
class StoredEdge:
    cluster_id: str
    edge: Edge


@dataclass(frozen=True, slots=True)
class IngestResult:
    """``stored`` is False when the batch id was seen before (nothing was written then)."""

    stored: bool
    edges_written: int


class GraphStore(Protocol):
    """Per-tenant graphs, tokens and raw telemetry. ``now`` is epoch seconds (the caller's clock)."""

    def create_tenant(self, tenant_id: str, name: str, now: float) -> Tenant:
        """A new tenant; :class:`Conflict` if the id is taken."""
        ...

    def get_tenant(self, tenant_id: str) -> Tenant | None: ...

    def add_cluster(self, tenant_id: str, cluster_id: str, name: str, now: float) -> Cluster:
        """A new cluster of the tenant; :class:`NotFound` tenant, :class:`Conflict` duplicate id."""
        ...

    def clusters(self, tenant_id: str) -> list[Cluster]:
        """The tenant's clusters, by id."""
        ...

    def put_token(self, record: TokenRecord) -> None:
        """Store a token: :class:`NotFound` tenant (or cluster, when bound to one),
        :class:`Conflict` if its hash or its id (within the tenant) exists."""
        ...

    def get_token(self, token_hash: str) -> TokenRecord | None: ...

    def delete_token(self, tenant_id: str, token_id: str) -> None:
        """:class:`NotFound` unless the tenant has a token with that id."""
        ...

    def tokens(self, tenant_id: str) -> list[TokenRecord]:
        """The tenant's tokens, by token id."""
        ...

    def ingest(
        self, tenant_id: str, cluster_id: str, batch_id: str, edges: Sequence[Edge], now: float
    ) -> IngestResult:
        """Merge a batch of edges into a cluster's graph, once per ``batch_id``.

        A batch id seen before for the cluster returns ``stored=False`` and writes nothing.
        Otherwise each edge is merged (by :attr:`Edge.key`) with :func:`merge_edges` and only
        edges whose merged value differs from the stored one are written. :class:`NotFound`
        if the cluster (or tenant) does not exist.
        """
        ...

    def ingest_encoded(
        self,
        tenant_id: str,
        cluster_id: str,
        batch_id: str,
        edges: Sequence[EncodedEdge],
        now: float,
        *,
        seen_at: float | None = None,
    ) -> IngestResult:
        """:meth:`ingest` of edges already encoded (:func:`encode`, :func:`encode_document`), each
        with its ``live`` flag (stored as sent: the last one wins).

        ``seen_at`` raises the cluster's heartbeat to it (never lowers it; one write when it
        rises). A batch with no edges and a ``seen_at`` is a heartbeat only: no batch marker is
        kept for it. A batch id seen before ignores its ``seen_at`` with the rest of it.
        """
        ...

    def has_batch(self, tenant_id: str, cluster_id: str, batch_id: str) -> bool:
        """Whether :meth:`ingest` stored that batch id for the cluster already (a cheap read, so a
        caller can skip parsing a re-sent batch; :meth:`ingest` still decides)."""
        ...

    def edges(
        self,
        tenant_id: str,
        *,
        cluster_ids: Iterable[str] | None = None,
        namespace: str | None = None,
        workload: str | None = None,
        method: str | None = None,
        since: float | None = None,
    ) -> list[StoredEdge]:
        """The tenant's edges, ordered by cluster and key, each with its :func:`effective`
        ``last_seen``. ``namespace``/``workload`` match the client or a workload target (both
        given: the same side matches both); ``method`` must be one of the edge's methods;
        ``since`` keeps edges (effectively) last seen at or after it."""
        ...

    def write_count(self) -> int:
        """Item/row writes since the store was opened (for benchmarks)."""
        ...

    def record_telemetry(self, cluster_hash: str, body: bytes, content_type: str, now: float) -> None:
        """Keep a raw OTLP payload; :class:`StoreError` if larger than ``MAX_TELEMETRY_BYTES``."""
        ...

    def telemetry(self, limit: int = 100) -> list[tuple[str, float, bytes]]:
        """The newest payloads first, as ``(cluster_hash, received_at, body)``."""
        ...


# --------------------------------------------------------------------------- shared helpers


def check_id(value: str, what: str) -> str:
    """Ids become parts of keys: non-empty, at most ``MAX_ID_LENGTH`` chars, no ``#`` or controls."""
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_ID_LENGTH
        or "#" in value
        or any(ord(ch) < 32 or ord(ch) == 127 for ch in value)
    ):
        raise Invalid(f"invalid {what}: {value!r}")
    return value


def parse_role(text: str) -> Role:
    if text not in ROLES:
        raise StoreError(f"unknown token role {text!r}")
    return cast(Role, text)


def check_telemetry(body: bytes) -> None:
    if len(body) > MAX_TELEMETRY_BYTES:
        raise Invalid(f"telemetry payload of {len(body)} bytes exceeds {MAX_TELEMETRY_BYTES}")


_compact = json.JSONEncoder(separators=(",", ":")).encode
_spaced = json.JSONEncoder().encode  # json.dumps' default separators
_q: Callable[[str], str] = json.encoder.encode_basestring_ascii
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _time(timestamp: float) -> str:
    """:func:`~agent.exports.jsonexport.rfc3339`, without ``strftime`` (same text)."""
    m = _EPOCH + timedelta(microseconds=round(timestamp * 1_000_000))
    date = f"{m.year:04d}-{m.month:02d}-{m.day:02d}"
    return f"{date}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}.{m.microsecond:06d}Z"


@functools.lru_cache(maxsize=256)
def _methods(methods: frozenset[Method]) -> tuple[tuple[str, ...], str, str]:
    """The sorted method names, their JSON (as the ``methods`` filter column keeps it), compact JSON."""
    names = tuple(sorted(str(m) for m in methods))
    return names, _spaced(names), _compact(names)


def _key_parts(edge: Edge) -> tuple[dict[str, str], dict[str, Any]]:
    """The client and target objects of :func:`edge_dict`, their keys already sorted."""
    c, t = edge.client, edge.target
    client = {"kind": c.kind, "name": c.name, "namespace": c.namespace}
    target: dict[str, Any]
    if isinstance(t, WorkloadIdentity):
        target = {"kind": t.kind, "name": t.name, "namespace": t.namespace, "type": "workload"}
    elif isinstance(t, InternetTarget):
        target = {"dnsName": t.dns_name, "ips": list(t.ips), "port": t.port, "type": "internet"}
    else:
        target = {"arn": t.arn, "type": "aws"}
    return client, target


class EncodedEdge:
    """An edge with its key hash and stored text, each computed once (:func:`encode`).

    Built from a document (:func:`encode_document`) it holds no :class:`Edge` until one is asked
    for (decoded from the text then): a brand-new edge is stored without ever building one.
    """

    __slots__ = ("_edge", "_row", "key_hash", "live", "text")

    def __init__(
        self,
        key_hash: str,
        text: str,
        edge: Edge | None = None,
        row: tuple[str, str, str | None, str | None, str, float] | None = None,
    ) -> None:
        self.key_hash, self.text, self._edge, self._row = key_hash, text, edge, row
        self.live = False  # set by the caller from the uploaded document

    @property
    def edge(self) -> Edge:
        if self._edge is None:
            self._edge = decode_edge(self.text)
        return self._edge

    @property
    def row(self) -> tuple[str, str, str | None, str | None, str, float]:
        """:func:`filter_row` of the edge."""
        if self._row is None:
            self._row = filter_row(self.edge)
        return self._row


def encode(edge: Edge) -> EncodedEdge:
    """The key hash (of :func:`edge_key_json`) and :func:`encode_edge` text of an edge, in one pass.

    Writes the JSON of :func:`edge_dict` (sorted keys) directly, each string quoted by the json
    module's own C quoting: byte-equal to ``json.dumps(edge_dict(edge), sort_keys=True, ...)``.
    """
    c, t = edge.client, edge.target
    ck, cn, cns = _q(c.kind), _q(c.name), _q(c.namespace)
    if type(t) is not WorkloadIdentity or type(edge.count) is not int or type(edge.ambiguous) is not bool:
        return _encode_dicts(edge)
    tk, tn, tns = _q(t.kind), _q(t.name), _q(t.namespace)
    key = (
        f'{{"client": {{"kind": {ck}, "name": {cn}, "namespace": {cns}}},'
        f' "target": {{"kind": {tk}, "name": {tn}, "namespace": {tns}, "type": "workload"}}}}'
    )
    http = _compact(_http(edge)) if edge.http else "[]"
    kafka = _compact(_kafka(edge)) if edge.kafka_topics else "[]"
    aws = _compact(sorted(edge.aws_actions)) if edge.aws_actions else "[]"
    text = (
        f'{{"ambiguous":{"true" if edge.ambiguous else "false"},"awsActions":{aws},'
        f'"client":{{"kind":{ck},"name":{cn},"namespace":{cns}}},"count":{edge.count},'
        f'"firstSeen":"{_time(edge.first_seen)}","http":{http},"kafkaTopics":{kafka},'
        f'"lastSeen":"{_time(edge.last_seen)}","methods":{_methods(edge.methods)[2]},'
        f'"target":{{"kind":{tk},"name":{tn},"namespace":{tns},"type":"workload"}},'
        f'"targetService":{_q(edge.target_service)}}}'
    )
    return EncodedEdge(hashlib.sha256(key.encode()).hexdigest()[:32], text, edge)


def _http(edge: Edge) -> list[dict[str, Any]]:
    return [{"methods": sorted(r.methods), "path": r.path} for r in sorted(edge.http)]


def _kafka(edge: Edge) -> list[dict[str, Any]]:
    return [{"name": k.name, "operations": sorted(k.operations)} for k in sorted(edge.kafka_topics)]


def _encode_dicts(edge: Edge) -> EncodedEdge:
    """:func:`encode` through dicts (any target kind): keys in sorted order, no ``sort_keys``."""
    client, target = _key_parts(edge)
    key = '{"client": ' + _spaced(client) + ', "target": ' + _spaced(target) + "}"
    whole = {
        "ambiguous": edge.ambiguous,
        "awsActions": sorted(edge.aws_actions),
        "client": client,
        "count": edge.count,
        "firstSeen": _time(edge.first_seen),
        "http": _http(edge),
        "kafkaTopics": _kafka(edge),
        "lastSeen": _time(edge.last_seen),
        "methods": _methods(edge.methods)[0],
        "target": target,
        "targetService": edge.target_service,
    }
    return EncodedEdge(hashlib.sha256(key.encode()).hexdigest()[:32], _compact(whole), edge)


def edge_key_json(edge: Edge) -> str:
    """The canonical JSON of an edge's key (client and target)."""
    client, target = _key_parts(edge)
    return '{"client": ' + _spaced(client) + ', "target": ' + _spaced(target) + "}"


def edge_key_hash(edge: Edge) -> str:
    return hashlib.sha256(edge_key_json(edge).encode()).hexdigest()[:32]


def encode_edge(edge: Edge) -> str:
    """The stored form: canonical JSON (equal edges give equal text)."""
    return encode(edge).text


def decode_edge(text: str) -> Edge:
    return edge_from_dict(json.loads(text))


def coalesce_encoded(edges: Iterable[Edge]) -> dict[str, EncodedEdge]:
    """A batch's edges by key hash, encoded once; edges with equal keys merged (and re-encoded)."""
    return coalesce_encodings(encode(edge) for edge in edges)


def coalesce_encodings(encodings: Iterable[EncodedEdge]) -> dict[str, EncodedEdge]:
    """Encoded edges by key hash, edges with equal keys merged (and re-encoded)."""
    merged: dict[str, EncodedEdge] = {}
    for encoded in encodings:
        found = merged.get(encoded.key_hash)
        if found is not None:
            if found.text == encoded.text:
                found.live = encoded.live  # the later document's flag wins
                continue
            again = encode(merge_edges(found.edge, encoded.edge))
            again.live = encoded.live
            merged[encoded.key_hash] = again
        else:
            merged[encoded.key_hash] = encoded
    return merged


def coalesce(edges: Iterable[Edge]) -> dict[str, Edge]:
    """A batch's edges by key hash, edges with equal keys merged."""
    return {key: encoded.edge for key, encoded in coalesce_encoded(edges).items()}


def merged_encoded(
    stored: str | None, incoming: EncodedEdge, stored_live: bool = False
) -> EncodedEdge | None:
    """``incoming`` merged into the ``stored`` text (and live flag); None if that changes nothing.

    A new edge is taken as it is, and a text equal to the stored one is not decoded at all. The
    result's ``live`` is the incoming one.
    """
    if stored is None:
        return incoming
    if stored == incoming.text:
        return None if stored_live == incoming.live else incoming
    merged = encode(merge_edges(decode_edge(stored), incoming.edge))
    merged.live = incoming.live
    return None if merged.text == stored and stored_live == incoming.live else merged


def effective(edge: Edge, live: bool, heartbeat: float | None) -> Edge:
    """The edge as read: a live edge was seen at least at its cluster's heartbeat."""
    if live and heartbeat is not None and heartbeat > edge.last_seen:
        return dataclasses.replace(edge, last_seen=round(heartbeat * 1_000_000) / 1_000_000)
    return edge


def filter_row(edge: Edge) -> tuple[str, str, str | None, str | None, str, float]:
    """:func:`filter_fields` as a row: client namespace and name, workload-target namespace and
    name, the methods' JSON and ``last_seen`` (microseconds, as stored)."""
    target = edge.target
    workload = target if isinstance(target, WorkloadIdentity) else None
    return (
        edge.client.namespace,
        edge.client.name,
        workload.namespace if workload else None,
        workload.name if workload else None,
        _methods(edge.methods)[1],
        round(edge.last_seen * 1_000_000) / 1_000_000,  # = parse_rfc3339(rfc3339(last_seen))
    )


def filter_fields(edge: Edge) -> dict[str, Any]:
    """The columns/attributes kept beside an edge's JSON so stores can filter without decoding."""
    target = edge.target
    workload = target if isinstance(target, WorkloadIdentity) else None
    return {
        "client_namespace": edge.client.namespace,
        "client_name": edge.client.name,
        "target_namespace": workload.namespace if workload else None,
        "target_name": workload.name if workload else None,
        "methods": list(_methods(edge.methods)[0]),
        "last_seen": round(edge.last_seen * 1_000_000) / 1_000_000,  # as stored: microsecond precision
    }


def sort_stored(edges: Iterable[StoredEdge]) -> list[StoredEdge]:
    return sorted(edges, key=lambda s: (s.cluster_id, edge_key_json(s.edge)))
