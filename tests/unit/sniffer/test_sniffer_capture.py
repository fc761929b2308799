"""The capture loop over recorded frames: observations out, bad frames counted and skipped; a
counting source's totals (libpcap's, which wrap at 32 bits) copied into the metrics."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from scapy.utils import RawPcapReader

from agent.model import DnsAnswer, TcpConnection
from agent.sniffer.capture import CaptureStats, PacketCapture, counter_increase
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


def test_counter_increase_across_a_32_bit_wrap() -> None:
    assert counter_increase(10, 25) == 15
    assert counter_increase(7, 7) == 0
    assert counter_increase(2**32 - 5, 3) == 8
    assert counter_increase(250, 4, bits=8) == 10


class CountingPcapFileSource(PcapFileSource):
    """A recorded capture whose libpcap totals are given, one per ``stats()`` call."""

    def __init__(self, path: Path, totals: list[CaptureStats]) -> None:
        super().__init__(path)
        self.totals = totals
        self.calls = 0

    def stats(self) -> CaptureStats:
        self.calls += 1
        return self.totals[min(self.calls, len(self.totals)) - 1]


def test_capture_copies_libpcap_totals_into_metrics_across_a_wrap() -> None:
    near_wrap = 2**32 - 2
    totals = [CaptureStats(near_wrap, near_wrap - 1, 0), CaptureStats(5, 2, 1)]
    source = CountingPcapFileSource(DATA / "dns" / "tcp_eth.pcap", totals)
    metrics = SnifferMetrics()
    capture = PacketCapture(source, lambda _: None, metrics, stats_interval=0.0).start()
    assert source.done.wait(5)
    capture.stop()
    assert source.calls >= 2
    snap = metrics.snapshot()
    assert snap["network_mapper_sniffer_kernel_received_total"] == 2**32 + 5
    assert snap["network_mapper_sniffer_kernel_dropped_total"] == 2**32 + 2
    assert snap["network_mapper_sniffer_interface_dropped_total"] == 1


def test_a_source_without_counters_leaves_the_kernel_counters_at_zero() -> None:
    source = PcapFileSource(DATA / "dns" / "tcp_eth.pcap")
    metrics = SnifferMetrics()
    capture = PacketCapture(source, lambda _: None, metrics).start()
    assert source.done.wait(5)
    capture.stop()
    assert metrics.kernel_received.value == metrics.kernel_dropped.value == 0
