"""The sniffer's pending observations, aggregated into bounded pairs.

Observations come from the capture loop (``DnsAnswer``, ``TcpConnection``) and the socket scan
(``SocketConnection``) through :meth:`PairCollector.add`; the reporter drains them and merges back
what it could not send. Pairs are keyed by (kind, source, destination, server port), so memory is
bounded by distinct pairs, not packets, and hard-bounded by ``max_pairs``: a new pair beyond the
bound is dropped and counted (updates to known pairs always succeed). A pair keeps what its newest
sighting said, the union of the IPs a name resolved to (newest first, at most
:data:`MAX_IPS_PER_NAME`) and the last known client hostname.

An observation whose time cannot be written on the wire (outside [2000, 2100),
:func:`agent.wire.format_time`) is refused and counted apart (:attr:`PairCollector.bad_times`):
it is a broken clock, not a full collector.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from agent.model import DnsAnswer, Method, SocketConnection, TcpConnection
from agent.sniffer.metrics import SnifferMetrics
from agent.wire import EARLIEST, END

MAX_IPS_PER_NAME = 16
"""A DNS pair keeps the union of the IPs it resolved to, newest first, up to this many."""
MAX_CNAMES = 16
"""A DNS pair keeps the first this many names of its CNAME chain (resolvers give up far sooner)."""

ReportedObservation = DnsAnswer | TcpConnection | SocketConnection


class PairKey(NamedTuple):
    kind: Method  # DNS, TCP or SOCKET_SCAN
    source: str  # client IP
    destination: str  # DNS: queried name; TCP and socket scan: server IP
    port: int  # server port; 0 for DNS


class Seen(NamedTuple):
    """What the sightings of one pair said; every field but ``ips`` and ``hostname`` is the newest's."""

    last_seen: float
    ips: tuple[str, ...] = ()  # DNS only: the union, newest first
    ttl: int = 0  # DNS only
    hostname: str = ""  # socket scan only: the client's hostname, the last one known
    client_port: int = 0
    server_ip: str = ""  # DNS only: the DNS server that answered
    cnames: tuple[str, ...] = ()  # DNS only: the chain from the queried name to the answered one


_new = tuple.__new__  # builds a NamedTuple in half the time of its constructor (hot path)
_EARLIEST, _END = EARLIEST, END
_DNS, _TCP, _SOCKET = Method.DNS, Method.TCP, Method.SOCKET_SCAN


def pair_of(o: ReportedObservation) -> tuple[PairKey, Seen]:
    """The pair an observation belongs to, and what it says of it."""
    if isinstance(o, TcpConnection):
        key = _new(PairKey, (_TCP, o.client_ip, o.server_ip, o.server_port))
        return key, _new(Seen, (o.seen_at, (), 0, "", o.client_port, "", ()))
    if isinstance(o, DnsAnswer):
        key = _new(PairKey, (_DNS, o.client_ip, o.qname, 0))
        cnames = o.cnames[:MAX_CNAMES] if o.cnames else ()
        return key, _new(Seen, (o.seen_at, o.ips, o.ttl, "", o.client_port, o.server_ip, cnames))
    if isinstance(o, SocketConnection):
        key = _new(PairKey, (_SOCKET, o.client_ip, o.server_ip, o.server_port))
        return key, _new(Seen, (o.seen_at, (), 0, o.client_hostname, o.client_port, "", ()))
    raise TypeError(f"not a sniffer observation: {type(o).__name__}")


def combine(a: Seen, b: Seen) -> Seen:
    """The same pair seen twice: the newest sighting wins, DNS IPs are unioned (newest first)
    and a known hostname is kept."""
    new, old = (b, a) if b.last_seen >= a.last_seen else (a, b)
    ips = new.ips
    if old.ips and old.ips != ips:
        ips = (ips + tuple(ip for ip in old.ips if ip not in ips))[:MAX_IPS_PER_NAME]
    if ips is new.ips and (new.hostname or not old.hostname):
        return new
    return new._replace(ips=ips, hostname=new.hostname or old.hostname)


@dataclass(frozen=True, slots=True)
class Batch:
    """What one drain took: the pending pairs, and what was refused since the previous drain:
    ``dropped`` new pairs because the bound was reached, ``bad_times`` observations because
    their time cannot be written."""

    pairs: Mapping[PairKey, Seen]
    dropped: int = 0
    bad_times: int = 0

    def __len__(self) -> int:
        return len(self.pairs)


class PairCollector:
    """Pending pairs, aggregated and bounded. Thread-safe: the capture and scanner threads
    :meth:`add`, the reporter thread :meth:`drain` and :meth:`merge`."""

    def __init__(self, max_pairs: int, metrics: SnifferMetrics | None = None) -> None:
        self.max_pairs = max_pairs
        self._metrics = metrics
        self._lock = threading.Lock()
        self._pending: dict[PairKey, Seen] = {}
        self._dropped_total = 0
        self._dropped_since_drain = 0
        self._bad_times_total = 0
        self._bad_times_since_drain = 0
        if metrics is not None:
            metrics.pairs_pending.set_function(self.__len__)

    def add(self, observation: ReportedObservation) -> bool:
        """Record one observation; False when it was a new pair refused by the bound, or its
        time cannot be written (see the module docstring)."""
        key, seen = pair_of(observation)
        if not _EARLIEST <= seen[0] < _END:  # seen[0]: last_seen (indexing is the fast path)
            with self._lock:
                self._bad_times_total += 1
                self._bad_times_since_drain += 1
            return False
        with self._lock:
            pending = self._pending
            old = pending.get(key)
            if old is not None:
                pending[key] = combine(old, seen)
                return True
            if len(pending) < self.max_pairs:
                pending[key] = seen
                return True
            self._dropped_total += 1
            self._dropped_since_drain += 1
        if self._metrics is not None:
            self._metrics.pairs_dropped.inc()
        return False

    def merge(self, pairs: Mapping[PairKey, Seen]) -> int:
        """Put pairs back (a batch that failed to send): same bound, newest sighting wins.
        Returns how many were dropped because the bound was reached."""
        dropped = 0
        with self._lock:
            pending = self._pending
            for key, seen in pairs.items():
                old = pending.get(key)
                if old is not None:
                    pending[key] = combine(old, seen)
                elif len(pending) < self.max_pairs:
                    pending[key] = seen
                else:
                    dropped += 1
            if dropped:
                self._dropped_total += dropped
                self._dropped_since_drain += dropped
        if dropped and self._metrics is not None:
            self._metrics.pairs_dropped.inc(dropped)
        return dropped

    def drain(self) -> Batch:
        """Take every pending pair (swapping dicts: O(1) under the lock)."""
        with self._lock:
            pairs, self._pending = self._pending, {}
            dropped, self._dropped_since_drain = self._dropped_since_drain, 0
            bad_times, self._bad_times_since_drain = self._bad_times_since_drain, 0
        return Batch(pairs, dropped, bad_times)

    @property
    def dropped(self) -> int:
        """New pairs refused by the bound since the collector was made."""
        return self._dropped_total

    @property
    def bad_times(self) -> int:
        """Observations refused since the collector was made because their time cannot be written."""
        return self._bad_times_total

    def __len__(self) -> int:
        return len(self._pending)
