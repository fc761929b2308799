"""The mapper's GraphQL API for cluster facts and snapshots, through the real app in this process
(agent.mapper.api.create_app over a real ClusterState, edge store and snapshot store): the
queries' shapes, the mutations, bad names and documents as field errors, the token, body limits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import snapshotwire, wire
from agent.mapper.api import create_app
from agent.mapper.cluster import ClusterState
from agent.mapper.settings import ApiSettings
from agent.mapper.snapshots import SnapshotStore
from agent.mapper.store import EdgeStore
from agent.mapperclient import Request
from agent.model import Edge, Method, NamedPort, WorkloadIdentity
from tests.support.mapper_app import NoEdges, ObservationLog
from tests.support.transports import AsgiTransport

TOKEN = "snap-token"
T0 = 1_780_000_000.0
URL = "http://mapper.in-process:9090/query"
FRONTEND = WorkloadIdentity("shop", "frontend", "Deployment")
CART = WorkloadIdentity("shop", "cartservice", "Deployment")
EDGE = Edge(FRONTEND, CART, T0, T0 + 5, frozenset({Method.TCP}), 2, ports=(7070,))

FACTS_QUERY = (
    "{ clusterFacts { namespaces { name labels { key value } } workloads { namespace name kind "
    "labels { key value } ports { name port protocol } hostNetwork ips } nodes { name addresses } } }"
)
LIST = "{ snapshots { name takenAt auto edges } }"
GET = "query S($name: String!) { snapshot(name: $name) }"
SAVE = "mutation S($name: String!) { saveSnapshot(name: $name) { name takenAt auto edges } }"
LOAD = (
    "mutation L($document: String!, $name: String) "
    "{ loadSnapshot(document: $document, name: $name) { name takenAt auto edges } }"
)
DELETE = "mutation D($name: String!) { deleteSnapshot(name: $name) }"


def cluster() -> ClusterState:
    state = ClusterState()
    state.apply("ADDED", "Namespace", {"metadata": {"name": "shop", "labels": {"team": "web"}}}, T0)
    state.apply(
        "ADDED",
        "Deployment",
        {"metadata": {"namespace": "shop", "name": "cartservice", "uid": "uid-d"}},
        T0,
    )
    state.apply(
        "ADDED",
        "ReplicaSet",
        {
            "metadata": {
                "namespace": "shop",
                "name": "cartservice-5d8",
                "uid": "uid-rs",
                "ownerReferences": [
                    {"kind": "Deployment", "name": "cartservice", "uid": "uid-d", "controller": True}
                ],
            }
        },
        T0,
    )
    state.apply(
        "ADDED",
        "Pod",
        {
            "metadata": {
                "namespace": "shop",
                "name": "cartservice-5d8-x",
                "uid": "uid-p",
                "labels": {"app": "cartservice"},
                "ownerReferences": [
                    {"kind": "ReplicaSet", "name": "cartservice-5d8", "uid": "uid-rs", "controller": True}
                ],
            },
            "spec": {
                "nodeName": "node-1",
                "containers": [{"name": "c", "ports": [{"name": "grpc", "containerPort": 7070}]}],
            },
            "status": {"phase": "Running", "podIP": "10.244.0.7", "hostIP": "192.168.1.10"},
        },
        T0,
    )
    return state


class Api:
    """The app behind an in-process transport; :meth:`post` answers (status, JSON body)."""

    def __init__(self, app: Any) -> None:
        self.transport = AsgiTransport(app).start()

    def post(self, query: str, variables: dict[str, Any] | None = None, token: str | None = TOKEN) -> Any:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        headers = {"content-type": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        response = self.transport(Request("POST", URL, headers, body, timeout=20.0))
        return response.status, json.loads(response.body)

    def data(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        status, body = self.post(query, variables)
        assert status == 200 and "errors" not in body, body
        return body["data"]

    def error(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        status, body = self.post(query, variables)
        assert status == 200 and body["data"] is None, body
        (error,) = body["errors"]
        return dict(error)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EdgeStore]:
    with EdgeStore.in_dir(tmp_path) as s:
        s.record([EDGE])
        yield s


@pytest.fixture
def api(store: EdgeStore) -> Iterator[Api]:
    state = cluster()
    app = create_app(
        ApiSettings(token=TOKEN, max_body_bytes=64 << 10),
        store,
        ObservationLog(),
        state,
        clock=lambda: T0 + 100,
        facts=state,
        snapshots=SnapshotStore(store, limit=2),
    )
    api = Api(app)
    yield api
    api.transport.close()


def test_cluster_facts_are_typed(api: Api) -> None:
    facts = api.data(FACTS_QUERY)["clusterFacts"]
    assert facts == {
        "namespaces": [
            {
                "name": "shop",
                "labels": [
                    {"key": "kubernetes.io/metadata.name", "value": "shop"},
                    {"key": "team", "value": "web"},
                ],
            }
        ],
        "workloads": [
            {
                "namespace": "shop",
                "name": "cartservice",
                "kind": "Deployment",
                "labels": [{"key": "app", "value": "cartservice"}],
                "ports": [{"name": "grpc", "port": 7070, "protocol": "TCP"}],
                "hostNetwork": False,
                "ips": ["10.244.0.7"],
            }
        ],
        "nodes": [{"name": "node-1", "addresses": ["192.168.1.10"]}],
    }


def test_save_list_read_delete(api: Api) -> None:
    saved = api.data(SAVE, {"name": "before"})["saveSnapshot"]
    assert saved == {"name": "before", "takenAt": wire.format_time(T0 + 100), "auto": False, "edges": 1}
    assert api.data(LIST)["snapshots"] == [saved]
    text = api.data(GET, {"name": "before"})["snapshot"]
    snapshot = snapshotwire.decode_snapshot(text)
    assert (snapshot.name, snapshot.taken_at, snapshot.edges) == ("before", T0 + 100, (EDGE,))
    cart = snapshot.facts.workloads[0]
    assert cart.workload == CART and cart.ports == (NamedPort("grpc", 7070),)
    assert api.data(GET, {"name": "nothing"}) == {"snapshot": None}
    assert api.data(DELETE, {"name": "before"}) == {"deleteSnapshot": True}
    assert api.data(DELETE, {"name": "before"}) == {"deleteSnapshot": False}
    assert api.data(LIST) == {"snapshots": []}


def test_the_oldest_saved_is_pruned_beyond_the_limit(api: Api) -> None:
    for name in ("one", "two", "three"):
        api.data(SAVE, {"name": name})
    assert sorted(s["name"] for s in api.data(LIST)["snapshots"]) == ["three", "two"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Before Deploy", "is not 1-63 characters"),
        ("", "is not 1-63 characters"),
        ("x" * 200, "is not 1-63 characters"),
        ("auto-mine", "reserved for the mapper's automatic snapshots"),
        ("auto-20260101T000000Z", "reserved for the mapper's automatic snapshots"),
    ],
)
def test_bad_names_are_field_errors_that_say_why(api: Api, name: str, message: str) -> None:
    error = api.error(SAVE, {"name": name})
    assert message in error["message"] and error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["path"] == ["saveSnapshot"]
    assert api.data(LIST) == {"snapshots": []}


def test_mutations_need_the_token_and_queries_do_not(api: Api) -> None:
    for query, variables in ((SAVE, {"name": "x"}), (DELETE, {"name": "x"}), (LOAD, {"document": "{}"})):
        status, body = api.post(query, variables, token=None)
        assert status == 401 and "unauthorized" in body["errors"][0]["message"]
    status, body = api.post(LIST, token=None)
    assert status == 200 and body == {"data": {"snapshots": []}}


def test_load_a_document_a_json_export_and_an_automatic_snapshot(api: Api) -> None:
    api.data(SAVE, {"name": "before"})
    text = api.data(GET, {"name": "before"})["snapshot"]
    assert api.data(LOAD, {"document": text, "name": "copy"})["loadSnapshot"]["name"] == "copy"
    renamed = json.loads(text) | {"name": "auto-20260101T000000Z", "auto": False}
    loaded = api.data(LOAD, {"document": json.dumps(renamed)})["loadSnapshot"]
    assert loaded["auto"] is True  # an auto- name is an automatic snapshot's
    export = wire.encode(wire.export_document([EDGE])).decode()
    from_export = api.data(LOAD, {"document": export, "name": "exported"})["loadSnapshot"]
    assert from_export == {
        "name": "exported",
        "takenAt": wire.format_time(EDGE.last_seen),
        "auto": False,
        "edges": 1,
    }
    error = api.error(LOAD, {"document": export})
    assert "names no snapshot" in error["message"] and error["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("not json", "not a snapshot document: JSON is malformed"),
        ("[]", "not a snapshot document: Expected `object`"),
        ('{"apiVersion": "v2"}', "`$.apiVersion`"),
        (
            '{"apiVersion": "network-mapper/v1", "kind": "Snapshot", "name": "x",'
            ' "takenAt": "2025-01-01T00:00:00Z", "edges": [{"client": {}}]}',
            "`$.edges[0].client`",
        ),
    ],
)
def test_bad_documents_are_field_errors_naming_where(api: Api, document: str, message: str) -> None:
    error = api.error(LOAD, {"document": document})
    assert message in error["message"] and error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert api.data(LIST) == {"snapshots": []}


def test_a_document_over_the_body_limit_is_refused_before_it_is_read(api: Api) -> None:
    status, body = api.post(LOAD, {"document": "x" * (65 << 10), "name": "big"})
    assert status == 413 and "exceeds" in body["errors"][0]["message"]


def test_without_a_snapshot_store_the_queries_find_none_and_saving_is_refused() -> None:
    api = Api(create_app(ApiSettings(token=TOKEN), NoEdges(), ObservationLog()))
    try:
        assert api.data(LIST) == {"snapshots": []}
        assert api.data(GET, {"name": "x"}) == {"snapshot": None}
        assert api.data(FACTS_QUERY) == {"clusterFacts": {"namespaces": [], "workloads": [], "nodes": []}}
        assert api.error(SAVE, {"name": "x"})["extensions"]["code"] == "SNAPSHOTS_UNAVAILABLE"
    finally:
        api.transport.close()
