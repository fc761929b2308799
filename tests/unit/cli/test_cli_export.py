"""``network-mapper export --format istio|kafka-acl|kafka-acl-commands`` and ``list``, run as a user
runs them (``main(argv)``), against the Otterize tutorials' map.

The mapper is reached through the CLI's transport seam (``main(argv, transport)``, the
``agent.mapperclient.Transport`` its HTTP client sends through):

* a stand-in mapper that answers every ``edges`` query with the mapper's edge documents (as the
  API's ``edges`` resolver shapes them, every field) and every ``intents`` query with the labels
  given: what the CLI makes of a full answer;
* the real mapper API app (``agent.mapper.api.create_app`` over a real ``EdgeStore``), in this
  process: whether the CLI asks for the fields these exports need.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import yaml

from agent import wire
from agent.cli import main as cli
from agent.exports import edges_from_document, validate
from agent.mapper.api import create_app
from agent.mapper.settings import ApiSettings
from agent.mapper.store import EdgeStore
from agent.mapperclient import Request, Response, Transport
from agent.model import Edge, WorkloadIdentity
from tests.support.mapper_app import ObservationLog
from tests.support.transports import AsgiTransport
from tests.unit.exports.test_exports_clientintents import load_crd

DATA = Path(__file__).resolve().parents[3] / "tests" / "data" / "exports"
URL = "http://mapper.in-process:9090/query"
Labels = Mapping[WorkloadIdentity, Mapping[str, str]]


def tutorial_edges() -> list[Edge]:
    return edges_from_document(
        json.loads((DATA / "otterize-tutorial-edges.json").read_text(encoding="utf-8"))
    )


def _identity(w: WorkloadIdentity, labels: Labels) -> dict[str, object]:
    pairs = sorted(labels.get(w, {}).items())
    return {"name": w.name, "namespace": w.namespace, "labels": [{"key": k, "value": v} for k, v in pairs]}


def stand_in_mapper(edges: list[Edge], labels: Labels | None = None) -> Transport:
    """A mapper answering ``edges`` with every field of ``edges``, ``intents`` with ``labels``, and
    ``clusterFacts`` with no facts."""
    labels = labels or {}
    answers = {
        "edges": [wire.plain(wire.to_doc(e)) for e in edges],
        "intents": [
            {"client": _identity(e.client, labels), "server": _identity(e.target, labels)}
            for e in edges
            if isinstance(e.target, WorkloadIdentity)
        ],
        "clusterFacts": {"namespaces": [], "workloads": [], "nodes": []},  # nothing known: default labels
    }

    def answer(request: Request) -> Response:
        query = json.loads(request.body)["query"]
        field = "edges" if "edges(" in query else "clusterFacts" if "clusterFacts" in query else "intents"
        body = json.dumps({"data": {field: answers[field]}}).encode()
        return Response(200, {"content-type": "application/json"}, body)

    return answer


def run(capsys: pytest.CaptureFixture[str], transport: Transport, *argv: str) -> tuple[int, str, str]:
    status = cli.main(["--mapper-url", URL, *argv], transport=transport)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# --------------------------------------------------------------------------- a full answer


def test_export_istio(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, stand_in_mapper(tutorial_edges()), "export", "--format", "istio")
    assert (status, err) == (0, "")
    assert out == (DATA / "otterize-tutorial-istio.yaml").read_text(encoding="utf-8")
    assert "{id}" not in out


def test_export_istio_selects_the_pods_by_their_labels(capsys: pytest.CaptureFixture[str]) -> None:
    server = WorkloadIdentity("otterize-tutorial-istio", "server", "Deployment")
    transport = stand_in_mapper(tutorial_edges(), {server: {"app": "server"}})
    status, out, _ = run(capsys, transport, "export", "--format", "istio")
    (policy,) = yaml.safe_load_all(out)
    assert status == 0
    assert policy["spec"]["selector"] == {"matchLabels": {"app": "server"}}
    assert validate(policy, load_crd("istio-authorizationpolicy-crd.yaml")) == []


def test_export_kafka_acl(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, stand_in_mapper(tutorial_edges()), "export", "--format", "kafka-acl")
    assert (status, err) == (0, "")
    assert out == (DATA / "otterize-tutorial-kafka-acl.yaml").read_text(encoding="utf-8")
    assert "payments" not in out  # denied only


def test_export_kafka_acl_takes_the_strimzi_cluster_label_and_version(
    capsys: pytest.CaptureFixture[str],
) -> None:
    kafka = WorkloadIdentity("otterize-tutorial-kafka-mapping", "kafka", "StatefulSet")
    transport = stand_in_mapper(tutorial_edges(), {kafka: {"strimzi.io/cluster": "tutorial"}})
    status, out, _ = run(capsys, transport, "export", "--format", "kafka-acl", "--kafka-user-version", "v1")
    assert status == 0
    documents = list(yaml.safe_load_all(out))
    assert [d["metadata"]["labels"]["strimzi.io/cluster"] for d in documents] == ["tutorial", "tutorial"]
    assert all(validate(d, load_crd("strimzi-kafkauser-crd.yaml")) == [] for d in documents)


def test_export_kafka_acl_commands_and_notes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    edges = tutorial_edges()
    status, out, err = run(capsys, stand_in_mapper(edges), "export", "--format", "kafka-acl-commands")
    assert (status, err) == (0, "")
    assert out == (DATA / "otterize-tutorial-kafka-acl-commands.txt").read_text(encoding="utf-8")
    target = tmp_path / "acls.sh"
    status, out, _ = run(
        capsys, stand_in_mapper(edges), "export", "--format", "kafka-acl-commands", "-o", str(target)
    )
    assert (status, out) == (0, f"wrote 4 commands to {target}\n")
    assert target.read_text() == (DATA / "otterize-tutorial-kafka-acl-commands.txt").read_text(
        encoding="utf-8"
    )
    # an access whose principal the broker did not log: no KafkaUser, and the user is told
    anonymous = json.loads((DATA / "otterize-tutorial-edges.json").read_text(encoding="utf-8"))
    for doc in anonymous["edges"]:
        for topic in doc["kafkaTopics"]:
            topic["principal"] = ""
    status, out, err = run(
        capsys, stand_in_mapper(edges_from_document(anonymous)), "export", "--format", "kafka-acl"
    )
    assert (status, out) == (0, "\n")
    assert err.splitlines()[0] == (
        "network-mapper: client.otterize-tutorial-kafka-mapping on topic mytopic of"
        " kafka.otterize-tutorial-kafka-mapping: no principal known"
    )


def test_distinct_files_take_the_yaml_formats_only(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    transport = stand_in_mapper(tutorial_edges())
    status, out, _ = run(
        capsys, transport, "export", "--format", "kafka-acl", "--distinct-files", "-o", str(tmp_path)
    )
    assert (status, out) == (0, f"wrote 2 files to {tmp_path}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "otterize-tutorial-kafka-mapping.client.yaml",
        "otterize-tutorial-kafka-mapping.client2.yaml",
    ]
    status, _, err = run(
        capsys, transport, "export", "--format", "kafka-acl-commands", "--distinct-files", "-o", str(tmp_path)
    )
    assert status == 2 and "--distinct-files needs --output DIR and a format of" in err


def test_export_help_explains_the_formats(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["export", "--help"])
    out = capsys.readouterr().out
    for word in ("istio", "kafka-acl ", "kafka-acl-commands", "never a denied one", "ANONYMOUS"):
        assert word in out


def test_list_marks_denied_accesses(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, stand_in_mapper(tutorial_edges()), "list")
    assert status == 0
    assert out.splitlines() == [
        "client in namespace otterize-tutorial-istio calls:",
        "  - server [/api/cart GET; /api/orders/{id} POST]",
        "client2 in namespace otterize-tutorial-istio calls:",
        "  - server [/api/cart GET]",
        "client in namespace otterize-tutorial-kafka-mapping calls:",
        "  - kafka [topic mytopic consume/describe]",
        "client2 in namespace otterize-tutorial-kafka-mapping calls:",
        "  - kafka [topic mytopic describe/produce; topic payments consume (denied)]",
    ]


# --------------------------------------------------------------------------- the real mapper API


@pytest.fixture
def real_mapper(tmp_path: Path) -> Iterator[Transport]:
    store = EdgeStore(tmp_path / "edges.db")
    store.record(tutorial_edges())
    transport = AsgiTransport(create_app(ApiSettings(token="t"), store, ObservationLog())).start()
    try:
        yield transport
    finally:
        transport.close()
        store.close()


def test_real_mapper_plain_export(capsys: pytest.CaptureFixture[str], real_mapper: Transport) -> None:
    status, out, _ = run(capsys, real_mapper, "export")
    assert status == 0
    assert [d["metadata"]["name"] for d in yaml.safe_load_all(out)] == [
        "client",
        "client2",
        "client",
        "client2",
    ]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["export", "--format", "istio"], "otterize-tutorial-istio.yaml"),
        (["export", "--format", "kafka-acl"], "otterize-tutorial-kafka-acl.yaml"),
        (["export", "--format", "kafka-acl-commands"], "otterize-tutorial-kafka-acl-commands.txt"),
    ],
)
def test_real_mapper_gives_what_a_full_answer_gives(
    capsys: pytest.CaptureFixture[str], real_mapper: Transport, argv: list[str], expected: str
) -> None:
    status, out, _ = run(capsys, real_mapper, *argv)
    assert (status, out) == (0, (DATA / expected).read_text(encoding="utf-8"))
