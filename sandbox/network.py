"""The sandbox's network: a node namespace with a bridge, pods as namespaces, kube-proxy rules.

Layout (all inside namespaces this module creates; the root namespace gets nothing)::

    nm-node   bridge nm-br0 10.244.0.1/16, ip_forward, bridge-nf-call-iptables,
              nftables table ``ip nm_proxy``: ClusterIP → endpoint DNAT (like kube-proxy)
      ├─ veth ─ nm-p<N> pod namespaces, eth0 10.244.x.y/16, default via 10.244.0.1
      ├─ veth ─ nm-inet "the Internet": 198.51.100.10/24 (+ the cloud's .20), default via 198.51.100.1
      └─ veth ─ nm-aws  "AWS" (its stand-in): 203.0.113.10/24, default via 203.0.113.1

Each name is recorded in the :class:`~sandbox.state.StateFile` before it is created so that
``down`` can remove it after any crash. Service rules are rebuilt atomically (one
``nft -f`` transaction) whenever Services or Endpoints change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sandbox import netns
from sandbox.topology import (
    AWS_GATEWAY,
    AWS_IP,
    CLOUD_IP,
    INTERNET_GATEWAY,
    INTERNET_IP,
    NODE_IP,
    SERVICE_CIDR,
)

log = logging.getLogger(__name__)

NODE_NETNS = "nm-node"
INTERNET_NETNS = "nm-inet"
AWS_NETNS = "nm-aws"
BRIDGE = "nm-br0"
NFT_TABLE = "nm_proxy"
ETC_NETNS = Path("/etc/netns")

Record = Callable[[str], None]
"""Called with a namespace name before it is created (write-ahead into the state file)."""


@dataclass(frozen=True, slots=True)
class ServiceRule:
    """One Service port: traffic to ``cluster_ip:port/protocol`` goes to one of ``endpoints``."""

    cluster_ip: str
    port: int
    protocol: str  # "tcp" | "udp"
    endpoints: tuple[tuple[str, int], ...]  # (pod ip, target port)


def _sysctl(ns: str, key: str, value: str) -> None:
    netns.run("sysctl", "-qw", f"{key}={value}", netns=ns)


def create_node(record: Record) -> None:
    """The node namespace with its bridge; idempotent."""
    if not netns.exists(NODE_NETNS):
        record(NODE_NETNS)
        netns.run("ip", "netns", "add", NODE_NETNS)
    netns.run("ip", "link", "set", "lo", "up", netns=NODE_NETNS)
    if not netns.run("ip", "-o", "link", "show", BRIDGE, netns=NODE_NETNS, check=False):
        netns.run("ip", "link", "add", BRIDGE, "type", "bridge", netns=NODE_NETNS)
        netns.run("ip", "addr", "add", f"{NODE_IP}/16", "dev", BRIDGE, netns=NODE_NETNS)
    netns.run("ip", "link", "set", BRIDGE, "up", netns=NODE_NETNS)
    # A real node reaches ClusterIPs by its default route; ours has none, so route the service
    # range to the bridge: hostNetwork processes' packets then get DNATed by the output hook.
    netns.run("ip", "route", "replace", SERVICE_CIDR, "dev", BRIDGE, netns=NODE_NETNS)
    _sysctl(NODE_NETNS, "net.ipv4.ip_forward", "1")
    # Without this, replies between pods on one bridge skip conntrack and DNAT breaks.
    _sysctl(NODE_NETNS, "net.bridge.bridge-nf-call-iptables", "1")
    # So a hostNetwork process in the node namespace can reach ClusterIPs via the output hook.
    _sysctl(NODE_NETNS, "net.ipv4.conf.all.route_localnet", "1")


def _join(ns: str, host_if: str, node_addr: str | None, pod_addr: str, gateway: str) -> None:
    # Made inside the node namespace so no link ever appears in the root namespace.
    netns.run(
        "ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", ns, netns=NODE_NETNS
    )
    if node_addr:
        netns.run("ip", "addr", "add", node_addr, "dev", host_if, netns=NODE_NETNS)
    else:
        netns.run("ip", "link", "set", host_if, "master", BRIDGE, netns=NODE_NETNS)
    netns.run("ip", "link", "set", host_if, "up", netns=NODE_NETNS)
    netns.run("ip", "link", "set", "lo", "up", netns=ns)
    netns.run("ip", "addr", "add", pod_addr, "dev", "eth0", netns=ns)
    netns.run("ip", "link", "set", "eth0", "up", netns=ns)
    netns.run("ip", "route", "add", "default", "via", gateway, netns=ns)


def create_pod_netns(record: Record, ns: str, host_if: str, ip: str) -> None:
    """A pod namespace with eth0 = ``ip``/16 bridged into the node; idempotent."""
    if netns.exists(ns):
        return
    record(ns)
    netns.run("ip", "netns", "add", ns)
    _join(ns, host_if, None, f"{ip}/16", NODE_IP)


def create_outside(record: Record, ns: str, host_if: str, gateway: str, addresses: Sequence[str]) -> None:
    """A namespace standing for a network outside the cluster, routed (not bridged) from the node:
    ``gateway``/24 on the node's side, ``addresses`` (the first is the primary) on the far side."""
    if netns.exists(ns):
        return
    record(ns)
    netns.run("ip", "netns", "add", ns)
    _join(ns, host_if, f"{gateway}/24", f"{addresses[0]}/24", gateway)
    for address in addresses[1:]:
        netns.run("ip", "addr", "add", f"{address}/24", "dev", "eth0", netns=ns)


def create_internet(record: Record) -> None:
    """The Internet (a web server, the product's cloud) and "AWS" (its stand-in's endpoints)."""
    create_outside(record, INTERNET_NETNS, "nm-inet0", INTERNET_GATEWAY, (INTERNET_IP, CLOUD_IP))
    create_outside(record, AWS_NETNS, "nm-aws0", AWS_GATEWAY, (AWS_IP,))


def write_resolv_conf(record: Record, ns: str, text: str) -> None:
    """``ip netns exec`` bind-mounts /etc/netns/<ns>/resolv.conf over /etc/resolv.conf; ``text`` is
    what the pod's DNS policy gives (:func:`sandbox.podspec.resolv_conf`)."""
    d = ETC_NETNS / ns
    if not d.exists():
        record(str(d))
        d.mkdir(parents=True)
    (d / "resolv.conf").write_text(text)
    # An empty hosts file keeps the root namespace's entries from leaking into pods.
    (d / "hosts").write_text("127.0.0.1 localhost\n")


def service_ruleset(rules: Iterable[ServiceRule]) -> str:
    """The whole kube-proxy table as one nft transaction (pure, unit-tested)."""
    lines = [
        f"table ip {NFT_TABLE}",
        f"delete table ip {NFT_TABLE}",
        f"table ip {NFT_TABLE} {{",
        "  chain services {",
    ]
    for r in sorted(rules, key=lambda r: (r.cluster_ip, r.port, r.protocol)):
        if not r.endpoints:
            # No ready endpoint: nothing to DNAT to (kube-proxy would reject; here it goes unanswered).
            continue
        match = f"    ip daddr {r.cluster_ip} {r.protocol} dport {r.port}"
        if len(r.endpoints) == 1:
            ip, port = r.endpoints[0]
            lines.append(f"{match} dnat to {ip}:{port}")
        else:
            choices = ", ".join(f"{i} : {ip} . {port}" for i, (ip, port) in enumerate(r.endpoints))
            lines.append(
                f"{match} dnat ip addr . port to numgen random mod {len(r.endpoints)} map {{ {choices} }}"
            )
    lines += [
        "  }",
        # -100 is "dstnat"; nft accepts the keyword only on prerouting, so both use the number.
        "  chain prerouting { type nat hook prerouting priority -100; policy accept; jump services; }",
        "  chain output { type nat hook output priority -100; policy accept; jump services; }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def apply_services(rules: Iterable[ServiceRule]) -> None:
    netns.run("nft", "-f", "-", netns=NODE_NETNS, input_text=service_ruleset(rules))


def delete_netns(name: str) -> None:
    """Kill what runs in the namespace, then delete it (its veth pairs go with it)."""
    if not netns.exists(name):
        return
    for pid in netns.run("ip", "netns", "pids", name, check=False).split():
        netns.run("kill", "-9", pid, check=False)
    netns.run("ip", "netns", "del", name, check=False)
