"""DNS response parsing: agent.sniffer.frames.parse_frame against scapy, on the same frames.

The mix is what a node's sniffer sees: the recorded responses in tests/data/dns (A, AAAA,
CNAME chains, compression, TCP, IPv6, cooked captures) plus scapy-built Ethernet frames
carrying dnslib-packed (compressed) responses shaped like cluster traffic: a service A
record, an external name behind one CNAME, a dual-stack name, a 3-level chain.

Ours is timed on whole frames (link, IP, UDP/TCP and DNS); scapy only on DNS(payload), the
DNS part alone, so the ratio understates our lead. Scapy's full Ether(frame) dissection is
printed too, and, for the capture's other traffic, the rate of a recorded TCP SYN (one
TcpConnection) and of a recorded IPv6 TCP data segment (which the BPF filter cannot drop,
so parse_frame must). Last line: ``dns_parse: <ratio>x scapy (<N>k/s)``, N being our rate
on the mix.
"""

from __future__ import annotations

import struct
from pathlib import Path

from dnslib import AAAA, CNAME, QTYPE, RR, A, DNSRecord
from rates import rates  # bench/rates.py: run as `python bench/<bench>.py`
from scapy.layers.dns import DNS
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Ether
from scapy.packet import Raw
from scapy.utils import RawPcapReader

from agent.model import DnsAnswer
from agent.sniffer.frames import parse_frame

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {1: Ether, 113: CookedLinux, 276: CookedLinuxV2}


def response(qname: str, qtype: str, *records: tuple[str, str, str]) -> bytes:
    reply = DNSRecord.question(qname, qtype).reply()
    for owner, kind, value in records:
        rdata = {"A": A, "AAAA": AAAA, "CNAME": CNAME}[kind](value)
        reply.add_answer(RR(owner, getattr(QTYPE, kind), rdata=rdata, ttl=30))
    return bytes(reply.pack())


def ether_udp(payload: bytes, v6: bool = False) -> bytes:
    ip = IPv6(src="fd00::a", dst="fd00:10:244::5") if v6 else IP(src="10.96.0.10", dst="10.244.1.7")
    ether = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    return bytes(ether / ip / UDP(sport=53, dport=41000) / Raw(payload))


TYPICAL = ether_udp(
    response(
        "api.example.com",
        "A",
        ("api.example.com", "CNAME", "api.example.com.cdn.cloudflare.net"),
        ("api.example.com.cdn.cloudflare.net", "A", "104.16.132.229"),
    )
)
BUILT = [
    TYPICAL,
    ether_udp(
        response(
            "cartservice.shop.svc.cluster.local",
            "A",
            ("cartservice.shop.svc.cluster.local", "A", "10.96.4.2"),
        )
    ),
    ether_udp(
        response(
            "www.example.org",
            "AAAA",
            ("www.example.org", "CNAME", "www.example.org.edgekey.net"),
            ("www.example.org.edgekey.net", "AAAA", "2600:1406:3a00:21::173e:2e65"),
            ("www.example.org.edgekey.net", "AAAA", "2600:1406:3a00:21::173e:2e66"),
        ),
        v6=True,
    ),
    ether_udp(
        response(
            "a.chain.example",
            "A",
            ("a.chain.example", "CNAME", "b.chain.example"),
            ("b.chain.example", "CNAME", "c.chain.example"),
            ("c.chain.example", "A", "192.0.2.33"),
            ("c.chain.example", "A", "192.0.2.34"),
        )
    ),
]


def recorded() -> list[tuple[bytes, int]]:
    """The recorded frames that are DNS responses with data (queries and handshakes are
    dropped by both parsers in nanoseconds and would only flatter the average)."""
    frames = []
    for path in sorted((ROOT / "tests" / "data" / "dns").glob("*.pcap")):
        reader = RawPcapReader(str(path))
        for data, _ in reader:
            frame = bytes(data)
            if any(isinstance(o, DnsAnswer) for o in parse_frame(frame, reader.linktype, 0.0)):
                frames.append((frame, reader.linktype))
        reader.close()
    return frames


def recorded_tcp() -> tuple[bytes, bytes]:
    """From tests/data/tcp: the first IPv4 SYN, and the first IPv6 segment carrying data."""
    reader = RawPcapReader(str(ROOT / "tests" / "data" / "tcp" / "syn_v4_v6.pcap"))
    frames = [bytes(data) for data, _ in reader]
    reader.close()
    syn = next(f for f in frames if IP in (pkt := Ether(f)) and pkt[TCP].flags == "S")
    data = next(f for f in frames if IPv6 in (pkt := Ether(f)) and bytes(pkt[TCP].payload))
    return syn, data


def dns_payloads(frame: bytes, linktype: int) -> list[bytes]:
    pkt = LAYERS[linktype](frame)
    layer = pkt.getlayer(UDP) or pkt.getlayer(TCP)
    data = bytes(layer.payload)
    if isinstance(layer, UDP):
        return [data]
    out = []
    while data:
        (length,) = struct.unpack_from("!H", data)
        out.append(data[2 : 2 + length])
        data = data[2 + length :]
    return out


def main() -> None:
    mix = [(frame, 1) for frame in BUILT] + recorded()
    payloads = [p for frame, linktype in mix for p in dns_payloads(frame, linktype)]
    answers = sum(len(parse_frame(frame, linktype, 0.0)) for frame, linktype in mix)
    print(f"mix: {len(mix)} frames, {len(payloads)} DNS responses, {answers} answers")
    syn, data6 = recorded_tcp()
    assert len(parse_frame(syn, 1, 0.0)) == 1
    assert parse_frame(data6, 1, 0.0) == []

    def ours() -> None:
        for frame, linktype in mix:
            parse_frame(frame, linktype, 0.0)

    def scapy_dns() -> None:
        for payload in payloads:
            DNS(payload)

    def scapy_frames() -> None:
        for frame, linktype in mix:
            LAYERS[linktype](frame)

    def typical() -> None:
        parse_frame(TYPICAL, 1, 0.0)

    def tcp_syn() -> None:
        parse_frame(syn, 1, 0.0)

    def tcp6_data() -> None:
        parse_frame(data6, 1, 0.0)

    result = rates(
        {
            "ours": (ours, len(payloads)),
            "scapy": (scapy_dns, len(payloads)),
            "scapy_frames": (scapy_frames, len(mix)),
            "typical": (typical, 1),
            "syn": (tcp_syn, 1),
            "tcp6_data": (tcp6_data, 1),
        },
        budget=16.0,
    )
    ours_rate, scapy_rate = result["ours"], result["scapy"]
    print(f"typical (1 CNAME + 1 A) through parse_frame: {result['typical'] / 1000:.0f}k/s")
    print(
        f"TCP SYN -> TcpConnection: {result['syn'] / 1000:.0f}k/s;"
        f" IPv6 TCP data segment -> []: {result['tcp6_data'] / 1000:.0f}k/s"
    )
    ours_frames = ours_rate * len(mix) / len(payloads)
    print(
        f"scapy full-frame dissection: {result['scapy_frames'] / 1000:.1f}k frames/s;"
        f" ours {ours_frames / result['scapy_frames']:.0f}x faster"
    )
    print(f"scapy DNS(payload): {scapy_rate / 1000:.1f}k/s")
    print(f"dns_parse: {ours_rate / scapy_rate:.1f}x scapy ({ours_rate / 1000:.0f}k/s)")


if __name__ == "__main__":
    main()
