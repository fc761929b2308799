"""Property: the policies we export from a map deny no edge of that map.

Random maps (cross-namespace clients, workloads of two kinds, Service identities, Internet and AWS
targets, edges with and without server ports, HTTP paths and Kafka topics) are exported with
``agent.exports.network_policies`` (with and without cluster facts, ``exact_ports`` and
``egress``) and ``agent.exports.client_intents`` (both versions, with and without
``prefer_services``), written as YAML, read back with ``load_policies`` and checked: no denial."""

from __future__ import annotations

import inspect

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.exports import client_intents, network_policies, yaml_documents
from agent.model import (
    AwsTarget,
    ClusterFacts,
    Edge,
    HttpResource,
    InternetTarget,
    KafkaTopic,
    NamespaceFacts,
    NodeFacts,
    Target,
    WorkloadFacts,
    WorkloadIdentity,
)
from agent.policy import CheckResult, check, load_policies

T0 = 1_764_296_106.0
NAMES = ["api", "db", "web", "worker", "cache"]
NAMESPACES = ["a", "b"]
NODE_ADDRESSES = ["192.168.0.1", "192.168.0.2", "fd00::1"]
EXPORT_OPTIONS = set(inspect.signature(network_policies).parameters) >= {"facts", "exact_ports", "egress"}

workloads = st.builds(
    WorkloadIdentity,
    st.sampled_from(NAMESPACES),
    st.sampled_from(NAMES),
    st.sampled_from(["Deployment", "StatefulSet"]),
)
targets: st.SearchStrategy[Target] = st.one_of(
    workloads,
    workloads,
    st.builds(WorkloadIdentity, st.sampled_from(NAMESPACES), st.sampled_from(NAMES), st.just("Service")),
    st.builds(
        InternetTarget,
        st.sampled_from(["", "api.example.com"]),
        st.lists(st.sampled_from(["1.2.3.4", "10.0.0.9", "2001:db8::1"]), unique=True, max_size=2).map(
            lambda ips: tuple(sorted(ips))
        ),
        st.sampled_from([0, 443]),
    ),
    st.just(AwsTarget("arn:aws:s3:::bucket")),
)
methods = st.lists(st.sampled_from(["GET", "POST", "HEAD", "BREW"]), unique=True, max_size=2).map(
    lambda m: tuple(sorted(m))
)
http = st.lists(
    st.builds(HttpResource, st.sampled_from(["/a", "/b/{id}", "/c/{x}/d", "/"]), methods),
    unique_by=lambda r: r.path,
    max_size=2,
).map(lambda rs: tuple(sorted(rs)))
operations = st.lists(st.sampled_from(["Read", "Write", "Describe", "Bogus"]), unique=True, max_size=2).map(
    lambda o: tuple(sorted(o))
)
topics = st.lists(
    st.builds(KafkaTopic, st.sampled_from(["t1", "t2"]), operations, st.just(""), operations),
    unique_by=lambda t: t.name,
    max_size=2,
).map(lambda ts: tuple(sorted(ts)))
ports = st.lists(st.integers(1, 65535), unique=True, max_size=3).map(lambda p: tuple(sorted(p)))


@st.composite
def edges(draw: st.DrawFn) -> list[Edge]:
    found: dict[tuple[WorkloadIdentity, Target], Edge] = {}
    for _ in range(draw(st.integers(1, 8))):
        client, target = draw(workloads), draw(targets)
        workload = isinstance(target, WorkloadIdentity)
        found[(client, target)] = Edge(
            client,
            target,
            T0,
            T0 + 1,
            ports=draw(ports),
            http=draw(http) if workload else (),
            kafka_topics=draw(topics) if workload else (),
            aws_actions=("s3:GetObject",) if isinstance(target, AwsTarget) else (),
            target_service=draw(st.sampled_from(["", "svc", "other"])) if workload else "",
        )
    return list(found.values())


@st.composite
def facts(draw: st.DrawFn, known: list[Edge]) -> ClusterFacts:
    identities = {e.client for e in known} | {
        e.target for e in known if isinstance(e.target, WorkloadIdentity)
    }
    # hostNetwork pods have their node's address, so facts with hostNetwork pods know the nodes
    nodes = tuple(NodeFacts(f"n{i}", (a,)) for i, a in enumerate(NODE_ADDRESSES))
    facts_of = []
    for identity in sorted(identities):
        if identity.kind == "Service" or not draw(st.booleans()):
            continue
        labels = draw(st.dictionaries(st.sampled_from(["app", "tier"]), st.sampled_from(NAMES), max_size=2))
        host = draw(st.booleans()) and draw(st.booleans())
        ips = draw(st.lists(st.sampled_from(NODE_ADDRESSES), unique=True, max_size=2)) if host else []
        facts_of.append(WorkloadFacts(identity, tuple(sorted(labels.items())), (), host, tuple(sorted(ips))))
    namespaces = tuple(
        NamespaceFacts(ns, (("env", draw(st.sampled_from(["dev", "prod"]))),)) for ns in NAMESPACES
    )
    return ClusterFacts(namespaces, tuple(facts_of), nodes)


def round_trip(
    documents: list[dict[str, object]], the_edges: list[Edge], cluster: ClusterFacts
) -> CheckResult:
    policies = load_policies([("exported.yaml", yaml_documents(documents))])
    return check(the_edges, policies, cluster)


def described(result: CheckResult) -> list[str]:
    return [f"{d.edge.client} → {d.edge.target}: {d.policy} {d.reason}" for d in result.denials]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edges())
def test_exported_network_policies_deny_no_observed_edge(the_edges: list[Edge]) -> None:
    result = round_trip(network_policies(the_edges), the_edges, ClusterFacts())
    assert described(result) == []
    assert result.evaluated + sum(result.skipped.values()) == len(the_edges)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_exported_network_policies_with_options_deny_no_observed_edge(data: st.DataObject) -> None:
    if not EXPORT_OPTIONS:  # the options arrive with the egress export; nothing to check before
        return
    the_edges = data.draw(edges())
    cluster = data.draw(st.one_of(st.just(ClusterFacts()), facts(the_edges)))
    exact_ports, egress = data.draw(st.booleans()), data.draw(st.booleans())
    documents = network_policies(the_edges, facts=cluster, exact_ports=exact_ports, egress=egress)  # type: ignore[call-arg]
    assert described(round_trip(documents, the_edges, cluster)) == []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edges(), st.sampled_from(["v2beta1", "v1alpha3"]), st.booleans())
def test_exported_client_intents_deny_no_observed_edge(
    the_edges: list[Edge], version: str, prefer_services: bool
) -> None:
    documents = client_intents(the_edges, version, prefer_services=prefer_services)
    assert described(round_trip(documents, the_edges, ClusterFacts())) == []


def test_the_property_can_fail() -> None:
    """The same check reports an edge the exported policies do not cover (a sanity check that the
    round trip judges something)."""
    client, server = WorkloadIdentity("a", "web", "Deployment"), WorkloadIdentity("b", "db", "Deployment")
    seen = [Edge(client, server, T0, T0, ports=(5432,))]
    stranger = Edge(WorkloadIdentity("a", "worker", "Deployment"), server, T0, T0, ports=(5432,))
    assert len(round_trip(network_policies(seen), [*seen, stranger], ClusterFacts()).denials) == 1
    assert len(round_trip(client_intents(seen), [*seen, stranger], ClusterFacts()).denials) == 1
