"""Resolver: observations → edges against a hand-built ClusterState (IP reuse, hostNetwork, DNS, ...)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from agent.mapper.cluster import ClusterState
from agent.mapper.resolver import Resolver
from agent.model import (
    AwsOperation,
    AwsTarget,
    DnsAnswer,
    HttpResource,
    InternetTarget,
    IstioRequest,
    KafkaAccess,
    KafkaTopic,
    Method,
    SocketConnection,
    TcpConnection,
    WorkloadIdentity,
)

T0 = 1_700_000_000.0
NS = "shop"
NODE_IP = "192.168.1.10"


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(
    name: str,
    ip: str = "",
    *,
    deployment: str | None = None,
    created: float = T0,
    host_network: bool = False,
    ports: tuple[int, ...] = (),
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": NS,
        "uid": f"uid-{name}",
        "creationTimestamp": iso(created),
        "labels": labels or {},
    }
    if deployment:
        meta["ownerReferences"] = [
            {"kind": "ReplicaSet", "name": f"{deployment}-rs", "uid": f"rs-{deployment}", "controller": True}
        ]
    return {
        "metadata": meta,
        "spec": {
            "nodeName": "node-1",
            "hostNetwork": host_network,
            "containers": [{"name": "c", "ports": [{"containerPort": p} for p in ports]}],
        },
        "status": {
            "phase": "Running",
            "podIP": NODE_IP if host_network else ip,
            "hostIP": NODE_IP,
            "startTime": iso(created),
        },
    }


def add_deployment(state: ClusterState, name: str, *pods: tuple[str, str], created: float = T0) -> None:
    state.apply(
        "ADDED", "Deployment", {"metadata": {"name": name, "namespace": NS, "uid": f"dep-{name}"}}, created
    )
    rs = {
        "metadata": {
            "name": f"{name}-rs",
            "namespace": NS,
            "uid": f"rs-{name}",
            "ownerReferences": [
                {"kind": "Deployment", "name": name, "uid": f"dep-{name}", "controller": True}
            ],
        }
    }
    state.apply("ADDED", "ReplicaSet", rs, created)
    for pod_name, ip in pods:
        state.apply("ADDED", "Pod", pod(pod_name, ip, deployment=name, created=created), created)


def add_service(state: ClusterState, name: str, cluster_ip: str, *pods: tuple[str, str]) -> None:
    state.apply(
        "ADDED",
        "Service",
        {
            "metadata": {"name": name, "namespace": NS, "uid": f"svc-{name}", "creationTimestamp": iso(T0)},
            "spec": {"clusterIP": cluster_ip},
        },
        T0,
    )
    addresses = [
        {"ip": ip, "targetRef": {"kind": "Pod", "name": n, "namespace": NS, "uid": f"uid-{n}"}}
        for n, ip in pods
    ]
    state.apply(
        "ADDED",
        "Endpoints",
        {"metadata": {"name": name, "namespace": NS}, "subsets": [{"addresses": addresses}]},
        T0,
    )


def dep(name: str) -> WorkloadIdentity:
    return WorkloadIdentity(NS, name, "Deployment")


@pytest.fixture
def state() -> ClusterState:
    s = ClusterState()
    add_deployment(s, "frontend", ("frontend-a", "10.244.0.10"))
    add_deployment(s, "cart", ("cart-a", "10.244.0.20"), ("cart-b", "10.244.0.21"))
    add_deployment(s, "redis", ("redis-a", "10.244.0.30"))
    add_service(s, "cartservice", "10.96.0.20", ("cart-a", "10.244.0.20"), ("cart-b", "10.244.0.21"))
    add_service(s, "redis-cart", "10.96.0.30", ("redis-a", "10.244.0.30"))
    return s


def dns(client: str, qname: str, *ips: str, t: float = T0 + 10) -> DnsAnswer:
    return DnsAnswer(client, 40000, "10.96.0.10", qname, ips, t)


def tcp(client: str, server: str, port: int = 80, t: float = T0 + 10) -> TcpConnection:
    return TcpConnection(client, 40000, server, port, t)


# -- DNS ------------------------------------------------------------------------------------------


def test_dns_service_name_resolves_to_endpoint_workload(state: ClusterState) -> None:
    [edge] = Resolver(state).resolve(dns("10.244.0.10", "cartservice.shop.svc.cluster.local.", "10.96.0.20"))
    assert edge.client == dep("frontend") and edge.target == dep("cart")
    assert edge.target_service == "cartservice"
    assert edge.methods == frozenset({Method.DNS}) and edge.count == 1
    assert edge.first_seen == edge.last_seen == T0 + 10 and not edge.ambiguous


def test_dns_service_backed_by_two_workloads_gives_two_edges(state: ClusterState) -> None:
    add_service(state, "mixed", "10.96.0.40", ("cart-a", "10.244.0.20"), ("redis-a", "10.244.0.30"))
    edges = Resolver(state).resolve(dns("10.244.0.10", "mixed.shop.svc.cluster.local", "10.96.0.40"))
    assert sorted(e.target for e in edges) == [dep("cart"), dep("redis")]  # type: ignore[type-var]
    assert {e.target_service for e in edges} == {"mixed"}


def test_dns_external_name_is_an_internet_target_with_sorted_ips(state: ClusterState) -> None:
    [edge] = Resolver(state).resolve(dns("10.244.0.10", "API.Example.com.", "93.184.216.34", "1.2.3.4"))
    assert edge.target == InternetTarget("api.example.com", ("1.2.3.4", "93.184.216.34"))


def test_an_external_name_answered_with_the_clusters_addresses_is_not_the_internet(
    state: ClusterState,
) -> None:
    # The AWS visibility forwarder answers AWS names with its proxy's ClusterIP: that is no Internet
    # address (the TCP connection shows the proxy); in-cluster addresses leave a mixed answer.
    resolver = Resolver(state, internal_cidrs=["10.244.0.0/16", "10.96.0.0/12"])
    assert resolver.resolve(dns("10.244.0.10", "s3.amazonaws.com", "10.96.0.30")) == []
    assert resolver.resolve(dns("10.244.0.10", "s3.amazonaws.com", "10.244.9.9")) == []  # an unknown pod IP
    [edge] = resolver.resolve(dns("10.244.0.10", "s3.amazonaws.com", "10.96.0.30", "52.216.0.1"))
    assert edge.target == InternetTarget("s3.amazonaws.com", ("52.216.0.1",))
    assert resolver.stats["dns_external_name_in_cluster"] == 3


def test_dns_other_cluster_names_and_unknown_services_give_nothing(state: ClusterState) -> None:
    resolver = Resolver(state)
    assert resolver.resolve(dns("10.244.0.10", "foo.cluster.local", "10.0.0.1")) == []
    assert resolver.resolve(dns("10.244.0.10", "nope.shop.svc.cluster.local", "10.96.0.99")) == []
    assert resolver.stats["dns_cluster_name_unsupported"] == 1 and resolver.stats["dns_service_unknown"] == 1


def test_dns_custom_cluster_domain(state: ClusterState) -> None:
    resolver = Resolver(state, cluster_domain="corp.internal")
    [edge] = resolver.resolve(dns("10.244.0.10", "redis-cart.shop.svc.corp.internal", "10.96.0.30"))
    assert edge.target == dep("redis")
    [external] = resolver.resolve(dns("10.244.0.10", "redis-cart.shop.svc.cluster.local", "1.1.1.1"))
    assert isinstance(external.target, InternetTarget)


def test_dns_pod_name_and_headless_service(state: ClusterState) -> None:
    resolver = Resolver(state)
    [edge] = resolver.resolve(dns("10.244.0.10", "10-244-0-30.shop.pod.cluster.local", "10.244.0.30"))
    assert edge.target == dep("redis")
    state.apply(
        "ADDED",
        "Service",
        {
            "metadata": {"name": "cart-hl", "namespace": NS, "uid": "hl", "creationTimestamp": iso(T0)},
            "spec": {"clusterIP": "None"},
        },
        T0,
    )
    edges = resolver.resolve(
        dns("10.244.0.10", "cart-hl.shop.svc.cluster.local", "10.244.0.20", "10.244.0.21")
    )
    assert [(e.target, e.target_service) for e in edges] == [(dep("cart"), "cart-hl")]
    [one] = resolver.resolve(dns("10.244.0.10", "cart-a.cart-hl.shop.svc.cluster.local", "10.244.0.20"))
    assert one.target == dep("cart") and one.target_service == "cart-hl"


# -- IP reuse -------------------------------------------------------------------------------------


def test_ip_reuse_attributes_each_observation_to_the_pod_of_its_time(state: ClusterState) -> None:
    resolver = Resolver(state)
    state.apply("DELETED", "Pod", pod("frontend-a", "10.244.0.10", deployment="frontend"), T0 + 100)
    add_deployment(state, "intruder", ("intruder-a", "10.244.0.10"), created=T0 + 200)
    query = "redis-cart.shop.svc.cluster.local"
    assert resolver.resolve(dns("10.244.0.10", query, t=T0 + 50))[0].client == dep("frontend")
    assert resolver.resolve(dns("10.244.0.10", query, t=T0 + 150)) == []
    assert resolver.resolve(dns("10.244.0.10", query, t=T0 + 250))[0].client == dep("intruder")
    assert resolver.resolve(dns("10.244.0.10", query, t=T0 - 5)) == []  # before anyone had the IP
    assert resolver.stats["client_unknown_ip"] == 2


# -- TCP / socket scan ----------------------------------------------------------------------------


def test_tcp_to_cluster_ip_pod_ip_and_internet(state: ClusterState) -> None:
    resolver = Resolver(state)
    [via_service] = resolver.resolve(tcp("10.244.0.20", "10.96.0.30", 6379))
    assert via_service.target == dep("redis") and via_service.target_service == "redis-cart"
    assert via_service.methods == frozenset({Method.TCP})
    [direct] = resolver.resolve(tcp("10.244.0.20", "10.244.0.30", 6379))
    assert direct.target == dep("redis") and direct.target_service == ""
    [external] = resolver.resolve(tcp("10.244.0.20", "8.8.8.8", 443))
    assert external.target == InternetTarget("", ("8.8.8.8",), 443)


def test_unknown_in_cluster_ips_are_not_internet(state: ClusterState) -> None:
    resolver = Resolver(state, internal_cidrs=["10.244.0.0/16", "10.96.0.0/12"])
    assert resolver.resolve(tcp("10.244.0.20", "10.244.7.7")) == []
    assert resolver.resolve(tcp("10.244.0.20", "127.0.0.1")) == []
    assert resolver.stats["server_unknown_cluster_ip"] == 2


def test_self_edges_and_unknown_clients_are_dropped(state: ClusterState) -> None:
    resolver = Resolver(state)
    assert resolver.resolve(tcp("10.244.0.20", "10.244.0.21")) == []  # cart-a → cart-b: same workload
    assert resolver.resolve(tcp("10.1.2.3", "10.244.0.21")) == []
    assert resolver.stats["self_edge"] == 1 and resolver.stats["client_unknown_ip"] == 1


def test_socket_scan_hostname_confirms_the_ip_holder_across_reuse(state: ClusterState) -> None:
    resolver = Resolver(state)
    state.apply("DELETED", "Pod", pod("frontend-a", "10.244.0.10", deployment="frontend"), T0 + 100)
    add_deployment(state, "intruder", ("intruder-a", "10.244.0.10"), created=T0 + 100)
    # The scan ran just before the deletion was seen, but the socket belonged to frontend-a.
    scan = SocketConnection("10.244.0.10", 40000, "10.96.0.30", 6379, T0 + 101, client_hostname="frontend-a")
    [edge] = resolver.resolve(scan)
    assert edge.client == dep("frontend") and edge.methods == frozenset({Method.SOCKET_SCAN})


def test_tcp_from_node_ip_is_never_a_regular_pod(state: ClusterState) -> None:
    resolver = Resolver(state)
    # Only regular pods on the node: kubelet probes from the node IP must not become edges.
    assert resolver.resolve(tcp(NODE_IP, "10.244.0.30", 6379)) == []
    assert resolver.stats["ambiguous_host_network"] == 1


def test_tcp_from_node_ip_with_one_host_network_workload_is_ambiguous(state: ClusterState) -> None:
    state.apply("ADDED", "Pod", pod("node-agent-x", host_network=True), T0)
    [edge] = Resolver(state).resolve(tcp(NODE_IP, "10.96.0.30", 6379))
    assert edge.client == WorkloadIdentity(NS, "node-agent-x", "Pod") and edge.ambiguous


def test_node_ip_with_several_host_network_workloads(state: ClusterState) -> None:
    state.apply("ADDED", "Pod", pod("agent-a", host_network=True), T0)
    state.apply("ADDED", "Pod", pod("agent-b", host_network=True), T0)
    resolver = Resolver(state)
    assert resolver.resolve(tcp(NODE_IP, "10.96.0.30", 6379)) == []
    scan = SocketConnection(NODE_IP, 40000, "10.96.0.30", 6379, T0 + 10, client_hostname="agent-b")
    [edge] = resolver.resolve(scan)
    assert edge.client == WorkloadIdentity(NS, "agent-b", "Pod") and not edge.ambiguous


def test_server_on_node_ip_matches_the_listening_host_network_pod(state: ClusterState) -> None:
    state.apply("ADDED", "Pod", pod("metrics-x", host_network=True, ports=(9100,)), T0)
    resolver = Resolver(state)
    [edge] = resolver.resolve(tcp("10.244.0.10", NODE_IP, 9100))
    assert edge.target == WorkloadIdentity(NS, "metrics-x", "Pod") and not edge.ambiguous
    assert resolver.resolve(tcp("10.244.0.10", NODE_IP, 10250)) == []  # the kubelet is no pod


# -- Kafka, Istio, AWS ----------------------------------------------------------------------------


def test_kafka_access_edge(state: ClusterState) -> None:
    obs = KafkaAccess("10.244.0.20", WorkloadIdentity(NS, "redis"), "orders", "consume", T0 + 10)
    [edge] = Resolver(state).resolve(obs)
    assert edge.client == dep("cart") and edge.target == dep("redis")  # kind filled in
    assert edge.kafka_topics == (KafkaTopic("orders", ("consume",)),)
    assert edge.methods == frozenset({Method.KAFKA})


def test_kafka_access_keeps_the_principal_and_a_denial_apart(state: ClusterState) -> None:
    server = WorkloadIdentity(NS, "redis")
    allowed = KafkaAccess("10.244.0.20", server, "orders", "read", T0 + 10, 0, "User:CN=cart", True)
    denied = KafkaAccess("10.244.0.20", server, "orders", "write", T0 + 10, 0, "User:CN=cart", False)
    [a] = Resolver(state).resolve(allowed)
    [d] = Resolver(state).resolve(denied)
    assert a.kafka_topics == (KafkaTopic("orders", ("read",), "User:CN=cart"),)
    assert d.kafka_topics == (KafkaTopic("orders", (), "User:CN=cart", ("write",)),)


def test_istio_request_keeps_the_principal_and_codes(state: ClusterState) -> None:
    principal = "spiffe://cluster.local/ns/shop/sa/frontend"
    obs = IstioRequest(
        "frontend", NS, "cart", NS, "cartservice", "/cart", "GET", 1, T0, principal, (200, 404)
    )
    [edge] = Resolver(state).resolve(obs)
    assert edge.http == (HttpResource("/cart", ("GET",), (principal,), (200, 404)),)


def test_istio_request_edge(state: ClusterState) -> None:
    obs = IstioRequest("frontend", NS, "cart", NS, "cartservice", "/cart", "GET", 7, T0 + 10)
    [edge] = Resolver(state).resolve(obs)
    assert (edge.client, edge.target, edge.count) == (dep("frontend"), dep("cart"), 7)
    assert edge.http == (HttpResource("/cart", ("GET",)),) and edge.target_service == "cartservice"
    unknown = IstioRequest("ghost", "other", "cart", NS, "", "/", "GET", 1, T0)
    assert Resolver(state).resolve(unknown)[0].client == WorkloadIdentity("other", "ghost", "")


def test_aws_operation_edge(state: ClusterState) -> None:
    resolver = Resolver(state)
    [edge] = resolver.resolve(
        AwsOperation("10.244.0.20", 1, "s3", "GetObject", "arn:aws:s3:::b/k", "eu-west-1", T0 + 10)
    )
    assert edge.target == AwsTarget("arn:aws:s3:::b/k") and edge.aws_actions == ("s3:GetObject",)
    [star] = resolver.resolve(
        AwsOperation("10.244.0.20", 1, "sts", "GetCallerIdentity", "", "us-east-1", T0 + 10)
    )
    assert star.target == AwsTarget("*") and star.methods == frozenset({Method.AWS})


def test_fast_edge_constructor_builds_the_same_edge_as_the_dataclass() -> None:
    from agent.model import Edge, new_edge  # what the resolver builds its edges with

    a, b = dep("a"), InternetTarget("x.example", ("1.2.3.4",), 443)
    args = (
        a,
        b,
        T0,
        T0,
        frozenset({Method.TCP}),
        3,
        (HttpResource("/", ("GET",)),),
        (KafkaTopic("t"),),
        ("s3:Get",),
        "svc",
        True,
    )
    fast, plain = new_edge(*args), Edge(*args)
    assert fast == plain and hash(fast) == hash(plain)
    assert fast.key == (a, b) and fast.first_seen == fast.last_seen == T0


def test_memoised_answers_follow_cluster_changes(state: ClusterState) -> None:
    resolver = Resolver(state)
    query = dns("10.244.0.10", "redis-cart.shop.svc.cluster.local", "10.96.0.30")
    assert resolver.resolve(query)[0].target == dep("redis")
    # The service's endpoints move to another workload: the cached answer must not survive.
    address = {
        "ip": "10.244.0.20",
        "targetRef": {"kind": "Pod", "name": "cart-a", "namespace": NS, "uid": "uid-cart-a"},
    }
    state.apply(
        "MODIFIED",
        "Endpoints",
        {"metadata": {"name": "redis-cart", "namespace": NS}, "subsets": [{"addresses": [address]}]},
        T0 + 5,
    )
    assert resolver.resolve(query)[0].target == dep("cart")
    assert resolver.resolve(tcp("10.244.0.10", "10.96.0.30", 6379))[0].target == dep("cart")


# -- Kafka server named by pod --------------------------------------------------------------------


def test_kafka_server_pod_is_mapped_to_its_workload(state: ClusterState) -> None:
    resolver = Resolver(state)
    obs = KafkaAccess("10.244.0.20", WorkloadIdentity(NS, "redis-a", "Pod"), "orders", "produce", T0 + 10)
    [edge] = resolver.resolve(obs)
    assert edge.client == dep("cart") and edge.target == dep("redis")
    unknown = WorkloadIdentity(NS, "kafka-9", "Pod")
    [kept] = resolver.resolve(KafkaAccess("10.244.0.20", unknown, "orders", "produce", T0 + 10))
    assert kept.target == unknown  # an unknown pod stays as given, and is counted
    assert resolver.stats["kafka_server_pod_unknown"] == 1


# -- one Internet edge per name -------------------------------------------------------------------

API_IP = "198.51.100.10"


def test_connection_to_a_dns_answered_ip_reuses_the_dns_target(state: ClusterState) -> None:
    resolver = Resolver(state)
    [by_dns] = resolver.resolve(dns("10.244.0.10", "api.example.com.", API_IP, "198.51.100.11"))
    named = InternetTarget("api.example.com", (API_IP, "198.51.100.11"))
    assert by_dns.target == named
    [by_tcp] = resolver.resolve(tcp("10.244.0.10", API_IP, 80, t=T0 + 11))
    scan = SocketConnection("10.244.0.10", 40001, "198.51.100.11", 443, T0 + 12, "frontend-a")
    [by_scan] = resolver.resolve(scan)
    assert by_tcp.target == by_scan.target == named and by_tcp.key == by_dns.key  # the store merges them
    assert by_tcp.methods == frozenset({Method.TCP}) and by_scan.methods == frozenset({Method.SOCKET_SCAN})
    assert resolver.stats["internet_ip_named_by_dns"] == 2
    # Another client did not resolve that name; an IP nobody resolved stays IP-only.
    [other] = resolver.resolve(tcp("10.244.0.20", API_IP, 80, t=T0 + 11))
    assert other.target == InternetTarget("", (API_IP,), 80)
    [unnamed] = resolver.resolve(tcp("10.244.0.10", "203.0.113.5", 443, t=T0 + 11))
    assert unnamed.target == InternetTarget("", ("203.0.113.5",), 443)


def test_external_name_service_target_is_reused_with_its_service(state: ClusterState) -> None:
    state.apply(
        "ADDED",
        "Service",
        {
            "metadata": {"name": "payments", "namespace": NS, "uid": "pay", "creationTimestamp": iso(T0)},
            "spec": {"type": "ExternalName", "externalName": "pay.example.net"},
        },
        T0,
    )
    resolver = Resolver(state)
    [by_dns] = resolver.resolve(dns("10.244.0.10", "payments.shop.svc.cluster.local", API_IP))
    [by_tcp] = resolver.resolve(tcp("10.244.0.10", API_IP, 443, t=T0 + 11))
    assert by_tcp.target == by_dns.target == InternetTarget("pay.example.net", (API_IP,))
    assert by_tcp.target_service == "payments"


def test_a_dns_name_holds_for_an_hour_or_its_ttl(state: ClusterState) -> None:
    resolver = Resolver(state)
    resolver.resolve(dns("10.244.0.10", "api.example.com", API_IP, t=T0 + 10))
    long_ttl = DnsAnswer("10.244.0.20", 40000, "10.96.0.10", "cdn.example.com", (API_IP,), T0 + 10, ttl=7200)
    resolver.resolve(long_ttl)
    named = InternetTarget("api.example.com", (API_IP,))
    assert resolver.resolve(tcp("10.244.0.10", API_IP, t=T0 + 5))[0].target == named  # cached by the client
    assert resolver.resolve(tcp("10.244.0.10", API_IP, t=T0 + 3609))[0].target == named
    assert resolver.resolve(tcp("10.244.0.10", API_IP, t=T0 + 3611))[0].target.dns_name == ""  # type: ignore[union-attr]
    assert resolver.resolve(tcp("10.244.0.20", API_IP, t=T0 + 7000))[0].target.dns_name == "cdn.example.com"  # type: ignore[union-attr]


def test_the_latest_answer_names_an_ip_and_the_table_is_bounded(
    state: ClusterState, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.mapper import names

    monkeypatch.setattr(names, "NAMED_MAX", 3)
    resolver = Resolver(state)
    for i, ip in enumerate(["203.0.113.1", "203.0.113.2", "203.0.113.3"]):
        resolver.resolve(dns("10.244.0.10", f"n{i}.example.com", ip, t=T0 + i))
    resolver.resolve(dns("10.244.0.10", "again.example.com", "203.0.113.1", t=T0 + 3))  # refreshed
    resolver.resolve(dns("10.244.0.10", "n3.example.com", "203.0.113.4", t=T0 + 4))  # evicts the oldest

    def name_of(ip: str) -> str:
        return resolver.resolve(tcp("10.244.0.10", ip, t=T0 + 5))[0].target.dns_name  # type: ignore[union-attr]

    assert [name_of(f"203.0.113.{i}") for i in range(1, 5)] == [
        "again.example.com",
        "",
        "n2.example.com",
        "n3.example.com",
    ]


def test_special_and_internal_addresses_are_not_internet(state: ClusterState) -> None:
    resolver = Resolver(state, internal_cidrs=["10.244.0.0/16", "fd00::/8"])
    for ip in ["169.254.1.1", "224.0.0.251", "0.0.0.0", "fe80::1", "::1", "fd00::5", "10.244.9.9", "x"]:
        assert resolver.resolve(tcp("10.244.0.10", ip)) == [], ip
    assert resolver.stats["server_unknown_cluster_ip"] == 8
    for ip in ["8.8.4.4", "2001:db8::1", "10.245.0.1"]:
        [edge] = resolver.resolve(tcp("10.244.0.10", ip))
        assert edge.target == InternetTarget("", (ip,), 80)


def test_mapper_settings_cidrs_become_the_resolvers_internal_networks(state: ClusterState) -> None:
    from agent.mapper.settings import MapperSettings
    from agent.settings import SettingsError, load

    env = {"MAPPER_POD_CIDRS": "10.244.0.0/16, fd00::/8", "MAPPER_SERVICE_CIDRS": "10.96.0.0/12"}
    cluster = load(MapperSettings, [], env).cluster
    assert (cluster.pod_cidrs, cluster.service_cidrs) == (("10.244.0.0/16", "fd00::/8"), ("10.96.0.0/12",))
    assert cluster.internal_cidrs == ("10.244.0.0/16", "fd00::/8", "10.96.0.0/12")
    resolver = Resolver(state, cluster.domain, cluster.internal_cidrs)
    assert resolver.resolve(tcp("10.244.0.10", "10.100.0.1")) == []
    assert load(MapperSettings, [], {}).cluster.internal_cidrs == ()
    with pytest.raises(SettingsError, match=r"--service-cidrs.*not-a-cidr"):
        load(MapperSettings, ["--service-cidrs", "not-a-cidr"], {})
