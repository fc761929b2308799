"""Policy check throughput: 100,000 edges against 1,000 NetworkPolicies, vs a naive evaluation.

The map: 980 server workloads in 20 namespaces, each called by ~100 clients (about a quarter of
them from other namespaces), 100,000 edges with server ports. The 1,000 policies are the
NetworkPolicy exporter's own for 99% of those edges (so about 1,000 edges are denied), one
ingress policy per server with a peer per client, plus 20 namespace-wide egress policies with a
namespaceSelector rule. ``agent.policy.check`` judges every edge; the naive baseline judges a
sample the way an evaluator without indexes does (for each edge, every policy: does it select
the client or the server, then every rule's every peer, re-matching selectors), extrapolated per
edge; both must agree on the sample. The last line is

    policy check: <ratio>x naive (<N>k edges/s)

Run: .venv/bin/python bench/bench_policy_check.py [--naive-sample N] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import time

import yaml

from agent.exports import network_policies
from agent.model import ClusterFacts, Edge, WorkloadIdentity
from agent.policy import PolicySet, check, load_policies
from agent.policy.documents import NetworkPolicy
from agent.policy.networkpolicy import peer_matches, port_allowed
from agent.policy.selectors import ClusterView, Party, matches

T0 = 1_700_000_000.0
SERVERS, CLIENTS_PER, NAMESPACES, WORKLOADS, EDGES = 980, 102, 20, 3000, 100_000
PORTS = (80, 443, 5432, 6379, 8080, 9092)


def build() -> tuple[list[Edge], PolicySet]:
    rng = random.Random(16)
    workloads = [WorkloadIdentity(f"ns{i % NAMESPACES}", f"app{i}", "Deployment") for i in range(WORKLOADS)]
    by_namespace: dict[str, list[WorkloadIdentity]] = {}
    for w in workloads:
        by_namespace.setdefault(w.namespace, []).append(w)
    edges: list[Edge] = []
    extra = EDGES - SERVERS * CLIENTS_PER  # servers that get one client more, to make EDGES edges
    for index, server in enumerate(workloads[:SERVERS]):
        local = [w for w in by_namespace[server.namespace] if w != server]
        clients = set(rng.sample(local, CLIENTS_PER * 3 // 4)) | set(rng.sample(workloads, CLIENTS_PER))
        clients.discard(server)
        for client in sorted(clients)[: CLIENTS_PER + (index < extra)]:
            edges.append(Edge(client, server, T0, T0 + 60, ports=(rng.choice(PORTS),)))
    exported = [e for e in edges if rng.random() >= 0.01]
    documents = network_policies(exported)
    for n in range(NAMESPACES):  # namespace-wide egress: to this namespace and the monitoring ones
        documents.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": "egress", "namespace": f"ns{n}"},
                "spec": {
                    "podSelector": {},
                    "policyTypes": ["Egress"],
                    "egress": [{"to": [{"namespaceSelector": {}}]}],
                },
            }
        )
    text = yaml.dump_all(documents, Dumper=yaml.CSafeDumper, sort_keys=False)
    started = time.perf_counter()
    policies = load_policies([("bench.yaml", text)])
    print(f"load_policies: {len(text) / 1e6:.1f} MB in {time.perf_counter() - started:.1f}s")
    return edges, policies


def _naive_direction(
    policies: tuple[NetworkPolicy, ...],
    selected: Party,
    other: Party,
    ingress: bool,
    port: int,
    server: Party,
) -> bool:
    isolated = admitted = False
    for policy in policies:
        isolates = policy.ingress_isolates if ingress else policy.egress_isolates
        if not (
            isolates
            and policy.ref.namespace == selected.namespace
            and matches(policy.pod_selector, selected.labels)
        ):
            continue
        isolated = True
        for rule in policy.ingress if ingress else policy.egress:
            peers = rule.peers is None or any(
                peer.ip_block is None and peer_matches(peer, policy.ref.namespace, other)
                for peer in rule.peers
            )
            if peers and port_allowed(rule.ports, port, server):
                admitted = True
    return admitted or not isolated


def naive_denied(edges: list[Edge], policies: PolicySet, facts: ClusterFacts) -> list[Edge]:
    view = ClusterView(facts)
    denied = []
    for edge in edges:
        assert isinstance(edge.target, WorkloadIdentity)
        client, server = view.party(edge.client), view.party(edge.target)
        port = edge.ports[0]
        ok = _naive_direction(policies.network_policies, client, server, False, port, server)
        ok = _naive_direction(policies.network_policies, server, client, True, port, server) and ok
        if not ok:
            denied.append(edge)
    return denied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--naive-sample", type=int, default=2000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    edges, policies = build()
    print(
        f"edges={len(edges)} policies={len(policies.network_policies)}"
        f" built and parsed in {time.perf_counter() - started:.1f}s"
    )
    facts = ClusterFacts()
    best, result = float("inf"), None
    for _ in range(3):
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        started = time.perf_counter()
        result = check(edges, policies, facts)
        best = min(best, time.perf_counter() - started)
        if profiler:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(12)
    assert result is not None
    sample = random.Random(7).sample(edges, args.naive_sample)
    started = time.perf_counter()
    naive = naive_denied(sample, policies, facts)
    naive_per_edge = (time.perf_counter() - started) / len(sample)
    fast = check(sample, policies, facts)
    assert sorted({d.edge.key for d in fast.denials}) == sorted(e.key for e in naive), (
        "check and naive disagree"
    )
    per_edge = best / len(edges)
    print(
        f"check: {best:.2f}s for {result.evaluated} edges, {len({d.edge.key for d in result.denials})} denied"
    )
    print(
        f"naive: {naive_per_edge * 1e6:.0f} us/edge on a sample of {len(sample)}"
        f" (denied agree: {len(naive)}); extrapolated {naive_per_edge * len(edges):.0f}s for all"
    )
    print(f"policy check: {naive_per_edge / per_edge:.0f}x naive ({len(edges) / best / 1000:.0f}k edges/s)")


if __name__ == "__main__":
    main()
