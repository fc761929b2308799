"""What the resolver records (``MAPPER_EXCLUDE_NAMESPACES``, ``MAPPER_INTERNET_TRAFFIC_REPORTING``),
on a ClusterState fed real API dicts (Deployments, ReplicaSets, Pods, Services, Endpoints) in two
namespaces: an edge with its client or server workload in an excluded namespace is dropped — DNS,
TCP, socket scan, Kafka, Istio and AWS alike, Internet edges of an excluded client too —, Internet
targets are dropped when reporting is off, every drop is counted by reason, and the counts reach
``GET /metrics``'s text."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from agent.mapper.cluster import ClusterState
from agent.mapper.resolver import Resolver
from agent.mapper.servicegraph import dropped_text
from agent.mapper.settings import MapperSettings, RecordingSettings
from agent.model import (
    AwsOperation,
    AwsTarget,
    DnsAnswer,
    InternetTarget,
    IstioRequest,
    KafkaAccess,
    SocketConnection,
    TcpConnection,
    WorkloadIdentity,
)
from agent.settings import SettingsError, load

T0 = 1_700_000_000.0
T = T0 + 10
SHOP, MESH = "shop", "istio-system"
FRONTEND, CART, ISTIOD = "10.244.0.10", "10.244.0.20", "10.244.1.5"
CART_SVC, ISTIOD_SVC = "10.96.0.20", "10.96.1.5"
API_IP = "93.184.216.34"


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def add_deployment(state: ClusterState, ns: str, name: str, pod_ip: str) -> None:
    """Deployment ``name`` in ``ns`` with one ReplicaSet and one pod at ``pod_ip``."""
    meta: dict[str, Any] = {"namespace": ns, "creationTimestamp": iso(T0)}
    state.apply("ADDED", "Deployment", {"metadata": {**meta, "name": name, "uid": f"d-{ns}-{name}"}}, T0)
    owner = {"kind": "Deployment", "name": name, "uid": f"d-{ns}-{name}", "controller": True}
    rs = {"metadata": {**meta, "name": f"{name}-1", "uid": f"r-{ns}-{name}", "ownerReferences": [owner]}}
    state.apply("ADDED", "ReplicaSet", rs, T0)
    rs_ref = {"kind": "ReplicaSet", "name": f"{name}-1", "uid": f"r-{ns}-{name}", "controller": True}
    pod = {
        "metadata": {**meta, "name": f"{name}-a", "uid": f"p-{ns}-{name}", "ownerReferences": [rs_ref]},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c"}]},
        "status": {"phase": "Running", "podIP": pod_ip, "hostIP": "192.168.1.10", "startTime": iso(T0)},
    }
    state.apply("ADDED", "Pod", pod, T0)


def add_service(state: ClusterState, ns: str, name: str, cluster_ip: str, pod: str, pod_ip: str) -> None:
    service = {
        "metadata": {"name": name, "namespace": ns, "uid": f"s-{ns}-{name}", "creationTimestamp": iso(T0)},
        "spec": {"clusterIP": cluster_ip},
    }
    state.apply("ADDED", "Service", service, T0)
    address = {
        "ip": pod_ip,
        "targetRef": {"kind": "Pod", "name": pod, "namespace": ns, "uid": f"p-{ns}-{pod[:-2]}"},
    }
    endpoints = {"metadata": {"name": name, "namespace": ns}, "subsets": [{"addresses": [address]}]}
    state.apply("ADDED", "Endpoints", endpoints, T0)


@pytest.fixture
def state() -> ClusterState:
    s = ClusterState()
    add_deployment(s, SHOP, "frontend", FRONTEND)
    add_deployment(s, SHOP, "cart", CART)
    add_deployment(s, MESH, "istiod", ISTIOD)
    add_service(s, SHOP, "cartservice", CART_SVC, "cart-a", CART)
    add_service(s, MESH, "istiod", ISTIOD_SVC, "istiod-a", ISTIOD)
    return s


def dep(ns: str, name: str) -> WorkloadIdentity:
    return WorkloadIdentity(ns, name, "Deployment")


def dns(client: str, qname: str, *ips: str) -> DnsAnswer:
    return DnsAnswer(client, 40000, "10.96.0.10", qname, ips, T)


def tcp(client: str, server: str, port: int = 443) -> TcpConnection:
    return TcpConnection(client, 40000, server, port, T)


# Observations with a workload of istio-system on one side (the mesh's own traffic).
MESH_TRAFFIC = [
    dns(ISTIOD, "cartservice.shop.svc.cluster.local", CART_SVC),  # client excluded
    dns(FRONTEND, "istiod.istio-system.svc.cluster.local", ISTIOD_SVC),  # server excluded
    tcp(ISTIOD, CART_SVC, 80),
    tcp(FRONTEND, ISTIOD_SVC, 15012),
    tcp(FRONTEND, ISTIOD, 15012),  # the pod IP itself
    SocketConnection(ISTIOD, 40001, CART, 8080, T, "istiod-a"),
    KafkaAccess(ISTIOD, WorkloadIdentity(SHOP, "cart"), "orders", "consume", T),
    KafkaAccess(FRONTEND, WorkloadIdentity(MESH, "istiod-a", "Pod"), "orders", "produce", T),
    IstioRequest("istiod", MESH, "cart", SHOP, "cartservice", "/cart", "GET", 3, T),
    IstioRequest("frontend", SHOP, "istiod", MESH, "istiod", "/debug", "GET", 1, T),
    AwsOperation(ISTIOD, 1, "s3", "GetObject", "arn:aws:s3:::b/k", "eu-west-1", T),
    dns(ISTIOD, "api.example.com", API_IP),  # Internet edges of an excluded client
    tcp(ISTIOD, API_IP),
    tcp(ISTIOD, "198.51.100.7"),
]


def test_nothing_is_excluded_by_default(state: ClusterState) -> None:
    resolver = Resolver(state)
    assert all(resolver.resolve(obs) for obs in MESH_TRAFFIC)
    assert resolver.dropped()["excluded_namespace"] == 0


def test_excluded_namespace_drops_edges_with_a_client_or_server_there(state: ClusterState) -> None:
    resolver = Resolver(state, exclude_namespaces=[MESH, "kube-system"])
    for obs in MESH_TRAFFIC:
        assert resolver.resolve(obs) == [], obs
    assert resolver.stats["excluded_namespace"] == len(MESH_TRAFFIC)  # one edge each
    # The rest of the cluster's traffic is recorded as before.
    [by_dns] = resolver.resolve(dns(FRONTEND, "cartservice.shop.svc.cluster.local", CART_SVC))
    [by_tcp] = resolver.resolve(tcp(FRONTEND, CART_SVC, 80))
    assert by_dns.client == by_tcp.client == dep(SHOP, "frontend")
    assert by_dns.target == by_tcp.target == dep(SHOP, "cart")
    [internet] = resolver.resolve(tcp(FRONTEND, API_IP))
    assert internet.target == InternetTarget("", (API_IP,), 443)
    [aws] = resolver.resolve(AwsOperation(CART, 1, "s3", "GetObject", "", "eu-west-1", T))
    assert aws.target == AwsTarget("*")
    assert resolver.dropped()["excluded_namespace"] == len(MESH_TRAFFIC)


def test_internet_reporting_off_drops_every_internet_target(state: ClusterState) -> None:
    state.apply(
        "ADDED",
        "Service",
        {
            "metadata": {"name": "payments", "namespace": SHOP, "uid": "pay", "creationTimestamp": iso(T0)},
            "spec": {"type": "ExternalName", "externalName": "pay.example.net"},
        },
        T0,
    )
    internet = [
        dns(FRONTEND, "api.example.com", API_IP),
        tcp(FRONTEND, API_IP),  # named by the answer above
        tcp(FRONTEND, "198.51.100.7"),  # IP-only
        SocketConnection(FRONTEND, 40001, "198.51.100.8", 443, T, "frontend-a"),
        dns(FRONTEND, "payments.shop.svc.cluster.local", "203.0.113.9"),  # ExternalName Service
    ]
    on = Resolver(state)
    assert [type(on.resolve(obs)[0].target) for obs in internet] == [InternetTarget] * len(internet)
    off = Resolver(state, internet_reporting=False)
    for obs in internet:
        assert off.resolve(obs) == [], obs
    assert off.dropped()["internet_reporting_disabled"] == len(internet)
    # In-cluster and AWS edges are not Internet targets: still recorded.
    [pod_edge] = off.resolve(tcp(FRONTEND, CART_SVC, 80))
    [aws] = off.resolve(AwsOperation(CART, 1, "s3", "GetObject", "arn:aws:s3:::b/k", "eu-west-1", T))
    assert pod_edge.target == dep(SHOP, "cart") and aws.target == AwsTarget("arn:aws:s3:::b/k")
    assert off.dropped()["internet_reporting_disabled"] == len(internet)


def test_an_excluded_client_counts_as_excluded_before_internet_off(state: ClusterState) -> None:
    resolver = Resolver(state, exclude_namespaces=[MESH], internet_reporting=False)
    assert resolver.resolve(tcp(ISTIOD, API_IP)) == [] and resolver.resolve(tcp(FRONTEND, API_IP)) == []
    assert (resolver.stats["excluded_namespace"], resolver.stats["internet_reporting_disabled"]) == (1, 1)


def test_dropped_counts_reach_the_metrics_text(state: ClusterState) -> None:
    resolver = Resolver(state, exclude_namespaces=[MESH])
    assert resolver.dropped() == {"excluded_namespace": 0, "internet_reporting_disabled": 0}
    resolver.resolve(tcp(ISTIOD, CART_SVC, 80))
    resolver.resolve(tcp("10.244.9.9", CART_SVC, 80))  # an unknown client
    resolver.resolve(dns(FRONTEND, "api.example.com", API_IP))
    resolver.resolve(tcp(FRONTEND, API_IP))  # named by DNS: a note on a kept edge, not a drop
    dropped = resolver.dropped()
    assert dropped == {"excluded_namespace": 1, "internet_reporting_disabled": 0, "client_unknown_ip": 1}
    assert resolver.stats["internet_ip_named_by_dns"] == 1
    lines = dropped_text(dropped).splitlines()
    assert lines[:2] == [
        "# HELP network_mapper_edges_dropped_total Edges (or whole observations) the resolver did not"
        " record, by reason.",
        "# TYPE network_mapper_edges_dropped_total counter",
    ]
    assert lines[2:] == [
        'network_mapper_edges_dropped_total{reason="client_unknown_ip"} 1',
        'network_mapper_edges_dropped_total{reason="excluded_namespace"} 1',
        'network_mapper_edges_dropped_total{reason="internet_reporting_disabled"} 0',
    ]


def test_the_settings_load_check_and_configure_the_resolver(state: ClusterState) -> None:
    assert load(MapperSettings, [], {}).recording == RecordingSettings((), True)
    env = {
        "MAPPER_EXCLUDE_NAMESPACES": "istio-system, kube-system",
        "MAPPER_INTERNET_TRAFFIC_REPORTING": "false",
    }
    recording = load(MapperSettings, [], env).recording
    assert recording == RecordingSettings(("istio-system", "kube-system"), False)
    flags = ["--exclude-namespaces", "istio-system,kube-system", "--internet-traffic-reporting=false"]
    assert load(MapperSettings, flags, {}).recording == recording
    # As the mapper's main wires them.
    resolver = Resolver(
        state,
        exclude_namespaces=recording.exclude_namespaces,
        internet_reporting=recording.internet_traffic_reporting,
    )
    assert resolver.resolve(tcp(ISTIOD, CART_SVC, 80)) == [] and resolver.resolve(tcp(FRONTEND, API_IP)) == []
    assert resolver.resolve(tcp(FRONTEND, CART_SVC, 80))
    with pytest.raises(SettingsError, match=r"MAPPER_EXCLUDE_NAMESPACES.*'Istio_System'"):
        load(MapperSettings, [], {"MAPPER_EXCLUDE_NAMESPACES": "ok,Istio_System"})
    with pytest.raises(SettingsError, match=r"--exclude-namespaces.*'istio-system kube-system'"):
        RecordingSettings(
            exclude_namespaces=("istio-system kube-system",)
        )  # Otterize's chart joins by spaces
    with pytest.raises(SettingsError, match="MAPPER_INTERNET_TRAFFIC_REPORTING"):
        load(MapperSettings, [], {"MAPPER_INTERNET_TRAFFIC_REPORTING": "sometimes"})
