"""The one ingest of a batch of edges into a cluster's graph, for both stores.

Data comes from the ingest handler (:mod:`cloud_functions.handlers.ingest`: the edge documents of
an upload body, decoded by :mod:`agent.wire`) through :meth:`GraphStore.ingest
<cloud_functions.store.base.GraphStore.ingest>`. It goes to the store through a narrow port,
:class:`EdgePort`, which both stores implement with batch operations: one ingest opens an
:class:`EdgeBatch`, reads the stored texts of its keys, puts the new and changed edges and marks
the batch.

:func:`ingest_batch`, step by step:

1. coalesce (pure): each document made canonical (:func:`agent.wire.canonical`;
   a time outside [2000, 2100) is :class:`InvalidEdges`, naming every such edge), documents of
   equal key merged with :func:`agent.model.merge_edges` (cumulative: counts are maxima), the
   later document's ``live`` flag kept;
2. the batch marker: a batch id the cluster has seen writes nothing (``stored=False``) when the
   batch's content digest (:func:`content_digest`) is the one kept with the marker (an uploader's
   retry), and is a :class:`~cloud_functions.store.base.Conflict` when it is not (a marker kept
   before digests were, with none, matches anything). A body with no edges and a ``seen_at`` is a
   heartbeat only: no marker is kept for it;
3. the heartbeat: raised to ``seen_at``, never lowered;
4. merge with the stored edges: a stored text equal to the incoming one (``live`` included) is
   skipped, others are merged (the incoming ``live`` wins) and skipped if that changes nothing;
5. write: new and changed edges in one batch put; a put is conditional on the version read
   (DynamoDB), and the keys that lost a race are read, merged and put again (up to
   :data:`MERGE_ATTEMPTS` times);
6. mark the batch (last: in DynamoDB, a batch cut short is not marked, so its retry merges again,
   harmlessly); a concurrent delivery that marked it first makes this one ``stored=False``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from agent import wire
from agent.model import merge_edges
from agent.wire import EdgeDoc, WireError, canonical
from cloud_functions.store.base import Conflict, IngestResult, Invalid, StoreError, check_id
from cloud_functions.store.storedform import EdgeRecord, edge_key

log = logging.getLogger(__name__)

MERGE_ATTEMPTS = 10  # puts of one edge that lost a race, before the ingest gives up


class InvalidEdges(Invalid):
    """Edges a store does not accept: ``problems`` are (index in the batch, what is wrong)."""

    def __init__(self, problems: list[tuple[int, str]]) -> None:
        super().__init__("; ".join(f"edges[{index}]: {message}" for index, message in problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class StoredText:
    """A stored edge's text and the version a conditional put checks (0 where puts never race)."""

    text: bytes
    version: int = 0


@dataclass(frozen=True, slots=True)
class EdgeWrite:
    """An edge to put: new (``version`` None) or replacing the stored edge of that ``version``."""

    record: EdgeRecord
    version: int | None


class StoredEdges(Protocol):
    """One cluster's stored edges, read and written in batches."""

    def stored(self, keys: Collection[bytes]) -> dict[bytes, StoredText]:
        """The stored texts of those keys that are stored (consistent reads)."""

    def put(self, writes: Sequence[EdgeWrite]) -> set[bytes]:
        """Put the edges; the keys whose stored version is no longer the one given (not put)."""


class EdgeBatch(StoredEdges, Protocol):
    """One ingest's access to one cluster's graph (:meth:`EdgePort.open_batch`)."""

    @property
    def seen_before(self) -> bool:
        """Whether the cluster has a marker for this batch id already."""

    @property
    def seen_digest(self) -> str:
        """The content digest kept with that marker ("" when there is none, or no marker)."""

    def raise_heartbeat(self, seen_at: float) -> None:
        """The cluster's heartbeat becomes ``seen_at`` unless it is that late already."""

    def mark(self, now: float, digest: str) -> bool:
        """Keep the batch marker with the batch's content ``digest``; False when a concurrent
        delivery kept it first."""


class EdgePort(Protocol):
    """The storage port of :func:`ingest_batch`."""

    def open_batch(self, tenant_id: str, cluster_id: str, batch_id: str) -> AbstractContextManager[EdgeBatch]:
        """The cluster's edges for one ingest; :class:`~cloud_functions.store.base.NotFound` if the
        tenant has no such cluster. Leaving the context normally commits what was written."""


def merged_doc(old: EdgeDoc, new: EdgeDoc) -> EdgeDoc:
    """Two documents of one edge merged (:func:`agent.model.merge_edges`, cumulative counts),
    canonical, with ``new``'s ``live`` flag."""
    return wire.to_doc(merge_edges(wire.from_doc(old), wire.from_doc(new)), new.live)


def coalesce(docs: Sequence[EdgeDoc]) -> dict[bytes, EdgeRecord]:
    """The batch's edges by key, canonical, equal keys merged; :class:`InvalidEdges` naming every
    edge whose times lie outside [2000, 2100)."""
    merged: dict[bytes, EdgeDoc] = {}
    problems: list[tuple[int, str]] = []
    for index, sent in enumerate(docs):
        try:
            doc = canonical(sent)
        except WireError as error:
            problems.append((index, str(error)))
            continue
        key = edge_key(doc)
        found = merged.get(key)
        merged[key] = doc if found is None or found == doc else merged_doc(found, doc)
    if problems:
        raise InvalidEdges(problems)
    return {key: EdgeRecord(key, doc, wire.encode(doc)) for key, doc in merged.items()}


def content_digest(records: dict[bytes, EdgeRecord]) -> str:
    """sha256 of a coalesced batch's canonical edge texts in key order: equal for a re-send of
    the same edges (whatever their order in the body), different once any edge differs."""
    digest = hashlib.sha256()
    for key in sorted(records):
        text = records[key].text
        digest.update(len(text).to_bytes(8, "big") + text)  # length-prefixed: texts cannot run together
    return digest.hexdigest()


def _write(incoming: EdgeRecord, stored: StoredText | None) -> EdgeWrite | None:
    """What to put for ``incoming`` given the stored text of its key (None: nothing changes)."""
    if stored is None:
        return EdgeWrite(incoming, None)
    if stored.text == incoming.text:
        return None
    try:
        doc = merged_doc(wire.decode_doc(stored.text), incoming.doc)
    except WireError:  # a stored value that no longer reads (see storedform): the new one replaces it
        log.warning("stored edge unreadable, replaced by the incoming one")
        return EdgeWrite(incoming, stored.version)
    merged = EdgeRecord(incoming.key, doc, wire.encode(doc))
    return None if merged.text == stored.text else EdgeWrite(merged, stored.version)


def merge_stored(edges: StoredEdges, incoming: dict[bytes, EdgeRecord]) -> int:
    """Merge ``incoming`` into the stored ``edges`` (steps 4 and 5 of :func:`ingest_batch`); the
    number of edges written."""
    pending: Collection[bytes] = incoming.keys()
    written = 0
    for _ in range(MERGE_ATTEMPTS):
        stored = edges.stored(pending)
        writes = [w for key in pending if (w := _write(incoming[key], stored.get(key))) is not None]
        lost = edges.put(writes) if writes else set()
        written += len(writes) - len(lost)
        if not lost:
            return written
        pending = lost
    raise StoreError(f"{len(pending)} edges kept changing under {MERGE_ATTEMPTS} merges")


def ingest_batch(  # noqa: PLR0917  # GraphStore.ingest's parameters
    port: EdgePort,
    tenant_id: str,
    cluster_id: str,
    batch_id: str,
    docs: Sequence[EdgeDoc],
    now: float,
    *,
    seen_at: float | None = None,
) -> IngestResult:
    """Merge a batch of edge documents into a cluster's graph once per ``batch_id`` (see the
    module's docstring); :class:`InvalidEdges`, :class:`~cloud_functions.store.base.Invalid`
    batch id, :class:`~cloud_functions.store.base.NotFound` cluster. Both stores take it as their
    ``ingest`` (the store is the port)."""
    check_id(batch_id, "batch id")
    incoming = coalesce(docs)
    heartbeat_only = not incoming and seen_at is not None
    with port.open_batch(tenant_id, cluster_id, batch_id) as batch:
        digest = content_digest(incoming)
        if batch.seen_before and not heartbeat_only:
            if batch.seen_digest and batch.seen_digest != digest:
                raise Conflict(f"batch id {batch_id!r} was used before for different content")
            return IngestResult(stored=False, edges_written=0)
        if seen_at is not None:
            batch.raise_heartbeat(seen_at)
        if heartbeat_only:
            return IngestResult(stored=True, edges_written=0)
        written = merge_stored(batch, incoming)
        return IngestResult(stored=batch.mark(now, digest), edges_written=written)
