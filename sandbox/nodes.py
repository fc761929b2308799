"""The sandbox's two nodes: which network namespace, bridge, address and pod range each has, and
which node each pod runs on (pure data and pure functions).

Used by :mod:`sandbox.network` (which builds each node's namespace and the link between them), by
:mod:`sandbox.objects` and :mod:`sandbox.chartrun` (a pod's ``spec.nodeName``, ``status.hostIP``,
Endpoints' ``nodeName``) and by :mod:`sandbox.supervisor` (where a pod's processes run). A node's
address is its bridge's (the pods' gateway), as on a node whose CNI bridge carries the node IP;
each node has a pod CIDR of its own (the node's ``spec.podCIDR``) and routes the other's through
the link between them, as a host-gateway CNI does.

Placement: the product's Deployments, the system pods and the other patterns run on the first
node; every other workload of the ecom demo (:data:`~sandbox.topology.DEMO`) runs on the second, so
that some of the demo's calls cross nodes and some do not; the product's sniffer (a DaemonSet) gets
one pod on each node.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from sandbox.topology import DEMO, NODE_IP, NODE_NAME, Workload


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    ip: str  # the node's address: its bridge's, the gateway of its pods
    netns: str  # the node's network namespace (where hostNetwork pods run)
    bridge: str
    pod_cidr: str
    pod_prefix: str  # pods get pod_prefix + N (N from 10 up)
    link: str  # this node's end of the veth to the other node

    @property
    def prefixlen(self) -> int:
        return ipaddress.ip_network(self.pod_cidr).prefixlen


FIRST_NODE = Node(NODE_NAME, NODE_IP, "nm-node", "nm-br0", "10.244.0.0/17", "10.244.1.", "nm-to-node2")
SECOND_NODE = Node(
    "sandbox-node-2", "10.244.128.1", "nm-node2", "nm-br1", "10.244.128.0/17", "10.244.129.", "nm-to-node1"
)
NODES: tuple[Node, ...] = (FIRST_NODE, SECOND_NODE)

_ON_SECOND = frozenset((w.namespace, w.name) for w in DEMO[1::2])


def node_of(w: Workload) -> Node:
    """The node a sandbox workload's pod runs on."""
    return SECOND_NODE if (w.namespace, w.name) in _ON_SECOND else FIRST_NODE


def by_name(name: str) -> Node:
    return next(n for n in NODES if n.name == name)


def node_object(node: Node) -> dict[str, Any]:
    """The Node as the kubelet registers it: its address, pod CIDR, Ready."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "labels": {
                "kubernetes.io/hostname": node.name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            },
        },
        "spec": {"podCIDR": node.pod_cidr, "podCIDRs": [node.pod_cidr]},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": node.ip},
                {"type": "Hostname", "address": node.name},
            ],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        },
    }
