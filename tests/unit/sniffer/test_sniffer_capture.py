"""The capture loop over recorded frames: observations out, bad frames counted and skipped."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from scapy.utils import RawPcapReader

from agent.model import DnsAnswer, TcpConnection
from agent.sniffer.capture import PacketCapture
from agent.sniffer.metrics import SnifferMetrics

DATA = Path(__file__).parents[2] / "data"


class PcapFileSource:
    """A recorded capture standing in for the live libpcap handle."""

    def __init__(self, path: Path, extra: list[bytes] | None = None) -> None:
        reader = RawPcapReader(str(path))
        self.linktype: int = reader.linktype
        self.frames = [(meta.sec + meta.usec / 1e6, bytes(frame)) for frame, meta in reader]
        reader.close()
        self.frames += [(0.0, f) for f in extra or []]
        self.done = threading.Event()
        self.closed = False

    def read(self, timeout: float) -> Iterator[tuple[float, bytes]]:
        yield from self.frames
        self.frames = []
        self.done.set()

    def close(self) -> None:
        self.closed = True


def test_capture_emits_dns_and_syn_and_counts_bad_frames() -> None:
    source = PcapFileSource(DATA / "dns" / "tcp_eth.pcap", extra=[b"\x00" * 9])
    total = len(source.frames)
    seen: list[DnsAnswer | TcpConnection] = []
    metrics = SnifferMetrics()
    capture = PacketCapture(source, seen.append, metrics).start()
    assert source.done.wait(5)
    capture.stop()
    assert source.closed
    assert not capture.is_alive()
    answers = [o for o in seen if isinstance(o, DnsAnswer)]
    syns = [o for o in seen if isinstance(o, TcpConnection)]
    assert answers and syns
    assert all(s.server_port == 53 for s in syns)
    snap = metrics.snapshot()
    assert snap["network_mapper_sniffer_packets_seen_total"] == total
    assert snap["network_mapper_sniffer_parse_errors_total"] == 1
    assert snap["network_mapper_sniffer_dns_responses_parsed_total"] == len(answers)
