"""The sandbox's pure parts: kube-proxy rules and controller-style manifests."""

from sandbox import objects
from sandbox.network import NFT_TABLE, ServiceRule, service_ruleset
from sandbox.product import WORKLOADS
from sandbox.topology import DEMO, EXPECTED_DEMO_MAP, EXTRAS, NODE_IP


def _by_name(name: str) -> objects.Workload:
    return next(w for w in WORKLOADS if w.name == name)


def test_single_endpoint_is_a_plain_dnat() -> None:
    text = service_ruleset([ServiceRule("10.96.0.20", 80, "tcp", (("10.244.1.5", 8080),))])
    assert "ip daddr 10.96.0.20 tcp dport 80 dnat to 10.244.1.5:8080" in text
    # The transaction replaces the table whole, so reapplying never duplicates rules.
    assert text.index(f"delete table ip {NFT_TABLE}") < text.index(f"table ip {NFT_TABLE} {{")


def test_several_endpoints_are_balanced_and_empty_services_skipped() -> None:
    text = service_ruleset(
        [
            ServiceRule("10.96.0.30", 53, "udp", (("10.244.1.1", 53), ("10.244.1.2", 53))),
            ServiceRule("10.96.0.31", 80, "tcp", ()),
        ]
    )
    assert "numgen random mod 2 map { 0 : 10.244.1.1 . 53, 1 : 10.244.1.2 . 53 }" in text
    assert "10.96.0.31" not in text


def test_deployment_pod_is_owned_by_a_replicaset_owned_by_the_deployment() -> None:
    plan = objects.plan_pod(_by_name("frontend"), "10.244.1.20")
    deploy, rs = plan.owners
    assert (deploy["kind"], rs["kind"]) == ("Deployment", "ReplicaSet")
    assert rs["metadata"]["ownerReferences"][0]["name"] == "frontend"
    assert plan.pod["metadata"]["ownerReferences"][0]["name"] == rs["metadata"]["name"]
    assert plan.pod_name.startswith(rs["metadata"]["name"] + "-")
    assert plan.ip == "10.244.1.20"


def test_other_owner_kinds_and_identity_hints() -> None:
    sts = objects.plan_pod(_by_name("inventory-db"), "10.244.1.30")
    assert sts.pod_name == "inventory-db-0"
    cron = objects.plan_pod(_by_name("nightly-report"), "10.244.1.31")
    assert [o["kind"] for o in cron.owners] == ["CronJob", "Job"]
    assert cron.pod["metadata"]["ownerReferences"][0]["kind"] == "Job"
    billing = objects.plan_pod(_by_name("billing-v2"), "10.244.1.32")
    assert billing.pod["metadata"]["labels"]["otterize/service-name"] == "billing"
    audit = objects.plan_pod(_by_name("audit-logger"), "10.244.1.33")
    assert audit.pod["metadata"]["annotations"]["intents.otterize.com/workload-name"] == "audit"


def test_host_network_pod_takes_the_node_ip() -> None:
    plan = objects.plan_pod(_by_name("node-agent"), "10.244.1.40")
    assert plan.ip == NODE_IP
    assert plan.pod["spec"]["hostNetwork"] is True


def test_topology_calls_match_the_expected_map() -> None:
    """Every call in the demo's topology is an edge of DESIGN.md's map, and every edge is called."""
    calls: dict[str, set[str]] = {}
    for w in DEMO:
        targets = [a for flag, a in zip(w.args, w.args[1:], strict=False) if flag in {"--call", "--hold"}]
        for t in targets:
            host = t.split("//")[-1].split(":")[0].split("/")[0]
            calls.setdefault(w.name, set()).add(host)
    assert calls == {k: set(v) for k, v in EXPECTED_DEMO_MAP.items()}
    assert {w.namespace for w in EXTRAS} == {"sandbox-extras"}


def test_dns_service_has_udp_and_tcp() -> None:
    svc = objects.service(_by_name("coredns"), "10.96.0.10")
    assert {p["protocol"] for p in svc["spec"]["ports"]} == {"UDP", "TCP"}
    assert svc["metadata"]["name"] == "kube-dns"
