"""The console's edge details (cloud_functions/console/details.js, run by node as the browser runs
the module): an edge's server ports are one row, absent when none is known."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

CONSOLE = Path(__file__).resolve().parents[2] / "cloud_functions" / "console"
EDGE = {
    "client": {"namespace": "shop", "name": "frontend", "kind": "Deployment"},
    "target": {"type": "workload", "namespace": "shop", "name": "cartservice", "kind": "Deployment"},
    "methods": ["dns", "tcp"],
    "firstSeen": "2026-01-01T00:00:00Z",
    "lastSeen": "2026-01-01T00:00:00Z",
    "count": 3,
}


def edge_facts(edge: dict[str, object]) -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    script = (
        f"import {{ edgeFacts }} from './details.js'; process.stdout.write(edgeFacts({json.dumps(edge)}));"
    )
    done = subprocess.run(
        [node, "--input-type=module", "-e", script],
        cwd=CONSOLE,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


def test_server_ports_are_one_row() -> None:
    assert "<dt>Server ports</dt><dd>443, 8080</dd>" in edge_facts(EDGE | {"ports": [443, 8080]})
    for unknown in (EDGE | {"ports": []}, EDGE):  # none known, or an edge from before ports
        assert "Server ports" not in edge_facts(unknown)
