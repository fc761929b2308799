"""The snapshot and facts documents (agent.snapshotwire): round trips, the JSON export read as a
snapshot, and bad documents refused with the path of what is wrong."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import snapshotwire, wire
from agent.model import (
    ClusterFacts,
    NamedPort,
    NamespaceFacts,
    NodeFacts,
    Snapshot,
    WorkloadFacts,
    WorkloadIdentity,
)
from agent.wiretime import EARLIEST, WireError
from tests.unit.agent.test_wire import edges, identities, texts, times

T0 = 1_764_296_106.918878
FRONTEND = WorkloadIdentity("shop", "frontend", "Deployment")

labels = st.dictionaries(texts, texts, max_size=3).map(lambda d: tuple(sorted(d.items())))
sorted_unique = lambda values: st.frozensets(values, max_size=3).map(lambda s: tuple(sorted(s)))  # noqa: E731
named_ports = st.builds(NamedPort, texts, st.integers(1, 65535), st.sampled_from(["TCP", "UDP", "SCTP"]))
facts_strategy = st.builds(
    ClusterFacts,
    namespaces=sorted_unique(st.builds(NamespaceFacts, texts, labels)),
    workloads=sorted_unique(
        st.builds(
            WorkloadFacts, identities, labels, sorted_unique(named_ports), st.booleans(), sorted_unique(texts)
        )
    ),
    nodes=sorted_unique(st.builds(NodeFacts, texts, sorted_unique(texts))),
)
snapshots = st.builds(
    Snapshot, texts, times, st.lists(edges, max_size=4).map(tuple), facts_strategy, st.booleans()
)


@settings(max_examples=150, deadline=None)
@given(snapshots)
def test_every_snapshot_round_trips_through_bytes_and_json_values(snapshot: Snapshot) -> None:
    data = snapshotwire.encode_snapshot(snapshot)
    back = snapshotwire.decode_snapshot(data)
    assert (back.name, back.taken_at, back.auto, back.facts) == (
        snapshot.name,
        snapshot.taken_at,
        snapshot.auto,
        snapshot.facts,
    )
    # Edges come back as the codec reads them, in the export's order.
    assert sorted(wire.encode(wire.to_doc(e)) for e in back.edges) == sorted(
        wire.encode(wire.to_doc(e)) for e in snapshot.edges
    )
    assert snapshotwire.encode_snapshot(back) == data  # canonical once written
    assert snapshotwire.snapshot_from_document(json.loads(data)) == back
    assert snapshotwire.snapshot_document(back) == json.loads(data)
    assert snapshotwire.decode_facts(snapshotwire.encode_facts(snapshot.facts)) == snapshot.facts
    assert snapshotwire.facts_from_document(snapshotwire.facts_document(snapshot.facts)) == snapshot.facts


def test_the_document_has_the_contracts_shape() -> None:
    facts = ClusterFacts(
        (NamespaceFacts("shop", (("kubernetes.io/metadata.name", "shop"),)),),
        (WorkloadFacts(FRONTEND, (("app", "frontend"),), (NamedPort("http", 8080),), False, ("10.0.0.5",)),),
        (NodeFacts("node-1", ("192.168.1.10",)),),
    )
    edge = wire.from_doc(
        wire.decode_doc(
            json.dumps(
                {
                    "client": {"namespace": "shop", "name": "frontend", "kind": "Deployment"},
                    "target": {"type": "workload", "namespace": "shop", "name": "cart", "kind": "Deployment"},
                    "firstSeen": "2025-11-28T02:15:06Z",
                    "lastSeen": "2025-11-28T02:16:06Z",
                    "ports": [7070],
                }
            )
        )
    )
    doc = snapshotwire.snapshot_document(Snapshot("before", T0, (edge,), facts))
    assert doc == {
        "apiVersion": "network-mapper/v1",
        "kind": "Snapshot",
        "version": wire.FORMAT_VERSION,
        "name": "before",
        "takenAt": wire.format_time(T0),
        "auto": False,
        "facts": {
            "namespaces": [{"name": "shop", "labels": {"kubernetes.io/metadata.name": "shop"}}],
            "workloads": [
                {
                    "namespace": "shop",
                    "name": "frontend",
                    "kind": "Deployment",
                    "labels": {"app": "frontend"},
                    "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                    "hostNetwork": False,
                    "ips": ["10.0.0.5"],
                }
            ],
            "nodes": [{"name": "node-1", "addresses": ["192.168.1.10"]}],
        },
        "edges": [wire.plain(wire.to_doc(edge))],
    }


def test_a_json_export_reads_as_a_snapshot_without_name_or_facts() -> None:
    edge = wire.from_doc(wire.to_doc(wire.edge_from_plain(_edge_value(last_seen="2025-11-28T03:00:00Z"))))
    older = wire.edge_from_plain(_edge_value(last_seen="2025-11-28T02:00:00Z", name="other"))
    export = wire.encode(wire.export_document([edge, older]))
    snapshot = snapshotwire.decode_snapshot(export)
    assert (snapshot.name, snapshot.facts, snapshot.auto) == ("", ClusterFacts(), False)
    assert snapshot.taken_at == edge.last_seen  # the newest lastSeen
    assert {e.key for e in snapshot.edges} == {edge.key, older.key}
    assert snapshotwire.snapshot_from_document(json.loads(export)) == snapshot
    empty = snapshotwire.decode_snapshot(b'{"apiVersion": "network-mapper/v1", "version": 4, "edges": []}')
    assert (empty.edges, empty.taken_at) == ((), EARLIEST)


def _edge_value(last_seen: str, name: str = "cart") -> dict[str, Any]:
    return {
        "client": {"namespace": "shop", "name": "frontend", "kind": "Deployment"},
        "target": {"type": "workload", "namespace": "shop", "name": name, "kind": "Deployment"},
        "firstSeen": "2025-11-28T01:00:00Z",
        "lastSeen": last_seen,
    }


GOOD: dict[str, Any] = {
    "apiVersion": "network-mapper/v1",
    "kind": "Snapshot",
    "version": 4,
    "name": "before",
    "takenAt": "2025-11-28T02:15:06Z",
    "facts": {
        "namespaces": [{"name": "shop", "labels": {}}],
        "workloads": [{"namespace": "shop", "name": "frontend", "ports": [{"port": 80}]}],
        "nodes": [],
    },
    "edges": [_edge_value("2025-11-28T02:00:00Z")],
}


def _with(path: str, value: Any) -> dict[str, Any]:
    """GOOD with the value at ``path`` (dotted; list indexes as numbers) replaced (None: removed)."""
    doc = json.loads(json.dumps(GOOD))
    *parents, last = path.split(".")
    node: Any = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return doc


@pytest.mark.parametrize(
    ("doc", "where"),
    [
        (_with("kind", "Intents"), "$.kind"),
        (_with("kind", None) | {"apiVersion": "v1"}, "$.apiVersion"),
        (_with("version", 99), "$.version"),
        (_with("takenAt", None), "takenAt"),
        (_with("takenAt", "yesterday"), "$.takenAt"),
        (_with("takenAt", "1999-12-31T23:59:59Z"), "$.takenAt"),
        (_with("facts.workloads.0.ports.0.port", 0), "$.facts.workloads[0].ports[0].port"),
        (_with("facts.workloads.0.ports.0.protocol", "HTTP"), "$.facts.workloads[0].ports[0].protocol"),
        (_with("facts.namespaces.0.labels", {"a": 1}), "$.facts.namespaces[0].labels"),
        (_with("facts.workloads.0.name", None), "$.facts.workloads[0]"),
        (_with("edges.0.count", -1), "$.edges[0].count"),
        (_with("edges.0.lastSeen", "2200-01-01T00:00:00Z"), "$.edges[0]"),
        (_with("name", "x" * 300), "$.name"),
    ],
)
def test_bad_documents_are_refused_naming_where(doc: dict[str, Any], where: str) -> None:
    snapshotwire.decode_snapshot(json.dumps(GOOD))  # the base document is good
    with pytest.raises(WireError, match=re.escape(where)):
        snapshotwire.decode_snapshot(json.dumps(doc))
    with pytest.raises(WireError, match=re.escape(where)):
        snapshotwire.snapshot_from_document(doc)


@pytest.mark.parametrize("data", [b"", b"[", b"[]", b"42", b"null", b'"Snapshot"', b"\xff\xfe"])
def test_what_is_not_a_json_object_is_a_wire_error(data: bytes) -> None:
    with pytest.raises(WireError):
        snapshotwire.decode_snapshot(data)
    with pytest.raises(WireError):
        snapshotwire.snapshot_from_document(json.loads(data) if data in (b"[]", b"42", b"null") else data)
