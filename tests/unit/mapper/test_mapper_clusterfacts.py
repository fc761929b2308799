"""ClusterState.facts(): the cluster as policies see it, from API JSON objects as the API server
sends them (pods with container ports, namespaces with labels, nodes with addresses)."""

from __future__ import annotations

from typing import Any

from agent.mapper.cluster import ClusterState
from agent.mapper.kuberecords import change, named_ports, namespace_labels
from agent.model import ClusterFacts, NamedPort, NamespaceFacts, NodeFacts, WorkloadFacts, WorkloadIdentity

T0 = 1_700_000_000.0
NODE_1, NODE_2 = "192.168.1.10", "192.168.1.11"


def replica_set(name: str, deployment: str, ns: str = "shop") -> dict[str, Any]:
    return {
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": f"uid-{name}",
            "ownerReferences": [
                {"kind": "Deployment", "name": deployment, "uid": f"uid-{deployment}", "controller": True}
            ],
        },
    }


def pod(
    name: str,
    *,
    owner: tuple[str, str] | None = None,
    labels: dict[str, str] | None = None,
    ports: list[dict[str, Any]] | None = None,
    ip: str = "",
    node: str = "node-1",
    host_ips: tuple[str, ...] = (NODE_1,),
    host_network: bool = False,
    phase: str = "Running",
    ns: str = "shop",
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns, "uid": f"uid-{name}", "labels": labels or {}}
    if owner is not None:
        kind, owner_name = owner
        meta["ownerReferences"] = [
            {"kind": kind, "name": owner_name, "uid": f"uid-{owner_name}", "controller": True}
        ]
    pod_ip = host_ips[0] if host_network else ip
    return {
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "nodeName": node,
            "hostNetwork": host_network,
            "containers": [{"name": "main", "ports": ports or []}],
        },
        "status": {
            "phase": phase,
            "podIP": pod_ip,
            "podIPs": [{"ip": pod_ip}] if pod_ip else [],
            "hostIP": host_ips[0],
            "hostIPs": [{"ip": ip} for ip in host_ips],
        },
    }


def namespace(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"kind": "Namespace", "metadata": {"name": name, "uid": f"uid-ns-{name}", "labels": labels or {}}}


def node(name: str, *addresses: tuple[str, str]) -> dict[str, Any]:
    return {
        "kind": "Node",
        "metadata": {"name": name, "uid": f"uid-node-{name}"},
        "status": {"addresses": [{"type": kind, "address": address} for kind, address in addresses]},
    }


FRONTEND = WorkloadIdentity("shop", "frontend", "Deployment")
AGENT = WorkloadIdentity("kube-system", "node-agent", "DaemonSet")
JOB = WorkloadIdentity("shop", "report", "Job")


def cluster() -> ClusterState:
    state = ClusterState()
    state.replace_all("Namespace", [namespace("shop", {"team": "web"}), namespace("kube-system")], T0)
    state.replace_all(
        "ReplicaSet", [replica_set("frontend-aaa", "frontend"), replica_set("frontend-bbb", "frontend")], T0
    )
    http = {"name": "http", "containerPort": 8080, "protocol": "TCP"}
    state.replace_all(
        "Pod",
        [
            # A rollout: the two pods differ in pod-template-hash and in one port.
            pod(
                "frontend-aaa-1",
                owner=("ReplicaSet", "frontend-aaa"),
                labels={"app": "frontend", "pod-template-hash": "aaa"},
                ports=[http, {"name": "metrics", "containerPort": 9090}],
                ip="10.244.0.11",
            ),
            pod(
                "frontend-bbb-1",
                owner=("ReplicaSet", "frontend-bbb"),
                labels={"app": "frontend", "pod-template-hash": "bbb"},
                ports=[http, {"containerPort": 8443, "protocol": "TCP"}],
                ip="10.244.1.12",
                node="node-2",
                host_ips=(NODE_2,),
            ),
            pod(
                "node-agent-x",
                owner=("DaemonSet", "node-agent"),
                labels={"app": "node-agent"},
                ports=[{"name": "dns", "containerPort": 53, "protocol": "UDP"}],
                host_network=True,
                host_ips=(NODE_1, "fd00::10"),
                ns="kube-system",
            ),
            pod(
                "report-1",
                owner=("Job", "report"),
                labels={"job": "report"},
                ip="10.244.0.99",
                phase="Succeeded",
            ),
            pod("unscheduled", labels={"app": "x"}, node="", host_ips=("",)),
        ],
        T0,
    )
    return state


def test_facts_group_current_pods_by_workload() -> None:
    facts = cluster().facts()
    workloads = {w.workload: w for w in facts.workloads}
    assert workloads[FRONTEND] == WorkloadFacts(
        FRONTEND,
        labels=(("app", "frontend"),),  # pod-template-hash differs: not shared
        ports=(NamedPort("", 8443), NamedPort("http", 8080), NamedPort("metrics", 9090)),
        host_network=False,
        ips=("10.244.0.11", "10.244.1.12"),
    )
    assert workloads[AGENT] == WorkloadFacts(
        AGENT, (("app", "node-agent"),), (NamedPort("dns", 53, "UDP"),), True, (NODE_1, "fd00::10")
    )
    # A finished Job pod keeps its labels and ports; its IP is free for another pod.
    assert workloads[JOB] == WorkloadFacts(JOB, (("job", "report"),), (), False, ())
    assert workloads[WorkloadIdentity("shop", "unscheduled", "Pod")].ips == ()
    assert list(facts.workloads) == sorted(facts.workloads)


def test_namespaces_carry_their_labels_and_their_own_name() -> None:
    facts = cluster().facts()
    assert facts.namespaces == (
        NamespaceFacts("kube-system", (("kubernetes.io/metadata.name", "kube-system"),)),
        NamespaceFacts("shop", (("kubernetes.io/metadata.name", "shop"), ("team", "web"))),
    )


def test_nodes_come_from_pods_and_from_watched_node_objects() -> None:
    state = cluster()
    assert state.facts().nodes == (NodeFacts("node-1", (NODE_1, "fd00::10")), NodeFacts("node-2", (NODE_2,)))
    state.apply(
        "ADDED",
        "Node",
        node("node-3", ("InternalIP", "192.168.1.12"), ("ExternalIP", "203.0.113.7"), ("Hostname", "node-3")),
        T0 + 1,
    )
    assert state.facts().nodes[-1] == NodeFacts("node-3", ("192.168.1.12", "203.0.113.7"))
    assert state.node_names() == [n.name for n in state.facts().nodes]  # the same, without the facts
    state.apply("DELETED", "Node", node("node-3"), T0 + 2)
    assert [n.name for n in state.facts().nodes] == ["node-1", "node-2"] == state.node_names()


def test_facts_follow_the_cluster_and_are_kept_between_writes() -> None:
    state = cluster()
    first = state.facts()
    assert state.facts() is first  # nothing changed: the same answer, not rebuilt
    state.apply("DELETED", "Pod", pod("frontend-aaa-1", owner=("ReplicaSet", "frontend-aaa")), T0 + 5)
    state.apply("MODIFIED", "Namespace", namespace("shop", {"team": "checkout"}), T0 + 5)
    state.apply("DELETED", "Namespace", namespace("kube-system"), T0 + 5)
    after = state.facts()
    frontend = next(w for w in after.workloads if w.workload == FRONTEND)
    assert frontend.ips == ("10.244.1.12",)
    assert frontend.labels == (("app", "frontend"), ("pod-template-hash", "bbb"))  # the one pod left
    assert NamedPort("metrics", 9090) not in frontend.ports
    assert after.namespaces == (
        NamespaceFacts("shop", (("kubernetes.io/metadata.name", "shop"), ("team", "checkout"))),
    )


def test_an_empty_cluster_has_empty_facts() -> None:
    assert ClusterState().facts() == ClusterFacts()


def test_container_ports_are_read_as_the_api_gives_them() -> None:
    assert named_ports(
        [
            {"containerPort": 80},
            {"name": "grpc", "containerPort": 9000, "protocol": "TCP"},
            {"name": "grpc", "containerPort": 9000, "protocol": "TCP"},  # two containers, one port
            {"name": "dns", "containerPort": 53, "protocol": "UDP"},
            {"name": "bad", "containerPort": 0},
            {"name": "text", "containerPort": "80"},
            {"name": "nothing"},
        ]
    ) == (NamedPort("", 80), NamedPort("dns", 53, "UDP"), NamedPort("grpc", 9000))
    # A namespace from an API server older than 1.21 has no kubernetes.io/metadata.name label.
    assert namespace_labels(change("ADDED", namespace("old"), T0)) == (
        ("kubernetes.io/metadata.name", "old"),
    )


def test_node_names_follow_pods_coming_moving_and_going() -> None:
    state = cluster()
    names = state.node_names()
    state.apply(
        "ADDED", "Pod", pod("batch-1", ip="10.244.9.1", node="node-9", host_ips=("192.168.1.19",)), T0 + 1
    )
    assert state.node_names() == sorted([*names, "node-9"]) == [n.name for n in state.facts().nodes]
    moved = pod("batch-1", ip="10.244.9.1", node="node-8", host_ips=("192.168.1.18",))
    state.apply("MODIFIED", "Pod", moved, T0 + 2)
    assert state.node_names() == sorted([*names, "node-8"]) == [n.name for n in state.facts().nodes]
    state.apply("DELETED", "Pod", moved, T0 + 3)
    assert state.node_names() == names == [n.name for n in state.facts().nodes]
