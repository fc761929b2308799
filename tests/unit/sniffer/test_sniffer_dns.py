"""The DNS parser, through frames.parse_frame, against recorded packets (tests/data/dns, see
its README) and crafted edge cases.

Expectations come from the zone in make_captures.py and the fixed client/server addresses
used there, not from running the parser; scapy only reads the pcap files and, independently
of the parser, says which frames are DNS responses and which are TCP SYNs. The DNS-over-TCP
captures hold the client's handshake too: its SYN is a TcpConnection, checked here as well.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import struct
from pathlib import Path
from typing import TypeVar

import pytest
from dnslib import AAAA, CNAME, QTYPE, RR, A, DNSRecord
from scapy.layers.dns import DNS
from scapy.layers.inet import TCP, UDP
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Ether
from scapy.packet import Packet
from scapy.utils import RawPcapReader

from agent.model import DnsAnswer, TcpConnection
from agent.sniffer import dns as dns_module
from agent.sniffer.dns import DnsParseError, parse_dns_message, parse_tcp_dns_payload
from agent.sniffer.errors import PacketParseError
from agent.sniffer.frames import LINKTYPES, parse_frame

DATA = Path(__file__).resolve().parents[2] / "data" / "dns"
PCAPS = sorted(p.name for p in DATA.glob("*.pcap"))


def read_pcap(name: str) -> tuple[int, list[tuple[bytes, float]]]:
    reader = RawPcapReader(str(DATA / name))
    try:
        frames = [(bytes(data), meta.sec + meta.usec / 1e6) for data, meta in reader]
        return reader.linktype, frames
    finally:
        reader.close()


def observations(name: str) -> list[DnsAnswer | TcpConnection]:
    linktype, frames = read_pcap(name)
    return [o for frame, ts in frames for o in parse_frame(frame, linktype, ts)]


def answers(name: str) -> list[DnsAnswer]:
    return [o for o in observations(name) if isinstance(o, DnsAnswer)]


def connections(name: str) -> list[TcpConnection]:
    return [o for o in observations(name) if isinstance(o, TcpConnection)]


Seen = TypeVar("Seen", bound=DnsAnswer | TcpConnection)


def without_time(found: list[Seen]) -> list[Seen]:
    return [dataclasses.replace(a, seen_at=0.0) for a in found]


def dissect(frame: bytes, linktype: int) -> Packet:
    layer = {1: Ether, 113: CookedLinux, 276: CookedLinuxV2}[linktype]
    return layer(frame)


def scapy_response_times(name: str) -> list[float]:
    """Timestamps of the frames scapy sees as successful DNS responses with answers."""
    linktype, frames = read_pcap(name)
    times = []
    for frame, ts in frames:
        pkt = dissect(frame, linktype)
        transport = pkt.getlayer(UDP) or pkt.getlayer(TCP)
        if transport is None or transport.sport != 53 or not bytes(transport.payload):
            continue
        payload = bytes(transport.payload)
        messages = []
        if isinstance(transport, UDP):
            messages.append(payload)
        else:
            while payload:
                (length,) = struct.unpack_from("!H", payload)
                messages.append(payload[2 : 2 + length])
                payload = payload[2 + length :]
        times += [ts for m in messages if (d := DNS(m)).qr == 1 and d.rcode == 0 and d.ancount > 0]
    return times


def scapy_syn_times(name: str) -> list[float]:
    """Timestamps of the frames scapy sees as TCP segments with SYN set and ACK clear."""
    linktype, frames = read_pcap(name)
    return [
        ts
        for frame, ts in frames
        if (tcp := dissect(frame, linktype).getlayer(TCP)) is not None and tcp.flags & 0x12 == 0x02
    ]


def ans(client: str, port: int, server: str, qname: str, ips: tuple[str, ...], cnames=(), ttl=30):
    return DnsAnswer(client, port, server, qname, ips, 0.0, tuple(cnames), ttl)


S4, S6 = "127.0.0.53", "fd00:53::53"
CDN = "api.example.com.cdn.cloudflare.net"
EXPECTED = {
    "udp_a_compressed_eth.pcap": [
        ans("127.0.0.1", 40001, S4, "web.shop.svc.cluster.local", ("10.96.0.20", "10.96.0.21"))
    ],
    "udp_aaaa_eth.pcap": [
        ans("127.0.0.1", 40002, S4, "v6only.example.org", ("2001:db8::1", "2001:db8::ff00:42:8329"), ttl=60)
    ],
    "udp_cname_chain_eth.pcap": [
        ans(
            "127.0.0.1", 40003, S4, "a.chain.example", ("192.0.2.33",), ("b.chain.example", "c.chain.example")
        )
    ],
    "tcp_eth.pcap": [ans("127.0.0.1", 40004, S4, "tcp.shop.svc.cluster.local", ("10.96.0.30",))],
    "tcp_pipelined_eth.pcap": [
        ans("127.0.0.1", 40005, "127.0.0.54", "one.example.net", ("198.51.100.1",)),
        ans("127.0.0.1", 40005, "127.0.0.54", "two.example.net", ("198.51.100.1",), ("one.example.net",)),
    ],
    "udp_external_eth.pcap": [
        ans("127.0.0.1", 40006, S4, "api.example.com", ("104.16.132.229", "104.16.133.229"), (CDN,)),
        ans("127.0.0.1", 40007, S4, "api.example.com", ("2606:4700::6810:84e5",), (CDN,), ttl=60),
    ],
    "udp_nxdomain_nodata_eth.pcap": [],
    "ipv6_transport_eth.pcap": [
        ans("::1", 40010, S6, "web.shop.svc.cluster.local", ("10.96.0.20", "10.96.0.21")),
        ans("::1", 40011, S6, "v6only.example.org", ("2001:db8::1", "2001:db8::ff00:42:8329"), ttl=60),
    ],
    "any_sll2.pcap": [
        ans(
            "127.0.0.1", 40012, S4, "a.chain.example", ("192.0.2.33",), ("b.chain.example", "c.chain.example")
        ),
        ans("::1", 40013, S6, "v6only.example.org", ("2001:db8::1", "2001:db8::ff00:42:8329"), ttl=60),
    ],
    "any_sll.pcap": [
        ans("127.0.0.1", 40014, S4, "api.example.com", ("104.16.132.229", "104.16.133.229"), (CDN,))
    ],
}


# The handshakes of DNS over TCP: the client's SYN to port 53, from dig's fixed port.
EXPECTED_SYNS: dict[str, list[TcpConnection]] = {name: [] for name in EXPECTED} | {
    "tcp_eth.pcap": [TcpConnection("127.0.0.1", 40004, S4, 53, 0.0)],
    "tcp_pipelined_eth.pcap": [TcpConnection("127.0.0.1", 40005, "127.0.0.54", 53, 0.0)],
    "ipv6_transport_eth.pcap": [TcpConnection("::1", 40011, S6, 53, 0.0)],
    "any_sll.pcap": [TcpConnection("127.0.0.1", 40014, S4, 53, 0.0)],
}


def test_every_capture_has_expectations() -> None:
    assert sorted(EXPECTED) == PCAPS


@pytest.mark.parametrize("name", PCAPS)
def test_recorded_capture(name: str) -> None:
    found = answers(name)
    assert without_time(found) == EXPECTED[name]
    # seen_at is the capture time of the response frame, which scapy finds independently.
    assert [a.seen_at for a in found] == scapy_response_times(name)


@pytest.mark.parametrize("name", PCAPS)
def test_recorded_handshakes(name: str) -> None:
    found = connections(name)
    assert without_time(found) == EXPECTED_SYNS[name]
    assert [c.seen_at for c in found] == scapy_syn_times(name)
    # Nothing else comes out of a DNS capture.
    assert len(observations(name)) == len(found) + len(EXPECTED[name])


@pytest.mark.parametrize(
    ("name", "linktype"),
    [("udp_a_compressed_eth.pcap", 1), ("any_sll.pcap", 113), ("any_sll2.pcap", 276)],
)
def test_capture_link_types(name: str, linktype: int) -> None:
    assert read_pcap(name)[0] == linktype


def frame_where(name: str, predicate) -> bytes:
    linktype, frames = read_pcap(name)
    for frame, _ in frames:
        if predicate(dissect(frame, linktype)):
            return frame
    raise AssertionError(f"no such frame in {name}")


def is_response(pkt: Packet) -> bool:
    layer = pkt.getlayer(UDP) or pkt.getlayer(TCP)
    return layer is not None and layer.sport == 53 and len(bytes(layer.payload)) > 0


def is_query(pkt: Packet) -> bool:
    layer = pkt.getlayer(UDP) or pkt.getlayer(TCP)
    return layer is not None and layer.dport == 53 and len(bytes(layer.payload)) > 0


UDP4 = frame_where("udp_cname_chain_eth.pcap", is_response)
UDP6 = frame_where("ipv6_transport_eth.pcap", lambda p: is_response(p) and p.haslayer(UDP))
TCP4 = frame_where("tcp_eth.pcap", is_response)
CHAIN = EXPECTED["udp_cname_chain_eth.pcap"]
WEB6 = EXPECTED["ipv6_transport_eth.pcap"][:1]


def test_recorded_names_really_are_compressed() -> None:
    # The chain's answers point at the question (c00c) and CNAME targets at its zone (c00e).
    assert b"\xc0\x0c" in UDP4[42:]
    assert b"\x01b\xc0\x0e" in UDP4[42:]


def test_queries_and_the_rest_of_the_handshake_give_nothing() -> None:
    linktype, frames = read_pcap("tcp_eth.pcap")
    results = [parse_frame(frame, linktype, ts) for frame, ts in frames]
    # Only the SYN and the one response segment give anything.
    assert [[type(o) for o in r] for r in results if r] == [[TcpConnection], [DnsAnswer]]
    query = frame_where("udp_cname_chain_eth.pcap", is_query)
    assert parse_frame(query, 1, 0.0) == []


def test_nxdomain_and_nodata_really_are_in_the_capture() -> None:
    linktype, frames = read_pcap("udp_nxdomain_nodata_eth.pcap")
    responses = [DNS(bytes(dissect(f, linktype)[UDP].payload)) for f, _ in frames]
    responses = [d for d in responses if d.qr == 1]
    assert [(d.rcode, d.ancount) for d in responses] == [(3, 0), (0, 0)]


def test_ipv6_addresses_are_canonical() -> None:
    for answer in answers("udp_aaaa_eth.pcap"):
        assert all(ip == str(ipaddress.ip_address(ip)) for ip in answer.ips)


# --------------------------------------------------------------------------- frame variants


def test_vlan_tag() -> None:
    tagged = UDP4[:12] + b"\x81\x00\x00\x64" + UDP4[12:]
    assert without_time(parse_frame(tagged, 1, 0.0)) == CHAIN


@pytest.mark.parametrize("linktype", [101, 12, 14])
def test_raw_ip(linktype: int) -> None:
    assert without_time(parse_frame(UDP4[14:], linktype, 0.0)) == CHAIN
    assert without_time(parse_frame(UDP6[14:], linktype, 0.0)) == WEB6


def test_ipv4_options_honour_ihl() -> None:
    ip = bytearray(UDP4[14:])
    ip[0] = 0x46  # IHL 6: four bytes of options (NOPs) follow the fixed header
    ip[2:4] = struct.pack("!H", len(ip) + 4)
    framed = UDP4[:14] + bytes(ip[:20]) + b"\x01\x01\x01\x01" + bytes(ip[20:])
    assert without_time(parse_frame(framed, 1, 0.0)) == CHAIN


def test_ipv4_fragments_are_skipped() -> None:
    for flags_offset in (b"\x20\x00", b"\x00\x10"):  # more-fragments; offset 16*8
        frag = UDP4[:20] + flags_offset + UDP4[22:]
        assert parse_frame(frag, 1, 0.0) == []


def with_ipv6_header(frame: bytes, kind: int, body: bytes) -> bytes:
    """Insert an extension header of type ``kind`` right after the IPv6 header; the first
    byte of ``body`` (its next-header field) is replaced by what the IPv6 header held."""
    ip = bytearray(frame[14:54])
    inner, ip[6] = ip[6], kind
    ip[4:6] = struct.pack("!H", len(frame) - 54 + len(body))
    return frame[:14] + bytes(ip) + bytes([inner]) + body[1:] + frame[54:]


def test_ipv6_extension_headers_are_skipped_over() -> None:
    hop_by_hop = b"\x00\x00" + b"\x01\x04\x00\x00\x00\x00"  # PadN
    routing = b"\x00\x01" + bytes(14)  # 16 bytes: length field 1
    framed = with_ipv6_header(UDP6, 0, hop_by_hop)
    assert without_time(parse_frame(framed, 1, 0.0)) == WEB6
    # Two in a row: hop-by-hop, then routing, then UDP.
    inner = with_ipv6_header(UDP6, 43, routing)
    outer = with_ipv6_header(inner, 0, hop_by_hop)
    assert without_time(parse_frame(outer, 1, 0.0)) == WEB6


def test_ipv6_fragment_is_skipped() -> None:
    fragment = b"\x00\x00\x00\x01\x12\x34\x56\x78"
    assert parse_frame(with_ipv6_header(UDP6, 44, fragment), 1, 0.0) == []


def test_ethernet_padding_is_not_read_as_tcp_data() -> None:
    assert without_time(parse_frame(TCP4 + bytes(6), 1, 0.0)) == EXPECTED["tcp_eth.pcap"]


def test_non_dns_frames_give_nothing() -> None:
    not_from_53 = UDP4[:34] + b"\x04\xd2" + UDP4[36:]
    arp = bytes(12) + b"\x08\x06" + bytes(28)
    icmp = bytearray(UDP4)
    icmp[23] = 1
    assert parse_frame(not_from_53, 1, 0.0) == []
    assert parse_frame(arp, 1, 0.0) == []
    assert parse_frame(bytes(icmp), 1, 0.0) == []


def test_unsupported_link_type() -> None:
    assert 105 not in LINKTYPES
    with pytest.raises(PacketParseError, match="link type"):
        parse_frame(UDP4, 105, 0.0)


# --------------------------------------------------------------------------- malformed frames


def test_tcp_length_prefix_longer_than_the_segment() -> None:
    tcp = bytearray(TCP4)
    data = 34 + (tcp[46] >> 4) * 4
    (length,) = struct.unpack_from("!H", tcp, data)
    tcp[data : data + 2] = struct.pack("!H", length + 1)
    with pytest.raises(DnsParseError, match="longer than the TCP segment"):
        parse_frame(bytes(tcp), 1, 0.0)


def test_tcp_payload_alone() -> None:
    data = 34 + (TCP4[46] >> 4) * 4
    found = parse_tcp_dns_payload(TCP4[data:], "127.0.0.1", 40004, S4, 0.0)
    assert found == EXPECTED["tcp_eth.pcap"]
    assert parse_tcp_dns_payload(b"", "127.0.0.1", 40004, S4, 0.0) == []
    with pytest.raises(DnsParseError, match="length prefix"):
        parse_tcp_dns_payload(TCP4[data:] + b"\x00", "127.0.0.1", 40004, S4, 0.0)
    with pytest.raises(DnsParseError, match="truncated DNS message"):
        parse_tcp_dns_payload(b"\x00\x05" + TCP4[data + 2 : data + 7], "127.0.0.1", 40004, S4, 0.0)


def test_tcp_segment_ending_inside_a_length_prefix() -> None:
    tcp = bytearray(TCP4 + b"\x00")  # one stray byte after the message
    tcp[16:18] = struct.pack("!H", len(tcp) - 14)
    with pytest.raises(DnsParseError, match="length prefix"):
        parse_frame(bytes(tcp), 1, 0.0)


@pytest.mark.parametrize("cut", [5, 13, 20, 33, 38, 45, 60, -1])
def test_truncated_frames(cut: int) -> None:
    # The IP length no longer matches: a malformed frame, not (yet) a malformed DNS message.
    with pytest.raises(PacketParseError) as raised:
        parse_frame(UDP4[:cut], 1, 0.0)
    assert type(raised.value) is PacketParseError


def test_udp_length_beyond_ip_packet() -> None:
    bad = UDP4[:38] + struct.pack("!H", len(UDP4) - 34 + 1) + UDP4[40:]
    with pytest.raises(PacketParseError, match="UDP length"):
        parse_frame(bad, 1, 0.0)


# --------------------------------------------------------------------------- DNS messages


def header(flags: int = 0x8180, qd: int = 1, an: int = 0) -> bytes:
    return struct.pack("!HHHHHH", 0x1234, flags, qd, an, 0, 0)


def parse(msg: bytes) -> list[DnsAnswer]:
    return without_time(parse_dns_message(msg, "10.0.0.1", 5353, "10.0.0.10", 0.0))


def dnslib_response(qname: str, *records: RR, qtype: str = "A") -> bytes:
    reply = DNSRecord.question(qname, qtype).reply()
    for record in records:
        reply.add_answer(record)
    return bytes(reply.pack())


def test_typical_response() -> None:
    msg = dnslib_response(
        "Checkout.Shop.svc.cluster.local",
        RR(
            "checkout.shop.svc.cluster.local",
            QTYPE.CNAME,
            rdata=CNAME("checkout-v2.shop.svc.cluster.local"),
            ttl=20,
        ),
        RR("checkout-v2.shop.svc.cluster.local", QTYPE.A, rdata=A("10.96.12.7"), ttl=30),
    )
    assert parse(msg) == [
        DnsAnswer(
            "10.0.0.1",
            5353,
            "10.0.0.10",
            "checkout.shop.svc.cluster.local",
            ("10.96.12.7",),
            0.0,
            ("checkout-v2.shop.svc.cluster.local",),
            20,  # the smallest TTL along the chain
        )
    ]


def test_answers_off_the_chain_are_ignored() -> None:
    msg = dnslib_response(
        "a.example",
        RR("other.example", QTYPE.A, rdata=A("192.0.2.9")),
        RR("a.example", QTYPE.A, rdata=A("192.0.2.1")),
        RR("a.example", QTYPE.A, rdata=A("192.0.2.1")),  # duplicates are dropped
    )
    assert [a.ips for a in parse(msg)] == [("192.0.2.1",)]


def test_mixed_a_and_aaaa() -> None:
    msg = dnslib_response(
        "dual.example",
        RR("dual.example", QTYPE.A, rdata=A("192.0.2.1"), ttl=50),
        RR("dual.example", QTYPE.AAAA, rdata=AAAA("2001:db8:0:0:1:0:0:1"), ttl=40),
        qtype="ANY",
    )
    [answer] = parse(msg)
    assert answer.ips == ("192.0.2.1", "2001:db8::1:0:0:1")
    assert answer.ttl == 40


@pytest.mark.parametrize("flags", [0x0100, 0x8183, 0x8182, 0xA980])  # query, NXDOMAIN, SERVFAIL, UPDATE
def test_non_answers_give_nothing(flags: int) -> None:
    msg = dnslib_response("a.example", RR("a.example", QTYPE.A, rdata=A("192.0.2.1")))
    assert parse(msg[:2] + struct.pack("!H", flags) + msg[4:]) == []


def test_negative_ttl_means_zero() -> None:
    msg = dnslib_response("a.example", RR("a.example", QTYPE.A, rdata=A("192.0.2.1"), ttl=0x80000000))
    assert parse(msg)[0].ttl == 0


def test_names_with_odd_bytes_are_escaped() -> None:
    qname = b"\x05a.b c\x07example\x00"  # a label holding "." and " "
    msg = (
        header(an=1) + qname + b"\x00\x01\x00\x01" + b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 5, 4) + bytes(4)
    )
    assert parse(msg)[0].qname == "a\\046b\\032c.example"


def test_uppercase_and_non_ascii_are_lowered_only_in_ascii() -> None:
    qname = b"\x03W\xc9B\x00"
    msg = (
        header(an=1) + qname + b"\x00\x01\x00\x01" + b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 5, 4) + bytes(4)
    )
    assert parse(msg)[0].qname == "w\\201b"


def test_root_name() -> None:
    msg = (
        header(an=1)
        + b"\x00"
        + b"\x00\x01\x00\x01"
        + b"\xc0\x0c"
        + struct.pack("!HHIH", 1, 1, 5, 4)
        + bytes(4)
    )
    assert parse(msg)[0].qname == ""


QUESTION = b"\x01a\x07example\x00\x00\x01\x00\x01"  # at offset 12; "example" starts at 14


def a_record(owner: bytes = b"\xc0\x0c", rdata: bytes = bytes(4), rtype: int = 1) -> bytes:
    return owner + struct.pack("!HHIH", rtype, 1, 5, len(rdata)) + rdata


@pytest.mark.parametrize(
    ("msg", "why"),
    [
        (header()[:11], "truncated"),
        (header(), "truncated"),  # qdcount 1, no question
        (header() + QUESTION[:-2], "truncated question"),
        (header(an=1) + QUESTION, "truncated"),  # ancount larger than the data
        (header(an=2) + QUESTION + a_record(), "truncated"),
        (header(an=1) + QUESTION + a_record()[:-1], "past the end"),
        (header(qd=1) + b"\xc0\x0c", "backwards"),  # a pointer to itself
        (header(qd=1) + b"\x01a\xc0\x0c", "backwards"),  # a.a.a... loop
        (header(qd=1) + b"\x01a\xc0\x10" + b"\x01b\xc0\x0c", "backwards"),  # forward, then back
        (header(qd=1) + b"\xff\xff", "backwards"),  # far out of bounds
        (header(qd=1) + b"\x01a\xc0", "truncated"),  # pointer cut in half
        (header(qd=1) + b"\x40" + b"a" * 64 + b"\x00", "label type"),  # label of 64
        (header(qd=1) + b"\x80\x00", "label type"),
        (header(qd=1) + (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01", "longer than 255"),
        (header(qd=1) + b"\x05abc", "truncated"),  # label past the end
        (header(an=1) + QUESTION + a_record(rdata=bytes(5)), "wrong length"),
        (header(an=1) + QUESTION + a_record(rdata=bytes(4), rtype=28), "wrong length"),
        (header(an=1) + QUESTION + a_record(owner=b"\xc0\x40"), "backwards"),  # beyond the message
        (header(an=1) + QUESTION + a_record(rdata=b"\x01b\xc0\x0e\x00", rtype=5), "does not fill"),
        (header(an=1) + QUESTION + a_record(rdata=b"\x01b\xc0", rtype=5) + b"\x0e", "does not fill"),
        (header(an=1) + QUESTION + a_record(rdata=b"\x01b\xc0\x50", rtype=5), "backwards"),
        (header(an=1) + QUESTION + a_record(rdata=b"\x01b\xc0", rtype=5), "truncated"),
    ],
)
def test_malformed_messages(msg: bytes, why: str) -> None:
    with pytest.raises(DnsParseError, match=why):
        parse_dns_message(msg, "10.0.0.1", 5353, "10.0.0.10", 0.0)


def test_cname_loop() -> None:
    loop = (
        header(an=3)
        + QUESTION
        + a_record(rdata=b"\x01b\xc0\x0e", rtype=5)  # a.example -> b.example (at 39)
        + a_record(owner=b"\xc0\x27", rdata=b"\xc0\x0c", rtype=5)  # b.example -> a.example
        + a_record(owner=b"\xc0\x27")
    )
    with pytest.raises(DnsParseError, match="CNAME loop"):
        parse(loop)


def test_pointer_chains_are_bounded() -> None:
    # Each pointer jumps back to the one before: every jump is backwards, but there are
    # more of them than any 255-byte name can need.
    msg = header(qd=1) + b"\x00"  # the root name at 12; pointers at 13, 15, ...
    for position in range(13, 13 + 2 * 200, 2):
        msg += struct.pack("!H", 0xC000 | (position - 2 if position > 13 else 12))
    with pytest.raises(DnsParseError, match="too many compression pointers"):
        dns_module._read_name(msg, len(msg) - 2, {})


def test_pointer_into_a_record_the_parser_skips() -> None:
    # The CNAME target points into an NS record's name, which the parser never read, and
    # that name points into the question: both pointers must still resolve.
    msg = (
        header(an=3)
        + QUESTION
        + a_record(rdata=b"\x03ns1\xc0\x0e", rtype=2)  # 27: NS ns1.example, rdata at 39
        + a_record(rdata=b"\x01b\xc0\x27", rtype=5)  # 45: a.example -> b.ns1.example at 57
        + a_record(owner=b"\xc0\x39", rdata=b"\x0a\x00\x00\x01")
    )
    [answer] = parse(msg)
    assert (answer.qname, answer.cnames, answer.ips) == ("a.example", ("b.ns1.example",), ("10.0.0.1",))


def test_fast_constructor_builds_equal_answers() -> None:
    fast = dns_module._make_answer("1.2.3.4", 1, "5.6.7.8", "a", ("9.9.9.9",), 1.5, ("b",), 7)
    slow = DnsAnswer("1.2.3.4", 1, "5.6.7.8", "a", ("9.9.9.9",), 1.5, ("b",), 7)
    assert fast == slow
    assert hash(fast) == hash(slow)
    assert type(fast) is DnsAnswer
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.qname = "x"  # type: ignore[misc]
