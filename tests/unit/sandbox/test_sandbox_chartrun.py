"""The sandbox installs the product from its chart (sandbox.chartrun): what it renders and what the
controllers and the kubelet make of it.

* the sandbox's values render every component, started mapper first and webhook last; ``helm test``
  hooks are kept out of the install; kinds the sandbox's API does not serve are named, not dropped
  silently;
* a Deployment's pod is owned by a ReplicaSet with the ``pod-template-hash`` label, a DaemonSet's
  directly; the sniffer's is on the host network;
* every chart pod can be run *as stored* with nothing but the release's own objects: its command is
  a console script of the package, every ``secretKeyRef`` resolves in the rendered Secrets, every
  probe names a port the container declares, the service-account volume is mounted exactly where the
  pod does not opt out, and a PersistentVolumeClaim becomes a claim;
* a Service's Endpoints resolve named target ports to the pod's numbers.
"""

from __future__ import annotations

import base64
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from sandbox import chartrun, podspec
from sandbox.apiserver.discovery import RESOURCES
from sandbox.nodeconfig import console_scripts, hides_image

NS = "otterize-system"
SERVED = [r.kind for r in RESOURCES]
API = podspec.ApiAccess("10.96.0.1", 443, b"CA PEM", "token")
DNS = podspec.ClusterDns("10.96.0.10", "cluster.local")


@cache
def release() -> chartrun.Release:
    return chartrun.render(chartrun.sandbox_values("http://cloud:8800", "ingest-token"), NS, SERVED)


def workload(name: str) -> dict[str, Any]:
    (found,) = [w for w in release().workloads if w["metadata"]["name"] == name]
    return found


def sources() -> podspec.Sources:
    def lookup(kind: str) -> podspec.Lookup:
        def find(namespace: str, name: str) -> dict[str, bytes] | None:
            for obj in release().objects:
                meta = obj["metadata"]
                if obj["kind"] == kind and (meta["namespace"], meta["name"]) == (namespace, name):
                    if kind == "Secret":
                        data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
                        return data | {k: v.encode() for k, v in (obj.get("stringData") or {}).items()}
                    return {k: v.encode() for k, v in (obj.get("data") or {}).items()}
            return None

        return find

    return podspec.Sources(lookup("Secret"), lookup("ConfigMap"))


def test_every_component_renders_in_start_order_without_hooks() -> None:
    names = [w["metadata"]["name"] for w in release().workloads]
    assert names == list(chartrun.START_ORDER)
    installed = {(o["kind"], o["metadata"]["name"]) for o in release().objects}
    assert ("Service", "network-mapper") in installed
    assert ("MutatingWebhookConfiguration", "network-mapper-aws-visibility") in installed
    assert all("helm.sh/hook" not in (o["metadata"].get("annotations") or {}) for o in release().objects)
    assert release().kinds_skipped == ("Telemetry",)  # Istio's CRD: not served by the sandbox's API


def test_controllers_own_the_pods_as_kubernetes_names_them() -> None:
    mapper = chartrun.pod_plan(workload("network-mapper"), "node")
    deployment, replica_set = mapper.owners
    assert deployment["kind"] == "Deployment" and replica_set["kind"] == "ReplicaSet"
    template_hash = replica_set["metadata"]["labels"]["pod-template-hash"]
    assert replica_set["metadata"]["name"] == f"network-mapper-{template_hash}"
    assert mapper.name.startswith(f"network-mapper-{template_hash}-")
    assert mapper.pod["metadata"]["ownerReferences"][0]["name"] == replica_set["metadata"]["name"]
    assert "strategy" not in replica_set["spec"]
    sniffer = chartrun.pod_plan(workload("network-mapper-sniffer"), "node")
    assert [o["kind"] for o in sniffer.owners] == ["DaemonSet"] and sniffer.host_network
    assert sniffer.pod["spec"]["nodeName"] == "node"


@pytest.mark.parametrize("name", chartrun.START_ORDER)
def test_each_chart_pod_runs_as_stored_from_the_release_alone(name: str) -> None:
    planned = chartrun.pod_plan(workload(name), "node")
    scripts = console_scripts("/image/bin/python")
    run = podspec.pod_run(planned.pod, "10.244.1.50", DNS, sources(), api=API, scripts=scripts)
    spec = planned.pod["spec"]
    for container, stored in zip(run.containers, spec["containers"], strict=True):
        assert container.argv[0] == f"/image/bin/{stored['command'][0]}"
        declared = {p["containerPort"] for p in stored.get("ports") or ()}
        for probe in (container.readiness, container.liveness):
            assert probe is None or probe.port in declared
        assert container.liveness is not None, "every component is probed"
        mounted = {m.path for m in container.mounts}
        assert (podspec.SERVICE_ACCOUNT_DIR in mounted) == (
            spec.get("automountServiceAccountToken") is not False
        )
        assert container.env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
        secret_refs = [e["name"] for e in stored.get("env") or () if "secretKeyRef" in e.get("valueFrom", {})]
        assert all(container.env.get(v) for v in secret_refs)
    if name == "network-mapper":
        assert run.claims == {"data": "network-mapper-data"}


def test_named_target_ports_resolve_to_the_pods_numbers() -> None:
    planned = chartrun.pod_plan(workload("network-mapper"), "node")
    (service,) = [
        o for o in release().objects if o["kind"] == "Service" and o["metadata"]["name"] == "network-mapper"
    ]
    assert chartrun.selects(service, planned.pod)
    service = {**service, "spec": {**service["spec"], "clusterIP": "10.96.0.30"}}
    ep, eps, routes = chartrun.endpoints(service, planned.pod, "10.244.1.50", "node")
    container_ports = {p["containerPort"] for p in planned.pod["spec"]["containers"][0]["ports"]}
    assert {p["port"] for p in ep["subsets"][0]["ports"]} <= container_ports
    assert eps["metadata"]["labels"]["kubernetes.io/service-name"] == "network-mapper"
    assert [(r.cluster_ip, r.port, r.pod_ip) for r in routes] == [("10.96.0.30", 9090, "10.244.1.50")]
    other = chartrun.pod_plan(workload("network-mapper-aws-dns"), "node")
    assert not chartrun.selects(service, other.pod)


def test_volumes_never_cover_the_sandboxs_own_files() -> None:
    image = (Path("/tmp/ci/main/.venv"), Path("/tmp/ci/main"), Path("/run/network-mapper-sandbox"))
    assert hides_image("/tmp", image)
    assert hides_image("/tmp/ci/main", image)
    assert not hides_image("/var/lib/network-mapper", image)
    assert not hides_image("/tmp/ci/other", image)
