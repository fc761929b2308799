"""What both cloud stores keep of a cluster's snapshots, and the rules they share.

A snapshot comes from the snapshots handler (:mod:`cloud_functions.handlers.snapshots`: a
mapper's upload, the snapshot document of :mod:`agent.snapshotwire`, checked and re-encoded
there); the stores keep, per (tenant, cluster, name), its :class:`SnapshotRecord` (what the list
route shows without reading documents) and its document compressed (:func:`packed`: documents
repeat names and keys, and DynamoDB items hold at most 400 KB). A name put again replaces the
snapshot; past :data:`MAX_SNAPSHOTS` a cluster's oldest are pruned (:func:`pruned`), so an
uploader cannot grow a cluster's snapshots without bound. Read back, the document goes to the
handlers (the document route, the diff and the check) as the bytes that were put.

The SQLite store's rows: :mod:`cloud_functions.store.snapshotssqlite`; DynamoDB's items:
:mod:`cloud_functions.store.snapshotsdynamo`.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from cloud_functions.store.base import Invalid

MAX_SNAPSHOTS = 100
"""Snapshots a cluster keeps at most (a mapper keeps 50 of its users' and 48 automatic ones)."""
MAX_PACKED_BYTES = 4 * 1024 * 1024
"""A snapshot's compressed document at most (a bound on what one upload may make a store keep)."""
SNAPSHOT_NAME = r"^([a-z0-9]([-a-z0-9._]{0,61}[a-z0-9])?|auto-[0-9]{8}T[0-9]{6}Z)$"
"""A snapshot's name, as the mapper accepts it: a DNS label (dots and underscores allowed), or the
name of one the mapper took on its schedule (``auto-20261207T120000Z``)."""
_NAME = re.compile(SNAPSHOT_NAME)


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    """A kept snapshot: its ``name``, when it was taken (epoch seconds), whether the mapper took
    it on its own schedule (``auto``), its edge count, and when the cloud received it."""

    name: str
    taken_at: float
    auto: bool
    edges: int
    received_at: float


def check_name(name: str) -> str:
    """``name`` if it is a snapshot name (:data:`SNAPSHOT_NAME`); :class:`Invalid` otherwise."""
    if not isinstance(name, str) or _NAME.match(name) is None:
        why = "lower-case letters, digits, '-', '.', '_' (1 to 63), or auto-<YYYYmmddTHHMMSSZ>"
        raise Invalid(f"invalid snapshot name {name!r}: {why}")
    return name


def packed(document: bytes) -> bytes:
    """The stored form of a document; :class:`Invalid` beyond :data:`MAX_PACKED_BYTES`."""
    blob = zlib.compress(document, 6)
    if len(blob) > MAX_PACKED_BYTES:
        raise Invalid(f"the snapshot takes {len(blob)} bytes compressed, more than {MAX_PACKED_BYTES}")
    return blob


def unpacked(blob: bytes) -> bytes:
    """The document of a stored form (:func:`packed`)."""
    return zlib.decompress(blob)


def newest_first(records: Iterable[SnapshotRecord]) -> list[SnapshotRecord]:
    """Records newest first: by ``taken_at``, then ``received_at``, then name (a total order)."""
    return sorted(records, key=lambda r: (r.taken_at, r.received_at, r.name), reverse=True)


def pruned(records: Iterable[SnapshotRecord], keep: int) -> list[str]:
    """The names of the records beyond the newest ``keep`` (those a store deletes)."""
    return [r.name for r in newest_first(records)[keep:]]
