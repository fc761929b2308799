"""ClusterState from hand-built API JSON dicts: identities, the time-indexed IP history, services."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from agent.mapper.cluster import ClusterState
from agent.model import WorkloadIdentity

T0 = 1_700_000_000.0
NS = "shop"
NODE_IP = "192.168.1.10"


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ref(kind: str, name: str, uid: str | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": kind, "name": name, "uid": uid or f"uid-{name}", "controller": True}


def owner(kind: str, name: str, parent: dict[str, Any] | None = None, ns: str = NS) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns, "uid": f"uid-{name}"}
    if parent is not None:
        meta["ownerReferences"] = [parent]
    return {"kind": kind, "metadata": meta}


def pod(
    name: str,
    ip: str = "",
    *,
    ns: str = NS,
    created: float = T0,
    parent: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    host_network: bool = False,
    phase: str = "Running",
    ports: tuple[int, ...] = (),
    uid: str | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": ns,
        "uid": uid or f"uid-{name}",
        "creationTimestamp": iso(created),
        "labels": labels or {},
        "annotations": annotations or {},
    }
    if parent is not None:
        meta["ownerReferences"] = [parent]
    return {
        "metadata": meta,
        "spec": {
            "nodeName": "node-1",
            "hostNetwork": host_network,
            "containers": [{"name": "main", "ports": [{"containerPort": p} for p in ports]}],
        },
        "status": {
            "phase": phase,
            "podIP": NODE_IP if host_network else ip,
            "hostIP": NODE_IP,
            "startTime": iso(created),
        },
    }


def service(
    name: str, cluster_ip: str, *, ns: str = NS, created: float = T0, uid: str | None = None, **spec: Any
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": uid or f"svc-{name}",
            "creationTimestamp": iso(created),
        },
        "spec": {"clusterIP": cluster_ip, **spec},
    }


def endpoints(name: str, *pods: dict[str, Any], ns: str = NS) -> dict[str, Any]:
    addresses = [
        {
            "ip": p["status"]["podIP"],
            "targetRef": {
                "kind": "Pod",
                "name": p["metadata"]["name"],
                "namespace": ns,
                "uid": p["metadata"]["uid"],
            },
        }
        for p in pods
    ]
    return {
        "metadata": {"name": name, "namespace": ns},
        "subsets": [{"addresses": addresses}] if addresses else [],
    }


def ident(name: str, kind: str, ns: str = NS) -> WorkloadIdentity:
    return WorkloadIdentity(ns, name, kind)


def deployment_pod(
    state: ClusterState, deployment: str, pod_name: str, ip: str, created: float = T0
) -> dict[str, Any]:
    state.apply("ADDED", "Deployment", owner("Deployment", deployment), created)
    rs = f"{deployment}-5d9c"
    state.apply("ADDED", "ReplicaSet", owner("ReplicaSet", rs, ref("Deployment", deployment)), created)
    obj = pod(pod_name, ip, created=created, parent=ref("ReplicaSet", rs))
    state.apply("ADDED", "Pod", obj, created)
    return obj


# -- identity -------------------------------------------------------------------------------------


def test_deployment_identity_through_replicaset() -> None:
    state = ClusterState()
    deployment_pod(state, "web", "web-5d9c-x1", "10.244.0.5")
    assert state.pod_at("10.244.0.5", T0 + 1).identity == ident("web", "Deployment")  # type: ignore[union-attr]


def test_cronjob_identity_through_job() -> None:
    state = ClusterState()
    state.apply("ADDED", "CronJob", owner("CronJob", "backup"), T0)
    state.apply("ADDED", "Job", owner("Job", "backup-28000", ref("CronJob", "backup")), T0)
    state.apply("ADDED", "Pod", pod("backup-28000-abc", "10.244.0.6", parent=ref("Job", "backup-28000")), T0)
    assert state.pod_at("10.244.0.6", T0).identity == ident("backup", "CronJob")  # type: ignore[union-attr]


def test_statefulset_daemonset_and_bare_pod() -> None:
    state = ClusterState()
    state.apply("ADDED", "StatefulSet", owner("StatefulSet", "redis"), T0)
    state.apply("ADDED", "DaemonSet", owner("DaemonSet", "agent"), T0)
    state.apply("ADDED", "Pod", pod("redis-0", "10.244.0.7", parent=ref("StatefulSet", "redis")), T0)
    state.apply("ADDED", "Pod", pod("agent-x", "10.244.0.8", parent=ref("DaemonSet", "agent")), T0)
    state.apply("ADDED", "Pod", pod("debug", "10.244.0.9"), T0)
    assert state.pod_at("10.244.0.7", T0).identity == ident("redis", "StatefulSet")  # type: ignore[union-attr]
    assert state.pod_at("10.244.0.8", T0).identity == ident("agent", "DaemonSet")  # type: ignore[union-attr]
    assert state.pod_at("10.244.0.9", T0).identity == ident("debug", "Pod")  # type: ignore[union-attr]


def test_label_beats_annotation_beats_owner_and_keeps_the_root_kind() -> None:
    state = ClusterState()
    state.apply("ADDED", "Deployment", owner("Deployment", "web"), T0)
    state.apply("ADDED", "ReplicaSet", owner("ReplicaSet", "web-1", ref("Deployment", "web")), T0)
    both = pod(
        "web-1-a",
        "10.244.0.10",
        parent=ref("ReplicaSet", "web-1"),
        labels={"otterize/service-name": "frontend"},
        annotations={"intents.otterize.com/workload-name": "ignored"},
    )
    annotated = pod(
        "web-1-b",
        "10.244.0.11",
        parent=ref("ReplicaSet", "web-1"),
        annotations={"intents.otterize.com/workload-name": "storefront"},
    )
    state.apply("ADDED", "Pod", both, T0)
    state.apply("ADDED", "Pod", annotated, T0)
    assert state.pod_at("10.244.0.10", T0).identity == ident("frontend", "Deployment")  # type: ignore[union-attr]
    assert state.pod_at("10.244.0.11", T0).identity == ident("storefront", "Deployment")  # type: ignore[union-attr]


def test_missing_owner_uses_deepest_known_then_reresolves_when_it_arrives() -> None:
    state = ClusterState()
    state.apply("ADDED", "Pod", pod("web-1-a", "10.244.0.12", parent=ref("ReplicaSet", "web-1")), T0)
    assert state.pod_at("10.244.0.12", T0).identity == ident("web-1", "ReplicaSet")  # type: ignore[union-attr]
    state.apply("ADDED", "ReplicaSet", owner("ReplicaSet", "web-1", ref("Deployment", "web")), T0 + 1)
    # The Deployment itself is not known yet, but the ReplicaSet's reference names it.
    assert state.pod_at("10.244.0.12", T0).identity == ident("web", "Deployment")  # type: ignore[union-attr]
    assert state.labels_of(ident("web", "Deployment")) == {}
    assert state.workload_kind(NS, "web") == "Deployment"
    # A deleted ReplicaSet (finished rollout) does not rename its terminating pods.
    state.apply("DELETED", "ReplicaSet", owner("ReplicaSet", "web-1"), T0 + 2)
    assert state.pod_at("10.244.0.12", T0).identity == ident("web", "Deployment")  # type: ignore[union-attr]


def test_status_only_owner_updates_do_not_change_identities() -> None:
    state = ClusterState()
    deployment_pod(state, "web", "web-5d9c-x1", "10.244.0.5")
    rs = owner("ReplicaSet", "web-5d9c", ref("Deployment", "web"))
    rs["status"] = {"replicas": 3}
    state.apply("MODIFIED", "ReplicaSet", rs, T0 + 5)
    assert state.pod_at("10.244.0.5", T0 + 6).identity == ident("web", "Deployment")  # type: ignore[union-attr]


# -- IP history -----------------------------------------------------------------------------------


def test_ip_reuse_resolves_by_observation_time() -> None:
    state = ClusterState()
    a = deployment_pod(state, "cart", "cart-a", "10.244.1.1", created=T0)
    state.apply("DELETED", "Pod", a, T0 + 100)
    deployment_pod(state, "checkout", "checkout-b", "10.244.1.1", created=T0 + 200)
    assert state.pod_at("10.244.1.1", T0 + 50).identity == ident("cart", "Deployment")  # type: ignore[union-attr]
    assert state.pod_at("10.244.1.1", T0 + 150) is None
    assert state.pod_at("10.244.1.1", T0 + 250).identity == ident("checkout", "Deployment")  # type: ignore[union-attr]
    assert state.pod_at("10.244.1.1", T0 - 1) is None  # before anyone had it


def test_observation_older_than_creation_is_never_attributed() -> None:
    state = ClusterState()
    state.apply("ADDED", "Pod", pod("late", "10.244.1.2", created=T0 + 100), T0 + 100)
    assert state.pod_at("10.244.1.2", T0 + 99) is None
    assert state.pod_at("10.244.1.2", T0 + 100) is not None


def test_ip_assigned_after_creation_starts_at_start_time_and_newest_claim_wins() -> None:
    state = ClusterState()
    state.apply("ADDED", "Pod", pod("old", "10.244.1.3", created=T0), T0)
    # "new" was created while "old" still existed (terminating); it got the IP at its startTime.
    new = pod("new", "", created=T0 + 10)
    new["status"].pop("startTime")
    state.apply("ADDED", "Pod", new, T0 + 10)
    assert state.pod_at("10.244.1.3", T0 + 15).name == "old"  # type: ignore[union-attr]
    new["status"].update(podIP="10.244.1.3", startTime=iso(T0 + 20))
    state.apply("MODIFIED", "Pod", new, T0 + 21)
    assert state.pod_at("10.244.1.3", T0 + 15).name == "old"  # type: ignore[union-attr]
    assert state.pod_at("10.244.1.3", T0 + 25).name == "new"  # type: ignore[union-attr]
    state.apply("DELETED", "Pod", pod("old", "10.244.1.3", created=T0), T0 + 30)
    assert state.pod_at("10.244.1.3", T0 + 35).name == "new"  # type: ignore[union-attr]


def test_finished_pod_frees_its_ip_while_the_object_stays() -> None:
    state = ClusterState()
    done = pod("job-a", "10.244.1.4", phase="Succeeded")
    done["status"]["containerStatuses"] = [{"state": {"terminated": {"finishedAt": iso(T0 + 30)}}}]
    state.apply("ADDED", "Pod", done, T0 + 60)
    assert state.pod_at("10.244.1.4", T0 + 10).name == "job-a"  # type: ignore[union-attr]
    assert state.pod_at("10.244.1.4", T0 + 40) is None


def test_host_network_pods_are_indexed_by_node_not_ip() -> None:
    state = ClusterState()
    state.apply("ADDED", "Pod", pod("kube-proxy-x", host_network=True, ports=(10256,)), T0)
    assert state.pod_at(NODE_IP, T0 + 1) is None
    assert [p.name for p in state.host_network_pods(NODE_IP, T0 + 1)] == ["kube-proxy-x"]
    assert [p.name for p in state.pods_on_node_port(NODE_IP, 10256, T0 + 1)] == ["kube-proxy-x"]
    assert state.pods_on_node_port(NODE_IP, 80, T0 + 1) == []
    assert state.host_network_pods(NODE_IP, T0 - 1) == []
    assert state.is_node_ip(NODE_IP)


def test_replace_all_deletes_missing_objects_and_prune_forgets_them() -> None:
    state = ClusterState(retention=600)
    state.replace_all("Pod", [pod("a", "10.244.2.1"), pod("b", "10.244.2.2")], T0)
    state.replace_all("Pod", [pod("b", "10.244.2.2")], T0 + 100)
    assert state.pod_at("10.244.2.1", T0 + 50).name == "a"  # type: ignore[union-attr]
    assert state.pod_at("10.244.2.1", T0 + 150) is None
    assert state.pod_named(NS, "a") is None
    state.prune(T0 + 100 + 601)
    assert state.pod_at("10.244.2.1", T0 + 50) is None
    assert not state.is_known_ip("10.244.2.1")
    assert state.pod_at("10.244.2.2", T0 + 800) is not None


# -- services -------------------------------------------------------------------------------------


def test_service_targets_from_endpoints_and_slices() -> None:
    state = ClusterState()
    web = deployment_pod(state, "web", "web-a", "10.244.3.1")
    api = deployment_pod(state, "api", "api-a", "10.244.3.2")
    state.apply("ADDED", "Service", service("web", "10.96.0.10"), T0)
    state.apply("ADDED", "Endpoints", endpoints("web", web), T0)
    svc = state.service_at_ip("10.96.0.10", T0 + 1)
    assert svc is not None and svc.name == "web"
    assert state.service_targets(svc) == (ident("web", "Deployment"),)
    endpoint = {
        "addresses": ["10.244.3.2"],
        "targetRef": {"kind": "Pod", "name": "api-a", "namespace": NS, "uid": "uid-api-a"},
    }
    slice_obj = {
        "metadata": {"name": "web-x1", "namespace": NS, "labels": {"kubernetes.io/service-name": "web"}},
        "endpoints": [endpoint],
    }
    state.apply("ADDED", "EndpointSlice", slice_obj, T0 + 2)
    assert state.service_targets(svc) == (ident("api", "Deployment"), ident("web", "Deployment"))
    assert api["metadata"]["name"] == "api-a"


def test_service_selector_fallback_and_last_known_targets() -> None:
    state = ClusterState()
    web = pod("web-a", "10.244.3.5", labels={"app": "web"})
    state.apply("ADDED", "Pod", web, T0)
    state.apply("ADDED", "Service", service("web", "10.96.0.11", selector={"app": "web"}), T0)
    svc = state.service_named(NS, "web", T0 + 1)
    assert svc is not None
    assert state.service_targets(svc) == (ident("web-a", "Pod"),)
    state.apply("DELETED", "Pod", web, T0 + 10)
    assert state.service_targets(svc) == (ident("web-a", "Pod"),)  # last known, not nothing


def test_cluster_ip_reuse_and_service_name_history() -> None:
    state = ClusterState()
    state.apply("ADDED", "Service", service("old", "10.96.0.12", uid="s1"), T0)
    state.apply("DELETED", "Service", service("old", "10.96.0.12", uid="s1"), T0 + 100)
    state.apply("ADDED", "Service", service("new", "10.96.0.12", uid="s2", created=T0 + 200), T0 + 200)
    assert state.service_at_ip("10.96.0.12", T0 + 50).name == "old"  # type: ignore[union-attr]
    assert state.service_at_ip("10.96.0.12", T0 + 150) is None
    assert state.service_at_ip("10.96.0.12", T0 + 250).name == "new"  # type: ignore[union-attr]
    assert state.service_named(NS, "old", T0 + 50) is not None
    assert state.service_named(NS, "old", T0 + 150) is None


def test_headless_and_namespaces_and_labels() -> None:
    state = ClusterState()
    state.apply("ADDED", "Service", service("db", "None"), T0)
    state.apply("ADDED", "Namespace", {"metadata": {"name": "kube-system", "uid": "ks-uid"}}, T0)
    state.apply("ADDED", "Pod", pod("db-0", "10.244.4.1", labels={"app": "db", "tier": "data"}), T0)
    svc = state.service_named(NS, "db", T0)
    assert svc is not None and svc.headless and svc.cluster_ips == ()
    assert state.namespace_uid("kube-system") == "ks-uid"
    assert state.labels_of(ident("db-0", "Pod")) == {"app": "db", "tier": "data"}


def test_readers_run_while_the_writer_applies() -> None:
    state = ClusterState()
    stop = threading.Event()
    errors: list[BaseException] = []

    def read() -> None:
        try:
            while not stop.is_set():
                state.pod_at("10.244.9.1", T0 + 5)
                state.host_network_pods(NODE_IP, T0 + 5)
        except BaseException as error:
            errors.append(error)

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(500):
        state.apply("ADDED", "Pod", pod(f"p{i}", f"10.244.9.{i % 250 + 1}", created=T0 + i), T0 + i)
    stop.set()
    reader.join()
    assert not errors


# -- the split modules ----------------------------------------------------------------------------


def test_cluster_module_still_exports_its_records() -> None:
    from agent.mapper import cluster, kuberecords

    assert cluster.PodInfo is kuberecords.PodInfo and cluster.ServiceInfo is kuberecords.ServiceInfo
    assert cluster.RETENTION_SECONDS == 3600.0


def test_history_spans_newest_claim_wins_and_whole_second_handover() -> None:
    from agent.mapper.history import INF, History

    history = History()
    history.add(T0, "a")
    history.add(T0 + 10, "b")  # b claims the IP: a's span ends there
    assert [(s.key, s.start, s.end) for s in history.data[1]] == [("a", T0, T0 + 10), ("b", T0 + 10, INF)]
    history.end("b", T0 + 20.4)
    history.add(T0 + 20, "c")  # truncated to the second: b was still the holder until 20.4
    assert history.span_at(T0 + 20.2).key == "b"  # type: ignore[union-attr]
    assert history.span_at(T0 + 20.5).key == "c"  # type: ignore[union-attr]
    assert history.span_at(T0 - 1) is None
    assert not history.prune(T0 + 15)  # a ended before the cutoff: dropped
    assert [s.key for s in history.data[1]] == ["b", "c"] and history.data[0] == [T0 + 10, T0 + 20.4]
    history.end("c", T0 + 30)
    assert history.prune(T0 + 31)


def test_kuberecords_read_api_dicts() -> None:
    from agent.mapper import kuberecords

    obj = pod("web-a", "10.244.5.1", created=T0, parent=ref("ReplicaSet", "web-1"), ports=(8080,))
    obj["metadata"]["labels"] = {"otterize/service-name": "storefront"}
    obj["status"]["startTime"] = iso(T0 + 3)
    read = kuberecords.read_pod(kuberecords.change("ADDED", obj, T0 + 5), None)
    assert (read.pod.ip, read.pod.host_ip, read.pod.container_ports, read.pod.host_ports) == (
        "10.244.5.1",
        NODE_IP,
        (8080,),
        (),
    )
    assert read.ref == ("ReplicaSet", "web-1", "uid-web-1") and read.start == T0 + 3
    assert read.finished_at is None and read.pod.hostname == "web-a"
    named = kuberecords.workload_name(read.pod.labels, read.pod.annotations, "web", "a.example/name")
    assert named == "storefront"
    done = pod("job-a", "10.244.5.2", phase="Failed")
    assert kuberecords.read_pod(kuberecords.change("MODIFIED", done, T0 + 9), None).finished_at == T0 + 9
    headless = kuberecords.read_service(kuberecords.change("ADDED", service("db", "None"), T0), None)
    assert headless.headless and headless.cluster_ips == () and headless.created_at == T0
    web = pod("web-b", "10.244.5.3")
    assert kuberecords.endpoint_refs(endpoints("web", web), NS) == (("uid-web-b", NS, "web-b", "10.244.5.3"),)
    slice_obj = {
        "metadata": {"name": "web-x", "namespace": NS, "labels": {"kubernetes.io/service-name": "web"}},
        "endpoints": [{"addresses": ["10.244.5.3"], "targetRef": {"name": "web-b", "uid": "u"}}],
    }
    assert kuberecords.slice_refs(kuberecords.change("ADDED", slice_obj, T0)) == (
        "web",
        (("u", NS, "web-b", "10.244.5.3"),),
    )
    assert kuberecords.object_key("Endpoints", slice_obj) == f"{NS}/web-x"
    assert kuberecords.object_key("Pod", web) == "uid-web-b"
    assert kuberecords.timestamp("not a time", 1.0) == 1.0 and kuberecords.timestamp(iso(T0), 0.0) == T0
    node = {"status": {"addresses": [{"type": "InternalIP", "address": "192.168.1.2"}, {"type": "Hostname"}]}}
    assert kuberecords.node_addresses(node) == ["192.168.1.2"]


def test_owner_tree_roots_and_pods_below() -> None:
    from agent.mapper import kuberecords
    from agent.mapper.owners import OwnerTree

    tree = OwnerTree()
    rs_ref = ("ReplicaSet", "web-1", "uid-web-1")
    tree.set_pod("uid-web-a", rs_ref)
    assert tree.root(rs_ref) == ("ReplicaSet", "web-1") and tree.root(None) is None
    rs = owner("ReplicaSet", "web-1", ref("Deployment", "web"))
    assert tree.apply("ReplicaSet", kuberecords.change("ADDED", rs, T0))
    assert not tree.apply("ReplicaSet", kuberecords.change("MODIFIED", rs, T0 + 1))  # nothing changed
    assert tree.apply("Deployment", kuberecords.change("ADDED", owner("Deployment", "web"), T0))
    assert tree.root(rs_ref) == ("Deployment", "web") and tree.root_kind(NS, "web") == "Deployment"
    assert list(tree.pods_below("uid-web", lambda uid: uid.startswith("uid-web-a"))) == ["uid-web-a"]
    tree.forget_pod("uid-web-a")
    assert tree.pod_ref("uid-web-a") is None
    assert list(tree.pods_below("uid-web", lambda uid: uid == "uid-web-a")) == []
    # A cycle (never valid, but the API does not forbid it) ends at the depth guard.
    tree.apply(
        "ReplicaSet", kuberecords.change("ADDED", owner("ReplicaSet", "x", ref("ReplicaSet", "y")), T0)
    )
    tree.apply(
        "ReplicaSet", kuberecords.change("ADDED", owner("ReplicaSet", "y", ref("ReplicaSet", "x")), T0)
    )
    assert tree.root(("ReplicaSet", "x", "uid-x")) is not None
    assert len(tree) == 4


def test_kafka_broker_pod_by_name_is_its_statefulset() -> None:
    state = ClusterState()
    state.apply("ADDED", "StatefulSet", owner("StatefulSet", "kafka"), T0)
    state.apply("ADDED", "Pod", pod("kafka-0", "10.244.6.1", parent=ref("StatefulSet", "kafka")), T0)
    found = state.pod_named(NS, "kafka-0")
    assert found is not None and found.identity == ident("kafka", "StatefulSet")


def test_a_status_only_update_keeps_the_generation_and_a_real_change_moves_it() -> None:
    """The resolver's memos hold while the generation does: in a large cluster most pod events
    only move conditions (readiness), and they must not wipe every memo."""
    state = ClusterState()
    obj = deployment_pod(state, "web", "web-a", "10.244.3.1")
    before = state.generation
    ready = {**obj, "status": {**obj["status"], "conditions": [{"type": "Ready", "status": "True"}]}}
    state.apply("MODIFIED", "Pod", ready, T0 + 5)
    assert state.generation == before
    assert state.pod_at("10.244.3.1", T0 + 6) is not None
    moved = {**ready, "status": {**ready["status"], "podIP": "10.244.3.9"}}
    state.apply("MODIFIED", "Pod", moved, T0 + 7)
    assert state.generation > before
    found = state.pod_at("10.244.3.9", T0 + 8)
    assert found is not None and found.identity == ident("web", "Deployment")
    relabelled = {**moved, "metadata": {**moved["metadata"], "labels": {"tier": "front"}}}
    state.apply("MODIFIED", "Pod", relabelled, T0 + 9)
    assert state.generation > before + 1  # labels are kept (includeLabels, policies): a change
