"""The mapper on the sandbox, driven as users drive it: the demo's listing, the CLI's exports,
and the correctness cases users complain about (IP reuse, hostNetwork, restarts)."""

from __future__ import annotations

import os
import re
import signal
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.cli.queries import EDGES_QUERY
from agent.exports import validate
from agent.mapperclient import HttpMapperClient
from sandbox.state import StateFile
from sandbox.topology import AGENT_NS, DEMO_NS, EXPECTED_DEMO_MAP, EXTRAS_NS
from sandbox.views import demo_map, mapper_url
from tests.e2e.conftest import Sandbox, sandbox_cli
from tests.e2e.conftest import network_mapper as cli
from tests.support.mapper_process import wait_until

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]
CRD = Path(__file__).parents[1] / "data" / "exports" / "clientintents-crd.yaml"
WAIT = 60.0  # seconds for the demo map and the mapper to come (back)
POLL = 0.5  # seconds between checks: each asks the sandbox's mapper or runs the CLI


def parse_listing(text: str) -> dict[tuple[str, str], set[str]]:
    """``network-mapper list`` output → {(namespace, client): {target lines}}."""
    found: dict[tuple[str, str], set[str]] = {}
    current: tuple[str, str] | None = None
    for line in text.splitlines():
        if m := re.match(r"^(\S+) in namespace (\S+) calls:$", line):
            current = (m.group(2), m.group(1))
            found[current] = set()
        elif line.startswith("  - ") and current:
            found[current].add(line[4:])
    return found


def test_demo_prints_exactly_the_design_map(sandbox: Sandbox) -> None:
    result = sandbox_cli("demo", "--seconds", "1", state_dir=sandbox.state_dir)
    assert result.returncode == 0, result.stderr
    assert "map complete" in result.stdout, result.stdout[-3000:]
    listing = parse_listing(result.stdout.split("network-mapper list:", 1)[1])
    demo = {client: targets for (ns, client), targets in listing.items() if ns == DEMO_NS}
    assert demo == {k: set(v) for k, v in EXPECTED_DEMO_MAP.items()}
    extras = {client: targets for (ns, client), targets in listing.items() if ns == EXTRAS_NS}
    # Identity by annotation ("audit"), by label ("billing"), StatefulSet and CronJob names.
    assert "api.example.com (Internet: 198.51.100.10)" in extras["audit"]
    assert "billing" in extras["audit"]
    assert extras["billing"] == {"inventory-db"}
    assert extras["nightly-report"] == {"inventory-db"}


def test_exports_validate(sandbox: Sandbox, tmp_path: Path) -> None:
    url = mapper_url(sandbox.state_dir)
    wait_until(lambda: demo_map(url) == EXPECTED_DEMO_MAP, WAIT, "the demo map", interval=POLL)
    for version in ("v2beta1", "v1alpha3"):
        result = cli(sandbox, "export", "--format", "yaml", "--intents-version", version)
        assert result.returncode == 0, result.stderr
        docs = [d for d in yaml.safe_load_all(result.stdout) if d]
        assert {d["metadata"]["name"] for d in docs if d["metadata"]["namespace"] == DEMO_NS} == set(
            EXPECTED_DEMO_MAP
        )
        for doc in docs:
            assert validate(doc, CRD) == [], doc
    import kubernetes_validate

    result = cli(
        sandbox,
        "export",
        "--format",
        "networkpolicy",
        "-n",
        DEMO_NS,
        "-o",
        str(tmp_path / "np"),
        "--distinct-files",
    )
    assert result.returncode == 0, result.stderr
    files = sorted((tmp_path / "np").glob("*.yaml"))
    assert files
    for f in files:
        kubernetes_validate.validate(
            yaml.safe_load(f.read_text()), kubernetes_validate.latest_version(), strict=True
        )
    result = cli(sandbox, "visualize", "-o", str(tmp_path / "map.png"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _report_dns(url: str, token: str, src_ip: str, name: str, at: float) -> None:
    client = HttpMapperClient(url, token, 10.0)
    try:
        client.execute(
            "mutation R($r: CaptureResults!) { reportCaptureResults(results: $r) }",
            {
                "r": {
                    "results": [
                        {
                            "srcIp": src_ip,
                            "srcHostname": "",
                            "destinations": [
                                {
                                    "destination": name,
                                    "destinationIP": "203.0.113.7",
                                    "lastSeen": datetime.fromtimestamp(at, UTC)
                                    .isoformat()
                                    .replace("+00:00", "Z"),
                                }
                            ],
                        }
                    ]
                }
            },
        )
    finally:
        client.close()


def _pod_of(sb: Sandbox, owner: str, ip: str) -> dict[str, Any]:
    """A pod owned by ReplicaSet ``owner``-abc of Deployment ``owner`` (API objects only)."""
    apps = __import__("kubernetes").client.AppsV1Api(sb.core.api_client)
    dep = apps.create_namespaced_deployment(
        EXTRAS_NS,
        {
            "metadata": {"name": owner},
            "spec": {
                "selector": {"matchLabels": {"app": owner}},
                "template": {
                    "metadata": {"labels": {"app": owner}},
                    "spec": {"containers": [{"name": "c", "image": "x"}]},
                },
            },
        },
    )
    rs = apps.create_namespaced_replica_set(
        EXTRAS_NS,
        {
            "metadata": {
                "name": f"{owner}-abc",
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": owner,
                        "uid": dep.metadata.uid,
                        "controller": True,
                    }
                ],
            },
            "spec": {
                "selector": {"matchLabels": {"app": owner}},
                "template": {
                    "metadata": {"labels": {"app": owner}},
                    "spec": {"containers": [{"name": "c", "image": "x"}]},
                },
            },
        },
    )
    pod = sb.core.create_namespaced_pod(
        EXTRAS_NS,
        {
            "metadata": {
                "name": f"{owner}-abc-xyz",
                "labels": {"app": owner},
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": rs.metadata.name,
                        "uid": rs.metadata.uid,
                        "controller": True,
                    }
                ],
            },
            "spec": {"containers": [{"name": "c", "image": "x"}]},
        },
    )
    sb.core.patch_namespaced_pod_status(
        pod.metadata.name, EXTRAS_NS, {"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}
    )
    return {"pod": pod.metadata.name, "deployment": owner}


def test_ip_reuse_attributes_by_time(sandbox: Sandbox) -> None:
    url, token = mapper_url(sandbox.state_dir), StateFile(sandbox.state_dir).load().token
    ip = "10.244.3.77"  # outside the supervisor's range: only these API-only pods hold it
    tag = uuid.uuid4().hex[:8]
    old, new = f"reuse-old-{tag}", f"reuse-new-{tag}"
    apps = __import__("kubernetes").client.AppsV1Api(sandbox.core.api_client)
    _pod_of(sandbox, old, ip)
    time.sleep(1.0)  # the pods' creation times are whole seconds: keep the switch points apart
    before = time.time()
    time.sleep(1.0)
    sandbox.core.delete_namespaced_pod(f"{old}-abc-xyz", EXTRAS_NS)
    time.sleep(1.0)
    _pod_of(sandbox, new, ip)
    time.sleep(1.5)
    after = time.time()
    try:
        _report_dns(url, token, ip, f"before-{tag}.example.org", before)
        _report_dns(url, token, ip, f"after-{tag}.example.org", after)

        def attributed() -> dict[str, set[str]]:
            out = cli(sandbox, "list", "-n", EXTRAS_NS).stdout
            listing = parse_listing(out)
            return {c: {t.split(" ")[0] for t in ts} for (ns, c), ts in listing.items() if c in {old, new}}

        wait_until(
            lambda: attributed() == {old: {f"before-{tag}.example.org"}, new: {f"after-{tag}.example.org"}},
            30,
            f"before→{old}, after→{new} (got {attributed()})",
            interval=POLL,
        )
    finally:
        for name in (old, new):
            apps.delete_namespaced_deployment(name, EXTRAS_NS)


def test_host_network_traffic_is_not_given_to_another_pod(sandbox: Sandbox) -> None:
    url = mapper_url(sandbox.state_dir)
    wait_until(lambda: bool(demo_map(url)), WAIT, "a map", interval=POLL)
    # node-agent (hostNetwork, on the node's IP) calls billing-v2 every ~2 s.
    wait_until(
        lambda: "billing" in cli(sandbox, "list", "-n", EXTRAS_NS).stdout,
        WAIT,
        "edges to billing",
        interval=POLL,
    )
    time.sleep(5)  # let several of node-agent's calls be reported
    listing = parse_listing(cli(sandbox, "list").stdout)
    callers = {
        (ns, c) for (ns, c), targets in listing.items() if any(t.startswith("billing") for t in targets)
    }
    host_network = {(EXTRAS_NS, "node-agent"), (AGENT_NS, "network-mapper-sniffer")}
    # audit calls billing from its own pod IP; the node IP may only map to hostNetwork pods.
    assert callers - host_network == {(EXTRAS_NS, "audit")}, listing


def test_the_node_agents_own_calls_appear_under_its_workload(sandbox: Sandbox) -> None:
    """The sniffer (the node agent) runs on the host network beside another hostNetwork workload
    (node-agent), both on the node's IP: the socket scan finds the process that owns its connection
    to the mapper and that process's pod, so the call is the sniffer's, pinned, not ambiguous."""
    url = mapper_url(sandbox.state_dir)

    def own_calls() -> list[Any]:
        client = HttpMapperClient(url, "", 10.0)
        try:
            edges = client.execute(EDGES_QUERY, {"namespaces": [AGENT_NS]})["edges"]
        finally:
            client.close()
        return [
            e
            for e in edges
            if e["client"]["name"] == "network-mapper-sniffer" and e["target"]["name"] == "network-mapper"
        ]

    wait_until(lambda: any(not e["ambiguous"] for e in own_calls()), WAIT, "sniffer → mapper", interval=POLL)
    assert "socket-scan" in {m for e in own_calls() for m in e["methods"]}
    # Two hostNetwork workloads share node 1's IP: the sniffer's calls are never given to the other.
    listing = parse_listing(cli(sandbox, "list", "-n", EXTRAS_NS).stdout)
    assert not any(t.startswith("network-mapper") for t in listing.get((EXTRAS_NS, "node-agent"), ()))


def test_kill_9_mapper_keeps_the_map_and_it_keeps_growing(sandbox: Sandbox) -> None:
    url = mapper_url(sandbox.state_dir)
    wait_until(lambda: demo_map(url) == EXPECTED_DEMO_MAP, WAIT, "the demo map", interval=POLL)
    before = parse_listing(cli(sandbox, "list").stdout)
    state = StateFile(sandbox.state_dir).load()
    # The mapper's pod: the Deployment's ReplicaSet's (the other components' names go on).
    role = next(r for r in state.pids if re.fullmatch(rf"{AGENT_NS}/network-mapper-\w{{10}}-\w{{5}}", r))
    pid = state.pids[role]
    os.kill(pid, signal.SIGKILL)
    # The sandbox's kubelet restarts it (restartPolicy Always); the same data dir is reused.
    wait_until(
        lambda: cli(sandbox, "list").returncode == 0 and bool(cli(sandbox, "list").stdout.strip()),
        WAIT,
        "the mapper back",
        interval=POLL,
    )
    after = parse_listing(cli(sandbox, "list").stdout)
    for key, targets in before.items():
        assert targets <= after.get(key, set()), f"{key} lost {targets - after.get(key, set())}"
    tag = uuid.uuid4().hex[:8]
    # A client outside the demo namespace, so the demo's exact map stays exact.
    client_ip = sandbox.pod(EXTRAS_NS, "audit-logger").status.pod_ip
    _report_dns(url, state.token, client_ip, f"grown-{tag}.example.org", time.time())
    wait_until(
        lambda: f"grown-{tag}.example.org" in cli(sandbox, "list").stdout,
        WAIT,
        "the map to keep growing",
        interval=POLL,
    )
