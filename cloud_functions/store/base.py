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

Errors::

    StoreError          anything the store refuses or fails at (e.g. the database is unreachable)
    ├── NotFound        the tenant, cluster or token does not exist (for this tenant)
    ├── Conflict        it exists already (tenant, cluster, token hash or token id)
    └── Invalid         an input it does not accept: an id (see check_id), oversized telemetry
                        (also a ValueError: the caller's fault, worth a 4xx)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, cast, get_args

from agent.exports.jsonexport import edge_dict, edge_from_dict, parse_rfc3339, rfc3339
from agent.model import Edge, WorkloadIdentity, merge_edges

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
    tenant_id: str
    id: str
    name: str
    created_at: float


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
        """The tenant's edges, ordered by cluster and key. ``namespace``/``workload`` match the
        client or a workload target (both given: the same side matches both); ``method`` must be
        one of the edge's methods; ``since`` keeps edges last seen at or after it."""
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


def edge_key_json(edge: Edge) -> str:
    """The canonical JSON of an edge's key (client and target)."""
    whole = edge_dict(edge)
    return json.dumps({"client": whole["client"], "target": whole["target"]}, sort_keys=True)


def edge_key_hash(edge: Edge) -> str:
    return hashlib.sha256(edge_key_json(edge).encode()).hexdigest()[:32]


def encode_edge(edge: Edge) -> str:
    """The stored form: canonical JSON (equal edges give equal text)."""
    return json.dumps(edge_dict(edge), sort_keys=True, separators=(",", ":"))


def decode_edge(text: str) -> Edge:
    return edge_from_dict(json.loads(text))


def coalesce(edges: Iterable[Edge]) -> dict[str, Edge]:
    """A batch's edges by key hash, edges with equal keys merged."""
    merged: dict[str, Edge] = {}
    for edge in edges:
        key = edge_key_hash(edge)
        found = merged.get(key)
        merged[key] = edge if found is None else merge_edges(found, edge)
    return merged


def merged_text(stored: str | None, incoming: Edge) -> tuple[str, Edge] | None:
    """The new stored text (and edge) for ``incoming`` merged into ``stored``; None if nothing changes."""
    if stored is None:
        return encode_edge(incoming), incoming
    merged = merge_edges(decode_edge(stored), incoming)
    text = encode_edge(merged)
    return None if text == stored else (text, merged)


def filter_fields(edge: Edge) -> dict[str, Any]:
    """The columns/attributes kept beside an edge's JSON so stores can filter without decoding."""
    target = edge.target
    workload = target if isinstance(target, WorkloadIdentity) else None
    return {
        "client_namespace": edge.client.namespace,
        "client_name": edge.client.name,
        "target_namespace": workload.namespace if workload else None,
        "target_name": workload.name if workload else None,
        "methods": sorted(str(m) for m in edge.methods),
        "last_seen": parse_rfc3339(rfc3339(edge.last_seen)),  # as stored: microsecond precision
    }


def sort_stored(edges: Iterable[StoredEdge]) -> list[StoredEdge]:
    return sorted(edges, key=lambda s: (s.cluster_id, edge_key_json(s.edge)))
