"""``network-mapper export --format networkpolicy [--exact-ports] [--egress]`` and ``--format cilium``
as a user runs them (``main(argv)`` against a stand-in mapper through the CLI's transport seam),
and :func:`agent.cli.exporting.export` given the cluster's facts."""

from __future__ import annotations

import os

import kubernetes_validate
import pytest
import yaml

from agent.cli import main as cli
from agent.cli.exporting import export
from agent.model import (
    ClusterFacts,
    Edge,
    InternetTarget,
    Method,
    NodeFacts,
    Target,
    WorkloadFacts,
    WorkloadIdentity,
)
from tests.unit.cli.test_cli_export import run, stand_in_mapper
from tests.unit.exports.test_exports_cilium import problems

T0 = 1764296106.918878
FRONTEND = WorkloadIdentity("shop", "frontend", "Deployment")
CART = WorkloadIdentity("shop", "cartservice", "Deployment")
AGENT = WorkloadIdentity("monitoring", "node-agent", "DaemonSet")


def edge(client: WorkloadIdentity, target: Target, ports: tuple[int, ...] = ()) -> Edge:
    return Edge(client, target, T0, T0 + 1, frozenset({Method.TCP}), ports=ports)


EDGES = [
    edge(FRONTEND, CART, (7070,)),
    edge(FRONTEND, InternetTarget("api.example.com", ("93.184.216.34",), 443)),
]


def test_networkpolicy_exact_ports_and_egress(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, stand_in_mapper(EDGES), "export", "--format", "networkpolicy")
    assert (status, err) == (0, "")
    (plain,) = list(yaml.safe_load_all(out))
    assert "ports" not in plain["spec"]["ingress"][0]  # the default: every port

    status, out, err = run(
        capsys, stand_in_mapper(EDGES), "export", "--format", "networkpolicy", "--exact-ports", "--egress"
    )
    assert (status, err) == (0, "")
    ingress, egress = list(yaml.safe_load_all(out))
    assert ingress["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 7070}]
    assert egress["metadata"]["name"] == "access-from-frontend-to-observed-servers"
    assert egress["spec"]["policyTypes"] == ["Egress"]
    assert {
        "to": [{"ipBlock": {"cidr": "93.184.216.34/32"}}],
        "ports": [{"protocol": "TCP", "port": 443}],
    } in (egress["spec"]["egress"])
    for policy in (ingress, egress):
        kubernetes_validate.validate(policy, kubernetes_validate.latest_version(), strict=True)


def test_cilium_format(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, stand_in_mapper(EDGES), "export", "--format", "cilium")
    assert (status, err) == (0, "")
    (policy,) = list(yaml.safe_load_all(out))
    assert {
        "toFQDNs": [{"matchName": "api.example.com"}],
        "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}],
    } in (policy["spec"]["egress"])
    assert problems(policy) == []


@pytest.mark.parametrize("flag", ["--exact-ports", "--egress"])
def test_networkpolicy_flags_with_another_format_are_usage_errors(
    capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    status, out, err = run(capsys, stand_in_mapper(EDGES), "export", "--format", "cilium", flag)
    assert (status, out) == (2, "")
    assert f"{flag} needs --format networkpolicy" in err


def test_export_with_facts_admits_host_network_clients_by_node_address() -> None:
    args = cli.build_parser(os.environ).parse_args(["export", "--format", "networkpolicy", "--exact-ports"])
    facts = ClusterFacts(
        workloads=(WorkloadFacts(AGENT, (("app", "node-agent"),), host_network=True),),
        nodes=(NodeFacts("node-a", ("10.0.0.1",)),),
    )
    (policy,) = yaml.safe_load_all(export([edge(AGENT, CART, (7070,))], args, {}, facts))
    assert policy["spec"]["ingress"] == [
        {"from": [{"ipBlock": {"cidr": "10.0.0.1/32"}}], "ports": [{"protocol": "TCP", "port": 7070}]}
    ]
    (without,) = yaml.safe_load_all(export([edge(AGENT, CART, (7070,))], args, {}))
    assert "ipBlock" not in repr(without)


def test_help_explains_the_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["export", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--exact-ports networkpolicy: allow only the observed TCP server ports" in out
    assert "UDP other than DNS is not observed" in out
    assert "--egress networkpolicy: also an egress policy per client" in out
    assert "cilium CiliumNetworkPolicies" in out
