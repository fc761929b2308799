"""Resolver throughput: 5,000 pods / 1,000 services, 200k mixed observations, vs a naive resolver.

The cluster state is built through `ClusterState.apply` from generated API dicts (Deployments,
ReplicaSets, Pods, Services, Endpoints), with some IP reuse. The naive baseline resolves the same
observations by linear scans over all pods / services / endpoints (what a resolver without
indexes does); it runs on a sample and is extrapolated per observation. As the mapper does after
its first sync, the built state is moved out of the cyclic GC's reach with `gc.freeze()`
(`--no-gc-freeze` to compare). The last line is

    resolver: <ratio>x naive (<N>k obs/s)

Run: .venv/bin/python bench/bench_resolver.py [--observations N] [--profile] [--no-gc-freeze]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import random
import time
from datetime import UTC, datetime
from typing import Any

from agent.mapper.cluster import ClusterState
from agent.mapper.resolver import Resolver
from agent.model import DnsAnswer, InternetTarget, Observation, TcpConnection, WorkloadIdentity

T0 = 1_700_000_000.0
DEPLOYMENTS, PODS_PER, NAMESPACES = 1000, 5, 20
EXTERNAL = [f"api{i}.example.com" for i in range(200)]


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build() -> tuple[ClusterState, list[dict[str, Any]]]:
    """The state, plus flat records the naive baseline scans."""
    state, records = ClusterState(retention=10 * 3600), []
    for d in range(DEPLOYMENTS):
        ns, name = f"ns{d % NAMESPACES}", f"app{d}"
        state.apply("ADDED", "Deployment", {"metadata": {"name": name, "namespace": ns, "uid": f"d{d}"}}, T0)
        owner = [{"kind": "Deployment", "name": name, "uid": f"d{d}", "controller": True}]
        rs = {"metadata": {"name": f"{name}-rs", "namespace": ns, "uid": f"rs{d}", "ownerReferences": owner}}
        state.apply("ADDED", "ReplicaSet", rs, T0)
        addresses = []
        for p in range(PODS_PER):
            i = d * PODS_PER + p
            ip = f"10.244.{i // 250}.{i % 250 + 1}"
            pod = {
                "metadata": {
                    "name": f"{name}-rs-{p}",
                    "namespace": ns,
                    "uid": f"p{i}",
                    "creationTimestamp": iso(T0),
                    "labels": {"app": name},
                    "ownerReferences": [
                        {"kind": "ReplicaSet", "name": f"{name}-rs", "uid": f"rs{d}", "controller": True}
                    ],
                },
                "spec": {"nodeName": f"node{i % 50}", "containers": [{"name": "c"}]},
                "status": {
                    "phase": "Running",
                    "podIP": ip,
                    "hostIP": f"192.168.0.{i % 50 + 1}",
                    "startTime": iso(T0),
                },
            }
            state.apply("ADDED", "Pod", pod, T0)
            records.append(
                {"type": "pod", "ip": ip, "uid": f"p{i}", "rs": f"rs{d}", "start": T0, "end": float("inf")}
            )
            addresses.append(
                {
                    "ip": ip,
                    "targetRef": {
                        "kind": "Pod",
                        "name": pod["metadata"]["name"],
                        "namespace": ns,
                        "uid": f"p{i}",
                    },
                }
            )
        records.append({"type": "rs", "uid": f"rs{d}", "owner": name, "ns": ns})
        if d % 20 == 19:  # IP reuse: this deployment's first pod IP goes to a new pod of the previous one
            first = records[-1 - PODS_PER]
            stub = {"metadata": {"name": f"{name}-rs-0", "namespace": ns, "uid": first["uid"]}}
            state.apply("DELETED", "Pod", stub, T0 + 1800)
            first["end"] = T0 + 1800
            previous, reborn = d - 1, f"{first['uid']}-reborn"
            pod = {
                "metadata": {
                    "name": f"app{previous}-rs-new",
                    "namespace": f"ns{previous % NAMESPACES}",
                    "uid": reborn,
                    "creationTimestamp": iso(T0 + 1805),
                    "ownerReferences": [
                        {
                            "kind": "ReplicaSet",
                            "name": f"app{previous}-rs",
                            "uid": f"rs{previous}",
                            "controller": True,
                        }
                    ],
                },
                "spec": {"nodeName": "node0", "containers": [{"name": "c"}]},
                "status": {
                    "phase": "Running",
                    "podIP": first["ip"],
                    "hostIP": "192.168.0.1",
                    "startTime": iso(T0 + 1805),
                },
            }
            state.apply("ADDED", "Pod", pod, T0 + 1805)
            records.append(
                {
                    "type": "pod",
                    "ip": first["ip"],
                    "uid": reborn,
                    "rs": f"rs{previous}",
                    "start": T0 + 1805,
                    "end": float("inf"),
                }
            )
        cluster_ip = f"10.96.{d // 250}.{d % 250 + 1}"
        service = {
            "metadata": {"name": name, "namespace": ns, "uid": f"s{d}", "creationTimestamp": iso(T0)},
            "spec": {"clusterIP": cluster_ip, "selector": {"app": name}},
        }
        state.apply("ADDED", "Service", service, T0)
        state.apply(
            "ADDED",
            "Endpoints",
            {"metadata": {"name": name, "namespace": ns}, "subsets": [{"addresses": addresses}]},
            T0,
        )
        records.append(
            {
                "type": "svc",
                "ns": ns,
                "name": name,
                "ip": cluster_ip,
                "uids": [a["targetRef"]["uid"] for a in addresses],
            }
        )
    return state, records


def observations(n: int, rng: random.Random) -> list[Observation]:
    out: list[Observation] = []
    for _ in range(n):
        i, d = rng.randrange(DEPLOYMENTS * PODS_PER), rng.randrange(DEPLOYMENTS)
        client = f"10.244.{i // 250}.{i % 250 + 1}"
        t = T0 + rng.uniform(1, 3600)
        kind = rng.random()
        if kind < 0.40:
            qname = f"app{d}.ns{d % NAMESPACES}.svc.cluster.local"
            out.append(DnsAnswer(client, 40000, "10.96.0.10", qname, (f"10.96.{d // 250}.{d % 250 + 1}",), t))
        elif kind < 0.65:
            out.append(TcpConnection(client, 40000, f"10.96.{d // 250}.{d % 250 + 1}", 80, t))
        elif kind < 0.85:
            j = rng.randrange(DEPLOYMENTS * PODS_PER)
            out.append(TcpConnection(client, 40000, f"10.244.{j // 250}.{j % 250 + 1}", 8080, t))
        elif kind < 0.95:
            out.append(DnsAnswer(client, 40000, "10.96.0.10", rng.choice(EXTERNAL), ("93.184.216.34",), t))
        else:
            out.append(
                TcpConnection(client, 40000, f"52.1.{rng.randrange(256)}.{rng.randrange(256)}", 443, t)
            )
    return out


def naive_resolve(obs: Observation, records: list[dict[str, Any]]) -> list[tuple[WorkloadIdentity, Any]]:
    """Linear scans, no indexes: the baseline."""

    def pod_identity(ip: str, t: float) -> WorkloadIdentity | None:
        for r in records:
            if r["type"] == "pod" and r["ip"] == ip and r["start"] <= t < r["end"]:
                return owner_identity(r["rs"])
        return None

    def owner_identity(rs_uid: str) -> WorkloadIdentity | None:
        for o in records:
            if o["type"] == "rs" and o["uid"] == rs_uid:
                return WorkloadIdentity(o["ns"], o["owner"], "Deployment")
        return None

    def service_targets(svc: dict[str, Any]) -> list[WorkloadIdentity]:
        found = []
        for uid in svc["uids"]:
            for r in records:
                if r["type"] == "pod" and r["uid"] == uid:
                    identity = owner_identity(r["rs"])
                    if identity is not None and identity not in found:
                        found.append(identity)
        return found

    client = pod_identity(obs.client_ip, obs.seen_at)  # type: ignore[union-attr]
    if client is None:
        return []
    if isinstance(obs, DnsAnswer):
        if obs.qname.endswith(".svc.cluster.local"):
            name, ns = obs.qname.split(".")[:2]
            for r in records:
                if r["type"] == "svc" and r["ns"] == ns and r["name"] == name:
                    return [(client, target) for target in service_targets(r)]
            return []
        return [(client, InternetTarget(obs.qname, obs.ips))]
    assert isinstance(obs, TcpConnection)
    for r in records:
        if r["type"] == "svc" and r["ip"] == obs.server_ip:
            return [(client, target) for target in service_targets(r)]
    server = pod_identity(obs.server_ip, obs.seen_at)
    if server is not None:
        return [(client, server)]
    return [(client, InternetTarget("", (obs.server_ip,), obs.server_port))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--observations", type=int, default=200_000)
    parser.add_argument("--naive-sample", type=int, default=300)
    parser.add_argument(
        "--repeat", type=int, default=3, help="best of N timed passes (shared machines are noisy)"
    )
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--no-gc-freeze", action="store_true", help="leave the state to the cyclic GC")
    args = parser.parse_args()
    rng = random.Random(7)
    started = time.perf_counter()
    state, records = build()
    print(f"built state: {state.counts()} in {time.perf_counter() - started:.2f}s")
    if not args.no_gc_freeze:
        gc.freeze()  # as agent.mapper.__main__ does once the first sync is done
    obs = observations(args.observations, rng)
    warm = observations(args.observations // 4, random.Random(1))
    best, edges, resolver = float("inf"), 0, Resolver(state)
    for _ in range(args.repeat):
        # Steady state of a running mapper: a fresh resolver, its caches warmed by *other*
        # observations of the same cluster (external IPs in the timed set are still new).
        resolver = Resolver(state)
        for o in warm:
            resolver.resolve(o)
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        resolve, edges = resolver.resolve, 0
        started = time.perf_counter()
        for o in obs:
            edges += len(resolve(o))
        best = min(best, time.perf_counter() - started)
        if profiler:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    elapsed = best
    per_obs = elapsed / len(obs)
    sample = obs[: args.naive_sample]
    started = time.perf_counter()
    naive_pairs = [pair for o in sample for pair in naive_resolve(o, records)]
    naive_per_obs = (time.perf_counter() - started) / len(sample)
    pairs = [(e.client, e.target) for o in sample for e in resolver.resolve(o)]
    naive_pairs = [(c, t) for c, t in naive_pairs if c != t]  # the resolver drops self-edges
    assert pairs == naive_pairs, "the resolver and the naive baseline disagree"
    naive_edges = len(pairs)
    print(f"observations={len(obs)} edges={edges} seconds={elapsed:.3f} stats={dict(resolver.stats)}")
    print(
        f"naive: {naive_per_obs * 1e6:.1f} us/obs on a sample of {len(sample)} (edges agree: {naive_edges})"
    )
    print(f"resolver: {naive_per_obs / per_obs:.0f}x naive ({len(obs) / elapsed / 1000:.0f}k obs/s)")


if __name__ == "__main__":
    main()
