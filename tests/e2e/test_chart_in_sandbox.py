"""The product in the sandbox is the helm chart's: installed from ``helm/network-mapper`` rendered
with values a user could set (sandbox.chartrun), run as the templates state it.

* every Deployment and DaemonSet the chart renders has its pod, whose containers (command, args,
  env, ports, probes, volume mounts) are the template's, and which is Ready: its readiness probes
  answered through the pod's network;
* the components reach the API with the in-cluster service account (no kubeconfig anywhere in their
  spec), and the mapper's edge store lives on its PersistentVolumeClaim;
* ``helm test`` (the chart's test pod, ``network-mapper list`` in the cluster) succeeds and prints
  the map.
"""

from __future__ import annotations

import subprocess
import sys
from functools import partial
from typing import Any

import pytest

from sandbox import chartrun
from sandbox.apiserver.discovery import RESOURCES
from sandbox.nodeconfig import claim_dir
from sandbox.nodes import NODES
from sandbox.topology import AGENT_NS
from tests.e2e.conftest import Sandbox
from tests.support.mapper_process import wait_until

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

COMPARED = ("command", "args", "env", "ports", "readinessProbe", "livenessProbe", "volumeMounts")


def rendered_workloads() -> tuple[dict[str, Any], ...]:
    # The cloud's URL and token only reach the Secret and one env value: not compared below.
    values = chartrun.sandbox_values("http://cloud.network-mapper.example:8800", "token")
    return chartrun.render(values, AGENT_NS, [r.kind for r in RESOURCES]).workloads


@pytest.mark.parametrize("workload", rendered_workloads(), ids=lambda w: str(w["metadata"]["name"]))
def test_each_chart_workload_runs_its_template_and_is_ready(
    sandbox: Sandbox, workload: dict[str, Any]
) -> None:
    name = workload["metadata"]["name"]
    # A DaemonSet has a pod on each node; a Deployment its one.
    pods = sandbox.pods(AGENT_NS, name) if workload["kind"] == "DaemonSet" else [sandbox.pod(AGENT_NS, name)]
    assert sorted(p.spec.node_name for p in pods) == sorted(
        n.name for n in (NODES if workload["kind"] == "DaemonSet" else NODES[:1])
    )
    template = workload["spec"]["template"]["spec"]
    for pod in pods:
        stored = sandbox.core.api_client.sanitize_for_serialization(pod)
        for ours, theirs in zip(stored["spec"]["containers"], template["containers"], strict=True):
            for key in COMPARED:
                assert ours.get(key) == theirs.get(key), f"{ours['name']}: {key}"
            assert not any("kubeconfig" in a.lower() for a in ours.get("args", []))
        automount = stored["spec"].get("automountServiceAccountToken")
        assert automount == template.get("automountServiceAccountToken")

    def ready(name: str) -> bool:
        status = sandbox.core.read_namespaced_pod(name, AGENT_NS).status
        return any(c.type == "Ready" and c.status == "True" for c in status.conditions or ())

    for pod in pods:
        wait_until(
            partial(ready, pod.metadata.name),
            60,
            f"{pod.metadata.name} Ready (its readiness probes answered)",
        )


def test_the_mappers_store_is_on_its_claim(sandbox: Sandbox) -> None:
    claim = claim_dir(sandbox.state_dir, AGENT_NS, "network-mapper-data")
    assert claim.is_dir()
    wait_until(lambda: any(claim.glob("*.db*")), 30, f"the edge store in {claim}")


def test_helm_test_runs_the_charts_test_pod_against_the_mapper(sandbox: Sandbox) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "sandbox", "--state-dir", str(sandbox.state_dir), "helm-test"],
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Phase:          Succeeded" in run.stdout
    assert " calls:" in run.stdout, run.stdout  # `network-mapper list` printed the map
    pod = sandbox.core.read_namespaced_pod("network-mapper-test", AGENT_NS)
    assert pod.status.phase == "Succeeded"
