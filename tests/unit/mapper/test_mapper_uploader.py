"""The uploader and its ledger: what is selected (new, changed details, live or not now and
when last sent), batch sizes, deterministic batch ids (a crash between send and mark re-sends
the same id), retries within a cycle, the cursor across failures. Liveness: hours of simulated
traffic on an injected clock (a steady edge is sent once, then only heartbeats; an edge that goes
quiet is sent once more, not live, with its true last_seen, before any heartbeat that could vouch
for it; one that comes back is re-sent live), restarts, crashes between sending and marking, and a
reset. The cloud is a fake :class:`CloudClient` (no I/O) that checks every heartbeat against the
store. Older store files: test_mapper_store_migration.py."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from agent import wire
from agent.anonymize import Anonymizer
from agent.mapper.store import EdgeStore
from agent.mapper.uploader import (
    MAX_BATCH,
    CloudRejected,
    CloudUnavailable,
    IngestResult,
    Uploader,
    batch_id,
    digest,
)
from agent.mapper.uploadledger import UploadKey, UploadLedger
from agent.model import AwsTarget, Edge, HttpResource, InternetTarget, Method, MethodSeen, WorkloadIdentity

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


class Call(NamedTuple):
    batch_id: str
    anonymized: bool
    edges: list[wire.EdgeDoc]
    seen_at: float | None


class FakeCloud:
    """Records requests; dedups batches by id like the cloud; can fail the next N calls.

    With a ``store``, it also keeps each edge's ``live`` flag (the last one stored) and checks
    every heartbeat against the store: each edge it holds live must have been seen within
    ``granularity`` before ``seenAt`` (else the heartbeat raises, failing the cycle)."""

    def __init__(self, store: EdgeStore | None = None, granularity: float = HOUR) -> None:
        self.calls: list[Call] = []
        self.stored: set[str] = set()
        self.failures: list[Exception] = []
        self.live: dict[UploadKey, bool] = {}
        self.lock = threading.Lock()
        self.store, self.granularity = store, granularity

    def ingest(
        self, batch_id: str, anonymized: bool, edges: list[wire.EdgeDoc], seen_at: float | None = None
    ) -> IngestResult:
        with self.lock:
            self.calls.append(Call(batch_id, anonymized, edges, seen_at))
            if self.failures:
                raise self.failures.pop(0)
            if seen_at is not None:
                assert not edges and batch_id.startswith("heartbeat-")
                self.check_heartbeat(seen_at)
                return IngestResult(True, 0)
            stored = batch_id not in self.stored
            self.stored.add(batch_id)
            if stored:
                for doc in edges:
                    self.live[wire.from_doc(doc).key] = doc.live
            return IngestResult(stored, len(edges) if stored else 0)

    def check_heartbeat(self, seen_at: float) -> None:
        if self.store is None:
            return
        truth = {e.key: e.last_seen for e in self.store.edges()}
        stale = [
            k
            for k, live in self.live.items()
            if live and (k not in truth or seen_at - truth[k] >= self.granularity)
        ]
        assert not stale, f"heartbeat {seen_at - T0} vouches for edges not seen within granularity: {stale}"

    @property
    def batches(self) -> list[Call]:
        """The edge batches (not the heartbeats)."""
        return [c for c in self.calls if c.seen_at is None]

    @property
    def heartbeats(self) -> list[float]:
        return [c.seen_at for c in self.calls if c.seen_at is not None]

    def sent_keys(self, call: int = -1) -> set[tuple[object, object]]:
        return {wire.from_doc(e).key for e in self.batches[call].edges}

    def sent(self) -> dict[UploadKey, list[tuple[float, bool]]]:
        """Per edge key, every ``(lastSeen - T0, live)`` sent, in order."""
        found: dict[UploadKey, list[tuple[float, bool]]] = {}
        for call in self.batches:
            for doc in call.edges:
                found.setdefault(wire.from_doc(doc).key, []).append((doc.lastSeen.timestamp() - T0, doc.live))
        return found


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EdgeStore]:
    with EdgeStore.in_dir(tmp_path) as s:
        yield s


def uploader(store: EdgeStore, cloud: FakeCloud, **kw: Any) -> Uploader:
    kw.setdefault("retry_initial", 0.001)
    kw.setdefault("retry_max", 0.002)
    kw.setdefault("clock", lambda: T0)  # edges recorded at T0 are live
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
        assert UploadLedger(s).upload_cursor() == 0
        assert UploadLedger(s).upload_marks([(FRONTEND, CART)]) == {}
        UploadLedger(s).mark_uploaded(
            [((FRONTEND, CART), T0, "abc", True), ((FRONTEND, GOOGLE), T0, "d", False)], 2
        )
        UploadLedger(s).mark_uploaded([], 1)
        UploadLedger(s).mark_uploaded([((FRONTEND, GOOGLE), T0 + 1, "e", False)])  # no cursor: left as is
    with EdgeStore.in_dir(tmp_path) as s:
        assert UploadLedger(s).upload_cursor() == 2
        marks = UploadLedger(s).upload_marks([(FRONTEND, CART), (FRONTEND, GOOGLE), (CART, REDIS)])
        assert marks == {(FRONTEND, CART): (T0, "abc", True), (FRONTEND, GOOGLE): (T0 + 1, "e", False)}
        assert UploadLedger(s).has_live_uploads()


def test_gone_quiet_finds_edges_sent_live_and_last_seen_at_or_before_the_cutoff(store: EdgeStore) -> None:
    targets = [InternetTarget(f"h{i}.example.com", (), 443) for i in range(5)]
    store.record([edge(target=t, at=T0 + i) for i, t in enumerate(targets)])
    UploadLedger(store).mark_uploaded([((FRONTEND, t), T0, "d", i != 1) for i, t in enumerate(targets)], 5)
    store.record([edge(target=targets[0], at=T0 + 100)])  # seen again since it was sent
    quiet = UploadLedger(store).gone_quiet(T0 + 3, 10)
    assert [e.target for e in quiet] == [targets[2], targets[3]]  # not 0 (seen), 1 (not live), 4
    assert UploadLedger(store).gone_quiet(T0 + 3, 1) == quiet[:1]
    assert quiet[0] == edge(target=targets[2], at=T0 + 2)  # the edge as stored
    UploadLedger(store).mark_uploaded([((FRONTEND, targets[2]), T0 + 2, "d", False)])
    assert UploadLedger(store).gone_quiet(T0 + 3, 10) == quiet[1:]


def test_reset_forgets_marks_but_seq_keeps_counting(store: EdgeStore) -> None:
    store.record([edge()])
    UploadLedger(store).mark_uploaded([((FRONTEND, CART), T0, "abc", False)], 1)
    store.reset()
    store.record([edge()])
    assert [s for s, _ in store.changed_since(UploadLedger(store).upload_cursor(), 10)] == [2]
    assert UploadLedger(store).upload_marks([(FRONTEND, CART)]) == {}
    assert not UploadLedger(store).has_live_uploads()


def test_reset_keeps_live_marks_until_they_are_sent_quiet_from_their_key(store: EdgeStore) -> None:
    store.record([edge(target=GOOGLE, at=T0 + 50, target_service="x"), edge(target=S3)])
    UploadLedger(store).mark_uploaded(
        [((FRONTEND, GOOGLE), T0, "abc", True), ((FRONTEND, S3), T0, "d", False)], 2
    )
    store.reset()
    assert store.edges() == [] and UploadLedger(store).has_live_uploads()
    assert UploadLedger(store).upload_marks([(FRONTEND, S3)]) == {}
    # Any cutoff: the edge is gone. Its key and latest last_seen, nothing else.
    forgotten = Edge(FRONTEND, GOOGLE, T0 + 50, T0 + 50, frozenset(), ambiguous=True)
    assert UploadLedger(store).gone_quiet(T0 - HOUR, 10) == [forgotten]
    UploadLedger(store).mark_uploaded([((FRONTEND, GOOGLE), T0 + 50, digest(forgotten), False)])
    assert UploadLedger(store).gone_quiet(T0, 10) == [] and not UploadLedger(store).has_live_uploads()


# ------------------------------------------------------------------ selection


def test_new_edges_are_sent_once(store: EdgeStore) -> None:
    cloud = FakeCloud()
    store.record([edge(), edge(target=GOOGLE), edge(client=CART, target=REDIS)])
    up = uploader(store, cloud)
    result = up.upload_once()
    assert (result.batches, result.edges, result.duplicates) == (1, 3, 0)
    assert cloud.sent_keys() == {(FRONTEND, CART), (FRONTEND, GOOGLE), (CART, REDIS)}
    assert up.upload_once().batches == 0
    assert len(cloud.batches) == 1 and cloud.heartbeats == [T0]  # the first cycle's


def test_changed_details_are_re_sent_with_the_cumulative_state(store: EdgeStore) -> None:
    cloud = FakeCloud()
    store.record([edge(count=3)])
    up = uploader(store, cloud)
    up.upload_once()
    store.record(
        [edge(at=T0 + 1, methods=frozenset({Method.ISTIO}), http=(HttpResource("/cart", ("GET",)),))]
    )
    assert up.upload_once().batches == 1
    sent = wire.from_doc(cloud.batches[-1].edges[0])
    assert sent.methods == {Method.TCP, Method.ISTIO}
    assert sent.http == (HttpResource("/cart", ("GET",)),)
    assert sent.count == 4 and sent.last_seen == T0 + 1


def test_wanted_compares_the_digest_not_the_count_or_times() -> None:
    up = Uploader.__new__(Uploader)
    up.granularity = HOUR
    base = edge()
    now = T0 + 10
    assert up.wanted(base, None, now)
    assert not up.wanted(edge(at=T0 + 5, count=9), (T0, digest(base), True), now)
    assert up.wanted(edge(target_service="cart"), (T0, digest(base), True), now)
    assert up.wanted(edge(ambiguous=True), (T0, digest(base), True), now)
    # Per-method times and counts are sightings too: a new one re-sends nothing.
    seen = dataclasses.replace(base, provenance=(MethodSeen(Method.TCP, T0, T0, 1),))
    again = dataclasses.replace(base, provenance=(MethodSeen(Method.TCP, T0, T0 + 5, 9),))
    assert digest(seen) == digest(again)


def test_wanted_by_liveness_now_and_when_last_sent() -> None:
    up = Uploader.__new__(Uploader)
    up.granularity = HOUR
    d = digest(edge())
    now = T0 + 3 * HOUR
    live, quiet = edge(at=now - HOUR + 1), edge(at=now - HOUR)  # live: seen less than 1 h ago
    assert up.is_live(live, now) and not up.is_live(quiet, now)
    assert not up.wanted(live, (T0, d, True), now)  # the heartbeat keeps it current
    assert up.wanted(live, (T0, d, False), now)  # it came back
    assert up.wanted(quiet, (T0, d, True), now)  # it went quiet
    assert up.wanted(quiet, (T0, d, False), now)  # seen since it was sent (quiet)
    assert not up.wanted(quiet, (quiet.last_seen, d, False), now)  # nothing new


def test_batches_hold_at_most_batch_size_edges(store: EdgeStore) -> None:
    cloud = FakeCloud()
    store.record([edge(target=InternetTarget(f"h{i}.example.com", (), 443)) for i in range(1200)])
    result = uploader(store, cloud).upload_once()
    assert [len(c.edges) for c in cloud.batches] == [MAX_BATCH, MAX_BATCH, 200]
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
            ids.append(cloud.batches[0].batch_id)
    assert ids[0] == ids[1]
    one = [{"x": 1}, {"y": 2}]
    assert batch_id(False, one) == batch_id(False, one[::-1])
    assert batch_id(False, one) != batch_id(True, one)
    assert batch_id(False, one) != batch_id(False, [{"x": 2}, {"y": 2}])
    assert batch_id(False, [{"x": 1, "live": True}]) != batch_id(False, [{"x": 1, "live": False}])


def test_a_crash_between_send_and_mark_re_sends_the_same_batch_id(
    store: EdgeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    cloud = FakeCloud()
    store.record([edge(), edge(target=S3)])

    def crash(*_: object) -> None:
        raise KeyboardInterrupt  # the process dies after the cloud stored the batch

    crashing = uploader(store, cloud)
    monkeypatch.setattr(crashing.ledger, "mark_uploaded", crash)
    with pytest.raises(KeyboardInterrupt):
        crashing.upload_once()
    monkeypatch.undo()
    result = uploader(store, cloud).upload_once()  # the restarted mapper
    assert (result.batches, result.duplicates) == (1, 1)
    assert cloud.batches[0].batch_id == cloud.batches[1].batch_id and len(cloud.stored) == 1
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
    assert result.batches == 1 and len(cloud.batches) == 3
    assert result.heartbeats == 1 and len(cloud.calls) == 4
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
    assert UploadLedger(store).upload_cursor() == 0 and not cloud.stored
    store.record([edge(target=REDIS)])
    assert up.upload_once().edges == 2
    assert len(cloud.stored) == 1 and UploadLedger(store).upload_cursor() == 2


def test_a_rejected_batch_is_not_retried_within_the_cycle(store: EdgeStore) -> None:
    cloud = FakeCloud()
    cloud.failures = [CloudRejected(401, "bad token")]
    store.record([edge()])
    with pytest.raises(CloudRejected):
        uploader(store, cloud, retry_attempts=5).upload_once()
    assert len(cloud.calls) == 1 and UploadLedger(store).upload_cursor() == 0


def test_anonymized_batches_carry_no_names(store: EdgeStore) -> None:
    cloud = FakeCloud()
    store.record([edge(target_service="cartservice"), edge(target=S3), edge(target=GOOGLE)])
    uploader(store, cloud, anonymizer=Anonymizer(b"k" * 32)).upload_once()
    _, anonymized, edges, _ = cloud.calls[0]
    assert anonymized and cloud.calls[1].anonymized  # the heartbeat too
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


# ------------------------------------------------------------------ liveness and heartbeats

MINUTE = 60.0


def crash(*_: object, **__: object) -> None:
    raise KeyboardInterrupt  # the process dies


def simulate(
    store: EdgeStore, up: Uploader, clock: Clock, minutes: range, seen: dict[str, list[Edge]] | None = None
) -> None:
    """Each simulated minute: record what ``seen`` holds for it (by minute), then one cycle."""
    for minute in minutes:
        clock.now = T0 + minute * MINUTE
        edges = (seen or {}).get(str(minute), [])
        if edges:
            store.record(edges)
        up.upload_once()


def steady(*targets: object, minutes: range) -> dict[str, list[Edge]]:
    return {str(m): [edge(target=t, at=T0 + m * MINUTE) for t in targets] for m in minutes}


def test_a_steady_edge_is_sent_once_then_only_heartbeats_keep_it_current(store: EdgeStore) -> None:
    clock = Clock()
    cloud = FakeCloud(store)
    up = uploader(store, cloud, clock=clock, granularity=HOUR)
    simulate(store, up, clock, range(3 * 60 + 1), steady(CART, minutes=range(3 * 60 + 1)))
    assert cloud.sent() == {(FRONTEND, CART): [(0, True)]}  # one edge write in three hours
    assert [h - T0 for h in cloud.heartbeats] == [0, HOUR, 2 * HOUR, 3 * HOUR]
    assert [c.batch_id for c in cloud.calls[1:]] == [
        "heartbeat-2026-05-28T20:26:40Z",
        "heartbeat-2026-05-28T21:26:40Z",
        "heartbeat-2026-05-28T22:26:40Z",
        "heartbeat-2026-05-28T23:26:40Z",
    ]


def test_an_edge_that_goes_quiet_is_sent_once_not_live_and_when_it_comes_back_live(
    store: EdgeStore,
) -> None:
    clock = Clock()
    cloud = FakeCloud(store)
    up = uploader(store, cloud, clock=clock, granularity=HOUR)
    seen = steady(CART, minutes=range(11)) | steady(CART, minutes=range(180, 181))
    results = []
    for minute in range(241):
        clock.now = T0 + minute * MINUTE
        if str(minute) in seen:
            store.record(seen[str(minute)])
        results.append(up.upload_once())
    # live at 0; quiet with its true last_seen (minute 10) an hour after it; back at 180; quiet at 240
    assert cloud.sent() == {(FRONTEND, CART): [(0, True), (600, False), (10800, True), (10800, False)]}
    assert [r.quiet for r in results].count(1) == 2 and results[70].quiet == 1
    assert results[240].quiet == 1
    # a heartbeat only while the cloud holds it live: 0, 60 (it was seen at 10), 180 (it came back)
    assert [h - T0 for h in cloud.heartbeats] == [0, HOUR, 3 * HOUR]
    assert cloud.live == {(FRONTEND, CART): False}


def test_no_heartbeat_comes_before_the_idle_marking_it_would_contradict(store: EdgeStore) -> None:
    """At minute 60 redis (seen at 0 only) goes quiet and a heartbeat is due: the quiet batch first."""
    clock = Clock()
    cloud = FakeCloud(store)  # raises on a heartbeat vouching for an edge it holds live wrongly
    up = uploader(store, cloud, clock=clock, granularity=HOUR)
    seen = steady(CART, minutes=range(61))
    seen["0"].append(edge(target=REDIS))
    simulate(store, up, clock, range(61), seen)
    calls = [(c.seen_at is not None, c.seen_at or wire.from_doc(c.edges[0]).target) for c in cloud.calls]
    assert calls == [(False, CART), (True, T0), (False, REDIS), (True, T0 + HOUR)]
    assert cloud.sent()[(FRONTEND, REDIS)] == [(0, True), (0, False)]


def test_hours_of_mixed_traffic_send_only_what_changed_and_keep_the_heartbeat_honest(
    store: EdgeStore,
) -> None:
    clock = Clock()
    cloud = FakeCloud(store)
    up = uploader(store, cloud, clock=clock, granularity=HOUR)
    seen: dict[str, list[Edge]] = {}
    for minute in range(301):
        at = T0 + minute * MINUTE
        now = [edge(target=CART, at=at)]  # steady
        if minute <= 30:
            now.append(edge(target=REDIS, at=at))  # stops after half an hour
        if minute % 90 == 0:
            now.append(edge(target=S3, at=at))  # every 90 minutes: longer than the granularity
        if minute >= 120:  # appears at 2 h, with a new method from 2.5 h
            methods = {Method.TCP, Method.ISTIO} if minute >= 150 else {Method.TCP}
            now.append(edge(target=GOOGLE, at=at, methods=frozenset(methods)))
        seen[str(minute)] = now
    simulate(store, up, clock, range(301), seen)
    assert cloud.sent() == {
        (FRONTEND, CART): [(0, True)],
        (FRONTEND, REDIS): [(0, True), (1800, False)],
        (FRONTEND, S3): [
            (0, True),
            (0, False),
            (5400, True),
            (5400, False),
            (10800, True),
            (10800, False),
            (16200, True),
        ],
        (FRONTEND, GOOGLE): [(7200, True), (9000, True)],
    }
    assert [h - T0 for h in cloud.heartbeats] == [0, HOUR, 2 * HOUR, 3 * HOUR, 4 * HOUR, 5 * HOUR]
    # As the cloud reads it, every edge's last_seen is within the granularity of the truth.
    heartbeat = cloud.heartbeats[-1]
    for key, sent in cloud.sent().items():
        last, live = T0 + sent[-1][0], sent[-1][1]
        read = max(last, heartbeat) if live else last
        truth = {e.key: e.last_seen for e in store.edges()}[key]
        assert abs(read - truth) < HOUR, key


def test_a_restart_keeps_the_marks_and_sends_a_heartbeat_right_away(tmp_path: Path) -> None:
    clock = Clock()
    with EdgeStore.in_dir(tmp_path) as store:
        cloud = FakeCloud(store)
        simulate(
            store, uploader(store, cloud, clock=clock), clock, range(10), steady(CART, minutes=range(10))
        )
    with EdgeStore.in_dir(tmp_path) as store:
        cloud.store = store
        up = uploader(store, cloud, clock=clock)
        simulate(store, up, clock, range(10, 71), steady(CART, minutes=range(10, 71)))
        assert cloud.sent() == {(FRONTEND, CART): [(0, True)]}  # no re-send after the restart
        assert [h - T0 for h in cloud.heartbeats] == [0, 10 * MINUTE, 10 * MINUTE + HOUR]


def test_a_crash_after_sending_an_edge_quiet_then_its_return_re_sends_it_live(
    store: EdgeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    cloud = FakeCloud(store)
    store.record([edge()])
    uploader(store, cloud, clock=clock).upload_once()
    clock.now = T0 + HOUR
    crashing = uploader(store, cloud, clock=clock)
    monkeypatch.setattr(crashing.ledger, "mark_uploaded", crash)  # after the cloud stored the quiet batch
    with pytest.raises(KeyboardInterrupt):
        crashing.upload_once()
    monkeypatch.undo()
    assert cloud.live == {(FRONTEND, CART): False}
    assert UploadLedger(store).upload_marks([(FRONTEND, CART)])[(FRONTEND, CART)][2] is False  # maybe live
    clock.now = T0 + HOUR + MINUTE
    store.record([edge(at=clock.now)])  # it came back while the mapper was down
    result = uploader(store, cloud, clock=clock).upload_once()  # the restarted mapper
    assert cloud.sent() == {(FRONTEND, CART): [(0, True), (0, False), (HOUR + MINUTE, True)]}
    assert cloud.live == {(FRONTEND, CART): True} and result.heartbeats == 1


def test_a_crash_after_sending_an_edge_quiet_re_sends_the_same_batch_if_still_quiet(
    store: EdgeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    cloud = FakeCloud(store)
    store.record([edge()])
    uploader(store, cloud, clock=clock).upload_once()
    clock.now = T0 + HOUR
    crashing = uploader(store, cloud, clock=clock)
    monkeypatch.setattr(crashing.ledger, "mark_uploaded", crash)
    with pytest.raises(KeyboardInterrupt):
        crashing.upload_once()
    monkeypatch.undo()
    clock.now = T0 + 2 * HOUR
    result = uploader(store, cloud, clock=clock).upload_once()
    assert (result.batches, result.duplicates, result.quiet, result.heartbeats) == (1, 1, 1, 0)
    assert cloud.batches[1].batch_id == cloud.batches[2].batch_id
    assert not UploadLedger(store).has_live_uploads() and UploadLedger(store).gone_quiet(clock.now, 10) == []


def test_a_reset_sends_the_forgotten_live_edges_quiet_before_any_heartbeat(store: EdgeStore) -> None:
    clock = Clock()
    cloud = FakeCloud(store)  # a heartbeat vouching for an edge not in the store fails
    up = uploader(store, cloud, clock=clock)
    store.record([edge(), edge(target=GOOGLE, target_service="www")])
    up.upload_once()
    clock.now = T0 + 5 * MINUTE
    store.record([edge(at=clock.now)])
    store.reset()
    store.record([edge(target=REDIS, at=clock.now)])
    result = up.upload_once()
    assert (result.quiet, result.edges) == (2, 3)
    sent = cloud.sent()
    assert sent[(FRONTEND, CART)] == [(0, True), (5 * MINUTE, False)]  # its latest last_seen
    assert sent[(FRONTEND, GOOGLE)] == [(0, True), (0, False)]
    assert sent[(FRONTEND, REDIS)] == [(5 * MINUTE, True)]
    forgotten = wire.from_doc(cloud.batches[1].edges[0])
    assert (forgotten.methods, forgotten.count, forgotten.ambiguous) == (frozenset(), 1, True)
    simulate(store, up, clock, range(6, 66), steady(REDIS, minutes=range(6, 66)))
    assert [h - T0 for h in cloud.heartbeats] == [0, HOUR]


def test_no_heartbeat_without_live_edges(store: EdgeStore) -> None:
    cloud = FakeCloud(store)
    store.record([edge(at=T0 - 2 * HOUR)])  # e.g. reported late, or after a long outage
    result = uploader(store, cloud).upload_once()
    assert cloud.sent() == {(FRONTEND, CART): [(-2 * HOUR, False)]}
    assert (result.heartbeats, cloud.heartbeats) == (0, [])


def test_a_failed_heartbeat_fails_the_cycle_and_goes_out_with_the_next(store: EdgeStore) -> None:
    clock = Clock()
    cloud = FakeCloud(store)
    up = uploader(store, cloud, clock=clock, retry_attempts=2)
    simulate(store, up, clock, range(60), steady(CART, minutes=range(60)))
    clock.now = T0 + HOUR
    cloud.failures = [CloudUnavailable("down"), CloudUnavailable("down")]
    with pytest.raises(CloudUnavailable):
        up.upload_once()
    assert cloud.heartbeats == [T0, T0 + HOUR, T0 + HOUR]  # two attempts
    clock.now = T0 + HOUR + MINUTE
    assert up.upload_once().heartbeats == 1
    assert cloud.heartbeats[-1] == T0 + HOUR + MINUTE
    assert up.upload_once().heartbeats == 0


def test_the_idle_sweep_sends_at_most_batch_size_edges_per_batch(store: EdgeStore) -> None:
    clock = Clock()
    cloud = FakeCloud(store)
    store.record([edge(target=InternetTarget(f"h{i}.example.com", (), 443)) for i in range(1200)])
    up = uploader(store, cloud, clock=clock)
    up.upload_once()
    clock.now = T0 + HOUR
    result = up.upload_once()
    assert [len(c.edges) for c in cloud.batches] == [500, 500, 200, 500, 500, 200]
    assert (result.batches, result.quiet, result.heartbeats) == (3, 1200, 0)
    assert not any(d.live for c in cloud.batches[3:] for d in c.edges)
