"""libpcap's own counters through :meth:`LibpcapSource.stats`, on a real veth with real libpcap.

A network namespace of the test's own holds a veth pair; the capture opens one end (created
inside the namespace with :func:`sandbox.netns.entered`, so it stays there), and an ``AF_PACKET``
socket on the other end sends dnslib-built DNS response frames plus frames the sniffer's BPF filter
must not pass. What is checked:

* at a low rate, read as they come: ``received`` is exactly the DNS responses sent (the filter's
  rejects are not counted), and nothing is dropped; the capture loop copies the same totals into
  the sniffer's ``/metrics`` counters (``kernel_received_total``, ``kernel_dropped_total``);
* the control, so a 0 means something: a tiny buffer that nobody reads overflows, and ``dropped``
  counts it (with ``received`` still every packet, as Linux counts).
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from dnslib import QTYPE, RR, A, DNSRecord

from agent.model import DnsAnswer, TcpConnection
from agent.sniffer.capture import LibpcapSource, PacketCapture
from agent.sniffer.metrics import SnifferMetrics
from sandbox.netns import entered
from tests.support.mapper_process import wait_until

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(
        os.geteuid() != 0 or not shutil.which("ip"), reason="needs root and iproute2 (ip netns)"
    ),
]

SENT = 300
NOISE = 50  # UDP to port 5353 from port 5353: outside the sniffer's filter
DEADLINE = 10.0


def frame(i: int, sport: int = 53) -> bytes:
    name = f"svc-{i}.example.com"
    reply = DNSRecord.question(name).reply()
    reply.add_answer(RR(name, QTYPE.A, rdata=A(f"203.0.113.{i % 250 + 1}"), ttl=30))
    dns = reply.pack()
    dport = 40000 + i % 1000 if sport == 53 else sport
    udp = struct.pack("!HHHH", sport, dport, 8 + len(dns), 0) + dns
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(udp),
        0,
        0,
        64,
        17,
        0,
        socket.inet_aton("10.99.0.53"),
        socket.inet_aton("10.99.0.2"),
    )
    # To a MAC nobody has: the frame crosses the veth, where it is captured, and goes no further.
    return b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + ip + udp


@pytest.fixture
def veth() -> Iterator[tuple[str, str, str]]:
    """(namespace, capture end, sending end), deleted afterwards."""
    ns = f"nmt-stats-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for args in (
            ["link", "add", "st-a", "type", "veth", "peer", "name", "st-b"],
            ["link", "set", "st-a", "up"],
            ["link", "set", "st-b", "up"],
        ):
            subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True)
        yield ns, "st-b", "st-a"
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def open_pair(
    ns: str, capture_end: str, send_end: str, buffer_bytes: int
) -> tuple[LibpcapSource, socket.socket]:
    with entered(ns):
        source = LibpcapSource(capture_end, buffer_bytes=buffer_bytes)
        sender = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        sender.bind((send_end, 0))
    return source, sender


def test_stats_count_what_passed_the_filter_and_no_drops(veth: tuple[str, str, str]) -> None:
    source, sender = open_pair(*veth, buffer_bytes=8 << 20)
    with sender:
        got: list[bytes] = []
        for i in range(SENT):
            sender.send(frame(i))
            if i % 6 == 0 and i // 6 < NOISE:
                sender.send(frame(i, sport=5353))
            got.extend(f for _, f in source.read(0))  # read as they come: a low rate for the capture
        wait_until(
            lambda: got.extend(f for _, f in source.read(0.05)) or len(got) >= SENT,
            DEADLINE,
            lambda: f"captured {len(got)} of {SENT}",
        )
    try:
        stats = source.stats()
    finally:
        source.close()
    assert len(got) == SENT
    assert (stats.received, stats.dropped, stats.interface_dropped) == (SENT, 0, 0)


def test_capture_loop_copies_the_totals_into_metrics(veth: tuple[str, str, str]) -> None:
    source, sender = open_pair(*veth, buffer_bytes=8 << 20)
    metrics = SnifferMetrics()
    seen: list[DnsAnswer | TcpConnection] = []
    capture = PacketCapture(source, seen.append, metrics, stats_interval=0.05).start()
    try:
        with sender:
            for i in range(SENT):
                sender.send(frame(i))
        wait_until(
            lambda: metrics.kernel_received.value >= SENT,
            DEADLINE,
            lambda: f"kernel_received_total {metrics.kernel_received.value} of {SENT}",
        )
    finally:
        capture.stop()
    assert not capture.is_alive()
    assert len(seen) == SENT
    assert metrics.kernel_received.value == SENT
    assert metrics.kernel_dropped.value == 0
    text = metrics.render()
    assert f"network_mapper_sniffer_kernel_received_total {SENT}\n" in text
    assert "network_mapper_sniffer_kernel_dropped_total 0\n" in text
    assert "# TYPE network_mapper_sniffer_kernel_dropped_total counter\n" in text


def test_a_full_buffer_is_counted_as_dropped(veth: tuple[str, str, str]) -> None:
    flood = 5000
    source, sender = open_pair(*veth, buffer_bytes=64 << 10)
    try:
        with sender:
            for i in range(flood):  # nobody reads: the 64 KiB ring fills
                sender.send(frame(i))
        stats = wait_until(
            lambda: (s := source.stats()).received >= flood and s,
            DEADLINE,
            lambda: f"stats {source.stats()}",
        )
    finally:
        source.close()
    assert stats.received == flood
    assert 0 < stats.dropped < flood
