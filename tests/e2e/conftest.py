"""The sandbox cluster, brought up once per test session (or reused when already up)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from sandbox.__main__ import is_up
from sandbox.state import DEFAULT_STATE_DIR, StateFile


@dataclass(frozen=True)
class Sandbox:
    state_dir: Path
    kubeconfig: Path

    @property
    def core(self) -> k8s.CoreV1Api:
        # Built per use: a sandbox restarted by a test serves its API on a new port.
        return k8s.CoreV1Api(k8s_config.new_client_from_config(config_file=str(self.kubeconfig)))

    def pods(self, namespace: str, app: str) -> list[k8s.V1Pod]:
        """The pods of workload ``app`` (a DaemonSet has one per node): by the sandbox's ``app``
        label, or for the chart's workloads (labelled the chart's way) by the names their
        controller gives them."""
        pods = self.core.list_namespaced_pod(namespace, label_selector=f"app={app}").items
        if not pods:
            generated = re.compile(rf"{re.escape(app)}-(\w{{10}}-)?\w{{5}}")
            pods = [
                p
                for p in self.core.list_namespaced_pod(namespace).items
                if generated.fullmatch(p.metadata.name)
            ]
        return list(pods)

    def pod(self, namespace: str, app: str) -> k8s.V1Pod:
        """The one pod of workload ``app`` (see :meth:`pods`)."""
        pods = self.pods(namespace, app)
        assert len(pods) == 1, f"expected one pod of {app}, got {[p.metadata.name for p in pods]}"
        return pods[0]


def network_mapper(sb: Sandbox, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``network-mapper`` CLI against the sandbox's mapper, as a user runs it."""
    from sandbox.views import mapper_url

    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "--mapper-url", mapper_url(sb.state_dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def sandbox_cli(*args: str, state_dir: Path = DEFAULT_STATE_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox", "--state-dir", str(state_dir), *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    if os.geteuid() != 0:
        pytest.skip("the sandbox needs root")
    state_dir = DEFAULT_STATE_DIR
    started_here = not is_up(StateFile(state_dir).load())
    result = sandbox_cli("up", state_dir=state_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    yield Sandbox(state_dir, state_dir / "kubeconfig")
    if started_here:
        sandbox_cli("down", state_dir=state_dir)
