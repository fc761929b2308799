"""Drained pairs (:mod:`agent.sniffer.pairs`) → the GraphQL report mutations the reporter sends (pure).

Otterize's three sniffer mutations: ``reportCaptureResults`` (DNS), ``reportTCPCaptureResults``
(TCP SYNs) and ``reportSocketScanResults`` (established sockets), one ``RecordedDestinationsForSrc``
per source IP; the mapper's side of these shapes is :mod:`agent.mapper.api.mutations`. Each
``Destination`` carries Otterize's fields (``destination``, ``destinationIP``, ``destinationPort``,
``TTL``, ``lastSeen``) and, when known, the schema's additive ``srcPort``, for DNS
``dnsServerIP`` and ``cnames``, and for a socket scan ``clientPodUid`` and ``clientPod`` (the pod
the client socket's owning process is in, :mod:`agent.sniffer.owners`). A DNS pair becomes one
destination per IP it resolved to.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.model import Method
from agent.reporter import Mutation
from agent.sniffer.pairs import Batch, PairKey, Seen
from agent.wire import format_time

# Per kind of pair: the mutation that reports it and the GraphQL input type of its ``results``.
_MUTATIONS: Mapping[Method, tuple[str, str]] = {
    Method.DNS: ("reportCaptureResults", "CaptureResults"),
    Method.TCP: ("reportTCPCaptureResults", "CaptureTCPResults"),
    Method.SOCKET_SCAN: ("reportSocketScanResults", "SocketScanResults"),
}


def destinations(key: PairKey, seen: Seen) -> list[dict[str, Any]]:
    """One pair → its ``Destination`` inputs (extension fields only when known)."""
    common: dict[str, Any] = {"destination": key.destination, "lastSeen": format_time(seen.last_seen)}
    if seen.client_port:
        common["srcPort"] = seen.client_port
    if key.kind is not Method.DNS:
        if seen.pod_uid:
            common["clientPodUid"] = seen.pod_uid
        if seen.pod:
            common["clientPod"] = seen.pod
        return [{**common, "destinationPort": key.port}]
    common["TTL"] = seen.ttl
    if seen.server_ip:
        common["dnsServerIP"] = seen.server_ip
    if seen.cnames:
        common["cnames"] = list(seen.cnames)
    if not seen.ips:
        return [common]
    return [{**common, "destinationIP": ip} for ip in seen.ips]


def results_for(pairs: Mapping[PairKey, Seen]) -> dict[str, Any]:
    """Pairs of one kind → the ``results`` input (``CaptureResults`` and its siblings):
    one ``RecordedDestinationsForSrc`` per source IP, sorted for stable output. ``srcHostname``
    is the newest hostname known among the source's pairs (socket scan only; else empty)."""
    by_source: dict[str, tuple[list[dict[str, Any]], float, str]] = {}
    for key, seen in sorted(pairs.items()):
        found, hostname_seen, hostname = by_source.get(key.source, ([], -1.0, ""))
        found.extend(destinations(key, seen))
        if seen.hostname and seen.last_seen > hostname_seen:
            hostname_seen, hostname = seen.last_seen, seen.hostname
        by_source[key.source] = (found, hostname_seen, hostname)
    return {
        "results": [
            {"srcIp": source, "srcHostname": hostname, "destinations": found}
            for source, (found, _, hostname) in by_source.items()
        ]
    }


def mutations_for(batch: Batch, node: str = "") -> list[Mutation[PairKey, Seen]]:
    """A drained batch → the mutations to send (DNS, TCP, socket scan; empty ones skipped);
    ``node`` (the reporting node's name, when known) goes in each ``results`` as ``node``."""
    by_kind: dict[Method, dict[PairKey, Seen]] = {kind: {} for kind in _MUTATIONS}
    for key, seen in batch.entries.items():
        by_kind[key.kind][key] = seen
    mutations = []
    for kind, (name, input_type) in _MUTATIONS.items():
        if by_kind[kind]:
            query = f"mutation {name}($results: {input_type}!) {{ {name}(results: $results) }}"
            results = results_for(by_kind[kind])
            if node:
                results["node"] = node
            variables = {"results": results}
            mutations.append(Mutation(name, query, variables, by_kind[kind]))
    return mutations
