"""DNS responses on the wire → :class:`~agent.model.DnsAnswer` observations.

Bytes come from the sniffer's libpcap capture (``capture.py``): one captured frame plus the
capture's link type and timestamp. Observations go to the reporter (``reporter.py``), which
batches them to the mapper, where the resolver turns "client IP asked for name N and got
IPs X" into edges. This module is pure: no I/O, no scapy, no global state, so it can be fed
recorded packets in tests and run on every DNS response a node sees.

Speed matters here (every DNS response on the node passes through), so it is hand-written
with ``struct`` and slicing instead of a dissection library, which is ~50x slower.

Every malformed or truncated input raises :class:`DnsParseError` and nothing else; frames
that are simply not DNS responses (other protocols, queries, errors) give an empty list.
"""

from __future__ import annotations

import dataclasses
import socket
import struct
from collections.abc import Callable

from agent.model import DnsAnswer

__all__ = ["LINKTYPES", "DnsParseError", "parse_dns_message", "parse_frame"]


class DnsParseError(ValueError):
    """The bytes are not a well-formed frame/DNS message (truncated, out of bounds, looping)."""


# libpcap link types (https://www.tcpdump.org/linktypes.html) this parser understands; the
# capture layer checks its handle's link type against this once instead of per frame.
DLT_EN10MB = 1
DLT_LINUX_SLL = 113
DLT_LINUX_SLL2 = 276
_DLT_RAW = frozenset({101, 12, 14})  # LINKTYPE_RAW, and the DLT_RAW values of other OSes
LINKTYPES = frozenset({DLT_EN10MB, DLT_LINUX_SLL, DLT_LINUX_SLL2}) | _DLT_RAW

_ETH_IPV4 = 0x0800
_ETH_IPV6 = 0x86DD
_ETH_VLAN = frozenset({0x8100, 0x88A8})  # 802.1Q, and 802.1ad whose outer tag looks the same
_IPV6_SKIP = frozenset({0, 43, 60, 51})  # hop-by-hop, routing, destination options, AH
_IPV6_FRAGMENT = 44

# Fixed-size headers are read with one unpack each; struct.error (like IndexError) means
# the frame ended early and becomes DnsParseError at the public entry points.
_DNS_HEADER = struct.Struct("!2xHHH4x")  # flags, qdcount, ancount (ns/ar are not read)
_RR = struct.Struct("!HHIH")  # type, class, ttl, rdlength
_IPV4 = struct.Struct("!BxHxxHxB2x4s4s")  # version+IHL, total length, frag, proto, src, dst
_IPV6 = struct.Struct("!B3xHBx16s16s")  # version, payload length, next header, src, dst
_PORTS = struct.Struct("!HH")
_UDP = struct.Struct("!HHH")  # source port, destination port, length
_ntoa = socket.inet_ntoa
_ntop = socket.inet_ntop
_AF_INET, _AF_INET6 = socket.AF_INET, socket.AF_INET6

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


def parse_frame(frame: bytes, linktype: int, seen_at: float) -> list[DnsAnswer]:
    """Parse one captured frame; DNS responses (UDP or TCP from port 53) give answers.

    The client is the response's destination (the response goes back to who asked). IP
    fragments are skipped: without reassembly their DNS message cannot be read whole.
    """
    try:
        return _frame(frame, linktype, seen_at)
    except (IndexError, struct.error) as exc:
        raise DnsParseError("truncated frame") from exc


def _frame(frame: bytes, linktype: int, seen_at: float) -> list[DnsAnswer]:  # noqa: PLR0911, PLR0912, PLR0915
    # One function on purpose: each extra call costs ~3% of a parse.
    if linktype == DLT_EN10MB:
        ethertype = (frame[12] << 8) | frame[13]
        off = 14
        if ethertype in _ETH_VLAN:  # one tag: the node's own traffic is rarely double-tagged
            ethertype = (frame[16] << 8) | frame[17]
            off = 18
    elif linktype == DLT_LINUX_SLL:
        ethertype = (frame[14] << 8) | frame[15]
        off = 16
    elif linktype == DLT_LINUX_SLL2:
        ethertype = (frame[0] << 8) | frame[1]
        off = 20
    elif linktype in _DLT_RAW:
        version = frame[0] >> 4
        ethertype = _ETH_IPV4 if version == 4 else _ETH_IPV6 if version == 6 else 0
        off = 0
    else:
        raise DnsParseError(f"unsupported link type {linktype}")

    size = len(frame)
    if ethertype == _ETH_IPV4:
        vihl, total, frag, proto, src, dst = _IPV4.unpack_from(frame, off)
        ihl = (vihl & 0x0F) * 4
        if vihl >> 4 != 4 or ihl < 20:
            raise DnsParseError("bad IPv4 header")
        if total == 0:
            total = size - off  # TCP segmentation offload: the kernel leaves it to the NIC
        end = off + total  # trims Ethernet padding, which would read as TCP payload
        if total < ihl or end > size:
            raise DnsParseError("IPv4 length out of bounds")
        if frag & 0x3FFF:  # more-fragments or an offset
            return []
        l4 = off + ihl
        family = _AF_INET
    elif ethertype == _ETH_IPV6:
        vtc, plen, proto, src, dst = _IPV6.unpack_from(frame, off)
        if vtc >> 4 != 6:
            raise DnsParseError("bad IPv6 header")
        l4 = off + 40
        end = l4 + plen if plen else size  # 0: a jumbogram, its length is in hop-by-hop
        if end > size:
            raise DnsParseError("IPv6 payload length out of bounds")
        while proto in _IPV6_SKIP:
            if l4 + 8 > end:
                raise DnsParseError("truncated IPv6 extension header")
            hlen = (frame[l4 + 1] + 2) * 4 if proto == 51 else (frame[l4 + 1] + 1) * 8
            proto = frame[l4]
            l4 += hlen  # each header is >= 8 bytes, so this loop ends with the data
        if proto == _IPV6_FRAGMENT:
            return []
        family = _AF_INET6
    else:
        return []

    if proto == 17:  # UDP
        if l4 + 8 > end:
            raise DnsParseError("truncated UDP header")
        sport, dport, ulen = _UDP.unpack_from(frame, l4)
        if sport != 53:
            return []
        if ulen < 8 or l4 + ulen > end:
            raise DnsParseError("UDP length out of bounds")
        return _message(frame[l4 + 8 : l4 + ulen], _ntop(family, dst), dport, _ntop(family, src), seen_at)
    if proto != 6:  # TCP
        return []
    if l4 + 20 > end:
        raise DnsParseError("truncated TCP header")
    sport, dport = _PORTS.unpack_from(frame, l4)
    if sport != 53:
        return []
    data = l4 + (frame[l4 + 12] >> 4) * 4
    if data < l4 + 20 or data > end:
        raise DnsParseError("TCP data offset out of bounds")
    client, server = _ntop(family, dst), _ntop(family, src)
    out: list[DnsAnswer] = []
    # DNS over TCP prefixes each message with its length (RFC 1035 4.2.2); a server may
    # put several in one segment. A message split across segments needs stream
    # reassembly, which this parser does not do: such a segment is reported as malformed.
    while data < end:
        if data + 2 > end:
            raise DnsParseError("truncated TCP length prefix")
        mlen = (frame[data] << 8) | frame[data + 1]
        data += 2
        if data + mlen > end:
            raise DnsParseError("DNS message longer than the TCP segment")
        out += _message(frame[data : data + mlen], client, dport, server, seen_at)
        data += mlen
    return out
