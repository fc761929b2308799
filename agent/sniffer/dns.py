"""DNS messages → :class:`~agent.model.DnsAnswer` observations.

``frames.py`` decodes each captured frame (link, IP, UDP/TCP) and hands the DNS payload of
a response from port 53 here; the answers go to the collector (``pairs.py``), whose
reports (``reports.py``, ``reporter.py``) carry them to the mapper, where the resolver turns
"client IP asked for name N and got IPs X" into edges. This module is pure: no I/O, no scapy,
no global state, so it can be fed recorded packets in tests and run on every DNS response a
node sees.

Speed matters here (every DNS response on the node passes through), so it is hand-written
with ``struct`` and slicing instead of a dissection library, which is ~50x slower.

Every malformed or truncated message raises :class:`DnsParseError` and nothing else;
messages that are not successful responses (queries, errors) give an empty list.
"""

from __future__ import annotations

import dataclasses
import socket
import struct
from collections.abc import Callable

from agent.model import DnsAnswer
from agent.sniffer.errors import DnsParseError

__all__ = ["DnsParseError", "parse_dns_message", "parse_tcp_dns_payload"]

# Fixed-size headers are read with one unpack each; struct.error (like IndexError) means
# the message ended early and becomes DnsParseError at the entry points.
_DNS_HEADER = struct.Struct("!2xHHH4x")  # flags, qdcount, ancount (ns/ar are not read)
_RR = struct.Struct("!HHIH")  # type, class, ttl, rdlength
_ntoa = socket.inet_ntoa
_ntop = socket.inet_ntop
_AF_INET6 = socket.AF_INET6

# Name bytes that can be shown as-is; anything else (and a "." or "\" inside a label) is
# written as RFC 1035 "\DDD", so that two different wire names never print the same.
_PLAIN = bytes(c for c in range(0x21, 0x7F) if c not in b".\\")
_DOTS = [b"." * max(0, n - 1) for n in range(128)]  # the dots of a name of n labels
_IS_LABEL = bytes(1 if 0 < n < 0x40 else 0 for n in range(256))  # length byte of a label
_MAX_POINTERS = 127  # one per label at most in a 255-byte name; bounds the recursion
_TTL_NEGATIVE = 0x7FFFFFFF  # RFC 2181 8: a TTL with the top bit set means zero

_Seen = dict[int, tuple[bytes, list[bytes]]]
_MakeAnswer = Callable[[str, int, str, str, tuple[str, ...], float, tuple[str, ...], int], DnsAnswer]
_ANSWER_FIELDS = ("client_ip", "client_port", "server_ip", "qname", "ips", "seen_at", "cnames", "ttl")


def _answer_maker() -> _MakeAnswer:
    """A faster DnsAnswer constructor. The frozen dataclass's ``__init__`` sets each field
    through ``object.__setattr__``, which is ~15% of a whole parse; writing the slots
    directly builds the same object in half the time. Only while DnsAnswer has exactly these
    fields and no ``__post_init__``; otherwise the class itself is used."""
    fields = tuple(f.name for f in dataclasses.fields(DnsAnswer))
    if fields != _ANSWER_FIELDS or hasattr(DnsAnswer, "__post_init__"):
        return DnsAnswer
    new = object.__new__
    s0, s1, s2, s3, s4, s5, s6, s7 = (getattr(DnsAnswer, f).__set__ for f in fields)

    def make(  # noqa: PLR0917 - the dataclass's own positional signature
        client_ip: str,
        client_port: int,
        server_ip: str,
        qname: str,
        ips: tuple[str, ...],
        seen_at: float,
        cnames: tuple[str, ...],
        ttl: int,
    ) -> DnsAnswer:
        answer: DnsAnswer = new(DnsAnswer)
        s0(answer, client_ip)
        s1(answer, client_port)
        s2(answer, server_ip)
        s3(answer, qname)
        s4(answer, ips)
        s5(answer, seen_at)
        s6(answer, cnames)
        s7(answer, ttl)
        return answer

    return make


_make_answer = _answer_maker()


def _escape(labels: list[bytes]) -> bytes:
    return b".".join(
        b"".join(bytes((c,)) if c in _PLAIN else b"\\%03d" % c for c in label.lower()) for label in labels
    )


def _suffix_of_seen(msg: bytes, target: int, seen: _Seen) -> list[bytes] | None:
    """The labels at ``target`` if it starts a label of one of the first names read: where
    a pointer that is not to a whole name usually goes (a CNAME target in the question's
    zone). Walking a few length bytes is ~4x cheaper than reading the name again. Only the
    first names are tried, so a message of thousands of names costs no quadratic time."""
    for tried, (start, (_, labels)) in enumerate(seen.items()):
        if tried == 4:
            break
        off, i = start, 0
        while off < target:
            n = msg[off]
            if not 0 < n < 0x40:
                break
            off += n + 1
            i += 1
        if off == target:
            return labels[i:]
    return None


def _read_name(msg: bytes, off: int, seen: _Seen, depth: int = 0) -> tuple[bytes, int]:
    """Read the (possibly compressed) name at ``off``: its presentation form and the offset
    after it. Bounds are checked by the IndexError of reading the byte after each label.

    ``seen`` maps offsets of names read in this message to (name, labels): a pointer to a
    name already read (the usual one, to the question) is one lookup, not a re-read.
    """
    start = off
    labels: list[bytes] = []
    is_label = _IS_LABEL
    n = msg[off]
    while is_label[n]:
        off += n + 1
        labels.append(msg[off - n : off])
        n = msg[off]
    if n:
        if n < 0xC0:
            raise DnsParseError("unsupported label type")  # 0x40/0x80: obsolete, RFC 6891
        target = ((n & 0x3F) << 8) | msg[off + 1]
        # Labels are read forwards from `start`, so a pointer to `start` or later would loop.
        if target >= start:
            raise DnsParseError("compression pointer does not point backwards")
        hit = seen.get(target)
        if hit is not None:
            labels += hit[1]
        else:
            tail = _suffix_of_seen(msg, target, seen)
            if tail is None:
                if depth >= _MAX_POINTERS:
                    raise DnsParseError("too many compression pointers")
                _read_name(msg, target, seen, depth + 1)
                tail = seen[target][1]
            labels += tail
        off += 1  # the pointer's second byte; the terminator's below
    off += 1
    name = b".".join(labels).lower()
    if len(name) > 253:
        raise DnsParseError("name longer than 255 bytes")
    # One C-speed check: without odd bytes, only the dots between labels are left. Other
    # names (odd bytes, or a "." inside a label) are escaped.
    if name.translate(None, _PLAIN) != _DOTS[len(labels)]:
        name = _escape(labels)
    seen[start] = (name, labels)
    return name, off


# _message and _tcp_messages are also frames.py's fast path, called without a wrapper:
# there _message's IndexError/struct.error becomes DnsParseError as in parse_dns_message.
def _message(  # noqa: PLR0912, PLR0915 - one function: a call is ~3% of a parse
    payload: bytes, client_ip: str, client_port: int, server_ip: str, seen_at: float
) -> list[DnsAnswer]:
    flags, qdcount, ancount = _DNS_HEADER.unpack_from(payload)
    if flags & 0xF80F != 0x8000:  # QR=1 (response), opcode QUERY, RCODE NOERROR
        return []
    end = len(payload)
    seen: _Seen = {}
    off = 12
    qnames: list[bytes] = []
    for _ in range(qdcount):
        qname, off = _read_name(payload, off, seen)
        qnames.append(qname)
        off += 4  # qtype, qclass: the answers say what was found
    if off > end:
        raise DnsParseError("truncated question")
    cname_of: dict[bytes, tuple[bytes, int]] = {}
    addrs: dict[bytes, tuple[list[str], int]] = {}
    for _ in range(ancount):
        n = payload[off]
        # Inline fast path for the common owner name, a pointer to a name already read.
        hit = seen.get(((n & 0x3F) << 8) | payload[off + 1]) if n >= 0xC0 else None
        if hit is not None:
            owner = hit[0]
            off += 2
        else:
            owner, off = _read_name(payload, off, seen)
        rtype, rclass, ttl, rdlen = _RR.unpack_from(payload, off)
        off += 10
        rdend = off + rdlen
        if rdend > end:
            raise DnsParseError("record data runs past the end of the message")
        if rclass == 1 and rtype in (1, 28, 5):  # IN A, AAAA, CNAME
            if ttl > _TTL_NEGATIVE:
                ttl = 0
            if rtype == 5:
                target, name_end = _read_name(payload, off, seen)
                if name_end != rdend:
                    raise DnsParseError("CNAME name does not fill its record")
                cname_of.setdefault(owner, (target, ttl))  # a second CNAME is illegal anyway
            else:
                if rdlen != (4 if rtype == 1 else 16):
                    raise DnsParseError("address record of the wrong length")
                ip = _ntoa(payload[off:rdend]) if rtype == 1 else _ntop(_AF_INET6, payload[off:rdend])
                have = addrs.get(owner)
                if have is None:
                    addrs[owner] = ([ip], ttl)
                else:
                    have[0].append(ip)
                    if ttl < have[1]:
                        addrs[owner] = (have[0], ttl)
        off = rdend
    if not addrs:
        return []
    out: list[DnsAnswer] = []
    for qname in qnames:
        name, ttl, chain = qname, _TTL_NEGATIVE, []
        while name in cname_of:
            name, cname_ttl = cname_of[name]
            ttl = min(ttl, cname_ttl)
            chain.append(name.decode())
            if len(chain) > len(cname_of):
                raise DnsParseError("CNAME loop")
        found = addrs.get(name)
        if found is not None:
            ips = found[0]
            out.append(
                _make_answer(
                    client_ip,
                    client_port,
                    server_ip,
                    qname.decode(),
                    tuple(dict.fromkeys(ips)) if len(ips) > 1 else (ips[0],),
                    seen_at,
                    tuple(chain),
                    ttl if ttl < found[1] else found[1],
                )
            )
    return out


def parse_dns_message(
    payload: bytes, client_ip: str, client_port: int, server_ip: str, seen_at: float
) -> list[DnsAnswer]:
    """Parse one DNS message; one :class:`DnsAnswer` per question whose name resolved.

    Only successful responses count (QR=1, opcode QUERY, RCODE 0): queries, NXDOMAIN and
    errors give ``[]``. A question gives an answer only when its CNAME chain ends in A/AAAA
    records: a NODATA reply says nothing about where the client will connect. ``ttl`` is
    the smallest TTL along the chain, i.e. how long the client may use the addresses.
    """
    try:
        return _message(payload, client_ip, client_port, server_ip, seen_at)
    except (IndexError, struct.error) as exc:
        raise DnsParseError("truncated DNS message") from exc


def parse_tcp_dns_payload(
    payload: bytes, client_ip: str, client_port: int, server_ip: str, seen_at: float
) -> list[DnsAnswer]:
    """Parse the data of one TCP segment from a DNS server: length-prefixed messages."""
    return _tcp_messages(payload, 0, len(payload), client_ip, client_port, server_ip, seen_at)


def _tcp_messages(  # noqa: PLR0917 - the hot path's positional call from frames.py
    buf: bytes, data: int, end: int, client_ip: str, client_port: int, server_ip: str, seen_at: float
) -> list[DnsAnswer]:
    """The DNS messages in ``buf[data:end]``, the data of a TCP segment. DNS over TCP
    prefixes each message with its length (RFC 1035 4.2.2); a server may put several in
    one segment. A message split across segments needs stream reassembly, which this parser
    does not do: such a segment is reported as malformed."""
    out: list[DnsAnswer] = []
    try:
        while data < end:
            if data + 2 > end:
                raise DnsParseError("truncated TCP length prefix")
            mlen = (buf[data] << 8) | buf[data + 1]
            data += 2
            if data + mlen > end:
                raise DnsParseError("DNS message longer than the TCP segment")
            out += _message(buf[data : data + mlen], client_ip, client_port, server_ip, seen_at)
            data += mlen
    except (IndexError, struct.error) as exc:
        raise DnsParseError("truncated DNS message") from exc
    return out
