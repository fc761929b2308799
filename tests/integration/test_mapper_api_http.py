"""The mapper's GraphQL API over real HTTP: uvicorn on 127.0.0.1:<ephemeral> in a thread, the real
edge store (SQLite in a temp dir), the real resolver over a real ClusterState, driven by
``requests`` with the documents the Otterize CLI and our sniffer send."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import uvicorn

from agent.mapper.api import create_app
from agent.mapper.cluster import ClusterState
from agent.mapper.resolver import Resolver
from agent.mapper.settings import ApiSettings
from agent.mapper.store import EdgeStore
from agent.model import Edge, Observation

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CREATED = "2024-01-01T00:00:00Z"
SEEN = "2024-06-01T12:00:00.123456789Z"
SEEN_AT = datetime(2024, 6, 1, 12, tzinfo=UTC).timestamp() + 0.123456789

# The Otterize CLI's own documents, as it sends them.
SERVICE_INTENTS = (
    "query ServiceIntents($namespaces: [String!]) { serviceIntents(namespaces: $namespaces) "
    "{ client { name namespace } intents { name namespace } } }"
)
INTENTS = (
    "query Intents($namespaces: [String!], $includeLabels: [String!], $excludeLabels: [String!], "
    "$includeAllLabels: Boolean, $server: ServerFilter) { intents(namespaces: $namespaces, "
    "includeLabels: $includeLabels, excludeServiceWithLabels: $excludeLabels, includeAllLabels: "
    "$includeAllLabels, server: $server) { client { name namespace labels { key value } podOwnerKind "
    "{ group version kind } } server { name namespace labels { key value } podOwnerKind { group version "
    "kind } kubernetesService } type kafkaTopics { name operations } httpResources { path methods } "
    "awsActions } }"
)
RESET = "mutation ResetCapture { resetCapture }"
# The sniffer reporter's documents.
CAPTURE = (
    "mutation reportCaptureResults($results: CaptureResults!) { reportCaptureResults(results: $results) }"
)
TCP = (
    "mutation reportTCPCaptureResults($results: CaptureTCPResults!) "
    "{ reportTCPCaptureResults(results: $results) }"
)
SOCKETS = (
    "mutation reportSocketScanResults($results: SocketScanResults!) "
    "{ reportSocketScanResults(results: $results) }"
)
KAFKA = "mutation K($r: KafkaMapperResults!) { reportKafkaMapperResults(results: $r) }"
ISTIO = "mutation I($r: IstioConnectionResults!) { reportIstioConnectionResults(results: $r) }"
AWS = "mutation A($o: [AWSOperation!]!) { reportAWSOperation(operation: $o) }"
EDGES = (
    "query { edges { client { name namespace kind } target { workload { name namespace kind } "
    "internet { dnsName ips port } aws { arn } } methods firstSeen lastSeen count targetService ambiguous } }"
)


# --------------------------------------------------------------------------- the cluster


def _pod(
    ns: str, name: str, ip: str, labels: dict[str, str], owner: tuple[str, str] | None
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "namespace": ns,
        "name": name,
        "uid": f"uid-{name}",
        "labels": labels,
        "creationTimestamp": CREATED,
    }
    if owner:
        meta["ownerReferences"] = [
            {"kind": owner[0], "name": owner[1], "uid": f"uid-{owner[1]}", "controller": True}
        ]
    return {
        "metadata": meta,
        "spec": {"nodeName": "node-1", "containers": [{"name": "c"}]},
        "status": {"podIP": ip, "hostIP": "192.168.50.1", "startTime": CREATED, "phase": "Running"},
    }


def cluster() -> ClusterState:
    """shop: frontend (Deployment), cartservice (Deployment, Service 10.96.0.30), redis-cart
    (StatefulSet); infra: kafka (StatefulSet, pod kafka-0)."""
    state, at = ClusterState(), datetime(2024, 1, 1, tzinfo=UTC).timestamp()
    for ns, rs, deployment in (
        ("shop", "frontend-6f7", "frontend"),
        ("shop", "cartservice-5d8", "cartservice"),
    ):
        state.apply(
            "ADDED",
            "Deployment",
            {"metadata": {"namespace": ns, "name": deployment, "uid": f"uid-{deployment}"}},
            at,
        )
        owner = {"kind": "Deployment", "name": deployment, "uid": f"uid-{deployment}", "controller": True}
        state.apply(
            "ADDED",
            "ReplicaSet",
            {"metadata": {"namespace": ns, "name": rs, "uid": f"uid-{rs}", "ownerReferences": [owner]}},
            at,
        )
    pods = [
        _pod(
            "shop",
            "frontend-6f7-abcde",
            "10.1.0.10",
            {"app": "frontend", "team": "web"},
            ("ReplicaSet", "frontend-6f7"),
        ),
        _pod(
            "shop",
            "cartservice-5d8-xyz",
            "10.1.0.30",
            {"app": "cart", "skip": "yes"},
            ("ReplicaSet", "cartservice-5d8"),
        ),
        _pod("shop", "redis-cart-0", "10.1.0.20", {"app": "redis"}, ("StatefulSet", "redis-cart")),
        _pod("infra", "kafka-0", "10.1.0.40", {"app": "kafka"}, ("StatefulSet", "kafka")),
    ]
    for pod in pods:
        state.apply("ADDED", "Pod", pod, at)
    service = {
        "metadata": {
            "namespace": "shop",
            "name": "cartservice",
            "uid": "uid-svc-cart",
            "creationTimestamp": CREATED,
        },
        "spec": {"clusterIP": "10.96.0.30", "selector": {"app": "cart"}},
    }
    state.apply("ADDED", "Service", service, at)
    return state


# --------------------------------------------------------------------------- the server


class Server:
    """uvicorn serving ``app`` on 127.0.0.1:<ephemeral port>, in a thread."""

    def __init__(self, app: Any) -> None:
        self.app = app
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/query"

    def post(
        self, query: str, variables: dict[str, Any] | None = None, *, auth: bool = True, **kw: Any
    ) -> requests.Response:
        body = {"query": query, "variables": variables}
        return requests.post(self.url, json=body, headers=AUTH if auth else {}, timeout=30, **kw)

    def data(self, query: str, variables: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        response = self.post(query, variables, **kw)
        assert response.status_code == 200, response.text
        payload = response.json()
        assert "errors" not in payload, payload
        return payload["data"]  # type: ignore[no-any-return]

    def healthy(self) -> bool:
        return self.data("query { health }", auth=False) == {"health": True}

    def drain(self) -> None:
        assert self.app.state.ingest.drain(10)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        assert not self.thread.is_alive()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EdgeStore]:
    with EdgeStore(tmp_path / "edges.db") as s:
        yield s


@pytest.fixture
def serve(store: EdgeStore) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(resolver: Any = None, **settings: Any) -> Server:
        state = cluster()
        config = ApiSettings(token=TOKEN, **settings)
        app = create_app(config, store, resolver or Resolver(state, "cluster.local"), state)
        servers.append(Server(app))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


def _src(src: str, *destinations: dict[str, Any], hostname: str = "") -> dict[str, Any]:
    return {"srcIp": src, "srcHostname": hostname, "destinations": list(destinations)}


def report_everything(server: Server) -> None:
    dns = {
        "results": [
            _src(
                "10.1.0.10",
                {
                    "destination": "cartservice.shop.svc.cluster.local",
                    "destinationIP": "10.96.0.30",
                    "TTL": 5,
                    "lastSeen": SEEN,
                },
                {
                    "destination": "api.github.com",
                    "destinationIP": "140.82.112.3",
                    "TTL": 60,
                    "lastSeen": SEEN,
                },
            )
        ]
    }
    assert server.data(CAPTURE, {"results": dns}) == {"reportCaptureResults": True}
    tcp = {
        "results": [
            _src("10.1.0.30", {"destination": "10.1.0.20", "destinationPort": 6379, "lastSeen": SEEN})
        ]
    }
    assert server.data(TCP, {"results": tcp}) == {"reportTCPCaptureResults": True}
    sockets = {
        "results": [
            _src(
                "10.1.0.30",
                {"destination": "10.1.0.20", "destinationPort": 6379, "lastSeen": SEEN},
                hostname="cartservice-5d8-xyz",
            )
        ]
    }
    assert server.data(SOCKETS, {"results": sockets}) == {"reportSocketScanResults": True}
    istio = {
        "results": [
            {
                "srcWorkload": "frontend",
                "srcWorkloadNamespace": "shop",
                "dstWorkload": "cartservice",
                "dstServiceName": "cartservice",
                "dstWorkloadNamespace": "shop",
                "path": "/cart",
                "methods": ["GET", "POST"],
                "lastSeen": SEEN,
            }
        ]
    }
    assert server.data(ISTIO, {"r": istio}) == {"reportIstioConnectionResults": True}
    aws = [{"resource": "arn:aws:s3:::shop-bucket", "actions": ["s3:GetObject"], "srcIp": "10.1.0.30"}]
    assert server.data(AWS, {"o": aws}) == {"reportAWSOperation": True}
    server.drain()


# --------------------------------------------------------------------------- the tests


def test_reports_then_the_otterize_cli_queries(serve: Callable[..., Server]) -> None:
    server = serve()
    report_everything(server)

    service_intents = server.data(SERVICE_INTENTS, {"namespaces": None}, auth=False)["serviceIntents"]
    assert service_intents == [
        {
            "client": {"name": "cartservice", "namespace": "shop"},
            "intents": [{"name": "redis-cart", "namespace": "shop"}],
        },
        {
            "client": {"name": "frontend", "namespace": "shop"},
            "intents": [{"name": "cartservice", "namespace": "shop"}],
        },
    ]
    assert server.data(SERVICE_INTENTS, {"namespaces": ["infra"]}, auth=False) == {"serviceIntents": []}

    variables = {
        "namespaces": ["shop"],
        "includeLabels": ["app"],
        "excludeLabels": None,
        "includeAllLabels": False,
        "server": None,
    }
    intents = server.data(INTENTS, variables, auth=False)["intents"]
    by = {(i["client"]["name"], i["server"]["name"], i["type"]): i for i in intents}
    assert set(by) == {
        ("frontend", "cartservice", "HTTP"),
        ("cartservice", "redis-cart", None),
        ("cartservice", "arn:aws:s3:::shop-bucket", "AWS"),
    }
    http = by["frontend", "cartservice", "HTTP"]
    assert http["client"]["labels"] == [{"key": "app", "value": "frontend"}]
    assert http["client"]["podOwnerKind"] == {"group": "apps", "version": "v1", "kind": "Deployment"}
    assert http["server"]["kubernetesService"] == "cartservice"
    assert http["httpResources"] == [{"path": "/cart", "methods": ["GET", "POST"]}]
    redis = by["cartservice", "redis-cart", None]
    assert redis["server"]["podOwnerKind"] == {"group": "apps", "version": "v1", "kind": "StatefulSet"}
    assert redis["server"]["labels"] == [{"key": "app", "value": "redis"}]
    assert redis["httpResources"] is None and redis["kafkaTopics"] is None and redis["awsActions"] is None
    aws = by["cartservice", "arn:aws:s3:::shop-bucket", "AWS"]
    assert aws["awsActions"] == ["s3:GetObject"] and aws["server"]["namespace"] == "shop"

    excluded = server.data(INTENTS, {**variables, "excludeLabels": ["skip"]}, auth=False)["intents"]
    assert excluded == []  # every intent involves cartservice
    to_cart = server.data(
        INTENTS, {**variables, "server": {"name": "cartservice", "namespace": "shop"}}, auth=False
    )["intents"]
    assert [(i["client"]["name"], i["type"]) for i in to_cart] == [("frontend", "HTTP")]

    edges = server.data(EDGES, auth=False)["edges"]
    internet = [e for e in edges if e["target"]["internet"]]
    assert internet == [
        {
            "client": {"name": "frontend", "namespace": "shop", "kind": "Deployment"},
            "target": {
                "workload": None,
                "internet": {"dnsName": "api.github.com", "ips": ["140.82.112.3"], "port": 0},
                "aws": None,
            },
            "methods": ["dns"],
            "firstSeen": "2024-06-01T12:00:00.123457Z",
            "lastSeen": "2024-06-01T12:00:00.123457Z",
            "count": 1,
            "targetService": None,
            "ambiguous": False,
        }
    ]
    redis_edge = next(e for e in edges if (e["target"]["workload"] or {}).get("name") == "redis-cart")
    assert redis_edge["methods"] == ["socket-scan", "tcp"] and redis_edge["count"] == 2

    assert server.data(RESET) == {"resetCapture": True}
    assert server.data(SERVICE_INTENTS, auth=False) == {"serviceIntents": []}


def test_kafka_reports_become_kafka_intents(serve: Callable[..., Server]) -> None:
    server = serve()
    kafka = {
        "results": [
            {
                "srcIp": "10.1.0.30",
                "serverPodName": "kafka-0",
                "serverNamespace": "infra",
                "topic": "orders",
                "operation": "consume",
                "lastSeen": SEEN,
            }
        ]
    }
    assert server.data(KAFKA, {"r": kafka}) == {"reportKafkaMapperResults": True}
    server.drain()
    intents = server.data(INTENTS, auth=False)["intents"]
    assert [(i["client"]["name"], i["type"], i["kafkaTopics"]) for i in intents] == [
        ("cartservice", "KAFKA", [{"name": "orders", "operations": ["CONSUME"]}])
    ]
    assert intents[0]["server"]["namespace"] == "infra"


def test_kafka_server_pod_is_named_by_its_workload(serve: Callable[..., Server]) -> None:
    server = serve()
    kafka = {
        "results": [
            {
                "srcIp": "10.1.0.30",
                "serverPodName": "kafka-0",
                "serverNamespace": "infra",
                "topic": "orders",
                "operation": "consume",
                "lastSeen": SEEN,
            }
        ]
    }
    assert server.data(KAFKA, {"r": kafka}) == {"reportKafkaMapperResults": True}
    server.drain()
    server_identity = server.data(INTENTS, auth=False)["intents"][0]["server"]
    assert (server_identity["name"], server_identity["podOwnerKind"]["kind"]) == ("kafka", "StatefulSet")


def test_get_serves_queries_only(serve: Callable[..., Server]) -> None:
    server = serve()
    r = requests.get(server.url, params={"query": "{ health }"}, timeout=10)
    assert (r.status_code, r.json()) == (200, {"data": {"health": True}})
    r = requests.get(server.url, params={"query": RESET}, headers=AUTH, timeout=10)
    assert r.status_code == 405 and r.json()["errors"]
    assert requests.get(server.url.replace("/query", "/healthz"), timeout=10).json()["status"] == "ok"


def test_mutations_need_the_token(
    serve: Callable[..., Server], store: EdgeStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = serve()
    tcp = {
        "results": [
            _src("10.1.0.30", {"destination": "10.1.0.20", "destinationPort": 6379, "lastSeen": SEEN})
        ]
    }
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": TOKEN},
        {"Authorization": "Basic x"},
    ):
        r = requests.post(
            server.url, json={"query": TCP, "variables": {"results": tcp}}, headers=headers, timeout=10
        )
        assert r.status_code == 401, r.text
        assert "unauthorized" in r.json()["errors"][0]["message"]
        assert TOKEN not in r.text
    r = server.post(RESET, auth=False)
    assert r.status_code == 401
    assert server.app.state.ingest.stats.batches_accepted == 0
    server.drain()
    assert store.count() == 0
    assert server.healthy()
    assert server.data(TCP, {"results": tcp}) == {"reportTCPCaptureResults": True}
    assert caplog.records and not any(TOKEN in r.getMessage() for r in caplog.records)


def test_closed_queries_need_the_token(serve: Callable[..., Server]) -> None:
    server = serve(open_queries=False)
    assert server.post(SERVICE_INTENTS, auth=False).status_code == 401
    assert server.data(SERVICE_INTENTS) == {"serviceIntents": []}


def test_bad_requests_get_errors_and_the_server_keeps_serving(serve: Callable[..., Server]) -> None:
    server = serve()
    cases: list[tuple[Any, int]] = [
        (b"{not json", 400),
        (b"\xff\xfe", 400),
        (b"[1, 2]", 400),
        (json.dumps({"query": 42}).encode(), 400),
        (json.dumps({"query": "{ health"}).encode(), 400),  # malformed GraphQL
        (json.dumps({"query": "{ nosuchfield }"}).encode(), 400),  # invalid document
        (json.dumps({"query": "{ health }", "variables": "x"}).encode(), 400),
        (json.dumps({"query": "{ " + "a " * 20_000 + "}"}).encode(), 400),  # too many tokens
    ]
    wrong_types = [
        (SERVICE_INTENTS, {"namespaces": 5}),
        (INTENTS, {"server": {"name": "x"}}),
        (
            TCP,
            {
                "results": {
                    "results": [
                        _src(
                            "10.0.0.1", {"destination": "10.0.0.2", "destinationPort": "80", "lastSeen": SEEN}
                        )
                    ]
                }
            },
        ),
        (TCP, {"results": {"results": [_src("10.0.0.1", {"destination": "10.0.0.2", "lastSeen": 17})]}}),
        (TCP, {"results": None}),
    ]
    cases += [(json.dumps({"query": q, "variables": v}).encode(), 400) for q, v in wrong_types]
    for body, status in cases:
        r = requests.post(
            server.url, data=body, headers={**AUTH, "Content-Type": "application/json"}, timeout=10
        )
        assert r.status_code == status, (body[:80], r.status_code, r.text)
        assert r.json()["errors"][0]["message"], body[:80]
        assert server.healthy()
    assert server.app.state.ingest.stats.batches_accepted == 0


@pytest.mark.parametrize(
    "bad", ["yesterday", "2024-13-01T00:00:00Z", "9999-12-31T23:00:00-05:00", "1999-01-01T00:00:00Z"]
)
def test_an_entry_with_a_bad_time_is_skipped_and_counted_and_the_rest_is_taken(
    serve: Callable[..., Server], bad: str
) -> None:
    """Issue 11, defect 2: a lastSeen that is no time in [2000, 2100) used to be refused with the
    whole report (or, year 9999 with a negative offset, accepted and then break every read)."""
    server = serve()
    good = {"destination": "10.1.0.20", "destinationPort": 6379, "lastSeen": SEEN}
    report = {"results": {"results": [_src("10.1.0.30", {**good, "lastSeen": bad}, good)]}}
    assert server.data(TCP, report) == {"reportTCPCaptureResults": True}
    assert server.app.state.api.skipped == {"bad_time": 1}
    edges = server.data("{ edges { client { name } target { name } } }")["edges"]
    assert len(edges) == 1


def test_oversized_bodies_get_413(serve: Callable[..., Server]) -> None:
    server = serve(max_body_bytes=1 << 20)
    big = b"x" * (50 << 20)
    r = requests.post(server.url, data=big, headers={**AUTH, "Content-Type": "application/json"}, timeout=60)
    assert r.status_code == 413
    assert "exceeds" in r.json()["errors"][0]["message"]
    assert server.healthy()

    def chunks() -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding: chunked
        for _ in range(50):
            yield b"y" * (1 << 20)

    r = requests.post(
        server.url, data=chunks(), headers={**AUTH, "Content-Type": "application/json"}, timeout=60
    )
    assert r.status_code == 413
    assert server.healthy()
    # just under the limit is served
    padded = json.dumps({"query": "{ health }", "variables": {"pad": "z" * ((1 << 20) - 100)}}).encode()
    r = requests.post(server.url, data=padded, headers={"Content-Type": "application/json"}, timeout=10)
    assert (r.status_code, r.json()) == (200, {"data": {"health": True}})


class GatedResolver:
    """Resolves nothing until ``gate`` is set, and records what it saw."""

    def __init__(self) -> None:
        self.gate, self.entered = threading.Event(), threading.Event()
        self.seen: list[Observation] = []

    def resolve(self, obs: Observation) -> list[Edge]:
        self.entered.set()
        assert self.gate.wait(20)
        self.seen.append(obs)
        return []


def test_a_full_queue_answers_busy_and_loses_nothing(serve: Callable[..., Server]) -> None:
    resolver = GatedResolver()
    server = serve(resolver, queue_batches=1)

    def tcp(port: int) -> dict[str, Any]:
        return {
            "results": {
                "results": [
                    _src("10.0.0.1", {"destination": "10.0.0.2", "destinationPort": port, "lastSeen": SEEN})
                ]
            }
        }

    # A report is answered once recorded: batches 1 and 2 wait in threads while the gate holds.
    answers: dict[int, dict[str, Any]] = {}

    def report(port: int) -> None:
        answers[port] = server.data(TCP, tcp(port))

    first = threading.Thread(target=report, args=(1,))
    first.start()
    assert resolver.entered.wait(10)  # the worker holds batch 1; the queue has room for one more
    second = threading.Thread(target=report, args=(2,))
    second.start()
    deadline = time.monotonic() + 10
    while server.app.state.ingest.pending < 2:  # batch 2 queued behind the gate
        assert time.monotonic() < deadline, "batch 2 was not queued"
        time.sleep(0.01)
    assert not answers, "a report was acknowledged before it was recorded"
    r = server.post(TCP, tcp(3))
    assert r.status_code == 200
    assert r.json()["data"] is None
    assert r.json()["errors"][0]["message"] == "mapper busy, retry"
    assert r.json()["errors"][0]["extensions"]["code"] == "MAPPER_BUSY"
    # The sniffer's document takes the fast decoding (agent.mapper.api.reportinputs); a directive
    # sends the same report through graphql-core: both answer "busy" alike, to the byte.
    slow = server.post(
        TCP.replace("(results: $results) }", "(results: $results) @include(if: true) }"), tcp(3)
    )
    assert slow.status_code == 200
    assert slow.json() == r.json()
    assert server.healthy()
    resolver.gate.set()
    first.join(30)
    second.join(30)
    assert answers == {1: {"reportTCPCaptureResults": True}, 2: {"reportTCPCaptureResults": True}}
    assert server.data(TCP, tcp(3)) == {"reportTCPCaptureResults": True}  # the retry is accepted
    server.drain()
    assert [o.server_port for o in resolver.seen] == [1, 2, 3]  # type: ignore[union-attr]


def test_not_stored_reports_are_accepted(serve: Callable[..., Server]) -> None:
    server = serve()
    azure = [
        {
            "scope": "/subscriptions/x",
            "actions": ["a"],
            "dataActions": [],
            "clientName": "c",
            "clientNamespace": "n",
        }
    ]
    gcp = [{"resource": "projects/p", "permissions": ["storage.objects.get"], "srcIp": "10.0.0.1"}]
    traffic = {"results": [{"srcIP": "10.0.0.1", "dstIP": "10.0.0.2", "bytesSent": 10, "flows": 1}]}
    assert server.data(
        "mutation($o: [AzureOperation!]!) { reportAzureOperation(operation: $o) }", {"o": azure}
    )
    assert server.data("mutation($o: [GCPOperation!]!) { reportGCPOperation(operation: $o) }", {"o": gcp})
    assert server.data(
        "mutation($r: TrafficLevelResults!) { reportTrafficLevelResults(results: $r) }", {"r": traffic}
    )
    assert server.app.state.api.not_stored == {"azure": 1, "gcp": 1, "traffic": 1}
    assert server.app.state.ingest.stats.batches_accepted == 0


def test_time_literals_in_the_document(serve: Callable[..., Server]) -> None:
    server = serve()
    doc = (
        'mutation { reportTCPCaptureResults(results: {results: [{srcIp: "10.1.0.30", srcHostname: "",'
        ' destinations: [{destination: "10.1.0.20", destinationPort: 6379, lastSeen: "%s"}]}]}) }'
    )
    assert server.data(doc % SEEN) == {"reportTCPCaptureResults": True}
    assert server.data(doc % "not a time") == {"reportTCPCaptureResults": True}  # that entry skipped
    assert server.app.state.api.skipped == {"bad_time": 1}
    assert server.healthy()


class BrokenStore:
    """A store whose reads fail: a bug or a broken disk must not turn into HTTP 500."""

    def __init__(self, store: EdgeStore) -> None:
        self.record, self.reset = store.record, store.reset

    def edges(self, namespaces: Any = None) -> list[Edge]:
        raise OSError("disk I/O error")


def test_a_failing_store_gives_graphql_errors(store: EdgeStore, caplog: pytest.LogCaptureFixture) -> None:
    state = cluster()
    app = create_app(ApiSettings(token=TOKEN), BrokenStore(store), Resolver(state), state)
    server = Server(app)
    try:
        r = server.post(SERVICE_INTENTS)
        assert r.status_code == 200
        assert r.json()["data"] is None and "disk I/O error" in r.json()["errors"][0]["message"]
        assert any("resolver failed path=serviceIntents" in rec.getMessage() for rec in caplog.records)
        assert server.healthy()
    finally:
        server.stop()


@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ('{"v":' + "[" * 100 + "]" * 100 + "}", "nested deeper than 64"),
        ('{"v":' + "[" * 2_000 + "]" * 2_000 + "}", "nested deeper than 64"),
        ('{"v":' + "9" * 101 + "}", "more than 100 characters"),
        ('{"v":' + "9" * 5000 + "}", "more than 100 characters"),
    ],
)
def test_deep_or_huge_json_gets_400(
    serve: Callable[..., Server], method: str, variables: str, message: str
) -> None:
    server = serve()
    if method == "POST":
        body = '{"query": "{ health }", "variables": ' + variables + "}"
        r = requests.post(
            server.url, data=body, headers={**AUTH, "Content-Type": "application/json"}, timeout=10
        )
    else:
        params = {"query": "{ health }", "variables": variables}
        r = requests.get(server.url, params=params, headers=AUTH, timeout=10)
    assert r.status_code == 400, r.text
    assert message in r.json()["errors"][0]["message"]
    # digits inside a string are no integer: accepted
    ok = requests.get(
        server.url, params={"query": "{ health }", "variables": '{"s": "' + "1" * 200 + '"}'}, timeout=10
    )
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize(
    "query",
    [
        "{ ... on Query { " + " ".join(f"a{i}: health" for i in range(21)) + " } }",
        "{ ...F } fragment F on Query { " + " ".join(f"a{i}: health" for i in range(21)) + " }",
        "{ ... on Query { ...F } } fragment F on Query { "
        + " ".join(f"a{i}: health" for i in range(21))
        + " }",
    ],
)
def test_root_field_cap_counts_through_fragments(serve: Callable[..., Server], query: str) -> None:
    server = serve()
    r = server.post(query)
    assert r.status_code == 400, r.text
    assert "more than 20 top-level fields" in r.json()["errors"][0]["message"]
    assert server.data("{ ... on Query { a: health b: health } }") == {"a": True, "b": True}


def test_the_upload_position_says_when_the_cloud_holds_every_change(store: EdgeStore) -> None:
    from agent.mapper.uploadledger import UploadLedger

    query = "{ uploadPosition { changed uploaded } }"
    state = cluster()
    without = Server(create_app(ApiSettings(token=TOKEN), store, Resolver(state), state))
    try:
        assert without.data(query) == {"uploadPosition": None}  # a mapper that uploads nowhere
    finally:
        without.stop()
    server = Server(
        create_app(ApiSettings(token=TOKEN), store, Resolver(state), state, positions=store.positions)
    )
    try:
        assert server.data(query) == {"uploadPosition": {"changed": 0, "uploaded": 0}}
        report_everything(server)
        position = server.data(query)["uploadPosition"]
        assert position["changed"] >= 5 and position["uploaded"] == 0
        ledger = UploadLedger(store)
        rows = store.changed_since(0, 1000)
        ledger.mark_uploaded([], rows[-1][0])  # what the uploader does after its last batch
        assert server.data(query)["uploadPosition"] == {
            "changed": position["changed"],
            "uploaded": rows[-1][0],
        }
        assert rows[-1][0] == position["changed"]
    finally:
        server.stop()
