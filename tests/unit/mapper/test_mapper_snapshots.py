"""Snapshots in the mapper's store (agent.mapper.snapshots): save, read back, list, delete, the
bounds and which snapshot is pruned, names, reset keeping them, reopening, migration of a
version 4 file, and the automatic schedule."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from agent import wire
from agent.mapper import storeschema
from agent.mapper.snapshots import AutoSnapshots, SnapshotError, SnapshotInfo, SnapshotStore, auto_name
from agent.mapper.store import SCHEMA_VERSION, EdgeStore
from agent.model import (
    ClusterFacts,
    Edge,
    Method,
    NamedPort,
    NamespaceFacts,
    NodeFacts,
    Snapshot,
    WorkloadFacts,
    WorkloadIdentity,
)
from agent.snapshotwire import decode_snapshot
from tests.support.mapper_process import wait_until

T0 = 1_780_000_000.0
FRONTEND = WorkloadIdentity("shop", "frontend", "Deployment")
CART = WorkloadIdentity("shop", "cartservice", "Deployment")
FACTS = ClusterFacts(
    (NamespaceFacts("shop", (("kubernetes.io/metadata.name", "shop"),)),),
    (WorkloadFacts(CART, (("app", "cartservice"),), (NamedPort("grpc", 7070),), False, ("10.244.0.7",)),),
    (NodeFacts("node-1", ("192.168.1.10",)),),
)
EDGE = Edge(FRONTEND, CART, T0, T0 + 5, frozenset({Method.TCP}), 3, ports=(7070,))
DATA = Path(__file__).resolve().parents[2] / "data" / "mapper"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EdgeStore]:
    with EdgeStore.in_dir(tmp_path) as s:
        yield s


def user(name: str, at: float = T0, edges: tuple[Edge, ...] = ()) -> Snapshot:
    return Snapshot(name, at, edges, FACTS)


def test_save_read_list_delete(store: EdgeStore) -> None:
    snapshots = SnapshotStore(store)
    store.record([EDGE])
    info = snapshots.take("before", FACTS, T0 + 10)
    assert info == SnapshotInfo("before", T0 + 10, False, 1)
    snapshots.save_snapshot(user("older", T0))
    assert snapshots.snapshot("before") == Snapshot("before", T0 + 10, (EDGE,), FACTS)
    document = snapshots.document("before")
    assert document is not None and decode_snapshot(document) == snapshots.snapshot("before")
    assert [i.name for i in snapshots.snapshot_infos()] == ["before", "older"]  # newest first
    assert snapshots.delete_snapshot("older") is True
    assert snapshots.delete_snapshot("older") is False
    assert snapshots.snapshot("older") is None and snapshots.document("older") is None
    assert [i.name for i in snapshots.snapshot_infos()] == ["before"]


def test_the_same_name_replaces(store: EdgeStore) -> None:
    snapshots = SnapshotStore(store)
    snapshots.save_snapshot(user("before", T0))
    snapshots.save_snapshot(user("before", T0 + 60, (EDGE,)))
    assert snapshots.snapshot_infos() == [SnapshotInfo("before", T0 + 60, False, 1)]


def test_the_oldest_saved_user_snapshot_is_pruned_not_the_oldest_taken(store: EdgeStore) -> None:
    snapshots = SnapshotStore(store, limit=3, auto_limit=2)
    for i in range(3):
        snapshots.save_snapshot(user(f"s{i}", T0 + i))
    snapshots.save_snapshot(user("from-a-file", T0 - 86400))  # taken long ago, saved last
    assert sorted(i.name for i in snapshots.snapshot_infos()) == ["from-a-file", "s1", "s2"]
    snapshots.save_snapshot(user("s1", T0 + 99))  # saving again makes it the newest saved
    snapshots.save_snapshot(user("s3", T0 + 3))
    assert sorted(i.name for i in snapshots.snapshot_infos()) == ["from-a-file", "s1", "s3"]
    # Automatic snapshots have their own bound and never push out a user's.
    for i in range(3):
        snapshots.save_snapshot(Snapshot(auto_name(T0 + 3600 * i), T0 + 3600 * i, auto=True))
    infos = snapshots.snapshot_infos()
    assert [i.name for i in infos if i.auto] == [auto_name(T0 + 7200), auto_name(T0 + 3600)]
    assert len([i for i in infos if not i.auto]) == 3


@pytest.mark.parametrize(
    ("name", "auto", "message"),
    [
        ("", False, "is not 1-63 characters"),
        ("Before", False, "is not 1-63 characters"),
        ("-x", False, "is not 1-63 characters"),
        ("x" * 64, False, "is not 1-63 characters"),
        ("a/b", False, "is not 1-63 characters"),
        ("auto-mine", False, "reserved"),
        ("mine", True, "reserved"),
    ],
)
def test_bad_and_reserved_names_are_refused(store: EdgeStore, name: str, auto: bool, message: str) -> None:
    snapshots = SnapshotStore(store)
    with pytest.raises(SnapshotError, match=message):
        snapshots.save_snapshot(replace(user("x"), name=name, auto=auto))
    assert snapshots.snapshot_infos() == []


def test_names_that_are_fine(store: EdgeStore) -> None:
    snapshots = SnapshotStore(store)
    for name in ("a", "before-deploy", "v1.2.3", "pr_42", "x" * 63, auto_name(T0)):
        snapshots.save_snapshot(replace(user(name), auto=name.startswith("auto-")))
    assert len(snapshots.snapshot_infos()) == 6
    assert auto_name(T0) == "auto-20260528T202640Z"


def test_reset_keeps_snapshots_and_they_survive_a_reopen(tmp_path: Path) -> None:
    with EdgeStore.in_dir(tmp_path) as store:
        store.record([EDGE])
        SnapshotStore(store).take("before", FACTS, T0 + 10)
        store.reset()
        assert store.edges() == []
    with EdgeStore.in_dir(tmp_path) as store:
        assert SnapshotStore(store).snapshot("before") == Snapshot("before", T0 + 10, (EDGE,), FACTS)


def _version_4_file(path: Path) -> None:
    """An edge store as version 4 wrote it: its tables, one edge, no snapshots table."""
    db = sqlite3.connect(path, isolation_level=None)
    for statement in storeschema.TABLES:
        db.execute(statement)
    db.execute(
        "INSERT INTO edges (key, client_namespace, last_seen, doc, seq) VALUES (?, ?, ?, ?, 1)",
        (
            wire.key_for(EDGE.client, EDGE.target).decode(),
            "shop",
            EDGE.last_seen,
            wire.pack_edge(EDGE),
        ),
    )
    db.execute("UPDATE meta SET value = 2 WHERE name = 'next_seq'")
    db.execute("PRAGMA user_version = 4")
    db.close()


def test_a_version_4_file_gains_the_snapshots_table_and_keeps_its_edges(tmp_path: Path) -> None:
    path = tmp_path / "edges.db"
    _version_4_file(path)
    with EdgeStore(path) as store:
        assert store.edges() == [EDGE]
        assert store.positions() == (1, 0)
        SnapshotStore(store).take("after-upgrade", FACTS, T0 + 10)
    with EdgeStore(path) as store:
        assert [i.name for i in SnapshotStore(store).snapshot_infos()] == ["after-upgrade"]
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
    finally:
        db.close()


def test_a_version_3_file_migrates_all_the_way(tmp_path: Path) -> None:
    path = tmp_path / "edges.db"
    shutil.copy(DATA / "edges-v3.db", path)
    with EdgeStore(path) as store:
        snapshots = SnapshotStore(store)
        info = snapshots.take("migrated", ClusterFacts(), T0)
        assert info.edges == len(store.edges()) > 0


# ------------------------------------------------------------------ the schedule


class SteppingClock:
    """A clock that moves ``step`` seconds every time it is read (each read is a later moment)."""

    def __init__(self, start: float, step: float) -> None:
        self.now, self.step = start, step
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            self.now += self.step
            return self.now


def test_automatic_snapshots_are_taken_named_and_bounded(store: EdgeStore) -> None:
    store.record([EDGE])
    snapshots = SnapshotStore(store, limit=5, auto_limit=3)
    snapshots.save_snapshot(user("mine"))
    auto = AutoSnapshots(snapshots, lambda: FACTS, interval=60.0, clock=SteppingClock(T0, 61.0)).start()
    try:
        wait_until(lambda: auto.taken >= 5, 10.0, "five automatic snapshots")
    finally:
        auto.stop()
    infos = snapshots.snapshot_infos()
    autos = [i for i in infos if i.auto]
    assert len(autos) == 3 and all(i.name == auto_name(i.taken_at) and i.edges == 1 for i in autos)
    assert [i.name for i in infos if not i.auto] == ["mine"]
    newest = snapshots.snapshot(autos[0].name)
    assert newest is not None and newest.facts == FACTS and newest.auto


def test_the_schedule_continues_from_the_newest_automatic_snapshot(store: EdgeStore) -> None:
    snapshots = SnapshotStore(store)
    auto = AutoSnapshots(snapshots, ClusterFacts, interval=3600.0, clock=lambda: T0)
    assert auto.due(started=T0) == T0 + 3600  # none yet: an interval after the start
    snapshots.save_snapshot(Snapshot(auto_name(T0 - 600), T0 - 600, auto=True))
    assert auto.due(started=T0) == T0 + 3000  # a restart does not reset the schedule


def test_the_first_automatic_snapshot_waits_an_interval(store: EdgeStore) -> None:
    snapshots = SnapshotStore(store)
    started = time.time()
    auto = AutoSnapshots(snapshots, ClusterFacts, interval=0.3).start()
    try:
        wait_until(lambda: auto.taken >= 1, 10.0, "an automatic snapshot")
    finally:
        auto.stop()
    (info,) = snapshots.snapshot_infos()
    assert info.auto and info.taken_at >= started + 0.3
