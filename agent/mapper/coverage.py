"""How far to trust the map: which nodes have a reporting sniffer, which producers went silent, what
was dropped and why, which IPs could not be attributed.

Where the data comes from: the producers' status reports (``reportComponentStatus``,
:mod:`agent.statusreport`) and the sniffer's reports naming their node (the API's mutations call
:meth:`Coverage.status` and :meth:`Coverage.node_reported`); every observation the report queue
resolves passes through :class:`CoverageResolver`, which counts it and notes the IP of one that
could not be attributed; the cluster's nodes (``ClusterState.facts().nodes``), the resolver's
drops by reason and the API's skipped entries are read when a document is built. Where it goes:
:meth:`Coverage.document`, a JSON-shaped dict that is the GraphQL ``coverage`` answer
(``agent/mapper/api/schema.graphql``), the CLI's ``network-mapper coverage`` and the uploader's
``POST /v1/coverage``.

A node is covered when a sniffer reported from it within ``stale_after`` seconds. A component
instance is silent when its newest status is older than that; a silent instance is forgotten once
another instance of the same role (component, node for a sniffer, what it watches) reports, so a
restarted pod (a new name) does not stay silent for ever. "Configured" means reported once since
the mapper started: the chart's enabled components are not known here.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from agent.model import Edge, Observation
from agent.wire import format_time

MAPPER = "mapper"
"""The ``source`` of the drops the mapper itself counts."""

# The resolver's reasons that leave an observation's client or server unattributed (its IP is noted).
CLIENT_REASONS = (
    "client_unknown_ip",
    "client_node_ip_unresolved",
    "ambiguous_host_network",
    "host_network_pod_unknown",
)
SERVER_REASONS = ("server_unknown_cluster_ip", "server_node_port_unresolved")

EXPLANATIONS: Mapping[str, str] = {
    "client_unknown_ip": "no pod had the client's IP at the time (outside the cluster, or gone unseen)",
    "client_node_ip_unresolved": "a client on a node IP whose hostNetwork pod could not be told apart",
    "ambiguous_host_network": "a client on a node IP whose process could not be tied to one hostNetwork pod",
    "host_network_pod_unknown": "a hostNetwork client whose owning pod (UID or name) is not known",
    "server_unknown_cluster_ip": "a cluster IP that is no Service's, pod's or node's at the time",
    "server_node_port_unresolved": "a node IP:port that no single hostNetwork workload serves",
    "service_without_endpoints": "a Service with no ready endpoints",
    "dns_service_unknown": "a cluster DNS name of a Service the mapper does not know",
    "dns_service_pod_unknown": "a headless Service's pod name the mapper does not know",
    "dns_pod_unknown": "a pod DNS name whose IP is no pod's",
    "dns_cluster_name_unsupported": "a cluster DNS name of a form the mapper does not resolve",
    "dns_external_name_in_cluster": "an outside name answered with cluster addresses (DNS interception)",
    "istio_unusable": "an Istio report without usable workload labels",
    "self_edge": "a workload calling itself (no edge)",
    "excluded_namespace": "the namespace is excluded by configuration",
    "internet_reporting_disabled": "Internet traffic reporting is off by configuration",
    "bad_ip": "a report entry whose IP is not one",
    "bad_port": "a report entry whose port is out of range",
    "bad_time": "a report entry whose time is not one",
    "bad_status": "a report entry whose response code is out of range",
    "empty_name": "a report entry with an empty name",
    "too_long": "a report entry with an over-long name",
    "no_actions": "an AWS report without actions",
    "queue_full": "the producer's pending bound was reached",
    "parse_errors": "input the producer could not parse",
    "poll_failures": "failed reads of the logs",
    "scrape_failures": "failed sidecar scrapes",
    "report_failures": "failed requests to the mapper (retried; data kept)",
    "kernel_dropped": "packets the kernel dropped before the sniffer read them (capture buffer full)",
    "unknown_operations": "AWS calls not in the IAM datasets (reported by name)",
    "batches_refused_busy": "report batches refused while the mapper's queue was full (retried)",
}
"""Every drop reason the mapper and producers count, and why it happens; a reason missing here is
"unexplained" (a resolve error, an unsupported observation, a new counter nobody documented)."""


@dataclass(frozen=True, slots=True)
class StatusSeen:
    """A producer instance's newest status and when the mapper received it (``received``)."""

    component: str
    instance: str
    node: str
    watching: tuple[str, ...]
    counters: tuple[tuple[str, int], ...]
    received: float

    @property
    def role(self) -> tuple[str, str, tuple[str, ...]]:
        """What a later instance replaces: a sniffer per node, any other component per what it watches."""
        return self.component, self.node if self.component == "sniffer" else "", self.watching


@runtime_checkable
class CountingResolver(Protocol):
    """``agent.mapper.resolver.Resolver``: resolve, and its drop counts by reason."""

    stats: Counter[str]

    def resolve(self, obs: Observation) -> list[Edge]: ...


class Coverage:
    """The coverage state, shared by the API's threads and the report queue's workers (one lock)."""

    def __init__(
        self,
        stale_after: float,
        *,
        nodes: Callable[[], Iterable[str]] = tuple,
        dropped: Callable[[], Mapping[str, int]] = dict,
        skipped: Callable[[], Mapping[str, int]] = dict,
        refused: Callable[[], int] = int,
        clock: Callable[[], float] = time.time,
        max_ips: int = 1_000,
        shown_ips: int = 20,
    ) -> None:
        if stale_after <= 0 or max_ips < 1 or shown_ips < 1:
            raise ValueError("need stale_after > 0, max_ips >= 1 and shown_ips >= 1")
        self.stale_after = stale_after
        self._nodes, self._dropped, self._skipped, self._refused = nodes, dropped, skipped, refused
        self._clock = clock
        self._max_ips, self._shown_ips = max_ips, shown_ips
        self._lock = threading.Lock()
        self._statuses: dict[tuple[str, str], StatusSeen] = {}
        self._node_reports: dict[str, float] = {}  # node → newest sniffer report naming it
        self._received = 0
        self._resolved = 0
        self._unresolved: dict[str, list[float]] = {}  # ip → [count, last seen]

    # ------------------------------------------------------------------ what arrives

    def status(
        self,
        component: str,
        instance: str,
        node: str,
        watching: Iterable[str],
        counters: Iterable[tuple[str, int]],
    ) -> None:
        now = self._clock()
        seen = StatusSeen(component, instance, node, tuple(sorted(watching)), tuple(sorted(counters)), now)
        with self._lock:
            self._statuses[component, instance] = seen
            if component == "sniffer" and node:
                self._node_reports[node] = now
            # A silent instance of the same role is a replaced pod: forget it.
            for key, other in list(self._statuses.items()):
                if other.role == seen.role and key != (component, instance) and self._stale(other, now):
                    del self._statuses[key]

    def node_reported(self, node: str) -> None:
        """A sniffer's report named ``node`` (the reports' ``node`` field)."""
        if node:
            now = self._clock()
            with self._lock:
                self._node_reports[node] = now

    def observed(self, edges: int, unresolved_ip: str, seen: float) -> None:
        """One observation resolved into ``edges`` edges; ``unresolved_ip``: the IP it could not
        attribute ("" when none)."""
        with self._lock:
            self._received += 1
            self._resolved += 1 if edges else 0
            if not unresolved_ip:
                return
            found = self._unresolved.get(unresolved_ip)
            if found is not None:
                found[0] += 1
                found[1] = max(found[1], seen)
                return
            if len(self._unresolved) >= self._max_ips:  # bounded: forget the least seen
                del self._unresolved[min(self._unresolved, key=lambda ip: self._unresolved[ip])]
            self._unresolved[unresolved_ip] = [1, seen]

    def attach_api(self, skipped: Callable[[], Mapping[str, int]], refused: Callable[[], int]) -> None:
        """Read the API's skipped report entries and refused batches (the API is built after this)."""
        self._skipped, self._refused = skipped, refused

    def resolver(self, inner: CountingResolver) -> CoverageResolver:
        """``inner`` counted into this coverage: what the report queue resolves with."""
        return CoverageResolver(inner, self)

    # ------------------------------------------------------------------ the document

    def _stale(self, seen: StatusSeen, now: float) -> bool:
        return now - seen.received > self.stale_after

    def document(self) -> dict[str, Any]:
        """The coverage now, in the GraphQL ``Coverage`` shape (times as RFC 3339 text)."""
        now = self._clock()
        names = set(self._nodes())
        with self._lock:
            statuses = sorted(self._statuses.values(), key=lambda s: (s.component, s.instance))
            node_reports = dict(self._node_reports)
            received, resolved = self._received, self._resolved
            unresolved = sorted(self._unresolved.items(), key=lambda item: (-item[1][0], item[0]))
        names.update(node_reports)
        nodes = []
        for name in sorted(names):
            last = node_reports.get(name)
            sniffers = sorted(s.instance for s in statuses if s.component == "sniffer" and s.node == name)
            nodes.append(
                {
                    "name": name,
                    "covered": last is not None and now - last <= self.stale_after,
                    "sniffers": sniffers,
                    "lastReport": format_time(last) if last is not None else None,
                }
            )
        components = [
            {
                "component": s.component,
                "instance": s.instance,
                "node": s.node,
                "watching": list(s.watching),
                "counters": [{"name": name, "value": value} for name, value in s.counters],
                "lastReport": format_time(s.received),
                "silent": self._stale(s, now),
            }
            for s in statuses
        ]
        drops = self._drops(statuses)
        unexplained = sum(d["count"] for d in drops if not d["explanation"])
        return {
            "generatedAt": format_time(now),
            "staleAfterSeconds": self.stale_after,
            # No node known (the cluster state not synced, no sniffer ever reported): not covered.
            "covered": bool(nodes)
            and all(n["covered"] for n in nodes)
            and not any(c["silent"] for c in components),
            "nodes": nodes,
            "components": components,
            "observationsReceived": received,
            "observationsResolved": resolved,
            "drops": drops,
            "unexplainedDrops": unexplained,
            "unresolvedIps": [
                {"ip": ip, "count": int(count), "lastSeen": format_time(last)}
                for ip, (count, last) in unresolved[: self._shown_ips]
            ],
        }

    def _drops(self, statuses: Iterable[StatusSeen]) -> list[dict[str, Any]]:
        """Counts by (reason, source), zeros left out: the mapper's (resolver, skipped report
        entries, refused batches) and each component's own counters, summed over its instances."""
        counts: Counter[tuple[str, str]] = Counter()
        for reasons in (self._dropped(), self._skipped(), {"batches_refused_busy": self._refused()}):
            for reason, count in reasons.items():
                counts[reason, MAPPER] += count
        for status in statuses:
            for name, value in status.counters:
                counts[name, status.component] += value
        return [
            {"reason": reason, "source": source, "count": count, "explanation": EXPLANATIONS.get(reason, "")}
            for (reason, source), count in sorted(counts.items())
            if count
        ]


def coverage_body(document: Mapping[str, Any], rename: Callable[[str], str] | None = None) -> bytes:
    """The document as the cloud's ``POST /v1/coverage`` body; with ``rename`` (the anonymizer's
    keyed hash) the names in it (nodes, pods, what is watched) are replaced, as the edges' are;
    reasons, counts, times and IPs are kept (anonymized edges keep their IPs too)."""
    doc = dict(document)
    if rename is not None:
        doc["nodes"] = [
            {**n, "name": rename(n["name"]), "sniffers": [rename(s) for s in n["sniffers"]]}
            for n in doc["nodes"]
        ]
        doc["components"] = [
            {
                **c,
                "instance": rename(c["instance"]),
                "node": rename(c["node"]),
                "watching": [rename(item) for item in c["watching"]],
            }
            for c in doc["components"]
        ]
    return json.dumps(doc, separators=(",", ":")).encode()


class CoverageResolver:
    """An :class:`~agent.mapper.api.protocols.ObservationResolver` that resolves with ``inner`` and
    counts each observation, noting the IP of one the resolver could not attribute (its client's or
    its server's drop counter grew). Called from the report queue's worker thread only, as ``inner``."""

    def __init__(self, inner: CountingResolver, coverage: Coverage) -> None:
        self._inner = inner
        self._coverage = coverage
        self._total = -1  # the counters' total when the sums below were taken (-1: never)
        self._clients = self._servers = 0

    def _sums(self) -> tuple[int, int]:
        stats = self._inner.stats
        return sum(stats[r] for r in CLIENT_REASONS), sum(stats[r] for r in SERVER_REASONS)

    def resolve(self, obs: Observation) -> list[Edge]:
        # On the ingest path: most observations count nothing, so the per-reason sums are taken
        # only when the counters' total moved (it only grows), not twice per observation.
        stats = self._inner.stats
        total = stats.total()
        if total != self._total:  # counted outside resolve (or never summed): start from here
            self._clients, self._servers = self._sums()
        edges = self._inner.resolve(obs)
        ip = ""
        after = stats.total()
        if after != total:
            clients, servers = self._sums()
            if clients > self._clients:
                ip = getattr(obs, "client_ip", "")
            elif servers > self._servers:
                ip = getattr(obs, "server_ip", "")
            self._clients, self._servers = clients, servers
        self._total = after
        self._coverage.observed(len(edges), ip, getattr(obs, "seen_at", 0.0))
        return edges
