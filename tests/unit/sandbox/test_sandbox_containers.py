"""Pods with more than one container: their manifests, their status after restarts, the CRI log
file names, and the control endpoint's paths (pure parts of the sandbox's kubelet and objects)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox import objects
from sandbox.control import parse_path
from sandbox.kubelet import ContainerState, Terminated, log_path
from sandbox.product import WORKLOADS
from sandbox.topology import ISTIO_NS, KAFKA_NS, Workload


def _workload(namespace: str, name: str) -> Workload:
    return next(w for w in WORKLOADS if w.namespace == namespace and w.name == name)


def test_a_sidecar_pod_lists_both_containers_and_the_injectors_labels() -> None:
    server = _workload(ISTIO_NS, "server")
    plan = objects.plan_pod(server, "10.244.1.60")
    containers = plan.pod["spec"]["containers"]
    assert [c["name"] for c in containers] == ["server", "istio-proxy"]
    assert containers[0]["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
    assert {p["containerPort"] for p in containers[1]["ports"]} == {15090, 15006}
    labels = plan.pod["metadata"]["labels"]
    assert labels["app"] == "server" and labels["security.istio.io/tlsMode"] == "istio"
    assert labels["service.istio.io/canonical-name"] == "server"
    assert plan.pod["spec"]["serviceAccountName"] == "server"
    deployment, replicaset = plan.owners
    # The injector labels the pod, not the Deployment's template.
    assert "security.istio.io/tlsMode" not in deployment["spec"]["template"]["metadata"]["labels"]
    assert [c["name"] for c in replicaset["spec"]["template"]["spec"]["containers"]] == [
        "server",
        "istio-proxy",
    ]


def test_the_service_targets_the_sidecar_in_front_of_the_workload() -> None:
    server = _workload(ISTIO_NS, "server")
    svc = objects.service(server)
    assert svc["spec"]["ports"] == [{"name": "main", "port": 80, "targetPort": 15006, "protocol": "TCP"}]
    assert objects.endpoints(server, [("server-x", "10.244.1.60")])["subsets"][0]["ports"][0]["port"] == 15006


def test_single_container_pods_are_unchanged() -> None:
    plan = objects.plan_pod(_workload("otterize-ecom-demo", "frontend"), "10.244.1.20")
    assert plan.pod["spec"]["containers"] == [
        {
            "name": "frontend",
            "image": "sandbox/sandbox.workloads",
            "command": ["python", "-m", "sandbox.workloads"],
            "args": list(_workload("otterize-ecom-demo", "frontend").args),
            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
        }
    ]
    assert "serviceAccountName" not in plan.pod["spec"]
    kafka = objects.plan_pod(_workload(KAFKA_NS, "kafka"), "10.244.1.50")
    assert kafka.pod_name == "kafka-0" and kafka.pod["metadata"]["labels"]["app"] == "kafka"


def test_status_reports_restarts_container_ids_and_the_last_state() -> None:
    server = _workload(ISTIO_NS, "server")
    old = Terminated(143, "2024-05-01T12:00:00Z", "2024-05-01T12:05:00Z", "containerd://aaa")
    states = (
        ContainerState("server", 0, "containerd://111", "2024-05-01T12:00:00Z"),
        ContainerState("istio-proxy", 1, "containerd://bbb", "2024-05-01T12:05:01Z", last=old),
    )
    status = objects.pod_status(objects.images(server), "10.244.1.60", "2024-05-01T12:00:00Z", states)[
        "status"
    ]
    app, proxy = status["containerStatuses"]
    assert (app["name"], app["restartCount"], app["ready"]) == ("server", 0, True)
    assert app["state"] == {"running": {"startedAt": "2024-05-01T12:00:00Z"}} and app["lastState"] == {}
    assert (proxy["name"], proxy["restartCount"], proxy["containerID"]) == (
        "istio-proxy",
        1,
        "containerd://bbb",
    )
    assert proxy["lastState"]["terminated"] == {
        "exitCode": 143,
        "reason": "Error",
        "startedAt": "2024-05-01T12:00:00Z",
        "finishedAt": "2024-05-01T12:05:00Z",
        "containerID": "containerd://aaa",
    }
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"


def test_an_exited_container_makes_the_pod_unready_until_it_runs_again() -> None:
    server = _workload(ISTIO_NS, "server")
    gone = Terminated(0, "2024-05-01T12:00:00Z", "2024-05-01T12:01:00Z", "containerd://111")
    states = (
        ContainerState("server", 0, "containerd://111", "2024-05-01T12:00:00Z", exited=gone),
        ContainerState("istio-proxy", 0, "containerd://222", "2024-05-01T12:00:00Z"),
    )
    status = objects.pod_status(objects.images(server), "10.244.1.60", "2024-05-01T12:00:00Z", states)[
        "status"
    ]
    app = status["containerStatuses"][0]
    assert app["ready"] is False and app["state"]["terminated"]["reason"] == "Completed"
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "False"


def test_log_file_names() -> None:
    d = Path("/logs")
    assert log_path(d, "ns", "kafka-0") == d / "ns_kafka-0.log"  # the first container, as before
    assert log_path(d, "ns", "web-abc", "istio-proxy") == d / "ns_web-abc_istio-proxy.log"
    assert log_path(d, "ns", "kafka-0", previous=True) == d / "ns_kafka-0~previous.log"
    assert (
        log_path(d, "ns", "web-abc", "istio-proxy", previous=True)
        == d / "ns_web-abc_istio-proxy~previous.log"
    )
    # A pod whose name looks like another's previous log cannot collide: "~" is no name character.
    assert log_path(d, "ns", "a.previous") != log_path(d, "ns", "a", previous=True)


@pytest.mark.parametrize(
    ("path", "parsed"),
    [
        ("/pods/ns/web/pause", ("ns", "web", "pause", None)),
        ("/pods/ns/web/restart", ("ns", "web", "restart", None)),
        ("/pods/ns/web/restart/istio-proxy", ("ns", "web", "restart", "istio-proxy")),
        ("/pods/ns/web/pause/istio-proxy", None),
        ("/pods/ns/web/explode", None),
        ("/pods/ns/web", None),
    ],
)
def test_control_paths(path: str, parsed: tuple[str, str, str, str | None] | None) -> None:
    assert parse_path(path) == parsed
