"""Captured frames → :class:`~agent.model.DnsAnswer` and :class:`~agent.model.TcpConnection`.

Bytes come from the sniffer's libpcap handle (``capture.py``): one captured frame plus the
handle's link type and the frame's timestamp. Observations go to the collector
(``pairs.py``), whose reports carry them to the mapper. The capture's one BPF filter passes DNS
over UDP and TCP, IPv4 TCP segments with SYN set and ACK clear, and every IPv6 TCP segment
(BPF cannot read TCP flags behind an IPv6 header); :func:`parse_frame` sorts them out in one
pass over each frame:

- UDP or TCP from port 53 (a DNS response): its answers, parsed by ``dns.py``;
- TCP with SYN set and ACK clear, on any port (a connection attempt, DNS over TCP's own
  handshake included): one :class:`TcpConnection` from the sender to the receiver;
- anything else (other protocols, DNS queries, the rest of a TCP connection): ``[]``.

This module is pure: no I/O, no scapy, no global state. Speed matters (every frame the
filter passes comes through here), so it is hand-written with ``struct`` and indexing.

A malformed or truncated frame raises :class:`PacketParseError`; a malformed DNS message
in a well-formed frame raises its subclass :class:`DnsParseError`. Nothing else is raised.
"""

from __future__ import annotations

import socket
import struct

from agent.model import DnsAnswer, TcpConnection
from agent.sniffer.dns import _message, _tcp_messages
from agent.sniffer.errors import DnsParseError, PacketParseError

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
_SYN, _ACK = 0x02, 0x10

# Fixed-size headers are read with one unpack each; struct.error (like IndexError) means
# the frame ended early and becomes PacketParseError in parse_frame.
_IPV4 = struct.Struct("!BxHxxHxB2x4s4s")  # version+IHL, total length, frag, proto, src, dst
_IPV6 = struct.Struct("!B3xHBx16s16s")  # version, payload length, next header, src, dst
_UDP = struct.Struct("!HHH")  # source port, destination port, length
_TCP = struct.Struct("!HH8xBB")  # source port, destination port, data offset, flags
_ntop = socket.inet_ntop
_AF_INET, _AF_INET6 = socket.AF_INET, socket.AF_INET6


def parse_frame(frame: bytes, linktype: int, seen_at: float) -> list[DnsAnswer | TcpConnection]:
    """Parse one captured frame: the answers of a DNS response, or the connection a TCP SYN
    opens, or ``[]``.

    A DNS answer's client is the response's destination (the response goes back to who
    asked); a connection's client is the SYN's sender. IP fragments are skipped: without
    reassembly their headers and DNS messages cannot be read whole.
    """
    try:
        return _frame(frame, linktype, seen_at)
    except (IndexError, struct.error) as exc:
        raise PacketParseError("truncated frame") from exc


def _frame(  # noqa: PLR0911, PLR0912, PLR0915 - one function: each call is ~3% of a parse
    frame: bytes, linktype: int, seen_at: float
) -> list[DnsAnswer | TcpConnection]:
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
        raise PacketParseError(f"unsupported link type {linktype}")

    size = len(frame)
    if ethertype == _ETH_IPV4:
        vihl, total, frag, proto, src, dst = _IPV4.unpack_from(frame, off)
        ihl = (vihl & 0x0F) * 4
        if vihl >> 4 != 4 or ihl < 20:
            raise PacketParseError("bad IPv4 header")
        if total == 0:
            total = size - off  # TCP segmentation offload: the kernel leaves it to the NIC
        end = off + total  # trims Ethernet padding, which would read as TCP payload
        if total < ihl or end > size:
            raise PacketParseError("IPv4 length out of bounds")
        if frag & 0x3FFF:  # more-fragments or an offset
            return []
        l4 = off + ihl
        family = _AF_INET
    elif ethertype == _ETH_IPV6:
        vtc, plen, proto, src, dst = _IPV6.unpack_from(frame, off)
        if vtc >> 4 != 6:
            raise PacketParseError("bad IPv6 header")
        l4 = off + 40
        end = l4 + plen if plen else size  # 0: a jumbogram, its length is in hop-by-hop
        if end > size:
            raise PacketParseError("IPv6 payload length out of bounds")
        while proto in _IPV6_SKIP:
            if l4 + 8 > end:
                raise PacketParseError("truncated IPv6 extension header")
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
            raise PacketParseError("truncated UDP header")
        sport, dport, ulen = _UDP.unpack_from(frame, l4)
        if sport != 53:
            return []
        if ulen < 8 or l4 + ulen > end:
            raise PacketParseError("UDP length out of bounds")
        try:
            return _message(  # type: ignore[return-value]  # list is invariant; never appended to
                frame[l4 + 8 : l4 + ulen], _ntop(family, dst), dport, _ntop(family, src), seen_at
            )
        except (IndexError, struct.error) as exc:
            raise DnsParseError("truncated DNS message") from exc
    if proto != 6:  # TCP
        return []
    if l4 + 20 > end:
        raise PacketParseError("truncated TCP header")
    sport, dport, offset, flags = _TCP.unpack_from(frame, l4)
    syn = flags & (_SYN | _ACK) == _SYN
    if not syn and sport != 53:
        return []  # most IPv6 TCP segments: the filter cannot drop them
    data = l4 + (offset >> 4) * 4
    if data < l4 + 20 or data > end:
        raise PacketParseError("TCP data offset out of bounds")
    if syn:
        return [TcpConnection(_ntop(family, src), sport, _ntop(family, dst), dport, seen_at)]
    return _tcp_messages(  # type: ignore[return-value]  # as above
        frame, data, end, _ntop(family, dst), dport, _ntop(family, src), seen_at
    )
