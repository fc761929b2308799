"""The report queue and its workers (agent.mapper.api.reportqueue) and the document caps (.limits)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

import pytest
from graphql import get_introspection_query, parse

from agent.mapper.api.limits import MAX_DEPTH, MAX_FIELDS, DocumentTooComplex, check_document
from agent.mapper.api.reportqueue import Busy, ReportQueue
from agent.model import Edge, Observation, TcpConnection, WorkloadIdentity

A, B = WorkloadIdentity("ns", "a", "Deployment"), WorkloadIdentity("ns", "b", "Deployment")


def obs(i: int, server: str = "10.0.0.2") -> TcpConnection:
    return TcpConnection("10.0.0.1", 0, server, i, float(i))


class Resolver:
    """Edges a→b for every observation; raises for server "boom"; blocks while ``gate`` is clear."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def resolve(self, o: Observation) -> list[Edge]:
        self.entered.set()
        assert self.gate.wait(10)
        assert isinstance(o, TcpConnection)
        if o.server_ip == "boom":
            raise RuntimeError("bad observation")
        return [Edge(A, B, o.seen_at, o.seen_at)]


class Sink:
    def __init__(self) -> None:
        self.calls: list[list[Edge]] = []
        self.fail = False

    def record(self, edges: Iterable[Edge]) -> int:
        if self.fail:
            raise OSError("disk full")
        self.calls.append(list(edges))
        return len(self.calls[-1])


@pytest.fixture
def parts() -> Iterable[tuple[ReportQueue, Resolver, Sink]]:
    resolver, sink = Resolver(), Sink()
    ingest = ReportQueue(resolver, sink, max_batches=2)
    ingest.start()
    yield ingest, resolver, sink
    resolver.gate.set()
    ingest.stop(5)


def test_batches_queued_together_are_recorded_in_one_call(parts: tuple[ReportQueue, Resolver, Sink]) -> None:
    """Group commit: a report waits for its commit, so the batches queued behind the one being
    resolved share the next transaction, and each still learns its own edge count."""
    ingest, resolver, sink = parts
    resolver.gate.clear()
    first = ingest.submit([obs(1), obs(2), obs(3)])
    assert resolver.entered.wait(5)  # the worker holds batch 1 alone
    second, third = ingest.submit([obs(4)]), ingest.submit([obs(5), obs(6)])
    assert ingest.submit([]).result(0) == 0  # nothing to do: not queued
    resolver.gate.set()
    assert ingest.drain(5)
    assert [len(c) for c in sink.calls] == [3, 3]
    assert (first.result(5), second.result(5), third.result(5)) == (3, 1, 2)
    assert ingest.stats.batches_accepted == 3 and ingest.stats.observations_accepted == 6
    assert ingest.stats.edges_recorded == 6 and ingest.stats.batches_done == 3


def test_full_queue_refuses_and_keeps_what_it_accepted(parts: tuple[ReportQueue, Resolver, Sink]) -> None:
    ingest, resolver, sink = parts
    resolver.gate.clear()
    ingest.submit([obs(1)])
    assert resolver.entered.wait(5)  # the worker holds batch 1
    ingest.submit([obs(2)])
    ingest.submit([obs(3)])  # the queue (2 batches) is now full
    with pytest.raises(Busy, match="mapper busy, retry"):
        ingest.submit([obs(4)])
    assert ingest.stats.batches_refused == 1
    assert not ingest.drain(0.05)
    resolver.gate.set()
    assert ingest.drain(5)
    assert sorted(e.first_seen for c in sink.calls for e in c) == [1.0, 2.0, 3.0]


def test_failures_are_logged_once_per_batch_and_the_worker_survives(
    parts: tuple[ReportQueue, Resolver, Sink], caplog: pytest.LogCaptureFixture
) -> None:
    ingest, _, sink = parts
    caplog.set_level(logging.ERROR, "agent.mapper.api.reportqueue")
    ingest.submit([obs(1, "boom"), obs(2), obs(3, "boom")])
    assert ingest.drain(5)
    assert [len(c) for c in sink.calls] == [1]  # the good observation of the batch is kept
    sink.fail = True
    ingest.submit([obs(4), obs(5)])
    assert ingest.drain(5)
    sink.fail = False
    ingest.submit([obs(6)])
    assert ingest.drain(5)
    assert [len(c) for c in sink.calls] == [1, 1]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "resolve failed batch_size=3 failed=2" in messages[0] and "bad observation" in messages[0]
    assert "record failed batches=1 batch_size=2 edges=2" in messages[1] and "disk full" in messages[1]
    assert ingest.stats.resolve_errors == 2 and ingest.stats.record_errors == 1


def test_stop_drains_then_stops_workers() -> None:
    resolver, sink = Resolver(), Sink()
    ingest = ReportQueue(resolver, sink, max_batches=4, workers=2)
    ingest.start()
    ingest.start()  # idempotent
    for i in range(4):
        ingest.submit([obs(i)])
    assert ingest.stop(5)
    assert sum(len(c) for c in sink.calls) == 4  # batches queued together share a call
    assert not any(t.name.startswith("mapper-reports") for t in threading.enumerate())


def test_drain_times_out() -> None:
    resolver, sink = Resolver(), Sink()
    resolver.gate.clear()
    ingest = ReportQueue(resolver, sink, max_batches=1)
    ingest.start()
    ingest.submit([obs(1)])
    started = time.monotonic()
    assert not ingest.drain(0.2)
    assert 0.15 < time.monotonic() - started < 2
    resolver.gate.set()
    assert ingest.stop(5)


def test_bad_sizes() -> None:
    with pytest.raises(ValueError, match="max_batches"):
        ReportQueue(Resolver(), Sink(), max_batches=0)


# --------------------------------------------------------------------------- document caps


def test_the_introspection_query_fits() -> None:
    check_document(parse(get_introspection_query()))


def test_deep_documents_are_refused() -> None:
    deep = "{ " + "a { " * (MAX_DEPTH + 1) + "b" + " }" * (MAX_DEPTH + 1) + " }"
    with pytest.raises(DocumentTooComplex, match="deeper"):
        check_document(parse(deep))


def test_fragment_fan_out_is_counted_expanded() -> None:
    # 3 levels of 20 spreads of a 20-field fragment: 8,000 fields from a tiny document
    doc = (
        "query { health ...F3 } "
        "fragment F3 on Query { " + " ".join(f"a{i}: intents {{ ...F2 }}" for i in range(5)) + " } "
        "fragment F2 on Intent { " + " ".join(f"c{i}: client {{ ...F1 }}" for i in range(20)) + " } "
        "fragment F1 on OtterizeServiceIdentity { " + " ".join(f"n{i}: name" for i in range(20)) + " }"
    )
    with pytest.raises(DocumentTooComplex, match=str(MAX_FIELDS)):
        check_document(parse(doc))


def test_many_root_fields_are_refused() -> None:
    with pytest.raises(DocumentTooComplex, match="top-level"):
        check_document(parse("{ " + " ".join(f"a{i}: intents {{ type }}" for i in range(50)) + " }"))


def test_reads_of_the_map_cost_more_counted_through_fragments() -> None:
    """Issue 11, defect 4: hundreds of aliased full reads hidden in an inline fragment."""
    reads = " ".join(f"a{i}: edges {{ count }}" for i in range(5))
    for doc in ("{ ... on Query { " + reads + " } }", "{ ...F } fragment F on Query { " + reads + " }"):
        with pytest.raises(DocumentTooComplex, match="costs more than 400"):
            check_document(parse(doc))
    check_document(parse("{ ... on Query { a: edges { count } b: edges { count } c: health } }"))


def test_fragment_cycles_are_left_to_validation() -> None:
    check_document(parse("{ ...A } fragment A on Query { ...B } fragment B on Query { ...A health }"))
