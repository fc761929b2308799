"""One suite for both cloud stores (SQLite and DynamoDB Local): the same behaviour, checked the same way."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from datetime import timedelta, timezone
from typing import Any

import msgspec
import pytest
from old_edge_form import old_form

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
from cloud_functions.store.base import (
    MAX_TELEMETRY_BYTES,
    ClientSelection,
    Conflict,
    GraphStore,
    IngestResult,
    Invalid,
    NotFound,
    TokenRecord,
)
from cloud_functions.store.dynamodb import DynamoGraphStore
from cloud_functions.store.sqlite import SqliteGraphStore
from cloud_functions.store.sqliteschema import SCHEMA_VERSION

T0 = float(int(time.time()))
"""Now: DynamoDB's TTL (batch markers, telemetry: 30 days) would soon delete items stamped years ago."""


def wl(name: str, ns: str = "shop", kind: str = "Deployment") -> WorkloadIdentity:
    return WorkloadIdentity(ns, name, kind)


def edge(
    client: str = "frontend",
    target: str | WorkloadIdentity | InternetTarget | AwsTarget = "cartservice",
    *,
    ns: str = "shop",
    first: float = T0,
    last: float = T0 + 10,
    methods: tuple[Method, ...] = (Method.TCP,),
    **fields: Any,
) -> Edge:
    return Edge(
        client=wl(client, ns),
        target=wl(target, ns) if isinstance(target, str) else target,
        first_seen=first,
        last_seen=last,
        methods=frozenset(methods),
        **fields,
    )


def canonical(e: Edge) -> Edge:
    return merge_edges(e, e)


def ingest(
    store: GraphStore, tenant: str, cluster: str, batch_id: str, edges: Sequence[Edge], now: float
) -> IngestResult:
    """:meth:`GraphStore.ingest` of the edges' documents."""
    return store.ingest(tenant, cluster, batch_id, [wire.to_doc(e) for e in edges], now)


def graph(store: GraphStore, tenant: str = "t1", **filters: Any) -> list[tuple[str, Edge]]:
    return [(s.cluster_id, s.edge) for s in store.edges(tenant, **filters)]


def setup(store: GraphStore, tenant: str = "t1", clusters: tuple[str, ...] = ("c1",)) -> None:
    store.create_tenant(tenant, f"tenant {tenant}", T0)
    for cluster in clusters:
        store.add_cluster(tenant, cluster, f"cluster {cluster}", T0)


def token(tenant: str, token_id: str, role: Any = "read", cluster: str = "") -> TokenRecord:
    return TokenRecord(f"hash-{tenant}-{token_id}", tenant, role, token_id, T0 + 1, cluster_id=cluster)


# --------------------------------------------------------------------------- tenants, clusters, tokens


def test_tenants(store: GraphStore) -> None:
    created = store.create_tenant("t1", "Acme", T0)
    assert created.id == "t1" and created.name == "Acme"
    assert store.get_tenant("t1") == created
    assert store.get_tenant("nope") is None
    with pytest.raises(Conflict):
        store.create_tenant("t1", "again", T0)
    assert store.create_tenant("t2", "", T0).name == ""  # an empty name is kept as empty
    assert store.get_tenant("t2") is not None
    for bad in ("", "a#b", "x" * 201, "tab\t"):
        with pytest.raises(Invalid):
            store.create_tenant(bad, "bad", T0)


def test_clusters(store: GraphStore) -> None:
    with pytest.raises(NotFound):
        store.add_cluster("t1", "c1", "prod", T0)
    setup(store, "t1", ())
    setup(store, "t2", ())
    store.add_cluster("t1", "c2", "staging", T0 + 1)
    cluster = store.add_cluster("t1", "c1", "prod", T0)
    assert (cluster.tenant_id, cluster.id, cluster.name, cluster.created_at) == ("t1", "c1", "prod", T0)
    with pytest.raises(Conflict):
        store.add_cluster("t1", "c1", "again", T0)
    assert [(c.id, c.name) for c in store.clusters("t1")] == [("c1", "prod"), ("c2", "staging")]
    assert store.clusters("t2") == []
    store.add_cluster("t2", "c1", "their own c1", T0)  # cluster ids are per tenant
    assert [c.name for c in store.clusters("t2")] == ["their own c1"]


def test_tokens(store: GraphStore) -> None:
    with pytest.raises(NotFound):
        store.put_token(token("t1", "k1"))
    setup(store)
    read, ingest = token("t1", "k1"), token("t1", "k2", "ingest", "c1")
    store.put_token(ingest)
    store.put_token(read)
    assert store.get_token(read.token_hash) == read
    assert store.get_token(ingest.token_hash) == ingest
    assert store.get_token("unknown") is None
    assert store.tokens("t1") == [read, ingest]
    with pytest.raises(Conflict):  # same hash
        store.put_token(TokenRecord(read.token_hash, "t1", "read", "k3", T0))
    with pytest.raises(Conflict):  # same id
        store.put_token(TokenRecord("other-hash", "t1", "read", "k1", T0))
    with pytest.raises(NotFound):  # a cluster the tenant does not have
        store.put_token(token("t1", "k4", "ingest", "c9"))
    with pytest.raises(ValueError, match="role"):
        token("t1", "k5", "root")
    store.delete_token("t1", "k1")
    assert store.get_token(read.token_hash) is None
    assert store.tokens("t1") == [ingest]
    with pytest.raises(NotFound):
        store.delete_token("t1", "k1")
    store.put_token(read)  # the id and hash are free again
    assert store.get_token(read.token_hash) == read


# --------------------------------------------------------------------------- ingest


def test_same_batch_twice_writes_nothing_the_second_time(store: GraphStore) -> None:
    setup(store)
    batch = [edge(), edge("frontend", "adservice"), edge("checkout", "payment")]
    first = ingest(store, "t1", "c1", "b1", batch, T0)
    assert (first.stored, first.edges_written) == (True, 3)
    before, writes = graph(store), store.write_count()
    again = ingest(store, "t1", "c1", "b1", batch, T0 + 1)  # a retry: the same content
    assert (again.stored, again.edges_written) == (False, 0)
    changed = [edge(count=99, last=T0 + 500)]  # other content under the same batch id: refused
    with pytest.raises(Conflict, match="b1"):
        ingest(store, "t1", "c1", "b1", changed, T0 + 1)
    assert store.write_count() == writes
    assert graph(store) == before
    assert sorted(edge_dict_key(e) for _, e in before) == sorted(edge_dict_key(e) for e in batch)


def test_documents_as_senders_write_them_store_as_their_canonical_form(store: GraphStore) -> None:
    setup(store, "t1", ("c1", "c2"))
    e = edge(
        methods=(Method.TCP, Method.DNS),
        http=(HttpResource("/b", ("PUT", "GET")), HttpResource("/a")),
        aws_actions=("s3:Put", "s3:Get"),
    )
    canonical_doc = wire.to_doc(e)
    minus_five = timezone(timedelta(hours=-5))  # the same times, written with another offset
    sent = wire.decode_doc(
        wire.encode(
            msgspec.structs.replace(
                canonical_doc,
                firstSeen=canonical_doc.firstSeen.astimezone(minus_five),
                lastSeen=canonical_doc.lastSeen.astimezone(minus_five),
            )
        )
        .replace(b'["dns","tcp"]', b'["tcp","dns"]')  # and lists unsorted, with repeats
        .replace(b'["GET","PUT"]', b'["PUT","GET","PUT"]')
        .replace(b'["s3:Get","s3:Put"]', b'["s3:Put","s3:Get"]')
    )
    assert sent != canonical_doc and wire.from_doc(sent) != e
    assert store.ingest("t1", "c1", "b1", [sent], T0).edges_written == 1
    assert store.ingest("t1", "c2", "b1", [canonical_doc], T0).edges_written == 1
    assert graph(store, cluster_ids=["c1"]) == [("c1", canonical(e))]
    assert graph(store, cluster_ids=["c2"]) == [("c2", canonical(e))]
    again = store.ingest("t1", "c1", "b2", [canonical_doc, sent], T0)
    assert (again.stored, again.edges_written) == (True, 0), "the same text: nothing to write"


def test_ingest_needs_an_existing_cluster_of_the_tenant(store: GraphStore) -> None:
    setup(store, "t1", ("c1",))
    setup(store, "t2", ())
    with pytest.raises(NotFound):
        ingest(store, "t2", "c1", "b1", [edge()], T0)  # t1's cluster id, t2's tenant
    with pytest.raises(NotFound):
        ingest(store, "nope", "c1", "b1", [edge()], T0)
    assert graph(store, "t1") == []
    assert ingest(store, "t1", "c1", "b1", [], T0).stored  # an empty batch is a batch
    assert not ingest(store, "t1", "c1", "b1", [], T0).stored
    with pytest.raises(Invalid):
        ingest(store, "t1", "c1", "bad\x1a", [], T0)


def test_merge_semantics(store: GraphStore) -> None:
    setup(store)
    a = edge(
        first=T0 + 5,
        last=T0 + 10,
        count=7,
        methods=(Method.DNS,),
        http=(HttpResource("/cart", ("GET",)),),
        kafka_topics=(KafkaTopic("orders", ("consume",)),),
        aws_actions=("s3:GetObject",),
        target_service="cart-old",
        ambiguous=True,
    )
    b = edge(
        first=T0,
        last=T0 + 20,
        count=3,  # cumulative counts: the max wins
        methods=(Method.TCP, Method.ISTIO),
        http=(HttpResource("/cart", ("POST",)), HttpResource("/health", ("GET",))),
        kafka_topics=(KafkaTopic("orders", ("produce",)),),
        aws_actions=("s3:PutObject",),
        target_service="cart",
        ambiguous=False,
    )
    ingest(store, "t1", "c1", "b1", [a], T0)
    assert ingest(store, "t1", "c1", "b2", [b], T0).edges_written == 1
    [(cluster, merged)] = graph(store)
    assert cluster == "c1"
    assert (merged.first_seen, merged.last_seen, merged.count) == (T0, T0 + 20, 7)
    assert merged.methods == {Method.DNS, Method.TCP, Method.ISTIO}
    assert merged.http == (HttpResource("/cart", ("GET", "POST")), HttpResource("/health", ("GET",)))
    assert merged.kafka_topics == (KafkaTopic("orders", ("consume", "produce")),)
    assert merged.aws_actions == ("s3:GetObject", "s3:PutObject")
    assert (merged.target_service, merged.ambiguous) == ("cart", False)
    older = edge(last=T0 + 15, target_service="")  # an older or empty service does not replace
    ingest(store, "t1", "c1", "b3", [older, edge(last=T0 + 1, target_service="stale")], T0)
    assert graph(store)[0][1].target_service == "cart"


def test_edges_with_equal_keys_in_one_batch_are_merged(store: GraphStore) -> None:
    setup(store)
    result = ingest(store, "t1", "c1", "b1", [edge(count=2), edge(count=5, methods=(Method.DNS,))], T0)
    assert result.edges_written == 1
    [(_, merged)] = graph(store)
    assert merged.count == 5 and merged.methods == {Method.TCP, Method.DNS}


def test_unchanged_resend_in_a_new_batch_writes_no_edges(store: GraphStore) -> None:
    setup(store)
    batch = [edge(count=4, http=(HttpResource("/a", ("GET", "PUT")),)), edge("a", "b")]
    assert ingest(store, "t1", "c1", "b1", batch, T0).edges_written == 2
    before = graph(store)
    assert ingest(store, "t1", "c1", "b2", batch, T0).edges_written == 0
    # Nothing new either: a lower cumulative count, times inside the known window, known methods.
    subset = [edge(count=1, first=T0 + 1, last=T0 + 2, http=(HttpResource("/a", ("GET",)),))]
    result = ingest(store, "t1", "c1", "b3", subset, T0)
    assert (result.stored, result.edges_written) == (True, 0)
    assert graph(store) == before
    assert ingest(store, "t1", "c1", "b4", batch + [edge("a", "b", count=9)], T0).edges_written == 1


def test_every_target_kind_round_trips(store: GraphStore) -> None:
    setup(store)
    batch = [
        edge(target="redis", ambiguous=True, target_service="redis-svc"),
        edge(target=InternetTarget("api.example.com", ("203.0.113.7", "2001:db8::1"), 443)),
        edge(target=InternetTarget("", ("198.51.100.1",), 0), methods=()),
        edge(target=AwsTarget("arn:aws:s3:::bucket/*"), methods=(Method.AWS,), aws_actions=("s3:GetObject",)),
        edge(target=WorkloadIdentity("", "no-namespace", "")),
        edge(first=T0 + 0.123456, last=T0 + 0.654321, target="precise"),
    ]
    ingest(store, "t1", "c1", "b1", batch, T0)
    stored = [e for _, e in graph(store)]
    assert sorted(map(edge_dict_key, stored)) == sorted(edge_dict_key(canonical(e)) for e in batch)


def edge_dict_key(e: Edge) -> bytes:
    return wire.encode(wire.to_doc(e))


# --------------------------------------------------------------------------- reading


def test_filters(store: GraphStore) -> None:
    setup(store, "t1", ("c1", "c2"))
    fe_cart = edge("frontend", "cartservice", methods=(Method.TCP, Method.DNS), last=T0 + 100)
    cart_redis = edge("cartservice", "redis", ns="data", methods=(Method.SOCKET_SCAN,), last=T0 + 50)
    cross = edge("frontend", wl("cartservice", "data"), methods=(Method.ISTIO,), last=T0 + 10)
    internet = edge("frontend", InternetTarget("data", (), 443), methods=(Method.DNS,), last=T0 + 200)
    ingest(store, "t1", "c1", "b1", [fe_cart, cart_redis, internet], T0)
    ingest(store, "t1", "c2", "b1", [cross], T0)

    def keys(**filters: Any) -> set[tuple[str, str, str]]:
        return {(c, str(e.client), str(e.target)) for c, e in graph(store, **filters)}

    assert len(keys()) == 4
    assert keys(cluster_ids=["c2"]) == {("c2", "frontend.shop", "cartservice.data")}
    assert keys(cluster_ids=[]) == set()
    assert len(keys(cluster_ids=["c1", "c2", "c3"])) == 4
    # namespace: the client's or a workload target's (an internet name "data" is no namespace)
    assert keys(namespaces=["data"]) == {
        ("c1", "cartservice.data", "redis.data"),
        ("c2", "frontend.shop", "cartservice.data"),
    }
    assert len(keys(namespaces=["shop"])) == 3
    assert keys(workload="redis") == {("c1", "cartservice.data", "redis.data")}
    assert len(keys(workload="cartservice")) == 3  # as client, as target in two namespaces
    # both given: one side must match both
    assert keys(namespaces=["shop"], workload="cartservice") == {("c1", "frontend.shop", "cartservice.shop")}
    assert keys(namespaces=["data"], workload="frontend") == set()
    assert {t for _, _, t in keys(method="dns")} == {
        "cartservice.shop",
        "InternetTarget(dns_name='data', ips=(), port=443)",
    }
    assert keys(method="kafka") == set()
    assert keys(method="") == set()
    assert {t for _, _, t in keys(since=T0 + 100)} == {
        "cartservice.shop",
        "InternetTarget(dns_name='data', ips=(), port=443)",
    }
    assert keys(since=T0 + 100, method="tcp", cluster_ids=["c1"]) == {
        ("c1", "frontend.shop", "cartservice.shop")
    }
    assert keys(namespaces=["nope"]) == set()


def test_edges_come_back_in_a_stable_order(store: GraphStore) -> None:
    setup(store, "t1", ("c2", "c1"))
    ingest(store, "t1", "c2", "b", [edge("b", "x"), edge("a", "y")], T0)
    ingest(store, "t1", "c1", "b", [edge("z", "x")], T0)
    order = [(c, e.client.name) for c, e in graph(store)]
    assert order[0] == ("c1", "z") and sorted(order[1:]) == order[1:]


def test_tenant_isolation(store: GraphStore) -> None:
    setup(store, "t1", ("c1",))
    setup(store, "t2", ("c2",))
    store.put_token(token("t1", "k1", "ingest", "c1"))
    ingest(store, "t1", "c1", "b1", [edge()], T0)
    assert graph(store, "t2") == []
    assert graph(store, "t2", cluster_ids=["c1"]) == []  # naming t1's cluster does not reach it
    assert graph(store, "t2", namespaces=["shop"]) == []
    assert graph(store, "t2", clients=ClientSelection(namespaces=frozenset({"shop"}))) == []
    assert store.tokens("t2") == []
    assert [c.id for c in store.clusters("t2")] == ["c2"]
    with pytest.raises(NotFound):
        store.delete_token("t2", "k1")
    assert store.get_token("hash-t1-k1") is not None
    with pytest.raises(NotFound):
        ingest(store, "t2", "c1", "b2", [edge()], T0)
    assert len(graph(store, "t1")) == 1
    assert graph(store, "nobody") == []


def test_concurrent_batches_on_one_edge_lose_nothing(store: GraphStore) -> None:
    setup(store)
    errors: list[BaseException] = []

    def send(i: int) -> None:
        try:
            ingest(store, "t1", "c1", f"b{i}", [edge(count=i, http=(HttpResource(f"/p{i}", ("GET",)),))], T0)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    [(_, merged)] = graph(store)
    assert merged.count == 5
    assert [r.path for r in merged.http] == [f"/p{i}" for i in range(6)]


# --------------------------------------------------------------------------- telemetry


def test_telemetry(store: GraphStore) -> None:
    assert store.telemetry() == []
    store.record_telemetry("h1", b"\x0a\x01first", "application/x-protobuf", T0)
    store.record_telemetry("h2", b'{"second": 2}', "application/json", T0 + 1)
    store.record_telemetry("h1", b"", "application/json", T0 + 2)
    assert store.telemetry() == [
        ("h1", T0 + 2, b""),
        ("h2", T0 + 1, b'{"second": 2}'),
        ("h1", T0, b"\x0a\x01first"),
    ]
    assert store.telemetry(limit=1) == [("h1", T0 + 2, b"")]
    big = bytes(range(256)) * (MAX_TELEMETRY_BYTES // 256)
    store.record_telemetry("h3", big, "application/x-protobuf", T0 + 3)
    assert store.telemetry(limit=2)[0] == ("h3", T0 + 3, big)
    with pytest.raises(Invalid):
        store.record_telemetry("h4", big + b"x", "application/x-protobuf", T0 + 4)
    assert len(store.telemetry()) == 4


# --------------------------------------------------------------------------- size


def fat_edge(i: int) -> Edge:
    paths = tuple(HttpResource(f"/api/v1/resource-{i}/{p}/" + "x" * 200, ("GET", "POST")) for p in range(10))
    return edge(f"client-{i % 50}", f"server-{i}", count=i + 1, http=paths)


def test_a_500_edge_batch_of_more_than_a_megabyte(store: GraphStore) -> None:
    setup(store)
    batch = [fat_edge(i) for i in range(500)]
    assert sum(len(edge_dict_key(e)) for e in batch) > 1_100_000  # > one DynamoDB query page
    assert ingest(store, "t1", "c1", "b1", batch, T0).edges_written == 500
    stored = graph(store)
    assert len(stored) == 500  # every page followed
    assert {edge_dict_key(e) for _, e in stored} == {edge_dict_key(canonical(e)) for e in batch}
    assert len(graph(store, workload="client-3")) == 10  # filtered pages are followed too
    writes = store.write_count()
    assert ingest(store, "t1", "c1", "b2", batch, T0).edges_written == 0
    assert store.write_count() == writes + 1  # the batch marker only


def test_dynamodb_follows_small_pages(dynamodb_client: Any, dynamodb_table: str) -> None:
    store = DynamoGraphStore(dynamodb_client, dynamodb_table, page_size=3, workers=1)
    setup(store, "t1", tuple(f"c{i}" for i in range(5)))
    assert len(store.clusters("t1")) == 5
    ingest(
        store,
        "t1",
        "c1",
        "b1",
        [edge(f"client-{i}", "s", methods=(Method.DNS if i % 2 else Method.TCP,)) for i in range(20)],
        T0,
    )
    assert len(graph(store)) == 20
    assert len(graph(store, method="dns")) == 10  # pages filtered to nothing are followed too


def test_has_batch(store: GraphStore) -> None:
    setup(store, "t1", ("c1", "c2"))
    assert not store.has_batch("t1", "c1", "b1")
    ingest(store, "t1", "c1", "b1", [edge()], T0)
    assert store.has_batch("t1", "c1", "b1")
    assert not store.has_batch("t1", "c2", "b1")  # per cluster
    assert not store.has_batch("t2", "c1", "b1")  # per tenant
    assert not store.has_batch("t1", "c1", "b2")


def test_sqlite_schema_1_is_migrated(tmp_path: Any) -> None:
    path = tmp_path / "v1.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE edges (tenant_id TEXT NOT NULL, cluster_id TEXT NOT NULL, key_hash TEXT NOT NULL,"
        " edge TEXT NOT NULL, client_namespace TEXT NOT NULL, client_name TEXT NOT NULL,"
        " target_namespace TEXT, target_name TEXT, methods TEXT NOT NULL, last_seen REAL NOT NULL,"
        " PRIMARY KEY (tenant_id, cluster_id, key_hash)) WITHOUT ROWID;"
        "CREATE TABLE tenants (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at REAL NOT NULL);"
        "CREATE TABLE clusters (tenant_id TEXT NOT NULL REFERENCES tenants(id), id TEXT NOT NULL,"
        " name TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (tenant_id, id));"
        "CREATE TABLE batches (tenant_id TEXT NOT NULL, cluster_id TEXT NOT NULL, batch_id TEXT NOT NULL,"
        " received_at REAL NOT NULL, PRIMARY KEY (tenant_id, cluster_id, batch_id)) WITHOUT ROWID;"
        "CREATE TABLE tokens (token_hash TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id),"
        " token_id TEXT NOT NULL, role TEXT NOT NULL, cluster_id TEXT NOT NULL, created_at REAL NOT NULL,"
        " UNIQUE (tenant_id, token_id));"
        "CREATE TABLE telemetry (id INTEGER PRIMARY KEY AUTOINCREMENT, cluster_hash TEXT NOT NULL,"
        " content_type TEXT NOT NULL, received_at REAL NOT NULL, body BLOB NOT NULL);"
        "PRAGMA user_version=1;"
    )
    e = canonical(edge())
    old_text, old_key = old_form(e)
    db.execute("INSERT INTO tenants VALUES ('t1', 't', 0)")
    db.execute("INSERT INTO clusters VALUES ('t1', 'c1', 'c', 0)")
    db.execute(
        "INSERT INTO edges VALUES ('t1', 'c1', ?, ?, 'shop', 'frontend', 'shop', 'cartservice', ?, ?)",
        (old_key, old_text, '["tcp"]', e.last_seen),
    )
    db.commit()
    db.close()
    store = SqliteGraphStore(path)
    try:
        assert graph(store) == [("c1", e)]
        assert ingest(store, "t1", "c1", "b1", [e], T0).edges_written == 0
    finally:
        store.close()


def test_sqlite_schema_2_is_migrated(tmp_path: Any) -> None:
    path = tmp_path / "v2.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE tenants (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at REAL NOT NULL);"
        "CREATE TABLE clusters (tenant_id TEXT NOT NULL REFERENCES tenants(id), id TEXT NOT NULL,"
        " name TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (tenant_id, id));"
        "CREATE TABLE tokens (token_hash TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id),"
        " token_id TEXT NOT NULL, role TEXT NOT NULL, cluster_id TEXT NOT NULL, created_at REAL NOT NULL,"
        " UNIQUE (tenant_id, token_id));"
        "CREATE TABLE batches (tenant_id TEXT NOT NULL, cluster_id TEXT NOT NULL, batch_id TEXT NOT NULL,"
        " received_at REAL NOT NULL, PRIMARY KEY (tenant_id, cluster_id, batch_id)) WITHOUT ROWID;"
        "CREATE TABLE telemetry (id INTEGER PRIMARY KEY AUTOINCREMENT, cluster_hash TEXT NOT NULL,"
        " content_type TEXT NOT NULL, received_at REAL NOT NULL, body BLOB NOT NULL);"
        "CREATE TABLE edges (tenant_id TEXT NOT NULL, cluster_id TEXT NOT NULL, key_hash TEXT NOT NULL,"
        " edge TEXT NOT NULL, client_namespace TEXT NOT NULL, client_name TEXT NOT NULL,"
        " target_namespace TEXT, target_name TEXT, methods TEXT NOT NULL, last_seen REAL NOT NULL,"
        " UNIQUE (tenant_id, cluster_id, key_hash));"
        "PRAGMA user_version=2;"
    )
    e = canonical(edge())
    old_text, old_key = old_form(e)
    for tenant in ("t1", "t2"):
        db.execute("INSERT INTO tenants VALUES (?, 't', 0)", (tenant,))
        db.execute("INSERT INTO clusters VALUES (?, 'c1', 'c', 0)", (tenant,))
        db.execute(
            "INSERT INTO edges VALUES (?, 'c1', ?, ?, 'shop', 'frontend', 'shop', 'cartservice', ?, ?)",
            (tenant, old_key, old_text, '["tcp"]', e.last_seen),
        )
    db.execute("INSERT INTO batches VALUES ('t1', 'c1', 'old', 0)")
    db.execute("INSERT INTO tokens VALUES ('h', 't1', 'k', 'ingest', 'c1', 0)")
    db.commit()
    db.close()
    store = SqliteGraphStore(path)
    try:
        assert graph(store) == [("c1", e)] and graph(store, "t2") == [("c1", e)]
        assert [c.heartbeat for c in store.clusters("t1")] == [None]
        assert store.has_batch("t1", "c1", "old") and store.get_token("h") is not None
        assert ingest(store, "t1", "c1", "b1", [e], T0).edges_written == 0, "the same keys, found again"
        store.add_cluster("t1", "c2", "new", T0)
        assert [c.id for c in store.clusters("t1")] == ["c1", "c2"]
    finally:
        store.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
