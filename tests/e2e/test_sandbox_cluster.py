"""The sandbox as its users see it: kubectl, the real client, pods talking through ClusterIPs,
and a ``down`` that leaves nothing behind."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sandbox.topology import DEMO_NS, WORKLOADS
from tests.e2e.conftest import Sandbox

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]


def _netns_of(sb: Sandbox, namespace: str, app: str) -> str:
    return f"nm-{sb.pod(namespace, app).metadata.name}"[:64]


def test_kubectl_lists_every_pod_with_its_ip(sandbox: Sandbox) -> None:
    out = subprocess.run(
        ["kubectl", "--kubeconfig", str(sandbox.kubeconfig), "get", "pods", "-A", "-o", "wide"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    pods = sandbox.core.list_pod_for_all_namespaces().items
    assert len(pods) == len(WORKLOADS)
    for p in pods:
        line = next((ln for ln in out.splitlines() if f" {p.metadata.name} " in ln), "")
        assert p.status.pod_ip and p.status.pod_ip in line, f"{p.metadata.name} missing from:\n{out}"
        assert "Running" in line


def test_services_and_endpoints_are_published(sandbox: Sandbox) -> None:
    services = {s.metadata.name: s for s in sandbox.core.list_namespaced_service(DEMO_NS).items}
    endpoints = {e.metadata.name: e for e in sandbox.core.list_namespaced_endpoints(DEMO_NS).items}
    cart = sandbox.pod(DEMO_NS, "cartservice")
    assert services["cartservice"].spec.cluster_ip.startswith("10.96.")
    assert endpoints["cartservice"].subsets[0].addresses[0].ip == cart.status.pod_ip


CLIENT = r"""
import socket, sys
name, port = sys.argv[1], int(sys.argv[2])
ip = socket.getaddrinfo(name, port, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
s = socket.create_connection((ip, port), timeout=5)
print(ip, s.getsockname()[1], flush=True)
print(open("/proc/self/net/tcp").read(), flush=True)
print("END", flush=True)
sys.stdin.readline()  # hold the connection until the test has looked at the server
"""


def _hex_addr(ip: str, port: int) -> str:
    """An address as /proc/net/tcp prints it (little-endian IPv4, big-endian port)."""
    return socket.inet_aton(ip)[::-1].hex().upper() + f":{port:04X}"


def test_pod_reaches_a_service_by_dns_through_its_cluster_ip(sandbox: Sandbox) -> None:
    cluster_ip = sandbox.core.read_namespaced_service("cartservice", DEMO_NS).spec.cluster_ip
    server_ip = sandbox.pod(DEMO_NS, "cartservice").status.pod_ip
    client_ip = sandbox.pod(DEMO_NS, "frontend").status.pod_ip
    client_ns = _netns_of(sandbox, DEMO_NS, "frontend")
    proc = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            client_ns,
            sys.executable,
            "-c",
            CLIENT,
            f"cartservice.{DEMO_NS}.svc.cluster.local",
            "7070",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        resolved, local_port = proc.stdout.readline().split()
        tcp_table = "".join(iter(proc.stdout.readline, "END\n"))
        assert resolved == cluster_ip
        # The client's socket shows the ClusterIP, not the pod: DNAT happened on the node.
        assert f"{_hex_addr(client_ip, int(local_port))} {_hex_addr(cluster_ip, 7070)} 01" in tcp_table
        server_ns = _netns_of(sandbox, DEMO_NS, "cartservice")
        deadline = time.monotonic() + 10
        seen = ""
        while time.monotonic() < deadline:
            seen = subprocess.run(
                ["ip", "netns", "exec", server_ns, "ss", "-tnH", "state", "established"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            if f"{server_ip}:7070 {client_ip}:{local_port}" in " ".join(seen.split()):
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"server never saw {client_ip}:{local_port}; it has:\n{seen}")
        proc.stdin.write("\n")
        proc.stdin.flush()
    finally:
        proc.wait(timeout=10)


def test_non_root_gets_one_clear_line() -> None:
    result = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            sys.executable,
            "-m",
            "sandbox",
            "status",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parents[2],
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "sandbox: must run as root (it creates network namespaces and nftables rules)"
    ]


def test_live_traffic_covers_the_demo_map(sandbox: Sandbox) -> None:
    """What ``make demo`` shows: each expected edge (but the held Redis connection, which makes
    no new SYN) is seen on the node as a DNS answer and a connection to the Service."""
    from sandbox.network import NODE_NETNS
    from sandbox.topology import EXPECTED_DEMO_MAP, EXTERNAL_NAMES
    from sandbox.traffic import capture
    from sandbox.views import ip_to_pod

    names = ip_to_pod(sandbox.state_dir)
    summary = capture(NODE_NETNS, 6.0, names)
    seen: dict[str, set[str]] = {}
    for client in summary.clients:
        app = client.client.split("/")[-1].rsplit("-", 2)[0]
        for conn in client.connections:
            if conn.server_name and conn.server_name.startswith(f"svc {DEMO_NS}/"):
                seen.setdefault(app, set()).add(conn.server_name.split("/")[1])
        for name, _ in client.dns_answers:
            assert name.endswith(".svc.cluster.local") or name in EXTERNAL_NAMES, name
    expected = {c: set(s) - {"redis-cart"} for c, s in EXPECTED_DEMO_MAP.items()}
    assert {c: s for c, s in seen.items() if c in expected} == {c: s for c, s in expected.items() if s}
