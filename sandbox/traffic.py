"""The demo's live-traffic view: what the pods are doing on the wire right now.

Data comes from a packet capture in the sandbox's node namespaces (every interface: the
bridge, each pod's veth and the link between the nodes), limited by BPF to DNS over UDP and TCP SYNs, plus an
``ip -> name`` map from the caller (pod IPs and ClusterIPs). Data goes to the demo's
terminal as a table of, per client pod, the DNS names it got answers for and the
connections it opened. This is a human's check on the sniffer, not the sniffer: scapy
dissects every packet, which is fine for a few seconds of demo traffic.

A packet crossing the node is seen more than once (the client's veth, the bridge, the
server's veth; the link and the other node's when it crosses nodes), and a connection to a
ClusterIP is seen before and after the DNAT: copies are folded by identity (DNS: client
address, port, query id and name; SYN: client address, port and initial sequence number,
which NAT does not change). Of a SYN's copies, the one to a ClusterIP (the Service range) is the
address dialed and the other the pod behind it, whatever order the nodes' captures delivered them in.
"""

from __future__ import annotations

import ipaddress
import itertools
import socket
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from scapy.arch.common import compile_filter, free_filter
from scapy.data import DLT_EN10MB, ETH_P_ALL, MTU, SO_ATTACH_FILTER
from scapy.layers.dns import DNS
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.libs.structures import sock_fprog
from scapy.packet import Packet
from scapy.sendrecv import sniff
from scapy.supersocket import SuperSocket

from sandbox import netns
from sandbox.topology import SERVICE_CIDR

BPF_FILTER = "udp port 53 or (tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn)"
_ADDRESS_TYPES = {1, 28}  # A, AAAA
_SYN, _ACK = 0x02, 0x10


@dataclass(frozen=True, slots=True)
class Connection:
    server: str  # "ip:port" the client dialed (a ClusterIP for a Service)
    server_name: str | None
    backend: str | None  # "ip:port" after DNAT, when the capture saw the translated copy
    backend_name: str | None
    count: int  # distinct connections (SYNs with distinct client port or sequence)


@dataclass(frozen=True, slots=True)
class ClientTraffic:
    client: str  # pod name from ``ip_to_pod``, else the IP
    dns_answers: tuple[tuple[str, tuple[str, ...]], ...]  # (name asked, addresses answered)
    connections: tuple[Connection, ...]


@dataclass(frozen=True, slots=True)
class TrafficSummary:
    seconds: float
    packets: int  # after folding copies
    clients: tuple[ClientTraffic, ...]


class _Collector:
    """Folds packets into per-client DNS answers and connections."""

    def __init__(self, ip_to_pod: Mapping[str, str], service_cidr: str = SERVICE_CIDR) -> None:
        self._names = ip_to_pod
        self._services = ipaddress.ip_network(service_cidr)
        self._seen: set[tuple[object, ...]] = set()
        self._dns: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        self._syns: dict[tuple[str, int, int], list[str]] = {}  # identity -> [dialed, translated?]

    def add(self, packet: Packet) -> None:
        if IP not in packet:
            return
        ip = packet[IP]
        if UDP in packet and DNS in packet:
            self._add_dns(ip.dst, packet[UDP].dport, packet[DNS])
        elif TCP in packet and packet[TCP].flags & (_SYN | _ACK) == _SYN:
            tcp = packet[TCP]
            destination = f"{ip.dst}:{tcp.dport}"
            copies = self._syns.setdefault((ip.src, tcp.sport, tcp.seq), [destination])
            if destination not in copies:
                copies.append(destination)  # the copy before or after DNAT

    def _add_dns(self, client: str, port: int, dns: Packet) -> None:
        # Only useful answers: the ndots:5 search list makes many NXDOMAIN responses per lookup.
        if not dns.qr or dns.rcode != 0 or not dns.qd or not dns.an:
            return
        qname = dns.qd[0].qname.decode(errors="replace").rstrip(".")
        identity = ("dns", client, port, dns.id, qname)
        if identity in self._seen:
            return
        self._seen.add(identity)
        addresses = {str(rr.rdata) for rr in dns.an if rr.type in _ADDRESS_TYPES}
        if addresses:
            self._dns[client][qname] |= addresses

    def summary(self, seconds: float) -> TrafficSummary:
        connections: dict[str, Counter[tuple[str, str | None]]] = defaultdict(Counter)
        for (client, _port, _seq), copies in self._syns.items():
            dialed = next((c for c in copies if self._is_service(c)), copies[0])
            backend = next((c for c in copies if c != dialed), None)
            connections[client][(dialed, backend)] += 1
        clients = []
        for client in sorted(set(self._dns) | set(connections), key=self._name):
            answers = tuple((name, tuple(sorted(ips))) for name, ips in sorted(self._dns[client].items()))
            conns = tuple(
                Connection(server, self._lookup(server), backend, self._lookup(backend), count)
                for (server, backend), count in sorted(connections[client].items(), key=str)
            )
            clients.append(ClientTraffic(self._name(client), answers, conns))
        packets = len(self._seen) + len(self._syns)
        return TrafficSummary(seconds, packets, tuple(clients))

    def _is_service(self, address: str) -> bool:
        return ipaddress.ip_address(address.rsplit(":", 1)[0]) in self._services

    def _name(self, ip: str) -> str:
        return self._names.get(ip, ip)

    def _lookup(self, address: str | None) -> str | None:
        return self._names.get(address.rsplit(":", 1)[0]) if address else None


def summarize(
    packets: Iterable[Packet], ip_to_pod: Mapping[str, str], seconds: float = 0.0
) -> TrafficSummary:
    """The summary of already-captured packets (e.g. from a pcap file)."""
    collector = _Collector(ip_to_pod)
    for packet in packets:
        collector.add(packet)
    return collector.summary(seconds)


class _AllInterfacesSocket(SuperSocket):
    """A packet socket bound to no interface: it receives from every interface of the
    namespace it was created in, including veths added during the capture. (scapy's own
    listening socket binds to one interface, and its libpcap "any" socket needs a global
    ``conf.use_pcap`` switch.)"""

    desc = "AF_PACKET socket on all interfaces of its network namespace"

    def __init__(self, bpf_filter: str) -> None:
        self.ins = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.outs = None
        self.iface = "any"
        # Every interface in the node namespace (bridge, veths, lo) hands out Ethernet frames.
        program = compile_filter(bpf_filter, linktype=DLT_EN10MB)
        try:
            self.ins.setsockopt(
                socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(sock_fprog(program.bf_len, program.bf_insns))
            )
        finally:
            free_filter(program)

    def recv_raw(self, x: int = MTU) -> tuple[type[Packet], bytes, float]:
        return Ether, self.ins.recv(x), time.time()


def capture(node_netns: str | Sequence[str], seconds: float, ip_to_pod: dict[str, str]) -> TrafficSummary:
    """Capture ``seconds`` of DNS answers and TCP SYNs in ``node_netns`` (one node namespace or
    several, captured together) and summarise them.

    Needs root (a packet socket and ``setns``). Blocks for ``seconds``.
    """
    collector = _Collector(ip_to_pod)
    socks: list[SuperSocket] = []
    try:
        for ns in (node_netns,) if isinstance(node_netns, str) else node_netns:
            with netns.entered(ns):
                socks.append(_AllInterfacesSocket(BPF_FILTER))  # the node namespace's for life
        sniff(opened_socket=socks, timeout=seconds, prn=collector.add, store=False)
    finally:
        for sock in socks:
            sock.close()
    return collector.summary(seconds)


def format_summary(summary: TrafficSummary) -> str:
    """A plain-text table: client pod | DNS answers | connections, one item per line."""
    rows = [("client pod", "DNS answers", "connections")]
    for client in summary.clients:
        answers = [f"{name} -> {', '.join(ips)}" for name, ips in client.dns_answers]
        conns = [_format_connection(c) for c in client.connections]
        for i, (answer, conn) in enumerate(itertools.zip_longest(answers, conns, fillvalue="")):
            rows.append((client.client if i == 0 else "", answer, conn))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    footer = f"{len(summary.clients)} client(s), {summary.packets} packet(s) in {summary.seconds:.1f}s"
    return "\n".join([*lines, footer])


def _format_connection(conn: Connection) -> str:
    text = f"{conn.server} ({conn.server_name})" if conn.server_name else conn.server
    if conn.backend:
        text += f" -> {conn.backend} ({conn.backend_name})" if conn.backend_name else f" -> {conn.backend}"
    return text + (f" x{conn.count}" if conn.count > 1 else "")
