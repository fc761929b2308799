"""The uploader over real HTTP against the real cloud (tests/support/local_cloud.py: CloudApp over
SQLite, served on 127.0.0.1): uploads arrive and merge to the store's edges; a cloud outage
spanning an uploader restart (a new Uploader over the same store file) loses nothing and stores no
batch twice; a reply lost after the cloud stored the batch is re-sent under the same id; hours of
steady traffic (an injected clock) cost one upload and then a heartbeat per granularity, also
across a restart; an edge that goes quiet is sent not live before the next heartbeat; a cloud
answering 503 is retried and the batch arrives once when it recovers; a bad token is refused and
the batch kept for later.

The cloud is read as it serves its graph (``GraphStore.edges``): a live edge reads as last seen at
least at its cluster's heartbeat, so "the cloud has the store's edges" means each of the mapper's
edges, lifted to the heartbeat when it was live at upload (every edge of the tests that run the
uploader's thread is: their clock is ``T0 + 60``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent import wire
from agent.mapper.store import EdgeStore
from agent.mapper.uploader import MAX_BATCH, HttpCloudClient, Uploader, batch_id
from agent.mapperclient import RequestsTransport
from agent.model import AwsTarget, Edge, HttpResource, InternetTarget, Method, WorkloadIdentity
from tests.support.local_cloud import LocalCloud
from tests.support.mapper_process import wait_until
from tests.support.transports import RecordingTransport

T0 = 1_780_000_000.0  # in the past: the cloud takes a heartbeat from the future as now
HOUR = 3600.0
NOW = T0 + 60  # the clock of the tests that run the uploader's thread: every edge is live
FRONTEND = WorkloadIdentity("shop", "frontend", "Deployment")
CART = WorkloadIdentity("shop", "cartservice", "Deployment")
REDIS = WorkloadIdentity("shop", "redis-cart", "StatefulSet")
UNKNOWN_TOKEN = "nm_" + "0" * 64  # well formed, never issued


def edge(client: WorkloadIdentity, target: object, at: float = T0, **kw: object) -> Edge:
    fields: dict[str, object] = {"first_seen": at, "last_seen": at, "methods": frozenset({Method.TCP})}
    fields.update(kw)
    return Edge(client, target, **fields)  # type: ignore[arg-type]


def as_read(edges: list[Edge], heartbeat: float | None) -> dict[tuple[WorkloadIdentity, object], Edge]:
    """The mapper's (live) edges as the cloud should read them: last seen at least at the heartbeat."""
    return {
        e.key: e if heartbeat is None else dataclasses.replace(e, last_seen=max(e.last_seen, heartbeat))
        for e in edges
    }


def in_sync(cloud: LocalCloud, store: EdgeStore) -> bool:
    """The cloud has every edge of the store, merged to the same content (all live: see the module doc)."""
    heartbeat = cloud.heartbeat()
    return cloud.edges() == as_read(store.edges(), heartbeat) and cloud.heartbeat() == heartbeat


def wait(predicate: Callable[[], bool], what: str) -> None:
    wait_until(predicate, 15, what, interval=0.02)


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[LocalCloud]:
    with LocalCloud(tmp_path / "cloud") as server:
        yield server


@pytest.fixture
def transport() -> Iterator[RecordingTransport]:
    """The uploader's HTTP (``requests``), recording each attempt (an unanswered one: refused)."""
    http = RequestsTransport()
    yield RecordingTransport(http)
    http.close()


def start_uploader(store: EdgeStore, client: HttpCloudClient, **kw: object) -> Uploader:
    options: dict[str, object] = {
        "interval": 0.1,
        "retry_attempts": 2,
        "retry_initial": 0.02,
        "retry_max": 0.05,
        "clock": lambda: NOW,
    }
    options.update(kw)
    return Uploader(store, client, **options).start()  # type: ignore[arg-type]


def client_of(
    cloud: LocalCloud, transport: RecordingTransport | None = None, token: str = ""
) -> HttpCloudClient:
    return HttpCloudClient(cloud.url, token or cloud.token, timeout=2.0, transport=transport)


def test_uploads_arrive_and_merge_to_the_stores_edges(tmp_path: Path, cloud: LocalCloud) -> None:
    client = client_of(cloud)
    with EdgeStore.in_dir(tmp_path) as store:
        store.record(
            [
                edge(FRONTEND, CART, http=(HttpResource("/cart", ("GET",)),), count=2),
                edge(FRONTEND, InternetTarget("api.example.com", ("93.184.216.34",), 443)),
                edge(CART, AwsTarget("arn:aws:s3:::orders"), aws_actions=("s3:GetObject",)),
            ]
        )
        up = start_uploader(store, client)
        try:
            wait(lambda: in_sync(cloud, store) and cloud.heartbeat() == NOW, "the cloud to have the edges")
            store.record(
                [edge(CART, REDIS, at=T0 + 1), edge(FRONTEND, CART, at=T0 + 2, methods={Method.ISTIO})]
            )
            wait(lambda: len(cloud.edges()) == 4 and in_sync(cloud, store), "the second upload")
        finally:
            up.stop()
            client.close()
        merged = cloud.edges()[(FRONTEND, CART)]
        assert merged.methods == {Method.TCP, Method.ISTIO}
        assert merged.count == 3  # the mapper's cumulative count (2 + 1), not a sum of the uploads
        assert merged.http == (HttpResource("/cart", ("GET",)),)
        assert cloud.edges()[(CART, AwsTarget("arn:aws:s3:::orders"))].aws_actions == ("s3:GetObject",)
    batches = cloud.batches()
    assert [len(b.edges) for b in batches] == [3, 2] and all(b.stored for b in batches)
    assert cloud.heartbeats() == [NOW]  # once per granularity: the second cycle sent none


def test_an_outage_across_an_uploader_restart_loses_nothing_and_stores_no_batch_twice(
    tmp_path: Path, cloud: LocalCloud, transport: RecordingTransport
) -> None:
    def refused() -> int:
        return transport.count(0)  # attempts that got no answer at all

    client = client_of(cloud, transport)
    store = EdgeStore.in_dir(tmp_path)
    store.record([edge(FRONTEND, CART)])
    up = start_uploader(store, client)
    wait(lambda: in_sync(cloud, store) and cloud.heartbeat() == NOW, "the first upload")
    assert refused() == 0

    cloud.stop()  # the outage begins
    store.record([edge(CART, REDIS, at=T0 + 10), edge(FRONTEND, CART, at=T0 + 11, target_service="cart")])
    wait(lambda: refused() >= 2, "failed attempts during the outage")
    up.stop()
    store.close()  # the mapper restarts during the outage

    store = EdgeStore.in_dir(tmp_path)
    up = start_uploader(store, client)
    try:
        store.record([edge(REDIS, InternetTarget("", ("1.1.1.1",), 53), at=T0 + 20)])
        failed = refused()
        wait(lambda: refused() >= failed + 2, "the restarted uploader's failed attempts")
        assert up.ledger.upload_cursor() == 1  # nothing moved while the cloud was down
        assert len(cloud.edges()) == 1
        cloud.start()  # same port, same store
        wait(lambda: len(cloud.edges()) == 3 and in_sync(cloud, store), "recovery")
    finally:
        up.stop()
        store.close()
        client.close()
    batches = cloud.batches()
    ids = [b.batch_id for b in batches]
    assert len(ids) == len(set(ids)) >= 2  # nothing sent twice...
    assert all(b.stored for b in batches)  # ...so no batch was a duplicate either
    assert cloud.edges()[(FRONTEND, CART)].target_service == "cart"


def test_a_lost_reply_is_re_sent_under_the_same_batch_id(tmp_path: Path, cloud: LocalCloud) -> None:
    client = client_of(cloud)
    with EdgeStore.in_dir(tmp_path) as store:
        store.record([edge(FRONTEND, CART), edge(CART, REDIS)])
        # The cloud stores the batch, then the mapper dies before marking it uploaded.
        docs = [wire.to_doc(e, True) for _, e in store.changed_since(0, MAX_BATCH)]
        assert client.ingest(batch_id(False, docs), False, docs).stored
        restarted = Uploader(store, client, clock=lambda: T0)
        assert restarted.upload_once().duplicates == 1
        assert restarted.ledger.upload_cursor() == 2  # and now it is marked
        batches = cloud.batches()
        assert [b.batch_id for b in batches] == [batches[0].batch_id] * 2
        assert [(b.stored, b.edges_written) for b in batches] == [(True, 2), (False, 0)]
        assert cloud.edges() == as_read(store.edges(), cloud.heartbeat())
        assert cloud.heartbeat() == T0
    client.close()


def test_hours_of_steady_traffic_cost_one_upload_then_a_heartbeat_per_granularity(
    tmp_path: Path, cloud: LocalCloud
) -> None:
    pairs = [(FRONTEND, CART), (CART, REDIS), (FRONTEND, InternetTarget("api.example.com", (), 443))]
    now = [T0]
    client = client_of(cloud)

    def minutes(store: EdgeStore, up: Uploader, span: range) -> None:
        for minute in span:  # the same traffic every minute, an upload cycle every minute
            now[0] = T0 + minute * 60
            store.record([edge(c, t, at=now[0]) for c, t in pairs])
            up.upload_once()

    with EdgeStore.in_dir(tmp_path) as store:
        minutes(store, Uploader(store, client, clock=lambda: now[0]), range(100))
    with EdgeStore.in_dir(tmp_path) as store:  # the mapper restarts
        minutes(store, Uploader(store, client, clock=lambda: now[0]), range(100, 181))
        mapper_edges = store.edges()
    client.close()
    requests = cloud.ingests()
    assert cloud.count() == len(requests) == 5  # nothing else reached the cloud
    assert [r.heartbeat for r in requests] == [False] + [True] * 4
    assert requests[0].live == (True, True, True) and len(requests[0].edges) == 3
    assert [r.seen_at for r in requests[1:]] == [T0, T0 + HOUR, T0 + 100 * 60, T0 + 100 * 60 + HOUR]
    assert [r.batch_id for r in requests[1:3]] == [
        f"heartbeat-{wire.format_time(T0)}",
        f"heartbeat-{wire.format_time(T0 + HOUR)}",
    ]
    assert [r.stored for r in requests] == [True] * 5 and requests[0].edges_written == 3
    # As the cloud reads it, each edge was last seen at the latest heartbeat (its stored last_seen
    # is still the first upload's: T0), which is within a granularity of the mapper's last_seen.
    last_beat = T0 + 100 * 60 + HOUR
    assert cloud.heartbeat() == last_beat
    assert {e.last_seen for e in cloud.edges().values()} == {last_beat}
    assert all(0 <= e.last_seen - last_beat < HOUR for e in mapper_edges)


def test_an_edge_that_goes_quiet_is_sent_not_live_before_the_next_heartbeat(
    tmp_path: Path, cloud: LocalCloud
) -> None:
    now = [T0]
    client = client_of(cloud)
    with EdgeStore.in_dir(tmp_path) as store:
        up = Uploader(store, client, clock=lambda: now[0], granularity=HOUR)
        store.record([edge(FRONTEND, CART), edge(CART, REDIS)])
        for minute in range(61):  # redis stops being seen at once; the frontend keeps calling
            now[0] = T0 + minute * 60
            store.record([edge(FRONTEND, CART, at=now[0])])
            up.upload_once()
        quiet = {e.key: e for e in store.edges()}[(CART, REDIS)]
        assert cloud.edges()[(CART, REDIS)] == quiet  # its true last_seen, not the heartbeat
    client.close()
    requests = cloud.ingests()
    kinds = [("heartbeat", r.seen_at) if r.heartbeat else ("batch", r.live) for r in requests]
    assert kinds == [
        ("batch", (True, True)),
        ("heartbeat", T0),
        ("batch", (False,)),
        ("heartbeat", T0 + HOUR),
    ]
    assert requests[2].edges[0].key == (CART, REDIS) and requests[2].edges[0].last_seen == T0
    assert cloud.live() == {(FRONTEND, CART): True, (CART, REDIS): False}
    effective = cloud.edges()
    assert effective[(FRONTEND, CART)].last_seen == T0 + HOUR
    assert effective[(CART, REDIS)].last_seen == T0


def test_a_503_is_retried_and_the_batch_arrives_once_when_the_cloud_recovers(
    tmp_path: Path, cloud: LocalCloud, transport: RecordingTransport
) -> None:
    client = client_of(cloud, transport)
    cloud.fail_with(503)  # the gateway answers; the cloud sees nothing
    with EdgeStore.in_dir(tmp_path) as store:
        store.record([edge(FRONTEND, CART), edge(CART, REDIS)])
        up = start_uploader(store, client)
        try:
            wait(lambda: cloud.count(503) >= 3, "attempts answered 503 (retries and a next cycle)")
            assert up.ledger.upload_cursor() == 0 and not cloud.edges()
            cloud.fail_with(None)
            wait(lambda: in_sync(cloud, store) and cloud.heartbeat() == NOW, "the upload after recovery")
        finally:
            up.stop()
            client.close()
        assert up.ledger.upload_cursor() == 2
    assert transport.count(503) == cloud.count(503) >= 3
    assert all(e.injected for e in cloud.exchanges() if e.status == 503)
    batches = cloud.batches()
    assert len(batches) == 1 and batches[0].stored and len(batches[0].edges) == 2


def test_a_bad_token_is_refused_and_kept_for_later(tmp_path: Path, cloud: LocalCloud) -> None:
    wrong = client_of(cloud, token=UNKNOWN_TOKEN)
    with EdgeStore.in_dir(tmp_path) as store:
        store.record([edge(FRONTEND, CART)])
        up = start_uploader(store, wrong)
        wait(lambda: cloud.count(401) >= 2, "refused attempts")
        up.stop()
        wrong.close()
        assert up.ledger.upload_cursor() == 0 and not cloud.edges()
        assert cloud.count() == cloud.count(401)  # every attempt was refused, none stored
        right = client_of(cloud)
        up = start_uploader(store, right)
        try:
            wait(
                lambda: in_sync(cloud, store) and cloud.heartbeat() == NOW, "the upload with the right token"
            )
        finally:
            up.stop()
            right.close()
        assert up.ledger.upload_cursor() == 1
    assert [len(b.edges) for b in cloud.batches()] == [1]
