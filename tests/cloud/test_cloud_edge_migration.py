"""Edges stored before the edge codec (old text, old key) migrate when a store opens: SQLite from a
file the old code wrote (``tests/data/cloud/edges_v3.db``, made by ``make_v3_edge_store.py``
beside it), DynamoDB from old-format edge items written raw. The edges read back equal, and
re-ingesting them writes nothing and adds no duplicates."""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import sqlite3
from pathlib import Path
from types import ModuleType
from typing import Any

from old_edge_form import old_form

from agent import wire
from agent.model import Edge
from cloud_functions.store.base import GraphStore
from cloud_functions.store.dynamodb import DynamoGraphStore
from cloud_functions.store.sqlite import SqliteGraphStore

DATA = Path(__file__).resolve().parents[1] / "data" / "cloud"


def fixture_module() -> ModuleType:
    """``make_v3_edge_store.py``: what the old code was given (its EDGES, HEARTBEAT, TENANT)."""
    spec = importlib.util.spec_from_file_location("make_v3_edge_store", DATA / "make_v3_edge_store.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


OLD = fixture_module()


def expected() -> list[tuple[str, Edge, bool]]:
    """The old edges as read now: canonical, microseconds, live ones seen at their heartbeat."""
    found = []
    for cluster, edge, live in OLD.EDGES:
        read = wire.from_doc(wire.to_doc(edge))
        if live and cluster == "c1" and read.last_seen < OLD.HEARTBEAT:
            read = dataclasses.replace(read, last_seen=OLD.HEARTBEAT)
        found.append((cluster, read, live))
    return sorted(found, key=lambda row: (row[0], wire.key_for(*row[1].key)))


def read_back(store: GraphStore) -> list[tuple[str, Edge, bool]]:
    return [(s.cluster_id, s.edge, s.live) for s in store.edges(OLD.TENANT)]


def resend(store: GraphStore) -> None:
    """The same edges again, in a new batch per cluster: nothing to write."""
    for cluster in ("c1", "c2"):
        docs = [wire.to_doc(edge, live) for c, edge, live in OLD.EDGES if c == cluster]
        result = store.ingest(OLD.TENANT, cluster, "again", docs, OLD.T0)
        assert (result.stored, result.edges_written) == (True, 0)


def test_a_sqlite_file_of_the_old_code_is_rekeyed(tmp_path: Path) -> None:
    path = tmp_path / "cloud.db"
    shutil.copy(DATA / "edges_v3.db", path)
    store = SqliteGraphStore(path)
    try:
        assert read_back(store) == expected()
        resend(store)
        assert read_back(store) == expected()
    finally:
        store.close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT count(*) FROM edges").fetchone() == (len(OLD.EDGES),)
        duplicates = "SELECT cluster, key FROM edges GROUP BY 1, 2 HAVING count(*) > 1"
        assert db.execute(duplicates).fetchall() == []
        texts = [bytes(text) for (text,) in db.execute("SELECT edge FROM edges ORDER BY id")]
        assert texts == [wire.encode(wire.to_doc(edge, live)) for _, edge, live in OLD.EDGES]
    finally:
        db.close()


def _old_items(graph: str, edge: Edge, live: bool) -> dict[str, Any]:
    """An edge item as the old code wrote it."""
    text, key_hash = old_form(edge)
    item: dict[str, Any] = {
        "PK": {"S": graph},
        "SK": {"S": f"EDGE#{key_hash}"},
        "edge": {"S": text},
        "v": {"N": "1"},
        "live": {"BOOL": live},
        "cns": {"S": "=" + edge.client.namespace},
        "cname": {"S": "=" + edge.client.name},
        "last_seen": {"N": repr(edge.last_seen)},
        "methods": {"SS": sorted(str(m) for m in edge.methods)},
    }
    return item


def test_old_dynamodb_edge_items_are_rekeyed(dynamodb_client: Any, dynamodb_table: str) -> None:
    tenant, now = OLD.TENANT, {"N": repr(OLD.T0)}
    rows = [{"PK": {"S": f"TENANT#{tenant}"}, "SK": {"S": "META"}, "name": {"S": "t"}, "created_at": now}]
    for cluster in ("c1", "c2"):
        item = {"PK": {"S": f"TENANT#{tenant}"}, "SK": {"S": f"CLUSTER#{cluster}"}, "created_at": now}
        rows.append(item | {"name": {"S": cluster}})
    rows[1]["heartbeat"] = {"N": repr(OLD.HEARTBEAT)}
    rows += [_old_items(f"GRAPH#{tenant}#{c}", edge, live) for c, edge, live in OLD.EDGES]
    for row in rows:
        dynamodb_client.put_item(TableName=dynamodb_table, Item=row)

    store = DynamoGraphStore(dynamodb_client, dynamodb_table, page_size=2)
    assert read_back(store) == expected()
    resend(store)
    again = DynamoGraphStore(dynamodb_client, dynamodb_table)  # another container: nothing left to do
    assert read_back(again) == expected()

    items = dynamodb_client.scan(TableName=dynamodb_table, ConsistentRead=True)["Items"]
    edge_keys = sorted(i["SK"]["S"] for i in items if i["SK"]["S"].startswith("EDGE#"))
    new_keys = sorted(
        "EDGE#" + wire.key_hash(wire.key_bytes(wire.to_doc(edge))).hex() for _, edge, _ in OLD.EDGES
    )
    assert edge_keys == new_keys, "every edge under its new key, once; no old item left"
