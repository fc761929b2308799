"""What the cloud keeps, and the one interface both stores implement.

Records are frozen, slotted dataclasses; :class:`GraphStore` is the interface, implemented by
:class:`~cloud_functions.store.sqlite.SqliteGraphStore` (embedded, the local default) and
:class:`~cloud_functions.store.dynamodb.DynamoGraphStore` (AWS). Both pass one shared test suite.
Records come from the stores (read back) and from the handlers (tokens they mint); they go to the
handlers (:mod:`cloud_functions.handlers`), which call the stores only through :class:`GraphStore`.

Tenancy: every read and write takes a ``tenant_id`` and touches that tenant's data only; no
method lists across tenants. Tokens are stored by hash (the handlers hash them); the one
lookup not scoped by tenant is :meth:`GraphStore.get_token`, which is how a request finds its
tenant in the first place. Telemetry is anonymous (keyed by a hashed cluster id), not per tenant.

Versions: each store records the version of what it keeps (a row in SQLite, an item in DynamoDB)
and, when opened, migrates older data eagerly (before its first request: e.g. a store written
before the ``owner`` role has its ``read`` tokens made ``owner``) and refuses newer data. The
versioned steps are ``sqliteschema.MIGRATIONS`` and ``dynamodb.MIGRATIONS``.

Edges arrive as :mod:`agent.wire` edge documents and are ingested by the one ingest service,
:mod:`cloud_functions.store.ingestion` (both stores are its storage port): merged with
:func:`agent.model.merge_edges` (idempotent: a re-sent edge or a retried batch changes nothing)
and kept as the codec's canonical text under a 16-byte key (:mod:`cloud_functions.store.storedform`).

Liveness, so that steady traffic costs no writes: the uploader marks an edge ``live`` when it was
seen within its granularity, and sends the cluster's heartbeat (``seen_at``) once per granularity
instead of re-sending steady edges. A live edge is read as last seen at ``max(last_seen,
heartbeat)`` (:func:`~cloud_functions.store.storedform.effective`); the uploader sends ``live=False``
with the true ``last_seen`` when an edge goes quiet, before any later heartbeat. ``live`` is the
last value sent.

Errors::

    StoreError          anything the store refuses or fails at (e.g. the database is unreachable)
    ├── NotFound        the tenant, cluster or token does not exist (for this tenant)
    ├── Conflict        it exists already (tenant, cluster, token hash or token id)
    └── Invalid         an input it does not accept: an id (see check_id), oversized telemetry
                        (also a ValueError: the caller's fault, worth a 4xx)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, cast, get_args

from agent.model import Edge
from agent.wire import EdgeDoc

Role = Literal["admin", "owner", "read", "ingest"]
"""What a token may do (:mod:`cloud_functions.auth` enforces it): ``admin`` runs the platform,
``owner`` administers one tenant and reads its graph, ``read`` only reads it, ``ingest`` uploads
one cluster's edges. Stores written before ``owner`` existed held tenant tokens as ``read``;
opening one migrates them to ``owner`` (what they could do then)."""
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

    An ``ingest`` token is bound to one cluster (``cluster_id``); ``admin``, ``owner`` and ``read``
    tokens usually to none (``""``). ``cluster_id`` is keyword-only.
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
    """An edge as read from a cluster's graph; ``live``: the last ``live`` flag sent for it."""

    cluster_id: str
    edge: Edge
    live: bool = field(default=False, kw_only=True)


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
        self,
        tenant_id: str,
        cluster_id: str,
        batch_id: str,
        docs: Sequence[EdgeDoc],
        now: float,
        *,
        seen_at: float | None = None,
    ) -> IngestResult:
        """Merge a batch of edge documents into a cluster's graph, once per ``batch_id``
        (:func:`cloud_functions.store.ingestion.ingest_batch`, which says how).

        A batch id seen before for the cluster returns ``stored=False`` and writes nothing.
        Otherwise each edge is merged (by key) with :func:`~agent.model.merge_edges`, and only
        edges whose merged document differs from the stored one (``live`` flag included: the
        last one sent wins) are written. ``seen_at`` raises the cluster's heartbeat to it (never
        lowers it; one write when it rises). A batch with no edges and a ``seen_at`` is a
        heartbeat only: no batch marker is kept for it. A batch id seen before ignores its
        ``seen_at`` with the rest of it. :class:`NotFound` if the cluster (or tenant) does not
        exist; :class:`~cloud_functions.store.ingestion.InvalidEdges` (an :class:`Invalid`) for
        edges with times outside [1970, 10000).
        """
        ...

    def has_batch(self, tenant_id: str, cluster_id: str, batch_id: str) -> bool:
        """Whether :meth:`ingest` stored that batch id for the cluster already."""
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
        """The tenant's edges, ordered by cluster and key, each with its
        :func:`~cloud_functions.store.storedform.effective` ``last_seen``. ``namespace``/``workload``
        match the client or a workload target (both given: the same side matches both); ``method``
        must be one of the edge's methods; ``since`` keeps edges (effectively) last seen at or
        after it."""
        ...

    def write_count(self) -> int:
        """Item/row writes since the store was opened (for benchmarks; a migration run while
        opening is not counted)."""
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
