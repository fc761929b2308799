"""Istio AuthorizationPolicy export: exact documents (the Otterize Istio tutorial's), path templates
as Istio matches them, selectors, and every document validates against Istio's published CRD."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.exports import authorization_policies, edges_from_document, validate, yaml_documents
from agent.exports.istio import istio_principal, path_pattern
from agent.model import AwsTarget, Edge, HttpResource, InternetTarget, Method, WorkloadIdentity
from tests.unit.exports.test_exports_clientintents import load_crd

DATA = Path(__file__).resolve().parents[3] / "tests" / "data" / "exports"
CRD = "istio-authorizationpolicy-crd.yaml"
T0 = 1764296106.918878
NS = "otterize-tutorial-istio"
SPIFFE_CLIENT = f"spiffe://cluster.local/ns/{NS}/sa/client"


def deploy(name: str, ns: str = NS, kind: str = "Deployment") -> WorkloadIdentity:
    return WorkloadIdentity(ns, name, kind)


def edge(client: WorkloadIdentity, target: Any, *resources: HttpResource) -> Edge:
    return Edge(client, target, T0, T0 + 1, frozenset({Method.ISTIO}), http=resources)


def tutorial_edges() -> list[Edge]:
    document = json.loads((DATA / "otterize-tutorial-edges.json").read_text(encoding="utf-8"))
    return edges_from_document(document)


def assert_valid(document: dict[str, Any]) -> None:
    assert validate(document, load_crd(CRD)) == [], document


def test_tutorial_exact_document() -> None:
    policies = authorization_policies(tutorial_edges())
    assert policies == [
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {
                "name": "access-to-server-from-observed-clients",
                "namespace": NS,
                "labels": {"app.kubernetes.io/managed-by": "network-mapper"},
            },
            "spec": {
                "selector": {"matchLabels": {"app.kubernetes.io/name": "server"}},
                "action": "ALLOW",
                "rules": [
                    {
                        "from": [{"source": {"principals": [f"cluster.local/ns/{NS}/sa/client"]}}],
                        "to": [
                            {"operation": {"paths": ["/api/cart"], "methods": ["GET"]}},
                            {"operation": {"paths": ["/api/orders/*"], "methods": ["POST"]}},
                        ],
                    },
                    {  # client2 was seen without a principal: its namespace stands for it
                        "from": [{"source": {"namespaces": [NS]}}],
                        "to": [{"operation": {"paths": ["/api/cart"], "methods": ["GET"]}}],
                    },
                ],
            },
        }
    ]
    assert_valid(policies[0])
    # and as a user gets it: through YAML text, byte for byte the committed file
    text = yaml_documents(policies)
    assert text == (DATA / "otterize-tutorial-istio.yaml").read_text(encoding="utf-8")
    assert [validate(d, load_crd(CRD)) for d in yaml.safe_load_all(text)] == [[]]


@pytest.mark.parametrize(
    ("path", "pattern"),
    [
        ("/api/cart", "/api/cart"),
        ("/api/orders/{id}", "/api/orders/*"),
        ("/api/orders/{id}/items", "/api/orders/{*}/items"),
        ("/api/{tenant}/orders/{id}", "/api/{*}/orders/{*}"),  # no "*" prefix beside a template
        ("/{id}", "/*"),
        ("/a/{id}/", "/a/{*}/"),
        ("/a/x{id}", "/a/*"),  # any segment with a brace is a template
        ("/", "/"),
        ("", ""),
    ],
)
def test_path_pattern(path: str, pattern: str) -> None:
    assert path_pattern(path) == pattern


def test_istio_principal_drops_the_spiffe_scheme_only() -> None:
    assert istio_principal(SPIFFE_CLIENT) == f"cluster.local/ns/{NS}/sa/client"
    assert istio_principal("cluster.local/ns/a/sa/b") == "cluster.local/ns/a/sa/b"


def test_operations_group_paths_by_exact_method_sets() -> None:
    server = deploy("server")
    edges = [
        edge(
            deploy("client"),
            server,
            HttpResource("/b", ("get",), (SPIFFE_CLIENT,)),
            HttpResource("/a", ("GET",), (SPIFFE_CLIENT,)),
            HttpResource("/c", ("POST", "GET"), (SPIFFE_CLIENT,)),
            HttpResource("/d", (), (SPIFFE_CLIENT,)),  # no method seen: any method
            HttpResource("/x/{id}", ("DELETE",), ("spiffe://cluster.local/ns/other/sa/b",)),
            HttpResource("/x/{n}", ("PUT",)),  # the same pattern: methods merge
        )
    ]
    (policy,) = authorization_policies(edges)
    assert policy["spec"]["rules"] == [
        {
            "from": [
                {
                    "source": {
                        "principals": ["cluster.local/ns/other/sa/b", f"cluster.local/ns/{NS}/sa/client"]
                    }
                }
            ],
            "to": [
                {"operation": {"paths": ["/a", "/b"], "methods": ["GET"]}},
                {"operation": {"paths": ["/c"], "methods": ["GET", "POST"]}},
                {"operation": {"paths": ["/d"]}},
                {"operation": {"paths": ["/x/*"], "methods": ["DELETE", "PUT"]}},
            ],
        }
    ]
    assert_valid(policy)


def test_labels_select_pods_and_what_gets_no_policy() -> None:
    server = deploy("server")
    get = HttpResource("/", ("GET",))
    edges = [
        edge(deploy("client"), server, get),
        edge(deploy("client"), deploy("quiet")),  # no HTTP seen: no policy
        edge(deploy("client"), WorkloadIdentity("default", "kubernetes", "Service"), get),
        edge(deploy("client"), InternetTarget("example.com", (), 443), get),
        edge(deploy("client"), AwsTarget("*"), get),
        edge(deploy("client"), deploy("unlabelled"), get),
    ]
    labels = {server: {"app": "server", "version": "v1"}}
    (policy,) = authorization_policies(edges, labels_of=lambda w: labels.get(w, {}))
    assert policy["spec"]["selector"] == {"matchLabels": {"app": "server", "version": "v1"}}
    names = [p["metadata"]["name"] for p in authorization_policies(edges)]
    assert names == [
        "access-to-server-from-observed-clients",
        "access-to-unlabelled-from-observed-clients",
    ]


def test_two_kinds_of_one_name_get_distinct_names_and_clients_of_other_namespaces() -> None:
    get = HttpResource("/", ("GET",))
    edges = [
        edge(deploy("job", "batch", "CronJob"), deploy("api"), get),
        edge(deploy("web"), deploy("api", kind="StatefulSet"), get),
    ]
    policies = authorization_policies(edges)
    assert [p["metadata"]["name"] for p in policies] == [
        "access-to-api-deployment-from-observed-clients",
        "access-to-api-statefulset-from-observed-clients",
    ]
    assert policies[0]["spec"]["rules"][0]["from"] == [{"source": {"namespaces": ["batch"]}}]


def test_validation_catches_wrong_documents() -> None:
    (policy,) = authorization_policies(tutorial_edges())
    policy["spec"]["action"] = "MAYBE"
    policy["spec"]["rules"][0]["to"][0]["operation"]["path"] = ["/"]
    problems = validate(policy, load_crd(CRD))
    assert any("'MAYBE' is not one of" in p for p in problems), problems
    assert any("'path' was unexpected" in p for p in problems), problems


def test_same_edges_in_any_order_give_identical_output() -> None:
    edges = tutorial_edges()
    expected = yaml_documents(authorization_policies(edges))
    for seed in range(5):
        shuffled = list(edges)
        random.Random(seed).shuffle(shuffled)
        assert yaml_documents(authorization_policies(shuffled)) == expected


# --------------------------------------------------------------------------- properties

segment = st.one_of(
    st.from_regex(r"\A[a-z0-9-]{1,6}\Z"),
    st.sampled_from(["{id}", "{orderId}", "{uuid}", "v{n}", "{"]),
)
paths = st.lists(segment, min_size=0, max_size=4).map(lambda s: "/" + "/".join(s))
names = st.from_regex(r"\A[a-z]([a-z0-9-]{0,8}[a-z0-9])?\Z")
identities = st.builds(WorkloadIdentity, st.sampled_from(["shop", NS]), names, st.just("Deployment"))
resources = st.builds(
    HttpResource,
    path=paths,
    methods=st.lists(st.sampled_from(["GET", "post", "DELETE", "PATCH"]), max_size=2).map(tuple),
    principals=st.lists(
        st.sampled_from(["", SPIFFE_CLIENT, "spiffe://cluster.local/ns/shop/sa/default"]), max_size=2
    ).map(tuple),
    statuses=st.lists(st.sampled_from([200, 404, 503]), max_size=2).map(tuple),
)
edges_strategy = st.lists(
    st.builds(
        Edge,
        client=identities,
        target=identities,
        first_seen=st.just(T0),
        last_seen=st.just(T0 + 1),
        http=st.lists(resources, max_size=4).map(tuple),
    ),
    max_size=8,
)
TEMPLATE = re.compile(r"\{(?!\*\})")  # a brace that does not open Istio's "{*}"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edges=edges_strategy)
def test_any_edges_give_valid_policies_without_literal_templates(edges: list[Edge]) -> None:
    policies = authorization_policies(edges)
    for policy in policies:
        assert_valid(policy)
        for rule in policy["spec"]["rules"]:
            for to in rule["to"]:
                for path in to["operation"]["paths"]:
                    assert not TEMPLATE.search(path), path
                    assert "{*}" not in path or not path.endswith("*") or path.endswith("{*}"), path
    # every observed (path, method) is allowed on its server: nothing observed is left out
    by_server = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in policies}
    for e in edges:
        assert isinstance(e.target, WorkloadIdentity)
        if not e.http:
            continue
        policy = by_server[(e.target.namespace, f"access-to-{e.target.name}-from-observed-clients")]
        operations = [to["operation"] for rule in policy["spec"]["rules"] for to in rule["to"]]
        for r in e.http:
            methods = {m.upper() for m in r.methods}
            assert any(
                path_pattern(r.path) in op["paths"] and ("methods" not in op or methods <= set(op["methods"]))
                for op in operations
            ), (r, operations)
    assert authorization_policies(reversed(edges)) == policies
