"""hostNetwork clients end to end: real processes in a real "node" network namespace call a server
pod, the real socket scan names each one's pod, and the real mapper app resolves each edge to its
workload, though the processes share the node's IP.

A "node" namespace (10.251.x.1) and a "pod" namespace (10.251.x.2, redis) are joined by a veth pair
(the root namespace gets neither an address nor a route). In the node namespace, three processes
each hold a connection to redis:6379, standing in for what shares a node's network:

* a node agent (DaemonSet ``monitoring/node-agent``) with the downward API's ``POD_NAME`` and
  ``POD_NAMESPACE`` in its environment, and the node's name as ``HOSTNAME`` (as a real kubelet gives
  a hostNetwork pod): found through its environment; and its sidecar, the same pod's second
  container, running as uid 1000;
* kube-proxy (DaemonSet ``kube-system/kube-proxy``), in a kubelet-style pod cgroup
  (``.../kubepods/besteffort/pod<uid>/<container>`` in the cgroup v2 hierarchy), with nothing in its
  environment: found through its cgroup (skipped, and said so, where no cgroup can be made);
* a node process (a kubelet probe): no pod; with two hostNetwork workloads on the node it stays
  ambiguous, and is counted.

The scan's observations go through the real collector, reporter, GraphQL app, resolver (over a
cluster state holding both hostNetwork pods, the node and the redis pod) and SQLite store.

The scan also runs as the chart runs the sniffer (uid 0, NET_RAW and SYS_PTRACE only, via
``setpriv``): uid 0's processes still name their pods, the uid-1000 sidecar's cannot be read
(``fd/`` and ``environ`` are its uid's, mode 0500/0400) and is counted as unreadable; adding
DAC_READ_SEARCH reads it too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.mapper.api import create_app
from agent.mapper.cluster import ClusterState
from agent.mapper.resolver import Resolver
from agent.mapper.settings import ApiSettings
from agent.mapper.store import EdgeStore
from agent.mapperclient import HttpMapperClient
from agent.model import SocketConnection, WorkloadIdentity
from agent.reporter import Reporter
from agent.sniffer.metrics import SnifferMetrics
from agent.sniffer.pairs import PairCollector
from agent.sniffer.reports import mutations_for
from agent.sniffer.sockets import SocketScanner
from tests.support.mapper_process import wait_until
from tests.support.transports import AsgiTransport

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(
        os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("ip", "setpriv")),
        reason="needs root, iproute2 and setpriv",
    ),
]

ROOT = Path(__file__).parents[2]
TOKEN = "hostnet-test-token"
URL = "http://mapper.in-process:9090/query"
PORT = 6379
NODE_NAME = "nmtest-node-1"
AGENT = WorkloadIdentity("monitoring", "node-agent", "DaemonSet")
PROXY = WorkloadIdentity("kube-system", "kube-proxy", "DaemonSet")
REDIS = WorkloadIdentity("shop", "redis", "StatefulSet")
AGENT_POD, PROXY_POD = "node-agent-7xk2p", "kube-proxy-q8d4m"
PROXY_UID = str(uuid.uuid4())
WAIT = 20.0

SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(16)
print("listening", flush=True)
held = [s.accept()[0] for _ in range(int(sys.argv[2]))]
print("accepted", flush=True)
sys.stdin.read()
"""
CLIENT = """
import socket, sys
held = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
print(held.getsockname()[1], flush=True)
sys.stdin.read()
"""
# Joins the cgroup named by $0 (its cgroup.procs), then becomes the rest of the command, as a
# container's process is started inside its cgroup, so every socket it opens is the pod's. It runs
# before `ip netns exec`, which mounts a /sys of the namespace's own, without the cgroup hierarchy.
IN_CGROUP = 'echo $$ > "$0/cgroup.procs" && exec "$@"'
OTHER_UID = 1000
AS_OTHER_USER = ["setpriv", f"--reuid={OTHER_UID}", f"--regid={OTHER_UID}", "--clear-groups"]
SYSTEM_PYTHON = "/usr/bin/python3"  # readable by uid 1000 (the venv's interpreter lives under /root)
# How each client runs: (command before `ip netns exec`, command after it, python, environment).
Client = tuple[list[str], list[str], str, dict[str, str]]


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def cgroup2_mount() -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (``/sys/fs/cgroup``, or ``.../unified`` on hybrid hosts)."""
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == "cgroup2":
            return Path(fields[1])
    return None


def pod_cgroup(top: Path) -> Path | None:
    """A kubelet-style (cgroupfs driver) pod cgroup for kube-proxy under ``top``, or None where this
    machine does not let us make one."""
    leaf = top / "kubepods" / "besteffort" / f"pod{PROXY_UID}" / ("0" * 12 + "c0ffee")
    try:
        leaf.mkdir(parents=True)
    except OSError:
        return None
    return leaf


def remove_cgroups(top: Path) -> None:
    """rmdir the tree under ``top``, deepest first (its processes have exited)."""
    if not top.exists():
        return
    for directory in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        directory.rmdir()
    top.rmdir()


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(namespace: str, name: str, uid: str, owner: tuple[str, str], ip_: str, host_network: bool) -> Any:
    kind, owner_name = owner
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "creationTimestamp": iso(time.time() - 600),
            "ownerReferences": [
                {"kind": kind, "name": owner_name, "uid": f"o-{owner_name}", "controller": True}
            ],
        },
        "spec": {"nodeName": NODE_NAME, "hostNetwork": host_network, "containers": [{"name": "c"}]},
        "status": {"phase": "Running", "podIP": ip_, "hostIP": ip_, "startTime": iso(time.time() - 600)},
    }


@dataclass
class Node:
    namespace: str
    node_ip: str
    server_ip: str
    ports: dict[str, int]  # client → its local port
    with_cgroup: bool


@pytest.fixture
def node() -> Iterator[Node]:
    tag = os.getpid() % 100_000
    node_ns, pod_ns = f"nmtest-hn-{tag}-n", f"nmtest-hn-{tag}-p"
    subnet = f"10.251.{tag % 250}"
    mount = cgroup2_mount()
    top = mount / f"nmtest-hn-{tag}" if mount is not None else None
    procs: list[subprocess.Popen[str]] = []
    base_env = {k: v for k, v in os.environ.items() if k not in ("HOSTNAME", "POD_NAME", "POD_NAMESPACE")}

    def spawn(netns: str, client: Client, code: str, *args: str) -> subprocess.Popen[str]:
        before, after, python, env = client
        cmd = [*before, "ip", "netns", "exec", netns, *after, python, "-c", code, *args]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        procs.append(proc)
        return proc

    def line(proc: subprocess.Popen[str]) -> str:
        assert proc.stdout is not None
        return proc.stdout.readline().strip()  # a hung child fails through pytest's timeout

    try:
        ip("netns", "add", node_ns)
        ip("netns", "add", pod_ns)
        ip("-n", node_ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", pod_ns)
        for netns, last in ((node_ns, 1), (pod_ns, 2)):
            ip("-n", netns, "link", "set", "lo", "up")
            ip("-n", netns, "addr", "add", f"{subnet}.{last}/24", "dev", "eth0")
            ip("-n", netns, "link", "set", "eth0", "up")
        leaf = pod_cgroup(top) if top is not None else None
        agent_env = {**base_env, "POD_NAME": AGENT_POD, "POD_NAMESPACE": "monitoring", "HOSTNAME": NODE_NAME}
        clients: dict[str, Client] = {
            "agent": ([], [], sys.executable, agent_env),
            # The agent pod's second container, running as another user.
            "agent-sidecar": ([], AS_OTHER_USER, SYSTEM_PYTHON, {**agent_env, "PATH": "/usr/bin:/bin"}),
            "probe": ([], [], sys.executable, base_env),
        }
        if leaf is not None:
            clients["proxy"] = (["sh", "-c", IN_CGROUP, str(leaf)], [], sys.executable, base_env)
        server = spawn(pod_ns, ([], [], sys.executable, base_env), SERVER, str(PORT), str(len(clients)))
        assert line(server) == "listening"
        ports = {}
        for name, client in clients.items():
            ports[name] = int(line(spawn(node_ns, client, CLIENT, f"{subnet}.2", str(PORT))))
        assert line(server) == "accepted"
        yield Node(node_ns, f"{subnet}.1", f"{subnet}.2", ports, leaf is not None)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        for netns in (node_ns, pod_ns):
            subprocess.run(["ip", "netns", "del", netns], check=False, capture_output=True)
        if top is not None:
            remove_cgroups(top)


def cluster(node: Node) -> ClusterState:
    """The cluster as the mapper sees it: the node, its two hostNetwork pods, the redis pod."""
    state = ClusterState()
    at = time.time() - 600
    for namespace, name, kind in (
        ("monitoring", "node-agent", "DaemonSet"),
        ("kube-system", "kube-proxy", "DaemonSet"),
        ("shop", "redis", "StatefulSet"),
    ):
        state.apply(
            "ADDED", kind, {"metadata": {"name": name, "namespace": namespace, "uid": f"o-{name}"}}, at
        )
    addresses = [{"type": "InternalIP", "address": node.node_ip}]
    state.apply("ADDED", "Node", {"metadata": {"name": NODE_NAME}, "status": {"addresses": addresses}}, at)
    for obj in (
        pod("monitoring", AGENT_POD, str(uuid.uuid4()), ("DaemonSet", "node-agent"), node.node_ip, True),
        pod("kube-system", PROXY_POD, PROXY_UID, ("DaemonSet", "kube-proxy"), node.node_ip, True),
        pod("shop", "redis-0", str(uuid.uuid4()), ("StatefulSet", "redis"), node.server_ip, False),
    ):
        state.apply("ADDED", "Pod", obj, at)
    return state


def scan_until_all_clients(scanner: SocketScanner, node: Node) -> dict[int, SocketConnection]:
    """Our clients' observations by client port (the connections are up before the fixture returns;
    the deadline covers /proc catching up)."""
    found: dict[int, SocketConnection] = {}

    def scanned() -> bool:
        found.clear()
        for o in scanner.scan(time.time()).observations:
            if o.client_ip == node.node_ip and o.server_ip == node.server_ip:
                found[o.client_port] = o
        return set(found) == set(node.ports.values())

    wait_until(scanned, WAIT, "every client's connection in the scan")
    return found


def test_each_host_network_client_is_reported_with_its_pod_and_resolved_to_its_workload(
    node: Node, tmp_path: Path
) -> None:
    st = Path(f"/run/netns/{node.namespace}").stat()
    scanner = SocketScanner(Path("/proc"), node_namespace=(st.st_dev, st.st_ino))
    found = scan_until_all_clients(scanner, node)

    # The sniffer's side: each process named its pod, as it could.
    assert found[node.ports["agent"]].client_pod == f"monitoring/{AGENT_POD}"
    assert found[node.ports["agent-sidecar"]].client_pod == f"monitoring/{AGENT_POD}"  # root reads all uids
    assert (found[node.ports["probe"]].client_pod_uid, found[node.ports["probe"]].client_pod) == ("", "")
    if node.with_cgroup:
        assert found[node.ports["proxy"]].client_pod_uid == PROXY_UID

    # The mapper's side: reported over GraphQL, resolved against the cluster, stored.
    resolver = Resolver(cluster(node))
    store = EdgeStore(tmp_path / "edges.db")
    transport = AsgiTransport(create_app(ApiSettings(token=TOKEN), store, resolver)).start()
    collector = PairCollector(1_000)
    client = HttpMapperClient(URL, TOKEN, 5.0, transport=transport)
    reporter = Reporter(collector, mutations_for, client, 0.05, metrics=SnifferMetrics(), attempts=2)
    reporter.start()
    try:
        for observation in found.values():
            collector.add(observation)
        expected = {AGENT, PROXY} if node.with_cgroup else {AGENT}

        def clients() -> set[tuple[WorkloadIdentity, bool]]:
            return {(e.client, e.ambiguous) for e in store.edges() if e.target == REDIS}

        # Each pod's edge is its workload's, not a guess (ambiguous=False); the probe makes none.
        want = {(identity, False) for identity in expected}
        wait_until(lambda: clients() == want, WAIT, lambda: f"edges {want}, have {clients()}")
        wait_until(lambda: resolver.stats["ambiguous_host_network"] == 1, WAIT, "the probe counted")
        assert not any(resolver.stats[r] for r in ("host_network_pod_unknown", "ambiguous_host_network_kept"))
    finally:
        reporter.stop(timeout=5)
        transport.close()
        store.close()
    if not node.with_cgroup:
        warnings.warn("kube-proxy's cgroup part did not run: no cgroup could be made here", stacklevel=1)


# Scans as given (capabilities from `setpriv`), prints what it found of our node's clients.
SCAN = """
import json, sys, time
from pathlib import Path
from agent.sniffer.sockets import SocketScanner
node_ip, dev, ino = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
result = SocketScanner(Path("/proc"), node_namespace=(dev, ino)).scan(time.time())
ours = [o for o in result.observations if o.client_ip == node_ip]
found = {o.client_port: [o.client_pod_uid, o.client_pod] for o in ours}
print(json.dumps({"found": found, "unreadable": result.owner_unreadable}))
"""


def scan_with(caps: tuple[str, ...], node: Node) -> tuple[dict[str, list[str]], int]:
    """The scan in a process of uid 0 with only ``caps``: each client's (pod UID, pod), unreadable count."""
    st = Path(f"/run/netns/{node.namespace}").stat()
    wanted = ",".join(f"+{cap}" for cap in caps)
    cmd = ["setpriv", f"--bounding-set=-all,{wanted}", "--inh-caps=-all", "--", sys.executable, "-c", SCAN]
    args = [node.node_ip, str(st.st_dev), str(st.st_ino)]
    out = subprocess.run([*cmd, *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60)
    report = json.loads(out.stdout)
    by_port = {int(port): pod for port, pod in report["found"].items()}
    return {name: by_port.get(port, ["?", "?"]) for name, port in node.ports.items()}, report["unreadable"]


def test_with_the_charts_capabilities_only_uid_0s_processes_name_their_pods(node: Node) -> None:
    found, unreadable = scan_with(("net_raw", "sys_ptrace"), node)
    assert found["agent"] == ["", f"monitoring/{AGENT_POD}"]
    assert found["agent-sidecar"] == ["", ""] and unreadable == 1  # another uid's fd/: not readable
    if node.with_cgroup:
        assert found["proxy"] == [PROXY_UID, ""]
    # DAC_READ_SEARCH opens another uid's fd/ and environ to the scan.
    found, unreadable = scan_with(("net_raw", "sys_ptrace", "dac_read_search"), node)
    assert found["agent-sidecar"] == ["", f"monitoring/{AGENT_POD}"] and unreadable == 0
