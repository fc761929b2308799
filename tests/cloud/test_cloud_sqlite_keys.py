"""The SQLite store keeps edge keys unique in memory (KeyIndex) instead of a UNIQUE index: these
tests hold it to that with several connections, rolled-back transactions and reopened files."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from agent.model import Edge, Method, WorkloadIdentity
from agent.wire import EdgeDoc, to_doc
from cloud_functions.store.base import StoreError
from cloud_functions.store.sqlite import SqliteGraphStore

T0 = float(int(time.time()))


def edge(client: str, target: str, last: float = T0 + 10) -> EdgeDoc:
    return to_doc(
        Edge(
            WorkloadIdentity("shop", client, "Deployment"),
            WorkloadIdentity("shop", target, "Deployment"),
            T0,
            last,
            frozenset({Method.TCP}),
        )
    )


def open_store(path: Path, create: bool = False) -> SqliteGraphStore:
    store = SqliteGraphStore(path)
    if create:
        store.create_tenant("t1", "t", T0)
        store.add_cluster("t1", "c1", "c", T0)
    return store


def duplicates(path: Path) -> list[tuple[int, bytes, int]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(
            "SELECT cluster, key, count(*) FROM edges GROUP BY 1, 2 HAVING count(*) > 1"
        ).fetchall()
    finally:
        db.close()


def test_two_connections_writing_the_same_keys_keep_them_unique(tmp_path: Path) -> None:
    path = tmp_path / "cloud.db"
    stores = [open_store(path, create=True), open_store(path)]
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for batch in range(15):
                edges = [edge(f"c{i}", "cart", T0 + batch * 10 + n) for i in range(batch * 3, batch * 3 + 20)]
                stores[n].ingest("t1", "c1", f"s{n}-b{batch}", edges, T0)
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=write, args=(n,)) for n in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    try:
        assert duplicates(path) == []
        got = {s.edge.client.name: s.edge.last_seen for s in stores[0].edges("t1")}
        assert len(got) == 14 * 3 + 20
        assert got["c0"] == T0 + 1  # batch 0 of either store: the later last_seen won
    finally:
        for store in stores:
            store.close()


def test_each_connection_rereads_the_keys_after_the_others_commit(tmp_path: Path) -> None:
    path = tmp_path / "cloud.db"
    first, second = open_store(path, create=True), open_store(path)
    try:
        for n in range(3):  # alternating: each batch follows a commit of the other connection
            first.ingest("t1", "c1", f"a{n}", [edge("shared", "cart", T0 + 2 * n), edge(f"a{n}", "cart")], T0)
            second.ingest(
                "t1", "c1", f"b{n}", [edge("shared", "cart", T0 + 2 * n + 1), edge(f"b{n}", "cart")], T0
            )
        assert duplicates(path) == []
        assert first._keys.loads == 3 and second._keys.loads == 3
        got = {s.edge.client.name: s.edge.last_seen for s in first.edges("t1")}
        assert len(got) == 7 and got["shared"] == T0 + 5
    finally:
        first.close()
        second.close()


def test_a_rolled_back_batch_leaves_no_key_behind(tmp_path: Path) -> None:
    path = tmp_path / "cloud.db"
    store = open_store(path, create=True)
    try:
        db = sqlite3.connect(path)  # a real constraint failure, raised by SQLite mid-batch
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON edges WHEN NEW.client_name = 'boom'"
            " BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
        db.commit()
        with pytest.raises(StoreError, match="refused"):
            store.ingest("t1", "c1", "b1", [edge("good", "cart"), edge("boom", "cart")], T0)
        db.execute("DROP TRIGGER refuse")
        db.commit()
        db.close()
        assert store.edges("t1") == []
        written = store.ingest("t1", "c1", "b1", [edge("good", "cart"), edge("boom", "cart")], T0)
        assert written.edges_written == 2
        assert sorted(s.edge.client.name for s in store.edges("t1")) == ["boom", "good"]
        assert duplicates(path) == []
    finally:
        store.close()


def test_a_reopened_file_knows_its_keys(tmp_path: Path) -> None:
    path = tmp_path / "cloud.db"
    store = open_store(path, create=True)
    store.ingest("t1", "c1", "b1", [edge("a", "cart"), edge("b", "cart")], T0)
    store.close()
    store = open_store(path)
    try:
        again = store.ingest("t1", "c1", "b2", [edge("a", "cart"), edge("b", "cart", T0 + 99)], T0)
        assert again.edges_written == 1, "a known key is merged, not inserted again"
        assert duplicates(path) == []
        assert {s.edge.client.name: s.edge.last_seen for s in store.edges("t1")} == {
            "a": T0 + 10,
            "b": T0 + 99,
        }
    finally:
        store.close()
