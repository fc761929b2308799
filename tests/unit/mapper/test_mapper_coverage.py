"""Coverage: the state (agent.mapper.coverage) with a hand-driven clock, and the API (the real app
in this process over a real Resolver and ClusterState): producers' status reports through the real
StatusReporter and HttpMapperClient, the sniffer reports' node, the coverage query, unresolved IPs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from agent.mapper.api import create_app
from agent.mapper.cluster import ClusterState
from agent.mapper.coverage import MAPPER, Coverage
from agent.mapper.resolver import Resolver
from agent.mapper.settings import ApiSettings
from agent.mapperclient import GraphQLErrors, HttpMapperClient, MapperRejected
from agent.model import Method, TcpConnection
from agent.pending import Batch
from agent.sniffer.pairs import PairKey, Seen
from agent.sniffer.reports import mutations_for
from agent.statusreport import StatusReporter
from tests.support.mapper_app import NoEdges
from tests.support.transports import AsgiTransport

TOKEN = "cov-token"
URL = "http://mapper.in-process:9090/query"
T0 = 1_780_000_000.0
COVERAGE = (
    "{ coverage { covered staleAfterSeconds nodes { name covered sniffers lastReport } components"
    " { component instance node watching counters { name value } lastReport silent }"
    " observationsReceived observationsResolved drops { reason source count explanation }"
    " unexplainedDrops unresolvedIps { ip count lastSeen } } }"
)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def test_a_node_is_covered_while_its_sniffer_reports_and_uncovered_once_stale() -> None:
    clock = Clock()
    coverage = Coverage(90, nodes=lambda: ["node-1", "node-2"], clock=clock)
    coverage.status("sniffer", "sniffer-a", "node-1", ["capture"], [("queue_full", 0)])
    coverage.status("sniffer", "sniffer-b", "node-2", ["capture"], [])
    assert coverage.document()["covered"] is True
    clock.now += 60
    coverage.status("sniffer", "sniffer-a", "node-1", ["capture"], [])
    clock.now += 31  # sniffer-b's last report is 91 s old
    doc = coverage.document()
    assert doc["covered"] is False
    assert {n["name"]: n["covered"] for n in doc["nodes"]} == {"node-1": True, "node-2": False}
    assert [(c["instance"], c["silent"]) for c in doc["components"]] == [
        ("sniffer-a", False),
        ("sniffer-b", True),
    ]


def test_a_node_without_any_sniffer_is_uncovered_and_no_node_known_is_not_covered() -> None:
    coverage = Coverage(90, nodes=lambda: ["node-1"], clock=Clock())
    doc = coverage.document()
    assert doc["nodes"] == [{"name": "node-1", "covered": False, "sniffers": [], "lastReport": None}]
    assert doc["covered"] is False
    assert Coverage(90, clock=Clock()).document()["covered"] is False


def test_a_replaced_pod_is_forgotten_once_its_successor_reports() -> None:
    clock = Clock()
    coverage = Coverage(90, nodes=lambda: ["node-1"], clock=clock)
    coverage.status("sniffer", "sniffer-old", "node-1", ["capture"], [])
    coverage.status("kafka-watcher", "kw-old", "", ["kafka/kafka-0"], [])
    clock.now += 200
    assert coverage.document()["covered"] is False  # both silent, node uncovered
    coverage.status("sniffer", "sniffer-new", "node-1", ["capture"], [])
    coverage.status("kafka-watcher", "kw-new", "", ["kafka/kafka-0"], [])
    doc = coverage.document()
    assert [c["instance"] for c in doc["components"]] == ["kw-new", "sniffer-new"]
    assert doc["covered"] is True


def test_drops_by_reason_and_source_with_unexplained_ones_counted() -> None:
    coverage = Coverage(
        90,
        dropped=lambda: {"client_unknown_ip": 3, "excluded_namespace": 0, "something_new": 2},
        skipped=lambda: {"bad_ip": 1},
        clock=Clock(),
    )
    coverage.status("sniffer", "s", "n", [], [("queue_full", 4), ("parse_errors", 0)])
    doc = coverage.document()
    assert [(d["reason"], d["source"], d["count"]) for d in doc["drops"]] == [
        ("bad_ip", MAPPER, 1),
        ("client_unknown_ip", MAPPER, 3),
        ("queue_full", "sniffer", 4),
        ("something_new", MAPPER, 2),
    ]
    assert doc["unexplainedDrops"] == 2


def test_unresolved_ips_are_bounded_and_shown_by_count() -> None:
    tracked, shown = Coverage(90, clock=Clock(), max_ips=3), Coverage(90, clock=Clock(), shown_ips=2)
    for coverage in (tracked, shown):
        for ip, times in (("10.0.0.1", 5), ("10.0.0.2", 1), ("10.0.0.3", 3)):
            for i in range(times):
                coverage.observed(0, ip, T0 + i)
        coverage.observed(0, "10.0.0.4", T0)  # over tracked's bound: its least seen (10.0.0.2) goes
        coverage.observed(1, "", T0)
    doc = tracked.document()
    assert [(u["ip"], u["count"]) for u in doc["unresolvedIps"]] == [
        ("10.0.0.1", 5),
        ("10.0.0.3", 3),
        ("10.0.0.4", 1),
    ]
    assert doc["unresolvedIps"][0]["lastSeen"] == "2026-05-28T20:26:44Z"
    assert (doc["observationsReceived"], doc["observationsResolved"]) == (11, 1)
    assert [u["ip"] for u in shown.document()["unresolvedIps"]] == ["10.0.0.1", "10.0.0.3"]


# ---------------------------------------------------------------- the API, in this process


@pytest.fixture
def api() -> Iterator[tuple[Coverage, AsgiTransport, Clock]]:
    clock = Clock()
    resolver = Resolver(ClusterState())
    coverage = Coverage(90, nodes=lambda: ["node-1", "node-2"], dropped=resolver.dropped, clock=clock)
    app = create_app(ApiSettings(token=TOKEN), NoEdges(), resolver, coverage=coverage)
    transport = AsgiTransport(app).start()
    transport.ingest = app.state.ingest  # type: ignore[attr-defined]
    yield coverage, transport, clock
    transport.close()


def test_status_reports_reach_the_coverage_query(api: tuple[Coverage, AsgiTransport, Clock]) -> None:
    _, transport, clock = api
    client = HttpMapperClient(URL, TOKEN, 5.0, transport)
    stopping = threading.Event()
    reporter = StatusReporter(
        client,
        component="sniffer",
        instance="sniffer-x1",
        node="node-1",
        watching=["capture:dns,tcp-syn"],
        counters=lambda: (("queue_full", 7),),
        interval=30,
        stopping=stopping,
    )
    assert reporter.report_once()
    # The sniffer on node-2 reports observations naming its node (no status yet).
    batch = Batch({PairKey(Method.TCP, "10.9.9.9", "10.9.9.10", 80): Seen(T0)})
    for mutation in mutations_for(batch, node="node-2"):
        client.execute(mutation.query, mutation.variables)
    data = client.execute(COVERAGE, {})["coverage"]
    assert {n["name"]: (n["covered"], n["sniffers"]) for n in data["nodes"]} == {
        "node-1": (True, ["sniffer-x1"]),
        "node-2": (True, []),
    }
    (component,) = data["components"]
    assert component["counters"] == [{"name": "queue_full", "value": 7}]
    assert component["watching"] == ["capture:dns,tcp-syn"]
    assert {"reason": "queue_full", "source": "sniffer", "count": 7} in [
        {k: d[k] for k in ("reason", "source", "count")} for d in data["drops"]
    ]
    assert data["covered"] is True
    clock.now += 91
    assert client.execute(COVERAGE, {})["coverage"]["covered"] is False


def test_an_unresolvable_client_is_counted_with_its_ip(api: tuple[Coverage, AsgiTransport, Clock]) -> None:
    coverage, transport, _ = api
    ingest: Any = transport.ingest  # type: ignore[attr-defined]
    done = ingest.submit([TcpConnection("10.1.2.3", 40000, "10.1.2.4", 80, T0)])
    done.result(10)
    doc = coverage.document()
    assert doc["observationsReceived"] == 1
    assert doc["observationsResolved"] == 0
    assert [u["ip"] for u in doc["unresolvedIps"]] == ["10.1.2.3"]
    assert any(d["reason"] == "client_unknown_ip" and d["explanation"] for d in doc["drops"])


def test_status_needs_the_token_and_a_known_component(api: tuple[Coverage, AsgiTransport, Clock]) -> None:
    _, transport, _ = api
    status = {"component": "sniffer", "instance": "i", "node": "", "watching": [], "counters": []}
    mutation = "mutation S($s: ComponentStatus!) { reportComponentStatus(status: $s) }"
    with pytest.raises(MapperRejected):
        HttpMapperClient(URL, "", 5.0, transport).execute(
            mutation, {"s": {**status, "seenAt": "2026-12-07T10:00:00Z"}}
        )
    with pytest.raises(GraphQLErrors, match="unknown component"):
        HttpMapperClient(URL, TOKEN, 5.0, transport).execute(
            mutation, {"s": {**status, "component": "nope", "seenAt": "2026-12-07T10:00:00Z"}}
        )
