"""Regenerate the recorded DNS packets in this directory (needs root, dig and tcpdump).

    sudo .venv/bin/python tests/data/dns/make_captures.py

It creates a throwaway network namespace (removed afterwards) and runs dnslib DNS servers
in it on 127.0.0.53 and fd00:53::53 (UDP and TCP) and a pipelining TCP server on
127.0.0.54, all on port 53. It asks them with ``dig`` from fixed client addresses and
ports and records every exchange with ``tcpdump -w``: on ``lo`` (Ethernet link type) and
on ``any`` (Linux cooked v1 and v2). The packets are real kernel traffic; only the DNS
data (the zone below) is made up. ``tests/unit/sniffer/test_sniffer_dns.py`` asserts what
the parser must make of each file: change the zone, change the expectations there.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dnslib import AAAA, CNAME, QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSServer

HERE = Path(__file__).resolve().parent
# Server and client addresses differ, so tests can tell the client (the response's
# destination) from the server. fd00:53::53 is added to the namespace's lo.
SERVER4, SERVER6, PIPELINED = "@127.0.0.53", "@fd00:53::53", "127.0.0.54"
INSIDE_ENV = "NM_DNS_CAPTURE_INSIDE"

# name -> records; a CNAME is followed by the server, as a recursive resolver would.
ZONE: dict[str, list[tuple[str, str]]] = {
    "web.shop.svc.cluster.local": [("A", "10.96.0.20"), ("A", "10.96.0.21")],
    "v6only.example.org": [("AAAA", "2001:db8::1"), ("AAAA", "2001:0db8:0:0:0:ff00:0042:8329")],
    "a.chain.example": [("CNAME", "b.chain.example")],
    "b.chain.example": [("CNAME", "c.chain.example")],
    "c.chain.example": [("A", "192.0.2.33")],
    "tcp.shop.svc.cluster.local": [("A", "10.96.0.30")],
    "one.example.net": [("A", "198.51.100.1")],
    "two.example.net": [("CNAME", "one.example.net")],
    "api.example.com": [("CNAME", "api.example.com.cdn.cloudflare.net")],
    "api.example.com.cdn.cloudflare.net": [
        ("A", "104.16.132.229"),
        ("A", "104.16.133.229"),
        ("AAAA", "2606:4700::6810:84e5"),
    ],
}
TTL = {"CNAME": 300, "A": 30, "AAAA": 60}


class ZoneResolver(BaseResolver):
    def resolve(self, request: Any, handler: Any) -> Any:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".")
        owner = request.q.qname  # the first owner keeps the query's case, as servers do
        qtype = QTYPE[request.q.qtype]
        if name.lower() not in ZONE:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for _ in range(8):
            records = ZONE.get(name.lower(), [])
            cnames = [value for kind, value in records if kind == "CNAME"]
            if cnames:
                reply.add_answer(RR(owner, QTYPE.CNAME, rdata=CNAME(cnames[0]), ttl=TTL["CNAME"]))
                owner = name = cnames[0]
                continue
            for kind, value in records:
                if kind == qtype:
                    rdata = A(value) if kind == "A" else AAAA(value)
                    reply.add_answer(RR(owner, getattr(QTYPE, kind), rdata=rdata, ttl=TTL[kind]))
            break
        return reply


def _pipelined_server(sock: socket.socket) -> None:
    """DNS over TCP with pipelining (RFC 7766): answer every query read so far in one send,
    so two length-prefixed responses share one TCP segment."""
    resolver = ZoneResolver()
    while True:
        conn, _ = sock.accept()
        with conn:
            data = b""
            while len(data) < 4 or len(_split(data)[0]) < 2:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            out = b""
            for query in _split(data)[0]:
                packed = resolver.resolve(DNSRecord.parse(query), None).pack()
                out += struct.pack("!H", len(packed)) + packed
            conn.sendall(out)
            time.sleep(0.2)  # let the client close first: no FIN piggybacked on the data


def _split(data: bytes) -> tuple[list[bytes], bytes]:
    msgs = []
    while len(data) >= 2:
        (length,) = struct.unpack_from("!H", data)
        if len(data) < 2 + length:
            break
        msgs.append(data[2 : 2 + length])
        data = data[2 + length :]
    return msgs, data


def _pipelined_client(port: int) -> None:
    with socket.create_connection((PIPELINED, 53), source_address=("127.0.0.1", port)) as sock:
        payload = b""
        for qid, name in ((0x1111, "one.example.net"), (0x2222, "two.example.net")):
            query = DNSRecord.question(name, "A")
            query.header.id = qid
            packed = query.pack()
            payload += struct.pack("!H", len(packed)) + packed
        sock.sendall(payload)
        data = b""
        while len(_split(data)[0]) < 2:
            chunk = sock.recv(4096)
            if not chunk:
                raise RuntimeError("pipelined server closed early")
            data += chunk


def dig(*args: str) -> None:
    subprocess.run(["dig", "+tries=1", "+time=3", "+nocookie", *args], check=True, capture_output=True)


@dataclass
class Capture:
    file: str
    interface: str
    linktype: str | None  # tcpdump -y; None: the interface's default
    queries: list[list[str]]


CAPTURES = [
    Capture(
        "udp_a_compressed_eth.pcap",
        "lo",
        None,
        [[SERVER4, "-b", "127.0.0.1#40001", "Web.Shop.svc.cluster.local", "A"]],
    ),
    Capture(
        "udp_aaaa_eth.pcap", "lo", None, [[SERVER4, "-b", "127.0.0.1#40002", "v6only.example.org", "AAAA"]]
    ),
    Capture(
        "udp_cname_chain_eth.pcap", "lo", None, [[SERVER4, "-b", "127.0.0.1#40003", "a.chain.example", "A"]]
    ),
    Capture(
        "tcp_eth.pcap",
        "lo",
        None,
        [[SERVER4, "-b", "127.0.0.1#40004", "+tcp", "tcp.shop.svc.cluster.local", "A"]],
    ),
    Capture("tcp_pipelined_eth.pcap", "lo", None, [["pipelined", "40005"]]),
    Capture(
        "udp_external_eth.pcap",
        "lo",
        None,
        [
            [SERVER4, "-b", "127.0.0.1#40006", "api.example.com", "A"],
            [SERVER4, "-b", "127.0.0.1#40007", "api.example.com", "AAAA"],
        ],
    ),
    Capture(
        "udp_nxdomain_nodata_eth.pcap",
        "lo",
        None,
        [
            [SERVER4, "-b", "127.0.0.1#40008", "nosuch.default.svc.cluster.local", "A"],
            [SERVER4, "-b", "127.0.0.1#40009", "web.shop.svc.cluster.local", "AAAA"],
        ],
    ),
    Capture(
        "ipv6_transport_eth.pcap",
        "lo",
        None,
        [
            [SERVER6, "-b", "::1#40010", "web.shop.svc.cluster.local", "A"],
            [SERVER6, "-b", "::1#40011", "+tcp", "v6only.example.org", "AAAA"],
        ],
    ),
    Capture(
        "any_sll2.pcap",
        "any",
        "LINUX_SLL2",
        [
            [SERVER4, "-b", "127.0.0.1#40012", "a.chain.example", "A"],
            [SERVER6, "-b", "::1#40013", "v6only.example.org", "AAAA"],
        ],
    ),
    Capture(
        "any_sll.pcap",
        "any",
        "LINUX_SLL",
        [[SERVER4, "-b", "127.0.0.1#40014", "+tcp", "api.example.com", "A"]],
    ),
]


def record(capture: Capture) -> None:
    path = HERE / capture.file
    # --immediate-mode: without it packets wait up to 1 s in the ring and a stop loses them.
    cmd = ["tcpdump", "-i", capture.interface, "--immediate-mode", "-U", "-n", "-Z", "root", "-w", str(path)]
    if capture.linktype:
        cmd += ["-y", capture.linktype]
    tcpdump = subprocess.Popen([*cmd, "port 53"], stderr=subprocess.PIPE, text=True)
    assert tcpdump.stderr is not None
    for line in tcpdump.stderr:  # "listening on ...": the capture is armed
        if "listening" in line:
            break
    else:
        raise RuntimeError("tcpdump did not start")
    try:
        for query in capture.queries:
            if query[0] == "pipelined":
                _pipelined_client(int(query[1]))
            else:
                dig(*query)
        time.sleep(0.5)  # the last ACK/FIN packets
    finally:
        tcpdump.send_signal(signal.SIGINT)
        tcpdump.wait(timeout=10)
    print(f"{capture.file}: {tcpdump.stderr.read().strip().splitlines()[0]}")


def inside() -> None:
    for address in (SERVER4[1:], SERVER6[1:]):
        for tcp in (False, True):
            DNSServer(ZoneResolver(), address=address, port=53, tcp=tcp, logger=_Quiet()).start_thread()
    sock = socket.create_server((PIPELINED, 53))
    threading.Thread(target=_pipelined_server, args=(sock,), daemon=True).start()
    for capture in CAPTURES:
        record(capture)


class _Quiet:
    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def main() -> None:
    if os.environ.get(INSIDE_ENV):
        inside()
        return
    if os.geteuid() != 0:
        sys.exit("needs root: it creates a network namespace and captures packets")
    netns = f"dnscap-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", netns, "addr", "add", f"{SERVER6[1:]}/128", "dev", "lo"], check=True)
        subprocess.run(
            ["ip", "netns", "exec", netns, sys.executable, __file__],
            check=True,
            env={**os.environ, INSIDE_ENV: "1"},
        )
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=True)


if __name__ == "__main__":
    main()
