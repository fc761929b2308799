"""Provenance from the resolver: each edge it makes carries one ``MethodSeen`` for the observation's
method, and the mapper's store merges them per method (counts summed) and keeps them on disk."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.mapper.cluster import ClusterState
from agent.mapper.resolver import Resolver
from agent.mapper.store import EdgeStore
from agent.model import (
    AwsOperation,
    DnsAnswer,
    IstioRequest,
    KafkaAccess,
    Method,
    MethodSeen,
    SocketConnection,
    TcpConnection,
    WorkloadIdentity,
)

T0 = 1_700_000_000.0
NS = "shop"
FRONTEND, CART = WorkloadIdentity(NS, "frontend", "Deployment"), WorkloadIdentity(NS, "cart", "Deployment")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _deployment(state: ClusterState, name: str, pods: dict[str, str]) -> None:
    state.apply("ADDED", "Deployment", {"metadata": {"name": name, "namespace": NS, "uid": f"d-{name}"}}, T0)
    owner = [{"kind": "Deployment", "name": name, "uid": f"d-{name}", "controller": True}]
    rs = {"metadata": {"name": f"{name}-rs", "namespace": NS, "uid": f"rs-{name}", "ownerReferences": owner}}
    state.apply("ADDED", "ReplicaSet", rs, T0)
    for pod_name, ip in pods.items():
        meta: dict[str, Any] = {"name": pod_name, "namespace": NS, "uid": f"uid-{pod_name}"}
        meta |= {"creationTimestamp": _iso(T0), "labels": {}}
        meta["ownerReferences"] = [
            {"kind": "ReplicaSet", "name": f"{name}-rs", "uid": f"rs-{name}", "controller": True}
        ]
        status = {"phase": "Running", "podIP": ip, "hostIP": "192.168.1.10", "startTime": _iso(T0)}
        state.apply("ADDED", "Pod", {"metadata": meta, "spec": {"nodeName": "node-1"}, "status": status}, T0)


@pytest.fixture
def state() -> ClusterState:
    s = ClusterState()
    _deployment(s, "frontend", {"frontend-a": "10.244.0.10"})
    _deployment(s, "cart", {"cart-a": "10.244.0.20", "cart-b": "10.244.0.21"})
    s.apply(
        "ADDED",
        "Service",
        {
            "metadata": {
                "name": "cartservice",
                "namespace": NS,
                "uid": "svc-cart",
                "creationTimestamp": _iso(T0),
            },
            "spec": {"clusterIP": "10.96.0.20"},
        },
        T0,
    )
    addresses = [
        {"ip": ip, "targetRef": {"kind": "Pod", "name": n, "namespace": NS, "uid": f"uid-{n}"}}
        for n, ip in (("cart-a", "10.244.0.20"), ("cart-b", "10.244.0.21"))
    ]
    endpoints = {"metadata": {"name": "cartservice", "namespace": NS}, "subsets": [{"addresses": addresses}]}
    s.apply("ADDED", "Endpoints", endpoints, T0)
    return s


def test_each_edge_carries_its_observations_method_time_and_count(state: ClusterState) -> None:
    resolver, t = Resolver(state), T0 + 10
    cases = [
        (
            DnsAnswer(
                "10.244.0.10", 40000, "10.96.0.10", "cartservice.shop.svc.cluster.local.", ("10.96.0.20",), t
            ),
            Method.DNS,
            1,
        ),
        (TcpConnection("10.244.0.10", 40000, "10.96.0.20", 80, t), Method.TCP, 1),
        (SocketConnection("10.244.0.10", 40000, "10.244.0.21", 80, t, "frontend-a"), Method.SOCKET_SCAN, 1),
        (KafkaAccess("10.244.0.10", WorkloadIdentity(NS, "cart"), "orders", "read", t), Method.KAFKA, 1),
        (IstioRequest("frontend", NS, "cart", NS, "cartservice", "/cart", "GET", 7, t), Method.ISTIO, 7),
        (
            AwsOperation("10.244.0.10", 1, "s3", "GetObject", "arn:aws:s3:::b/k", "eu-west-1", t),
            Method.AWS,
            1,
        ),
    ]
    for obs, method, count in cases:
        [edge] = resolver.resolve(obs)
        assert edge.client == FRONTEND and edge.methods == frozenset({method})
        assert edge.provenance == (MethodSeen(method, t, t, count),), method
        assert edge.count == count  # the provenance counts what the edge counts


def test_edges_of_one_observation_share_its_provenance(state: ClusterState) -> None:
    _deployment(state, "redis", {"redis-a": "10.244.0.30"})
    addresses = [
        {"ip": ip, "targetRef": {"kind": "Pod", "name": n, "namespace": NS, "uid": f"uid-{n}"}}
        for n, ip in (("cart-a", "10.244.0.20"), ("redis-a", "10.244.0.30"))
    ]
    state.apply(
        "ADDED",
        "Service",
        {
            "metadata": {"name": "mixed", "namespace": NS, "uid": "svc-mixed"},
            "spec": {"clusterIP": "10.96.0.40"},
        },
        T0,
    )
    state.apply(
        "ADDED",
        "Endpoints",
        {"metadata": {"name": "mixed", "namespace": NS}, "subsets": [{"addresses": addresses}]},
        T0,
    )
    edges = Resolver(state).resolve(TcpConnection("10.244.0.10", 40000, "10.96.0.40", 80, T0 + 5))
    assert len(edges) == 2 and edges[0].provenance is edges[1].provenance
    assert edges[0].provenance == (MethodSeen(Method.TCP, T0 + 5, T0 + 5, 1),)


def test_the_store_merges_provenance_per_method_and_keeps_it(state: ClusterState, tmp_path: Path) -> None:
    resolver = Resolver(state)
    observations = [
        DnsAnswer(
            "10.244.0.10", 40000, "10.96.0.10", "cartservice.shop.svc.cluster.local.", ("10.96.0.20",), T0 + 1
        ),
        TcpConnection("10.244.0.10", 40001, "10.96.0.20", 80, T0 + 2),
        TcpConnection("10.244.0.10", 40002, "10.96.0.20", 80, T0 + 9),
        DnsAnswer(
            "10.244.0.10", 40003, "10.96.0.10", "cartservice.shop.svc.cluster.local.", ("10.96.0.20",), T0 + 4
        ),
    ]
    store = EdgeStore(tmp_path / "edges.db")
    try:
        store.record([e for obs in observations[:2] for e in resolver.resolve(obs)])
        store.record([e for obs in observations[2:] for e in resolver.resolve(obs)])
        [edge] = store.edges()
    finally:
        store.close()
    assert (edge.client, edge.target, edge.count) == (FRONTEND, CART, 4)
    assert edge.provenance == (
        MethodSeen(Method.DNS, T0 + 1, T0 + 4, 2),
        MethodSeen(Method.TCP, T0 + 2, T0 + 9, 2),
    )
