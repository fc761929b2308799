"""The stored form of an edge and the one ingest: equal edges have byte-equal text whoever wrote
them, keys do not move, and merging through the ingest service (on both stores) is idempotent."""

from __future__ import annotations

import itertools
import time
from datetime import timedelta, timezone

import msgspec
import pytest

from agent import wire
from agent.model import (
    AwsTarget,
    Edge,
    HttpResource,
    InternetTarget,
    KafkaTopic,
    Method,
    WorkloadIdentity,
    merge_edges,
)
from agent.wire import canonical
from cloud_functions.store.base import GraphStore
from cloud_functions.store.ingestion import InvalidEdges, coalesce
from cloud_functions.store.storedform import edge_key, filter_fields

T0 = float(int(time.time()))


def edge(client: str = "frontend", target: object = "cart", **fields: object) -> Edge:
    values: dict[str, object] = {"first_seen": T0, "last_seen": T0 + 60, "methods": frozenset({Method.TCP})}
    values |= fields
    resolved = WorkloadIdentity("shop", target, "Deployment") if isinstance(target, str) else target
    return Edge(WorkloadIdentity("shop", client, "Deployment"), resolved, **values)  # type: ignore[arg-type]


def as_sent(doc: wire.EdgeDoc, **changes: object) -> wire.EdgeDoc:
    """The document as another writer may send it: the same edge, written differently."""
    return msgspec.structs.replace(doc, **changes)


def test_equal_edges_have_equal_text_whoever_wrote_them() -> None:
    e = edge(
        methods=frozenset({Method.TCP, Method.DNS}),
        http=(HttpResource("/b", ("GET", "PUT")), HttpResource("/a")),
        kafka_topics=(KafkaTopic("orders", ("consume", "produce")),),
        aws_actions=("s3:Get", "s3:Put"),
    )
    doc = wire.to_doc(e)
    assert canonical(doc) == doc
    plus_two = timezone(timedelta(hours=2))  # the same instants, written with another offset
    unsorted = as_sent(
        doc,
        firstSeen=doc.firstSeen.astimezone(plus_two),
        lastSeen=doc.lastSeen.astimezone(plus_two),
        methods=("tcp", "dns"),
        http=(HttpResource("/b", ("PUT", "GET")), HttpResource("/a")),
        awsActions=("s3:Put", "s3:Get", "s3:Put"),
    )
    assert wire.encode(unsorted) != wire.encode(doc)
    assert wire.encode(canonical(unsorted)) == wire.encode(doc)
    assert wire.from_doc(canonical(unsorted)) == merge_edges(e, e)  # sorted, merged


def test_every_time_of_the_document_is_written_in_utc() -> None:
    doc = wire.to_doc(edge(target_service="cart-svc", target_service_seen=T0 + 30))
    assert doc.targetServiceSeen is not None and canonical(doc) == doc
    minus_five = timezone(timedelta(hours=-5))
    sent = as_sent(doc, targetServiceSeen=doc.targetServiceSeen.astimezone(minus_five))
    assert wire.encode(canonical(sent)) == wire.encode(doc) != wire.encode(sent)


def test_keys_do_not_move() -> None:
    """Stored edges are found by these keys: a change here orphans every stored edge."""
    doc = wire.to_doc(edge(first_seen=1764296106.918878, last_seen=1764296166.0))
    assert edge_key(doc).hex() == "7127b6a8e28647e31d33cbb1321f81d7"
    other = as_sent(doc, methods=("dns",), count=9, live=True, targetService="cart-svc")
    assert edge_key(other) == edge_key(doc), "only client and target make the key"
    for target in (InternetTarget("cart", (), 0), AwsTarget("cart"), WorkloadIdentity("shop", "cart", "")):
        assert edge_key(wire.to_doc(edge(target=target))) != edge_key(doc)


def test_filter_fields_come_from_the_document() -> None:
    f = filter_fields(wire.to_doc(edge(methods=frozenset({Method.TCP, Method.DNS}))))
    assert (f.client_namespace, f.client_name, f.target_namespace, f.target_name) == (
        "shop",
        "frontend",
        "shop",
        "cart",
    )
    assert (f.methods, f.last_seen) == (("dns", "tcp"), T0 + 60)
    internet = filter_fields(wire.to_doc(edge(target=InternetTarget("shop", (), 443))))
    assert (internet.target_namespace, internet.target_name) == (None, None)


def test_a_batch_is_coalesced_by_key() -> None:
    a, b = edge(count=3), edge(count=5, methods=frozenset({Method.DNS}), last_seen=T0 + 30)
    other = edge("checkout")
    found = coalesce([wire.to_doc(a), wire.to_doc(other), wire.to_doc(b, live=True)])
    assert list(found) == [edge_key(wire.to_doc(a)), edge_key(wire.to_doc(other))]
    merged = found[edge_key(wire.to_doc(a))]
    assert wire.from_doc(merged.doc) == merge_edges(a, b) and merged.doc.live, "the later flag wins"
    assert merged.text == wire.encode(merged.doc)


def test_times_out_of_range_name_every_edge() -> None:
    good = wire.to_doc(edge())
    early = wire.decode_doc(wire.encode(good).replace(b'"firstSeen":"2', b'"firstSeen":"0'))
    with pytest.raises(InvalidEdges) as refused:
        coalesce([good, early, good, early])
    assert [index for index, _ in refused.value.problems] == [1, 3]


def test_merging_through_the_ingest_is_idempotent_in_any_order(store: GraphStore) -> None:
    store.create_tenant("t1", "t", T0)
    sightings = [
        edge(count=7, methods=frozenset({Method.DNS}), http=(HttpResource("/cart", ("GET",)),)),
        edge(first_seen=T0 - 10, last_seen=T0 + 90, count=3, target_service="cart"),
        edge(kafka_topics=(KafkaTopic("orders", ("produce",)),), aws_actions=("s3:Get",), ambiguous=True),
    ]
    expected = merge_edges(merge_edges(sightings[0], sightings[1]), sightings[2])
    for n, order in enumerate(itertools.permutations(sightings)):
        cluster = f"c{n}"
        store.add_cluster("t1", cluster, cluster, T0)
        for i, sighting in enumerate(order):
            store.ingest("t1", cluster, f"b{i}", [wire.to_doc(sighting)], T0)
        assert [s.edge for s in store.edges("t1", cluster_ids=[cluster])] == [expected], order
        again = store.ingest("t1", cluster, "again", [wire.to_doc(s) for s in (*order, expected)], T0)
        assert (again.stored, again.edges_written) == (True, 0), "every sighting is in the merge already"
