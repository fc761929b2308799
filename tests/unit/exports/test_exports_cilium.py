"""CiliumNetworkPolicy export: an exact document (DNS rule with the L7 DNS rule ``toFQDNs``
needs, ``toEndpoints`` across namespaces, ``toFQDNs`` with and without ports, ``toCIDR``, the API
server and host-network targets as entities), and every document of small and random maps valid
against Cilium's published CRD (``tests/data/cilium/``, its commit in ``COMMIT``), strictly:
unknown fields rejected, as ``kubectl apply`` does."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.exports.cilium import cilium_network_policies
from agent.model import (
    AwsTarget,
    ClusterFacts,
    Edge,
    InternetTarget,
    Method,
    NodeFacts,
    Target,
    WorkloadFacts,
    WorkloadIdentity,
)

CILIUM = Path(__file__).resolve().parents[3] / "tests" / "data" / "cilium"
T0 = 1764296106.918878
JUNCTORS = frozenset({"oneOf", "anyOf", "allOf", "not"})
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def strict(schema: Any, in_junctor: bool = False) -> Any:
    """The CRD's schema rejecting unknown fields (``additionalProperties: false`` wherever it lists
    properties), as the API server prunes and rejects by the structural schema. Not inside
    ``oneOf``/``anyOf``/``allOf``/``not`` branches: those only constrain (Cilium's
    ``endpointSelector`` xor ``nodeSelector``), they declare no fields."""
    if isinstance(schema, dict):
        out = {k: strict(v, in_junctor or k in JUNCTORS) for k, v in schema.items()}
        open_object = out.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in out
        if "properties" in out and not in_junctor and not open_object:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v, in_junctor) for v in schema]
    return schema


@functools.cache
def validator() -> jsonschema.Draft7Validator:
    crd = yaml.safe_load((CILIUM / "ciliumnetworkpolicies.yaml").read_text(encoding="utf-8"))
    assert crd["spec"]["group"] == "cilium.io" and crd["spec"]["names"]["kind"] == "CiliumNetworkPolicy"
    (v2,) = [v for v in crd["spec"]["versions"] if v["name"] == "v2"]
    schema = strict(v2["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {  # what the API server checks of every object's metadata
        "type": "object",
        "required": ["name", "namespace"],
        "properties": {
            "name": {"type": "string", "maxLength": 253, "pattern": DNS_LABEL},
            "namespace": {"type": "string", "maxLength": 63, "pattern": DNS_LABEL},
            "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 63}},
        },
    }
    return jsonschema.Draft7Validator(schema)


def problems(document: dict[str, Any]) -> list[str]:
    found = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator().iter_errors(document)]
    if (document.get("apiVersion"), document.get("kind")) != ("cilium.io/v2", "CiliumNetworkPolicy"):
        found.append(
            f"not a cilium.io/v2 CiliumNetworkPolicy: {document.get('apiVersion')}/{document.get('kind')}"
        )
    return found


def deploy(name: str, ns: str = "shop", kind: str = "Deployment") -> WorkloadIdentity:
    return WorkloadIdentity(ns, name, kind)


def edge(client: WorkloadIdentity, target: Target, ports: tuple[int, ...] = ()) -> Edge:
    return Edge(client, target, T0, T0 + 1, frozenset({Method.TCP}), ports=ports)


FRONTEND = deploy("frontend")
NODE_AGENT = deploy("node-agent", "kube-system", "DaemonSet")
EDGES = [
    edge(FRONTEND, deploy("cartservice"), (7070,)),
    edge(FRONTEND, deploy("redis", "data", "StatefulSet")),
    edge(FRONTEND, InternetTarget("api.example.com", ("93.184.216.34",), 443)),
    edge(FRONTEND, InternetTarget("pypi.org", (), 0)),  # name only, port unknown
    edge(FRONTEND, InternetTarget("", ("2606:2800:220:1::",), 8443)),  # address only
    edge(FRONTEND, WorkloadIdentity("default", "kubernetes", "Service"), (443,)),
    edge(FRONTEND, WorkloadIdentity("billing", "ledger", "Service")),
    edge(FRONTEND, NODE_AGENT, (9100,)),
    edge(NODE_AGENT, deploy("cartservice")),  # a host-network client: no policy
]
FACTS = ClusterFacts(
    workloads=(
        WorkloadFacts(NODE_AGENT, (("app", "node-agent"),), host_network=True),
        WorkloadFacts(FRONTEND, (("app", "frontend"), ("tier", "web"))),
    ),
    nodes=(NodeFacts("node-a", ("10.0.0.1",)),),
)


def ports(*numbers: int) -> list[dict[str, Any]]:
    return [{"ports": [{"port": str(n), "protocol": "TCP"} for n in numbers]}]


def test_exact_policy_with_fqdns_endpoints_cidrs_and_entities() -> None:
    (policy,) = cilium_network_policies(EDGES, facts=FACTS)
    assert policy == {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {
            "name": "access-from-frontend-to-observed-servers",
            "namespace": "shop",
            "labels": {"app.kubernetes.io/managed-by": "network-mapper"},
        },
        "spec": {
            "endpointSelector": {"matchLabels": {"app": "frontend", "tier": "web"}},
            "egress": [
                {  # toFQDNs needs Cilium's DNS proxy to see the lookups
                    "toEndpoints": [
                        {
                            "matchLabels": {
                                "k8s:io.kubernetes.pod.namespace": "kube-system",
                                "k8s:k8s-app": "kube-dns",
                            }
                        }
                    ],
                    "toPorts": [
                        {
                            "ports": [{"port": "53", "protocol": "UDP"}, {"port": "53", "protocol": "TCP"}],
                            "rules": {"dns": [{"matchPattern": "*"}]},
                        }
                    ],
                },
                {
                    "toEndpoints": [
                        {
                            "matchLabels": {
                                "app.kubernetes.io/name": "redis",
                                "k8s:io.kubernetes.pod.namespace": "data",
                            }
                        },
                        {"matchLabels": {"app.kubernetes.io/name": "cartservice"}},
                    ]
                },
                {"toEntities": ["host", "kube-apiserver", "remote-node"]},
                {"toServices": [{"k8sService": {"serviceName": "ledger", "namespace": "billing"}}]},
                {"toFQDNs": [{"matchName": "pypi.org"}]},
                {"toFQDNs": [{"matchName": "api.example.com"}], "toPorts": ports(443)},
                {"toCIDR": ["2606:2800:220:1::/128"], "toPorts": ports(8443)},
            ],
        },
    }
    assert problems(policy) == []


def test_aws_targets_and_internet_targets_of_unknown_address() -> None:
    edges = [
        edge(FRONTEND, AwsTarget("arn:aws:s3:::bucket")),
        edge(FRONTEND, InternetTarget("", (), 5432)),
        edge(FRONTEND, InternetTarget("bad name!", (), 443)),  # not a DNS name Cilium accepts
    ]
    (policy,) = cilium_network_policies(edges)
    assert policy["spec"]["egress"][1:] == [
        {
            "toFQDNs": [
                {"matchPattern": "*.amazonaws.com"},
                {"matchPattern": "*.*.amazonaws.com"},
                {"matchPattern": "*.*.*.amazonaws.com"},
            ],
            "toPorts": ports(443),
        },
        {"toEntities": ["world"], "toPorts": ports(443)},
        {"toEntities": ["world"], "toPorts": ports(5432)},
    ]
    assert problems(policy) == []


def test_the_crd_check_rejects_what_cilium_rejects() -> None:
    (policy,) = cilium_network_policies(EDGES[:3])
    assert problems(policy) == []
    wrong_field = {**policy, "spec": {**policy["spec"], "egres": []}}
    assert any("egres" in p for p in problems(wrong_field))
    no_selector = {**policy, "spec": {"egress": policy["spec"]["egress"]}}
    assert problems(no_selector)  # neither endpointSelector nor nodeSelector
    bad_port = yaml.safe_load(yaml.safe_dump(policy))
    bad_port["spec"]["egress"][-1]["toPorts"][0]["ports"][0]["port"] = 443  # Cilium wants a string
    assert problems(bad_port)
    bad_fqdn = yaml.safe_load(yaml.safe_dump(policy))
    bad_fqdn["spec"]["egress"][-1]["toFQDNs"][0]["matchName"] = "bad name!"
    assert problems(bad_fqdn)


def test_the_stored_crd_is_the_one_named_in_commit() -> None:
    commit = dict(
        line.split(": ", 1) for line in (CILIUM / "COMMIT").read_text(encoding="utf-8").splitlines() if line
    )
    assert commit["repository"] == "cilium/cilium"
    assert commit["path"] == "pkg/k8s/apis/cilium.io/client/crds/v2/ciliumnetworkpolicies.yaml"
    assert len(commit["commit"]) == 40


namespaces = st.sampled_from(["shop", "batch"])
workloads = st.builds(
    WorkloadIdentity,
    namespace=namespaces,
    name=st.from_regex(r"\A[a-z]([a-z0-9.-]{0,70}[a-z0-9])?\Z"),
    kind=st.sampled_from(["Deployment", "StatefulSet"]),
)
targets: st.SearchStrategy[Target] = st.one_of(
    workloads,
    st.builds(
        WorkloadIdentity,
        namespace=namespaces,
        name=st.sampled_from(["kubernetes", "db"]),
        kind=st.just("Service"),
    ),
    st.builds(
        InternetTarget,
        dns_name=st.sampled_from(["", "api.example.com", "x_y.example.org.", "*bad*"]),
        ips=st.lists(st.sampled_from(["93.184.216.34", "2606:2800:220:1::", "not-an-ip"]), unique=True).map(
            tuple
        ),
        port=st.sampled_from([0, 443]),
    ),
    st.just(AwsTarget("*")),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(workloads, targets, st.lists(st.integers(1, 65535), max_size=2)), max_size=8))
def test_any_map_gives_policies_valid_for_the_crd(
    items: list[tuple[WorkloadIdentity, Target, list[int]]],
) -> None:
    edges = [edge(c, t, tuple(sorted(set(p)))) for c, t, p in items]
    policies = cilium_network_policies(edges)
    for policy in policies:
        assert problems(policy) == [], policy
    assert len({(p["metadata"]["namespace"], p["metadata"]["name"]) for p in policies}) == len(policies)
    assert cilium_network_policies(list(reversed(edges))) == policies
