"""Sniffer memory under load: RSS after 60 s of 5,000 DNS responses/s from 1,000 clients.

Runs the real sniffer (``python -m agent.sniffer``) in a network namespace of its own, with
a veth pair inside it carrying crafted-but-real DNS response frames (dnslib-encoded, 1,000
distinct client IPs, 200 names) sent through an AF_PACKET socket at a paced 5,000/s, and a
sink GraphQL endpoint on the namespace's loopback that accepts its reports. The baseline,
measured in the same run, is the RSS of an idle interpreter that imported the same modules:
the difference is what the sniffer's state costs. Goal: ≤ 60 MB total.

Last line: ``sniffer_memory: <MB> MB RSS (baseline <MB> MB; <N> responses sent, <M> parsed)``.
"""

from __future__ import annotations

import argparse
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from dnslib import QTYPE, RR, A, DNSRecord
from mappersink import sink_server

NS = "nmbench-mem"
ROOT = Path(__file__).resolve().parents[1]
RATE = 5000
CLIENTS = 1000
# Every module the sniffer's process loads (its entry point's imports; main() does not run).
BASELINE_IMPORTS = "import sys, agent.sniffer.__main__; sys.stdin.read()"


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def frames() -> list[bytes]:
    out = []
    for i in range(CLIENTS):
        name = f"svc-{i % 200}.example.com"
        reply = DNSRecord.question(name).reply()
        reply.add_answer(RR(name, QTYPE.A, rdata=A(f"203.0.113.{i % 200}"), ttl=30))
        dns = reply.pack()
        client = socket.inet_aton(f"10.77.{i // 250}.{i % 250 + 1}")
        udp = struct.pack("!HHHH", 53, 30000 + i, 8 + len(dns), 0) + dns
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, socket.inet_aton("10.77.255.1"), client
        )
        out.append(b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + ip + udp)
    return out


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def inside(seconds: float) -> None:
    """Runs inside the namespace: sink, sniffer, traffic; prints the figure."""
    sink = sink_server()
    import threading

    threading.Thread(target=sink.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{sink.server_address[1]}/query"
    sniffer = subprocess.Popen(
        [sys.executable, "-m", "agent.sniffer", "--mapper-url", url, "--health-address", "127.0.0.1:0"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    baseline = subprocess.Popen(
        [
            sys.executable,
            "-c",
            BASELINE_IMPORTS,
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
    )
    try:
        time.sleep(3)  # let both import; the figure is read after the load, not timed
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        raw.bind(("nmb-a", 0))
        pkts = frames()
        sent = 0
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            due = int(elapsed * RATE)
            while sent < due:
                raw.send(pkts[sent % len(pkts)])
                sent += 1
            time.sleep(0.005)
        time.sleep(2)  # one more report cycle drains what is pending
        if baseline.poll() is not None:  # a baseline that died would read as 0 MB and flatter us
            raise RuntimeError(f"the baseline interpreter exited with {baseline.returncode}")
        ours, base = rss_mb(sniffer.pid), rss_mb(baseline.pid)
        metrics = subprocess.run(["ss", "-tlnp"], capture_output=True, text=True, check=True).stdout
        port = next(
            (ln.split()[3].rsplit(":", 1)[1] for ln in metrics.splitlines() if f"pid={sniffer.pid}," in ln),
            "",
        )
        parsed = "?"
        if port:
            import urllib.request

            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            parsed = next(
                (
                    ln.split()[1]
                    for ln in text.splitlines()
                    if ln.startswith("network_mapper_sniffer_dns_responses_parsed_total ")
                ),
                "?",
            )
        print(
            f"sniffer_memory: {ours:.1f} MB RSS (baseline {base:.1f} MB;"
            f" {sent} responses sent, {parsed} parsed)"
        )
    finally:
        sniffer.terminate()
        baseline.kill()
        sniffer.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        inside(args.seconds)
        return
    subprocess.run(["ip", "netns", "del", NS], capture_output=True, check=False)
    sh("ip", "netns", "add", NS)
    try:
        sh("ip", "-n", NS, "link", "set", "lo", "up")
        sh("ip", "-n", NS, "link", "add", "nmb-a", "type", "veth", "peer", "name", "nmb-b")
        sh("ip", "-n", NS, "link", "set", "nmb-a", "up")
        sh("ip", "-n", NS, "link", "set", "nmb-b", "up")
        subprocess.run(
            ["ip", "netns", "exec", NS, sys.executable, __file__, "--inside", "--seconds", str(args.seconds)],
            check=True,
        )
    finally:
        subprocess.run(["ip", "netns", "del", NS], capture_output=True, check=False)


if __name__ == "__main__":
    main()
