"""What the cloud keeps, and the one interface both stores implement.

Records (frozen, slotted dataclasses) come from the stores, read back, and from the handlers
(:mod:`cloud_functions.handlers`: tokens they mint), which call the stores only through
:class:`GraphStore`. It is implemented by :class:`~cloud_functions.store.sqlite.SqliteGraphStore`
(embedded, the local default) and :class:`~cloud_functions.store.dynamodb.DynamoGraphStore` (AWS);
both pass one shared test suite, and both ingest edges through
:mod:`cloud_functions.store.ingestion`.

Tenancy: every read and write takes a ``tenant_id`` and touches that tenant's data only; no
method lists across tenants. Tokens are stored by hash (the handlers hash them); the one
lookup not scoped by tenant is :meth:`GraphStore.get_token`, which is how a request finds its
tenant in the first place. Telemetry is anonymous (keyed by a hashed cluster id), not per tenant.

Versions: each store records the version of what it keeps and, when opened, migrates older data
(:class:`Step` s) before its first request, and refuses newer data.

Liveness, so that steady traffic costs no writes: the uploader marks an edge ``live`` when it was
seen within its granularity, and sends the cluster's heartbeat (``seen_at``) once per granularity
instead of re-sending steady edges. A live edge is read as last seen at ``max(last_seen,
heartbeat)``; the uploader sends ``live=False`` with the true ``last_seen`` when an edge goes
quiet, before any later heartbeat.

Pages, so that no read of a large graph runs long: :meth:`GraphStore.edges_page` reads at most
about ``limit`` edges in one of the :class:`PageOrder` s, starting after the :class:`PagePosition`
the previous page ended at (the handlers carry it in an opaque cursor:
:mod:`cloud_functions.handlers.paging`). Positions are the store's own (a key, or a client's or
server's name with a key), compared as Python compares tuples; each store reads them with an index
in that order (SQLite: keyset queries; DynamoDB: Query pages), and :mod:`cloud_functions.store.edgepages`
cuts the pages, so that a page never splits what must stay together.

Errors::

    StoreError          anything the store refuses or fails at (e.g. the database is unreachable)
    ├── NotFound        the tenant, cluster or token does not exist (for this tenant)
    ├── Conflict        it exists already (tenant, cluster, token hash or token id)
    └── Invalid         an input it does not accept: an id (see check_id), oversized telemetry
        │               (also a ValueError: the caller's fault, worth a 4xx)
        └── BadPosition a page position this store does not hand out (a damaged cursor)
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, Literal, Protocol, TypedDict, TypeVar, Unpack, cast, get_args

from agent.model import Edge
from agent.wire import EdgeDoc

if TYPE_CHECKING:  # the snapshots module imports this one
    from cloud_functions.store.snapshots import SnapshotRecord

Role = Literal["admin", "owner", "read", "ingest"]  # what a token may do: cloud_functions.auth
ROLES: tuple[str, ...] = get_args(Role)
MAX_TELEMETRY_BYTES = 64 * 1024
"""One OTLP payload: the mapper's counts take a few KB; anonymous senders get no more."""
MAX_TELEMETRY_KEPT_BYTES = 64 * 1024 * 1024
"""Telemetry bytes a store keeps at most (the SQLite store drops the oldest payloads past it;
DynamoDB's expire by TTL, and the per-source rate limit bounds what arrives before)."""
MAX_ID_LENGTH = 200


class StoreError(Exception):
    """The store refused or failed an operation."""


class NotFound(StoreError):
    """The tenant, cluster or token does not exist (for the given tenant)."""


class Conflict(StoreError):
    """The tenant, cluster or token exists already."""


class Invalid(StoreError, ValueError):
    """An id or a payload the store does not accept."""


class BadPosition(Invalid):
    """A page position of a shape this store never hands out for that order."""


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
    """A stored token: its hash (never the token), whose it is and what it may do. An ``ingest``
    token is bound to one cluster (``cluster_id``), other tokens usually to none (``""``)."""

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


MAX_FILTER_NAMESPACES = 100
"""Namespaces one ``namespaces`` filter may name: DynamoDB's ``IN`` takes at most 100 values."""


@dataclass(frozen=True, slots=True)
class ClientSelection:
    """Clients picked by name: those among ``workloads`` (``(namespace, name)`` pairs, whatever
    their kinds) and every client in one of ``namespaces``."""

    workloads: frozenset[tuple[str, str]] = frozenset()
    namespaces: frozenset[str] = frozenset()

    def keeps(self, namespace: str, name: str) -> bool:
        return namespace in self.namespaces or (namespace, name) in self.workloads

    def digest_parts(self) -> tuple[list[str], list[list[str]]]:
        """The selection in a canonical order (for what a cursor is bound to)."""
        return sorted(self.namespaces), sorted(map(list, self.workloads))


class EdgeFilters(TypedDict, total=False):
    """What :meth:`GraphStore.edges` keeps (None: no filter). ``namespaces``/``workload`` match the
    client or a workload target (``namespaces``: its namespace is one of them, none when empty; both
    given: the same side matches both); ``method`` must be one of the edge's methods; ``since``
    keeps edges (effectively) last seen at or after it; ``clients`` keeps edges whose client the
    selection keeps.

    Where each is applied: ``cluster_ids`` picks the clusters read; ``namespaces``, ``workload``,
    ``method`` and ``since`` are each store's own query terms (SQLite's WHERE, DynamoDB's
    FilterExpression); ``clients`` is applied in the shared layer
    (:func:`cloud_functions.store.edgepages.selected`, :func:`selected_edges`) from the edge's text,
    as a DynamoDB index by workload holds no filter fields."""

    cluster_ids: Iterable[str] | None
    namespaces: Collection[str] | None
    workload: str | None
    method: str | None
    since: float | None
    clients: ClientSelection | None


def check_filters(filters: Mapping[str, object]) -> None:
    """:class:`Invalid` for filters no store takes: more than :data:`MAX_FILTER_NAMESPACES`
    namespaces."""
    namespaces = filters.get("namespaces")
    if isinstance(namespaces, Collection) and len(set(namespaces)) > MAX_FILTER_NAMESPACES:
        raise Invalid(f"at most {MAX_FILTER_NAMESPACES} namespaces in one filter, got {len(set(namespaces))}")


def selected_edges(stored: list[StoredEdge], filters: EdgeFilters) -> list[StoredEdge]:
    """``stored`` less the edges whose client ``filters['clients']`` does not keep (all: no selection)."""
    selection = filters.get("clients")
    if selection is None:
        return stored
    return [s for s in stored if selection.keeps(s.edge.client.namespace, s.edge.client.name)]


class PageOrder(enum.StrEnum):
    """How :meth:`GraphStore.edges_page` orders a tenant's edges, and what a page never splits."""

    CLUSTER = "cluster"
    """By cluster id, then edge: the graph, each cluster's edges apart."""
    EDGE = "edge"
    """By edge, then cluster id: every cluster's copy of an edge on one page (the merged graph)."""
    CLIENT = "client"
    """By client namespace and name: all edges of a client on one page (ClientIntents, IAM and
    JSON exports: one document, or document entry, per client)."""
    SERVER = "server"
    """By workload target namespace and name, edges to other targets left out: all edges to a
    server on one page (NetworkPolicy exports: one policy per server)."""


GROUPED_ORDERS = frozenset({PageOrder.CLIENT, PageOrder.SERVER})
"""Orders whose pages hold whole workloads; they take no filter but ``cluster_ids`` and ``clients``."""
GROUPED_FILTERS = frozenset({"cluster_ids", "clients"})
"""The filters a grouped order takes."""

Place = tuple[str | bytes, ...]
"""A store's position of an edge (or of a workload, in a grouped order): strings and bytes,
compared as Python compares tuples (which is how the store's index orders them)."""


@dataclass(frozen=True, slots=True)
class PagePosition:
    """Where a page ended: the next starts after it. ``cluster_id``: the cluster of the page's last
    edge, in :attr:`PageOrder.CLUSTER` order ("" in the others, which run across clusters);
    ``at``: the store's position of that edge (in a grouped order: of that workload)."""

    cluster_id: str
    at: Place


@dataclass(frozen=True, slots=True)
class EdgePage:
    """One page: its edges in page order; ``next``: where the next page starts after (None: this
    is the last page); ``rows_read``: the stored edges read to cut it (about ``limit``)."""

    edges: tuple[StoredEdge, ...]
    next: PagePosition | None
    rows_read: int


MAX_PAGE = 100_000
"""The largest ``limit`` a store accepts (the handlers allow less)."""


class GraphStore(Protocol):
    """Per-tenant graphs, tokens and raw telemetry. ``now`` is epoch seconds (the caller's clock)."""

    def create_tenant(self, tenant_id: str, name: str, now: float) -> Tenant:
        """A new tenant; :class:`Conflict` if the id is taken."""

    def get_tenant(self, tenant_id: str) -> Tenant | None: ...

    def add_cluster(self, tenant_id: str, cluster_id: str, name: str, now: float) -> Cluster:
        """A new cluster of the tenant; :class:`NotFound` tenant, :class:`Conflict` duplicate id."""

    def clusters(self, tenant_id: str) -> list[Cluster]:
        """The tenant's clusters, by id."""

    def put_token(self, record: TokenRecord) -> None:
        """Store a token: :class:`NotFound` tenant (or cluster, when bound to one),
        :class:`Conflict` if its hash or its id (within the tenant) exists."""

    def get_token(self, token_hash: str) -> TokenRecord | None: ...

    def delete_token(self, tenant_id: str, token_id: str) -> None:
        """:class:`NotFound` unless the tenant has a token with that id."""

    def tokens(self, tenant_id: str) -> list[TokenRecord]:
        """The tenant's tokens, by token id."""

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
        """Merge a batch of edge documents into a cluster's graph once per ``batch_id``, and raise
        its heartbeat to ``seen_at`` (:func:`cloud_functions.store.ingestion.ingest_batch`)."""

    def has_batch(self, tenant_id: str, cluster_id: str, batch_id: str) -> bool:
        """Whether :meth:`ingest` stored that batch id for the cluster already."""

    def edges(self, tenant_id: str, **filters: Unpack[EdgeFilters]) -> list[StoredEdge]:
        """The tenant's edges that pass ``filters``, ordered by cluster and key, liveness applied."""

    def edges_page(
        self,
        tenant_id: str,
        order: PageOrder,
        *,
        after: PagePosition | None = None,
        limit: int,
        **filters: Unpack[EdgeFilters],
    ) -> EdgePage:
        """A page of the edges :meth:`edges` reads, in ``order``, after ``after`` (None: from the
        start): at most ``limit`` edges, but never a split edge (:attr:`PageOrder.EDGE`) or
        workload (grouped orders), so a workload with more edges than ``limit`` fills a page alone.
        Grouped orders take only the ``cluster_ids`` and ``clients`` filters (:class:`Invalid`
        otherwise, and for more than :data:`MAX_FILTER_NAMESPACES` namespaces).
        :class:`BadPosition` for a position of the wrong shape, :class:`Invalid` for a ``limit``
        outside [1, :data:`MAX_PAGE`]. Consecutive pages neither repeat nor skip an edge that
        stayed in the store meanwhile."""

    def put_snapshot(
        self, tenant_id: str, cluster_id: str, record: SnapshotRecord, document: bytes, *, keep: int
    ) -> list[str]:
        """Keep a cluster's snapshot (``document``: its JSON) under ``record.name``, replacing one of
        that name, then prune the cluster's oldest beyond ``keep``
        (:mod:`cloud_functions.store.snapshots`); the names pruned. :class:`NotFound` cluster,
        :class:`Invalid` name or a document too large."""

    def snapshots(self, tenant_id: str, cluster_id: str) -> list[SnapshotRecord]:
        """The cluster's snapshots, newest first; :class:`NotFound` cluster."""

    def snapshot(self, tenant_id: str, cluster_id: str, name: str) -> tuple[SnapshotRecord, bytes] | None:
        """A snapshot's record and document (None: the cluster has none of that name);
        :class:`NotFound` cluster."""

    def put_coverage(self, tenant_id: str, cluster_id: str, received_at: float, document: bytes) -> None:
        """Keep the cluster's coverage document (its JSON), replacing the previous one
        (:mod:`cloud_functions.store.coverage`). :class:`NotFound` cluster, :class:`Invalid` too large."""

    def coverage(self, tenant_id: str, cluster_id: str) -> tuple[float, bytes] | None:
        """The cluster's newest coverage as ``(received_at, document)`` (None: none uploaded);
        :class:`NotFound` cluster."""

    def write_count(self) -> int:
        """Item/row writes since the store was opened (for benchmarks; a migration run while
        opening is not counted)."""

    def record_telemetry(self, cluster_hash: str, body: bytes, content_type: str, now: float) -> None:
        """Keep a raw OTLP payload; :class:`Invalid` if larger than ``MAX_TELEMETRY_BYTES``."""

    def telemetry(self, limit: int = 100) -> list[tuple[str, float, bytes]]:
        """The newest payloads first, as ``(cluster_hash, received_at, body)``."""


Schema = TypeVar("Schema")


@dataclass(frozen=True, slots=True)
class Step(Generic[Schema]):
    """One migration: ``run`` takes the data (a connection, a table) of version ``version - 1``
    to ``version``."""

    version: int
    run: Callable[[Schema], None]
    what: str


def check_version(version: int, latest: int, where: str) -> int:
    """``version``, unless it is newer than this code's ``latest`` (:class:`StoreError`)."""
    if version > latest:
        raise StoreError(f"{where} has schema version {version}, newer than {latest}")
    return version


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
