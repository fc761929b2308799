"""The upload ledger: what the cloud has of the mapper's edges, kept in the edge store's file.

The uploader (:mod:`agent.mapper.uploader`) asks it what was last sent of each changed edge and
tells it what it sent; it reads and writes inside the edge store's transactions
(:meth:`~agent.mapper.store.EdgeStore.writing`, :meth:`~agent.mapper.store.EdgeStore.reading`),
so the store itself knows nothing of uploads. The tables (created by the store's schema,
:mod:`agent.mapper.storeschema`):

* ``upload_state``, per edge key (:func:`agent.wire.key_for`): the ``last_seen`` and content
  ``digest`` last uploaded, and ``live``, the flag last sent: :data:`NOT_LIVE`, :data:`LIVE`, or
  :data:`DEMOTING` (a ``live=false`` upload of an edge the cloud held live is in flight: the cloud
  may hold either flag until it is marked, so it counts as live for the idle sweep and as not
  live for the selection, which re-sends it whichever way it turned out);
* ``meta.upload_cursor``: the ``seq`` up to which the uploader has handled every change;
* ``snapshot_uploads``, per snapshot name: the digest of the document last uploaded (or refused
  for good) of the mapper's snapshots (:mod:`agent.mapper.snapshotupload`). The ledger creates it
  when missing (:data:`SNAPSHOT_UPLOADS`), as it is the ledger's alone; a reset keeps it (a reset
  keeps the snapshots).

A ``resetCapture`` (:meth:`~agent.mapper.store.EdgeStore.reset`) drops the marks of edges the cloud
holds not live and keeps the live ones, for the idle sweep to send them ``live=false`` from their
key alone (:meth:`UploadLedger.gone_quiet`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

import msgspec

from agent import wire
from agent.mapper.store import EdgeStore
from agent.model import Edge, Target, WorkloadIdentity

NOT_LIVE, LIVE, DEMOTING = 0, 1, 2

UploadKey = tuple[WorkloadIdentity, Target]
"""An edge's key (``Edge.key``), as the ledger takes it."""
UploadMark = tuple[float, str, bool]
"""What was last uploaded of an edge: ``(last_seen, digest, live)``."""

_keys_json = msgspec.json.Encoder().encode
_UPSERT = (
    "INSERT INTO upload_state (key, last_seen, digest, live) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET last_seen = excluded.last_seen, digest = excluded.digest,"
    " live = excluded.live"
)
SNAPSHOT_UPLOADS = (
    "CREATE TABLE IF NOT EXISTS snapshot_uploads (name TEXT PRIMARY KEY, digest TEXT NOT NULL) WITHOUT ROWID"
)
_SELECT_QUIET = (
    "SELECT u.key, u.last_seen, e.doc FROM upload_state u LEFT JOIN edges e ON e.key = u.key"
    " WHERE u.live != 0 AND (e.key IS NULL OR e.last_seen <= ?) ORDER BY u.key LIMIT ?"
)


def _text(key: UploadKey) -> str:
    return wire.key_for(*key).decode()


class UploadLedger:
    """What was uploaded of a store's edges (see the module docstring)."""

    def __init__(self, store: EdgeStore) -> None:
        self.store = store
        store.on_reset(self._forget)
        with store.writing() as db:
            db.execute(SNAPSHOT_UPLOADS)

    def mark_uploaded(
        self, entries: Iterable[tuple[UploadKey, float, str, bool]], cursor: int | None = None
    ) -> None:
        """Record, in one transaction, that each ``(key, last_seen, digest, live)`` was uploaded
        and that the uploader has handled every row up to ``seq`` ``cursor`` (``None``: leave the
        cursor). The cursor never moves backwards."""
        rows = [(_text(key), seen, digest, LIVE if live else NOT_LIVE) for key, seen, digest, live in entries]
        with self.store.writing() as db:
            db.executemany(_UPSERT, rows)
            if cursor is not None:
                db.execute(
                    "UPDATE meta SET value = max(value, ?) WHERE name = 'upload_cursor'", (int(cursor),)
                )

    def mark_demoting(self, keys: Iterable[UploadKey]) -> None:
        """Before sending ``keys`` with ``live=false``: their live marks become :data:`DEMOTING`
        until :meth:`mark_uploaded`, so a crash in between leaves them to :meth:`gone_quiet` (and to
        a re-send if they come back)."""
        texts = [_text(key) for key in keys]
        if texts:
            with self.store.writing() as db:
                db.execute(
                    f"UPDATE upload_state SET live = {DEMOTING}"  # noqa: S608 - constants, not input
                    f" WHERE live = {LIVE} AND key IN (SELECT value FROM json_each(?))",
                    (_keys_json(texts),),
                )

    def upload_marks(self, keys: Iterable[UploadKey]) -> dict[UploadKey, UploadMark]:
        """For each key that was uploaded: ``(uploaded last_seen, uploaded digest, sent live)``;
        only :data:`LIVE` reads as live."""
        by_text = {_text(key): key for key in keys}
        if not by_text:
            return {}
        with self.store.reading() as db:
            rows = db.execute(
                "SELECT key, last_seen, digest, live FROM upload_state"
                " WHERE key IN (SELECT value FROM json_each(?))",
                (_keys_json(list(by_text)),),
            ).fetchall()
        return {by_text[key]: (seen, digest, live == LIVE) for key, seen, digest, live in rows}

    def gone_quiet(self, cutoff: float, limit: int) -> list[Edge]:
        """Up to ``limit`` edges (by key) the cloud may hold live that were last seen at or before
        ``cutoff``. An edge forgotten by a reset comes back from its key alone: its last known
        ``last_seen``, no details, ``count`` 1 and ``ambiguous`` (a no-op in the cloud's merge)."""
        with self.store.reading() as db:
            rows = db.execute(_SELECT_QUIET, (float(cutoff), int(limit))).fetchall()
        edges = wire.unpack_edges([doc for _, _, doc in rows if doc is not None])
        stored = iter(edges)
        # An unreadable document is handled as a forgotten one: its key and last_seen still say
        # what the cloud may hold live.
        return [
            (next(stored) if doc is not None else None) or _forgotten(key, seen) for key, seen, doc in rows
        ]

    def has_live_uploads(self) -> bool:
        """Whether the cloud may hold any of this store's edges live (a heartbeat is worth sending)."""
        with self.store.reading() as db:
            found = db.execute("SELECT EXISTS (SELECT 1 FROM upload_state WHERE live != 0)").fetchone()
        return bool(found[0])

    def upload_cursor(self) -> int:
        """The ``seq`` up to which the uploader has handled every change (0: none yet)."""
        with self.store.reading() as db:
            return int(db.execute("SELECT value FROM meta WHERE name = 'upload_cursor'").fetchone()[0])

    def snapshot_marks(self) -> dict[str, str]:
        """Snapshot name → the digest of its document last uploaded."""
        with self.store.reading() as db:
            return dict(db.execute("SELECT name, digest FROM snapshot_uploads").fetchall())

    def mark_snapshot(self, name: str, digest: str) -> None:
        """Record that the snapshot ``name`` with document digest ``digest`` was uploaded."""
        with self.store.writing() as db:
            db.execute("INSERT OR REPLACE INTO snapshot_uploads (name, digest) VALUES (?, ?)", (name, digest))

    def keep_snapshot_marks(self, names: Iterable[str]) -> None:
        """Forget the marks of snapshots other than ``names`` (deleted or pruned in the mapper)."""
        with self.store.writing() as db:
            db.execute(
                "DELETE FROM snapshot_uploads WHERE name NOT IN (SELECT value FROM json_each(?))",
                (_keys_json(list(names)),),
            )

    @staticmethod
    def _forget(db: sqlite3.Connection) -> None:
        """For a reset, before the edges are deleted: drop the marks of edges the cloud holds not
        live; keep the others, with the edge's latest ``last_seen``."""
        db.execute("DELETE FROM upload_state WHERE live = 0")
        db.execute(
            "UPDATE upload_state SET last_seen = max(last_seen,"
            " (SELECT e.last_seen FROM edges e WHERE e.key = upload_state.key))"
            " WHERE key IN (SELECT key FROM edges)"
        )


def _forgotten(key: str, last_seen: float) -> Edge:
    """The edge of a key whose row is gone: its identity and ``last_seen``, nothing else."""
    client, target = wire.key_of(key)
    return Edge(client, target, last_seen, last_seen, frozenset(), 1, ambiguous=True)
