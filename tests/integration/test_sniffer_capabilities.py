"""Which capabilities the sniffer really needs, shown with the real sniffer under reduced ones.

The sniffer runs as the chart runs it: uid 0 in its container (hostNetwork, hostPID) with every
capability dropped but the ones added. Here ``setpriv`` gives the process exactly that (bounding,
permitted and effective sets = the added ones, inheritable and ambient empty; checked in
``/proc/<pid>/status``), and the real ``network-mapper-sniffer`` main reports to a recording mapper.

* With NET_RAW and SYS_PTRACE only (no NET_ADMIN): a DNS response and a TCP SYN sent from a pod
  namespace across a veth are captured and reported (name → IP for the DNS client; the SYN's client
  and server), and an established connection between two other pod namespaces, held by processes of
  uid 1000, is reported by the ``/proc`` socket scan (their ``/proc/<pid>/ns/net`` and ``net/tcp``).
* The controls, so the passes above mean something: without NET_RAW the sniffer cannot capture and
  says so; without SYS_PTRACE the scan cannot tell another uid's process's namespace, and finds
  nothing of those pods.
* What NET_RAW + SYS_PTRACE does not give: the client's ``HOSTNAME`` (read from
  ``/proc/<pid>/environ``, mode 0400 owned by the pod's uid) of a pod that runs as another uid;
  DAC_READ_SEARCH adds it. The test pins both outcomes (see the chart's sniffer capabilities).

The root namespace plays the node: the pod side of the veth has the addresses, the node side is
only up (no address, no route), and the DNS response and SYN go to a neighbour that does not exist
(a static neighbour entry): they cross the veth, where the node's capture sees them, and go nowhere.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.mapper_process import free_port, wait_until
from tests.support.recording_mapper import RecordingMapper

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(
        os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("ip", "setpriv")),
        reason="needs root, iproute2 and setpriv",
    ),
]

ROOT = Path(__file__).parents[2]
TOKEN = "caps-test-token"
CAP = {"dac_read_search": 2, "net_admin": 12, "net_raw": 13, "sys_ptrace": 19}
SNIFFER_CAPS = ("net_raw", "sys_ptrace")  # the chart's sniffer container
DNS_NAME, DNS_IP = "api.payments.example.com", "93.184.216.34"
SYN_PORT, SOCKET_PORT = 8080, 5432
POD_HOSTNAME = "orders-6c9d7b-h2xq"
POD_UID = 1000
SYSTEM_PYTHON = "/usr/bin/python3"  # readable by uid 1000 (the venv's interpreter lives under /root)
DEADLINE = 20.0

# In the pod namespace, as root: one DNS response from port 53 to the (absent) DNS client, then a SYN.
SEND = """
import socket, sys
from dnslib import A, DNSHeader, DNSQuestion, DNSRecord, RR
dns_client, name, address, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
header = DNSHeader(id=4242, qr=1, aa=1, ra=1)
answer = DNSRecord(header, q=DNSQuestion(name), a=RR(name, rdata=A(address), ttl=60))
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
    udp.bind(("0.0.0.0", 53))
    udp.sendto(answer.pack(), (dns_client, 40053))
tcp = socket.socket()
tcp.setblocking(False)
tcp.connect_ex((dns_client, port))  # the SYN leaves; nobody answers
print("sent", flush=True)
"""
# In the socket-scan pods, as uid 1000: serve (connect), say so, hold the connection until stdin closes.
SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(8)
print("listening", flush=True)
held = s.accept()[0]
print("accepted", flush=True)
sys.stdin.read()
"""
CLIENT = """
import socket, sys
held = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
print(held.getsockname()[1], flush=True)
sys.stdin.read()
"""
# The sniffer's own scanner, run under reduced capabilities: our pods' connections as JSON.
SCAN = """
import json, sys, time
from pathlib import Path
from agent.sniffer.sockets import SocketScanner
ours = set(sys.argv[1:])
scanned = SocketScanner(Path("/proc")).scan(time.time()).observations
found = [o for o in scanned if {o.client_ip, o.server_ip} & ours]
print(json.dumps([[o.client_ip, o.client_port, o.server_ip, o.server_port, o.client_hostname]
                  for o in found]))
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def with_caps(caps: tuple[str, ...]) -> list[str]:
    """The command prefix of a container's root process with only ``caps``."""
    wanted = ",".join(f"+{cap}" for cap in caps)
    return [
        "setpriv",
        f"--bounding-set=-all,{wanted}" if caps else "--bounding-set=-all",
        "--inh-caps=-all",
        "--",
    ]


def cap_mask(caps: tuple[str, ...]) -> int:
    return sum(1 << CAP[cap] for cap in caps)


def capabilities(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    return {
        line.split(":")[0]: int(line.split()[1], 16) for line in status.splitlines() if line.startswith("Cap")
    }


def read_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


@dataclass
class Network:
    pod_ns: str
    pod_ip: str  # sends the DNS response and the SYN
    absent_ip: str  # the DNS client and the SYN's server: a neighbour that is not there
    client_ip: str  # the socket-scan pods
    server_ip: str
    client_port: int


@pytest.fixture(scope="module")
def network() -> Iterator[Network]:
    tag = os.getpid() % 100_000
    subnet, scan_subnet = f"10.253.{tag % 250}", f"10.254.{tag % 250}"
    pod_ns, client_ns, server_ns = (f"nmcap-{tag}-{role}" for role in ("p", "c", "s"))
    node_end = f"nmcap{tag}"
    procs: list[subprocess.Popen[str]] = []
    try:
        for netns in (pod_ns, client_ns, server_ns):
            ip("netns", "add", netns)
            ip("-n", netns, "link", "set", "lo", "up")
        # The pod's veth: its node end stays in the root namespace (the node), up, with no address.
        ip("link", "add", node_end, "type", "veth", "peer", "name", "eth0", "netns", pod_ns)
        ip("link", "set", node_end, "up")
        ip("-n", pod_ns, "addr", "add", f"{subnet}.2/24", "dev", "eth0")
        ip("-n", pod_ns, "link", "set", "eth0", "up")
        node_mac = Path(f"/sys/class/net/{node_end}/address").read_text().strip()
        ip("-n", pod_ns, "neigh", "add", f"{subnet}.9", "lladdr", node_mac, "dev", "eth0", "nud", "permanent")
        # Two pods joined directly, for the socket scan.
        ip("-n", client_ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", server_ns)
        for netns, last in ((client_ns, 1), (server_ns, 2)):
            ip("-n", netns, "addr", "add", f"{scan_subnet}.{last}/24", "dev", "eth0")
            ip("-n", netns, "link", "set", "eth0", "up")
        as_pod_user = ["setpriv", f"--reuid={POD_UID}", f"--regid={POD_UID}", "--clear-groups"]
        env = {"PATH": "/usr/bin:/bin", "HOSTNAME": POD_HOSTNAME}
        server = subprocess.Popen(
            ["ip", "netns", "exec", server_ns, *as_pod_user, SYSTEM_PYTHON, "-c", SERVER, str(SOCKET_PORT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        procs.append(server)
        assert read_line(server) == "listening"
        client = subprocess.Popen(
            ["ip", "netns", "exec", client_ns, *as_pod_user, SYSTEM_PYTHON, "-c", CLIENT]
            + [f"{scan_subnet}.2", str(SOCKET_PORT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        procs.append(client)
        client_port = int(read_line(client))
        assert read_line(server) == "accepted"
        yield Network(
            pod_ns, f"{subnet}.2", f"{subnet}.9", f"{scan_subnet}.1", f"{scan_subnet}.2", client_port
        )
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        subprocess.run(["ip", "link", "del", node_end], check=False, capture_output=True)
        for netns in (pod_ns, client_ns, server_ns):
            subprocess.run(["ip", "netns", "del", netns], check=False, capture_output=True)


@dataclass
class Sniffer:
    process: subprocess.Popen[str]
    mapper: RecordingMapper
    health: str

    def calls(self, field: str) -> list[dict[str, Any]]:
        """Every reported source (``srcIp``, ``srcHostname``, ``destinations``) of ``field``."""
        return [
            src
            for call in self.mapper.recorded()
            if call.field == field
            for src in call.variables["results"]["results"]
        ]


@pytest.fixture
def sniffer(request: pytest.FixtureRequest) -> Iterator[Callable[[tuple[str, ...]], Sniffer]]:
    started: list[Sniffer] = []

    def start(caps: tuple[str, ...]) -> Sniffer:
        mapper = RecordingMapper(token=TOKEN).start()
        port = free_port()
        env = {
            **os.environ,
            "OTTERIZE_MAPPER_API": mapper.url,
            "NETWORK_MAPPER_TOKEN": TOKEN,
            "SNIFFER_HEALTH_ADDRESS": f"127.0.0.1:{port}",
            "SNIFFER_REPORT_INTERVAL": "0.2",
            "SNIFFER_SOCKET_SCAN_INTERVAL": "0.2",
        }
        process = subprocess.Popen(
            [*with_caps(caps), sys.executable, "-m", "agent.sniffer"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        running = Sniffer(process, mapper, f"http://127.0.0.1:{port}/healthz")
        started.append(running)
        return running

    yield start
    for running in started:
        running.process.terminate()
        try:
            running.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            running.process.kill()
            running.process.wait()
        running.mapper.stop()


def healthy(sniffer: Sniffer) -> bool:
    if sniffer.process.poll() is not None:
        out, err = sniffer.process.communicate()
        pytest.fail(f"the sniffer exited {sniffer.process.returncode}: {err[-2000:]}{out[-2000:]}")
    try:
        return requests.get(sniffer.health, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def test_capture_and_socket_scan_need_only_net_raw_and_sys_ptrace(
    network: Network, sniffer: Callable[[tuple[str, ...]], Sniffer]
) -> None:
    running = sniffer(SNIFFER_CAPS)
    wait_until(lambda: healthy(running), DEADLINE, "the sniffer's /healthz")
    caps = capabilities(running.process.pid)
    assert caps["CapBnd"] == caps["CapPrm"] == caps["CapEff"] == cap_mask(SNIFFER_CAPS), caps
    assert caps["CapInh"] == caps["CapAmb"] == 0
    assert not caps["CapEff"] & (1 << CAP["net_admin"] | 1 << CAP["dac_read_search"])

    # The capture is open (/healthz answers after libpcap is activated): the packets cross the veth.
    sent = subprocess.run(
        ["ip", "netns", "exec", network.pod_ns, sys.executable, "-c", SEND]
        + [network.absent_ip, DNS_NAME, DNS_IP, str(SYN_PORT)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert sent.stdout.strip() == "sent"

    def dns_reported() -> bool:
        return any(
            src["srcIp"] == network.absent_ip
            and any(
                d["destination"] == DNS_NAME and d.get("destinationIP") == DNS_IP for d in src["destinations"]
            )
            for src in running.calls("reportCaptureResults")
        )

    def syn_reported() -> bool:
        return any(
            src["srcIp"] == network.pod_ip
            and any(
                d["destination"] == network.absent_ip and d.get("destinationPort") == SYN_PORT
                for d in src["destinations"]
            )
            for src in running.calls("reportTCPCaptureResults")
        )

    def scan_reported() -> list[dict[str, Any]]:
        return [
            src
            for src in running.calls("reportSocketScanResults")
            if src["srcIp"] == network.client_ip
            and any(
                d["destination"] == network.server_ip and d.get("destinationPort") == SOCKET_PORT
                for d in src["destinations"]
            )
        ]

    wait_until(dns_reported, DEADLINE, f"the DNS answer {DNS_NAME} → {DNS_IP} for {network.absent_ip}")
    wait_until(syn_reported, DEADLINE, f"the SYN {network.pod_ip} → {network.absent_ip}:{SYN_PORT}")
    found = wait_until(scan_reported, DEADLINE, "the uid-1000 pods' connection from the socket scan")
    # The pod runs as another uid: its environ (mode 0400) is out of reach without DAC_READ_SEARCH.
    assert {src["srcHostname"] for src in found} == {""}


def test_without_net_raw_the_sniffer_cannot_capture(sniffer: Callable[[tuple[str, ...]], Sniffer]) -> None:
    running = sniffer(("sys_ptrace",))
    out, err = running.process.communicate(timeout=60)
    assert running.process.returncode == 1, out + err
    assert "cannot capture" in err and "CAP_NET_RAW" in err


def scan(caps: tuple[str, ...] | None, network: Network) -> list[list[Any]]:
    """Our pods' connections as the scanner finds them with ``caps`` (None: all of root's)."""
    prefix = [] if caps is None else with_caps(caps)
    result = subprocess.run(
        [*prefix, sys.executable, "-c", SCAN, network.client_ip, network.server_ip],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_socket_scan_needs_sys_ptrace_and_the_hostname_dac_read_search(network: Network) -> None:
    connection = [network.client_ip, network.client_port, network.server_ip, SOCKET_PORT]
    assert scan(("net_raw",), network) == []  # another uid's /proc/<pid>/ns/net: EACCES
    assert scan(SNIFFER_CAPS, network) == [[*connection, ""]]
    assert scan((*SNIFFER_CAPS, "dac_read_search"), network) == [[*connection, POD_HOSTNAME]]
    assert scan(None, network) == [[*connection, POD_HOSTNAME]]  # all of root's: nothing more
