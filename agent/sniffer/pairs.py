"""The sniffer's pending observations, aggregated into bounded pairs.

Observations come from the capture loop (``DnsAnswer``, ``TcpConnection``) and the socket scan
(``SocketConnection``) through :meth:`PairCollector.add`; the reporter (:mod:`agent.reporter`)
drains them and merges back what it could not send. Pairs are keyed by (kind, source,
destination, server port, and for a socket scan the client's pod when its owner named one), so
memory is bounded by distinct pairs, not packets, and
hard-bounded by ``max_pairs`` (the bound, drops and refused times are :mod:`agent.pending`'s). A
pair keeps what its newest sighting said, the union of the IPs a name resolved to (newest first,
at most :data:`MAX_IPS_PER_NAME`) and the last known client hostname.
"""

from __future__ import annotations

from typing import NamedTuple

from agent import pending
from agent.model import DnsAnswer, Method, SocketConnection, TcpConnection
from agent.sniffer.metrics import SnifferMetrics

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
    # Socket scan only: the client's pod UID, else pod, when the socket's owner named it (else ""):
    # two pods on the node's network (one IP) calling the same server are two pairs.
    client: str = ""


class Seen(NamedTuple):
    """What the sightings of one pair said; every field but ``ips`` and ``hostname`` is the newest's."""

    last_seen: float
    ips: tuple[str, ...] = ()  # DNS only: the union, newest first
    ttl: int = 0  # DNS only
    hostname: str = ""  # socket scan only: the client's hostname, the last one known
    client_port: int = 0
    server_ip: str = ""  # DNS only: the DNS server that answered
    cnames: tuple[str, ...] = ()  # DNS only: the chain from the queried name to the answered one
    pod_uid: str = ""  # socket scan only: the client's pod UID, from its owning process
    pod: str = ""  # socket scan only: the client's pod ("namespace/name" or a name), from its owner


_new = tuple.__new__  # builds a NamedTuple in half the time of its constructor (hot path)
_DNS, _TCP, _SOCKET = Method.DNS, Method.TCP, Method.SOCKET_SCAN


def pair_of(o: ReportedObservation) -> tuple[PairKey, Seen]:
    """The pair an observation belongs to, and what it says of it."""
    if isinstance(o, TcpConnection):
        key = _new(PairKey, (_TCP, o.client_ip, o.server_ip, o.server_port, ""))
        return key, _new(Seen, (o.seen_at, (), 0, "", o.client_port, "", (), "", ""))
    if isinstance(o, DnsAnswer):
        key = _new(PairKey, (_DNS, o.client_ip, o.qname, 0, ""))
        cnames = o.cnames[:MAX_CNAMES] if o.cnames else ()
        return key, _new(Seen, (o.seen_at, o.ips, o.ttl, "", o.client_port, o.server_ip, cnames, "", ""))
    if isinstance(o, SocketConnection):
        client = o.client_pod_uid or o.client_pod
        key = _new(PairKey, (_SOCKET, o.client_ip, o.server_ip, o.server_port, client))
        seen = (o.seen_at, (), 0, o.client_hostname, o.client_port, "", (), o.client_pod_uid, o.client_pod)
        return key, _new(Seen, seen)
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


Batch = pending.Batch[PairKey, Seen]


class PairCollector(pending.Pending[PairKey, Seen]):
    """Pending pairs (:class:`agent.pending.Pending`), bounded by ``max_pairs``. Thread-safe: the
    capture and scanner threads :meth:`add`, the reporter thread drains and merges back."""

    def __init__(self, max_pairs: int, metrics: SnifferMetrics | None = None) -> None:
        super().__init__(max_pairs, combine, on_drop=metrics.pairs_dropped.inc if metrics else None)
        if metrics is not None:
            metrics.pairs_pending.set_function(self.__len__)

    def add(self, observation: ReportedObservation) -> bool:
        """Record one observation; False when it was a new pair refused by the bound, or its
        time cannot be written (see :mod:`agent.pending`)."""
        key, seen = pair_of(observation)
        return self.put(key, seen, seen[0])  # seen[0]: last_seen (indexing is the fast path)
