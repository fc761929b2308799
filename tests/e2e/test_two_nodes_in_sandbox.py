"""The sandbox's two nodes: pods on both, one sniffer per node, cross-node calls mapped once, and
coverage that names a node whose sniffer is down.

Placement is :mod:`sandbox.nodes`' (every other ecom-demo workload on the second node; the
product's sniffer DaemonSet one pod per node). The sniffers are stopped and started through the
supervisor's control endpoint (:mod:`sandbox.control`: ``pause`` stops the pod's containers and
keeps them stopped), as a node's sniffer crashing would; every test resumes what it paused.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s

from agent.cli.queries import EDGES_QUERY, edge_from_json
from agent.mapperclient import HttpMapperClient
from agent.model import Edge, Method, WorkloadIdentity
from sandbox.control import send
from sandbox.nodes import FIRST_NODE, NODES, SECOND_NODE, by_name, node_of
from sandbox.state import StateFile
from sandbox.topology import AGENT_NS, DEMO, DEMO_NS, EXPECTED_DEMO_MAP
from sandbox.views import demo_map, mapper_url
from tests.e2e.conftest import Sandbox, sandbox_cli
from tests.e2e.conftest import network_mapper as cli
from tests.e2e.test_mapper_in_sandbox import parse_listing
from tests.support.mapper_process import wait_until

SNIFFER = "network-mapper-sniffer"
WAIT = 90.0  # seconds for a sniffer's report to reach the mapper (its batches, the first scan)
COVERAGE_WAIT = 120.0  # the acceptance bound: a silent node named within 2 minutes
POLL = 1.0
# A cross-node call of the demo: frontend (second node) → adservice (first node).
CROSS = ("frontend", "adservice")
HAS_COVERAGE = importlib.util.find_spec("agent.cli.coverage") is not None


def _sniffer_pods(sb: Sandbox) -> dict[str, k8s.V1Pod]:
    """The sniffer DaemonSet's pods by node name."""
    pods = [
        p
        for p in sb.core.list_namespaced_pod(AGENT_NS).items
        if (p.metadata.owner_references or [None])[0] is not None
        and p.metadata.owner_references[0].kind == "DaemonSet"
        and p.metadata.owner_references[0].name == SNIFFER
    ]
    return {p.spec.node_name: p for p in pods}


def _net_ns_inode(path: str) -> int:
    return Path(path).stat().st_ino


def _edge(url: str, client: str, server: str) -> list[Edge]:
    """Every edge client → server of the demo namespace in the mapper's ``edges`` answer."""
    mapper = HttpMapperClient(url, "", 10.0)
    try:
        raw = mapper.execute(EDGES_QUERY, {"namespaces": [DEMO_NS]})["edges"]
    finally:
        mapper.close()
    return [
        e
        for e in map(edge_from_json, raw)
        if e.client.name == client and isinstance(e.target, WorkloadIdentity) and e.target.name == server
    ]


def _tcp_last_seen(url: str) -> float:
    edges = _edge(url, *CROSS)
    assert len(edges) == 1, edges
    return max((m.last_seen for m in edges[0].provenance if m.method == Method.TCP), default=0.0)


def _control(sb: Sandbox, pod: str, action: str) -> None:
    port = StateFile(sb.state_dir).load().forwards["control"]
    assert send(port, AGENT_NS, pod, action), f"{action} {pod}"


def _ready(sb: Sandbox, pod: str) -> bool:
    statuses = sb.core.read_namespaced_pod(pod, AGENT_NS).status.container_statuses or []
    return bool(statuses) and all(s.ready for s in statuses)


def _wait_ready(sb: Sandbox, pod: str) -> None:
    wait_until(lambda: _ready(sb, pod), WAIT, f"{pod} ready again", interval=POLL)


def _wait_tcp_seen_after(url: str, since: float, by: str) -> None:
    wait_until(
        lambda: _tcp_last_seen(url) > since,
        WAIT,
        lambda: f"a SYN of {CROSS} from {by}'s sniffer (tcp last seen {_tcp_last_seen(url)}, after {since})",
        interval=POLL,
    )


@pytest.fixture
def paused(sandbox: Sandbox) -> Iterator[list[str]]:
    """Pods a test pauses (it appends their names); resumed, and Ready again, afterwards."""
    names: list[str] = []
    yield names
    for pod in names:
        _control(sandbox, pod, "resume")
    for pod in names:
        _wait_ready(sandbox, pod)


def test_two_nodes_are_registered_with_their_pod_cidrs(sandbox: Sandbox) -> None:
    nodes = {n.metadata.name: n for n in sandbox.core.list_node().items}
    assert set(nodes) == {n.name for n in NODES}
    for node in NODES:
        api_node = nodes[node.name]
        assert api_node.spec.pod_cidr == node.pod_cidr
        assert [(a.type, a.address) for a in api_node.status.addresses if a.type == "InternalIP"] == [
            ("InternalIP", node.ip)
        ]


def test_pods_run_on_both_nodes_in_their_node_ranges(sandbox: Sandbox) -> None:
    pods = sandbox.core.list_pod_for_all_namespaces().items
    per_node: dict[str, int] = {}
    for p in pods:
        node = by_name(p.spec.node_name)
        per_node[node.name] = per_node.get(node.name, 0) + 1
        assert p.status.host_ip == node.ip, p.metadata.name
        if p.spec.host_network:
            assert p.status.pod_ip == node.ip, p.metadata.name
        else:
            assert ipaddress.ip_address(p.status.pod_ip) in ipaddress.ip_network(node.pod_cidr), (
                p.metadata.name
            )
    assert set(per_node) == {n.name for n in NODES}, per_node
    # The demo is spread as sandbox.nodes places it, with calls both within and across nodes.
    for w in DEMO:
        assert sandbox.pod(DEMO_NS, w.name).spec.node_name == node_of(w).name, w.name
    place = {w.name: node_of(w) for w in DEMO}
    pairs = [(c, s) for c, servers in EXPECTED_DEMO_MAP.items() for s in servers]
    assert any(place[c] != place[s] for c, s in pairs) and any(place[c] == place[s] for c, s in pairs)
    assert place[CROSS[0]] == SECOND_NODE and place[CROSS[1]] == FIRST_NODE


def test_status_shows_the_node_of_each_pod(sandbox: Sandbox) -> None:
    result = sandbox_cli("status", state_dir=sandbox.state_dir)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert "NODE" in header.split()
    frontend = sandbox.pod(DEMO_NS, "frontend").metadata.name
    line = next(r for r in rows if frontend in r.split())
    assert SECOND_NODE.name in line.split(), line


def test_the_sniffer_daemonset_runs_one_pod_on_each_node_in_its_network(sandbox: Sandbox) -> None:
    sniffers = _sniffer_pods(sandbox)
    assert set(sniffers) == {n.name for n in NODES}, sorted(sniffers)
    state = StateFile(sandbox.state_dir).load()
    for name, pod in sniffers.items():
        node = by_name(name)
        assert pod.spec.host_network and pod.status.pod_ip == node.ip
        assert _ready(sandbox, pod.metadata.name)
        # Its process lives in its own node's network namespace: it captures that node's traffic.
        pid = state.pids[f"{AGENT_NS}/{pod.metadata.name}"]
        assert _net_ns_inode(f"/proc/{pid}/ns/net") == _net_ns_inode(f"/run/netns/{node.netns}")


def test_each_demo_edge_is_listed_once_across_nodes(sandbox: Sandbox) -> None:
    url = mapper_url(sandbox.state_dir)
    wait_until(lambda: demo_map(url) == EXPECTED_DEMO_MAP, WAIT, "the demo map", interval=POLL)
    mapper = HttpMapperClient(url, "", 10.0)
    try:
        raw = mapper.execute(EDGES_QUERY, {"namespaces": [DEMO_NS]})["edges"]
    finally:
        mapper.close()
    keys = [
        (e.client.name, e.target.name)
        for e in map(edge_from_json, raw)
        if isinstance(e.target, WorkloadIdentity) and e.target.namespace == DEMO_NS
    ]
    assert len(keys) == len(set(keys)), sorted(keys)
    text = cli(sandbox, "list", "-n", DEMO_NS).stdout
    listing = parse_listing(text)
    assert {c: t for (ns, c), t in listing.items() if ns == DEMO_NS} == {
        c: set(s) for c, s in EXPECTED_DEMO_MAP.items()
    }
    # Once each: as many target lines as edges (the parsed sets above would hide a repeat).
    assert sum(1 for line in text.splitlines() if line.startswith("  - ")) == sum(
        len(s) for s in EXPECTED_DEMO_MAP.values()
    ), text


def test_a_cross_node_call_is_seen_by_each_nodes_sniffer_on_one_edge(
    sandbox: Sandbox, paused: list[str]
) -> None:
    """frontend (second node) → adservice (first node): with either node's sniffer stopped, the
    other one's captured SYNs keep the one edge's ``tcp`` provenance going, so both sniffers'
    observations land on the same edge."""
    url = mapper_url(sandbox.state_dir)
    wait_until(lambda: _edge(url, *CROSS), WAIT, "the cross-node edge", interval=POLL)
    if not _edge(url, *CROSS)[0].provenance:
        pytest.skip("this mapper keeps no per-method provenance on edges")
    sniffers = _sniffer_pods(sandbox)
    for stopped, running in ((FIRST_NODE, SECOND_NODE), (SECOND_NODE, FIRST_NODE)):
        pod = sniffers[stopped.name].metadata.name
        _control(sandbox, pod, "pause")
        paused.append(pod)
        # Anything the stopped sniffer captured before it went is older than this.
        since = time.time() + 5
        _wait_tcp_seen_after(url, since, running.name)
        _control(sandbox, pod, "resume")
        paused.remove(pod)
        _wait_ready(sandbox, pod)
    assert len(_edge(url, *CROSS)) == 1


def _coverage(sb: Sandbox) -> tuple[int, str]:
    result = cli(sb, "coverage")
    return result.returncode, result.stdout + result.stderr


@pytest.mark.skipif(not HAS_COVERAGE, reason="`network-mapper coverage` (agent.cli.coverage) not built yet")
def test_coverage_names_the_node_whose_sniffer_stopped(sandbox: Sandbox, paused: list[str]) -> None:
    """Issue 17's acceptance: stop the sniffer's pod on one node → ``network-mapper coverage`` names
    that node uncovered and exits non-zero within 2 minutes; start it → covered again."""
    wait_until(lambda: _coverage(sandbox)[0] == 0, COVERAGE_WAIT, lambda: _coverage(sandbox)[1], interval=2)
    pod = _sniffer_pods(sandbox)[SECOND_NODE.name].metadata.name
    _control(sandbox, pod, "pause")
    paused.append(pod)
    wait_until(
        lambda: (c := _coverage(sandbox))[0] == 1 and SECOND_NODE.name in c[1],
        COVERAGE_WAIT,
        lambda: f"node {SECOND_NODE.name} named uncovered; coverage says:\n{_coverage(sandbox)[1]}",
        interval=2,
    )
    json_result = cli(sandbox, "coverage", "--format", "json")
    assert json_result.returncode == 1
    assert SECOND_NODE.name in json.dumps(json.loads(json_result.stdout))
    _control(sandbox, pod, "resume")
    paused.remove(pod)
    wait_until(
        lambda: _coverage(sandbox)[0] == 0,
        COVERAGE_WAIT,
        lambda: f"covered again after the sniffer came back; coverage says:\n{_coverage(sandbox)[1]}",
        interval=2,
    )
