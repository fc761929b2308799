"""What AWS visibility needs of the sandbox API server's resources, tested without a socket: Secrets
(`stringData` → base64 `data`, type defaulted and immutable), the pod defaulting webhooks see,
discovery entries for Secrets and MutatingWebhookConfigurations, and their kubectl tables."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from sandbox.apiserver import admission, discovery, tables
from sandbox.apiserver.errors import ApiError

SECRETS = discovery.lookup("", "v1", "secrets")
PODS = discovery.lookup("", "v1", "pods")
SERVICES = discovery.lookup("", "v1", "services")
MWC = discovery.lookup("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations")
assert SECRETS is not None and PODS is not None and SERVICES is not None and MWC is not None


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret(**fields: Any) -> dict[str, Any]:
    return {"metadata": {"name": "s"}, **fields}


def test_string_data_is_merged_into_data_base64_encoded_and_dropped() -> None:
    body = secret(data={"a": b64("1"), "b": b64("old")}, stringData={"b": "new", "c": "é"})
    checked = admission.check_body(SECRETS, body, "apps")
    assert checked["data"] == {"a": b64("1"), "b": b64("new"), "c": b64("é")}
    assert "stringData" not in checked and checked["type"] == "Opaque"
    assert checked["kind"] == "Secret" and checked["metadata"]["namespace"] == "apps"


def test_an_empty_secret_has_no_data_and_null_values_are_empty() -> None:
    assert "data" not in admission.check_body(SECRETS, secret(), "apps")
    assert admission.check_body(SECRETS, secret(data={"k": None}), "apps")["data"] == {"k": ""}
    kept = admission.check_body(SECRETS, secret(type="kubernetes.io/basic-auth"), "apps")
    assert kept["type"] == "kubernetes.io/basic-auth"


@pytest.mark.parametrize(
    ("body", "code", "problem"),
    [
        (secret(data={"k": "%%%"}), 400, "data[k]: illegal base64 data"),
        (secret(data=["k"]), 400, "must be JSON objects"),
        (secret(stringData={"k": 1}), 400, "stringData[k] must be a string"),
        (secret(stringData={"a b": "x"}), 422, "data[a b]: Invalid value"),
        (secret(stringData={"k": "x" * (1024 * 1024 + 1)}), 422, "Too long"),
        (secret(type="kubernetes.io/tls", stringData={"tls.crt": "c"}), 422, "data[tls.key]: Required value"),
    ],
)
def test_bad_secrets_are_refused(body: dict[str, Any], code: int, problem: str) -> None:
    with pytest.raises(ApiError) as raised:
        admission.check_body(SECRETS, body, "apps")
    assert raised.value.code == code and problem in raised.value.message


def test_a_secrets_type_is_immutable_and_so_is_an_immutable_secrets_data() -> None:
    old = admission.check_body(SECRETS, secret(stringData={"k": "v"}), "apps")
    old["metadata"]["resourceVersion"] = "5"
    changed = admission.check_body(SECRETS, secret(stringData={"k": "w"}), "apps", "s")
    assert admission.merge_update(SECRETS, old, changed, None)["data"] == {"k": b64("w")}
    with pytest.raises(ApiError, match="type: Invalid value"):
        admission.merge_update(SECRETS, old, {**changed, "type": "kubernetes.io/tls"}, None)
    frozen = {**old, "immutable": True}
    with pytest.raises(ApiError, match="field is immutable when `immutable` is set"):
        admission.merge_update(SECRETS, frozen, {**changed, "immutable": True}, None)
    assert admission.merge_update(SECRETS, frozen, dict(frozen), None) == frozen


def test_secrets_and_webhook_configurations_get_no_spec() -> None:
    assert "spec" not in admission.default_fields(SECRETS, secret())
    assert "spec" not in admission.default_fields(MWC, {"metadata": {"name": "m"}})


def test_pods_get_kubes_defaults_before_admission() -> None:
    pod = {
        "metadata": {"name": "p"},
        "spec": {
            "initContainers": [{"name": "i", "image": "init"}],
            "containers": [{"name": "c", "image": "registry:5000/app:1.2", "ports": [{"containerPort": 80}]}],
            "dnsPolicy": "None",
        },
    }
    spec = admission.default_fields(PODS, pod)["spec"]
    assert spec["dnsPolicy"] == "None"  # given values are kept
    assert (spec["restartPolicy"], spec["terminationGracePeriodSeconds"]) == ("Always", 30)
    assert (spec["schedulerName"], spec["enableServiceLinks"], spec["securityContext"]) == (
        "default-scheduler",
        True,
        {},
    )
    init, main = spec["initContainers"][0], spec["containers"][0]
    assert (init["imagePullPolicy"], main["imagePullPolicy"]) == ("Always", "IfNotPresent")
    assert (
        main["terminationMessagePath"] == "/dev/termination-log"
        and main["terminationMessagePolicy"] == "File"
    )
    assert main["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert admission.default_fields(PODS, {"metadata": {"name": "q"}})["spec"]["dnsPolicy"] == "ClusterFirst"
    with pytest.raises(ApiError, match="spec of a Pod must be a JSON object"):
        admission.default_fields(PODS, {"metadata": {"name": "q"}, "spec": "x"})


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        ("app", "Always"),
        ("app:latest", "Always"),
        ("registry:5000/app", "Always"),
        ("app:1.0", "IfNotPresent"),
        ("app@sha256:" + "0" * 64, "IfNotPresent"),
    ],
)
def test_image_pull_policy(image: str, policy: str) -> None:
    assert admission.image_pull_policy(image) == policy


def test_a_services_cluster_ip_is_allocated_after_admission_only() -> None:
    allocator = admission.ClusterIPAllocator("10.96.0.0/29")
    service = admission.default_fields(
        SERVICES, {"metadata": {"name": "svc"}, "spec": {"ports": [{"port": 80}]}}
    )
    assert "clusterIP" not in service["spec"] and service["spec"]["ports"][0]["targetPort"] == 80
    allocated = admission.allocate_cluster_ip(SERVICES, service, allocator)
    assert allocated["spec"]["clusterIP"] == "10.96.0.2" and allocated["spec"]["clusterIPs"] == ["10.96.0.2"]
    pod = {"metadata": {"name": "p"}, "spec": {}}
    assert admission.allocate_cluster_ip(PODS, pod, allocator) is pod


def test_discovery_serves_secrets_and_mutating_webhook_configurations() -> None:
    core = discovery.api_resource_list("", "v1")
    assert core is not None
    [entry] = [r for r in core["resources"] if r["name"] == "secrets"]
    assert (entry["kind"], entry["namespaced"]) == ("Secret", True)
    assert not [r for r in core["resources"] if r["name"].startswith("secrets/")]  # no subresources
    group = discovery.api_group("admissionregistration.k8s.io")
    assert (
        group is not None and group["preferredVersion"]["groupVersion"] == "admissionregistration.k8s.io/v1"
    )
    resources = discovery.api_resource_list("admissionregistration.k8s.io", "v1")
    assert resources is not None
    assert [(r["name"], r["kind"], r["namespaced"]) for r in resources["resources"]] == [
        ("mutatingwebhookconfigurations", "MutatingWebhookConfiguration", False)
    ]
    names = {g["name"] for g in discovery.api_group_list()["groups"]}
    assert "admissionregistration.k8s.io" in names
    assert "type" in SECRETS.field_selectors


def test_kubectl_tables_for_secrets_and_webhook_configurations() -> None:
    row = tables.render_table(
        "secrets", [{"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": ""}}], "1"
    )
    assert row["rows"][0]["cells"][:3] == ["s", "Opaque", 1]
    configuration = {"metadata": {"name": "m"}, "webhooks": [{}, {}]}
    table = tables.render_table(MWC.key, [configuration], "1")
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Webhooks", "Age"]
    assert table["rows"][0]["cells"][:2] == ["m", 2]
