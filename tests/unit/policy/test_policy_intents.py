"""ClientIntents verdicts (v2beta1 and v1alpha3) as the intents operator enforces them by default:
a server some intent names admits only clients that declare it; a server no intent names is
unaffected; Kafka topics/operations and HTTP paths/methods are checked where the edge carries them
and the client's intent lists them; ``service`` targets cover the workloads reached through that
Service."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.model import ClusterFacts, Edge, HttpResource, KafkaTopic, Target, WorkloadIdentity
from agent.policy import check, load_policies

DATA = Path(__file__).resolve().parents[3] / "tests" / "data" / "policies"
T0 = 1_764_296_106.0
V2 = "intents-v2beta1.yaml"
V1 = "intents-v1alpha3.yaml"


def wl(name: str, ns: str = "shop", kind: str = "Deployment") -> WorkloadIdentity:
    return WorkloadIdentity(ns, name, kind)


CHECKOUT, FRONTEND = wl("checkoutservice"), wl("frontend", "web")
ORDERS, KAFKA = wl("orders"), wl("kafka", "infra", "StatefulSet")


def denied(file: str, *edges: Edge) -> list[tuple[str, str, str]]:
    policies = load_policies([(file, (DATA / file).read_text(encoding="utf-8"))])
    result = check(edges, policies, ClusterFacts())
    return [(str(d.edge.client), d.policy.name, d.reason) for d in result.denials]


def edge(client: WorkloadIdentity, target: Target, **details: object) -> Edge:
    return Edge(client, target, T0, T0 + 1, ports=(8080,), **details)  # type: ignore[arg-type]


def http(path: str, *methods: str) -> HttpResource:
    return HttpResource(path, methods)


@pytest.mark.parametrize("file", [V2, V1])
def test_declared_clients_pass_and_others_are_denied(file: str) -> None:
    assert denied(file, edge(CHECKOUT, wl("paymentservice"))) == []
    found = denied(file, edge(FRONTEND, wl("paymentservice")))
    assert found == [
        (
            "frontend.web",
            "checkoutservice",
            "paymentservice.shop is protected by ClientIntents shop/checkoutservice"
            " and frontend.web declares no intent to it",
        )
    ]
    # a server no intent names is unaffected
    assert denied(file, edge(FRONTEND, wl("emailservice"))) == []


def test_cross_namespace_names_and_kinds() -> None:
    # frontend (namespace web) names cartservice.shop: it is admitted, checkoutservice is not
    assert denied(V2, edge(FRONTEND, wl("cartservice"))) == []
    assert [d[1] for d in denied(V2, edge(CHECKOUT, wl("cartservice")))] == ["frontend"]
    # the intent names paymentservice of kind Deployment: a StatefulSet of that name is not named
    assert denied(V2, edge(FRONTEND, wl("paymentservice", kind="StatefulSet"))) == []


@pytest.mark.parametrize(
    ("file", "resources", "missing"),
    [
        (V2, [http("/orders/123", "GET"), http("/orders/{id}", "POST")], []),
        (V2, [http("/orders/1", "DELETE")], ["HTTP DELETE /orders/1"]),
        (V2, [http("/health", "PUT", "GET")], []),  # methods: [] declares every method
        (V2, [http("/other", "GET"), http("/orders/2", "HEAD")], ["HTTP GET /other"]),  # HEAD is a GET
        (V2, [http("/orders/1", "BREW")], []),  # a method no intent can name is not judged
        (V1, [http("/orders", "GET")], []),
        (V1, [http("/orders/1", "GET")], ["HTTP GET /orders/1"]),
        (V1, [http("/orders", "POST")], ["HTTP POST /orders"]),
    ],
)
def test_http_paths_and_methods(file: str, resources: list[HttpResource], missing: list[str]) -> None:
    found = denied(file, edge(CHECKOUT, ORDERS, http=tuple(resources)))
    expected = [
        (
            "checkoutservice.shop",
            "checkoutservice",
            "not declared in ClientIntents shop/checkoutservice: " + "; ".join(missing),
        )
    ]
    assert found == (expected if missing else [])


@pytest.mark.parametrize(
    ("file", "topics", "missing"),
    [
        (V2, [KafkaTopic("orders", ("Write",))], []),
        (V2, [KafkaTopic("orders", ("Read", "Write"))], ["Kafka topic 'orders' operation consume"]),
        (V2, [KafkaTopic("anything", ("Describe",))], []),  # topic "*"
        (
            V2,
            [KafkaTopic("payments", ("Write",), denied=("Read",))],
            ["Kafka topic 'payments' operation produce"],
        ),
        (
            V2,
            [KafkaTopic("orders", ("Write",), denied=("Read",))],
            [],
        ),  # denied operations were refused anyway
        (V1, [KafkaTopic("orders", ("Read", "Write", "Alter"))], []),  # operation all
        (V1, [KafkaTopic("payments", ("Read",))], ["Kafka topic 'payments' operation consume"]),
    ],
)
def test_kafka_topics_and_operations(file: str, topics: list[KafkaTopic], missing: list[str]) -> None:
    found = denied(file, edge(CHECKOUT, KAFKA, kafka_topics=tuple(topics)))
    assert [reason for _, _, reason in found] == (
        ["not declared in ClientIntents shop/checkoutservice: " + "; ".join(missing)] if missing else []
    )
    # the broker is protected: another client is denied whatever it does
    assert len(denied(file, edge(FRONTEND, KAFKA, kafka_topics=tuple(topics)))) == 1


def test_service_targets_cover_the_workloads_behind_the_service() -> None:
    through = edge(CHECKOUT, wl("catalog-api"), target_service="catalog")
    other = edge(FRONTEND, wl("catalog-api"))  # no Service on this edge: the workload is still covered
    found = denied(V2, through, other)
    assert [(client, name) for client, name, _ in found] == [("frontend.web", "checkoutservice")]
    # without an edge through the Service nothing tells which workloads it fronts
    assert denied(V2, other) == []


def test_protected_service_protects_a_server_no_intent_names() -> None:
    payment = wl("paymentservice")
    found = denied("protected-service.yaml", edge(CHECKOUT, payment), edge(FRONTEND, payment))
    assert found == [
        (
            "checkoutservice.shop",
            "paymentservice-protectedservice",
            "paymentservice.shop is protected by ProtectedService shop/paymentservice-protectedservice"
            " and checkoutservice.shop declares no intent to it",
        )
    ]
