"""The uploader over real HTTP against the stand-in cloud (tests/support/recording_cloud.py):
uploads arrive and merge to the store's edges; a cloud outage spanning an uploader restart (a new
Uploader over the same store file) loses nothing and stores no batch twice; a reply lost after the
cloud stored the batch is re-sent under the same id; steady traffic writes nothing after the first
upload; a bad token is refused and retried later."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.exports.jsonexport import edge_dict
from agent.mapper.store import EdgeStore
from agent.mapper.uploader import MAX_BATCH, HttpCloudClient, Uploader, batch_id
from agent.model import AwsTarget, Edge, HttpResource, InternetTarget, Method, WorkloadIdentity
from tests.support.recording_cloud import RecordingCloud, normalized

T0 = 1_780_000_000.0
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
        docs = [edge_dict(e) for _, e in store.changed_since(0, MAX_BATCH)]
        assert client.ingest(batch_id(False, docs), False, docs).stored
        assert Uploader(store, client).upload_once().duplicates == 1  # the restarted mapper
        received = cloud.received_batches()
        assert [r[0] for r in received] == [received[0][0]] * 2
        assert [r[1] for r in received] == [True, False]
        assert in_sync(cloud, store) and len(cloud.stored_batches()) == 1
        client.close()


def test_steady_traffic_sends_nothing_after_the_first_upload(tmp_path: Path, cloud: RecordingCloud) -> None:
    with EdgeStore.in_dir(tmp_path) as store:
        pairs = [(FRONTEND, CART), (CART, REDIS), (FRONTEND, InternetTarget("api.example.com", (), 443))]
        store.record([edge(c, t) for c, t in pairs])
        up = start_uploader(store, cloud, granularity=3600.0)
        try:
            wait_until(lambda: len(cloud.received_batches()) == 1, what="the first upload")
            for minute in range(1, 31):  # half an hour of the same traffic
                store.record([edge(c, t, at=T0 + minute * 60) for c, t in pairs])
            top = store.changed_since(0, 1000)[-1][0]
            wait_until(lambda: store.upload_cursor() >= top, what="the uploader to walk the changes")
        finally:
            up.stop()
        assert len(cloud.received_batches()) == 1


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
