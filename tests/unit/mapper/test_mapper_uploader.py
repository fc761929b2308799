"""The uploader and the store's change tracking: what is selected (new, changed details,
last_seen within / past the granularity), batch sizes, deterministic batch ids (a crash between
send and mark re-sends the same id), retries within a cycle, the cursor across failures, the
schema 1 → 2 migration. The cloud is a fake :class:`CloudClient` (no I/O)."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.exports.jsonexport import edge_from_dict
from agent.mapper import store as store_module
from agent.mapper.anonymize import Anonymizer
from agent.mapper.store import SCHEMA_VERSION, EdgeStore
from agent.mapper.uploader import (
    MAX_BATCH,
    CloudRejected,
    CloudUnavailable,
    IngestResult,
    Uploader,
    batch_id,
    digest,
)
from agent.model import AwsTarget, Edge, HttpResource, InternetTarget, Method, WorkloadIdentity

T0 = 1_780_000_000.0
HOUR = 3600.0
FRONTEND = WorkloadIdentity("shop", "frontend", "Deployment")
CART = WorkloadIdentity("shop", "cartservice", "Deployment")
REDIS = WorkloadIdentity("shop", "redis-cart", "StatefulSet")
S3 = AwsTarget("arn:aws:s3:::orders")
GOOGLE = InternetTarget("www.google.com", ("142.250.1.1",), 443)


def edge(client: WorkloadIdentity = FRONTEND, target: object = CART, at: float = T0, **kw: object) -> Edge:
    fields: dict[str, object] = {"first_seen": at, "last_seen": at, "methods": frozenset({Method.TCP})}
    fields.update(kw)
    return Edge(client, target, **fields)  # type: ignore[arg-type]


class FakeCloud:
    """Records batches; dedups by id like the cloud; can fail the next N calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool, list[dict[str, Any]]]] = []
        self.stored: set[str] = set()
        self.failures: list[Exception] = []
        self.lock = threading.Lock()

    def ingest(self, batch_id: str, anonymized: bool, edges: list[dict[str, Any]]) -> IngestResult:
        with self.lock:
            self.calls.append((batch_id, anonymized, edges))
            if self.failures:
                raise self.failures.pop(0)
            stored = batch_id not in self.stored
            self.stored.add(batch_id)
            return IngestResult(stored, len(edges) if stored else 0)

    def sent_keys(self, call: int = -1) -> set[tuple[object, object]]:
        return {edge_from_dict(e).key for e in self.calls[call][2]}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EdgeStore]:
    with EdgeStore.in_dir(tmp_path) as s:
        yield s


def uploader(store: EdgeStore, cloud: FakeCloud, **kw: Any) -> Uploader:
    kw.setdefault("retry_initial", 0.001)
    kw.setdefault("retry_max", 0.002)
    return Uploader(store, cloud, **kw)


# ------------------------------------------------------------------ store change tracking


def test_changed_since_pages_by_seq_and_a_rewrite_moves_the_row_to_the_end(store: EdgeStore) -> None:
    store.record([edge(), edge(target=REDIS), edge(target=S3)])
    first = store.changed_since(0, 10)
    assert [s for s, _ in first] == [1, 2, 3]
    assert store.changed_since(0, 2) == first[:2]
    store.record([edge(at=T0 + 5)])
    again = store.changed_since(first[-1][0], 10)
    assert [(s, e.key) for s, e in again] == [(4, (FRONTEND, CART))]
    assert again[0][1].count == 2


def test_marks_and_cursor_are_persisted_and_the_cursor_never_goes_back(tmp_path: Path) -> None:
    with EdgeStore.in_dir(tmp_path) as s:
        s.record([edge(), edge(target=GOOGLE)])
        assert s.upload_cursor() == 0
        assert s.upload_marks([(FRONTEND, CART)]) == {}
        s.mark_uploaded([((FRONTEND, CART), T0, "abc")], 2)
        s.mark_uploaded([], 1)
    with EdgeStore.in_dir(tmp_path) as s:
        assert s.upload_cursor() == 2
        marks = s.upload_marks([(FRONTEND, CART), (FRONTEND, GOOGLE)])
        assert marks == {(FRONTEND, CART): (T0, "abc")}


def test_reset_forgets_marks_but_seq_keeps_counting(store: EdgeStore) -> None:
    store.record([edge()])
    store.mark_uploaded([((FRONTEND, CART), T0, "abc")], 1)
    store.reset()
    store.record([edge()])
    assert [s for s, _ in store.changed_since(store.upload_cursor(), 10)] == [2]
    assert store.upload_marks([(FRONTEND, CART)]) == {}


def test_a_version_1_file_is_migrated_in_place_keeping_every_edge(tmp_path: Path) -> None:
    path = tmp_path / "edges.db"
    old = [edge(), edge(target=S3, aws_actions=("s3:GetObject",)), edge(client=CART, target=REDIS)]
    db = sqlite3.connect(path, isolation_level=None)
    for statement in store_module._SCHEMA:
        db.execute(statement)
    db.execute("PRAGMA user_version = 1")
    for e in old:
        row = store_module._key_row(e) + store_module._Merged(e).row()
        db.execute(f"INSERT INTO edges VALUES ({', '.join('?' * len(row))})", row)
    db.close()
    with EdgeStore(path) as s:
        assert sorted(s.edges(), key=repr) == sorted(old, key=repr)
        assert sorted(s for s, _ in s.changed_since(0, 10)) == [1, 2, 3]
        s.record([edge(client=REDIS, target=GOOGLE)])
        assert [n for n, _ in s.changed_since(3, 10)] == [4]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    db.close()


# ------------------------------------------------------------------ selection


def test_new_edges_are_sent_once(store: EdgeStore) -> None:
    cloud = FakeCloud()
    store.record([edge(), edge(target=GOOGLE), edge(client=CART, target=REDIS)])
    up = uploader(store, cloud)
    result = up.upload_once()
    assert (result.batches, result.edges, result.duplicates) == (1, 3, 0)
    assert cloud.sent_keys() == {(FRONTEND, CART), (FRONTEND, GOOGLE), (CART, REDIS)}
    assert up.upload_once().batches == 0
    assert len(cloud.calls) == 1


def test_changed_details_are_re_sent_with_the_cumulative_state(store: EdgeStore) -> None:
    cloud = FakeCloud()
    store.record([edge(count=3)])
    up = uploader(store, cloud)
    up.upload_once()
    store.record(
        [edge(at=T0 + 1, methods=frozenset({Method.ISTIO}), http=(HttpResource("/cart", ("GET",)),))]
    )
    assert up.upload_once().batches == 1
    sent = edge_from_dict(cloud.calls[-1][2][0])
    assert sent.methods == {Method.TCP, Method.ISTIO}
    assert sent.http == (HttpResource("/cart", ("GET",)),)
    assert sent.count == 4 and sent.last_seen == T0 + 1


def test_last_seen_within_the_granularity_is_not_re_sent_past_it_is(store: EdgeStore) -> None:
    cloud = FakeCloud()
    store.record([edge()])
    up = uploader(store, cloud, granularity=HOUR)
    up.upload_once()
    for minutes in (1, 10, 59):
        store.record([edge(at=T0 + minutes * 60)])
        result = up.upload_once()
        assert (result.batches, result.skipped) == (0, 1)
    assert len(cloud.calls) == 1
    store.record([edge(at=T0 + HOUR)])
    assert up.upload_once().batches == 1
    assert edge_from_dict(cloud.calls[-1][2][0]).last_seen == T0 + HOUR
    store.record([edge(at=T0 + HOUR + 600)])  # measured from the last upload, not the first
    assert up.upload_once().batches == 0


def test_wanted_compares_the_digest_not_the_count_or_times() -> None:
    up = Uploader.__new__(Uploader)
    up.granularity = HOUR
    base = edge()
    assert up.wanted(base, None)
    assert not up.wanted(edge(at=T0 + 5, count=9), (T0, digest(base)))
    assert up.wanted(edge(target_service="cart"), (T0, digest(base)))
    assert up.wanted(edge(ambiguous=True), (T0, digest(base)))
    assert up.wanted(edge(at=T0 + HOUR), (T0, digest(base)))


def test_batches_hold_at_most_batch_size_edges(store: EdgeStore) -> None:
    cloud = FakeCloud()
    store.record([edge(target=InternetTarget(f"h{i}.example.com", (), 443)) for i in range(1200)])
    result = uploader(store, cloud).upload_once()
    assert [len(c[2]) for c in cloud.calls] == [MAX_BATCH, MAX_BATCH, 200]
    assert (result.batches, result.edges) == (3, 1200)
    with pytest.raises(ValueError, match="batch_size"):
        Uploader(store, cloud, batch_size=501)


# ------------------------------------------------------------------ batch ids


def test_batch_ids_are_deterministic_and_depend_on_content(tmp_path: Path) -> None:
    ids = []
    for name in ("a", "b"):
        with EdgeStore.in_dir(tmp_path / name) as s:
            s.record([edge(target=GOOGLE), edge()])  # another order, same content
            cloud = FakeCloud()
            uploader(s, cloud).upload_once()
            ids.append(cloud.calls[0][0])
    assert ids[0] == ids[1]
    one = [{"x": 1}, {"y": 2}]
    assert batch_id(False, one) == batch_id(False, one[::-1])
    assert batch_id(False, one) != batch_id(True, one)
    assert batch_id(False, one) != batch_id(False, [{"x": 2}, {"y": 2}])


def test_a_crash_between_send_and_mark_re_sends_the_same_batch_id(
    store: EdgeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    cloud = FakeCloud()
    store.record([edge(), edge(target=S3)])

    def crash(*_: object) -> None:
        raise KeyboardInterrupt  # the process dies after the cloud stored the batch

    monkeypatch.setattr(store, "mark_uploaded", crash)
    with pytest.raises(KeyboardInterrupt):
        uploader(store, cloud).upload_once()
    monkeypatch.undo()
    result = uploader(store, cloud).upload_once()  # the restarted mapper
    assert (result.batches, result.duplicates) == (1, 1)
    assert cloud.calls[0][0] == cloud.calls[1][0] and len(cloud.stored) == 1
    assert uploader(store, cloud).upload_once().batches == 0


# ------------------------------------------------------------------ failures


def test_retries_within_a_cycle_and_one_warning_per_outage(
    store: EdgeStore, caplog: pytest.LogCaptureFixture
) -> None:
    cloud = FakeCloud()
    cloud.failures = [CloudUnavailable("refused"), CloudUnavailable("refused")]
    store.record([edge()])
    with caplog.at_level(logging.INFO, logger="agent.mapper.uploader"):
        result = uploader(store, cloud, retry_attempts=3).upload_once()
    assert result.batches == 1 and len(cloud.calls) == 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "refused" in warnings[0].getMessage()
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    assert any("edges=1 stored" in r.getMessage() for r in caplog.records)


def test_an_outage_leaves_the_cursor_and_loses_nothing(store: EdgeStore) -> None:
    cloud = FakeCloud()
    store.record([edge()])
    up = uploader(store, cloud, retry_attempts=2)
    cloud.failures = [CloudUnavailable("down")] * 4
    for _ in range(2):
        with pytest.raises(CloudUnavailable):
            up.upload_once()
    assert store.upload_cursor() == 0 and not cloud.stored
    store.record([edge(target=REDIS)])
    assert up.upload_once().edges == 2
    assert len(cloud.stored) == 1 and store.upload_cursor() == 2


def test_a_rejected_batch_is_not_retried_within_the_cycle(store: EdgeStore) -> None:
    cloud = FakeCloud()
    cloud.failures = [CloudRejected(401, "bad token")]
    store.record([edge()])
    with pytest.raises(CloudRejected):
        uploader(store, cloud, retry_attempts=5).upload_once()
    assert len(cloud.calls) == 1 and store.upload_cursor() == 0


def test_anonymized_batches_carry_no_names(store: EdgeStore) -> None:
    cloud = FakeCloud()
    store.record([edge(target_service="cartservice"), edge(target=S3), edge(target=GOOGLE)])
    uploader(store, cloud, anonymizer=Anonymizer(b"k" * 32)).upload_once()
    _, anonymized, edges = cloud.calls[0]
    assert anonymized
    text = repr(edges)
    for name in ("shop", "frontend", "cartservice", "orders", "google"):
        assert name not in text
    assert "Deployment" in text and "142.250.1.1" in text


def test_the_thread_uploads_every_interval_and_stops(store: EdgeStore) -> None:
    cloud = FakeCloud()
    store.record([edge()])
    up = uploader(store, cloud, interval=0.05).start()
    try:
        deadline = time.monotonic() + 5
        while not cloud.stored and time.monotonic() < deadline:
            time.sleep(0.01)
        store.record([edge(target=REDIS)])
        while len(cloud.stored) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(cloud.stored) == 2
    finally:
        up.stop()
    assert up._thread is None
