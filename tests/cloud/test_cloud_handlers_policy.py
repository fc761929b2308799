"""``POST /v1/tenants/{tenantId}/check``: policy documents (YAML or JSON) evaluated on a cluster's
graph with the facts of its newest snapshot; bad documents are 400s naming the document."""

from __future__ import annotations

import json
import time

from cloud_handler_support import Cloud, Reply, cloud_fixture, edge  # noqa: F401

from agent import snapshotwire
from agent.model import ClusterFacts, NamespaceFacts, Snapshot, WorkloadFacts, WorkloadIdentity
from agent.wiretime import format_time
from cloud_functions.handlers.policy import MAX_POLICY_BYTES

NOW = float(int(time.time()))
LAST = format_time(NOW - 5)

ISOLATE_CART = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: cart, namespace: shop}
spec:
  podSelector:
    matchLabels: {app.kubernetes.io/name: cart}
  policyTypes: [Ingress]
  ingress: []
"""
ALLOW_FRONTEND_8080 = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: cart, namespace: shop}
spec:
  podSelector:
    matchLabels: {tier: cart}
  ingress:
  - from:
    - podSelector: {matchLabels: {app.kubernetes.io/name: frontend}}
    ports:
    - port: http
"""


def check(cloud: Cloud, body: str, content_type: str = "application/yaml", **query: str) -> Reply:
    cluster = next(iter(cloud.a.clusters))
    return cloud.request(
        "POST",
        f"/v1/tenants/{cloud.a.id}/check",
        token=cloud.a.read_token,
        raw=body.encode(),
        content_type=content_type,
        query={"cluster": cluster} | query,
    )


def seed(cloud: Cloud) -> None:
    cluster = next(iter(cloud.a.clusters))
    batch = [edge("frontend", "cart", last=LAST, ports=[8080]), edge("frontend", "ads", last=LAST)]
    assert cloud.ingest(cloud.a, cluster, "1", batch).status == 200


def test_a_policy_that_isolates_a_server_denies_its_edge(cloud: Cloud) -> None:
    seed(cloud)
    reply = check(cloud, ISOLATE_CART)
    assert reply.status == 200, reply
    body = reply.json()
    assert body["kind"] == "PolicyCheck" and body["denied"] == 1
    (denial,) = body["denials"]
    assert (denial["edge"]["client"]["name"], denial["edge"]["target"]["name"]) == ("frontend", "cart")
    assert denial["policy"]["name"] == "cart" and denial["direction"] == "ingress"
    as_json = json.dumps(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "cart", "namespace": "shop"},
            "spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "cart"}}, "ingress": []},
        }
    )
    assert check(cloud, as_json, "application/json").json()["denied"] == 1  # JSON is read too
    assert check(cloud, "").json()["denied"] == 0  # no policies deny nothing
    # since: only edges seen then or later (none here)
    assert check(cloud, ISOLATE_CART, since=format_time(NOW + 60)).json()["denied"] == 0


def test_the_newest_snapshots_facts_give_labels_and_named_ports(cloud: Cloud) -> None:
    seed(cloud)
    # without facts the cart pods carry only the default label: the policy selects nothing
    assert check(cloud, ALLOW_FRONTEND_8080).json()["denied"] == 0
    cart = WorkloadIdentity("shop", "cart", "Deployment")
    facts = ClusterFacts(
        namespaces=(NamespaceFacts("shop", (("kubernetes.io/metadata.name", "shop"),)),),
        workloads=(WorkloadFacts(cart, (("app.kubernetes.io/name", "cart"), ("tier", "cart"))),),
    )
    document = snapshotwire.snapshot_document(Snapshot("facts", NOW - 10, (), facts))
    cluster = next(iter(cloud.a.clusters))
    assert (
        cloud.request("POST", "/v1/snapshots", token=cloud.a.clusters[cluster], body=document).status == 200
    )
    # now the policy selects cart, and port "http" is no named port of it: frontend → cart is denied
    denied = check(cloud, ALLOW_FRONTEND_8080).json()
    assert [d["edge"]["target"]["name"] for d in denied["denials"]] == ["cart"]


def test_bad_documents_are_400s_naming_the_document(cloud: Cloud) -> None:
    seed(cloud)
    bad = ISOLATE_CART + "---\napiVersion: networking.k8s.io/v1\nkind: Nonsense\nmetadata: {name: x}\n"
    reply = check(cloud, bad)
    assert reply.status == 400 and reply.error_code == "bad_request", reply
    assert "body" in reply.json()["error"]["message"] and "document 2" in reply.json()["error"]["message"]
    assert check(cloud, "a: [b\n").status == 400  # YAML that does not parse
    deep = "".join(" " * i + f"k{i}:\n" for i in range(1200))
    assert check(cloud, deep).status == 400
    reply = check(cloud, "#" * (MAX_POLICY_BYTES + 1))
    assert reply.status == 413 and reply.error_code == "payload_too_large", reply
    assert check(cloud, ISOLATE_CART, cluster="c_nope").error_code == "not_found"
    reply = check(cloud, ISOLATE_CART, "application/xml")
    assert reply.status == 415 and reply.error_code == "unsupported_media_type", reply
    assert check(cloud, ISOLATE_CART, "Text/YAML; charset=utf-8").status == 200
