"""The resolver's hostNetwork clients: a socket scan's client on a node IP is pinned to the pod its
owning process named (UID, static pod's mirror UID, namespace/name, bare name), and what stays
ambiguous is counted."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from agent.mapper.cluster import ClusterState
from agent.mapper.resolver import KEPT_REASONS, Resolver
from agent.model import SocketConnection, TcpConnection, WorkloadIdentity

T0 = 1_700_000_000.0
NODE_IP, OTHER_NODE_IP, SERVER_IP = "192.168.1.10", "192.168.1.11", "10.244.0.30"
AGENT = WorkloadIdentity("monitoring", "node-agent", "DaemonSet")
PROXY = WorkloadIdentity("kube-system", "kube-proxy", "DaemonSet")
STATIC = WorkloadIdentity("kube-system", "etcd-node-1", "Pod")
REDIS = WorkloadIdentity("shop", "redis", "StatefulSet")
MIRROR_HASH = "3f2a9c1be0d44f6a8b7c5d2e1f0a9b8c"
UID_X1, UID_Z9 = "1b2c3d4e-0000-4000-8000-00000000aaaa", "1b2c3d4e-0000-4000-8000-00000000dddd"
UID_PROXY = "5e6f7a8b-0000-4000-8000-00000000bbbb"


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(
    namespace: str,
    name: str,
    uid: str,
    *,
    owner: tuple[str, str] | None = None,
    host_network: bool = True,
    ip: str = "",
    node_ip: str = NODE_IP,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": uid,
        "creationTimestamp": iso(T0),
        "annotations": annotations or {},
    }
    if owner is not None:
        kind, owner_name = owner
        meta["ownerReferences"] = [
            {"kind": kind, "name": owner_name, "uid": f"o-{owner_name}", "controller": True}
        ]
    return {
        "metadata": meta,
        "spec": {"nodeName": "node-1", "hostNetwork": host_network, "containers": [{"name": "c"}]},
        "status": {
            "phase": "Running",
            "podIP": node_ip if host_network else ip,
            "hostIP": node_ip,
            "startTime": iso(T0),
        },
    }


@pytest.fixture
def state() -> ClusterState:
    """Node 1 runs three hostNetwork workloads (a DaemonSet agent, kube-proxy, a static pod); node 2
    runs another agent pod; redis is a regular pod (the server)."""
    s = ClusterState()
    for namespace, name, kind in (
        ("monitoring", "node-agent", "DaemonSet"),
        ("kube-system", "kube-proxy", "DaemonSet"),
        ("shop", "redis", "StatefulSet"),
    ):
        s.apply("ADDED", kind, {"metadata": {"name": name, "namespace": namespace, "uid": f"o-{name}"}}, T0)
    for node, address in (("node-1", NODE_IP), ("node-2", OTHER_NODE_IP)):
        addresses = [{"type": "InternalIP", "address": address}]
        s.apply("ADDED", "Node", {"metadata": {"name": node}, "status": {"addresses": addresses}}, T0)
    mirror = {"kubernetes.io/config.mirror": MIRROR_HASH, "kubernetes.io/config.hash": MIRROR_HASH}
    pods = [
        pod("monitoring", "node-agent-x1", UID_X1, owner=("DaemonSet", "node-agent")),
        pod("kube-system", "kube-proxy-q7", UID_PROXY, owner=("DaemonSet", "kube-proxy")),
        pod("kube-system", "etcd-node-1", "9c8d7e6f-0000-4000-8000-00000000cccc", annotations=mirror),
        pod("monitoring", "node-agent-z9", UID_Z9, owner=("DaemonSet", "node-agent"), node_ip=OTHER_NODE_IP),
        pod(
            "shop", "redis-0", "uid-redis-0", owner=("StatefulSet", "redis"), host_network=False, ip=SERVER_IP
        ),
    ]
    for p in pods:
        s.apply("ADDED", "Pod", p, T0)
    return s


def scan(
    client_ip: str = NODE_IP, *, uid: str = "", pod_name: str = "", hostname: str = ""
) -> SocketConnection:
    return SocketConnection(client_ip, 41000, SERVER_IP, 6379, T0 + 10, hostname, uid, pod_name)


@pytest.mark.parametrize(
    ("observation", "client"),
    [
        (scan(uid=UID_X1), AGENT),
        (scan(uid=UID_PROXY), PROXY),
        (
            scan(uid=MIRROR_HASH),
            STATIC,
        ),  # a static pod: its cgroup has the kubelet's UID, the mirror's annotation
        (scan(pod_name="kube-system/kube-proxy-q7"), PROXY),
        (scan(pod_name="node-agent-x1"), AGENT),  # a bare name (the process's HOSTNAME)
        (scan(uid=UID_PROXY, pod_name="monitoring/node-agent-x1"), PROXY),  # the UID wins over a name
        # A UID of no pod of this node (a pod the mapper has not heard of yet): the name still serves.
        (scan(uid="00000000-0000-4000-8000-000000000000", pod_name="monitoring/node-agent-x1"), AGENT),
    ],
)
def test_a_named_host_network_client_is_its_pods_workload(
    state: ClusterState, observation: SocketConnection, client: WorkloadIdentity
) -> None:
    resolver = Resolver(state)
    [edge] = resolver.resolve(observation)
    assert edge.client == client and edge.target == REDIS and not edge.ambiguous
    assert not resolver.stats


def test_a_pod_of_another_node_or_no_pod_is_not_guessed(state: ClusterState) -> None:
    resolver = Resolver(state)
    # node-agent-z9 runs on node 2: a socket of node 1 cannot be its.
    assert resolver.resolve(scan(uid=UID_Z9)) == []
    assert resolver.resolve(scan(pod_name="monitoring/node-agent-z9")) == []
    assert resolver.stats == {"host_network_pod_unknown": 2}


def test_what_stays_ambiguous_is_counted(state: ClusterState) -> None:
    resolver = Resolver(state)
    # Nothing names the client (a SYN, or a scan whose owner was not found): three workloads share the IP.
    assert resolver.resolve(TcpConnection(NODE_IP, 41000, SERVER_IP, 6379, T0 + 10)) == []
    assert resolver.resolve(scan()) == []
    # A bare name that is no pod's (a real kubelet gives hostNetwork pods the node's hostname).
    assert resolver.resolve(scan(pod_name="node-1")) == []
    assert resolver.stats == {"ambiguous_host_network": 3}
    # On node 2 one workload has the IP: kept, marked ambiguous, and counted as kept.
    [edge] = resolver.resolve(scan(OTHER_NODE_IP))
    assert edge.client == AGENT and edge.ambiguous
    assert resolver.stats["ambiguous_host_network_kept"] == 1
    assert "ambiguous_host_network_kept" in KEPT_REASONS
    assert resolver.dropped() == {
        "ambiguous_host_network": 3,
        "excluded_namespace": 0,
        "internet_reporting_disabled": 0,
    }
