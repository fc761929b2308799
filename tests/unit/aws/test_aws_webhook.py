"""agent.aws.webhook: real AdmissionReview fixtures in, the decision and JSONPatch out.

Patches are applied with the sandbox API server's RFC 6902 implementation (the one that applies
them in the demo), which fails on a path whose parent is missing, so "add whole arrays when
absent" is checked by applying, not by reading the patch.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.aws.settings import AwsWebhookSettings
from agent.aws.webhook import (
    BUNDLE_ENV,
    LABEL,
    MALFORMED,
    PATCHED,
    PATCHED_ANNOTATION,
    SKIPPED,
    UNPATCHED,
    VOLUME_NAME,
    Admission,
    BundleError,
    ClusterError,
    PatchTarget,
    admit,
    ca_bundle,
    dns_config,
)
from sandbox.apiserver.patch import json_patch
from sandbox.podspec import ClusterDns, resolv_conf

ADMISSION = Path(__file__).parents[2] / "data" / "aws" / "admission"
TARGET = PatchTarget.from_settings(AwsWebhookSettings())
FORWARDER = "10.96.0.53"
DOMAIN = "cluster.local"
SECRET_VALUE = "env-secret-3f9c1d7be2a8"  # an env value in pod-create-labelled.json


class FakeCluster:
    def __init__(self, fail: str = "") -> None:
        self.fail = fail
        self.ensured: list[str] = []
        self.forwarder_reads = 0

    def ensure_bundle(self, namespace: str) -> None:
        if self.fail == "bundle":
            raise ClusterError("ConfigMap x/y: HTTP 403 Forbidden")
        self.ensured.append(namespace)

    def forwarder_ip(self) -> str:
        self.forwarder_reads += 1
        if self.fail == "forwarder":
            raise ClusterError("Service a/b: HTTP 404 Not Found")
        return FORWARDER


def fixture(name: str) -> dict[str, Any]:
    return json.loads((ADMISSION / name).read_text())


def review_bytes(review: Any) -> bytes:
    return json.dumps(review).encode()


def run(review: Any, cluster: FakeCluster | None = None) -> Admission:
    return admit(review_bytes(review), TARGET, cluster or FakeCluster())


def patch_of(admission: Admission) -> list[dict[str, Any]] | None:
    response = admission.body["response"]
    if "patch" not in response:
        assert "patchType" not in response
        return None
    assert response["patchType"] == "JSONPatch"
    return json.loads(base64.b64decode(response["patch"], validate=True))


def patched_pod(name: str) -> tuple[dict[str, Any], dict[str, Any], Admission]:
    review = fixture(name)
    admission = run(review)
    patch = patch_of(admission)
    assert patch is not None, admission
    return review, json_patch(review["request"]["object"], patch), admission


def kubelet_cluster_first_search(namespace: str, domain: str) -> list[str]:
    """What the kubelet writes for a ClusterFirst pod (pkg/kubelet/network/dns), from the facts alone."""
    return [namespace + ".svc." + domain, "svc." + domain, domain]


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]


# --- the decision of each fixture ---

DECISIONS = {
    "pod-create-labelled.json": (PATCHED, "dns via forwarder"),
    "pod-create-init-containers.json": (PATCHED, "dns via forwarder"),
    "pod-create-existing-ca-bundle.json": (PATCHED, "dns via forwarder"),
    "pod-create-dnsconfig.json": (PATCHED, "dns via forwarder"),
    "pod-create-hostnetwork.json": (PATCHED, "dns via forwarder"),
    "pod-create-no-volumes.json": (PATCHED, "dns via forwarder"),
    "pod-create-dry-run.json": (PATCHED, "dns via forwarder"),
    "pod-create-dns-default.json": (PATCHED, "dns kept (dnsPolicy Default)"),
    "pod-create-unlabelled.json": (SKIPPED, "not labelled"),
    "pod-create-label-false.json": (SKIPPED, "not labelled"),
    "pod-create-already-patched.json": (SKIPPED, "already patched (annotation)"),
    "pod-update-labelled.json": (SKIPPED, "not a create"),
    "deployment-create.json": (SKIPPED, "not a pod"),
    "review-v1beta1.json": (MALFORMED, "only AdmissionReview admission.k8s.io/v1 is served"),
}
PATCHED_FIXTURES = sorted(name for name, (outcome, _) in DECISIONS.items() if outcome == PATCHED)


def test_every_fixture_has_a_decision() -> None:
    assert sorted(DECISIONS) == sorted(p.name for p in ADMISSION.glob("*.json"))


@pytest.mark.parametrize("name", sorted(DECISIONS))
def test_fixture_decision(name: str) -> None:
    review = fixture(name)
    admission = run(review)
    outcome, reason = DECISIONS[name]
    assert (admission.outcome, admission.reason) == (outcome, reason)
    assert admission.http_status == 200
    body = admission.body
    assert body["apiVersion"] == "admission.k8s.io/v1"
    assert body["kind"] == "AdmissionReview"
    assert body["response"]["uid"] == review["request"]["uid"]
    if outcome == MALFORMED:
        assert body["response"]["allowed"] is False
        assert body["response"]["status"]["code"] == 400
        assert body["response"]["status"]["message"] == reason
    else:
        assert body["response"]["allowed"] is True
        assert (patch_of(admission) is not None) == (outcome == PATCHED)


@pytest.mark.parametrize("name", PATCHED_FIXTURES)
def test_patched_pod_mounts_the_bundle_in_every_container(name: str) -> None:
    before, after, _ = patched_pod(name)
    volumes = [v for v in after["spec"]["volumes"] if v["name"] == VOLUME_NAME]
    assert volumes == [
        {
            "name": VOLUME_NAME,
            "configMap": {
                "name": "network-mapper-aws-ca-bundle",
                "items": [{"key": "ca-bundle.pem", "path": "ca-bundle.pem"}],
            },
        }
    ]
    assert after["metadata"]["annotations"][PATCHED_ANNOTATION] == "true"
    assert len(containers(after)) == len(containers(before["request"]["object"]))
    for old, new in zip(containers(before["request"]["object"]), containers(after), strict=True):
        mounts = [m for m in new["volumeMounts"] if m["name"] == VOLUME_NAME]
        assert mounts == [{"name": VOLUME_NAME, "mountPath": "/etc/network-mapper/aws-ca", "readOnly": True}]
        assert new["volumeMounts"][: len(old.get("volumeMounts", []))] == old.get("volumeMounts", [])
        bundle_env = [e for e in new["env"] if e["name"] == BUNDLE_ENV]
        assert bundle_env == [{"name": BUNDLE_ENV, "value": "/etc/network-mapper/aws-ca/ca-bundle.pem"}]
        others = [e for e in old.get("env", []) if e["name"] != BUNDLE_ENV]
        assert [e for e in new["env"] if e["name"] != BUNDLE_ENV] == others


@pytest.mark.parametrize("name", PATCHED_FIXTURES)
def test_patch_touches_nothing_else(name: str) -> None:
    before, after, _ = patched_pod(name)
    pod = before["request"]["object"]
    for part in ("status", "apiVersion", "kind"):
        assert after.get(part) == pod.get(part)
    untouched_meta = {k: v for k, v in pod["metadata"].items() if k != "annotations"}
    assert {k: v for k, v in after["metadata"].items() if k != "annotations"} == untouched_meta
    assert {k: v for k, v in after["metadata"]["annotations"].items() if k != PATCHED_ANNOTATION} == (
        pod["metadata"].get("annotations") or {}
    )
    changed = {"volumes", "containers", "initContainers", "dnsPolicy", "dnsConfig"}
    assert {k: v for k, v in after["spec"].items() if k not in changed} == {
        k: v for k, v in pod["spec"].items() if k not in changed
    }


@pytest.mark.parametrize("name", PATCHED_FIXTURES)
def test_patching_twice_changes_nothing(name: str) -> None:
    review, after, _ = patched_pod(name)
    again = copy.deepcopy(review)
    again["request"]["object"] = after
    second = run(again)
    assert second.outcome == SKIPPED
    assert patch_of(second) is None
    # Without the annotation (stripped by someone), the volume alone still says "patched".
    del after["metadata"]["annotations"][PATCHED_ANNOTATION]
    third = run(again)
    assert (third.outcome, third.reason) == (SKIPPED, "already patched (volume present)")


@pytest.mark.parametrize(
    "name",
    [n for n in PATCHED_FIXTURES if n not in {"pod-create-dns-default.json", "pod-create-dnsconfig.json"}],
)
def test_search_path_is_the_one_the_kubelet_gives_cluster_first(name: str) -> None:
    review, after, _ = patched_pod(name)
    namespace = review["request"]["namespace"]
    assert after["spec"]["dnsPolicy"] == "None"
    assert after["spec"]["dnsConfig"] == {
        "nameservers": [FORWARDER],
        "searches": kubelet_cluster_first_search(namespace, DOMAIN),
        "options": [{"name": "ndots", "value": "5"}],
    }


@pytest.mark.parametrize("name", ["pod-create-labelled.json", "pod-create-dnsconfig.json"])
def test_sandbox_kubelet_resolves_patched_pod_like_unpatched(name: str) -> None:
    """The demo's kubelet: the patched pod's resolv.conf differs from the unpatched one's only in
    the nameserver (the forwarder instead of the cluster DNS)."""
    review, after, _ = patched_pod(name)
    before = copy.deepcopy(review["request"]["object"])
    for pod in (before, after):  # stored pods carry their namespace
        pod["metadata"]["namespace"] = review["request"]["namespace"]
    dns = ClusterDns(server="10.96.0.10", domain=DOMAIN)
    unpatched, patched = resolv_conf(before, dns), resolv_conf(after, dns)
    assert patched.searches == unpatched.searches
    assert sorted(patched.options) == sorted(unpatched.options)
    assert patched.nameservers[0] == FORWARDER
    assert patched.nameservers[1:] == unpatched.nameservers[1:]


def test_own_dns_config_is_merged_after_the_cluster_one() -> None:
    _, after, _ = patched_pod("pod-create-dnsconfig.json")
    assert after["spec"]["dnsConfig"] == {
        "nameservers": [FORWARDER, "10.0.0.2"],
        "searches": [*kubelet_cluster_first_search("analytics", DOMAIN), "corp.example.internal"],
        "options": [
            {"name": "ndots", "value": "2"},  # the pod's value wins, as in the kubelet's merge
            {"name": "edns0"},
            {"name": "timeout", "value": "3"},
        ],
    }


def test_dns_config_stays_within_the_api_limits() -> None:
    asked = {
        "nameservers": ["10.0.0.1", "10.0.0.2", "10.0.0.3"],
        "searches": [f"s{i}.example.com" for i in range(40)],
    }
    config = dns_config("team-a", DOMAIN, FORWARDER, asked)
    assert config["nameservers"] == [FORWARDER, "10.0.0.1", "10.0.0.2"]
    assert len(config["searches"]) == 32
    assert config["searches"][:3] == kubelet_cluster_first_search("team-a", DOMAIN)
    long = {"searches": ["x" * 250 + f".{i}.example" for i in range(20)]}
    searches = dns_config("team-a", DOMAIN, FORWARDER, long)["searches"]
    assert len(" ".join(searches)) <= 2048
    assert searches[:3] == kubelet_cluster_first_search("team-a", DOMAIN)


def test_hostnetwork_pod_gets_cluster_first_with_host_net_semantics() -> None:
    _, after, _ = patched_pod("pod-create-hostnetwork.json")
    assert after["spec"]["hostNetwork"] is True
    assert after["spec"]["dnsPolicy"] == "None"
    assert after["spec"]["dnsConfig"]["searches"] == kubelet_cluster_first_search("monitoring", DOMAIN)


def test_existing_aws_ca_bundle_is_replaced_not_duplicated() -> None:
    review = fixture("pod-create-existing-ca-bundle.json")
    patch = patch_of(run(review))
    assert patch is not None
    replaced = [op for op in patch if op["op"] == "replace"]
    assert [op["path"] for op in replaced] == ["/spec/containers/0/env/1", "/spec/containers/1/env/0"]
    after = json_patch(review["request"]["object"], patch)
    first = after["spec"]["containers"][0]["env"]
    assert [e["name"] for e in first] == ["AWS_REGION", BUNDLE_ENV, "HTTPS_PROXY"]


def test_absent_arrays_and_maps_are_added_whole() -> None:
    patch = patch_of(run(fixture("pod-create-no-volumes.json")))
    assert patch is not None
    paths = [op["path"] for op in patch]
    assert paths == [
        "/spec/volumes",
        "/spec/containers/0/volumeMounts",
        "/spec/containers/0/env",
        "/spec/dnsPolicy",
        "/spec/dnsConfig",
        "/metadata/annotations",
    ]
    assert all(op["op"] == "add" for op in patch)


def test_present_arrays_are_appended_and_the_annotation_key_is_escaped() -> None:
    patch = patch_of(run(fixture("pod-create-dnsconfig.json")))
    assert patch is not None
    paths = [op["path"] for op in patch]
    assert "/spec/volumes/-" in paths
    assert "/spec/containers/0/volumeMounts/-" in paths
    assert "/spec/containers/0/env/-" in paths
    assert paths[-1] == "/metadata/annotations/network-mapper.otterize.com~1aws-visibility-patched"


def test_init_containers_are_patched_too() -> None:
    _, after, _ = patched_pod("pod-create-init-containers.json")
    for container in after["spec"]["initContainers"]:
        assert {"name": BUNDLE_ENV, "value": "/etc/network-mapper/aws-ca/ca-bundle.pem"} in container["env"]
        assert any(m["name"] == VOLUME_NAME for m in container["volumeMounts"])


def test_bundle_is_ensured_in_the_request_namespace() -> None:
    review = fixture("pod-create-labelled.json")
    assert "namespace" not in review["request"]["object"]["metadata"]  # as the ReplicaSet creates it
    cluster = FakeCluster()
    admission = run(review, cluster)
    assert cluster.ensured == ["aws-visibility-demo"]
    assert (admission.namespace, admission.pod) == ("aws-visibility-demo", "aws-client-5c9f8d7b6d-")


def test_dry_run_patches_without_writing_the_configmap() -> None:
    cluster = FakeCluster()
    admission = run(fixture("pod-create-dry-run.json"), cluster)
    assert admission.outcome == PATCHED
    assert cluster.ensured == []


def test_dns_policy_default_keeps_dns_and_warns() -> None:
    review = fixture("pod-create-dns-default.json")
    cluster = FakeCluster()
    admission = run(review, cluster)
    _, after, _ = patched_pod("pod-create-dns-default.json")
    assert after["spec"]["dnsPolicy"] == "Default"
    assert "dnsConfig" not in after["spec"]
    assert cluster.forwarder_reads == 0
    assert admission.body["response"]["warnings"] == [
        "network-mapper: dnsPolicy Default kept, so this pod's AWS calls are not observed"
    ]


@pytest.mark.parametrize("fail", ["bundle", "forwarder"])
def test_cluster_failure_allows_the_pod_unpatched_with_a_warning(fail: str) -> None:
    admission = run(fixture("pod-create-labelled.json"), FakeCluster(fail))
    assert admission.outcome == UNPATCHED
    assert admission.reason.startswith("cluster error: ")
    response = admission.body["response"]
    assert response["allowed"] is True
    assert patch_of(admission) is None
    assert response["warnings"] == ["network-mapper: pod left unpatched, AWS visibility unavailable"]


def test_a_taken_mount_path_is_not_patched() -> None:
    review = fixture("pod-create-labelled.json")
    container = review["request"]["object"]["spec"]["containers"][0]
    container["volumeMounts"].append({"name": "corp-ca", "mountPath": "/etc/network-mapper/aws-ca/"})
    admission = run(review)
    assert (admission.outcome, admission.reason) == (SKIPPED, "mount path in use")
    assert patch_of(admission) is None
    assert admission.body["response"]["warnings"]


def test_env_values_never_reach_the_answer_or_the_log_summary() -> None:
    for name in DECISIONS:
        admission = run(fixture(name))
        summary = (admission.uid, admission.namespace, admission.pod, admission.reason)
        assert SECRET_VALUE not in repr(summary)
        assert SECRET_VALUE not in json.dumps(admission.body)  # the patch never copies env values
    broken = fixture("pod-create-labelled.json")
    broken["request"]["object"]["spec"]["containers"][0]["env"][4]["name"] = {"x": SECRET_VALUE}
    admission = run(broken)
    assert admission.outcome == MALFORMED
    assert SECRET_VALUE not in json.dumps(admission.body) + admission.reason


# --- malformed reviews: an answer with a message, never an exception ---


def mutated(path: list[Any], value: Any) -> dict[str, Any]:
    review = fixture("pod-create-labelled.json")
    node: Any = review
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return review


POD = ["request", "object"]
WITH_UID = [
    (mutated(["request", "kind"], None), "request.kind is not an object"),
    (mutated([*POD], None), "request.object is not an object"),
    (mutated([*POD], ["a pod"]), "request.object is not an object"),
    (mutated([*POD, "kind"], "Service"), "request.object is not a Pod"),
    (mutated([*POD, "metadata"], "x"), "request.object.metadata is not an object"),
    (mutated([*POD, "metadata", "labels"], [LABEL]), "request.object.metadata.labels is not an object"),
    (mutated([*POD, "metadata", "annotations"], "a"), "request.object.metadata.annotations is not an object"),
    (mutated([*POD, "spec"], KeyError), "request.object.spec is not an object"),
    (mutated([*POD, "spec", "containers"], []), "spec.containers is empty"),
    (mutated([*POD, "spec", "containers"], {"name": "x"}), "spec.containers is not an array"),
    (mutated([*POD, "spec", "containers", 0], "x"), "spec.containers[0] is not an object"),
    (mutated([*POD, "spec", "containers", 0, "env", 1], 7), "spec.containers[0].env[1] is not an object"),
    (
        mutated([*POD, "spec", "containers", 0, "env", 1, "name"], 7),
        "spec.containers[0].env[1].name is not a string",
    ),
    (
        mutated([*POD, "spec", "containers", 0, "volumeMounts", 0, "mountPath"], None),
        "spec.containers[0].volumeMounts has a mountPath that is not a string",
    ),
    (mutated([*POD, "spec", "volumes"], "x"), "spec.volumes is not an array"),
    (mutated([*POD, "spec", "dnsPolicy"], 1), "spec.dnsPolicy is not a string"),
    (
        mutated([*POD, "spec", "dnsConfig"], {"searches": "a b"}),
        "spec.dnsConfig.searches is not an array of strings",
    ),
    (
        mutated([*POD, "spec", "dnsConfig"], {"options": [{"name": "ndots", "value": 5}]}),
        "spec.dnsConfig.options has a value that is not a string",
    ),
    (mutated(["request", "namespace"], ""), "the review names no namespace for the pod"),
    (mutated(["request", "namespace"], "Team A"), "the pod's namespace is not a DNS label"),
    (mutated(["request", "namespace"], "a" * 64), "the pod's namespace is not a DNS label"),
    (mutated(["kind"], "AdmissionResponse"), "only AdmissionReview admission.k8s.io/v1 is served"),
]


@pytest.mark.parametrize(("review", "message"), WITH_UID)
def test_malformed_review_with_uid_is_refused_with_a_message(review: dict[str, Any], message: str) -> None:
    admission = run(review)
    assert admission.outcome == MALFORMED
    assert admission.http_status == 200
    assert admission.body["response"] == {
        "uid": review["request"]["uid"],
        "allowed": False,
        "status": {"code": 400, "message": message},
    }


WITHOUT_UID = [
    (b"", "the body is not JSON (JSONDecodeError)"),
    (b"<AdmissionReview/>", "the body is not JSON (JSONDecodeError)"),
    (b'{"request": "\xff"}', "the body is not JSON (UnicodeDecodeError)"),
    (b"[" * 100_000 + b"]" * 100_000, "the body is not JSON (RecursionError)"),
    (b"[]", "the body is not an AdmissionReview object"),
    (b'"AdmissionReview"', "the body is not an AdmissionReview object"),
    (
        b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}',
        "the AdmissionReview has no request",
    ),
    (b'{"request": {"uid": ""}}', "the AdmissionReview's request has no uid"),
    (b'{"request": {"uid": 12}}', "the AdmissionReview's request has no uid"),
]


@pytest.mark.parametrize(("body", "message"), WITHOUT_UID)
def test_malformed_body_without_uid_gets_a_400_status(body: bytes, message: str) -> None:
    admission = admit(body, TARGET, FakeCluster())
    assert admission.outcome == MALFORMED
    assert admission.http_status == 400
    assert admission.body == {
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "message": message,
        "reason": "BadRequest",
        "code": 400,
    }


def check_answer(body: bytes, admission: Admission) -> None:
    assert admission.http_status in (200, 400)
    json.dumps(admission.body)  # serialisable
    if admission.http_status == 400:
        assert admission.body["kind"] == "Status"
        assert admission.body["message"]
    else:
        response = admission.body["response"]
        assert response["uid"] == json.loads(body)["request"]["uid"]
        assert response["allowed"] is (admission.outcome != MALFORMED)
    for text in (admission.uid, admission.namespace, admission.pod):
        assert text == "" or re.fullmatch(r"[A-Za-z0-9._:/@?-]{1,80}", text)
    assert "\n" not in admission.reason


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | JSON.map(lambda v: json.dumps(v).encode()))
def test_any_body_gets_an_answer(body: bytes) -> None:
    check_answer(body, admit(body, TARGET, FakeCluster()))


POD_PARTS = [
    [],
    ["metadata"],
    ["metadata", "labels"],
    ["metadata", "annotations"],
    ["spec"],
    ["spec", "volumes"],
    ["spec", "volumes", 0],
    ["spec", "containers"],
    ["spec", "containers", 0],
    ["spec", "containers", 0, "env"],
    ["spec", "containers", 0, "env", 0],
    ["spec", "containers", 0, "volumeMounts"],
    ["spec", "containers", 0, "volumeMounts", 0],
    ["spec", "initContainers"],
    ["spec", "dnsPolicy"],
    ["spec", "dnsConfig"],
    ["spec", "dnsConfig", "options"],
]
REQUEST_PARTS = [["uid"], ["kind"], ["operation"], ["namespace"], ["dryRun"], ["subResource"], ["name"]]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(
        [["request", "object", *p] for p in POD_PARTS] + [["request", *p] for p in REQUEST_PARTS]
    ),
    JSON,
    st.sampled_from(
        ["pod-create-labelled.json", "pod-create-init-containers.json", "pod-create-dnsconfig.json"]
    ),
)
def test_any_part_of_a_real_review_replaced_gets_an_answer(path: list[Any], value: Any, name: str) -> None:
    review = fixture(name)
    node: Any = review
    for key in path[:-1]:
        if isinstance(node, dict) and isinstance(key, str):
            node = node.setdefault(key, {})
        elif isinstance(node, list) and isinstance(key, int) and key < len(node):
            node = node[key]
        else:
            return
    if isinstance(node, list) and (not isinstance(path[-1], int) or path[-1] >= len(node)):
        return
    node[path[-1]] = value

    body = review_bytes(review)
    try:
        admission = admit(body, TARGET, FakeCluster())
    except Exception as exc:  # the property under test
        pytest.fail(f"admit raised {exc!r} for {path} = {value!r}")
    if isinstance(review["request"].get("uid"), str) and review["request"]["uid"]:
        check_answer(body, admission)
    patch = patch_of(admission) if admission.http_status == 200 else None
    if patch is not None:  # whatever was accepted, its patch applies
        json_patch(review["request"]["object"], patch)


# --- the bundle ---

CERT_A = "-----BEGIN CERTIFICATE-----\nQUFBQQ==\n-----END CERTIFICATE-----"
CERT_B = "-----BEGIN CERTIFICATE-----\nQkJCQg==\n-----END CERTIFICATE-----"
CERT_C = "-----BEGIN CERTIFICATE-----\nQ0NDQw==\n-----END CERTIFICATE-----"
KEY = "-----BEGIN PRIVATE KEY-----\nS0VZS0VZ\n-----END PRIVATE KEY-----"


def test_bundle_is_the_proxy_ca_then_the_system_cas_and_never_a_key() -> None:
    bundle = ca_bundle(f"{KEY}\n{CERT_A}\n", f"# system\n{CERT_B}\n{CERT_C}\n")
    assert bundle == f"{CERT_A}\n{CERT_B}\n{CERT_C}\n"
    assert "PRIVATE KEY" not in bundle


def test_bundle_needs_a_proxy_certificate() -> None:
    with pytest.raises(BundleError):
        ca_bundle(KEY, CERT_B)
