"""The sandbox's network: two node namespaces with a bridge each, pods as namespaces, kube-proxy rules.

Layout (all inside namespaces this module creates; the root namespace gets nothing; the nodes'
names, addresses and pod CIDRs are in :mod:`sandbox.nodes`)::

    nm-node   bridge nm-br0 10.244.0.1/17, ip_forward, bridge-nf-call-iptables,
              nftables table ``ip nm_proxy``: ClusterIP → endpoint DNAT (like kube-proxy)
      ├─ veth ─ nm-<pod> pod namespaces, eth0 10.244.1.y/17, default via 10.244.0.1
      ├─ veth ─ nm-inet "the Internet": 198.51.100.10/24 (+ the cloud's .20), default via 198.51.100.1
      ├─ veth ─ nm-aws  "AWS" (its stand-in): 203.0.113.10/24, default via 203.0.113.1
      └─ veth ─ nm-node2 (the second node): bridge nm-br1 10.244.128.1/17, the same DNAT table,
                  └─ veth ─ its pods, eth0 10.244.129.y/17, default via 10.244.128.1

The link between the nodes carries no address of its own: each node routes the other's pod CIDR
``via`` the other's node address ``onlink`` (as a host-gateway CNI routes pod CIDRs between
nodes), and the second node's default route is the first (its way to the Internet and "AWS").

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
from sandbox.nodes import FIRST_NODE, NODES, Node
from sandbox.topology import (
    AWS_GATEWAY,
    AWS_IP,
    CLOUD_IP,
    INTERNET_GATEWAY,
    INTERNET_IP,
    SERVICE_CIDR,
)

log = logging.getLogger(__name__)

NODE_NETNS = FIRST_NODE.netns
NODE_NAMESPACES = frozenset(n.netns for n in NODES)
INTERNET_NETNS = "nm-inet"
AWS_NETNS = "nm-aws"
BRIDGE = FIRST_NODE.bridge
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


def create_node(record: Record, node: Node = FIRST_NODE) -> None:
    """A node namespace with its bridge; idempotent."""
    ns = node.netns
    if not netns.exists(ns):
        record(ns)
        netns.run("ip", "netns", "add", ns)
    netns.run("ip", "link", "set", "lo", "up", netns=ns)
    if not netns.run("ip", "-o", "link", "show", node.bridge, netns=ns, check=False):
        netns.run("ip", "link", "add", node.bridge, "type", "bridge", netns=ns)
        netns.run("ip", "addr", "add", f"{node.ip}/{node.prefixlen}", "dev", node.bridge, netns=ns)
    netns.run("ip", "link", "set", node.bridge, "up", netns=ns)
    # A real node reaches ClusterIPs by its default route; ours has none, so route the service
    # range to the bridge: hostNetwork processes' packets then get DNATed by the output hook.
    netns.run("ip", "route", "replace", SERVICE_CIDR, "dev", node.bridge, netns=ns)
    _sysctl(ns, "net.ipv4.ip_forward", "1")
    # Without this, replies between pods on one bridge skip conntrack and DNAT breaks.
    _sysctl(ns, "net.bridge.bridge-nf-call-iptables", "1")
    # So a hostNetwork process in the node namespace can reach ClusterIPs via the output hook.
    _sysctl(ns, "net.ipv4.conf.all.route_localnet", "1")
    # Packets from the other node's pods arrive on the link, whose own range is on the other side.
    _sysctl(ns, "net.ipv4.conf.all.rp_filter", "0")
    _sysctl(ns, "net.ipv4.conf.default.rp_filter", "0")


def link_nodes(first: Node, second: Node) -> None:
    """The veth between two node namespaces and each one's route to the other's pod CIDR; the
    second node's default route goes through the first (to the Internet and "AWS"). Idempotent."""
    if not netns.run("ip", "-o", "link", "show", first.link, netns=first.netns, check=False):
        netns.run(
            "ip", "link", "add", first.link, "type", "veth", "peer", "name", second.link,
            "netns", second.netns, netns=first.netns,
        )  # fmt: skip
    for node, other in ((first, second), (second, first)):
        netns.run("ip", "link", "set", node.link, "up", netns=node.netns)
        route = ("via", other.ip, "dev", node.link, "onlink", "src", node.ip)
        netns.run("ip", "route", "replace", other.pod_cidr, *route, netns=node.netns)
    netns.run(
        "ip", "route", "replace", "default", "via", first.ip, "dev", second.link, "onlink", "src", second.ip,
        netns=second.netns,
    )  # fmt: skip


def create_nodes(record: Record) -> None:
    """Every node of :data:`sandbox.nodes.NODES`, linked to the first."""
    for node in NODES:
        create_node(record, node)
    for node in NODES[1:]:
        link_nodes(FIRST_NODE, node)


def _join(
    ns: str, host_if: str, node_addr: str | None, pod_addr: str, gateway: str, *, node: Node = FIRST_NODE
) -> None:
    # Made inside the node namespace so no link ever appears in the root namespace.
    node_ns = node.netns
    netns.run(
        "ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", ns, netns=node_ns
    )
    if node_addr:
        netns.run("ip", "addr", "add", node_addr, "dev", host_if, netns=node_ns)
    else:
        netns.run("ip", "link", "set", host_if, "master", node.bridge, netns=node_ns)
    netns.run("ip", "link", "set", host_if, "up", netns=node_ns)
    netns.run("ip", "link", "set", "lo", "up", netns=ns)
    netns.run("ip", "addr", "add", pod_addr, "dev", "eth0", netns=ns)
    netns.run("ip", "link", "set", "eth0", "up", netns=ns)
    netns.run("ip", "route", "add", "default", "via", gateway, netns=ns)


def create_pod_netns(record: Record, ns: str, host_if: str, ip: str, node: Node = FIRST_NODE) -> None:
    """A pod namespace with eth0 = ``ip`` in the node's pod CIDR, bridged into ``node``; idempotent."""
    if netns.exists(ns):
        return
    record(ns)
    netns.run("ip", "netns", "add", ns)
    _join(ns, host_if, None, f"{ip}/{node.prefixlen}", node.ip, node=node)


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
    """The same kube-proxy table on every node: a ClusterIP works from pods of either."""
    text = service_ruleset(rules)
    for node in NODES:
        netns.run("nft", "-f", "-", netns=node.netns, input_text=text)


def delete_netns(name: str) -> None:
    """Kill what runs in the namespace, then delete it (its veth pairs go with it)."""
    if not netns.exists(name):
        return
    for pid in netns.run("ip", "netns", "pids", name, check=False).split():
        netns.run("kill", "-9", pid, check=False)
    netns.run("ip", "netns", "del", name, check=False)
