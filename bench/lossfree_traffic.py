"""The traffic side of ``bench_sniffer_lossfree.py``: the two network namespaces and their veth
pair, the DNS response frames (built once with dnslib), the paced sender, and the scheduler
autogroup priority the run takes while it measures.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dnslib import QTYPE, RR, A, DNSHeader, DNSQuestion, DNSRecord

FRAMES = 4096
IPV4 = struct.Struct("!BBHHHBBH4s4s")  # version+IHL, TOS, length, id, frag, TTL, proto, checksum, src, dst
DNS_SERVER = socket.inet_aton("10.96.0.10")


def dns_frames(count: int = FRAMES) -> list[bytes]:
    """Ethernet frames of DNS responses from the cluster DNS (10.96.0.10:53) to 256 clients: one A
    answer each, 1,024 names (in-cluster services and external names), varied ids and ports."""
    out = []
    for i in range(count):
        name = f"svc-{i % 512}.ns-{i % 7}.svc.cluster.local" if i % 2 else f"api-{i % 512}.example.com"
        header = DNSHeader(id=(i * 7919) & 0xFFFF, qr=1, aa=1, ra=1)
        reply = DNSRecord(
            header,
            q=DNSQuestion(name),
            a=RR(name, QTYPE.A, rdata=A(f"10.97.{i % 200}.{i % 250 + 1}"), ttl=30),
        )
        dns = reply.pack()
        client = socket.inet_aton(f"10.244.{i % 4}.{i % 64 + 2}")
        udp = struct.pack("!HHHH", 53, 32768 + (i * 31) % 28000, 8 + len(dns), 0) + dns
        ip = IPV4.pack(0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0, DNS_SERVER, client)
        out.append(b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + ip + udp)
    return out


def send_step(sock: socket.socket, frames: list[bytes], rate: int, seconds: float) -> tuple[int, float]:
    """Send ``rate * seconds`` frames, paced: catch up with the schedule, then sleep ~0.5 ms.
    Gives up at 1.5x the step's time (the sender's own limit). Returns (sent, elapsed seconds)."""
    total = int(rate * seconds)
    send, clock, nap = sock.send, time.perf_counter, time.sleep
    nframes = len(frames)
    sent = 0
    start = clock()
    give_up = seconds * 1.5
    while sent < total:
        elapsed = clock() - start
        if elapsed > give_up:
            break
        due = min(total, int(elapsed * rate) + 1)
        while sent < due:
            send(frames[sent % nframes])
            sent += 1
        nap(0.0005)
    return sent, clock() - start


@dataclass(frozen=True, slots=True)
class Net:
    tx: str
    rx: str
    tx_if: str
    rx_if: str


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@contextlib.contextmanager
def network() -> Iterator[Net]:
    """Two namespaces joined by a veth pair, named for this run; deleted on the way out, whatever happens."""
    run_id = uuid.uuid4().hex[:6]
    net = Net(f"nmb-tx-{run_id}", f"nmb-rx-{run_id}", f"lft{run_id}", f"lfr{run_id}")
    try:
        for ns in (net.tx, net.rx):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            # No IPv6 chatter (router solicitations, DAD) on the link: only the responses cross it.
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
        sh(*f"ip link add {net.tx_if} netns {net.tx} type veth peer name {net.rx_if} netns {net.rx}".split())
        sh("ip", "-n", net.tx, "link", "set", net.tx_if, "up")
        sh("ip", "-n", net.rx, "link", "set", net.rx_if, "up")
        yield net
    finally:
        for ns in (net.tx, net.rx):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


@contextlib.contextmanager
def autogroup_priority(nice: int) -> Iterator[None]:
    """Run the block with this session's scheduler autogroup at ``nice``, then put it back. With
    autogroups on, CPU is shared between sessions first, and a process's own nice only ranks it
    within its session: the sender, the sniffer and tcpdump (all of this session) get their cores
    only if the session does."""
    path = Path("/proc/self/autogroup")
    try:
        before = int(path.read_text().split()[-1])  # "/autogroup-505 nice 0"
        path.write_text(str(nice))
    except (OSError, ValueError):
        yield  # no autogroups (or not allowed): the processes' own nice is all there is
        return
    try:
        yield
    finally:
        path.write_text(str(before))
