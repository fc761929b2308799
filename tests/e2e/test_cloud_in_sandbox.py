"""The local cloud in the sandbox, as its users see it: the mapper uploads, `curl …/graph`
shows the map, and an outage of the cloud with a mapper restart inside it loses nothing."""

from __future__ import annotations

import re
import time

import pytest
import requests

from agent.cli.queries import EDGES_QUERY, edge_from_json
from agent.mapperclient import HttpMapperClient
from agent.model import Edge
from agent.wire import edge_from_plain, parse_time
from sandbox.state import StateFile
from sandbox.topology import AGENT_NS, EXPECTED_DEMO_MAP
from sandbox.views import cloud_access, cloud_demo_map, cloud_graph, mapper_url
from tests.e2e.conftest import Sandbox
from tests.support.mapper_process import wait_until

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]
POLL = 1.0  # seconds between checks: each asks the cloud or the mapper
RESTARTING = (requests.RequestException,)  # the cloud or mapper is (re)starting: ask again until the deadline


def _control(sb: Sandbox, namespace: str, prefix: str, action: str) -> None:
    port = StateFile(sb.state_dir).load().forwards["control"]
    reply = requests.post(f"http://127.0.0.1:{port}/pods/{namespace}/{prefix}/{action}", timeout=10)
    assert reply.status_code == 200, f"{action} {namespace}/{prefix}: {reply.status_code}"


def mapper_keys(sb: Sandbox) -> set[tuple[object, object]]:
    client = HttpMapperClient(mapper_url(sb.state_dir), "", 10.0)
    try:
        return {edge_from_json(e).key for e in client.execute(EDGES_QUERY, {"namespaces": None})["edges"]}
    finally:
        client.close()


def cloud_edges(sb: Sandbox) -> list[Edge]:
    return [edge_from_plain(e) for e in cloud_graph(sb.state_dir)]


def _cloud_up(sb: Sandbox) -> bool:
    try:
        return requests.get(f"{cloud_access(sb.state_dir)[0]}/healthz", timeout=2).ok
    except requests.RequestException:
        return False


def test_curl_graph_returns_the_demo_map(sandbox: Sandbox) -> None:
    wait_until(
        lambda: cloud_demo_map(sandbox.state_dir) == EXPECTED_DEMO_MAP,
        90,
        "the demo map in the cloud",
        interval=POLL,
        retry_on=RESTARTING,
    )
    base, tenant, token = cloud_access(sandbox.state_dir)
    # What the demo prints is a read token: it reads, and administers nothing.
    auth = {"Authorization": f"Bearer {token}"}
    for path, body in (("clusters", {"name": "x"}), ("tokens", {"role": "read"})):
        reply = requests.post(f"{base}/v1/tenants/{tenant}/{path}", json=body, headers=auth, timeout=10)
        assert reply.status_code == 403, (path, reply.text)
    # Only the token's own tenant: an unknown token is refused.
    assert (
        requests.get(
            f"{base}/graph", headers={"Authorization": "Bearer nm_" + "0" * 64}, timeout=10
        ).status_code
        == 401
    )
    assert token


def test_the_mappers_heartbeat_keeps_live_edges_current(sandbox: Sandbox) -> None:
    """The uploader sends a heartbeat once live edges are uploaded; the cloud lists it and reads
    the demo's steady edges as seen at it (not at their first upload)."""
    base, tenant, token = cloud_access(sandbox.state_dir)
    headers = {"Authorization": f"Bearer {token}"}

    def heartbeat() -> str | None:
        reply = requests.get(f"{base}/v1/tenants/{tenant}/clusters", headers=headers, timeout=10)
        reply.raise_for_status()
        beats = [c["lastHeartbeat"] for c in reply.json()["clusters"]]
        return max((b for b in beats if b), default=None)

    wait_until(
        lambda: heartbeat() is not None,
        150,
        "the mapper's first heartbeat",
        interval=POLL,
        retry_on=RESTARTING,
    )
    beat = parse_time(str(heartbeat()))
    assert beat <= time.time() + 1
    assert any(e.last_seen >= beat for e in cloud_edges(sandbox)), "live edges read at the heartbeat"


def _uploaded_batches(sb: Sandbox) -> list[str]:
    """Batch ids the mappers (every restart) logged as stored by the cloud."""
    ids: list[str] = []
    for log in sorted((sb.state_dir / "logs").glob(f"{AGENT_NS}_network-mapper-*.log")):
        if not re.fullmatch(r"network-mapper-\w{10}-\w{5}(~previous)?", log.name.split("_", 1)[1][:-4]):
            continue  # not the mapper's pod
        ids += re.findall(r"uploaded batch id=(\w+) edges=\d+ stored$", log.read_text(), flags=re.MULTILINE)
    return ids


@pytest.mark.timeout(900)  # a 5-minute outage plus recovery
def test_cloud_outage_with_mapper_restart_loses_nothing(sandbox: Sandbox) -> None:
    """Stop the cloud for 5 minutes while traffic flows, restart the mapper inside the outage,
    start the cloud: its graph equals the mapper's map, and no batch was stored twice."""
    wait_until(
        lambda: cloud_demo_map(sandbox.state_dir) == EXPECTED_DEMO_MAP,
        90,
        "the demo map in the cloud",
        interval=POLL,
        retry_on=RESTARTING,
    )
    _control(sandbox, "internet", "cloud", "pause")
    try:
        _outage(sandbox)
    finally:  # never leave the shared sandbox without its cloud
        _control(sandbox, "internet", "cloud", "resume")
    wait_until(lambda: _cloud_up(sandbox), 60, "the cloud back", interval=POLL, retry_on=RESTARTING)

    def same() -> bool:
        return {e.key for e in cloud_edges(sandbox)} == mapper_keys(sandbox)

    wait_until(same, 120, "the cloud's graph to equal the mapper's map", interval=POLL, retry_on=RESTARTING)
    names = {getattr(e.target, "dns_name", "") for e in cloud_edges(sandbox)}
    assert "during-outage.example.org" in names
    stored = _uploaded_batches(sandbox)
    assert len(stored) == len(set(stored)), f"a batch was stored twice: {stored}"


def _outage(sandbox: Sandbox) -> None:
    wait_until(lambda: not _cloud_up(sandbox), 30, "the cloud to go down", interval=POLL, retry_on=RESTARTING)
    started = time.monotonic()
    time.sleep(120)  # the outage itself is what is tested: traffic keeps flowing meanwhile
    mapper_pod = sandbox.pod(AGENT_NS, "network-mapper").metadata.name
    _control(sandbox, AGENT_NS, mapper_pod, "pause")  # the mapper restarts inside the outage
    time.sleep(5)
    _control(sandbox, AGENT_NS, mapper_pod, "resume")
    time.sleep(max(0.0, 300 - (time.monotonic() - started)))
    # New edges that appear only during the outage must arrive too.
    client = HttpMapperClient(mapper_url(sandbox.state_dir), StateFile(sandbox.state_dir).load().token, 10.0)
    try:
        client.execute(
            "mutation R($r: CaptureResults!) { reportCaptureResults(results: $r) }",
            {
                "r": {
                    "results": [
                        {
                            "srcIp": sandbox.pod("sandbox-extras", "audit-logger").status.pod_ip,
                            "srcHostname": "",
                            "destinations": [
                                {
                                    "destination": "during-outage.example.org",
                                    "destinationIP": "203.0.113.9",
                                    "lastSeen": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                }
                            ],
                        }
                    ]
                }
            },
        )
    finally:
        client.close()
