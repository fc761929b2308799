"""The observation stream of ``bench_cluster_sim.py``: what sampled nodes' sniffers report, encoded.

Each node's sniffer reports once per aggregation interval (the sniffer's ``report_interval``,
1 s by default) the distinct pairs it saw, at ``per_node`` observations per interval (40/s/node
after aggregation in the issue's figure), as up to three mutations — ``reportCaptureResults``
(DNS answers: a Service name → its ClusterIP, an Internet name → its IP),
``reportTCPCaptureResults`` (SYNs to a ClusterIP:80) and ``reportSocketScanResults`` (established
sockets to a callee pod's IP:8080) — in the documents ``agent/sniffer/reports.py`` builds: one
``RecordedDestinationsForSrc`` per client pod IP, the reporting node's name in ``node``.

Pairs come from the call graph of :class:`simcluster.Layout` and from who runs on the node at
that moment (:class:`simcluster.Placement`, after churn), so every observation has one right
answer. Bodies are encoded here, before the bench's clock starts.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from simcluster import SERVICE_PORT, TARGET_PORT, Layout, Placement

from agent.wire import format_time

DNS, TCP, SOCKET = "reportCaptureResults", "reportTCPCaptureResults", "reportSocketScanResults"
_INPUTS = {DNS: "CaptureResults", TCP: "CaptureTCPResults", SOCKET: "SocketScanResults"}
QUERIES = {
    name: f"mutation {name}($results: {kind}!) {{ {name}(results: $results) }}"
    for name, kind in _INPUTS.items()
}


@dataclass(frozen=True, slots=True)
class Report:
    """One encoded mutation and how many observations (destinations) it carries."""

    body: bytes
    observations: int


def _candidates(layout: Layout, placement: Placement, p: int) -> list[tuple[str, dict[str, Any]]]:
    """Every (mutation, destination) pod ``p`` may report: its Deployment's calls."""
    d = p // layout.replicas
    found: list[tuple[str, dict[str, Any]]] = []
    name, ip = layout.external(d)
    found.append((DNS, {"destination": name, "destinationIP": ip, "TTL": 300}))
    for c in layout.callees(d):
        found.append(
            (DNS, {"destination": layout.service_dns(c), "destinationIP": layout.cluster_ip(c), "TTL": 30})
        )
        found.append((TCP, {"destination": layout.cluster_ip(c), "destinationPort": SERVICE_PORT}))
        server = placement.ip[c * layout.replicas + p % layout.replicas]
        found.append((SOCKET, {"destination": server, "destinationPort": TARGET_PORT}))
    return found


def node_reports(
    layout: Layout, placement: Placement, node: int, at: float, per_node: int, rng: random.Random
) -> list[Report]:
    """One aggregation interval of ``node``'s sniffer, ending at ``at``: ``per_node`` distinct
    pairs from the pods it runs now, seen within the interval."""
    pool = [
        (placement.ip[p], kind, dest)
        for p in sorted(placement.on_node[node])
        for kind, dest in _candidates(layout, placement, p)
    ]
    picked = rng.sample(pool, min(per_node, len(pool)))
    by_kind: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for source, kind, dest in picked:
        seen = format_time(at - rng.random())
        by_kind.setdefault(kind, {}).setdefault(source, []).append({**dest, "lastSeen": seen})
    reports = []
    for kind, sources in by_kind.items():
        results = [
            {"srcIp": s, "srcHostname": "", "destinations": found} for s, found in sorted(sources.items())
        ]
        document = {
            "query": QUERIES[kind],
            "variables": {"results": {"results": results, "node": layout.node_name(node)}},
        }
        reports.append(
            Report(json.dumps(document, separators=(",", ":")).encode(), sum(map(len, sources.values())))
        )
    return reports
