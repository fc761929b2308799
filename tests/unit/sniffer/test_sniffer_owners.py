"""Owners of the node namespace's client sockets and their pods: the cgroup and environment parsers
against recorded files (tests/data/proc/cgroup, tests/data/proc/environ: see the README there), the
fd-link walk and the scanner's attribution over a fake /proc built from the recorded tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.model import SocketConnection
from agent.sniffer.owners import Owner, SocketOwners, pod_from_environ, pod_uid_from_cgroup
from agent.sniffer.pairs import PairCollector
from agent.sniffer.reports import mutations_for
from agent.sniffer.sockets import ESTABLISHED, SocketScanner, parse_proc_net_tcp

DATA = Path(__file__).resolve().parents[2] / "data" / "proc"
NOW = 1_700_000_000.0
UID = "1b2c3d4e-5f60-4718-9a2b-3c4d5e6f7a8b"
STATIC_UID = "3f2a9c1be0d44f6a8b7c5d2e1f0a9b8c"


@pytest.mark.parametrize(
    ("recorded", "uid"),
    [
        ("v2_systemd_containerd_burstable", UID),
        ("v2_cgroupfs_besteffort", UID),
        ("v2_cgroupfs_guaranteed", UID),
        ("v2_kind_nested", UID),
        ("v2_seen_from_a_pods_cgroup_namespace", UID),
        ("v2_static_pod", STATIC_UID),
        ("v1_cgroupfs_docker", UID),
        ("v1_systemd_docker", UID),
        ("v1_systemd_containerd_service", UID),
        ("v2_host_kubelet", ""),
        ("v2_host_kubelet_seen_from_a_pods_cgroup_namespace", ""),
        ("v2_host_containerd", ""),
        ("v2_host_session", ""),
        ("v2_host_init", ""),
        ("v2_host_not_kubepods", ""),  # a pod of podman's, not a kubelet's
        ("hybrid_this_machine_no_pod", ""),
    ],
)
def test_pod_uid_from_recorded_cgroup_files(recorded: str, uid: str) -> None:
    assert pod_uid_from_cgroup((DATA / "cgroup" / recorded).read_text()) == uid


@pytest.mark.parametrize(
    "text",
    ["", "garbage", "0::", "0::/kubepods/burstable/podnot-a-uid/x", f"0::/kubepods/burstable/pod{UID}x/c"],
)
def test_cgroup_text_without_a_pod_uid_gives_none(text: str) -> None:
    assert pod_uid_from_cgroup(text) == ""


@pytest.mark.parametrize(
    ("recorded", "pod"),
    [
        ("downward_api_host_network", "monitoring/node-agent-x1"),  # POD_* win over the node's HOSTNAME
        ("hostname_only", "network-mapper-sniffer-7kq2x"),
        ("pod_name_without_namespace", "node-agent-x1"),  # no namespace: only the hostname counts
        ("node_process", ""),
    ],
)
def test_pod_from_recorded_environ_files(recorded: str, pod: str) -> None:
    assert pod_from_environ((DATA / "environ" / recorded).read_bytes()) == pod


def test_environ_edge_cases() -> None:
    assert pod_from_environ(b"") == ""
    assert pod_from_environ(b"POD_NAME=a\0POD_NAMESPACE=b") == "b/a"  # no trailing NUL
    assert pod_from_environ(b"POD_NAME=a\0POD_NAMESPACE=b/c\0HOSTNAME=h\0") == "h"  # no "/" in a name
    assert pod_from_environ(b"XPOD_NAME=a\0POD_NAMESPACE=b\0") == ""  # whole names only
    assert pod_from_environ(b"HOSTNAME=a\0HOSTNAME=b\0") == "a"  # the first, as getenv gives


def test_the_inode_of_each_established_socket_is_kept_when_asked_for() -> None:
    text = (DATA / "client_tcp").read_text()
    expected = {}
    for line in text.splitlines()[1:]:
        f = line.split()
        if f[3] == "01":
            expected[(f[1], f[2])] = int(f[9])
    table = parse_proc_net_tcp(text, ipv6=False, inodes=True)
    by_hex = {(f"{ip}:{lport}", f"{rip}:{rport}"): v for (ip, lport, rip, rport), v in table.inodes.items()}
    assert len(by_hex) == len(expected) == sum(e.state == ESTABLISHED for e in table) == 7
    assert table.inodes[("10.250.7.1", 40004, "10.250.7.2", 5432)] == 777276
    assert parse_proc_net_tcp(text, ipv6=False).inodes == {}  # other namespaces skip them


# --------------------------------------------------------------------------- the walk over /proc


def process(proc: Path, pid: int, sockets: dict[int, int], cgroup: str = "", environ: bytes = b"") -> None:
    """A /proc/<pid> with fd links (fd → socket inode, plus a non-socket one), cgroup and environ."""
    fd = proc / str(pid) / "fd"
    fd.mkdir(parents=True)
    (fd / "0").symlink_to("/dev/null")
    (fd / "1").symlink_to("pipe:[4242]")
    for n, inode in sockets.items():
        (fd / str(n)).symlink_to(f"socket:[{inode}]")
    (proc / str(pid) / "cgroup").write_text(cgroup or "0::/system.slice/kubelet.service\n")
    (proc / str(pid) / "environ").write_bytes(environ)


def test_owners_are_found_by_their_fd_links_and_remembered(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    cgroup = (DATA / "cgroup" / "v2_systemd_containerd_burstable").read_text()
    process(proc, 1, {3: 100})  # a node process: no pod
    process(proc, 7, {3: 200, 4: 201}, cgroup=cgroup, environ=b"POD_NAME=x\0POD_NAMESPACE=y\0")
    process(proc, 9, {5: 300}, environ=(DATA / "environ" / "downward_api_host_network").read_bytes())
    (proc / "12").mkdir()  # gone (or another uid's): no fd directory to list
    owners = SocketOwners(str(proc))
    pids = ["1", "7", "9", "12"]

    found, counts = owners.owners([100, 200, 300, 999], pids)
    assert found == {
        100: Owner("1"),
        200: Owner("7", UID, "y/x"),
        300: Owner("9", "", "monitoring/node-agent-x1"),
    }
    assert counts.links_read == 3 + 4 + 3 and counts.unreadable == 1  # 999 is nowhere: every link read

    # Known sockets cost nothing, nor does one no process was found to own; a new one is looked
    # for (until found); a closed one is forgotten, and looked for again if asked for.
    found, counts = owners.owners([200, 300, 999], pids)
    assert set(found) == {200, 300} and counts.links_read == 0
    found, counts = owners.owners([201], pids)
    assert found == {201: Owner("7", UID, "y/x")} and counts.links_read == 3 + 4  # stops once found
    found, counts = owners.owners([200], pids)
    assert set(found) == {200} and counts.links_read == 3 + 4


def test_the_walk_is_bounded(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    for pid in range(1, 6):
        process(proc, pid, {3: pid})
    owners, pids = SocketOwners(str(proc), max_links=6), [str(p) for p in range(1, 6)]
    found, counts = owners.owners([4, 5], pids)
    assert found == {} and counts.links_read == 6  # two processes of 3 links each, then it stops
    # An incomplete pass proves nothing of the sockets it did not find: they are looked for again.
    assert owners.owners([4, 5], pids)[1].links_read == 6


def test_the_scanner_names_the_pods_of_the_node_namespaces_client_sockets(tmp_path: Path) -> None:
    """The recorded client namespace plays the node's own; the server namespace a pod's."""
    proc = tmp_path / "proc"
    node_ns, pod_ns = tmp_path / "netns-node", tmp_path / "netns-pod"
    node_ns.write_text("")
    pod_ns.write_text("")
    cgroup = (DATA / "cgroup" / "v1_cgroupfs_docker").read_text()
    # 40006 → 6379 (inode 777316) belongs to a pod with a cgroup; 40004 → 5432 (777276) to one
    # known by its environment; 40001 → 8080 (777268, loopback) to a node process; the IPv6
    # 40005 → 6379 is no process's (not found).
    process(proc, 10, {3: 777316}, cgroup=cgroup)
    process(proc, 11, {7: 777276}, environ=b"POD_NAME=node-agent-x1\0POD_NAMESPACE=monitoring\0")
    process(proc, 12, {4: 777268}, environ=b"PATH=/bin\0")
    process(proc, 21, {}, environ=b"HOSTNAME=db\0")
    for pid, ns, name in (
        (10, node_ns, "client"),
        (11, node_ns, None),
        (12, node_ns, None),
        (21, pod_ns, "server"),
    ):
        (proc / str(pid) / "ns").mkdir()
        (proc / str(pid) / "ns" / "net").symlink_to(ns)
        if name is not None:
            (proc / str(pid) / "net").mkdir()
            for suffix in ("tcp", "tcp6"):
                (proc / str(pid) / "net" / suffix).write_text((DATA / f"{name}_{suffix}").read_text())
    st = node_ns.stat()

    scanner = SocketScanner(proc, node_namespace=(st.st_dev, st.st_ino))
    result = scanner.scan(NOW)

    by_port = {o.client_port: o for o in result.observations}
    # Seen from both namespaces; the node's side, which knows the pod, is the one reported.
    assert by_port[40006] == SocketConnection("10.250.7.1", 40006, "10.250.7.2", 6379, NOW, "", UID)
    assert by_port[40004] == SocketConnection(
        "10.250.7.1", 40004, "10.250.7.2", 5432, NOW, "", "", "monitoring/node-agent-x1"
    )
    # Loopback clients are not looked up: no node IP to attribute.
    assert by_port[40001] == SocketConnection("127.0.0.1", 40001, "127.0.0.1", 8080, NOW)
    # Every other client socket of the node namespace was looked up; two named a pod.
    assert (result.node_client_sockets, result.node_client_pods) == (3, 2)
    assert result.owner_unreadable == 0 and result.owner_links_read > 0
    # The next scan remembers the owners, and the sockets no process was found to own: no link is
    # read again until a new socket appears.
    assert scanner.scan(NOW + 1).owner_links_read == 0


def test_without_the_node_namespace_nothing_is_looked_up(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    ns = tmp_path / "netns"
    ns.write_text("")
    process(proc, 10, {3: 777316}, cgroup=(DATA / "cgroup" / "v1_cgroupfs_docker").read_text())
    (proc / "10" / "ns").mkdir()
    (proc / "10" / "ns" / "net").symlink_to(ns)
    (proc / "10" / "net").mkdir()
    for suffix in ("tcp", "tcp6"):
        (proc / "10" / "net" / suffix).write_text((DATA / f"client_{suffix}").read_text())
    result = SocketScanner(proc).scan(NOW)  # this process's namespace: not the recorded one
    assert result.node_client_sockets == 0
    assert not any(o.client_pod_uid or o.client_pod for o in result.observations)


# --------------------------------------------------------------------------- into the report


def test_two_pods_on_the_node_network_calling_one_server_are_two_reported_destinations() -> None:
    collector = PairCollector(100)
    node, server = "192.168.1.10", "10.244.0.30"
    collector.add(SocketConnection(node, 41000, server, 6379, NOW, "node-1", UID))
    collector.add(SocketConnection(node, 41001, server, 6379, NOW + 1, "node-1", "", "monitoring/agent-x1"))
    collector.add(SocketConnection(node, 41002, server, 6379, NOW + 2, "node-1"))  # owner unknown
    [mutation] = mutations_for(collector.drain())
    [source] = mutation.variables["results"]["results"]
    assert source["srcIp"] == node
    assert sorted(
        (d["srcPort"], d.get("clientPodUid"), d.get("clientPod")) for d in source["destinations"]
    ) == [(41000, UID, None), (41001, None, "monitoring/agent-x1"), (41002, None, None)]
