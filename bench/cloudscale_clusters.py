"""The mapper side of one simulated cluster for :mod:`bench_cloud_scale`: its edges, edge store,
uploader and clock.

Edges are made here (as a cluster's resolver hands them over) and recorded in the cluster's own
:class:`~agent.mapper.store.EdgeStore`; the real :class:`~agent.mapper.uploader.Uploader` sends
what changed to the cloud through the client the bench gave it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any

from agent.mapper.cloudclient import CloudError
from agent.mapper.store import EdgeStore
from agent.mapper.uploader import Uploader
from agent.model import AwsTarget, Edge, HttpResource, InternetTarget, KafkaTopic, Method, WorkloadIdentity

TCP, DNS = frozenset({Method.TCP}), frozenset({Method.DNS, Method.TCP})


def cluster_edges(index: int, count: int, at: float) -> list[Edge]:
    """``count`` distinct edges of cluster ``index``, as its resolver hands them over: calls between
    its workloads (1 in 4 with HTTP paths, through a Service), to Internet names, to Kafka topics
    and to AWS resources."""
    rng = random.Random(index)
    edges = []
    for n in range(count):
        client_id = WorkloadIdentity(f"team-{n % 6}", f"svc-{n % 37}", "Deployment")
        kind = n % 10
        if kind < 5:  # workload → workload
            name = f"svc-{(n * 7 + 3) % 41}-api"
            target: Any = WorkloadIdentity(f"team-{(n // 6) % 6}", name, "Deployment")
            http = (HttpResource(f"/v1/{name}/items", ("GET", "POST")),) if n % 4 == 0 else ()
            edges.append(
                Edge(client_id, target, at, at, TCP, 3, http=http, target_service=name, ports=(8080,))
            )
        elif kind < 8:  # → Internet
            target = InternetTarget(
                f"api{n}.vendor-{rng.randrange(50)}.example.com", (f"198.51.100.{n % 250}",)
            )
            edges.append(Edge(client_id, target, at, at, DNS, 2, ports=(443,)))
        elif kind == 8:  # → Kafka
            topics = (KafkaTopic(f"orders-{n % 9}", ("consume", "describe")),)
            target = WorkloadIdentity("kafka", f"kafka-{n}", "StatefulSet")
            edges.append(Edge(client_id, target, at, at, frozenset({Method.KAFKA}), 5, kafka_topics=topics))
        else:  # → AWS
            target = AwsTarget(f"arn:aws:s3:::bucket-{index}-{n}")
            edges.append(
                Edge(client_id, target, at, at, frozenset({Method.AWS}), 1, aws_actions=("s3:GetObject",))
            )
    return edges


@dataclass
class Cluster:
    """One cluster's mapper side: its edge store, uploader and simulated clock."""

    index: int
    store: EdgeStore
    uploader: Uploader
    clock: list[float]
    edges: list[Edge]
    failed_cycles: int = 0
    pending: bool = False  # the last cycle failed: its changes wait for the next

    def see(self, now: float, rng: random.Random, changes: float) -> None:
        """Every edge seen again at about ``now``; with probability ``changes`` each, a new edge and
        a new HTTP path on an existing edge."""
        if rng.random() < changes:
            client_id = WorkloadIdentity("team-0", f"svc-{len(self.edges) % 37}", "Deployment")
            target = WorkloadIdentity("team-new", f"new-{len(self.edges)}", "Deployment")
            self.edges.append(Edge(client_id, target, now, now, TCP, ports=(8080,)))
        if rng.random() < changes:
            at = rng.randrange(len(self.edges))
            old = self.edges[at]
            self.edges[at] = replace(
                old, http=(*old.http, HttpResource(f"/v2/added-{len(old.http)}", ("GET",)))
            )
        self.store.record(
            Edge(
                e.client,
                e.target,
                now - rng.random() * 30,
                now,
                e.methods,
                1,
                e.http,
                e.kafka_topics,
                e.aws_actions,
                e.target_service,
                ports=e.ports,
            )
            for e in self.edges
        )

    def cycle(self, now: float) -> None:
        self.clock[0] = now
        try:
            self.uploader.upload_once()
        except CloudError:
            self.failed_cycles += 1
            self.pending = True
        else:
            self.pending = False
