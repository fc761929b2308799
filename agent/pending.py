"""A producer's pending observations, aggregated by key and bounded: the shared half of reporting.

A producer (the sniffer's capture and socket scan, the Kafka watcher's log readers, the Istio
watcher's scrapes) turns each observation into a key and a value and :meth:`Pending.put` s it;
values of the same key are combined by the producer's ``combine`` (the newest sighting wins,
sets are unioned ...), so memory is bounded by distinct keys, not by observations, and
hard-bounded by ``bound``: a new key beyond the bound is dropped and counted (updates to known
keys always succeed). :class:`agent.reporter.Reporter` drains them every interval and merges
back what it could not send.

A value whose time cannot be written on the wire (outside [2000, 2100),
:func:`agent.wire.format_time`) is refused and counted apart (:attr:`Pending.bad_times`): it is a
broken clock, not a full collector.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from agent.wiretime import EARLIEST, END

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class Batch(Generic[K, V]):
    """What one drain took: the pending entries, and what was refused since the previous drain:
    ``dropped`` new keys because the bound was reached, ``bad_times`` values because their time
    cannot be written."""

    entries: Mapping[K, V]
    dropped: int = 0
    bad_times: int = 0

    def __len__(self) -> int:
        return len(self.entries)


class Pending(Generic[K, V]):
    """Pending entries, aggregated and bounded. Thread-safe: producers :meth:`put`, the reporter
    thread :meth:`drain` and :meth:`merge`. ``on_drop(n)`` is told of every drop (a metric)."""

    def __init__(
        self,
        bound: int,
        combine: Callable[[V, V], V],
        *,
        on_drop: Callable[[int], object] | None = None,
    ) -> None:
        self.bound = bound
        self._combine = combine
        self._on_drop = on_drop
        self._lock = threading.Lock()
        self._pending: dict[K, V] = {}
        self._dropped_total = 0
        self._dropped_since_drain = 0
        self._bad_times_total = 0
        self._bad_times_since_drain = 0

    def put(self, key: K, value: V, seen_at: float) -> bool:
        """Record one value, seen at ``seen_at``; False when it was a new key refused by the bound,
        or its time cannot be written (see the module docstring)."""
        if not EARLIEST <= seen_at < END:
            with self._lock:
                self._bad_times_total += 1
                self._bad_times_since_drain += 1
            return False
        with self._lock:
            pending = self._pending
            old = pending.get(key)
            if old is not None:
                pending[key] = self._combine(old, value)
                return True
            if len(pending) < self.bound:
                pending[key] = value
                return True
            self._dropped_total += 1
            self._dropped_since_drain += 1
        if self._on_drop is not None:
            self._on_drop(1)
        return False

    def merge(self, entries: Mapping[K, V]) -> int:
        """Put entries back (a batch that failed to send): same bound, values combined.
        Returns how many were dropped because the bound was reached."""
        dropped = 0
        with self._lock:
            pending, combine = self._pending, self._combine
            for key, value in entries.items():
                old = pending.get(key)
                if old is not None:
                    pending[key] = combine(old, value)
                elif len(pending) < self.bound:
                    pending[key] = value
                else:
                    dropped += 1
            if dropped:
                self._dropped_total += dropped
                self._dropped_since_drain += dropped
        if dropped and self._on_drop is not None:
            self._on_drop(dropped)
        return dropped

    def drain(self) -> Batch[K, V]:
        """Take every pending entry (swapping dicts: O(1) under the lock)."""
        with self._lock:
            entries, self._pending = self._pending, {}
            dropped, self._dropped_since_drain = self._dropped_since_drain, 0
            bad_times, self._bad_times_since_drain = self._bad_times_since_drain, 0
        return Batch(entries, dropped, bad_times)

    @property
    def dropped(self) -> int:
        """New keys refused by the bound since the collector was made."""
        return self._dropped_total

    @property
    def bad_times(self) -> int:
        """Values refused since the collector was made because their time cannot be written."""
        return self._bad_times_total

    def __len__(self) -> int:
        return len(self._pending)
