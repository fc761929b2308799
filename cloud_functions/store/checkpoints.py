"""Checkpoints of a SQLite WAL on a thread of their own, off the writers' path.

A checkpoint copies the WAL back into the database file, with its fsyncs. Run by SQLite itself it
happens inside some writer's COMMIT, and that was a third of an ingest's time
(bench/bench_cloud_ingest.py). :class:`Checkpointer` runs ``PRAGMA wal_checkpoint(PASSIVE)`` on
its own connection whenever nudged; a passive checkpoint never blocks writers, and on two cores
it runs beside them (sqlite3 releases the GIL while SQLite works). The writer keeps SQLite's own
automatic checkpoint as a backstop, should this thread fall behind.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)


class Checkpointer:
    """Nudges during a checkpoint coalesce into one more; the thread starts on the first nudge."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._wake = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def nudge(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None and not self._closing:
                    self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
                    self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        try:
            db = sqlite3.connect(self._path, isolation_level=None)
        except sqlite3.Error as error:
            log.warning("sqlite %s: no checkpoint thread (%s); writers checkpoint", self._path, error)
            return
        try:
            db.execute("PRAGMA busy_timeout=5000")
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._closing:
                    return
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as error:  # e.g. busy: the next nudge (or a writer) catches up
                    log.warning("sqlite %s: checkpoint failed: %s", self._path, error)
        finally:
            db.close()

    def close(self, timeout: float = 10.0) -> None:
        self._closing = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
