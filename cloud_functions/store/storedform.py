"""The stored form of an edge: its key, text and filter fields, and the edges as read back.

Canonical edge documents (:class:`agent.wire.EdgeDoc`) come from the ingest service
(:mod:`cloud_functions.store.ingestion`). What the stores keep of each goes to them
(:mod:`cloud_functions.store.sqliteedges`, :mod:`cloud_functions.store.dynamoitems`): the codec's
text (``live`` included), the 16-byte key (:func:`edge_key`) and the filter fields
(:func:`filter_fields`). The texts they read back are decoded here in one pass and go to the
handlers as :class:`~cloud_functions.store.base.StoredEdge` s, liveness applied: a whole graph in key
order (:func:`read_back`) or a page in its own order (:func:`in_order`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import msgspec

from agent import wire
from agent.model import Edge, WorkloadIdentity
from agent.wire import EdgeDoc, WorkloadTargetDoc, canonical
from cloud_functions.store.base import StoredEdge

log = logging.getLogger(__name__)


def edge_key(doc: EdgeDoc) -> bytes:
    """The 16 bytes a store keys an edge by (within its cluster)."""
    return wire.key_hash(wire.key_bytes(doc))


@dataclass(frozen=True, slots=True)
class EdgeRecord:
    """A canonical edge document with its key and its text (what a store writes)."""

    key: bytes
    doc: EdgeDoc
    text: bytes


@dataclass(frozen=True, slots=True)
class FilterFields:
    """What stores keep beside an edge's text to filter without decoding it: the client's
    namespace and name, a workload target's (None for other targets), the method names and
    ``last_seen`` (epoch seconds)."""

    client_namespace: str
    client_name: str
    target_namespace: str | None
    target_name: str | None
    methods: tuple[str, ...]
    last_seen: float


def filter_fields(doc: EdgeDoc) -> FilterFields:
    target = doc.target
    workload = target if type(target) is WorkloadTargetDoc else None
    return FilterFields(
        doc.client.namespace,
        doc.client.name,
        workload.namespace if workload else None,
        workload.name if workload else None,
        doc.methods,
        doc.lastSeen.timestamp(),
    )


class _ClientOnly(msgspec.Struct, frozen=True):
    """An edge document read for its client alone (the other fields are skipped, not decoded)."""

    client: WorkloadIdentity


_client_decoder = msgspec.json.Decoder(_ClientOnly)


def client_of(text: bytes) -> tuple[str, str] | None:
    """The ``(namespace, name)`` of a stored edge text's client; None when the text does not decode."""
    try:
        client = _client_decoder.decode(text).client
    except msgspec.DecodeError:  # ValidationError is one too
        return None
    return client.namespace, client.name


def upgraded(texts: Sequence[bytes], live: Iterable[bool]) -> list[EdgeDoc]:
    """Texts stored before the edge codec (the old JSON export form) and the ``live`` flags kept
    beside them → canonical documents (for the stores' migrations)."""
    docs = wire.decode_docs(texts)
    return [canonical(msgspec.structs.replace(doc, live=flag)) for doc, flag in zip(docs, live, strict=True)]


def effective(doc: EdgeDoc, heartbeat: float | None) -> Edge:
    """The edge as read: a live edge was seen at least at its cluster's heartbeat."""
    edge = wire.from_doc(doc)
    if doc.live and heartbeat is not None and heartbeat > edge.last_seen:
        return dataclasses.replace(edge, last_seen=round(heartbeat * 1_000_000) / 1_000_000)
    return edge


def read_back(rows: Iterable[tuple[str, bytes, float | None]]) -> list[StoredEdge]:
    """Stored ``(cluster id, text, the cluster's heartbeat)`` rows → the edges as read, ordered by
    cluster and key."""
    found = in_order(rows)
    found.sort(key=lambda stored: (stored.cluster_id, wire.key_for(stored.edge.client, stored.edge.target)))
    return found


def in_order(rows: Iterable[tuple[str, bytes, float | None]]) -> list[StoredEdge]:
    """The same rows → the edges as read, in the rows' order (a page's); a row that no longer reads
    is skipped and logged."""
    rows = list(rows)
    found = []
    for (cluster, _, heartbeat), doc in zip(rows, _decoded([text for _, text, _ in rows]), strict=True):
        edge = _readable(doc, heartbeat)
        if edge is not None and doc is not None:
            found.append(StoredEdge(cluster, edge, live=doc.live))
    if len(found) < len(rows):
        log.warning("stored edges skipped, unreadable rows=%d", len(rows) - len(found))
    return found


def _decoded(texts: list[bytes]) -> list[EdgeDoc | None]:
    """The texts' documents in one pass; ``None`` for a text that does not decode (damage)."""
    try:
        return list(wire.decode_docs(texts))
    except wire.WireError:
        return [_document(text) for text in texts]


def _document(text: bytes) -> EdgeDoc | None:
    try:
        return wire.decode_doc(text)
    except wire.WireError:
        return None


def _readable(doc: EdgeDoc | None, heartbeat: float | None) -> Edge | None:
    """The edge as read, or ``None`` for a stored value that no longer reads (a time an older
    version accepted, now out of range): skipped and logged, so it cannot break a read."""
    try:
        return None if doc is None else effective(doc, heartbeat)
    except wire.WireError:
        return None
