"""Provenance in the CLI, against the real mapper API app over a real ``EdgeStore`` (in this process):
``list --verbose`` shows per edge which methods saw it, how often, first and last seen, and marks
the edges seen only through DNS; the JSON export carries the provenance; ``export
--exclude-dns-only`` leaves the DNS-only edges out. The CLI's ``edges`` query asks the real schema
for ``provenance``, so a schema without it fails these tests."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from agent.cli import main as cli
from agent.mapper.api import create_app
from agent.mapper.settings import ApiSettings
from agent.mapper.store import EdgeStore
from agent.mapperclient import Transport
from agent.model import Edge, InternetTarget, Method, MethodSeen, WorkloadIdentity
from tests.support.mapper_app import ObservationLog
from tests.support.transports import AsgiTransport

URL = "http://mapper.in-process:9090/query"
T0 = float(int(time.time()) - 3600)  # an hour ago: within any retention bound
FRONTEND = WorkloadIdentity("shop", "frontend", "Deployment")
CART = WorkloadIdentity("shop", "cart", "Deployment")
LOOKUP = InternetTarget("telemetry.example.com", ("203.0.113.7",))
DNS, TCP = Method.DNS, Method.TCP

EDGES = [
    Edge(
        FRONTEND,
        CART,
        T0,
        T0 + 90,
        frozenset({DNS, TCP}),
        5,
        target_service="cart",
        ports=(8080,),
        provenance=(MethodSeen(DNS, T0, T0 + 60, 2), MethodSeen(TCP, T0 + 1, T0 + 90, 3)),
    ),
    Edge(
        FRONTEND, LOOKUP, T0 + 5, T0 + 5, frozenset({DNS}), provenance=(MethodSeen(DNS, T0 + 5, T0 + 5, 1),)
    ),
    Edge(CART, FRONTEND, T0, T0 + 30, frozenset({DNS}), 4),  # stored before provenance was kept
]


def at(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def mapper(tmp_path: Path) -> Iterator[Transport]:
    store = EdgeStore(tmp_path / "edges.db")
    store.record(EDGES)
    transport = AsgiTransport(create_app(ApiSettings(token="t"), store, ObservationLog())).start()
    try:
        yield transport
    finally:
        transport.close()
        store.close()


def run(capsys: pytest.CaptureFixture[str], transport: Transport, *argv: str) -> tuple[int, str]:
    status = cli.main(["--mapper-url", URL, *argv], transport=transport)
    captured = capsys.readouterr()
    assert captured.err == ""
    return status, captured.out


def test_list_verbose_shows_each_methods_sightings_and_marks_dns_only_edges(
    capsys: pytest.CaptureFixture[str], mapper: Transport
) -> None:
    status, out = run(capsys, mapper, "list", "--verbose")
    assert status == 0
    assert out.splitlines() == [
        "cart in namespace shop calls:",
        "  - frontend",
        f"      dns: 4 times, first {at(T0)}, last {at(T0 + 30)} (per method: not recorded)",
        "      DNS only: a name was resolved, no connection seen",
        "frontend in namespace shop calls:",
        "  - cart",
        f"      dns: 2 times, first {at(T0)}, last {at(T0 + 60)}",
        f"      tcp: 3 times, first {at(T0 + 1)}, last {at(T0 + 90)}",
        "  - telemetry.example.com (Internet: 203.0.113.7)",
        f"      dns: 1 time, first {at(T0 + 5)}, last {at(T0 + 5)}",
        "      DNS only: a name was resolved, no connection seen",
    ]
    status, plain = run(capsys, mapper, "list")  # without --verbose: the listing as it was
    assert status == 0 and plain.splitlines() == [line for line in out.splitlines() if line[:6] != " " * 6]


def test_the_json_export_carries_the_provenance(
    capsys: pytest.CaptureFixture[str], mapper: Transport
) -> None:
    status, out = run(capsys, mapper, "export", "--format", "json")
    assert status == 0
    document = json.loads(out)
    assert document["version"] == 5
    by_target = {
        (e["client"]["name"], e["target"].get("name") or e["target"]["dnsName"]): e for e in document["edges"]
    }
    assert [(p["method"], p["count"]) for p in by_target[("frontend", "cart")]["provenance"]] == [
        ("dns", 2),
        ("tcp", 3),
    ]
    assert by_target[("frontend", "cart")]["provenance"][1]["lastSeen"] == at(T0 + 90)
    assert by_target[("cart", "frontend")]["provenance"] == []  # nothing derived for an older edge


def test_exclude_dns_only_leaves_out_the_edges_seen_only_through_dns(
    capsys: pytest.CaptureFixture[str], mapper: Transport
) -> None:
    def targets(out: str) -> list[tuple[str, list[str]]]:
        found = []
        for doc in yaml.safe_load_all(out):
            names = [
                t.get("kubernetes", {}).get("name") or t.get("service", {}).get("name") or "internet"
                for t in doc["spec"]["targets"]
            ]
            found.append((doc["metadata"]["name"], names))
        return found

    status, everything = run(capsys, mapper, "export", "--format", "yaml")
    assert status == 0 and targets(everything) == [("cart", ["frontend"]), ("frontend", ["cart", "internet"])]
    status, connected = run(capsys, mapper, "export", "--format", "yaml", "--exclude-dns-only")
    assert status == 0 and targets(connected) == [("frontend", ["cart"])]
    status, out = run(capsys, mapper, "export", "--format", "json", "--exclude-dns-only")
    assert status == 0 and [e["methods"] for e in json.loads(out)["edges"]] == [["dns", "tcp"]]
