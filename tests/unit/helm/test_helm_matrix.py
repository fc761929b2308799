"""The chart's render matrix, checked by the real tools: each case of values renders, every manifest
validates strictly against Kubernetes' newest schemas (kubernetes-validate) or, for custom resources,
against the published CRD (../shared/data), ``helm lint --strict`` is clean, and checkov finds nothing
on the rendered manifests — every check it skips is skipped by a ``checkov.io/skip<N>`` annotation
in the chart with its reason.

Each case renders as its own release in its own namespace, so checkov's graph checks (which relate
objects across files, e.g. pods to NetworkPolicies) cannot match one case's objects with another's;
checkov runs once, over one directory with a folder per case.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.support.chart import CHART, documents

ROOT = Path(__file__).resolve().parents[3]
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
SHARED = ROOT.parent / "shared" / "data"
CRDS = {("telemetry.istio.io/v1", "Telemetry"): ("istio-telemetry-crd.yaml", "v1")}
KAFKA_SERVERS = [
    "kafka-0.kafka",  # Otterize's form
    {"name": "my-cluster-kafka-*", "namespace": "strimzi"},
]
CASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "telemetry-off": {"global": {"telemetry": {"enabled": False}}},
    "aws": {"aws": {"visibility": {"enabled": True}}},
    "kafka": {"kafkawatcher": {"enable": True, "kafkaServers": KAFKA_SERVERS}},
    "kafka-glob": {"kafkawatcher": {"enable": True, "kafkaServers": ["kafka-*.kafka-*"]}},
    "istio": {"enableIstioCollection": True},
    "anonymize": {"cloud": {"url": "https://cloud.example.com", "token": "ingest", "anonymize": True}},
    "otterize-aliases": {
        "global": {
            "otterizeCloud": {
                "apiAddress": "https://cloud.example.com",
                "credentials": {"clientSecretKeyRef": {"secretName": "mine", "secretKey": "secret"}},
            },
            "podLabels": {"team": "platform"},
            "podAnnotations": {"example.com/owner": "platform"},
            "commonLabels": {"cost-center": "42"},
        }
    },
    "deprecated-names": {"sniffer": {"enabled": False}, "imagePullSecrets": [{"name": "regcred"}]},
    "network-policy": {"mapper": {"networkPolicy": {"enabled": True, "nodeCIDRs": ["10.0.0.0/16"]}}},
    "everything": {
        "aws": {"visibility": {"enabled": True}},
        "kafkawatcher": {"enable": True, "kafkaServers": KAFKA_SERVERS},
        "enableIstioCollection": True,
        "cloud": {"url": "https://cloud.example.com", "existingSecret": {"name": "mine"}, "anonymize": True},
        "persistence": {"enabled": True, "storageClass": "fast"},
        "opentelemetry": {"enable": True},
        "mapper": {
            "networkPolicy": {"enabled": True, "nodeCIDRs": ["10.0.0.0/16", "fd00::/64"]},
            "priorityClassName": "system-cluster-critical",
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["system"]}]}
                        ]
                    }
                }
            },
        },
        "image": {"pullSecrets": ["regcred"]},
    },
}


def release(case: str) -> tuple[str, str]:
    return f"nm-{case}", f"ns-{case}"


@pytest.fixture(scope="module")
def renders() -> dict[str, dict[str, str]]:
    chart = helm.Chart.load(CHART)
    out = {}
    for case, values in CASES.items():
        name, namespace = release(case)
        out[case] = chart.render(values, name=name, namespace=namespace)
    return out


@pytest.fixture(scope="module")
def checkov(renders: dict[str, dict[str, str]], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One checkov run over every case's manifests (a folder each)."""
    root = tmp_path_factory.mktemp("rendered")
    for case, files in renders.items():
        folder = root / case
        folder.mkdir()
        for path, text in files.items():
            if not path.endswith("NOTES.txt"):
                (folder / path.replace("/", "_")).write_text(text, encoding="utf-8")
    command = [str(CHECKOV), "-d", str(root), "--framework", "kubernetes", "--compact", "-o", "json"]
    result = subprocess.run(
        [*command, "--skip-download"], capture_output=True, text=True, timeout=300, check=False
    )
    report = json.loads(result.stdout)
    assert isinstance(report, dict), report  # one framework: one report
    return report


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_manifest_validates_strictly(renders: dict[str, dict[str, str]], case: str) -> None:
    docs = documents(renders[case])
    assert docs
    version = kubernetes_validate.latest_version()
    for doc in docs:
        crd = CRDS.get((doc["apiVersion"], doc["kind"]))
        if crd is None:
            kubernetes_validate.validate(doc, version, strict=True)
        else:
            file, served = crd
            definition = yaml.safe_load((SHARED / file).read_text(encoding="utf-8"))
            (found,) = [v for v in definition["spec"]["versions"] if v["name"] == served]
            jsonschema.validate(doc, found["schema"]["openAPIV3Schema"])


@pytest.mark.parametrize("case", sorted(CASES))
def test_lint_is_clean(case: str) -> None:
    _, namespace = release(case)
    report = helm.lint(CHART, CASES[case], strict=True, namespace=namespace)
    assert report["errors"] == [], report
    assert report["messages"] == [], report


def test_checkov_finds_nothing(checkov: dict[str, Any]) -> None:
    failed = [(f["check_id"], f["resource"], f["file_path"]) for f in checkov["results"]["failed_checks"]]
    assert failed == []
    assert checkov["summary"]["parsing_errors"] == 0
    assert checkov["summary"]["resource_count"] > 0


def test_every_checkov_skip_names_a_check_and_a_reason(renders: dict[str, dict[str, str]]) -> None:
    skips = 0
    for files in renders.values():
        for doc in documents(files):
            for key, value in (doc["metadata"].get("annotations") or {}).items():
                if key.startswith("checkov.io/skip"):
                    skips += 1
                    assert re.fullmatch(r"CKV2?_K8S_\d+=[^=]{20,}", value), (doc["metadata"]["name"], value)
    assert skips


def test_each_case_renders_what_it_turns_on(renders: dict[str, dict[str, str]]) -> None:
    def names(case: str) -> set[tuple[str, str]]:
        return {(d["kind"], d["metadata"]["name"]) for d in documents(renders[case])}

    assert ("DaemonSet", "network-mapper-sniffer") in names("defaults")
    assert ("DaemonSet", "network-mapper-sniffer") not in names("deprecated-names")
    assert ("Deployment", "network-mapper-aws-webhook") in names("aws")
    assert ("Deployment", "network-mapper-kafka-watcher") in names("kafka")
    assert ("ClusterRole", "network-mapper-kafka-watcher-ns-kafka-glob") in names("kafka-glob")
    assert ("Telemetry", "network-mapper-http-paths") in names("istio")
    assert ("NetworkPolicy", "network-mapper") in names("network-policy")
    assert ("NetworkPolicy", "network-mapper") not in names("defaults")
