"""``network-mapper snapshot``, ``diff`` and ``check`` against the real mapper API app
(``agent.mapper.api.create_app`` over a real ``EdgeStore`` and ``SnapshotStore``, in this process
through ``tests.support.transports.AsgiTransport``): the CLI's queries and mutations are the ones
the API serves, and the acceptance story holds end to end — save ``before``, a call stops and a
new one starts, ``diff before --now`` shows exactly that; ``check`` uses the mapper's cluster facts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.cli import main as cli
from agent.mapper.api import create_app
from agent.mapper.settings import ApiSettings
from agent.mapper.snapshots import SnapshotStore
from agent.mapper.store import EdgeStore
from agent.mapperclient import Transport
from agent.model import ClusterFacts, Edge, Method, NamespaceFacts, WorkloadFacts, WorkloadIdentity
from tests.support.mapper_app import ObservationLog
from tests.support.transports import AsgiTransport

URL = "http://mapper.in-process:9090/query"
NS = "shop"
NOW = float(int(time.time()))
SAVED = NOW - 600  # the mapper's clock when "before" is saved


def _w(name: str) -> WorkloadIdentity:
    return WorkloadIdentity(NS, name, "Deployment")


def _e(client: str, server: str, last_seen: float, ports: tuple[int, ...]) -> Edge:
    return Edge(_w(client), _w(server), NOW - 3600, last_seen, frozenset({Method.TCP}), ports=ports)


@dataclass(frozen=True)
class Facts:
    """The cluster's facts as the mapper's cluster state would give them (a ``FactsSource``)."""

    value: ClusterFacts

    def facts(self) -> ClusterFacts:
        return self.value


FACTS = ClusterFacts(
    (NamespaceFacts(NS, (("kubernetes.io/metadata.name", NS),)),),
    tuple(
        WorkloadFacts(_w(n), (("app", n),))
        for n in ("cartservice", "checkoutservice", "frontend", "paymentservice", "productcatalogservice")
        + ("recommendationservice",)
    ),
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EdgeStore]:
    edges = EdgeStore(tmp_path / "edges.db")
    try:
        yield edges
    finally:
        edges.close()


@pytest.fixture
def mapper(store: EdgeStore) -> Iterator[Transport]:
    app = create_app(
        ApiSettings(token="t"),
        store,
        ObservationLog(),
        clock=lambda: SAVED,
        facts=Facts(FACTS),
        snapshots=SnapshotStore(store),
    )
    transport = AsgiTransport(app).start()
    try:
        yield transport
    finally:
        transport.close()


def run(capsys: pytest.CaptureFixture[str], transport: Transport, *argv: str) -> tuple[int, str, str]:
    status = cli.main(["--mapper-url", URL, "--token", "t", *argv], transport=transport)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_save_then_diff_with_the_live_map(
    capsys: pytest.CaptureFixture[str], store: EdgeStore, mapper: Transport
) -> None:
    store.record(
        [
            _e("frontend", "cartservice", SAVED - 5, (7070,)),
            _e("recommendationservice", "productcatalogservice", SAVED - 5, (3550,)),
        ]
    )
    status, out, _ = run(capsys, mapper, "snapshot", "save", "before")
    assert (status, out.split(",")[0]) == (0, "saved snapshot before: 2 edges")
    # after the snapshot: recommendationservice stops calling, frontend calls on, checkout starts
    store.record(
        [
            _e("frontend", "cartservice", NOW - 5, (7070,)),
            _e("checkoutservice", "paymentservice", NOW, (50051,)),
        ]
    )
    status, out, _ = run(capsys, mapper, "diff", "before", "--now")
    assert status == 0
    assert out.splitlines()[1:] == [
        "+ checkoutservice in namespace shop → paymentservice [port 50051]",
        "- recommendationservice in namespace shop → productcatalogservice (last seen "
        + time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(SAVED - 5))
        + ")",
    ]
    status, out, _ = run(capsys, mapper, "snapshot", "list")
    assert [line.split()[:3] for line in out.splitlines()[1:]] == [
        ["before", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(SAVED)), "2"]
    ]
    exported = json.loads(run(capsys, mapper, "snapshot", "export", "before")[1])
    assert (exported["kind"], exported["name"], len(exported["edges"])) == ("Snapshot", "before", 2)
    assert run(capsys, mapper, "snapshot", "delete", "before")[:2] == (0, "deleted snapshot before\n")


def test_check_uses_the_mappers_facts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, store: EdgeStore, mapper: Transport
) -> None:
    store.record(
        [_e("checkoutservice", "paymentservice", NOW, (50051,)), _e("frontend", "cartservice", NOW, (7070,))]
    )
    policy = tmp_path / "np.yaml"
    policy.write_text(
        f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: {NS}}}\n"
        "spec:\n  podSelector: {matchLabels: {app: paymentservice}}\n"
        "  policyTypes: [Ingress]\n  ingress: []\n"
    )
    status, out, _ = run(capsys, mapper, "check", "--format", "json", str(policy))
    report = json.loads(out)
    assert (status, report["evaluated"], report["denied"]) == (
        1,
        2,
        1,
    )  # the label app=paymentservice: a fact
    assert report["denials"][0]["edge"]["target"]["name"] == "paymentservice"
