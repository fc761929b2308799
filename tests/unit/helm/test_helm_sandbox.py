"""The sandbox runs the watchers as the chart does: the chart, rendered with the sandbox's values
(``sandbox.product.CHART_VALUES``) as release ``network-mapper`` in ``otterize-system``, gives each
watcher the command, arguments and environment the sandbox starts it with — up to what a real
cluster gives a pod by itself (the in-cluster service account, the Secret's value)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from sandbox.awsdemo import mutating_webhook_configuration
from sandbox.product import AGENTS, AWS_AGENTS, AWS_MODULES, CHART_VALUES, SANDBOX_ONLY_ENV, WATCHER_MODULES
from sandbox.topology import AGENT_NS

CHART = Path(__file__).resolve().parents[3] / "helm" / "network-mapper"
SANDBOX_ONLY_ARGS = ("--kubeconfig", "{kubeconfig}")  # the pod's service account, in a real cluster


def rendered_watchers() -> dict[str, dict[str, Any]]:
    """Rendered watcher Deployments' containers, by Deployment name."""
    rendered = helm.Chart.load(CHART).render(CHART_VALUES, name="network-mapper", namespace=AGENT_NS)
    docs = [
        doc
        for path, text in rendered.items()
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]
    found = {}
    for doc in docs:
        if doc["kind"] == "Deployment" and doc["metadata"]["name"] in WATCHER_MODULES:
            (container,) = doc["spec"]["template"]["spec"]["containers"]
            found[doc["metadata"]["name"]] = container
    return found


@pytest.mark.parametrize("name", sorted(WATCHER_MODULES))
def test_the_sandbox_starts_each_watcher_as_the_chart_renders_it(name: str) -> None:
    container = rendered_watchers()[name]
    (workload,) = [w for w in AGENTS if w.name == name]
    (command,) = container["command"]
    assert WATCHER_MODULES[command] == workload.module  # the image's script for that module
    assert tuple(container.get("args", ())) + SANDBOX_ONLY_ARGS == workload.args
    env: dict[str, str] = {}
    for variable in container["env"]:
        if "valueFrom" in variable:  # the Secret's value: the sandbox fills in the token itself
            assert variable["valueFrom"]["secretKeyRef"]["key"] == "agent-token"
            env[variable["name"]] = "{token}"
        else:
            env[variable["name"]] = variable["value"]
    assert env == workload.env
    ports = {p["containerPort"] for p in container["ports"]}
    health = next(v for k, v in workload.env.items() if k.endswith("_HEALTH_ADDRESS"))
    assert {int(health.rsplit(":", 1)[1])} == ports


def rendered(kind: str) -> dict[str, dict[str, Any]]:
    out = helm.Chart.load(CHART).render(CHART_VALUES, name="network-mapper", namespace=AGENT_NS)
    return {
        doc["metadata"]["name"]: doc
        for path, text in out.items()
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc and doc["kind"] == kind
    }


@pytest.mark.parametrize("workload", AWS_AGENTS, ids=lambda w: w.name)
def test_the_sandbox_starts_each_aws_component_as_the_chart_renders_it(workload: Any) -> None:
    pod = rendered("Deployment")[workload.name]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (command,) = container["command"]
    assert AWS_MODULES[command] == workload.module
    assert tuple(container.get("args", ())) + SANDBOX_ONLY_ARGS[: len(workload.args)] == workload.args
    env = {
        v["name"]: "{token}" if "valueFrom" in v else v["value"]
        for v in container["env"]
        if "valueFrom" not in v or v["valueFrom"]["secretKeyRef"]["key"] == "agent-token"
    }
    assert env == {k: v for k, v in workload.env.items() if k not in SANDBOX_ONLY_ENV}
    # The volumes the chart mounts from Secrets and ConfigMaps, at the same paths ("tmp", an
    # emptyDir for a read-only root filesystem, has no counterpart: the sandbox's is writable).
    sources = {
        v["name"]: ("secret", v["secret"]["secretName"])
        if "secret" in v
        else ("configMap", v["configMap"]["name"])
        for v in pod.get("volumes", ())
        if "emptyDir" not in v
    }
    assert sources == {v.name: (v.kind, v.source) for v in workload.volumes}
    mounts = {(m["name"], m["mountPath"]) for m in container.get("volumeMounts", ()) if m["name"] in sources}
    assert mounts == set(workload.mounts)


def test_the_sandbox_registers_the_charts_webhook_configuration() -> None:
    (chart,) = rendered("MutatingWebhookConfiguration").values()
    ours = mutating_webhook_configuration(AGENT_NS, "CA")
    for doc in (chart, ours):
        for hook in doc["webhooks"]:
            hook["clientConfig"].pop("caBundle")
        doc["metadata"].pop("labels", None)
    assert ours == chart
