"""The sniffer's loss-free DNS rate on one core, beside tcpdump's on the same traffic.

Two network namespaces of this run's own (``nmb-tx-<id>``, ``nmb-rx-<id>``) are joined by a veth
pair (all deleted on the way out, Ctrl-C and SIGTERM included). This process, pinned to CPU 1,
sends real DNS responses (built once with dnslib: one A answer each, 4,096 frames of varied names,
ids and clients, UDP from port 53) through an ``AF_PACKET`` socket on the tx end at a fixed rate
for a 2 s step, paced in bursts of about half a millisecond; the rate rises step by step until a
step loses (a lossy step is tried once more before it counts), then one step halfway between
narrows it. The frames go to a MAC address nobody has: they cross the veth, where they are
captured, and the receiving IP stack drops them without answering.

The sniffer under test (:mod:`lossfree_sniffer`, a fresh process per step in the rx namespace,
pinned to CPU 0) is wired as ``agent.sniffer.__main__`` wires it, less the ``/proc`` socket scan:
the real ``LibpcapSource`` (the sniffer's BPF filter and buffer size) on the rx end,
``PacketCapture`` feeding the ``PairCollector``, and the reporters, which post to a sink that
accepts every mutation. Its figures come from its real ``/metrics``. A step is loss-free when the
kernel dropped nothing (``kernel_dropped_total``, ``interface_dropped_total``: libpcap's
``pcap_stats``), the sniffer refused nothing (``parse_errors_total``, ``pairs_dropped_total``),
every response sent was parsed (``dns_responses_parsed_total``), and it kept up: it had parsed
them all within 0.3 s (plus libpcap's 0.1 s block timeout) of the last send; otherwise the 8 MiB
buffer, not the sniffer's speed, carried the 2 s step, and a longer one would have lost.

The baseline, in the same run on the same frames and steps (interleaved with the sniffer's, so a
change in the load of this shared machine hits both): ``tcpdump -i <rx veth> -n -B <same buffer KiB>
-w /dev/null 'udp port 53'`` under ``taskset -c 0``; a step is loss-free when its "packets dropped
by kernel" line (stderr, at exit) says 0 and it captured every response sent, within 0.3 s (plus
its 1 s block timeout) of the last send, by its SIGUSR1 counts. The sender, sniffer and tcpdump
run at nice -20, and this session's scheduler autogroup too (restored after): on this shared
machine other sessions would otherwise take half of each core.

Each step prints what the sender really sent, and the CPU-seconds the process under test used
(responses per CPU-second: what a whole core would take, whatever share of CPU 0 the machine left
it). When the sender falls short of a step's rate, the sender, not the capture, was the limit and
the figure reads ">=". ``--profile`` runs the sniffer once more, under cProfile, at the rate it
first lost, and prints where its capture thread's time went. Last line: ``sniffer loss-free: <N>k
DNS responses/s on one core (tcpdump: <M>k/s on the same traffic, <r>x); goal >= 50k/s``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import math
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lossfree_sniffer import HEALTH_PORT, NICE, SNIFFER_CPU, print_profile  # noqa: E402  # bench/: run as a script
from lossfree_traffic import Net, autogroup_priority, dns_frames, network, send_step  # noqa: E402
from procfigures import cpu_seconds  # noqa: E402 - bench/: run as `python bench/<file>.py`

from sandbox.netns import entered  # noqa: E402

CHILD = Path(__file__).with_name("lossfree_sniffer.py")
SENDER_CPU = 1
RATES = (10_000, 25_000, 50_000, 75_000, 100_000, 150_000, 200_000, 300_000, 400_000, 500_000, 700_000)
STEP_SECONDS = 2.0
GOAL = 50_000
PREFIX = "network_mapper_sniffer_"
# A step also has to be kept up with: the tool must have seen every response within its libpcap
# timeout (the kernel hands over a part-filled buffer block after it: 100 ms for the sniffer's
# handle, 1 s for tcpdump's) plus this margin after the last send. Otherwise the 8 MiB buffer,
# not the tool's speed, carried the step, and a longer step would lose.
LAG_MARGIN = 0.3
SNIFFER_BLOCK_TIMEOUT, TCPDUMP_BLOCK_TIMEOUT = 0.1, 1.0
SENDER_SHORTFALL = 0.97  # a step whose sender reached less than this share of its rate was sender-bound


# --- the runs under test (parent side) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    tool: str
    rate: int
    sent: int
    send_seconds: float
    seen: int  # sniffer: responses parsed; tcpdump: packets captured
    dropped: int  # kernel + interface
    refused: int  # sniffer: parse errors + pairs refused by the bound; tcpdump: 0
    cpu_seconds: float
    lag: float  # seconds from the last send until the tool had seen every response (inf: never)
    lag_allowed: float

    @property
    def sent_rate(self) -> float:
        return self.sent / self.send_seconds

    @property
    def sender_bound(self) -> bool:
        return self.sent_rate < SENDER_SHORTFALL * self.rate

    @property
    def lossless(self) -> bool:
        kept_up = self.lag <= self.lag_allowed
        return self.dropped == 0 and self.refused == 0 and self.seen == self.sent and kept_up

    def line(self) -> str:
        verdict = "loss-free" if self.lossless else "LOST"
        bound = " (sender short of the rate)" if self.sender_bound else ""
        # Responses per CPU-second of the process under test: what one whole core would take,
        # whatever share of CPU 0 the rest of this shared machine left it during the step.
        caught = f"{self.lag:.2f}s after" if self.lag < math.inf else "never"
        per_cpu = f" ({self.seen / self.cpu_seconds / 1000:.0f}k/CPU-s)" if self.cpu_seconds >= 0.3 else ""
        return (
            f"  {self.tool:8s} step {self.rate / 1000:>5.1f}k/s: sent {self.sent} in {self.send_seconds:.2f}s"
            f" = {self.sent_rate / 1000:.1f}k/s{bound}; seen {self.seen}, kernel-dropped {self.dropped},"
            f" refused {self.refused}, caught up {caught} (<= {self.lag_allowed:.1f}s);"
            f" cpu {self.cpu_seconds:.2f}s{per_cpu} -> {verdict}"
        )


def scrape(net: Net) -> dict[str, float]:
    """The child's /metrics (a socket made inside the rx namespace), as {name: value}."""
    with entered(net.rx):
        conn = http.client.HTTPConnection("127.0.0.1", HEALTH_PORT, timeout=2)
        conn.connect()
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    return {k: float(v) for k, v in (ln.split() for ln in text.splitlines() if ln and not ln.startswith("#"))}


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if predicate():
                return True
        time.sleep(interval)
    return False


def sniffer_step(
    net: Net, sock: socket.socket, frames: list[bytes], rate: int, log: Path, profile_to: str = ""
) -> Step:
    cmd = ["ip", "netns", "exec", net.rx, sys.executable, str(CHILD), "sniffer", "--iface", net.rx_if]
    if profile_to:
        cmd += ["--profile-to", profile_to]
    with log.open("a") as err:
        child = subprocess.Popen(cmd, cwd=ROOT, stdout=err, stderr=err)
    try:
        if not wait_for(lambda: scrape(net), 30):
            raise RuntimeError(f"the sniffer did not serve /metrics; see {log}")
        pid = child.pid  # `ip netns exec` execs the command: the pid is the sniffer's
        cpu0 = cpu_seconds(pid)
        sent, took = send_step(sock, frames, rate, STEP_SECONDS)
        done, lag = time.monotonic(), math.inf
        last: dict[str, float] = {}

        def settled() -> bool:
            nonlocal last, lag
            last = scrape(net)
            received = last[f"{PREFIX}kernel_received_total"]
            parsed = last[f"{PREFIX}dns_responses_parsed_total"]
            if parsed >= sent and lag == math.inf:
                lag = time.monotonic() - done
            # The capture copies libpcap's totals every second: once they cover every packet sent,
            # the drop counters are final; then wait for the parse to catch up (or a drop to explain it).
            return received >= sent and (parsed >= sent or last[f"{PREFIX}kernel_dropped_total"] > 0)

        wait_for(settled, 15, 0.05)
        cpu = cpu_seconds(pid) - cpu0
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return Step(
        "sniffer",
        rate,
        sent,
        took,
        int(last.get(f"{PREFIX}dns_responses_parsed_total", 0)),
        int(last.get(f"{PREFIX}kernel_dropped_total", 0) + last.get(f"{PREFIX}interface_dropped_total", 0)),
        int(last.get(f"{PREFIX}parse_errors_total", 0) + last.get(f"{PREFIX}pairs_dropped_total", 0)),
        cpu,
        lag,
        SNIFFER_BLOCK_TIMEOUT + LAG_MARGIN,
    )


def tcpdump_step(net: Net, sock: socket.socket, frames: list[bytes], rate: int, buffer_kib: int) -> Step:
    with tempfile.NamedTemporaryFile("w+", prefix="bench-tcpdump-", suffix=".err") as err:
        cmd = ["ip", "netns", "exec", net.rx, "nice", "-n", str(NICE), "taskset", "-c", str(SNIFFER_CPU)]
        cmd += ["/usr/bin/tcpdump"]
        cmd += ["-i", net.rx_if, "-n", "-B", str(buffer_kib), "-w", "/dev/null", "udp port 53"]
        child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        stderr = Path(err.name)
        try:
            if not wait_for(lambda: "listening on" in stderr.read_text(), 10, 0.05):
                raise RuntimeError(f"tcpdump did not start: {stderr.read_text()}")
            cpu0 = cpu_seconds(child.pid)  # ip netns exec, nice and taskset exec: the pid is tcpdump's

            def captured() -> int:
                found = re.findall(r"(\d+) packets? captured", stderr.read_text())
                return int(found[-1]) if found else 0

            sent, took = send_step(sock, frames, rate, STEP_SECONDS)
            done, lag = time.monotonic(), math.inf

            def caught_up() -> bool:
                nonlocal lag
                child.send_signal(signal.SIGUSR1)  # tcpdump prints its counts on SIGUSR1 (Linux)
                time.sleep(0.03)
                if captured() >= sent:
                    lag = time.monotonic() - done
                    return True
                return False

            wait_for(caught_up, 5, 0.03)
            cpu = cpu_seconds(child.pid) - cpu0
        finally:
            child.send_signal(signal.SIGINT)
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        text = stderr.read_text()
    dropped = re.findall(r"(\d+) packets? dropped by kernel", text)
    if not dropped:
        raise RuntimeError(f"tcpdump printed no drop count: {text}")
    ifdropped = re.findall(r"(\d+) packets? dropped by interface", text)
    final_captured = re.findall(r"(\d+) packets? captured", text)
    return Step(
        "tcpdump",
        rate,
        sent,
        took,
        int(final_captured[-1]),
        int(dropped[-1]) + (int(ifdropped[-1]) if ifdropped else 0),
        0,
        cpu,
        lag,
        TCPDUMP_BLOCK_TIMEOUT + LAG_MARGIN,
    )


@dataclass
class Ladder:
    """One tool's climb: the highest loss-free rate so far, and whether it is still climbing."""

    tool: str
    best: int = 0
    best_sender_bound: bool = False  # the sender, not the tool, stopped the climb at ``best``
    lost_at: int = 0
    per_cpu: list[float] = field(default_factory=list)  # responses per CPU-second, per busy step

    @property
    def climbing(self) -> bool:
        return not self.lost_at and not self.best_sender_bound


def climb(ladder: Ladder, run: Callable[[int], Step], rate: int) -> None:
    """One step of ``ladder`` at ``rate``. A loss is tried once more (one hiccup of a shared machine
    is not a limit); so is a loss-free step whose sender fell short of the rate (it proved less),
    twice: a third shortfall is the sender's limit, and ends the climb."""
    losses = shortfalls = 0
    while True:
        step = run(rate)
        print(step.line() + (" (again)" if losses or shortfalls else ""), flush=True)
        if step.cpu_seconds >= 0.3:
            ladder.per_cpu.append(step.seen / step.cpu_seconds)
        if not step.lossless:
            losses += 1
            if losses == 2:
                ladder.lost_at = rate
                return
        elif step.sender_bound:
            shortfalls += 1
            if shortfalls == 3:
                ladder.best, ladder.best_sender_bound = max(ladder.best, int(step.sent_rate)), True
                return
        else:
            ladder.best = rate
            return


def shown(ladder: Ladder) -> str:
    return f"{'>=' if ladder.best_sender_bound else ''}{ladder.best / 1000:.0f}k"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--profile", action="store_true", help="profile the sniffer at the first rate it lost"
    )
    parser.add_argument(
        "--any", action="store_true", help="capture on 'any' (the sniffer's default) not the veth"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_sniffer_lossfree: needs root (network namespaces, packet sockets)", file=sys.stderr)
        return 1

    from inspect import signature

    from agent.sniffer.capture import LibpcapSource

    buffer_kib = signature(LibpcapSource).parameters["buffer_bytes"].default // 1024

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # through the finally blocks: children stopped, namespaces deleted

    signal.signal(signal.SIGTERM, on_term)
    os.sched_setaffinity(0, {SENDER_CPU})
    os.setpriority(os.PRIO_PROCESS, 0, NICE)
    frames = dns_frames()
    print(
        f"sniffer (LibpcapSource, buffer {buffer_kib} KiB, CPU {SNIFFER_CPU}) and tcpdump -B {buffer_kib}"
        f" (taskset -c {SNIFFER_CPU}); sender on CPU {SENDER_CPU}; {STEP_SECONDS:g}s steps cycling"
        f" {len(frames)} distinct DNS responses ({min(map(len, frames))}-{max(map(len, frames))} bytes);"
        f" load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    log = Path(tempfile.gettempdir()) / f"bench-sniffer-lossfree-{os.getpid()}.log"
    sniffer, tcpdump = Ladder("sniffer"), Ladder("tcpdump")
    with autogroup_priority(NICE), network() as net:
        iface = "any" if args.any else net.rx_if
        sink = subprocess.Popen(
            ["ip", "netns", "exec", net.rx, sys.executable, str(CHILD), "sink"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            with entered(net.tx):
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
            sock.bind((net.tx_if, 0))
            run_net = Net(net.tx, net.rx, net.tx_if, iface)
            runs: tuple[tuple[Ladder, Callable[[int], Step]], ...] = (
                (sniffer, lambda r: sniffer_step(run_net, sock, frames, r, log)),
                (tcpdump, lambda r: tcpdump_step(net, sock, frames, r, buffer_kib)),
            )
            for rate in RATES:
                for ladder, run in runs:
                    if ladder.climbing:
                        climb(ladder, run, rate)
            # One step halfway between the last loss-free rate and the first lossy one (5k steps).
            for ladder, run in runs:
                middle = (ladder.best + ladder.lost_at) // 10_000 * 5_000
                if ladder.lost_at and ladder.best < middle < ladder.lost_at:
                    lost_at = ladder.lost_at
                    climb(ladder, run, middle)
                    ladder.lost_at = min(ladder.lost_at, lost_at)
            if sniffer.best_sender_bound or tcpdump.best_sender_bound:
                print(
                    "the sender (a Python process, the other core) fell short of the rate: a figure marked"
                    " '>=' is loss-free up to at least that rate: the sender's limit, not the capture's"
                )
            if args.profile and sniffer.lost_at:
                profile_to = str(log.with_suffix(".prof"))
                step = sniffer_step(run_net, sock, frames, sniffer.lost_at, log, profile_to)
                print(step.line() + " (under cProfile)")
                print_profile(profile_to)
            sock.close()
        finally:
            sink.terminate()
            sink.wait(10)
    if log.exists() and not log.stat().st_size:
        log.unlink()  # the sniffer logged no warning
    elif log.exists():
        print(f"the sniffer logged warnings: {log}")
    for ladder in (sniffer, tcpdump):
        if ladder.per_cpu:
            print(
                f"{ladder.tool}: {statistics.median(ladder.per_cpu) / 1000:.0f}k responses per CPU-second"
                f" (median of {len(ladder.per_cpu)} steps using >= 0.3 CPU-s): what a core to itself takes"
            )
    ratio = sniffer.best / tcpdump.best if tcpdump.best else 0.0
    print(
        f"sniffer loss-free: {shown(sniffer)} DNS responses/s on one core"
        f" (tcpdump: {shown(tcpdump)}/s on the same traffic, {ratio:.2f}x); goal >= {GOAL // 1000}k/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
