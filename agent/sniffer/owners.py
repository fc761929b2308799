"""Whose is a socket of the node's own network namespace: its owning process, and that process's pod.

Pods with ``hostNetwork: true`` share the node's network namespace (and IP) with the node's own
processes (kubelet, container runtime, sshd ...), so the address of such a socket cannot say
whose it is. The node's ``/proc`` (the sniffer runs with ``hostPID``) can:

* the owner: ``/proc/<pid>/fd/<n>`` links read ``socket:[<inode>]``, the inode that
  ``/proc/net/tcp`` lists for the socket (one pass over the namespace's processes per scan, only
  while some socket's owner is not yet known, and bounded by :data:`MAX_LINKS`);
* the pod UID, from ``/proc/<pid>/cgroup``: the kubelet puts each pod's containers under a cgroup
  named after the pod's UID, with ``-`` (cgroupfs driver: ``/kubepods/burstable/pod<uid>/<ctr>``)
  or ``_`` (systemd driver: ``.../kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope``);
  static pods have a 32-hex-digit UID of the kubelet's own (their mirror pod carries it in the
  ``kubernetes.io/config.mirror`` annotation);
* the pod's name, from ``/proc/<pid>/environ``: ``POD_NAMESPACE`` + ``POD_NAME`` (the downward
  API variables node agents commonly set) as ``namespace/name``, else ``HOSTNAME`` as a bare name
  (a pod's hostname is its name; not for a hostNetwork pod under a real kubelet, whose hostname is
  the node's: the mapper only matches a name against the node's hostNetwork pods).

Permissions (the sniffer's container: uid 0, only NET_RAW and SYS_PTRACE): ``cgroup`` is readable
by all; ``fd/`` (mode 0500) and ``environ`` (0400) are owned by the process's uid, so without
DAC_READ_SEARCH only processes running as uid 0 (the sniffer's uid; SYS_PTRACE passes the ptrace
check reading them adds) give their sockets and environment. A process that cannot be read is
skipped and counted.

Parsing (:func:`pod_uid_from_cgroup`, :func:`pod_from_environ`) is pure and tested with recorded
files; :class:`SocketOwners` does the reading, for :class:`agent.sniffer.sockets.SocketScanner`,
whose observations carry the result (``SocketConnection.client_pod_uid`` / ``client_pod``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from agent.model import SocketConnection

MAX_LINKS = 200_000
"""At most this many ``/proc/<pid>/fd`` links are read per scan: a node's processes hold far more
descriptors than sockets, and a scan must stay bounded whatever the node runs."""

# A pod UID in a kubelet cgroup path: "pod" after "/" or "-" (the systemd driver's slice names),
# an RFC 4122 UID with "-" or "_" between its groups, or a static pod's 32 hex digits, ending the
# path element (cgroupfs: "/", systemd: ".slice", a v1 containerd path: ":").
_POD_UID = re.compile(
    r"[/-]pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}|[0-9a-f]{32})"
    r"(?=/|\.slice|:|$)"
)
_SOCKET_LINK = "socket:["
# The hostname is looked for in at most this many processes of a namespace: in a pod one of
# the first few has it, and the host's namespace has hundreds of processes that do not.
_HOSTNAME_TRIES = 16

NamespaceKey = tuple[int, int]  # (st_dev, st_ino) of a /proc/<pid>/ns/net
Tuple4 = tuple[str, int, str, int]  # (local IP, local port, remote IP, remote port) of a socket
_GONE = (FileNotFoundError, ProcessLookupError, PermissionError, NotADirectoryError)


def pod_uid_from_cgroup(text: str) -> str:
    """The pod UID (with ``-``) in the text of ``/proc/<pid>/cgroup`` (v1: one line per
    hierarchy, ``id:controllers:path``; v2: ``0::path``), or ``""`` when the process is in no
    kubelet pod cgroup.

    Only paths under a ``kubepods`` cgroup count, or paths that climb out of the reader's own
    cgroup (``/../..``): the kernel shows paths relative to the *reader's* cgroup namespace, and a
    containerized sniffer on cgroup v2 has one of its own, rooted at its own pod's cgroup, from
    which another pod's is ``/../../<qos>/pod<uid>/<container>`` (cgroupfs driver)."""
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        if "kubepods" not in path and not path.startswith("/.."):
            continue
        found = _POD_UID.search(path)
        if found is not None:
            return found.group(1).replace("_", "-")
    return ""


def _variables(raw: bytes, names: frozenset[bytes]) -> dict[bytes, str]:
    found: dict[bytes, str] = {}
    for entry in raw.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep and name in names and name not in found:
            found[name] = value.decode("utf-8", "replace")
    return found


_POD_VARIABLES = frozenset({b"POD_NAME", b"POD_NAMESPACE", b"HOSTNAME"})


def pod_from_environ(raw: bytes) -> str:
    """The pod named by the contents of ``/proc/<pid>/environ`` (``NAME=value`` entries separated
    by NUL): ``namespace/name`` from ``POD_NAMESPACE`` and ``POD_NAME``, else the bare ``HOSTNAME``,
    else ``""``."""
    found = _variables(raw, _POD_VARIABLES)
    name, namespace = found.get(b"POD_NAME", ""), found.get(b"POD_NAMESPACE", "")
    if name and namespace and "/" not in name + namespace:
        return f"{namespace}/{name}"
    hostname = found.get(b"HOSTNAME", "")
    return hostname if "/" not in hostname else ""


def own_namespace() -> NamespaceKey | None:
    """The network namespace this process runs in: the node's for the sniffer (hostNetwork)."""
    try:
        st = os.stat("/proc/self/ns/net")  # noqa: PTH116 - str paths, as everywhere here
    except OSError:
        return None
    return st.st_dev, st.st_ino


def hostname_of(root: str, pids: list[str]) -> str:
    """``HOSTNAME`` from the environment of a namespace's processes (the pod name under
    Kubernetes), or ``""``. The UTS hostname itself cannot be read through ``/proc``, and a
    container's ``/etc/hostname`` may be absent or stale."""
    for pid in pids[:_HOSTNAME_TRIES]:
        try:
            with open(f"{root}/{pid}/environ", "rb", buffering=0) as f:  # noqa: PTH123 - str paths
                # A leading NUL lets the first variable be found like every other one.
                environ = b"\0" + f.read()
        except _GONE:
            continue
        start = environ.find(b"\0HOSTNAME=")
        if start < 0:
            continue
        start += len(b"\0HOSTNAME=")
        end = environ.find(b"\0", start)
        return environ[start : end if end >= 0 else len(environ)].decode("utf-8", "replace")
    return ""


class Owner(NamedTuple):
    """The process owning a socket and its pod: ``pod_uid`` (from its cgroup) and ``pod`` (from
    its environment), each empty when the process says nothing of it."""

    pid: str
    pod_uid: str = ""
    pod: str = ""


@dataclass(frozen=True, slots=True)
class OwnerCounts:
    """What one lookup did, for the scan's counters."""

    links_read: int = 0
    unreadable: int = 0  # processes whose fd directory could not be listed (another uid, or gone)


class SocketOwners:
    """Finds the owners of sockets through a ``/proc``, remembering them across scans: a socket's
    inode names it for its whole life, so only sockets new since the last scan cost a pass over the
    processes. Not thread-safe; one per scanner."""

    def __init__(self, proc_root: str, max_links: int = MAX_LINKS) -> None:
        self._root = proc_root
        self._max_links = max_links
        self._known: dict[int, Owner | None] = {}  # None: looked for everywhere, owned by no process seen

    def owners(self, inodes: Iterable[int], pids: Sequence[str]) -> tuple[dict[int, Owner], OwnerCounts]:
        """The owner of each of ``inodes`` found among ``pids`` (the processes of the namespace the
        sockets are in), and the counts. An inode whose owner a complete pass did not find (held by a
        process that cannot be read) is not looked for again while it is asked for; what is
        remembered is forgotten once its inode is no longer asked for (the socket has closed)."""
        wanted = set(inodes)
        known = {inode: owner for inode, owner in self._known.items() if inode in wanted}
        missing = wanted - known.keys()
        counts = OwnerCounts()
        if missing:
            found, counts, complete = self._walk(set(missing), pids)
            pods: dict[str, tuple[str, str]] = {}
            for inode, pid in found.items():
                pod = pods.get(pid)
                if pod is None:
                    pod = pods[pid] = self._pod_of(pid)
                known[inode] = Owner(pid, *pod)
            if complete:
                known.update((inode, None) for inode in missing - found.keys())
        self._known = known
        return {inode: owner for inode, owner in known.items() if owner is not None}, counts

    def attribute(
        self, conns: list[SocketConnection], inodes: dict[Tuple4, int], pids: list[str]
    ) -> tuple[list[SocketConnection], tuple[int, int, int, int]]:
        """The node namespace's connections, each whose client socket is there with its owner's
        pod (``inodes``: the namespace's ESTABLISHED sockets by 4-tuple, ``pids``: its processes);
        and (client sockets, of which named a pod, links read, unreadable processes). A client
        socket is in the namespace when the client's 4-tuple is one of its sockets."""
        clients = {}
        for i, c in enumerate(conns):
            if c.client_ip.startswith("127.") or c.client_ip == "::1":
                continue  # loopback: no node IP to attribute (the mapper resolves none of these)
            inode = inodes.get((c.client_ip, c.client_port, c.server_ip, c.server_port))
            if inode is not None:
                clients[i] = inode
        if not clients:
            return conns, (0, 0, 0, 0)
        owners, counts = self.owners(clients.values(), pids)
        named = 0
        out = list(conns)
        for i, inode in clients.items():
            owner = owners.get(inode)
            if owner is not None and (owner.pod_uid or owner.pod):
                c = conns[i]
                out[i] = SocketConnection(
                    c.client_ip, c.client_port, c.server_ip, c.server_port, c.seen_at,
                    c.client_hostname, owner.pod_uid, owner.pod,
                )  # fmt: skip
                named += 1
        return out, (len(clients), named, counts.links_read, counts.unreadable)

    def _walk(self, missing: set[int], pids: Sequence[str]) -> tuple[dict[int, str], OwnerCounts, bool]:
        """inode → pid for the ``missing`` inodes (emptied as they are found), by reading the
        processes' fd links until all are found or :attr:`_max_links` links were read; and whether
        every process was read (the bound was not reached)."""
        root, found = self._root, dict[int, str]()
        links = unreadable = 0
        readlink = os.readlink
        for pid in pids:
            if links >= self._max_links:
                return found, OwnerCounts(links, unreadable), False
            fd_dir = f"{root}/{pid}/fd/"
            try:
                fds = os.listdir(fd_dir)  # noqa: PTH208 - hot loop over every process, str paths
            except _GONE:
                unreadable += 1
                continue
            for fd in fds:
                links += 1
                try:
                    target = readlink(fd_dir + fd)
                except _GONE:
                    continue  # closed since the listing
                if target.startswith(_SOCKET_LINK):
                    inode = int(target[len(_SOCKET_LINK) : -1])
                    if inode in missing:
                        missing.discard(inode)
                        found[inode] = pid
            if not missing:
                break
        return found, OwnerCounts(links, unreadable), True

    def _pod_of(self, pid: str) -> tuple[str, str]:
        """(pod UID, pod) of a process: the UID from its cgroup, the pod its environment names
        (each empty when it cannot be read or says nothing). Both are kept: the mapper tries the
        UID first, and the name still serves when the UID is one it does not know."""
        base = f"{self._root}/{pid}/"
        try:
            with open(base + "cgroup", "rb", buffering=0) as f:  # noqa: PTH123 - str paths
                uid = pod_uid_from_cgroup(f.read().decode("utf-8", "replace"))
        except _GONE:
            uid = ""
        try:
            with open(base + "environ", "rb", buffering=0) as f:  # noqa: PTH123 - str paths
                pod = pod_from_environ(f.read())
        except _GONE:
            pod = ""
        return uid, pod
