"""The edge store: merge semantics field by field, targets' round trip, namespace filter, reset,
persistence across reopen, refusing files it does not understand, and threads."""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.mapper.store import FILENAME, SCHEMA_VERSION, EdgeStore, StoreError
from agent.model import AwsTarget, Edge, HttpResource, InternetTarget, KafkaTopic, Method, WorkloadIdentity

T0 = 1_780_000_000.0
FRONTEND = WorkloadIdentity("shop", "frontend", "Deployment")
CART = WorkloadIdentity("shop", "cartservice", "Deployment")
REDIS = WorkloadIdentity("shop", "redis-cart", "StatefulSet")
LOADGEN = WorkloadIdentity("load", "loadgenerator", "Deployment")
S3 = AwsTarget("arn:aws:s3:::orders")
GOOGLE = InternetTarget("www.google.com", ("142.250.1.1", "2a00:1450::1"), 443)


def edge(client: WorkloadIdentity = FRONTEND, target: object = CART, at: float = T0, **kw: object) -> Edge:
    fields: dict[str, object] = {"first_seen": at, "last_seen": at, "methods": frozenset({Method.TCP})}
    fields.update(kw)
    return Edge(client, target, **fields)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EdgeStore]:
    with EdgeStore.in_dir(tmp_path) as s:
        yield s


def only(store: EdgeStore) -> Edge:
    edges = store.edges()
    assert len(edges) == 1, edges
    return edges[0]


# ------------------------------------------------------------------ round trip


def test_every_target_kind_round_trips_with_all_fields(store: EdgeStore) -> None:
    edges = [
        edge(
            target=CART,
            methods=frozenset({Method.ISTIO, Method.DNS}),
            count=3,
            http=(HttpResource("/cart", ("GET", "POST")),),
            target_service="cartservice",
        ),
        edge(target=GOOGLE, at=T0 + 1.5, ambiguous=True),
        edge(target=S3, methods=frozenset({Method.AWS}), aws_actions=("s3:GetObject", "s3:PutObject")),
        edge(
            client=CART,
            target=WorkloadIdentity("kafka", "kafka", "StatefulSet"),
            methods=frozenset({Method.KAFKA}),
            kafka_topics=(KafkaTopic("orders", ("consume", "produce")),),
        ),
        edge(target=InternetTarget("", ("10.0.0.9",))),
    ]
    assert store.record(edges) == 5
    assert store.count() == 5
    assert Counter(store.edges()) == Counter(edges)


def test_distinct_keys_stay_distinct(store: EdgeStore) -> None:
    store.record(
        [
            edge(target=CART),
            edge(target=WorkloadIdentity("shop", "cartservice", "StatefulSet")),  # kind is part of the key
            edge(target=WorkloadIdentity("other", "cartservice", "Deployment")),
            edge(client=WorkloadIdentity("shop", "frontend", "CronJob")),
            edge(target=GOOGLE),
            edge(target=InternetTarget(GOOGLE.dns_name, GOOGLE.ips, 80)),
            edge(target=InternetTarget(GOOGLE.dns_name, GOOGLE.ips[:1], 443)),
            edge(target=AwsTarget("*")),
            edge(target=S3),
        ]
    )
    assert store.count() == 9


# ------------------------------------------------------------------ merge semantics


@pytest.mark.parametrize("one_call", [True, False], ids=["same-batch", "separate-batches"])
def test_merge_times_methods_and_count(store: EdgeStore, one_call: bool) -> None:
    updates = [
        edge(first_seen=T0 + 10, last_seen=T0 + 20, methods=frozenset({Method.DNS}), count=2),
        edge(first_seen=T0 + 5, last_seen=T0 + 8, methods=frozenset({Method.TCP}), count=3),
        edge(first_seen=T0 + 12, last_seen=T0 + 30, methods=frozenset({Method.TCP, Method.ISTIO}), count=4),
    ]
    if one_call:
        store.record(updates)
    else:
        for u in updates:
            store.record([u])
    got = only(store)
    assert (got.first_seen, got.last_seen, got.count) == (T0 + 5, T0 + 30, 9)
    assert got.methods == {Method.DNS, Method.TCP, Method.ISTIO}


def test_http_resources_merge_by_path_with_methods_unioned(store: EdgeStore) -> None:
    store.record([edge(http=(HttpResource("/cart", ("POST",)), HttpResource("/a", ("GET",))))])
    store.record([edge(http=(HttpResource("/cart", ("GET", "POST")), HttpResource("/b", ("PUT",))))])
    store.record([edge()])  # no HTTP detail: keeps what is known
    assert only(store).http == (
        HttpResource("/a", ("GET",)),
        HttpResource("/b", ("PUT",)),
        HttpResource("/cart", ("GET", "POST")),
    )


def test_kafka_topics_merge_by_name_with_operations_unioned(store: EdgeStore) -> None:
    store.record([edge(kafka_topics=(KafkaTopic("orders", ("produce",)),))])
    store.record(
        [
            edge(kafka_topics=(KafkaTopic("orders", ("consume",)), KafkaTopic("audit", ("describe",)))),
            edge(kafka_topics=(KafkaTopic("orders", ("produce",)),)),
        ]
    )
    assert only(store).kafka_topics == (
        KafkaTopic("audit", ("describe",)),
        KafkaTopic("orders", ("consume", "produce")),
    )


def test_aws_actions_are_unioned(store: EdgeStore) -> None:
    store.record([edge(target=S3, aws_actions=("s3:PutObject",))])
    store.record([edge(target=S3, aws_actions=("s3:GetObject", "s3:PutObject")), edge(target=S3)])
    assert only(store).aws_actions == ("s3:GetObject", "s3:PutObject")


def test_target_service_keeps_the_newest_non_empty(store: EdgeStore) -> None:
    store.record([edge(at=T0 + 10, target_service="cart-v1")])
    store.record([edge(at=T0 + 20)])  # empty never erases
    assert only(store).target_service == "cart-v1"
    store.record([edge(at=T0 + 5, target_service="cart-old")])  # older than cart-v1
    assert only(store).target_service == "cart-v1"
    # newer than cart-v1 but older than the edge's last_seen (20): still the newest *service*
    store.record([edge(at=T0 + 15, target_service="cart-v2")])
    assert only(store).target_service == "cart-v2"
    store.record([edge(at=T0 + 40, target_service="cart-v3"), edge(at=T0 + 30, target_service="cart-x")])
    assert only(store).target_service == "cart-v3"


def test_ambiguous_is_anded_one_clear_sighting_pins_the_edge(store: EdgeStore) -> None:
    store.record([edge(ambiguous=True), edge(ambiguous=True)])
    assert only(store).ambiguous
    store.record([edge(ambiguous=False)])
    assert not only(store).ambiguous
    store.record([edge(ambiguous=True)])
    assert not only(store).ambiguous


def test_record_counts_given_edges_and_accepts_generators(store: EdgeStore) -> None:
    assert store.record(edge(at=T0 + i) for i in range(3)) == 3
    assert store.record([]) == 0
    assert only(store).count == 3


# ------------------------------------------------------------------ reads, reset


def test_namespace_filter_is_on_the_client(store: EdgeStore) -> None:
    store.record([edge(FRONTEND, CART), edge(CART, REDIS), edge(LOADGEN, FRONTEND), edge(LOADGEN, GOOGLE)])
    assert len(store.edges()) == 4
    assert {e.client for e in store.edges(["shop"])} == {FRONTEND, CART}
    assert {e.target for e in store.edges({"load"})} == {FRONTEND, GOOGLE}
    assert len(store.edges(("shop", "load", "nowhere"))) == 4
    assert store.edges([]) == []
    assert store.edges(["nowhere"]) == []


def test_reset_forgets_everything_and_the_store_keeps_working(store: EdgeStore) -> None:
    store.record([edge(FRONTEND, CART), edge(CART, REDIS)])
    store.reset()
    assert store.count() == 0
    assert store.edges() == []
    store.record([edge(count=2)])
    assert only(store).count == 2


# ------------------------------------------------------------------ persistence and files


def test_reopen_after_close_keeps_everything(tmp_path: Path) -> None:
    edges = [
        edge(FRONTEND, CART, http=(HttpResource("/x", ("GET",)),)),
        edge(CART, S3, aws_actions=("s3:*",)),
    ]
    with EdgeStore.in_dir(tmp_path / "data") as first:
        first.record(edges)
        first.record([edge(FRONTEND, CART, at=T0 + 1)])
    assert (tmp_path / "data" / FILENAME).exists()
    with EdgeStore.in_dir(tmp_path / "data") as second:
        got = {e.key: e for e in second.edges()}
        assert got[(CART, S3)] == edges[1]
        assert got[(FRONTEND, CART)].count == 2
        assert got[(FRONTEND, CART)].last_seen == T0 + 1


def test_opens_in_wal_mode_with_a_schema_version(tmp_path: Path) -> None:
    EdgeStore(tmp_path / FILENAME).close()
    db = sqlite3.connect(tmp_path / FILENAME)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


def test_a_newer_schema_version_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / FILENAME
    with EdgeStore(path) as s:
        s.record([edge()])
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}.*left untouched"):
        EdgeStore(path)
    assert path.read_bytes() == before


def test_a_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE precious (x)")
    db.execute("INSERT INTO precious VALUES (1)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="not an edge store"):
        EdgeStore(path)
    db = sqlite3.connect(path)
    assert db.execute("SELECT x FROM precious").fetchall() == [(1,)]
    db.close()


def test_a_garbage_file_is_refused_not_wiped(tmp_path: Path) -> None:
    path = tmp_path / FILENAME
    path.write_bytes(b"definitely not sqlite\n" * 500)
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a readable edge store"):
        EdgeStore(path)
    assert path.read_bytes() == before


def test_a_closed_store_says_so(tmp_path: Path) -> None:
    s = EdgeStore(tmp_path / FILENAME)
    s.close()
    s.close()  # idempotent
    for call in (s.count, s.edges, s.reset, lambda: s.record([edge()])):
        with pytest.raises(StoreError, match="closed"):
            call()


# ------------------------------------------------------------------ threads


def test_concurrent_writers_and_readers_lose_no_update_and_see_whole_batches(store: EdgeStore) -> None:
    writers, batches = 4, 40
    targets = [WorkloadIdentity("shop", f"svc{i}", "Deployment") for i in range(25)]
    errors: list[BaseException] = []
    done = threading.Event()
    snapshots = 0

    def write(n: int) -> None:
        try:
            for b in range(batches):
                store.record(edge(FRONTEND, t, at=T0 + n * 1000 + b) for t in targets)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    def read() -> None:
        nonlocal snapshots
        try:
            last_total = 0
            while not done.is_set():
                counts = [e.count for e in store.edges(["shop"])]
                # every batch touches every target, so a consistent snapshot has equal counts
                assert len(set(counts)) <= 1, counts
                assert sum(counts) >= last_total
                last_total = sum(counts)
                snapshots += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers + threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    done.set()
    for t in readers:
        t.join(timeout=60)
    assert not errors, errors
    assert snapshots > 0
    got = store.edges()
    assert len(got) == len(targets)
    assert {e.count for e in got} == {writers * batches}
    assert sum(e.count for e in got) == writers * batches * len(targets)


def test_a_stored_edge_that_no_longer_reads_is_skipped_counted_and_replaced(tmp_path: Path) -> None:
    """Issue 11, defect 2: an edge an older version stored with a time now out of range (here
    2500) must not break reads or the uploader's change feed; a new sighting replaces it."""
    import msgspec

    from agent import wire

    with EdgeStore.in_dir(tmp_path) as store:
        store.record([edge(), edge(target=REDIS)])
    late = msgspec.structs.replace(wire.to_doc(edge()), lastSeen=wire.moment(T0).replace(year=2500))
    with sqlite3.connect(tmp_path / FILENAME) as db:
        key = wire.key_for(FRONTEND, CART).decode()
        db.execute("UPDATE edges SET doc = ? WHERE key = ?", (msgspec.msgpack.encode(late), key))
    with EdgeStore.in_dir(tmp_path) as store:
        assert [e.target for e in store.edges()] == [REDIS]
        assert [e.target for _, e in store.changed_since(0, 10)] == [REDIS]
        assert store.unreadable == 2
        store.record([edge(at=T0 + 5)])
        assert store.edges() == [edge(at=T0 + 5), edge(target=REDIS)]
