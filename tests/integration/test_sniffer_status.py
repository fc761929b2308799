"""The real sniffer process (``python -m agent.sniffer``, as the chart runs it: NODE_NAME and
POD_NAME from the downward API) sends its status to the real mapper API app under uvicorn, which
keeps coverage: the node it names is covered while it reports, and uncovered (its instance
silent) once the sniffer stops and the stale bound passes. The stale bound and the status interval
are short here; the logic is the same as with the defaults (90 s, 30 s)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.mapper.api import create_app
from agent.mapper.cluster import ClusterState
from agent.mapper.coverage import Coverage
from agent.mapper.resolver import Resolver
from agent.mapper.settings import ApiSettings
from agent.mapperclient import HttpMapperClient
from tests.support.mapper_app import MapperServer, NoEdges
from tests.support.mapper_process import clean_env, free_port, wait_until

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("tcpdump"), reason="capture needs root and libpcap"
)

ROOT = Path(__file__).parents[2]
TOKEN = "status-test-token"
STALE = 3.0
QUERY = (
    "{ coverage { covered nodes { name covered sniffers } components { component instance node watching"
    " counters { name value } silent } } }"
)


@pytest.fixture
def mapper() -> Iterator[MapperServer]:
    resolver = Resolver(ClusterState())
    coverage = Coverage(STALE, nodes=lambda: ["node-a", "node-b"], dropped=resolver.dropped)
    app = create_app(ApiSettings(token=TOKEN), NoEdges(), resolver, coverage=coverage)
    with MapperServer(app) as server:
        yield server


def coverage(server: MapperServer) -> dict[str, Any]:
    data = HttpMapperClient(server.url, "", 5.0).execute(QUERY, {})
    found: dict[str, Any] = data["coverage"]
    return found


def test_the_sniffers_status_covers_its_node_until_it_stops(mapper: MapperServer) -> None:
    env = clean_env(
        {
            "OTTERIZE_MAPPER_API": mapper.url,
            "NETWORK_MAPPER_TOKEN": TOKEN,
            "SNIFFER_HEALTH_ADDRESS": f"127.0.0.1:{free_port()}",
            "NODE_NAME": "node-a",
            "POD_NAME": "network-mapper-sniffer-x7k2p",
            "STATUS_INTERVAL": "0.3",
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "agent.sniffer"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, text=True
    )
    try:

        def node_a_covered() -> dict[str, Any] | None:
            assert process.poll() is None, f"the sniffer exited {process.returncode}"
            found = coverage(mapper)
            nodes = {n["name"]: n for n in found["nodes"]}
            return found if nodes["node-a"]["covered"] else None

        found = wait_until(node_a_covered, 20, "node-a covered by the sniffer's status")
        (status,) = found["components"]
        assert status["component"] == "sniffer"
        assert status["instance"] == "network-mapper-sniffer-x7k2p"
        assert status["node"] == "node-a"
        assert status["watching"] == ["capture:dns,tcp-syn", "socket-scan:/proc"]
        assert {c["name"] for c in status["counters"]} == {
            "parse_errors",
            "queue_full",
            "report_failures",
            "kernel_dropped",
        }
        assert {n["name"]: n["covered"] for n in found["nodes"]} == {"node-a": True, "node-b": False}
        assert found["covered"] is False  # node-b has no sniffer
    finally:
        process.terminate()
        process.wait(15)

    # Its last capture report (the flush at stop) names node-a too: node-a stays covered STALE after it.
    def uncovered() -> dict[str, Any] | None:
        found = coverage(mapper)
        nodes = {n["name"]: n["covered"] for n in found["nodes"]}
        return found if nodes == {"node-a": False, "node-b": False} else None

    found = wait_until(uncovered, STALE + 10, "node-a uncovered once the sniffer stopped")
    assert [c["silent"] for c in found["components"]] == [True]
