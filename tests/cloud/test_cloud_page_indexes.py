"""The indexes paged reads stand on, and how older stores get them.

SQLite: each page query is a keyset range on an index, in the index's order (the query plan has
no sort and no scan of the table), and a file of an older version (``store_v3.db``) gets the
indexes when opened. DynamoDB: a table of version 3 (no indexes by workload, edge items without
their values) gets both indexes and the values, so grouped pages find its old edges."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from cloud_handler_support import EVENTS
from test_cloud_store_suite import T0, edge, ingest, setup

from agent import wire
from cloud_functions.store.base import GROUPED_ORDERS, EdgeFilters, PageOrder
from cloud_functions.store.dynamodb import DynamoGraphStore
from cloud_functions.store.dynamoitems import (
    CLIENT_GROUP,
    GROUP_INDEXES,
    SERVER_GROUP,
    edge_item,
    graph_pk,
    group_value,
    item_key,
    number,
    string,
    version_item,
)
from cloud_functions.store.dynamotable import key_attributes
from cloud_functions.store.edgepages import Start
from cloud_functions.store.sqlite import SqliteGraphStore
from cloud_functions.store.sqlitepages import SqliteClusterReader
from cloud_functions.store.storedform import EdgeRecord, edge_key


def plans(path: Path, order: PageOrder, filters: EdgeFilters, begin: Start) -> list[str]:
    """The query plans of a reader's first two reads (from ``begin``, then after its last row)."""
    db = sqlite3.connect(path)
    found: list[str] = []

    def explain(sql: str, params: Any) -> list[Any]:
        found.extend(row[-1] for row in db.execute("EXPLAIN QUERY PLAN " + sql, params))
        return db.execute(sql, params).fetchall()

    try:
        (num,) = db.execute("SELECT num FROM clusters WHERE id = 'c1'").fetchone()
        reader = SqliteClusterReader(explain, (num, "c1", None), order, begin, filters)
        assert reader.read(2) and reader.read(2)
    finally:
        db.close()
    return found


@pytest.mark.parametrize("order", list(PageOrder))
@pytest.mark.parametrize("filters", [{}, {"namespace": "shop", "since": T0}])
def test_sqlite_pages_are_keyset_ranges_on_an_index(tmp_path: Path, order: PageOrder, filters: Any) -> None:
    store = SqliteGraphStore(tmp_path / "cloud.db")
    try:
        setup(store)
        ingest(store, "t1", "c1", "b1", [edge(f"client-{i}", f"server-{i % 3}") for i in range(20)], T0)
    finally:
        store.close()
    index = "edges_by_server" if order is PageOrder.SERVER else "edges_by_client"
    grouped = order in GROUPED_ORDERS
    found = plans(tmp_path / "cloud.db", order, {} if grouped else filters, Start(None))
    found += plans(tmp_path / "cloud.db", order, {}, Start(("shop", "client-3"), past_group=True))
    edges = [step for step in found if "edges" in step]
    assert edges and all(f"USING INDEX {index}" in step for step in edges), found
    assert all(f"SEARCH edges USING INDEX {index} (cluster=?" in step for step in edges), found
    assert not any("TEMP B-TREE" in step for step in found), found


def test_an_older_sqlite_file_gets_the_page_indexes(tmp_path: Path) -> None:
    path = tmp_path / "cloud.db"
    shutil.copyfile(EVENTS / "store_v3.db", path)
    SqliteGraphStore(path).close()
    db = sqlite3.connect(path)
    try:
        indexes = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    finally:
        db.close()
    assert {"edges_by_client", "edges_by_server"} <= indexes
    assert "edges_cluster" not in indexes, "its prefix of the client index: dropped, one write less"


def test_a_version_3_dynamodb_table_gets_the_indexes_by_workload(dynamodb_client: Any) -> None:
    table = "nm-test-v3-pages"
    dynamodb_client.create_table(  # the table as code before version 4 created it
        TableName=table,
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
        AttributeDefinitions=key_attributes("PK", "SK"),
        BillingMode="PAY_PER_REQUEST",
    )
    try:
        old = [edge("frontend", "cart"), edge("frontend", "api", ns="web"), edge("zeta", "cart")]
        graph = graph_pk("t1", "c1")
        tenant = {"PK": string("TENANT#t1")}
        rows = [tenant | {"SK": string("META"), "name": string("t"), "created_at": number(T0)}]
        rows.append(tenant | {"SK": string("CLUSTER#c1"), "name": string("c"), "created_at": number(T0)})
        for e in old:
            doc = wire.to_doc(e)
            item = edge_item(graph, EdgeRecord(edge_key(doc), doc, wire.encode(doc)), 1)
            rows.append({k: v for k, v in item.items() if k not in (CLIENT_GROUP, SERVER_GROUP)})
        rows.append(version_item(3))
        for row in rows:
            dynamodb_client.put_item(TableName=table, Item=row)

        store = DynamoGraphStore(dynamodb_client, table)
        described = dynamodb_client.describe_table(TableName=table)["Table"]["GlobalSecondaryIndexes"]
        assert {(i["IndexName"], i["IndexStatus"]) for i in described} == {
            (n, "ACTIVE") for n in GROUP_INDEXES
        }
        doc = wire.to_doc(old[0])
        stored = dynamodb_client.get_item(TableName=table, Key=item_key(graph, "EDGE#" + edge_key(doc).hex()))
        assert stored["Item"][CLIENT_GROUP] == string(group_value("shop", "frontend"))
        assert stored["Item"][SERVER_GROUP] == string(group_value("shop", "cart"))
        clients = store.edges_page("t1", PageOrder.CLIENT, limit=10)
        assert [str(s.edge.client) for s in clients.edges] == ["frontend.shop", "zeta.shop", "frontend.web"]
        servers = store.edges_page("t1", PageOrder.SERVER, limit=10)
        assert sorted(str(s.edge.target) for s in servers.edges) == ["api.web", "cart.shop", "cart.shop"]
        DynamoGraphStore(dynamodb_client, table)  # opened again: nothing left to do
    finally:
        dynamodb_client.delete_table(TableName=table)
