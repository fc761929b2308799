"""Frame decoding and TCP SYN observations against recorded packets (tests/data/tcp, see its
README) and crafted variants of them.

Expectations come from the addresses and ports in tests/data/tcp/make_captures.py, not
from running the parser; scapy only reads the pcap and, independently of the parser, says
which TCP flags each frame carries.
"""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import pytest
from scapy.layers.inet import TCP
from scapy.layers.l2 import Ether
from scapy.utils import RawPcapReader

from agent.model import DnsAnswer, TcpConnection
from agent.sniffer import dns, errors
from agent.sniffer.errors import DnsParseError, PacketParseError
from agent.sniffer.frames import LINKTYPES, parse_frame

DATA = Path(__file__).resolve().parents[2] / "data"
CAPTURE = DATA / "tcp" / "syn_v4_v6.pcap"


def read_pcap(path: Path) -> tuple[int, list[tuple[bytes, float]]]:
    reader = RawPcapReader(str(path))
    try:
        return reader.linktype, [(bytes(data), meta.sec + meta.usec / 1e6) for data, meta in reader]
    finally:
        reader.close()


LINKTYPE, FRAMES = read_pcap(CAPTURE)


def flags_of(frame: bytes) -> str:
    return str(Ether(frame)[TCP].flags)


def kind(frame: bytes) -> str:
    """What scapy says the segment is."""
    tcp = Ether(frame)[TCP]
    flags = str(tcp.flags)
    if "R" in flags:
        return "rst"
    if "S" in flags:
        return "syn-ack" if "A" in flags else "syn"
    if "F" in flags:
        return "fin"
    return "data" if bytes(tcp.payload) else "ack"


def frames_of(wanted: str) -> list[tuple[bytes, float]]:
    return [(frame, ts) for frame, ts in FRAMES if kind(frame) == wanted]


def conn(client: str, port: int, server: str, server_port: int) -> TcpConnection:
    return TcpConnection(client, port, server, server_port, 0.0)


def without_time(found: list[DnsAnswer | TcpConnection]) -> list[DnsAnswer | TcpConnection]:
    return [dataclasses.replace(o, seen_at=0.0) for o in found]


S4, S6 = "127.0.0.80", "fd00:80::80"
EXPECTED = [
    conn("127.0.0.1", 41001, S4, 8080),
    conn("127.0.0.1", 41002, S4, 9),  # to a closed port: the attempt is still a connection
    conn("::1", 41003, S6, 8080),
    conn("::1", 41004, S6, 9),
]
SYN4, SYN6 = frames_of("syn")[0][0], frames_of("syn")[2][0]


# --------------------------------------------------------------------------- recorded frames


def test_capture_is_ethernet_and_holds_every_kind_of_segment() -> None:
    assert LINKTYPE == 1
    kinds = [kind(frame) for frame, _ in FRAMES]
    assert {k: kinds.count(k) for k in set(kinds)} == {
        "syn": 4,
        "syn-ack": 2,
        "ack": 8,
        "data": 4,
        "fin": 4,
        "rst": 2,
    }


def test_syns_give_one_connection_each() -> None:
    found = [o for frame, ts in FRAMES for o in parse_frame(frame, LINKTYPE, ts)]
    assert without_time(found) == EXPECTED
    assert all(type(o) is TcpConnection for o in found)
    # seen_at is the capture time of the SYN frame, which scapy finds independently.
    assert [o.seen_at for o in found] == [ts for _, ts in frames_of("syn")]


@pytest.mark.parametrize("what", ["syn-ack", "ack", "data", "fin", "rst"])
def test_the_rest_of_a_connection_gives_nothing(what: str) -> None:
    for frame, ts in frames_of(what):
        assert parse_frame(frame, LINKTYPE, ts) == [], flags_of(frame)


def test_syns_to_dns_servers_are_connections_too() -> None:
    # DNS over TCP starts with a handshake to port 53: a real connection, seen in the DNS
    # captures next to the answers (test_sniffer_dns.py checks them one by one).
    linktype, frames = read_pcap(DATA / "dns" / "tcp_eth.pcap")
    found = [o for frame, ts in frames for o in parse_frame(frame, linktype, ts)]
    assert [type(o) for o in found] == [TcpConnection, DnsAnswer]
    assert without_time(found)[0] == conn("127.0.0.1", 40004, "127.0.0.53", 53)


# --------------------------------------------------------------------------- crafted variants


def with_flags(frame: bytes, flags: int) -> bytes:
    l4 = 34 if frame[12:14] == b"\x08\x00" else 54
    return frame[: l4 + 13] + bytes([flags]) + frame[l4 + 14 :]


@pytest.mark.parametrize(
    ("flags", "connects"),
    [
        (0x02, True),  # SYN
        (0xC2, True),  # SYN + ECE + CWR: an ECN-setup SYN (RFC 3168)
        (0x0A, True),  # SYN + PSH
        (0x12, False),  # SYN-ACK
        (0x52, False),  # SYN-ACK + ECE
        (0x10, False),  # ACK
        (0x04, False),  # RST
        (0x00, False),  # no flags at all
    ],
)
def test_syn_without_ack_is_the_only_connection(flags: int, connects: bool) -> None:
    for syn, expected in ((SYN4, EXPECTED[0]), (SYN6, EXPECTED[2])):
        assert without_time(parse_frame(with_flags(syn, flags), 1, 0.0)) == ([expected] if connects else [])


def test_syn_from_port_53_is_only_a_connection() -> None:
    from53 = SYN4[:34] + struct.pack("!H", 53) + SYN4[36:]
    assert without_time(parse_frame(from53, 1, 0.0)) == [conn("127.0.0.1", 53, S4, 8080)]


@pytest.mark.parametrize("linktype", [101, 12, 14])
def test_raw_ip(linktype: int) -> None:
    assert without_time(parse_frame(SYN4[14:], linktype, 0.0)) == EXPECTED[:1]
    assert without_time(parse_frame(SYN6[14:], linktype, 0.0)) == EXPECTED[2:3]


def test_vlan_tag() -> None:
    tagged = SYN6[:12] + b"\x81\x00\x00\x64" + SYN6[12:]
    assert without_time(parse_frame(tagged, 1, 0.0)) == EXPECTED[2:3]


def test_ipv6_extension_header_before_tcp() -> None:
    ip = bytearray(SYN6[14:54])
    inner, ip[6] = ip[6], 60  # destination options, 8 bytes of PadN
    ip[4:6] = struct.pack("!H", len(SYN6) - 54 + 8)
    framed = SYN6[:14] + bytes(ip) + bytes([inner]) + b"\x00\x01\x04\x00\x00\x00\x00" + SYN6[54:]
    assert without_time(parse_frame(framed, 1, 0.0)) == EXPECTED[2:3]


def test_ipv4_fragment_is_skipped() -> None:
    assert parse_frame(SYN4[:20] + b"\x20\x00" + SYN4[22:], 1, 0.0) == []


# --------------------------------------------------------------------------- malformed frames


def shortened(frame: bytes, l4_bytes: int) -> bytes:
    """The frame with only ``l4_bytes`` of its TCP header, the IP length telling the same."""
    if frame[12:14] == b"\x08\x00":
        ip = bytearray(frame[14:34])
        ip[2:4] = struct.pack("!H", 20 + l4_bytes)
        return frame[:14] + bytes(ip) + frame[34 : 34 + l4_bytes]
    ip = bytearray(frame[14:54])
    ip[4:6] = struct.pack("!H", l4_bytes)
    return frame[:14] + bytes(ip) + frame[54 : 54 + l4_bytes]


@pytest.mark.parametrize("l4_bytes", [0, 4, 13, 19])
def test_truncated_tcp_header(l4_bytes: int) -> None:
    for syn in (SYN4, SYN6):
        with pytest.raises(PacketParseError, match="truncated TCP header") as raised:
            parse_frame(shortened(syn, l4_bytes), 1, 0.0)
        assert type(raised.value) is PacketParseError


@pytest.mark.parametrize("cut", [1, 13, 20, 33, 40, 53, 60, -1])
def test_frames_cut_short(cut: int) -> None:
    for syn in (SYN4, SYN6):
        with pytest.raises(PacketParseError) as raised:
            parse_frame(syn[:cut], 1, 0.0)
        assert type(raised.value) is PacketParseError


@pytest.mark.parametrize("offset", [0x00, 0x40, 0xF0])  # 0 and 16 bytes: < 20; 60 bytes: > the SYN
def test_tcp_data_offset_out_of_bounds(offset: int) -> None:
    for syn, l4 in ((SYN4, 34), (SYN6, 54)):
        bad = syn[: l4 + 12] + bytes([offset]) + syn[l4 + 13 :]
        with pytest.raises(PacketParseError, match="data offset"):
            parse_frame(bad, 1, 0.0)


def test_bad_ip_headers() -> None:
    with pytest.raises(PacketParseError, match="bad IPv4 header"):
        parse_frame(SYN4[:14] + b"\x44" + SYN4[15:], 1, 0.0)  # IHL 4: < 20 bytes
    with pytest.raises(PacketParseError, match="bad IPv6 header"):
        parse_frame(SYN6[:14] + b"\x40" + SYN6[15:], 1, 0.0)
    with pytest.raises(PacketParseError, match="IPv6 payload length"):
        parse_frame(SYN6[:18] + b"\xff\xff" + SYN6[20:], 1, 0.0)


def test_unsupported_link_type() -> None:
    assert 105 not in LINKTYPES
    with pytest.raises(PacketParseError, match="link type"):
        parse_frame(SYN4, 105, 0.0)


# --------------------------------------------------------------------------- errors


def test_error_tree() -> None:
    assert issubclass(PacketParseError, ValueError)
    assert issubclass(DnsParseError, PacketParseError)
    assert dns.DnsParseError is errors.DnsParseError  # re-exported for compatibility


@pytest.mark.parametrize(
    ("keep", "why"),
    [(42 + 15, "truncated DNS message"), (-1, "past the end of the message")],
)
def test_malformed_dns_in_a_good_frame_is_a_dns_error(keep: int, why: str) -> None:
    linktype, frames = read_pcap(DATA / "dns" / "udp_cname_chain_eth.pcap")
    response = next(f for f, _ in frames if f[34:36] == b"\x00\x35")
    cut = bytearray(response[:keep])  # the message is cut short, the IP and UDP lengths agree
    cut[16:18] = struct.pack("!H", len(cut) - 14)
    cut[38:40] = struct.pack("!H", len(cut) - 34)
    with pytest.raises(DnsParseError, match=why):
        parse_frame(bytes(cut), linktype, 0.0)
