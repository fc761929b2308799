"""What the AWS DNS forwarder does with each query, and the answers it makes itself: pure, no I/O.

Data comes in as a client's parsed query (dnslib :class:`~dnslib.DNSRecord`) or its raw bytes, the
proxy's state (its IPv4 address while healthy, None while down) and the AWS domains; it goes out as
a :class:`Route` and as wire bytes that :mod:`agent.aws.dns_forwarder` sends back to the client.

* ``A`` for a name under the AWS domains, proxy healthy: the proxy's address (:func:`proxy_reply`),
  so the pod's SDK connects to the proxy, which sees the call and forwards it.
* ``AAAA`` for such a name, proxy healthy: NOERROR with no records (:func:`empty_reply`). The proxy
  has no IPv6 address; an empty answer makes clients (getaddrinfo, the SDKs' HTTP stacks) use the
  A answer, whereas forwarding the real AAAA would let dual-stack clients bypass the proxy. No SOA is
  added, so no resolver caches the empty answer (RFC 2308 §5) beyond this query.
* Everything else (other names, other types such as TXT or CNAME even for AWS names, every AWS name
  while the proxy is down: fail open) is forwarded to the upstream unchanged.

Also here: the error answers (:func:`formerr_reply` from raw bytes whose header is readable,
:func:`servfail_reply`), the reading of ``resolv.conf`` (:func:`parse_resolv_conf`) and of the
proxy's own address from the upstream's answer (:func:`search_names`, :func:`first_ipv4`).
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import struct
from collections.abc import Iterable

from dnslib import CLASS, OPCODE, QTYPE, RCODE, RR, A, DNSError, DNSHeader, DNSLabel, DNSRecord

HEADER = struct.Struct("!HHHHHH")  # id, flags, qdcount, ancount, nscount, arcount
QR = 0x8000
RA = 0x0080
TC = 0x0200

Domains = tuple[tuple[bytes, ...], ...]  # each domain as its lower-case labels


class Route(enum.Enum):
    PROXY = "proxy"  # A for an AWS name: answer with the proxy's address
    EMPTY = "empty"  # AAAA for an AWS name: NOERROR, no records
    FORWARD = "forward"  # anything else: ask the upstream


def domain_labels(domains: Iterable[str]) -> Domains:
    """``("amazonaws.com",)`` → ``((b"amazonaws", b"com"),)``: case and a trailing dot ignored."""
    return tuple(tuple(label.lower() for label in DNSLabel(domain.strip()).label) for domain in domains)


def in_domains(name: DNSLabel | str, domains: Domains) -> bool:
    """Whether ``name`` is one of ``domains`` or under one, comparing whole labels without case:
    ``s3.amazonaws.com`` and ``amazonaws.com`` are under ``amazonaws.com``, ``notamazonaws.com``
    is not."""
    labels = tuple(label.lower() for label in DNSLabel(name).label)
    return any(domain and labels[-len(domain) :] == domain for domain in domains)


def route(query: DNSRecord, proxy_healthy: bool, domains: Domains) -> Route:
    """What to do with one client query (already parsed; never a response)."""
    if not proxy_healthy or query.header.opcode != OPCODE.QUERY or len(query.questions) != 1:
        return Route.FORWARD
    question = query.questions[0]
    if question.qclass != CLASS.IN or not in_domains(question.qname, domains):
        return Route.FORWARD
    if question.qtype == QTYPE.A:
        return Route.PROXY
    if question.qtype == QTYPE.AAAA:
        return Route.EMPTY
    return Route.FORWARD


def _reply(query: DNSRecord, rcode: int = RCODE.NOERROR) -> DNSRecord:
    # Not authoritative (the names are AWS's), recursion available as from any cluster resolver.
    header = DNSHeader(
        id=query.header.id, qr=1, opcode=query.header.opcode, rd=query.header.rd, ra=1, rcode=rcode
    )
    return DNSRecord(header, questions=list(query.questions))


def proxy_reply(query: DNSRecord, address: str, ttl: int) -> bytes:
    """The answer to an AWS name's A query: the proxy's IPv4 ``address`` for ``ttl`` seconds, under
    the question's own spelling of the name (clients using 0x20 case randomisation compare it)."""
    reply = _reply(query)
    reply.add_answer(RR(query.q.qname, QTYPE.A, CLASS.IN, ttl, A(address)))
    return bytes(reply.pack())


def empty_reply(query: DNSRecord) -> bytes:
    """NOERROR with no records (an AWS name's AAAA while the proxy answers its A)."""
    return bytes(_reply(query).pack())


def servfail_reply(query: DNSRecord) -> bytes:
    """SERVFAIL with the question echoed (the upstream did not answer in time)."""
    return bytes(_reply(query, RCODE.SERVFAIL).pack())


def formerr_reply(data: bytes) -> bytes | None:
    """FORMERR for a query whose body cannot be parsed: the ID, opcode and RD echoed from its header,
    no question. None when there is no whole header to echo, or it is a response's (QR set: answering
    a response could loop between two servers): the caller drops it."""
    if len(data) < HEADER.size:
        return None
    ident, flags = struct.unpack_from("!HH", data)
    if flags & QR:
        return None
    return HEADER.pack(ident, QR | (flags & 0x7900) | RA | RCODE.FORMERR, 0, 0, 0, 0)  # opcode + RD


def with_id(response: bytes, ident: int) -> bytes:
    """The upstream's ``response`` carrying the client query's ID."""
    return struct.pack("!H", ident) + response[2:]


def with_ttl_at_most(response: bytes, ttl: int) -> bytes:
    """The upstream's ``response`` with no record's TTL above ``ttl``; unchanged if it cannot be
    parsed (the client gets what the upstream said rather than nothing)."""
    try:
        record = DNSRecord.parse(response)
    except DNSError:
        return response
    changed = False
    for rr in (*record.rr, *record.auth, *record.ar):
        if rr.ttl > ttl and rr.rtype != QTYPE.OPT:
            rr.ttl, changed = ttl, True
    return bytes(record.pack()) if changed else response


def is_truncated(response: bytes) -> bool:
    return len(response) >= HEADER.size and bool(struct.unpack_from("!H", response, 2)[0] & TC)


@dataclasses.dataclass(frozen=True, slots=True)
class ResolvConf:
    """What the forwarder reads from a ``resolv.conf``: the upstream and how to expand short names."""

    nameservers: tuple[str, ...] = ()
    search: tuple[str, ...] = ()
    ndots: int = 1


def parse_resolv_conf(text: str) -> ResolvConf:
    """``nameserver``, ``search`` (the last one wins, as in glibc) and ``options ndots:N``; comments
    and everything else ignored."""
    nameservers: list[str] = []
    search: tuple[str, ...] = ()
    ndots = 1
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(words) >= 2 and words[0] == "nameserver":
            nameservers.append(words[1])
        elif words and words[0] in {"search", "domain"}:
            search = tuple(words[1:])
        elif words and words[0] == "options":
            for option in words[1:]:
                key, _, value = option.partition(":")
                if key == "ndots" and value.isdigit():
                    ndots = min(int(value), 15)  # glibc's cap
    return ResolvConf(tuple(nameservers), search, ndots)


def upstream_address(nameserver: str) -> str:
    """A ``resolv.conf`` nameserver as the ``host:port`` of its DNS service (port 53)."""
    host = nameserver.split("%", 1)[0]  # an IPv6 zone index is not part of the address
    return f"[{host}]:53" if ":" in host else f"{host}:53"


def search_names(host: str, conf: ResolvConf) -> tuple[str, ...]:
    """The names a stub resolver would try for ``host``, in order: with fewer dots than ``ndots``,
    each search domain appended first (a Service name such as ``network-mapper-aws-proxy`` resolves
    in the forwarder's own namespace), then the name itself; a trailing dot means exactly that name."""
    if host.endswith("."):
        return (host,)
    expanded = tuple(f"{host}.{domain.rstrip('.')}." for domain in conf.search)
    as_is = (f"{host}.",)
    return expanded + as_is if host.count(".") < conf.ndots else as_is + expanded


def first_ipv4(response: DNSRecord) -> str | None:
    """The first A record's address in an answer (a recursive resolver puts any CNAME chain first)."""
    if response.header.rcode != RCODE.NOERROR:
        return None
    for record in response.rr:
        if record.rtype == QTYPE.A:
            return str(ipaddress.IPv4Address(str(record.rdata)))
    return None
