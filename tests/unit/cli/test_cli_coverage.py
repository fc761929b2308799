"""``network-mapper coverage`` against the real mapper API app in this process (create_app over a
real Resolver and Coverage with a hand-driven clock, reached through an ASGI transport): the text
and JSON reports, and the exit status CI gates on (0 covered, 1 a node uncovered or a producer
silent, 3 the mapper unreachable)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from agent.cli.main import main
from agent.mapper.api import create_app
from agent.mapper.cluster import ClusterState
from agent.mapper.coverage import Coverage
from agent.mapper.resolver import Resolver
from agent.mapper.settings import ApiSettings
from agent.mapperclient import Request, Response, TransportError
from agent.model import TcpConnection
from tests.support.mapper_app import NoEdges
from tests.support.transports import AsgiTransport

T0 = 1_780_000_000.0
URL = ["--mapper-url", "http://mapper.in-process:9090/query"]


class Clock:
    now = T0

    def __call__(self) -> float:
        return self.now


class Cluster:
    def __init__(self, nodes: list[str]) -> None:
        self.clock = Clock()
        self.resolver = Resolver(ClusterState())
        self.coverage = Coverage(90, nodes=lambda: nodes, dropped=self.resolver.dropped, clock=self.clock)
        self.app = create_app(ApiSettings(), NoEdges(), self.resolver, coverage=self.coverage)
        self.transport = AsgiTransport(self.app).start()


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    found = Cluster(["node-1", "node-2"])
    yield found
    found.transport.close()


def run(cluster: Cluster, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    status = main([*URL, "coverage", *args], cluster.transport)
    return status, capsys.readouterr().out


def test_every_node_covered_exits_0_with_zero_unexplained_drops(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.coverage.status("sniffer", "sniffer-a", "node-1", ["capture:dns,tcp-syn"], [("queue_full", 0)])
    cluster.coverage.status("sniffer", "sniffer-b", "node-2", ["capture:dns,tcp-syn"], [])
    cluster.app.state.ingest.submit([TcpConnection("10.7.7.7", 1, "10.7.7.8", 80, T0)]).result(10)
    status, out = run(cluster, capsys)
    assert status == 0, out
    assert "coverage: complete" in out
    assert "nodes: 2 of 2 with a reporting sniffer" in out
    assert "sniffer=sniffer-a" in out
    assert "observations: 1 received, 0 resolved into edges" in out
    assert "client_unknown_ip (mapper): no pod had the client's IP" in out
    assert "10.7.7.7" in out.split("top unresolved IPs:")[1]
    assert "silent watchers: none" in out
    assert out.rstrip().endswith("unexplained drops: 0")


def test_a_node_without_a_sniffer_exits_1_and_is_named(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.coverage.status("sniffer", "sniffer-a", "node-1", [], [])
    status, out = run(cluster, capsys)
    assert status == 1
    assert "UNCOVERED node-2  sniffer=-  last report never" in out
    assert "coverage: INCOMPLETE" in out


def test_a_silent_watcher_exits_1_and_the_json_says_why(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    for node in ("node-1", "node-2"):
        cluster.coverage.status("sniffer", f"sniffer-{node}", node, [], [])
    cluster.coverage.status("kafka-watcher", "kw-1", "", ["kafka/kafka-0"], [("parse_errors", 2)])
    cluster.clock.now += 60
    for node in ("node-1", "node-2"):
        cluster.coverage.status("sniffer", f"sniffer-{node}", node, [], [])
    cluster.clock.now += 31  # the watcher's status is 91 s old; the sniffers' 31 s
    status, out = run(cluster, capsys, "--format", "json")
    assert status == 1
    doc = json.loads(out)
    assert [n["covered"] for n in doc["nodes"]] == [True, True]
    assert [(c["instance"], c["silent"]) for c in doc["components"]] == [
        ("kw-1", True),
        ("sniffer-node-1", False),
        ("sniffer-node-2", False),
    ]
    assert {"reason": "parse_errors", "source": "kafka-watcher", "count": 2} in [
        {k: d[k] for k in ("reason", "source", "count")} for d in doc["drops"]
    ]
    status, text = run(cluster, capsys)
    assert "silent watchers: kafka-watcher kw-1" in text


def test_an_unreachable_mapper_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    def refused(request: Request) -> Response:
        raise TransportError("ConnectionError: connection refused")

    assert main([*URL, "coverage"], refused) == 3
    assert "cannot reach the mapper" in capsys.readouterr().err
