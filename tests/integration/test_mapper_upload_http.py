"""The uploader over real HTTP against the stand-in cloud (tests/support/recording_cloud.py):
uploads arrive and merge to the store's edges; a cloud outage spanning an uploader restart (a new
Uploader over the same store file) loses nothing and stores no batch twice; a reply lost after the
cloud stored the batch is re-sent under the same id; hours of steady traffic (an injected clock)
cost one upload and then a heartbeat per granularity, also across a restart; an edge that goes
quiet is sent not live before the next heartbeat; a bad token is refused and retried later."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.exports.jsonexport import edge_dict, rfc3339
from agent.mapper.store import EdgeStore
from agent.mapper.uploader import MAX_BATCH, HttpCloudClient, Uploader, batch_id
from agent.model import AwsTarget, Edge, HttpResource, InternetTarget, Method, WorkloadIdentity
from tests.support.recording_cloud import RecordingCloud, normalized

T0 = 1_780_000_000.0
HOUR = 3600.0
FRONTEND = WorkloadIdentity("shop", "frontend", "Deployment")
CART = WorkloadIdentity("shop", "cartservice", "Deployment")
REDIS = WorkloadIdentity("shop", "redis-cart", "StatefulSet")


def edge(client: WorkloadIdentity, target: object, at: float = T0, **kw: object) -> Edge:
    fields: dict[str, object] = {"first_seen": at, "last_seen": at, "methods": frozenset({Method.TCP})}
    fields.update(kw)
    return Edge(client, target, **fields)  # type: ignore[arg-type]


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def in_sync(cloud: RecordingCloud, store: EdgeStore) -> bool:
    return cloud.graph() == {e.key: normalized(e) for e in store.edges()}


@pytest.fixture
def cloud() -> Iterator[RecordingCloud]:
    with RecordingCloud(token="tenant-token") as server:
        yield server


def start_uploader(
    store: EdgeStore, cloud: RecordingCloud, token: str = "tenant-token", **kw: object
) -> Uploader:
    client = HttpCloudClient(cloud.url, token, timeout=2.0)
    options: dict[str, object] = {
        "interval": 0.1,
        "retry_attempts": 2,
        "retry_initial": 0.02,
        "retry_max": 0.05,
        "clock": lambda: T0 + 60,  # every edge of these tests (seen from T0 on) is live
    }
    options.update(kw)
    return Uploader(store, client, **options).start()  # type: ignore[arg-type]


def test_uploads_arrive_and_merge_to_the_stores_edges(tmp_path: Path, cloud: RecordingCloud) -> None:
    with EdgeStore.in_dir(tmp_path) as store:
        store.record(
            [
                edge(FRONTEND, CART, http=(HttpResource("/cart", ("GET",)),), count=2),
                edge(FRONTEND, InternetTarget("api.example.com", ("93.184.216.34",), 443)),
                edge(CART, AwsTarget("arn:aws:s3:::orders"), aws_actions=("s3:GetObject",)),
            ]
        )
        up = start_uploader(store, cloud)
        try:
            wait_until(lambda: in_sync(cloud, store), what="the cloud to have the store's edges")
            store.record(
                [edge(CART, REDIS, at=T0 + 1), edge(FRONTEND, CART, at=T0 + 2, methods={Method.ISTIO})]
            )
            wait_until(lambda: in_sync(cloud, store), what="the second upload")
        finally:
            up.stop()
        assert cloud.graph()[(FRONTEND, CART)].methods == {Method.TCP, Method.ISTIO}
        assert cloud.graph()[(FRONTEND, CART)].count == 3
        received = cloud.received_batches()
        assert len(received) == 2 and all(stored for _, stored, _ in received)


def test_an_outage_across_an_uploader_restart_loses_nothing_and_stores_no_batch_twice(
    tmp_path: Path, cloud: RecordingCloud
) -> None:
    store = EdgeStore.in_dir(tmp_path)
    store.record([edge(FRONTEND, CART)])
    up = start_uploader(store, cloud)
    wait_until(lambda: in_sync(cloud, store), what="the first upload")

    cloud.stop()  # the outage begins
    store.record([edge(CART, REDIS, at=T0 + 10), edge(FRONTEND, CART, at=T0 + 11, target_service="cart")])
    time.sleep(0.5)  # several failed cycles
    up.stop()
    store.close()  # the mapper restarts during the outage

    store = EdgeStore.in_dir(tmp_path)
    up = start_uploader(store, cloud)
    try:
        store.record([edge(REDIS, InternetTarget("", ("1.1.1.1",), 53), at=T0 + 20)])
        time.sleep(0.3)
        assert store.upload_cursor() == 1  # nothing moved while the cloud was down
        cloud.start()  # same port
        wait_until(lambda: in_sync(cloud, store), what="recovery")
    finally:
        up.stop()
        store.close()
    ids = [batch for batch, _, _ in cloud.received_batches()]
    assert len(ids) == len(set(ids)) == len(cloud.stored_batches())  # nothing sent twice
    assert cloud.graph()[(FRONTEND, CART)].target_service == "cart"


def test_a_lost_reply_is_re_sent_under_the_same_batch_id(tmp_path: Path, cloud: RecordingCloud) -> None:
    with EdgeStore.in_dir(tmp_path) as store:
        store.record([edge(FRONTEND, CART), edge(CART, REDIS)])
        client = HttpCloudClient(cloud.url, "tenant-token", timeout=2.0)
        # The cloud stores the batch, then the mapper dies before marking it uploaded.
        docs = [edge_dict(e) | {"live": True} for _, e in store.changed_since(0, MAX_BATCH)]
        assert client.ingest(batch_id(False, docs), False, docs).stored
        restarted = Uploader(store, client, clock=lambda: T0)
        assert restarted.upload_once().duplicates == 1
        received = cloud.received_batches()
        assert [r[0] for r in received] == [received[0][0]] * 2
        assert [r[1] for r in received] == [True, False]
        assert in_sync(cloud, store) and len(cloud.stored_batches()) == 1
        client.close()


def test_hours_of_steady_traffic_cost_one_upload_then_a_heartbeat_per_granularity(
    tmp_path: Path, cloud: RecordingCloud
) -> None:
    pairs = [(FRONTEND, CART), (CART, REDIS), (FRONTEND, InternetTarget("api.example.com", (), 443))]
    now = [T0]
    client = HttpCloudClient(cloud.url, "tenant-token", timeout=2.0)

    def minutes(store: EdgeStore, up: Uploader, span: range) -> None:
        for minute in span:  # the same traffic every minute, an upload cycle every minute
            now[0] = T0 + minute * 60
            store.record([edge(c, t, at=now[0]) for c, t in pairs])
            up.upload_once()

    with EdgeStore.in_dir(tmp_path) as store:
        minutes(store, Uploader(store, client, clock=lambda: now[0]), range(100))
    with EdgeStore.in_dir(tmp_path) as store:  # the mapper restarts
        minutes(store, Uploader(store, client, clock=lambda: now[0]), range(100, 181))
    client.close()
    requests = cloud.requests()
    assert [r.heartbeat for r in requests] == [False] + [True] * 4
    assert requests[0].live == (True, True, True) and len(requests[0].edges) == 3
    assert [r.seen_at for r in requests[1:]] == [T0, T0 + HOUR, T0 + 100 * 60, T0 + 100 * 60 + HOUR]
    assert [r.batch_id for r in requests[1:3]] == [
        f"heartbeat-{rfc3339(T0)}",
        f"heartbeat-{rfc3339(T0 + HOUR)}",
    ]
    assert len(cloud.stored_batches()) == 1
    # As the cloud reads it, each edge was last seen at the latest heartbeat.
    assert {e.last_seen for e in cloud.effective_graph().values()} == {T0 + 100 * 60 + HOUR}


def test_an_edge_that_goes_quiet_is_sent_not_live_before_the_next_heartbeat(
    tmp_path: Path, cloud: RecordingCloud
) -> None:
    now = [T0]
    client = HttpCloudClient(cloud.url, "tenant-token", timeout=2.0)
    with EdgeStore.in_dir(tmp_path) as store:
        up = Uploader(store, client, clock=lambda: now[0], granularity=HOUR)
        store.record([edge(FRONTEND, CART), edge(CART, REDIS)])
        for minute in range(61):  # redis stops being seen at once; the frontend keeps calling
            now[0] = T0 + minute * 60
            store.record([edge(FRONTEND, CART, at=now[0])])
            up.upload_once()
        quiet = {e.key: e for e in store.edges()}[(CART, REDIS)]
        assert cloud.graph()[(CART, REDIS)] == normalized(quiet)
    client.close()
    requests = cloud.requests()
    kinds = [("heartbeat", r.seen_at) if r.heartbeat else ("batch", r.live) for r in requests]
    assert kinds == [
        ("batch", (True, True)),
        ("heartbeat", T0),
        ("batch", (False,)),
        ("heartbeat", T0 + HOUR),
    ]
    assert requests[2].edges[0].key == (CART, REDIS) and requests[2].edges[0].last_seen == T0
    assert cloud.live() == {(FRONTEND, CART): True, (CART, REDIS): False}
    effective = cloud.effective_graph()
    assert effective[(FRONTEND, CART)].last_seen == T0 + HOUR
    assert effective[(CART, REDIS)].last_seen == T0  # its true last_seen, not the heartbeat


def test_a_bad_token_is_refused_and_kept_for_later(tmp_path: Path, cloud: RecordingCloud) -> None:
    with EdgeStore.in_dir(tmp_path) as store:
        store.record([edge(FRONTEND, CART)])
        up = start_uploader(store, cloud, token="wrong")
        wait_until(lambda: cloud.count("unauthorized") >= 2, what="refused attempts")
        up.stop()
        assert store.upload_cursor() == 0 and not cloud.graph()
        up = start_uploader(store, cloud)
        try:
            wait_until(lambda: in_sync(cloud, store), what="the upload with the right token")
        finally:
            up.stop()
