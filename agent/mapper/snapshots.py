"""Snapshots of the map in the mapper's store: saved by name, listed, read back, deleted, pruned, and
taken automatically on a schedule.

A snapshot is the map at a moment: every stored edge (:meth:`agent.mapper.store.EdgeStore.edges`)
and the cluster's facts (:meth:`agent.mapper.cluster.ClusterState.facts`), as an
:class:`agent.model.Snapshot`. They come from the GraphQL API (``saveSnapshot``: the map now;
``loadSnapshot``: a document from a file) and from :class:`AutoSnapshots` (``auto-<time>`` every
``MAPPER_SNAPSHOT_INTERVAL``); they go out through the API (``snapshots``, ``snapshot``) to the
CLI's ``snapshot`` and ``diff`` commands.

Storage: the ``snapshots`` table of the edge store's file (:mod:`agent.mapper.storeschema`), in the
store's transactions (:meth:`EdgeStore.writing`, :meth:`EdgeStore.reading`): one row per name with
the snapshot document (:mod:`agent.snapshotwire`, the one JSON form) zlib-compressed, so
``snapshot`` answers the stored text without decoding it.

Bounds: at most ``limit`` user snapshots and ``auto_limit`` automatic ones; saving one more prunes
the oldest *saved* of its kind (not the oldest ``takenAt``: a snapshot loaded from an old file
is new to the store and must not be the one pruned at once). Saving under an existing name
replaces it. Names are DNS-label-like (:data:`NAME`); ``auto-`` names are the automatic ones
(``auto-20261207T120000Z``, :data:`AUTO_NAME`, when the mapper names them).

``resetCapture`` (:meth:`EdgeStore.reset`) forgets the edges and keeps the snapshots: they are
the user's saved state, and comparing with them is how one sees what came back after a reset.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from agent import snapshotwire
from agent.mapper.background import Background
from agent.mapper.store import EdgeStore, StoreError
from agent.model import ClusterFacts, Edge, Snapshot
from agent.wiretime import WireError

log = logging.getLogger("agent.mapper.snapshots")

NAME = re.compile(r"[a-z0-9]([-a-z0-9._]{0,61}[a-z0-9])?")
AUTO_PREFIX = "auto-"
AUTO_NAME = re.compile(r"auto-[0-9]{8}T[0-9]{6}Z")
DEFAULT_LIMIT = 50
DEFAULT_AUTO_LIMIT = 48
_COMPRESSION = 1  # zlib's fastest level: the JSON is repetitive, and saves run while reports wait

_UPSERT = (
    "INSERT INTO snapshots (name, taken_at, auto, edges, saved, doc) VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (name) DO UPDATE SET taken_at = excluded.taken_at, auto = excluded.auto,"
    " edges = excluded.edges, saved = excluded.saved, doc = excluded.doc"
)
_PRUNE = (
    "DELETE FROM snapshots WHERE auto = ?1 AND name NOT IN"
    " (SELECT name FROM snapshots WHERE auto = ?1 ORDER BY saved DESC LIMIT ?2)"
)


class SnapshotError(ValueError):
    """A snapshot that cannot be saved: a bad or reserved name, or a bad document (the message says which)."""


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """What ``snapshots`` lists of a stored snapshot: its name, when it was taken, whether the
    mapper took it on its own schedule, and how many edges it holds."""

    name: str
    taken_at: float
    auto: bool
    edges: int


def name_problem(name: str) -> str:
    """Why ``name`` cannot name a snapshot ("" when it can): :data:`NAME`, or an automatic
    snapshot's :data:`AUTO_NAME`."""
    if not NAME.fullmatch(name) and not AUTO_NAME.fullmatch(name):
        return (
            f"snapshot name {name[:80]!r} is not 1-63 characters of a-z, 0-9, '-', '.', '_'"
            " starting and ending with a letter or digit"
        )
    return ""


def auto_name(taken_at: float) -> str:
    """``auto-20261207T120000Z``: an automatic snapshot's name, from when it was taken."""
    return AUTO_PREFIX + datetime.fromtimestamp(taken_at, UTC).strftime("%Y%m%dT%H%M%SZ")


class SnapshotStore:
    """Snapshots in ``store``'s file (see the module docstring). Thread-safe, as the store is."""

    def __init__(
        self,
        store: EdgeStore,
        *,
        limit: int = DEFAULT_LIMIT,
        auto_limit: int = DEFAULT_AUTO_LIMIT,
        edges: Callable[[], list[Edge]] | None = None,
    ) -> None:
        self.store = store
        # What a snapshot takes: the map as queries show it (past the retention left out), so that
        # `diff NAME --now` compares like with like.
        self._edges = edges or store.edges
        self.limit = limit
        self.auto_limit = auto_limit

    def save_snapshot(self, snapshot: Snapshot) -> SnapshotInfo:
        """Store ``snapshot`` (replacing one of the same name), then prune its kind to its bound.

        :class:`SnapshotError` when its name is not one (:func:`name_problem`), or when ``auto``
        disagrees with the name (``auto-`` names are the automatic snapshots', and only theirs)."""
        problem = name_problem(snapshot.name)
        if problem:
            raise SnapshotError(problem)
        if snapshot.auto != snapshot.name.startswith(AUTO_PREFIX):
            raise SnapshotError(
                f"snapshot name {snapshot.name!r}: names starting {AUTO_PREFIX!r} are reserved for"
                " the mapper's automatic snapshots"
            )
        try:
            doc = zlib.compress(snapshotwire.encode_snapshot(snapshot), _COMPRESSION)
        except WireError as error:
            raise SnapshotError(f"snapshot {snapshot.name!r} cannot be written: {error}") from error
        info = SnapshotInfo(snapshot.name, snapshot.taken_at, snapshot.auto, len(snapshot.edges))
        bound = self.auto_limit if snapshot.auto else self.limit
        with self.store.writing() as db:
            saved = db.execute("SELECT coalesce(max(saved), 0) + 1 FROM snapshots").fetchone()[0]
            db.execute(_UPSERT, (info.name, info.taken_at, int(info.auto), info.edges, saved, doc))
            pruned = db.execute(_PRUNE, (int(info.auto), bound)).rowcount
        log.info(
            "snapshot saved name=%s edges=%d auto=%s bytes=%d pruned=%d",
            info.name, info.edges, info.auto, len(doc), pruned,
        )  # fmt: skip
        return info

    def take(self, name: str, facts: ClusterFacts, now: float, *, auto: bool = False) -> SnapshotInfo:
        """Save the map as it is now (every stored edge) with ``facts`` under ``name``."""
        return self.save_snapshot(Snapshot(name, now, tuple(self._edges()), facts, auto))

    def document(self, name: str) -> bytes | None:
        """The snapshot document's JSON as stored (None when there is no such snapshot)."""
        with self.store.reading() as db:
            row = db.execute("SELECT doc FROM snapshots WHERE name = ?", (name,)).fetchone()
        return zlib.decompress(row[0]) if row is not None else None

    def snapshot(self, name: str) -> Snapshot | None:
        """The snapshot named ``name``, or None."""
        doc = self.document(name)
        return snapshotwire.decode_snapshot(doc) if doc is not None else None

    def snapshot_infos(self) -> list[SnapshotInfo]:
        """Every stored snapshot, newest ``takenAt`` first (then by name)."""
        with self.store.reading() as db:
            rows = db.execute(
                "SELECT name, taken_at, auto, edges FROM snapshots ORDER BY taken_at DESC, name"
            ).fetchall()
        return [SnapshotInfo(name, taken_at, bool(auto), edges) for name, taken_at, auto, edges in rows]

    def delete_snapshot(self, name: str) -> bool:
        """Forget the snapshot named ``name``; False when there was none."""
        with self.store.writing() as db:
            deleted = db.execute("DELETE FROM snapshots WHERE name = ?", (name,)).rowcount > 0
        if deleted:
            log.info("snapshot deleted name=%s", name)
        return deleted

    def newest_auto(self) -> float | None:
        """When the newest automatic snapshot was taken (None: there is none)."""
        with self.store.reading() as db:
            found = db.execute("SELECT max(taken_at) FROM snapshots WHERE auto = 1").fetchone()[0]
        return float(found) if found is not None else None


class AutoSnapshots(Background):
    """Takes an automatic snapshot every ``interval`` seconds on a daemon thread, until :meth:`stop`.

    The schedule survives restarts: the next one is due ``interval`` after the newest automatic
    snapshot in the store (after the start when there is none yet, so a fresh mapper does not
    save its empty map). A failed one is logged and tried again at the next due time."""

    thread_name = "auto-snapshots"

    def __init__(
        self,
        snapshots: SnapshotStore,
        facts: Callable[[], ClusterFacts],
        interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.snapshots = snapshots
        self.interval = interval
        self.taken = 0
        self._facts = facts
        self._clock = clock

    def due(self, started: float) -> float:
        """When the next automatic snapshot is due."""
        newest = self.snapshots.newest_auto()
        return (newest if newest is not None else started) + self.interval

    def take_now(self) -> SnapshotInfo:
        now = self._clock()
        info = self.snapshots.take(auto_name(now), self._facts(), now, auto=True)
        self.taken += 1
        return info

    def _run(self) -> None:
        started = self._clock()
        while True:
            try:
                wait = self.due(started) - self._clock()
            except (StoreError, sqlite3.Error) as error:
                log.warning("automatic snapshots: cannot read the store (%s); retrying", error)
                wait = self.interval
            if self._stopping.wait(max(wait, 0.0)):
                return
            if wait > 0:
                continue  # woke at the due time: check again (another process may have taken one)
            try:
                self.take_now()
            except (StoreError, sqlite3.Error, SnapshotError) as error:
                log.warning("automatic snapshot failed (%s); next one in %gs", error, self.interval)
                started = self._clock()  # not before another interval
                if self._stopping.wait(self.interval):
                    return
