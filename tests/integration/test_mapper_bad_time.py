"""Issue 11, defect 2, end to end: one report entry with a time that is valid RFC 3339 but far out
of range (year 9999 with a negative offset: 10000 in UTC) used to be accepted and then break the
map — the ``edges`` query failed, ``network-mapper list`` and ``export`` exited with an error,
across restarts. Now the real mapper process skips that entry, takes the rest of the report,
counts the skip on ``/metrics``, and the CLI lists and exports the map, before and after a restart.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from agent.model import InternetTarget
from tests.support.mapper_process import (
    DNS_MUTATION,
    FRONTEND,
    Cluster,
    MapperProcess,
    now_rfc3339,
    running_cluster,
)

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with running_cluster(tmp_path_factory.mktemp("bad-time-cluster")) as running:
        yield running


def _cli(mapper: MapperProcess, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "agent.cli", "--mapper-url", mapper.query_url, *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=60, check=False)


def test_a_far_future_time_is_skipped_and_the_map_keeps_working(cluster: Cluster, tmp_path: Path) -> None:
    with MapperProcess(cluster, tmp_path) as mapper:
        good = {
            "destination": "good.example.com",
            "destinationIP": "198.51.100.7",
            "TTL": 60,
            "lastSeen": now_rfc3339(),
        }
        bad = good | {"destination": "bad.example.com", "lastSeen": "9999-12-31T23:00:00-05:00"}
        results = [{"srcIp": cluster.pod_ips[FRONTEND], "srcHostname": "", "destinations": [bad, good]}]
        client = mapper.client()
        try:
            assert client.execute(DNS_MUTATION, {"results": {"results": results}}) == {
                "reportCaptureResults": True
            }
        finally:
            client.close()
        mapper.wait_for_edges([(FRONTEND, InternetTarget("good.example.com", ("198.51.100.7",), 0))])
        assert all(
            e.target != InternetTarget("bad.example.com", ("198.51.100.7",), 0) for e in mapper.edges()
        )
        metrics = requests.get(mapper.url + "/metrics", timeout=10).text
        assert 'network_mapper_report_entries_skipped_total{reason="bad_time"} 1' in metrics
        listed = _cli(mapper, "list")
        assert listed.returncode == 0 and "good.example.com" in listed.stdout, listed.stderr
    with MapperProcess(cluster, tmp_path) as restarted:  # the same data dir
        exported = _cli(restarted, "export", "--format", "json")
        assert exported.returncode == 0 and "good.example.com" in exported.stdout, exported.stderr
        assert "bad.example.com" not in exported.stdout
