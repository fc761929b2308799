"""Runs last (file name): ``down`` leaves nothing behind, and ``up`` works again."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import Sandbox, sandbox_cli

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]


def _leftovers() -> list[str]:
    found = [
        f"netns {n}"
        for n in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
        if n.startswith("nm-")
    ]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found += [f"link {ln.split(':')[1].strip()}" for ln in links.splitlines() if ": nm" in ln]
    found += [f"dir {p}" for p in Path("/etc/netns").glob("nm-*")]
    # The mount points the kubelet made for pods' volumes (the AWS components' Secrets).
    found += [f"dir {p}" for p in (Path("/etc/network-mapper"),) if p.exists()]
    return found


def test_down_leaves_nothing_and_up_works_again(sandbox: Sandbox) -> None:
    result = sandbox_cli("down", state_dir=sandbox.state_dir)
    assert result.returncode == 0, result.stderr
    assert _leftovers() == []
    assert not sandbox.state_dir.exists()
    result = sandbox_cli("up", state_dir=sandbox.state_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sandbox_cli("status", state_dir=sandbox.state_dir).returncode == 0
