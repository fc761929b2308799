"""Edge retention: how long an edge stays in the map after it was last seen, and when it leaves the
store.

Two bounds (:class:`agent.mapper.settings.RetentionSettings`, from ``MAPPER_EDGE_RETENTION`` and
``MAPPER_EDGE_PRUNE_AFTER``):

* visible: :class:`RecentEdges` stands between the edge store and the GraphQL API
  (:func:`agent.mapper.api.create_app` gets it instead of the store), so every query that reads edges
  (``serviceIntents``, ``intents``, ``edges``) and everything built from them (the CLI's ``list`` and
  exports, the Otterize CLI) sees only the edges last seen within ``visible_for``: a deleted
  workload's edges age out of the exports. The upload's live set has the same bound in the uploader
  (:class:`agent.mapper.uploader.Uploader`'s ``visible_for``).
* stored: :class:`Pruner` deletes the edges last seen more than ``prune_after`` ago from the store
  (:meth:`agent.mapper.store.EdgeStore.prune`), now and then every ``interval``, on a thread of the
  mapper's ``__main__``; each run logs one line with the count.

Snapshots (:mod:`agent.mapper.snapshots`) keep what they hold: neither bound reaches them.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable

from agent.mapper.api.protocols import EdgeStoreLike
from agent.mapper.background import Background
from agent.mapper.store import EdgeStore, StoreError
from agent.model import Edge

log = logging.getLogger("agent.mapper.retention")

Clock = Callable[[], float]


class RecentEdges:
    """The store as the API sees it (an ``EdgeStoreLike``): writes and resets go through unchanged;
    reads leave out the edges last seen more than ``visible_for`` seconds before ``clock()``."""

    def __init__(self, store: EdgeStoreLike, visible_for: float, clock: Clock = time.time) -> None:
        self.store = store
        self.visible_for = visible_for
        self._clock = clock

    def record(self, edges: Iterable[Edge]) -> int:
        return self.store.record(edges)

    def edges(self, namespaces: Collection[str] | None = None) -> list[Edge]:
        """The store's edges (``namespaces`` as :meth:`EdgeStore.edges` takes it) seen within
        ``visible_for``."""
        cutoff = self._clock() - self.visible_for
        return [edge for edge in self.store.edges(namespaces) if edge.last_seen >= cutoff]

    def reset(self) -> None:
        self.store.reset()


class Pruner(Background):
    """Deletes the edges last seen more than ``prune_after`` seconds ago, now and then every
    ``interval`` seconds, on a daemon thread (:meth:`start`, :meth:`stop`)."""

    thread_name = "edge-pruner"

    def __init__(
        self, store: EdgeStore, prune_after: float, interval: float = 3600.0, clock: Clock = time.time
    ) -> None:
        super().__init__()
        self.store = store
        self.prune_after = prune_after
        self.interval = interval
        self._clock = clock

    def prune_once(self) -> int:
        """One deletion (logged with its count); returns how many edges were deleted."""
        deleted = self.store.prune(self._clock() - self.prune_after)
        log.info("edges pruned count=%d not_seen_for=%gs", deleted, self.prune_after)
        return deleted

    def _run(self) -> None:
        while True:
            try:
                self.prune_once()
            except (StoreError, sqlite3.Error) as exc:  # a closed or busy store: the next run retries
                log.warning("edge pruning failed, retrying in %gs: %s", self.interval, exc)
            if self._stopping.wait(self.interval):
                return
