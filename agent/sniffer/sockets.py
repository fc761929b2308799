"""Established TCP sockets in ``/proc`` → :class:`~agent.model.SocketConnection` observations.

Data comes from the host's ``/proc`` (the sniffer runs with ``hostPID``, so every pod's
processes are visible there): ``/proc/<pid>/ns/net`` names each process's network namespace
and ``/proc/<pid>/net/tcp`` and ``tcp6`` list that namespace's sockets. The observations go
to the collector (``pairs.py``), whose reports carry them to the mapper's
``reportSocketScanResults``. This catches long-lived connections that were opened before
the sniffer started, which the SYN capture can never see.

Parsing is pure (:func:`parse_proc_net_tcp`, :func:`connections`: text in, values out) and
separate from the file walk (:class:`SocketScanner`), so it is tested with captured text.
Each namespace's tables are read once, however many processes share the namespace: a node
has far more processes than pods, and reading either file makes the kernel walk the hash
table of every TCP socket on the node.

The node's own network namespace (the sniffer's: it runs with ``hostNetwork``) is shared by
hostNetwork pods and node processes alike, so its client sockets are also looked up by inode
(:mod:`agent.sniffer.owners`): the owning process names its pod on the observation.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from agent.model import SocketConnection, Timestamp
from agent.sniffer.owners import NamespaceKey, SocketOwners, hostname_of, own_namespace

# TCP states as the kernel prints them (include/net/tcp_states.h).
ESTABLISHED = 0x01
LISTEN = 0x0A

# The kernel prints each 32-bit word of an address as a number in host byte order, so on
# little-endian hosts (amd64, arm64) the bytes of every word come out reversed.
_HOST_WORDS = struct.Struct("=4I")
_NET_WORDS = struct.Struct("!4I")
_LITTLE_ENDIAN = sys.byteorder == "little"
_V4_MAPPED = bytes(10) + b"\xff\xff"
_WILDCARDS = frozenset({"0.0.0.0", "::"})
_ntoa = socket.inet_ntoa
_ntop = socket.inet_ntop
_AF_INET6 = socket.AF_INET6

# Lookups of a process that can fail because it exited (or was never ours to read) while the
# scan was running; such processes are counted and skipped.
_GONE = (FileNotFoundError, ProcessLookupError, PermissionError)

# Reading net/tcp{,6}: seq_file fills at most one buffer per read() (a page, unless a single
# line is longer, which these never are); a line is under 512 bytes, so a read returning less
# than a page minus that was stopped by the end of the table. See _read_table.
_READ_SIZE = 1 << 16
_SHORT_READ = os.sysconf("SC_PAGE_SIZE") - 512


class TcpEntry(NamedTuple):
    """One line of ``/proc/<pid>/net/tcp{,6}``. A NamedTuple: the scan makes tens of
    thousands of these per pass, and a tuple is several times cheaper than a dataclass."""

    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int
    state: int


class TcpTable(list[TcpEntry]):
    """The entries of one ``net/tcp{,6}`` file, plus how many lines were malformed and, when
    parsed with ``inodes=True``, the socket inode of each ESTABLISHED entry."""

    __slots__ = ("inodes", "malformed")

    def __init__(self, entries: Iterable[TcpEntry] = (), malformed: int = 0) -> None:
        super().__init__(entries)
        self.malformed = malformed
        self.inodes: dict[tuple[str, int, str, int], int] = {}


def _ipv4(hex_address: str) -> str:
    if len(hex_address) != 8:
        raise ValueError(hex_address)
    raw = bytes.fromhex(hex_address)
    return _ntoa(raw[::-1] if _LITTLE_ENDIAN else raw)


def _ipv6(hex_address: str) -> str:
    if len(hex_address) != 32:
        raise ValueError(hex_address)
    raw = _NET_WORDS.pack(*_HOST_WORDS.unpack(bytes.fromhex(hex_address)))
    # A dual-stack listener's IPv4 peers appear in tcp6 as ::ffff:a.b.c.d; the rest of the
    # pipeline knows those hosts by their IPv4 address.
    if raw.startswith(_V4_MAPPED):
        return _ntoa(raw[12:])
    return _ntop(_AF_INET6, raw)


def parse_proc_net_tcp(text: str, ipv6: bool, inodes: bool = False) -> TcpTable:
    """Parse the text of ``/proc/<pid>/net/tcp`` (``ipv6=False``) or ``tcp6`` (``ipv6=True``).

    Every socket line gives one :class:`TcpEntry`, whatever its state. Lines that do not parse
    are skipped and counted in the result's ``malformed``; this never raises on bad input.
    With ``inodes``, the result's ``inodes`` maps each ESTABLISHED entry's 4-tuple to its socket
    inode (the tenth field; only the node namespace's tables need it, so others skip the split).
    """
    decode = _ipv6 if ipv6 else _ipv4
    # A namespace's sockets share a handful of addresses, so each is decoded once per file.
    addresses: dict[str, str] = {}
    entries = TcpTable()
    append = entries.append
    inode_of = entries.inodes
    malformed = 0
    maxsplit = 10 if inodes else 4
    for line in text.splitlines():
        # "sl local rem st ..." is all this needs (and the inode, field 9); maxsplit leaves the rest.
        fields = line.split(None, maxsplit)
        if len(fields) < 4:
            malformed += bool(fields)  # a blank line is not a broken one
            continue
        sl, local, remote, state = fields[0], fields[1], fields[2], fields[3]
        if sl == "sl":
            continue  # the header
        # The port is always 4 hex digits (%04X), so the address is what precedes ":XXXX".
        if local[-5:-4] != ":" or remote[-5:-4] != ":" or len(state) != 2:
            malformed += 1
            continue
        local_hex, remote_hex = local[:-5], remote[:-5]
        try:
            local_ip = addresses.get(local_hex)
            if local_ip is None:
                local_ip = addresses[local_hex] = decode(local_hex)
            remote_ip = addresses.get(remote_hex)
            if remote_ip is None:
                remote_ip = addresses[remote_hex] = decode(remote_hex)
            local_port = int(local[-4:], 16)
            remote_port = int(remote[-4:], 16)
            state_code = int(state, 16)
        except ValueError:
            malformed += 1
            continue
        if local_port < 0 or remote_port < 0 or state_code < 0:  # int() accepts "-FFF"
            malformed += 1
            continue
        append(TcpEntry(local_ip, local_port, remote_ip, remote_port, state_code))
        if inodes and state_code == ESTABLISHED and len(fields) > 9 and fields[9].isdigit():
            inode_of[(local_ip, local_port, remote_ip, remote_port)] = int(fields[9])
    entries.malformed = malformed
    return entries


def _is_loopback(ip: str) -> bool:
    return ip.startswith("127.") or ip == "::1"


def connections(entries: Iterable[TcpEntry], seen_at: Timestamp, hostname: str) -> list[SocketConnection]:
    """The established connections of ONE network namespace, each with its direction decided.

    ``entries`` are all of the namespace's ``tcp`` and ``tcp6`` entries (listeners included:
    they decide direction). A connection whose local end is on a listening port is incoming
    (the remote end is the client); otherwise the local end is the client. A connection with
    both ends in the namespace (loopback, or to its own address) is listed twice by the
    kernel and reported once. ``hostname`` is set on observations whose client is in this
    namespace, and left empty when the client is a remote peer.
    """
    listening: dict[int, set[str]] = {}
    established: list[TcpEntry] = []
    for entry in entries:
        if entry.state == ESTABLISHED:
            established.append(entry)
        elif entry.state == LISTEN:
            listening.setdefault(entry.local_port, set()).add(entry.local_ip)
    if not established:
        return []
    local_ips = {entry.local_ip for entry in established}
    # Both ends of in-namespace connections, to recognise a pair whose listener has closed.
    ends = {(e.local_ip, e.local_port, e.remote_ip, e.remote_port) for e in established}

    def listens(ip: str, port: int) -> bool:
        ips = listening.get(port)
        return ips is not None and (ip in ips or not ips.isdisjoint(_WILDCARDS))

    found: dict[tuple[str, int, str, int], SocketConnection] = {}
    for lip, lport, rip, rport, _ in established:
        if listens(lip, lport):
            incoming = True
        elif (rip, rport, lip, lport) in ends and not listens(rip, rport):
            # Both ends are here and neither listens (the listener has closed): guess that
            # the server has the lower port, as clients get high ephemeral ports.
            incoming = (lport, lip) < (rport, rip)
        else:
            incoming = False
        if incoming:
            key = (rip, rport, lip, lport)
            client_is_local = rip in local_ips or _is_loopback(rip)
        else:
            key = (lip, lport, rip, rport)
            client_is_local = True
        if key not in found:
            found[key] = SocketConnection(
                client_ip=key[0],
                client_port=key[1],
                server_ip=key[2],
                server_port=key[3],
                seen_at=seen_at,
                client_hostname=hostname if client_is_local else "",
            )
    return list(found.values())


@dataclass(frozen=True, slots=True)
class ScanResult:
    """One pass over ``/proc``: the observations and counters for the sniffer's metrics."""

    observations: list[SocketConnection]
    namespaces: int = 0  # distinct network namespaces whose tables were read
    processes: int = 0  # process directories seen under /proc
    parse_errors: int = 0  # malformed lines in the tables read
    skipped_processes: int = 0  # processes that vanished (or were unreadable) mid-scan
    established_sockets: int = 0  # ESTABLISHED entries read; both ends of an in-namespace connection count
    node_client_sockets: int = 0  # non-loopback client sockets of the node namespace: owners looked for
    node_client_pods: int = 0  # ... of which the owner named its pod (by UID or name)
    owner_links_read: int = 0  # /proc/<pid>/fd links read to find owners (0 when all were known)
    owner_unreadable: int = 0  # processes of the node namespace whose fd directory could not be listed


def _read_table(path: str) -> str:
    """The text of a ``net/tcp{,6}`` file, without the read that would only report EOF.

    procfs serves these tables through seq_file: each read() formats at most one buffer (a
    page) of lines and the next read resumes where it stopped. But the read that finds the
    end cannot resume: it walks the kernel's whole TCP hash table again from the start
    (``tcp_seq_start`` → ``tcp_get_idx``), which with many sockets on the node costs as much
    as all the reads before it. A read stops short of a full buffer only at the end of the
    table, so after a read shorter than a page minus the longest line there is nothing more
    to get. Regular files (a copied /proc in tests) end the same way: with a short read.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, _READ_SIZE)
            chunks.append(chunk)
            if len(chunk) < _SHORT_READ:
                break
    finally:
        os.close(fd)
    # Garbage is not ASCII, but it must become a malformed line, not an exception.
    return b"".join(chunks).decode("ascii", "replace")


def _in_use(path: str, protocol: str) -> bool:
    """False only if the namespace's ``sockstat`` (``sockstat6``) file says it has no TCP
    (TCPv6) sockets: ``TCP: inuse 0``. The kernel keeps these counters per namespace and
    counts every listening and connected socket, so this read costs next to nothing.
    If the file cannot be read or parsed, the table is read anyway."""
    try:
        with open(path, "rb", buffering=0) as f:  # noqa: PTH123 - str paths are cheaper per process
            text = f.read().decode("ascii", "replace")
    except _GONE:
        return True
    for line in text.splitlines():
        fields = line.split(None, 3)
        if len(fields) >= 3 and fields[0] == protocol and fields[1] == "inuse":
            return fields[2] != "0"
    return True


def _richer(conn: SocketConnection, seen: SocketConnection) -> bool:
    """Whether ``conn`` says more of its client than ``seen`` (the same connection from the other
    namespace): its pod first, then its hostname."""
    if seen.client_pod_uid or seen.client_pod:
        return False
    return bool(conn.client_pod_uid or conn.client_pod or (conn.client_hostname and not seen.client_hostname))


class SocketScanner:
    """Scans a ``/proc`` (the host's, via ``SnifferSettings.proc_root``) for established TCP
    connections in every network namespace. Not thread-safe; one scanner per scan loop.

    ``node_namespace`` is the node's own network namespace, whose client sockets get their
    owner's pod (default: this process's namespace; ``None`` there: no owner lookups)."""

    def __init__(self, proc_root: Path, node_namespace: NamespaceKey | None = None) -> None:
        self._root = str(proc_root)
        self._node = node_namespace if node_namespace is not None else own_namespace()
        self._owners = SocketOwners(self._root)

    def scan(self, now: Timestamp) -> ScanResult:
        """One pass: returns each connection once, stamped ``now``.

        A connection between two namespaces of this node shows in both; it is reported
        once, with what is known of the client (found in the client's namespace).
        """
        root = self._root
        namespaces, processes, skipped = self._namespaces()
        parse_errors = established_sockets = scanned = 0
        owned = named = links = unreadable = 0
        found: dict[tuple[str, int, str, int], SocketConnection] = {}
        # Loopback tuples of different namespaces are different connections: never merged.
        loopback: list[SocketConnection] = []
        for key, pids in namespaces:
            node = key == self._node
            tables, gone = self._tables(pids, inodes=node)
            skipped += gone
            if tables is None:
                continue
            scanned += 1
            tcp, tcp6 = tables
            parse_errors += tcp.malformed + tcp6.malformed
            tcp.extend(tcp6)
            count = sum(1 for entry in tcp if entry.state == ESTABLISHED)
            if not count:
                continue
            established_sockets += count
            # The node namespace's processes are the node's and every hostNetwork pod's: no one
            # hostname speaks for its clients; their owners do (below).
            conns = connections(tcp, now, "" if node else hostname_of(root, pids))
            if node:
                tcp.inodes.update(tcp6.inodes)
                conns, counts = self._owners.attribute(conns, tcp.inodes, pids)
                owned, named, links, unreadable = counts
            for conn in conns:
                if _is_loopback(conn.client_ip) or _is_loopback(conn.server_ip):
                    loopback.append(conn)
                    continue
                key4 = (conn.client_ip, conn.client_port, conn.server_ip, conn.server_port)
                seen = found.get(key4)
                if seen is None or _richer(conn, seen):
                    found[key4] = conn
        return ScanResult(
            observations=[*found.values(), *loopback],
            namespaces=scanned,
            processes=processes,
            parse_errors=parse_errors,
            skipped_processes=skipped,
            established_sockets=established_sockets,
            node_client_sockets=owned,
            node_client_pods=named,
            owner_links_read=links,
            owner_unreadable=unreadable,
        )

    def _namespaces(self) -> tuple[list[tuple[NamespaceKey, list[str]]], int, int]:
        """Each network namespace with its pids, processes seen, and processes skipped."""
        root = self._root
        by_namespace: dict[NamespaceKey, list[str]] = {}
        processes = skipped = 0
        with os.scandir(root) as it:
            for dirent in it:
                pid = dirent.name
                if not pid.isdigit():
                    continue
                processes += 1
                try:
                    st = os.stat(f"{root}/{pid}/ns/net")  # noqa: PTH116 - hot loop, str paths
                except _GONE:
                    skipped += 1
                    continue
                key = (st.st_dev, st.st_ino)
                pids = by_namespace.get(key)
                if pids is None:
                    by_namespace[key] = [pid]
                else:
                    pids.append(pid)
        namespaces = list(by_namespace.items())
        for _, pids in namespaces:
            # Lowest pid first, whatever order the directory listing had: usually the
            # namespace's oldest process, so the same one is read every scan.
            pids.sort(key=int)
        return namespaces, processes, skipped

    def _tables(self, pids: list[str], inodes: bool) -> tuple[tuple[TcpTable, TcpTable] | None, int]:
        """The namespace's tcp and tcp6 tables, read through its first pid that is still
        there (``None`` if none is), and how many pids had gone.

        A table is read only if the namespace's ``sockstat`` counters say it has sockets of
        that family: reading a table walks the hash table of every socket on the node, and
        many namespaces have no sockets of one family (or none at all).
        """
        root = self._root
        for gone, pid in enumerate(pids):
            net = f"{root}/{pid}/net/"
            try:
                tcp = _read_table(net + "tcp") if _in_use(net + "sockstat", "TCP:") else ""
            except _GONE:
                continue
            try:
                tcp6 = _read_table(net + "tcp6") if _in_use(net + "sockstat6", "TCP6:") else ""
            except _GONE:
                # No IPv6 on this kernel (ipv6.disable=1), or the process exited just now:
                # either way the IPv4 table already read is still this namespace's.
                tcp6 = ""
            parsed = parse_proc_net_tcp(tcp, False, inodes), parse_proc_net_tcp(tcp6, True, inodes)
            return parsed, gone
        return None, len(pids)
