"""Fuzzing the frame and DNS parsers: whatever bytes come off the wire, frames.parse_frame
returns observations or raises PacketParseError (DnsParseError included), nothing else (an
IndexError or struct.error would kill the capture loop).

Inputs: random bytes (hypothesis), DNS-shaped messages, and mutations of the real frames
in tests/data/dns and tests/data/tcp (bit flips, byte overwrites, truncations, insertions,
deletions, splices), half of them with the IP/UDP lengths and TCP length prefix fixed up
afterwards so the mutation reaches the DNS parser instead of failing a length check.
~210,000 inputs in all; deterministic (derandomized hypothesis, seeded mutation loop).
"""

from __future__ import annotations

import ipaddress
import random
import struct
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Ether
from scapy.utils import RawPcapReader

from agent.model import DnsAnswer, TcpConnection
from agent.sniffer.dns import DnsParseError, parse_dns_message
from agent.sniffer.errors import PacketParseError
from agent.sniffer.frames import LINKTYPES, parse_frame

DATA = Path(__file__).resolve().parents[2] / "data"
MUTATED_FRAMES = 200_000
HYPOTHESIS = settings(
    max_examples=2_500,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class Sample:
    """A recorded frame and where its layers start, to fix lengths up after a mutation."""

    def __init__(self, frame: bytes, linktype: int) -> None:
        self.frame, self.linktype = frame, linktype
        pkt = {1: Ether, 113: CookedLinux, 276: CookedLinuxV2}[linktype](frame)
        ip = pkt.getlayer(IP) or pkt.getlayer(IPv6)
        l4 = pkt.getlayer(UDP) or pkt.getlayer(TCP)
        self.ip_off = len(frame) - len(bytes(ip))
        self.version = 4 if isinstance(ip, IP) else 6
        self.l4_off = len(frame) - len(bytes(l4))
        self.udp = isinstance(l4, UDP)
        self.data_off = len(frame) - len(bytes(l4.payload))
        self.response = l4.sport == 53
        data = frame[self.data_off :]
        # One length-prefixed message per segment: its prefix can be fixed up after a mutation.
        self.single = not self.udp and len(data) >= 2 and struct.unpack_from("!H", data)[0] == len(data) - 2

    def with_payload(self, payload: bytes) -> bytes:
        """The frame carrying ``payload`` as its L4 data, every length made consistent."""
        if self.single and len(payload) >= 2:
            payload = struct.pack("!H", len(payload) - 2) + payload[2:]
        out = bytearray(self.frame[: self.data_off] + payload)
        ip_len = len(out) - self.ip_off
        if self.version == 4:
            out[self.ip_off + 2 : self.ip_off + 4] = struct.pack("!H", ip_len & 0xFFFF)
        else:
            out[self.ip_off + 4 : self.ip_off + 6] = struct.pack("!H", (ip_len - 40) & 0xFFFF)
        if self.udp:
            out[self.l4_off + 4 : self.l4_off + 6] = struct.pack("!H", (len(out) - self.l4_off) & 0xFFFF)
        return bytes(out)


def load_corpus(directory: str) -> list[Sample]:
    samples = []
    for path in sorted((DATA / directory).glob("*.pcap")):
        reader = RawPcapReader(str(path))
        samples += [Sample(bytes(frame), reader.linktype) for frame, _ in reader]
        reader.close()
    return samples


DNS_CORPUS = load_corpus("dns")
# Responses carrying DNS data are what reaches the DNS parser; the rest of DNS_CORPUS
# (queries, handshakes) is only checked unmutated.
DNS_SAMPLES = [s for s in DNS_CORPUS if s.response and len(s.frame) > s.data_off]
# Every segment of a TCP connection (SYN, SYN-ACK, ACK, data, FIN, RST), IPv4 and IPv6:
# mutated too, a quarter of the time, for the TCP header and SYN paths.
TCP_SAMPLES = load_corpus("tcp")
CORPUS = DNS_CORPUS + TCP_SAMPLES
FUZZ_SAMPLES = DNS_SAMPLES + TCP_SAMPLES
INTERESTING = (0x00, 0x01, 0x3F, 0x40, 0x80, 0xBF, 0xC0, 0xFF)


def check(result: list[DnsAnswer | TcpConnection]) -> None:
    """What any successful parse must look like, however odd the input."""
    assert isinstance(result, list)
    for answer in result:
        if isinstance(answer, TcpConnection):
            assert result == [answer]  # a SYN carries no DNS answers
            ipaddress.ip_address(answer.client_ip)
            ipaddress.ip_address(answer.server_ip)
            assert 0 <= answer.client_port <= 0xFFFF
            assert 0 <= answer.server_port <= 0xFFFF
            continue
        assert isinstance(answer, DnsAnswer)
        assert answer.ips
        for ip in (answer.client_ip, answer.server_ip, *answer.ips):
            ipaddress.ip_address(ip)
        assert 0 <= answer.client_port <= 0xFFFF
        assert 0 <= answer.ttl <= 0x7FFFFFFF
        for name in (answer.qname, *answer.cnames):
            assert name.isascii()
            assert not name.endswith(".")


def parses_or_rejects_frame(frame: bytes, linktype: int) -> None:
    try:
        result = parse_frame(frame, linktype, 0.0)
    except PacketParseError:  # DnsParseError included
        return
    check(result)


def parses_or_rejects_message(msg: bytes) -> None:
    try:
        result = parse_dns_message(msg, "10.0.0.1", 40000, "10.0.0.10", 0.0)
    except DnsParseError:
        return
    check(result)


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        kind = rng.randrange(6)
        pos = rng.randrange(len(buf) + 1)
        if kind == 0 and buf:  # bit flip
            buf[pos % len(buf)] ^= 1 << rng.randrange(8)
        elif kind == 1 and buf:  # overwrite with a boundary value (lengths, pointer tags)
            buf[pos % len(buf)] = rng.choice(INTERESTING)
        elif kind == 2:  # truncate
            del buf[pos:]
        elif kind == 3:  # insert
            buf[pos:pos] = rng.randbytes(rng.randrange(1, 9))
        elif kind == 4:  # delete a range
            del buf[pos : pos + rng.randrange(1, 9)]
        else:  # splice: copy a range elsewhere (e.g. duplicated labels or pointers)
            start = rng.randrange(len(buf) + 1)
            buf[pos:pos] = buf[start : start + rng.randrange(1, 17)]
    return bytes(buf)


def test_corpus_is_real_and_varied() -> None:
    assert len(DNS_SAMPLES) >= 14
    assert {s.linktype for s in CORPUS} == {1, 113, 276}
    assert {s.version for s in DNS_SAMPLES} == {4, 6}
    assert {s.udp for s in DNS_SAMPLES} == {True, False}
    assert {s.version for s in TCP_SAMPLES} == {4, 6}
    assert sum(1 for s in TCP_SAMPLES if parse_frame(s.frame, s.linktype, 0.0)) == 4  # the SYNs
    # Untouched, with lengths rewritten to the same values, every frame still parses.
    for sample in CORPUS:
        assert sample.with_payload(sample.frame[sample.data_off :]) == sample.frame
        check(parse_frame(sample.frame, sample.linktype, 0.0))


def test_mutated_real_frames() -> None:
    rng = random.Random(20261124)
    answered = connected = 0
    for i in range(MUTATED_FRAMES):
        sample = rng.choice(TCP_SAMPLES if i % 4 == 3 else DNS_SAMPLES)
        if i % 2:
            frame = mutate(rng, sample.frame)
        else:
            frame = sample.with_payload(mutate(rng, sample.frame[sample.data_off :]))
        try:
            result = parse_frame(frame, sample.linktype, 0.0)
        except PacketParseError:  # DnsParseError included; anything else fails the test
            continue
        check(result)
        answered += any(isinstance(o, DnsAnswer) for o in result)
        connected += any(isinstance(o, TcpConnection) for o in result)
    # Many mutations leave a valid response or SYN (e.g. a flipped TTL or address bit): the
    # loop must exercise the success paths too, not only the rejections.
    assert answered > MUTATED_FRAMES // 20
    assert connected > MUTATED_FRAMES // 200


@HYPOTHESIS
@given(st.binary(max_size=600), st.sampled_from(sorted(LINKTYPES)))
def test_random_frames(frame: bytes, linktype: int) -> None:
    parses_or_rejects_frame(frame, linktype)


@HYPOTHESIS
@given(st.binary(max_size=600))
def test_random_messages(msg: bytes) -> None:
    parses_or_rejects_message(msg)


# A successful-response header with plausible counts, then bytes built from labels,
# pointers and record headers: random bytes alone rarely get past the header.
PIECES = st.one_of(
    st.binary(min_size=1, max_size=6).map(lambda b: bytes([len(b)]) + b),  # a label
    st.integers(0, 120).map(lambda p: struct.pack("!H", 0xC000 | p)),  # a pointer
    st.just(b"\x00"),
    st.sampled_from([1, 5, 28, 2]).map(lambda t: struct.pack("!HHIH", t, 1, 30, 4)),
    st.binary(max_size=16),
)


@HYPOTHESIS
@given(st.integers(0, 3), st.integers(0, 6), st.lists(PIECES, max_size=24))
def test_dns_shaped_messages(qdcount: int, ancount: int, pieces: list[bytes]) -> None:
    parses_or_rejects_message(struct.pack("!HHHHHH", 1, 0x8180, qdcount, ancount, 0, 0) + b"".join(pieces))


@HYPOTHESIS
@given(st.integers(0, len(FUZZ_SAMPLES) - 1), st.randoms(use_true_random=False), st.booleans())
def test_mutated_real_frames_hypothesis(index: int, rng: random.Random, fix_lengths: bool) -> None:
    sample = FUZZ_SAMPLES[index]
    if fix_lengths:
        frame = sample.with_payload(mutate(rng, sample.frame[sample.data_off :]))
    else:
        frame = mutate(rng, sample.frame)
    parses_or_rejects_frame(frame, sample.linktype)
