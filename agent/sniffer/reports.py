"""Drained pairs → the GraphQL report mutations the sniffer sends to the mapper (pure).

Pairs come from :class:`agent.sniffer.pairs.PairCollector` (a drained :class:`~agent.sniffer.pairs.Batch`);
the :class:`Mutation` objects go to the reporter (:mod:`agent.sniffer.reporter`), which sends
them through :mod:`agent.mapperclient` to the mapper's three Otterize-compatible mutations:
``reportCaptureResults`` (DNS), ``reportTCPCaptureResults`` (TCP SYNs) and
``reportSocketScanResults`` (established sockets), one ``RecordedDestinationsForSrc`` per
source IP. The mapper's side of the same shapes is :mod:`agent.mapper.api.mutations`.

Each ``Destination`` carries Otterize's fields (``destination``, ``destinationIP``,
``destinationPort``, ``TTL``, ``lastSeen``) and, when known, the schema's additive extension
fields: ``srcPort`` (the client's port), and for DNS ``dnsServerIP`` (the server that answered)
and ``cnames`` (the chain from the queried name to the name that has the addresses). Times are
:func:`agent.wire.format_time`. A DNS pair becomes one destination per IP it resolved to.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.model import Method
from agent.sniffer.pairs import Batch, PairKey, Seen
from agent.wire import format_time


@dataclass(frozen=True, slots=True)
class MutationSpec:
    """A report mutation's field name and the GraphQL input type of its ``results``."""

    field: str
    input_type: str

    @property
    def query(self) -> str:
        return f"mutation {self.field}($results: {self.input_type}!) {{ {self.field}(results: $results) }}"


SPECS: Mapping[Method, MutationSpec] = {
    Method.DNS: MutationSpec("reportCaptureResults", "CaptureResults"),
    Method.TCP: MutationSpec("reportTCPCaptureResults", "CaptureTCPResults"),
    Method.SOCKET_SCAN: MutationSpec("reportSocketScanResults", "SocketScanResults"),
}


@dataclass(frozen=True, slots=True)
class Mutation:
    """One GraphQL request: ``field`` names the mutation; ``pairs`` are what it carries (put
    back into the collector when it fails)."""

    kind: Method
    field: str
    query: str
    variables: dict[str, Any]
    pairs: Mapping[PairKey, Seen] = dataclasses.field(repr=False)


def destinations(key: PairKey, seen: Seen) -> list[dict[str, Any]]:
    """One pair → its ``Destination`` inputs (extension fields only when known)."""
    common: dict[str, Any] = {"destination": key.destination, "lastSeen": format_time(seen.last_seen)}
    if seen.client_port:
        common["srcPort"] = seen.client_port
    if key.kind is not Method.DNS:
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


def mutations_for(batch: Batch | Mapping[PairKey, Seen]) -> list[Mutation]:
    """A drained batch → the mutations to send (DNS, TCP, socket scan; empty ones skipped)."""
    pairs = batch.pairs if isinstance(batch, Batch) else batch
    by_kind: dict[Method, dict[PairKey, Seen]] = {kind: {} for kind in SPECS}
    for key, seen in pairs.items():
        by_kind[key.kind][key] = seen
    mutations = []
    for kind, spec in SPECS.items():
        if by_kind[kind]:
            variables = {"results": results_for(by_kind[kind])}
            mutations.append(Mutation(kind, spec.field, spec.query, variables, by_kind[kind]))
    return mutations
