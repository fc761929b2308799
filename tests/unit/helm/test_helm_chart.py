"""The helm chart (helm/network-mapper), rendered offline with the Helm SDK (``helm_python``).

* ``helm lint`` (strict) reports no errors or warnings;
* the default render has the mapper Deployment, its Service on 9090, its ServiceAccount,
  ClusterRole (list + watch of what it watches; test_helm_rbac.py derives it from the code) and
  binding, the sniffer DaemonSet (its own token-less ServiceAccount) and the Secret;
* every rendered manifest validates against the newest Kubernetes schema (strict: no unknown fields);
* the telemetry opt-out ``--set global.telemetry.enabled=false`` reaches every container of
  every workload as ``OTTERIZE_TELEMETRY_ENABLED=false`` (default: ``"true"``);
* the cloud, anonymization and persistence values are wired to the mapper's variables;
* ``kafkawatcher.enable`` adds the Kafka watcher (its servers as ``pod.namespace`` items or
  ``{name, namespace}``) with its own ServiceAccount, which alone gets ``pods/log``;
  ``enableIstioCollection`` adds the Istio watcher and the Istio ``Telemetry`` resource, valid
  against Istio's published CRD.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.support.chart import CHART, env, find, rendered

WORKLOADS = {"Deployment", "DaemonSet", "StatefulSet", "Job", "CronJob", "ReplicaSet", "Pod"}
OPT_OUT = {"global": {"telemetry": {"enabled": False}}}
SHARED = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"
KAFKA_SERVERS = [
    {"name": "kafka-0", "namespace": "otterize-tutorial-kafka-mapping"},
    {"name": "my-cluster-kafka-*", "namespace": "strimzi"},
]
WATCHERS = {"kafkawatcher": {"enable": True, "kafkaServers": KAFKA_SERVERS}, "enableIstioCollection": True}
CUSTOM_KINDS = {"Telemetry"}  # validated against the published CRD, not Kubernetes' own schemas
FULL = {
    "cloud": {"url": "https://cloud.example.com", "token": "ingest", "anonymize": True},
    "persistence": {"enabled": True, "storageClass": "fast"},
    "mapper": {"podCIDRs": "10.244.0.0/16", "serviceCIDRs": "10.96.0.0/12", "resources": {}},
}


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec if workload["kind"] == "Pod" else spec["template"]["spec"]


def containers(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for doc in docs:
        if doc["kind"] in WORKLOADS:
            spec = pod_spec(doc)
            for container in [*spec.get("initContainers", []), *spec["containers"]]:
                found.append((f"{doc['kind']}/{doc['metadata']['name']}/{container['name']}", container))
    return found


def test_lint_is_clean() -> None:
    report = helm.lint(CHART, strict=True)
    assert report["errors"] == [], report
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


def test_default_render_has_every_resource() -> None:
    docs = rendered({})[0]
    deployment = find(docs, "Deployment", "network-mapper")
    mapper = pod_spec(deployment)["containers"][0]
    assert mapper["command"] == ["network-mapper-mapper"]
    assert mapper["image"].startswith("otterize/network-mapper:")
    assert pod_spec(deployment)["serviceAccountName"] == "network-mapper"
    service = find(docs, "Service", "network-mapper")
    assert [p["port"] for p in service["spec"]["ports"]] == [9090]
    assert service["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]
    find(docs, "ServiceAccount", "network-mapper")
    role = find(docs, "ClusterRole", "network-mapper-observability")
    granted = {(g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert granted == {
        ("", "pods"),
        ("", "services"),
        ("", "endpoints"),
        ("", "namespaces"),
        ("discovery.k8s.io", "endpointslices"),
        ("apps", "replicasets"),
        ("apps", "deployments"),
        ("apps", "statefulsets"),
        ("apps", "daemonsets"),
        ("batch", "jobs"),
        ("batch", "cronjobs"),
    }
    assert all(rule["verbs"] == ["list", "watch"] for rule in role["rules"])
    binding = find(docs, "ClusterRoleBinding", "network-mapper-observability")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "network-mapper", "namespace": "observability"}
    ]

    daemonset = find(docs, "DaemonSet", "network-mapper-sniffer")
    spec = pod_spec(daemonset)
    assert spec["hostNetwork"] is True
    assert spec["hostPID"] is True
    sniffer = spec["containers"][0]
    assert sniffer["command"] == ["network-mapper-sniffer"]
    assert sorted(sniffer["securityContext"]["capabilities"]["add"]) == ["NET_RAW", "SYS_PTRACE"]
    assert spec["serviceAccountName"] == "network-mapper-sniffer"
    assert spec["automountServiceAccountToken"] is False
    port = service["spec"]["ports"][0]["port"]
    assert env(sniffer)["OTTERIZE_MAPPER_API"] == (
        f"http://network-mapper.observability.svc.cluster.local:{port}/query"
    )

    secret = find(docs, "Secret", "network-mapper")
    assert set(secret["data"]) == {"agent-token"}  # no cloud token unless one is given
    token_ref = {"secretKeyRef": {"name": "network-mapper", "key": "agent-token"}}
    assert env(mapper)["NETWORK_MAPPER_TOKEN"] == token_ref
    assert env(sniffer)["NETWORK_MAPPER_TOKEN"] == token_ref

    # No cloud unless configured; the edge store on an emptyDir without persistence.
    assert not {"NETWORK_MAPPER_CLOUD_URL", "NETWORK_MAPPER_CLOUD_TOKEN", "NETWORK_MAPPER_ANONYMIZE"} & set(
        env(mapper)
    )
    data_dir = env(mapper)["MAPPER_DATA_DIR"]
    mount = next(m for m in mapper["volumeMounts"] if m["mountPath"] == data_dir)
    volume = next(v for v in pod_spec(deployment)["volumes"] if v["name"] == mount["name"])
    assert volume == {"name": mount["name"], "emptyDir": {}}
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]


def test_cloud_anonymization_and_persistence_are_wired() -> None:
    docs = rendered(FULL)[0]
    deployment = find(docs, "Deployment", "network-mapper")
    spec = pod_spec(deployment)
    mapper = spec["containers"][0]
    variables = env(mapper)
    assert variables["NETWORK_MAPPER_CLOUD_URL"] == "https://cloud.example.com"
    assert variables["NETWORK_MAPPER_CLOUD_TOKEN"] == {
        "secretKeyRef": {"name": "network-mapper", "key": "cloud-token"}
    }
    assert variables["NETWORK_MAPPER_ANONYMIZE"] == "true"
    assert variables["MAPPER_POD_CIDRS"] == "10.244.0.0/16"
    assert variables["MAPPER_SERVICE_CIDRS"] == "10.96.0.0/12"
    secret = find(docs, "Secret", "network-mapper")
    assert {"agent-token", "cloud-token", "anonymize-key"} <= set(secret["data"])

    # The anonymization key is a file from the Secret, at the path the variable names.
    key_file = Path(variables["NETWORK_MAPPER_ANONYMIZE_KEY_FILE"])
    mount = next(m for m in mapper["volumeMounts"] if m["mountPath"] == str(key_file.parent))
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "network-mapper"
    assert volume["secret"]["items"] == [{"key": "anonymize-key", "path": key_file.name}]

    pvc = find(docs, "PersistentVolumeClaim", "network-mapper-data")
    assert pvc["spec"]["storageClassName"] == "fast"
    mount = next(m for m in mapper["volumeMounts"] if m["mountPath"] == variables["MAPPER_DATA_DIR"])
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["persistentVolumeClaim"] == {"claimName": "network-mapper-data"}


@pytest.mark.parametrize(
    "values",
    [
        pytest.param({}, id="default"),
        pytest.param(OPT_OUT, id="opt-out"),
        pytest.param(FULL, id="full"),
        pytest.param(WATCHERS, id="watchers"),
    ],
)
def test_every_manifest_validates_strictly(values: dict[str, Any]) -> None:
    docs = rendered(values)[0]
    assert docs
    version = kubernetes_validate.latest_version()
    for doc in docs:
        if doc["kind"] not in CUSTOM_KINDS:
            kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param({}, "true", id="default"),
        pytest.param(FULL, "true", id="full"),
        pytest.param(OPT_OUT, "false", id="set-false"),
        pytest.param({**FULL, **OPT_OUT}, "false", id="full-set-false"),
        pytest.param({"global": {"telemetry": {"enabled": "false"}}}, "false", id="set-string-false"),
        pytest.param({**WATCHERS, **OPT_OUT}, "false", id="watchers-set-false"),
    ],
)
def test_telemetry_setting_reaches_every_container(values: dict[str, Any], expected: str) -> None:
    found = containers(rendered(values)[0])
    workloads = {"Deployment/network-mapper", "DaemonSet/network-mapper-sniffer"}
    found = [(name, c) for name, c in found if not name.startswith("Pod/")]  # the helm test pod
    if "kafkawatcher" in values:
        workloads |= {"Deployment/network-mapper-kafka-watcher", "Deployment/network-mapper-istio-watcher"}
    assert {name.rsplit("/", 1)[0] for name, _ in found} == workloads
    for name, container in found:
        assert env(container).get("OTTERIZE_TELEMETRY_ENABLED") == expected, name


def crd_schema(file: str, version: str) -> dict[str, Any]:
    crd = yaml.safe_load((SHARED / file).read_text(encoding="utf-8"))
    (found,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema: dict[str, Any] = found["schema"]["openAPIV3Schema"]
    return schema


def test_watchers_are_off_by_default_and_pods_log_is_granted_only_to_the_kafka_watcher() -> None:
    docs = rendered({})[0]
    assert not [d for d in docs if "watcher" in d["metadata"]["name"] or d["kind"] == "Telemetry"]
    for values in ({}, {"enableIstioCollection": True}, WATCHERS):
        docs = rendered(values)[0]
        logs = [
            d["metadata"]["name"]
            for d in docs
            if d["kind"] in {"Role", "ClusterRole"} and any("pods/log" in r["resources"] for r in d["rules"])
        ]
        assert all(name.startswith("network-mapper-kafka-watcher") for name in logs)
        assert bool(logs) == ("kafkawatcher" in values)


def test_the_kafka_watcher_reads_the_listed_servers_and_reports_to_the_mapper() -> None:
    docs = rendered(WATCHERS)[0]
    deployment = find(docs, "Deployment", "network-mapper-kafka-watcher")
    (watcher,) = pod_spec(deployment)["containers"]
    assert watcher["command"] == ["network-mapper-kafka-watcher"]
    assert pod_spec(deployment)["serviceAccountName"] == "network-mapper-kafka-watcher"
    variables = env(watcher)
    assert variables["OTTERIZE_KAFKA_SERVERS"] == (
        "kafka-0.otterize-tutorial-kafka-mapping,my-cluster-kafka-*.strimzi"
    )
    assert (
        variables["OTTERIZE_MAPPER_API"] == "http://network-mapper.observability.svc.cluster.local:9090/query"
    )
    assert variables["NETWORK_MAPPER_TOKEN"] == {
        "secretKeyRef": {"name": "network-mapper", "key": "agent-token"}
    }
    assert watcher["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_istio_collection_adds_the_watcher_and_a_telemetry_resource_valid_against_istios_crd() -> None:
    docs = rendered({"enableIstioCollection": True})[0]
    deployment = find(docs, "Deployment", "network-mapper-istio-watcher")
    (watcher,) = pod_spec(deployment)["containers"]
    assert watcher["command"] == ["network-mapper-istio-watcher"]
    assert env(watcher)["ISTIO_WATCHER_PATH_TEMPLATES"] == "true"
    telemetry = find(docs, "Telemetry", "network-mapper-http-paths")
    assert telemetry["apiVersion"] == "telemetry.istio.io/v1"
    assert telemetry["metadata"]["namespace"] == "istio-system"  # the mesh's root: applies mesh-wide
    jsonschema.validate(telemetry, crd_schema("istio-telemetry-crd.yaml", "v1"))
    (override,) = telemetry["spec"]["metrics"][0]["overrides"]
    assert override["tagOverrides"] == {
        "request_method": {"value": "request.method"},
        "request_path": {"value": "request.path"},
    }
    off = rendered({"enableIstioCollection": True, "istiowatcher": {"pathTemplates": False}})[0]
    (watcher,) = pod_spec(find(off, "Deployment", "network-mapper-istio-watcher"))["containers"]
    assert env(watcher)["ISTIO_WATCHER_PATH_TEMPLATES"] == "false"
