"""Snapshots in both cloud stores (SQLite and DynamoDB Local): kept per (tenant, cluster, name),
replaced by name, listed newest first, pruned past the bound, and isolated between tenants."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from cloud_functions.store import snapshotsdynamo
from cloud_functions.store.base import GraphStore, Invalid, NotFound
from cloud_functions.store.dynamodb import DynamoGraphStore
from cloud_functions.store.snapshots import SnapshotRecord, pruned

T0 = float(int(time.time()))


def setup(store: GraphStore) -> None:
    for tenant in ("t1", "t2"):
        store.create_tenant(tenant, tenant, T0)
        store.add_cluster(tenant, "c1", "prod", T0)
    store.add_cluster("t1", "c2", "staging", T0)


def record(name: str, taken: float = T0, *, auto: bool = False, edges: int = 3) -> SnapshotRecord:
    return SnapshotRecord(name, taken, auto, edges, T0 + 100)


def doc(name: str, size: int = 40) -> bytes:
    return (f'{{"name": "{name}", "padding": "' + "x" * size + '"}').encode()


def test_put_get_list_and_replace(store: GraphStore) -> None:
    setup(store)
    assert store.snapshots("t1", "c1") == []
    assert store.snapshot("t1", "c1", "before") is None
    assert store.put_snapshot("t1", "c1", record("before", T0), doc("before"), keep=10) == []
    store.put_snapshot("t1", "c1", record("auto-1", T0 + 5, auto=True, edges=7), doc("auto-1"), keep=10)
    assert [r.name for r in store.snapshots("t1", "c1")] == ["auto-1", "before"]  # newest first
    assert store.snapshots("t1", "c1")[0] == record("auto-1", T0 + 5, auto=True, edges=7)
    assert store.snapshot("t1", "c1", "before") == (record("before", T0), doc("before"))
    # the same name replaces: one snapshot of that name, the new document
    store.put_snapshot("t1", "c1", record("before", T0 + 9, edges=1), doc("again"), keep=10)
    assert [r.name for r in store.snapshots("t1", "c1")] == ["before", "auto-1"]
    assert store.snapshot("t1", "c1", "before") == (record("before", T0 + 9, edges=1), doc("again"))


def test_clusters_and_tenants_are_apart(store: GraphStore) -> None:
    setup(store)
    store.put_snapshot("t1", "c1", record("before"), doc("t1c1"), keep=10)
    assert store.snapshots("t1", "c2") == [] and store.snapshot("t1", "c2", "before") is None
    assert store.snapshots("t2", "c1") == [] and store.snapshot("t2", "c1", "before") is None
    store.put_snapshot("t2", "c1", record("before"), doc("t2c1"), keep=10)
    assert store.snapshot("t1", "c1", "before") == (record("before"), doc("t1c1"))
    assert store.snapshot("t2", "c1", "before") == (record("before"), doc("t2c1"))
    for call in (
        lambda: store.snapshots("t1", "nope"),
        lambda: store.snapshot("t2", "c2", "before"),  # t1's cluster id, not t2's
        lambda: store.put_snapshot("t2", "c2", record("x"), doc("x"), keep=10),
        lambda: store.put_snapshot("nope", "c1", record("x"), doc("x"), keep=10),
    ):
        with pytest.raises(NotFound):
            call()


def test_the_oldest_are_pruned_past_the_bound(store: GraphStore) -> None:
    setup(store)
    for i in range(5):
        gone = store.put_snapshot("t1", "c1", record(f"s{i}", T0 + i), doc(f"s{i}"), keep=3)
        assert gone == ([f"s{i - 3}"] if i >= 3 else [])
    assert [r.name for r in store.snapshots("t1", "c1")] == ["s4", "s3", "s2"]
    assert store.snapshot("t1", "c1", "s0") is None and store.snapshot("t1", "c1", "s1") is None
    # an upload older than every kept one goes at once
    assert store.put_snapshot("t1", "c1", record("old", T0 - 50), doc("old"), keep=3) == ["old"]


def test_names_and_sizes_are_checked(store: GraphStore) -> None:
    setup(store)
    store.put_snapshot("t1", "c1", record("auto-20261207T120000Z"), doc("x"), keep=10)  # the mapper's
    for bad in ("", "Before", "a#b", "-x", "x" * 64, "a b", "auto-20261207T1200Z", "x-20261207T120000Z"):
        with pytest.raises(Invalid):
            store.put_snapshot("t1", "c1", record(bad), doc("x"), keep=10)
    with pytest.raises(Invalid):  # beyond the stored bound even compressed
        store.put_snapshot("t1", "c1", record("huge"), os.urandom(5 * 1024 * 1024), keep=10)
    assert [r.name for r in store.snapshots("t1", "c1")] == ["auto-20261207T120000Z"]


def test_dynamodb_cuts_large_documents_into_parts_and_replaces_them(
    dynamodb_client: Any, dynamodb_table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dynamodb_store = DynamoGraphStore(dynamodb_client, dynamodb_table)
    monkeypatch.setattr(snapshotsdynamo, "PART_BYTES", 1000)  # many parts from a small document
    setup(dynamodb_store)
    big = os.urandom(3500)  # incompressible: 4 parts
    dynamodb_store.put_snapshot("t1", "c1", record("big"), big, keep=10)
    assert dynamodb_store.snapshot("t1", "c1", "big") == (record("big"), big)
    smaller = os.urandom(1500)
    dynamodb_store.put_snapshot("t1", "c1", record("big"), smaller, keep=10)
    assert dynamodb_store.snapshot("t1", "c1", "big") == (record("big"), smaller)
    parts = dynamodb_client.query(
        TableName=dynamodb_table,
        KeyConditionExpression="PK = :pk AND begins_with(SK, :part)",
        ExpressionAttributeValues={
            ":pk": {"S": snapshotsdynamo.snapshots_pk("t1", "c1")},
            ":part": {"S": snapshotsdynamo.PART_PREFIX},
        },
        ConsistentRead=True,
    )["Items"]
    assert len(parts) == 2  # the replaced revision's parts are gone


def test_pruned_orders_by_time_then_arrival_then_name() -> None:
    a = SnapshotRecord("a", T0, False, 0, T0 + 2)
    b = SnapshotRecord("b", T0, False, 0, T0 + 1)
    c = SnapshotRecord("c", T0 + 1, True, 0, T0)
    assert pruned([a, b, c], 2) == ["b"]
    assert pruned([a, b, c], 3) == []
