"""The server side of an observation by address (TCP connection, socket scan): the target of its
edges.

Asked by `agent.mapper.resolver`; answers from `agent.mapper.cluster.ClusterState` as *hits*
`(target, target_service, ambiguous)` with the span they hold for, and counts every unresolved
server in the shared `stats` by reason. Names (DNS answers) are `agent.mapper.names`'s.

A ClusterIP goes through the Service's endpoints to its pods' workloads; a pod IP to its pod's
workload, as of the observation's time; a node IP to the pod listening on that port there
(hostNetwork port or hostPort); any other IP outside the cluster's CIDRs and the special ranges is
an Internet target.
"""

from __future__ import annotations

import ipaddress
import math
import socket
from collections import Counter
from collections.abc import Sequence

from agent.mapper.cluster import ClusterState, ServiceInfo
from agent.model import InternetTarget, Target

Hit = tuple[Target, str, bool]  # (target, target_service, ambiguous)
Span = tuple[float, float]  # [start, end) an answer holds for; None in its place: do not memoise
ALWAYS: Span = (-math.inf, math.inf)


class ServerResolver:
    def __init__(self, state: ClusterState, stats: Counter[str], internal_cidrs: Sequence[str]) -> None:
        self.state = state
        self.stats = stats
        # The cluster's pod/service CIDRs, when known: unknown IPs inside are never "Internet".
        self._internal = [ipaddress.ip_network(c, strict=False) for c in internal_cidrs]
        self._internal_v4 = [
            (int(n.network_address), int(n.netmask)) for n in self._internal if n.version == 4
        ]

    def targets(self, ip: str, port: int, t: float) -> tuple[list[Hit], Span | None]:
        """The targets at `ip`:`port` at `t`, and the time span they hold for."""
        state = self.state
        service = state.service_span_at_ip(ip, t)
        if service is not None:
            return self.service_hits(service[2]), (service[0], service[1])
        pod = state.pod_span_at(ip, t)
        if pod is not None:
            return [(pod[2].identity, "", False)], (pod[0], pod[1])
        if state.is_node_ip(ip):
            workloads = {p.identity for p in state.pods_on_node_port(ip, port, t)}
            if len(workloads) == 1:
                return [(workloads.pop(), "", False)], None
            self.stats["server_node_port_unresolved"] += 1
            return [], None
        if state.is_known_ip(ip) or not self._external(ip):
            self.stats["server_unknown_cluster_ip"] += 1
            return [], None
        return [(InternetTarget("", (ip,), port), "", False)], ALWAYS

    def in_cluster(self, ip: str, t: float) -> bool:
        """Whether `ip` is the cluster's at `t`: a Service's, a pod's, a node's, or inside the internal
        CIDRs (or loopback, link-local...): never an Internet address."""
        state = self.state
        return (
            state.service_span_at_ip(ip, t) is not None
            or state.pod_span_at(ip, t) is not None
            or state.is_node_ip(ip)
            or state.is_known_ip(ip)
            or not self._external(ip)
        )

    def service_hits(self, service: ServiceInfo) -> list[Hit]:
        """The workloads behind `service` (its endpoints' pods), named with the service."""
        targets = self.state.service_targets(service)
        if not targets:
            self.stats["service_without_endpoints"] += 1
        return [(identity, service.name, False) for identity in targets]

    def _external(self, ip: str) -> bool:
        try:  # IPv4 first, as integers: ipaddress objects cost ~10x more, once per new Internet IP
            value = int.from_bytes(socket.inet_pton(socket.AF_INET, ip), "big")
        except OSError:
            value = -1
        if value >= 0:
            if value >> 24 == 127 or value >> 16 == 0xA9FE or value >> 28 == 0xE or value == 0:
                return False  # loopback, link-local, multicast, unspecified
            return not any(value & mask == network for network, mask in self._internal_v4)
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if address.is_loopback or address.is_link_local or address.is_multicast or address.is_unspecified:
            return False
        return not any(address in network for network in self._internal)
