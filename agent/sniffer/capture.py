"""Live packet capture: libpcap frames → :mod:`agent.sniffer.frames` → observations.

Frames come from libpcap (through scapy's ctypes binding, no dissection) on every
interface of the network namespace the sniffer runs in (the node's, as a hostNetwork
DaemonSet), filtered in the kernel by BPF so that only DNS traffic and TCP SYNs cross into
Python. Raw bytes go to the pure :func:`~agent.sniffer.frames.parse_frame`; its
observations go to a callback (the reporter's collector). Malformed frames are counted and
skipped — one bad packet never stops the capture.

The frame source is a seam: :class:`LibpcapSource` captures live, and anything with
``linktype`` and ``read(timeout)`` (a pcap file reader in tests) can stand in for it. A source
that also counts (:class:`CountingSource`, libpcap's ``pcap_stats``) has its totals copied into
the metrics by the capture thread, so ``/metrics`` shows what the kernel dropped.
"""

from __future__ import annotations

import ctypes
import dataclasses
import importlib
import logging
import select
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol, runtime_checkable

from agent.model import DnsAnswer, TcpConnection
from agent.sniffer.errors import PacketParseError
from agent.sniffer.frames import LINKTYPES, parse_frame
from agent.sniffer.metrics import SnifferMetrics

log = logging.getLogger(__name__)

# DNS over UDP/TCP, and IPv4 TCP segments with SYN and not ACK. BPF cannot test TCP flags
# behind IPv6's variable headers, so IPv6 TCP passes whole and the parser picks the SYNs.
BPF_FILTER = "udp port 53 or tcp port 53 or (tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn) or (ip6 and tcp)"


class FrameSource(Protocol):
    linktype: int

    def read(self, timeout: float) -> Iterator[tuple[float, bytes]]:
        """Frames that arrive within ``timeout`` seconds (possibly none)."""
        ...

    def close(self) -> None: ...


@dataclasses.dataclass(frozen=True, slots=True)
class CaptureStats:
    """libpcap's totals since the handle was activated (``pcap_stats``; 32-bit, they wrap)."""

    received: int  # passed the filter; on Linux this includes the dropped ones
    dropped: int  # dropped by the kernel because the capture buffer was full (ps_drop)
    interface_dropped: int  # dropped by the interface (ps_ifdrop; Linux counts it in promiscuous mode only)


@runtime_checkable
class CountingSource(Protocol):
    def stats(self) -> CaptureStats: ...


def counter_increase(before: int, after: int, bits: int = 32) -> int:
    """How much a ``bits``-wide unsigned counter grew from ``before`` to ``after``, across a wrap."""
    return (after - before) % (1 << bits)


class CaptureError(OSError):
    """libpcap could not open or filter the capture (no permission, no such device, bad filter)."""


class LibpcapSource:
    """A libpcap handle on ``iface`` ("any" = every interface, including ones added later).

    Uses scapy's ctypes binding of libpcap (``scapy.libs.winpcapy``) directly rather than its
    socket classes: importing those pulls in the packet layers (~40 MB of RSS) that a sniffer
    which never dissects does not need.
    """

    SNAPLEN = 1600  # a whole Ethernet frame: DNS over UDP rarely exceeds 1,232 bytes (EDNS)

    def __init__(self, iface: str = "any", bpf: str = BPF_FILTER, buffer_bytes: int = 8 << 20) -> None:
        pcap: Any = importlib.import_module("scapy.libs.winpcapy")
        self._lib = pcap
        err = ctypes.create_string_buffer(pcap.PCAP_ERRBUF_SIZE)
        handle = pcap.pcap_create(iface.encode(), err)
        if not handle:
            raise CaptureError(f"pcap_create({iface}): {err.value.decode(errors='replace')}")
        self._handle: Any = handle
        pcap.pcap_set_snaplen(handle, self.SNAPLEN)
        pcap.pcap_set_timeout(handle, 100)
        # A bigger kernel ring rides out bursts while Python is busy reporting.
        pcap.pcap_set_buffer_size(handle, buffer_bytes)
        if (code := pcap.pcap_activate(handle)) < 0:
            self._fail(f"pcap_activate({iface}) returned {code}")
        program = pcap.bpf_program()
        if pcap.pcap_compile(handle, ctypes.byref(program), bpf.encode(), 1, 0xFFFFFFFF) < 0:
            self._fail(f"bad BPF filter {bpf!r}")
        try:
            if pcap.pcap_setfilter(handle, ctypes.byref(program)) < 0:
                self._fail("pcap_setfilter")
        finally:
            pcap.pcap_freecode(ctypes.byref(program))
        # Non-blocking + select: a stop request is noticed within one timeout even when idle.
        pcap.pcap_setnonblock(handle, 1, err)
        self._fd: int = pcap.pcap_get_selectable_fd(handle)
        self.linktype: int = pcap.pcap_datalink(handle)
        self._header = ctypes.POINTER(pcap.pcap_pkthdr)()
        self._data = ctypes.POINTER(ctypes.c_ubyte)()
        if self.linktype not in LINKTYPES:
            self._fail(f"unsupported link type {self.linktype} on {iface}")

    def _fail(self, what: str) -> None:
        message = self._lib.pcap_geterr(self._handle)
        self.close()
        detail = message.decode(errors="replace") if isinstance(message, bytes) else str(message or "")
        raise CaptureError(f"{what}: {detail}")

    def read(self, timeout: float) -> Iterator[tuple[float, bytes]]:
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if not ready:
            return
        next_ex, handle, header, data = self._lib.pcap_next_ex, self._handle, self._header, self._data
        while next_ex(handle, ctypes.byref(header), ctypes.byref(data)) == 1:
            h = header.contents
            yield h.ts.tv_sec + h.ts.tv_usec / 1e6, ctypes.string_at(data, h.caplen)

    def stats(self) -> CaptureStats:
        """libpcap's totals so far. Call it from the thread that reads: on Linux each call folds
        the kernel's counters (which reading resets) into the handle's, unguarded."""
        if not self._handle:
            raise CaptureError("pcap_stats on a closed handle")
        stat = self._lib.pcap_stat()
        if self._lib.pcap_stats(self._handle, ctypes.byref(stat)) < 0:
            message = self._lib.pcap_geterr(self._handle)
            detail = message.decode(errors="replace") if isinstance(message, bytes) else str(message or "")
            raise CaptureError(f"pcap_stats: {detail}")
        return CaptureStats(stat.ps_recv, stat.ps_drop, stat.ps_ifdrop)

    def close(self) -> None:
        if self._handle:
            self._lib.pcap_close(self._handle)
            self._handle = None


class PacketCapture:
    """Reads a :class:`FrameSource` until stopped, feeding observations to ``emit``; copies a
    :class:`CountingSource`'s totals into ``metrics`` every ``stats_interval`` seconds (and when
    it stops)."""

    # Under a sustained flood one read() never returns; the totals are still copied every this
    # many frames (when due), so the drop counter moves exactly when it matters.
    STATS_EVERY_FRAMES = 1024

    def __init__(
        self,
        source: FrameSource,
        emit: Callable[[DnsAnswer | TcpConnection], object],
        metrics: SnifferMetrics,
        stats_interval: float = 1.0,
    ) -> None:
        self.source = source
        self.emit = emit
        self.metrics = metrics
        self.stats_interval = stats_interval
        self._counting = source if isinstance(source, CountingSource) else None
        self._stats = CaptureStats(0, 0, 0)
        self._stats_due = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.run, name="capture", daemon=True)

    def start(self) -> PacketCapture:
        self._thread.start()
        return self

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def run(self) -> None:
        linktype = self.source.linktype
        log.info("capture started linktype=%d", linktype)
        frames = 0
        try:
            while not self._stop.is_set():
                for ts, frame in self.source.read(0.2):
                    self.handle(frame, linktype, ts)
                    frames += 1
                    if not frames % self.STATS_EVERY_FRAMES:
                        self.record_stats()
                self.record_stats()
        finally:
            self.record_stats(force=True)
            self.source.close()
            log.info("capture stopped %s", self.metrics.snapshot())

    def record_stats(self, force: bool = False) -> None:
        """Add what the source's totals grew by since the last call to the kernel counters (when due)."""
        if self._counting is None or (not force and time.monotonic() < self._stats_due):
            return
        self._stats_due = time.monotonic() + self.stats_interval
        try:
            now = self._counting.stats()
        except CaptureError as exc:
            log.warning("capture statistics unavailable: %s", exc)
            self._counting = None  # one line, not one per interval
            return
        before, self._stats = self._stats, now
        self.metrics.kernel_received.inc(counter_increase(before.received, now.received))
        self.metrics.kernel_dropped.inc(counter_increase(before.dropped, now.dropped))
        self.metrics.interface_dropped.inc(counter_increase(before.interface_dropped, now.interface_dropped))

    def handle(self, frame: bytes, linktype: int, ts: float) -> None:
        self.metrics.packets_seen.inc()
        try:
            observations = parse_frame(frame, linktype, ts)
        except PacketParseError as exc:
            # Counted (parse_errors) and logged at debug: a flood of bad packets must not flood logs.
            self.metrics.parse_errors.inc()
            log.debug("skipped malformed frame len=%d: %s", len(frame), exc)
            return
        for obs in observations:
            if isinstance(obs, DnsAnswer):
                self.metrics.dns_responses_parsed.inc()
            self.emit(obs)
