"""A stand-in mapper for the CLI's tests of ``check``, ``snapshot`` and ``diff``: an
``agent.mapperclient.Transport`` (what ``main(argv, transport)`` sends through) that answers the
GraphQL operations those commands send, by operation name, with documents in the API's shapes:
edges as the codec's edge documents, cluster facts typed (labels as key/value pairs), snapshots as
:mod:`agent.snapshotwire` documents. Every request is kept, so a test can show no request was sent.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from agent import snapshotwire, wire
from agent.mapperclient import Request, Response, TransportError
from agent.model import ClusterFacts, Edge, Snapshot
from agent.wiretime import format_time

_OPERATION = re.compile(r"^\s*(?:query|mutation)\s+(\w+)")


def facts_answer(facts: ClusterFacts) -> dict[str, Any]:
    """``clusterFacts`` as the GraphQL API answers it."""

    def pairs(labels: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
        return [{"key": k, "value": v} for k, v in labels]

    return {
        "namespaces": [{"name": n.name, "labels": pairs(n.labels)} for n in facts.namespaces],
        "workloads": [
            {
                "namespace": w.workload.namespace,
                "name": w.workload.name,
                "kind": w.workload.kind,
                "labels": pairs(w.labels),
                "ports": [{"name": p.name, "port": p.port, "protocol": p.protocol} for p in w.ports],
                "hostNetwork": w.host_network,
                "ips": list(w.ips),
            }
            for w in facts.workloads
        ],
        "nodes": [{"name": n.name, "addresses": list(n.addresses)} for n in facts.nodes],
    }


def _info(s: Snapshot) -> dict[str, Any]:
    return {"name": s.name, "takenAt": format_time(s.taken_at), "auto": s.auto, "edges": len(s.edges)}


@dataclass
class StandInMapper:
    """``edges`` and ``facts``: the live map; ``snapshots``: by name; ``now``: the time a
    ``saveSnapshot`` records. ``down``: refuse every connection (an unreachable mapper)."""

    edges: list[Edge] = field(default_factory=list)
    facts: ClusterFacts = field(default_factory=ClusterFacts)
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    now: float = 0.0
    down: bool = False
    requests: list[str] = field(default_factory=list)  # operation names, in order

    def __call__(self, request: Request) -> Response:
        body = json.loads(request.body)
        match = _OPERATION.match(body["query"])
        assert match, body["query"]
        operation = match.group(1)
        self.requests.append(operation)
        if self.down:
            raise TransportError("ConnectionError: connection refused")
        data = getattr(self, f"_{operation}")(body.get("variables") or {})
        return Response(200, {"content-type": "application/json"}, json.dumps({"data": data}).encode())

    def _Edges(self, _: dict[str, Any]) -> dict[str, Any]:
        return {"edges": [wire.plain(wire.to_doc(e)) for e in self.edges]}

    def _ClusterFacts(self, _: dict[str, Any]) -> dict[str, Any]:
        return {"clusterFacts": facts_answer(self.facts)}

    def _Snapshots(self, _: dict[str, Any]) -> dict[str, Any]:
        newest_first = sorted(self.snapshots.values(), key=lambda s: -s.taken_at)
        return {"snapshots": [_info(s) for s in newest_first]}

    def _Snapshot(self, variables: dict[str, Any]) -> dict[str, Any]:
        found = self.snapshots.get(variables["name"])
        return {"snapshot": snapshotwire.encode_snapshot(found).decode() if found else None}

    def _SaveSnapshot(self, variables: dict[str, Any]) -> dict[str, Any]:
        snapshot = Snapshot(variables["name"], self.now, tuple(self.edges), self.facts)
        self.snapshots[snapshot.name] = snapshot
        return {"saveSnapshot": _info(snapshot)}

    def _LoadSnapshot(self, variables: dict[str, Any]) -> dict[str, Any]:
        snapshot = snapshotwire.decode_snapshot(variables["document"])
        self.snapshots[snapshot.name] = snapshot
        return {"loadSnapshot": _info(snapshot)}

    def _DeleteSnapshot(self, variables: dict[str, Any]) -> dict[str, Any]:
        return {"deleteSnapshot": self.snapshots.pop(variables["name"], None) is not None}
