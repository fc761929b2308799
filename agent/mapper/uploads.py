"""The cloud uploader's bookkeeping inside the edge store's file: the SQL behind
:class:`~agent.mapper.store.EdgeStore`'s upload methods, kept apart from the edge merging.

The store owns the connections, the locks and the transactions and passes a connection in; keys
are the store's canonical key text. The tables are created by the store's migrations:

* ``upload_state``, per edge key: the ``last_seen`` and content ``digest`` last uploaded, and
  ``live``, the flag last sent: :data:`NOT_LIVE`, :data:`LIVE`, or :data:`DEMOTING` (a
  ``live=false`` upload of an edge the cloud held live is in flight: the cloud may hold either
  flag until it is marked, so it counts as live for the idle sweep and as not live for the
  selection, which re-sends it whichever way it turned out);
* ``meta.upload_cursor``: the ``seq`` up to which the uploader has handled every change.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable

NOT_LIVE, LIVE, DEMOTING = 0, 1, 2

UploadMark = tuple[float, str, bool]
"""What was last uploaded of an edge: ``(last_seen, digest, live)``."""

_dumps = json.JSONEncoder(separators=(",", ":")).encode

_UPSERT = (
    "INSERT INTO upload_state (key, last_seen, digest, live) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET last_seen = excluded.last_seen, digest = excluded.digest,"
    " live = excluded.live"
)


def mark(db: sqlite3.Connection, rows: Iterable[tuple[str, float, str, bool]], cursor: int | None) -> None:
    """Record each ``(key, last_seen, digest, live)`` as uploaded; move the cursor up to ``cursor``
    (never back; ``None``: leave it)."""
    db.executemany(_UPSERT, ((key, seen, dig, LIVE if live else NOT_LIVE) for key, seen, dig, live in rows))
    if cursor is not None:
        db.execute("UPDATE meta SET value = max(value, ?) WHERE name = 'upload_cursor'", (int(cursor),))


def demoting(db: sqlite3.Connection, keys: list[str]) -> None:
    """Flag the live marks among ``keys`` :data:`DEMOTING` (before sending them ``live=false``)."""
    db.execute(
        f"UPDATE upload_state SET live = {DEMOTING}"  # noqa: S608 - a constant, not input
        f" WHERE live = {LIVE} AND key IN (SELECT value FROM json_each(?))",
        (_dumps(keys),),
    )


def marks(db: sqlite3.Connection, keys: list[str]) -> dict[str, UploadMark]:
    """The marks of those ``keys`` that have one; only :data:`LIVE` reads as live."""
    rows = db.execute(
        "SELECT key, last_seen, digest, live FROM upload_state WHERE key IN (SELECT value FROM json_each(?))",
        (_dumps(keys),),
    )
    return {key: (seen, dig, live == LIVE) for key, seen, dig, live in rows}


def cursor(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT value FROM meta WHERE name = 'upload_cursor'").fetchone()[0])


def any_live(db: sqlite3.Connection) -> bool:
    """Whether the cloud may hold any edge of this store live (a heartbeat is worth sending)."""
    return bool(db.execute("SELECT EXISTS (SELECT 1 FROM upload_state WHERE live != 0)").fetchone()[0])


def forget(db: sqlite3.Connection) -> None:
    """For a reset, before the edges are deleted: drop the marks of edges the cloud holds not live;
    keep the others, with the edge's latest ``last_seen``, for the idle sweep to send them
    ``live=false`` from their key alone (see :meth:`~agent.mapper.store.EdgeStore.gone_quiet`)."""
    db.execute("DELETE FROM upload_state WHERE live = 0")
    db.execute(
        "UPDATE upload_state SET last_seen = max(last_seen,"
        " (SELECT e.last_seen FROM edges e WHERE e.key = upload_state.key))"
        " WHERE key IN (SELECT key FROM edges)"
    )
