"""Who held an address (an IP, a Service name) when: the time-indexed span history behind IP reuse.

Pod IPs and ClusterIPs are recycled, so each address maps to non-overlapping spans [start, end) of
the objects (by uid) that held it. Spans come in from `agent.mapper.cluster.ClusterState`'s writer
(`add` when an object claims the address, `end` when it lets go, `prune` after retention); they go
out to its lock-free readers through `span_at` (bisect on the start times, O(log n)). Pure: no
I/O, no clock.
"""

from __future__ import annotations

import math
from bisect import bisect_right

INF = math.inf
# API timestamps are whole seconds (truncated): "ended" and "started" within one are ambiguous.
TIMESTAMP_RESOLUTION = 1.0


class Span:
    """One holder (`key`, an object uid) of an address over [start, end); `end` is INF while held."""

    __slots__ = ("end", "key", "start")

    def __init__(self, start: float, end: float, key: str) -> None:
        self.start, self.end, self.key = start, end, key


class History:
    """One address's holders. Copy-on-write: `data` (starts, spans) is replaced whole, never edited
    in place, so lock-free readers always see a consistent pair; only a span's `end` is written in
    place (one float). One writer at a time (the caller's lock); any number of readers."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data: tuple[list[float], list[Span]] = ([], [])

    def add(self, start: float, key: str) -> None:
        """`key` holds the address from `start`: one holder at a time, so the newer claim ends the older."""
        starts, spans = self.data
        i = bisect_right(starts, start)
        later = starts[i] if i < len(starts) else INF
        if i > 0 and start < spans[i - 1].end <= min(start + TIMESTAMP_RESOLUTION, later):
            # A holder that ended (as observed) within the newcomer's start second was still the
            # holder; the newcomer starts when it ended.
            start = spans[i - 1].end
        span = Span(start, later, key)
        self.data = (starts[:i] + [start] + starts[i:], spans[:i] + [span] + spans[i:])
        if i > 0 and spans[i - 1].end > start:
            spans[i - 1].end = start

    def span_at(self, t: float) -> Span | None:
        starts, spans = self.data
        i = bisect_right(starts, t) - 1
        if i >= 0:
            span = spans[i]
            if t < span.end:
                return span
        return None

    def end(self, key: str, at: float) -> None:
        """`key` let go of the address at `at` (never before its span started)."""
        for span in self.data[1]:
            if span.key == key and span.end > at:
                span.end = max(at, span.start)

    def prune(self, cutoff: float) -> bool:
        """Drop spans that ended before `cutoff`; True if nothing is left."""
        spans = self.data[1]
        keep = [s for s in spans if s.end >= cutoff]
        if len(keep) != len(spans):
            self.data = ([s.start for s in keep], keep)
        return not keep
