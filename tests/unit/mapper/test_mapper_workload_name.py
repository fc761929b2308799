"""Workload names from the workload-name annotation, whose key is a setting
(``MAPPER_WORKLOAD_NAME_ANNOTATION``): the default key, a custom key, the deprecated
``intents.otterize.com/service-name`` after it, and the order label > annotation > deprecated
annotation > owner — through ClusterState fed real Pod/ReplicaSet/Deployment API dicts."""

from __future__ import annotations

from typing import Any

import pytest

from agent.mapper.cluster import ClusterState
from agent.mapper.settings import MapperSettings
from agent.model import WorkloadIdentity
from agent.settings import SettingsError, load

T0 = 1_700_000_000.0
NS = "shop"
DEFAULT = "intents.otterize.com/workload-name"
DEPRECATED = "intents.otterize.com/service-name"
CUSTOM = "example.com/app-name"


def controller(kind: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": f"uid-{name}", "controller": True}


def deployment_pod(
    name: str, ip: str, *, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    """A pod of the ReplicaSet web-1 of the Deployment web, as the API serves it."""
    return {
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": f"uid-{name}",
            "creationTimestamp": "2023-11-14T22:13:20Z",
            "labels": labels or {},
            "annotations": annotations or {},
            "ownerReferences": [controller("ReplicaSet", "web-1")],
        },
        "spec": {"nodeName": "node-1", "containers": [{"name": "c"}]},
        "status": {"phase": "Running", "podIP": ip, "hostIP": "192.168.1.10"},
    }


def named(state: ClusterState, *pods: dict[str, Any]) -> list[str]:
    """The workload name ClusterState gives each of ``pods`` (all Deployment ``web``'s)."""
    deployment = {"metadata": {"name": "web", "namespace": NS, "uid": "uid-web"}}
    replica_set = {
        "metadata": {
            "name": "web-1",
            "namespace": NS,
            "uid": "uid-web-1",
            "ownerReferences": [controller("Deployment", "web")],
        }
    }
    state.apply("ADDED", "Deployment", deployment, T0)
    state.apply("ADDED", "ReplicaSet", replica_set, T0)
    names = []
    for obj in pods:
        state.apply("ADDED", "Pod", obj, T0)
        found = state.pod_at(obj["status"]["podIP"], T0 + 1)
        assert found is not None
        assert found.identity == WorkloadIdentity(NS, found.identity.name, "Deployment")  # kind kept
        names.append(found.identity.name)
    return names


def test_default_key_names_the_workload() -> None:
    pods = (
        deployment_pod("a", "10.244.0.10", annotations={DEFAULT: "storefront"}),
        deployment_pod("b", "10.244.0.11", annotations={CUSTOM: "ignored-by-default"}),
        deployment_pod("c", "10.244.0.12"),
    )
    assert named(ClusterState(), *pods) == ["storefront", "web", "web"]


def test_custom_key_replaces_the_default() -> None:
    pods = (
        deployment_pod("a", "10.244.0.10", annotations={CUSTOM: "storefront"}),
        deployment_pod("b", "10.244.0.11", annotations={DEFAULT: "not-the-configured-key"}),
        deployment_pod("c", "10.244.0.12"),
    )
    assert named(ClusterState(workload_annotation=CUSTOM), *pods) == ["storefront", "web", "web"]


@pytest.mark.parametrize("key", [DEFAULT, CUSTOM])
def test_deprecated_service_name_annotation_is_still_read(key: str) -> None:
    pods = (deployment_pod("a", "10.244.0.10", annotations={DEPRECATED: "legacy"}),)
    assert named(ClusterState(workload_annotation=key), *pods) == ["legacy"]


def test_precedence_label_then_key_then_deprecated_then_owner() -> None:
    label = {"otterize/service-name": "from-label"}
    pods = (
        deployment_pod(
            "a", "10.244.0.10", labels=label, annotations={CUSTOM: "from-key", DEPRECATED: "from-deprecated"}
        ),
        deployment_pod("b", "10.244.0.11", annotations={CUSTOM: "from-key", DEPRECATED: "from-deprecated"}),
        deployment_pod("c", "10.244.0.12", annotations={DEPRECATED: "from-deprecated"}),
        deployment_pod("d", "10.244.0.13", annotations={CUSTOM: ""}),  # empty: no name, the owner's
    )
    state = ClusterState(workload_annotation=CUSTOM)
    assert named(state, *pods) == ["from-label", "from-key", "from-deprecated", "web"]


def test_the_setting_loads_checks_and_reaches_the_cluster_state() -> None:
    assert load(MapperSettings, [], {}).cluster.workload_name_annotation == DEFAULT
    env = {"MAPPER_WORKLOAD_NAME_ANNOTATION": CUSTOM}
    key = load(MapperSettings, [], env).cluster.workload_name_annotation
    assert (
        key
        == CUSTOM
        == load(MapperSettings, ["--workload-name-annotation", CUSTOM], {}).cluster.workload_name_annotation
    )
    pods = (deployment_pod("a", "10.244.0.10", annotations={CUSTOM: "storefront"}),)
    assert named(ClusterState(workload_annotation=key), *pods) == ["storefront"]
    for bad in ("", "has space", "/name", "UPPER.example/x", "a/" + "n" * 64):
        with pytest.raises(SettingsError, match=r"MAPPER_WORKLOAD_NAME_ANNOTATION.*annotation key"):
            load(MapperSettings, [], {"MAPPER_WORKLOAD_NAME_ANNOTATION": bad})
