"""The /proc socket-table parser and direction logic, against real captured tables
(tests/data/proc, see make_fixtures.py there) and crafted edge cases.

Expected values come from the scenario in make_fixtures.py (fixed addresses and client ports),
not from running the parser.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.model import SocketConnection
from agent.sniffer.sockets import (
    ESTABLISHED,
    LISTEN,
    SocketScanner,
    TcpEntry,
    connections,
    parse_proc_net_tcp,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "proc"
TIME_WAIT = 0x06
NOW = 1_700_000_000.0


def table(name: str) -> list[TcpEntry]:
    parsed = parse_proc_net_tcp((DATA / name).read_text(), ipv6=name.endswith("6"))
    assert parsed.malformed == 0
    return parsed


def conn(client: str, cport: int, server: str, sport: int, hostname: str = "") -> SocketConnection:
    return SocketConnection(client, cport, server, sport, NOW, hostname)


# --------------------------------------------------------------------------- parsing real tables


def test_parses_ipv4_table_of_the_client_namespace() -> None:
    assert sorted(table("client_tcp")) == sorted(
        [
            TcpEntry("127.0.0.1", 8080, "0.0.0.0", 0, LISTEN),
            TcpEntry("127.0.0.1", 8080, "127.0.0.1", 40001, ESTABLISHED),
            TcpEntry("127.0.0.1", 40001, "127.0.0.1", 8080, ESTABLISHED),
            TcpEntry("127.0.0.1", 40002, "127.0.0.1", 9090, ESTABLISHED),
            TcpEntry("10.250.7.1", 40004, "10.250.7.2", 5432, ESTABLISHED),
            TcpEntry("10.250.7.1", 40006, "10.250.7.2", 6379, ESTABLISHED),
            TcpEntry("127.0.0.1", 40007, "127.0.0.1", 8081, TIME_WAIT),
            TcpEntry("127.0.0.1", 7000, "127.0.0.1", 40008, ESTABLISHED),
            TcpEntry("127.0.0.1", 40008, "127.0.0.1", 7000, ESTABLISHED),
        ]
    )


def test_parses_ipv6_table_and_renders_ipv4_mapped_addresses_as_ipv4() -> None:
    assert sorted(table("client_tcp6")) == sorted(
        [
            TcpEntry("::", 9090, "::", 0, LISTEN),
            TcpEntry("::1", 9443, "::", 0, LISTEN),
            # The IPv4 client of the dual-stack listener: ::ffff:127.0.0.1 in the file.
            TcpEntry("127.0.0.1", 9090, "127.0.0.1", 40002, ESTABLISHED),
            TcpEntry("::1", 40003, "::1", 9443, ESTABLISHED),
            TcpEntry("::1", 9443, "::1", 40003, ESTABLISHED),
            TcpEntry("fd00:250:7::1", 40005, "fd00:250:7::2", 6379, ESTABLISHED),
        ]
    )


def test_parses_the_server_namespace_tables() -> None:
    assert table("server_tcp") == [
        TcpEntry("0.0.0.0", 5432, "0.0.0.0", 0, LISTEN),
        TcpEntry("10.250.7.2", 5432, "10.250.7.1", 40004, ESTABLISHED),
    ]
    assert sorted(table("server_tcp6")) == sorted(
        [
            TcpEntry("::", 6379, "::", 0, LISTEN),
            TcpEntry("fd00:250:7::2", 6379, "fd00:250:7::1", 40005, ESTABLISHED),
            TcpEntry("10.250.7.2", 6379, "10.250.7.1", 40006, ESTABLISHED),
        ]
    )


def test_empty_text_and_header_only_give_no_entries() -> None:
    assert parse_proc_net_tcp("", ipv6=False) == []
    header = (DATA / "server_tcp6").read_text().splitlines()[0] + "\n"
    parsed = parse_proc_net_tcp(header, ipv6=True)
    assert parsed == []
    assert parsed.malformed == 0


# --------------------------------------------------------------------------- malformed input


GOOD_V4 = "   1: 0100007F:1F90 0100007F:9C41 01 00000000:00000000 00:00000000 00000000     0        0 37178 1"


@pytest.mark.parametrize(
    "bad",
    [
        "   2: 0100007F:1F90",  # truncated
        "   2: 0100007F1F90 0100007F:9C41 01 0",  # no port separator
        "   2: 0100007G:1F90 0100007F:9C41 01 0",  # not hex
        "   2: 00007F:1F90 0100007F:9C41 01 0",  # short address
        "   2: 0100007F:1F90 0100007F:9C41 1 0",  # one-digit state
        "   2: 0100007F:-F90 0100007F:9C41 01 0",  # negative port
        "   2: 0100007F:1F90 0100007F:9C41 zz 0",  # state not hex
        "\x00\xff garbage",
    ],
)
def test_malformed_lines_are_counted_and_skipped(bad: str) -> None:
    parsed = parse_proc_net_tcp(f"{GOOD_V4}\n{bad}\n{GOOD_V4}\n", ipv6=False)
    assert parsed.malformed == 1
    assert parsed == [TcpEntry("127.0.0.1", 8080, "127.0.0.1", 40001, ESTABLISHED)] * 2


def test_an_ipv4_line_in_the_ipv6_table_is_malformed() -> None:
    parsed = parse_proc_net_tcp(GOOD_V4, ipv6=True)
    assert (parsed, parsed.malformed) == ([], 1)


@given(st.text())
def test_parser_never_raises(text: str) -> None:
    for ipv6 in (False, True):
        parsed = parse_proc_net_tcp(text, ipv6)
        assert parsed.malformed >= 0


# --------------------------------------------------------------------------- direction


def test_client_namespace_connections_real_tables() -> None:
    entries = table("client_tcp") + table("client_tcp6")
    found = connections(entries, NOW, "shop-client")
    assert len(found) == len(set(found))
    assert set(found) == {
        # Both ends of each loopback connection are in the tables; each is reported once.
        conn("127.0.0.1", 40001, "127.0.0.1", 8080, "shop-client"),
        conn("127.0.0.1", 40002, "127.0.0.1", 9090, "shop-client"),
        conn("::1", 40003, "::1", 9443, "shop-client"),
        # Outgoing to the server namespace: nothing listens on these local ports.
        conn("10.250.7.1", 40004, "10.250.7.2", 5432, "shop-client"),
        conn("fd00:250:7::1", 40005, "fd00:250:7::2", 6379, "shop-client"),
        conn("10.250.7.1", 40006, "10.250.7.2", 6379, "shop-client"),
        # The listener on 7000 is closed: the lower port is taken as the server's.
        conn("127.0.0.1", 40008, "127.0.0.1", 7000, "shop-client"),
    }


def test_server_namespace_connections_real_tables_have_remote_clients() -> None:
    entries = table("server_tcp") + table("server_tcp6")
    # The clients are in another namespace: this namespace's hostname is not theirs.
    assert set(connections(entries, NOW, "db")) == {
        conn("10.250.7.1", 40004, "10.250.7.2", 5432),
        conn("fd00:250:7::1", 40005, "fd00:250:7::2", 6379),
        conn("10.250.7.1", 40006, "10.250.7.2", 6379),
    }


def test_a_local_port_that_listens_makes_the_local_end_the_server() -> None:
    entries = [
        TcpEntry("10.0.0.5", 80, "10.0.0.9", 3000, ESTABLISHED),
        TcpEntry("0.0.0.0", 80, "0.0.0.0", 0, LISTEN),
    ]
    # The client's port (3000) is lower than ephemeral, which does not matter: 80 listens.
    assert connections(entries, NOW, "web") == [conn("10.0.0.9", 3000, "10.0.0.5", 80)]


def test_a_listener_on_another_address_does_not_make_the_local_end_a_server() -> None:
    entries = [
        TcpEntry("127.0.0.1", 9000, "0.0.0.0", 0, LISTEN),
        TcpEntry("10.0.0.5", 9000, "10.0.0.9", 443, ESTABLISHED),
    ]
    assert connections(entries, NOW, "h") == [conn("10.0.0.5", 9000, "10.0.0.9", 443, "h")]


def test_a_dual_stack_listener_matches_ipv4_connections() -> None:
    entries = [
        TcpEntry("::", 8443, "::", 0, LISTEN),
        TcpEntry("10.0.0.5", 8443, "10.0.0.9", 51000, ESTABLISHED),
    ]
    assert connections(entries, NOW, "h") == [conn("10.0.0.9", 51000, "10.0.0.5", 8443)]


def test_neither_end_listening_makes_the_local_end_the_client() -> None:
    entries = [TcpEntry("10.0.0.5", 51000, "10.0.0.9", 5432, ESTABLISHED)]
    assert connections(entries, NOW, "h") == [conn("10.0.0.5", 51000, "10.0.0.9", 5432, "h")]


@pytest.mark.parametrize("reverse", [False, True])
def test_both_ends_of_a_loopback_pair_give_one_observation(reverse: bool) -> None:
    entries = [
        TcpEntry("127.0.0.1", 8080, "0.0.0.0", 0, LISTEN),
        TcpEntry("127.0.0.1", 8080, "127.0.0.1", 1024, ESTABLISHED),
        TcpEntry("127.0.0.1", 1024, "127.0.0.1", 8080, ESTABLISHED),
    ]
    found = connections(entries[::-1] if reverse else entries, NOW, "h")
    # The client port is lower than the server's: only the listener decides.
    assert found == [conn("127.0.0.1", 1024, "127.0.0.1", 8080, "h")]


def test_a_connection_to_the_namespaces_own_address_has_a_local_client() -> None:
    entries = [
        TcpEntry("0.0.0.0", 8080, "0.0.0.0", 0, LISTEN),
        TcpEntry("10.0.0.5", 8080, "10.0.0.5", 40000, ESTABLISHED),
        TcpEntry("10.0.0.5", 40000, "10.0.0.5", 8080, ESTABLISHED),
    ]
    assert connections(entries, NOW, "h") == [conn("10.0.0.5", 40000, "10.0.0.5", 8080, "h")]


def test_only_established_entries_are_reported() -> None:
    entries = [
        TcpEntry("10.0.0.5", 40000, "10.0.0.9", 80, TIME_WAIT),
        TcpEntry("10.0.0.5", 40001, "10.0.0.9", 80, 0x02),  # SYN_SENT
        TcpEntry("0.0.0.0", 80, "0.0.0.0", 0, LISTEN),
    ]
    assert connections(entries, NOW, "h") == []


# --------------------------------------------------------------------------- the /proc walk, on a fake tree


def fake_process(
    proc: Path, pid: int, netns: Path, tcp: str | None, tcp6: str = "", environ: bytes = b""
) -> None:
    """A /proc/<pid> with ns/net a symlink to ``netns`` (so processes sharing it share an inode)."""
    base = proc / str(pid)
    (base / "ns").mkdir(parents=True)
    (base / "ns" / "net").symlink_to(netns)
    (base / "environ").write_bytes(environ)
    if tcp is not None:  # None: the process exited after its ns/net was looked at
        (base / "net").mkdir()
        (base / "net" / "tcp").write_text(tcp)
        (base / "net" / "tcp6").write_text(tcp6)


def test_scanner_reads_each_namespace_once_and_merges_both_ends(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "self").mkdir()  # not a pid
    ns_client, ns_server, ns_idle = (tmp_path / n for n in ("netns-a", "netns-b", "netns-c"))
    for ns in (ns_client, ns_server, ns_idle):
        ns.write_text("")
    client_tcp = (DATA / "client_tcp").read_text()
    client_tcp6 = (DATA / "client_tcp6").read_text()
    # The pause-like first process has no HOSTNAME; the app process does.
    fake_process(proc, 10, ns_client, client_tcp, client_tcp6, b"PATH=/bin\0")
    fake_process(
        proc, 11, ns_client, "broken tables must not be read twice", "", b"A=1\0HOSTNAME=shop-client\0"
    )
    fake_process(proc, 20, ns_server, None)  # gone: the next process of its namespace is used
    fake_process(
        proc,
        21,
        ns_server,
        (DATA / "server_tcp").read_text() + "   9: junk\n",
        (DATA / "server_tcp6").read_text(),
        b"HOSTNAME=db\0",
    )
    fake_process(proc, 30, ns_idle, "", "", b"HOSTNAME=idle\0")
    (proc / "40").mkdir()  # no ns/net: exited before it was looked at

    result = SocketScanner(proc).scan(NOW)

    assert (result.namespaces, result.processes, result.parse_errors) == (3, 6, 1)
    assert result.skipped_processes == 2
    assert result.established_sockets == 7 + 4 + 3  # client tcp, client tcp6, server
    observations = result.observations
    assert len(observations) == len(set(observations)) == 7
    # Seen from both namespaces, reported once with the client's hostname.
    assert conn("10.250.7.1", 40004, "10.250.7.2", 5432, "shop-client") in observations
    assert conn("10.250.7.1", 40006, "10.250.7.2", 6379, "shop-client") in observations
    assert conn("::1", 40003, "::1", 9443, "shop-client") in observations


def test_scanner_keeps_identical_loopback_connections_of_different_namespaces(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    text = (DATA / "client_tcp").read_text()
    for pid in (1, 2):
        (tmp_path / f"ns{pid}").write_text("")
        fake_process(proc, pid, tmp_path / f"ns{pid}", text, "", f"HOSTNAME=pod-{pid}\0".encode())
    observations = SocketScanner(proc).scan(NOW).observations
    loopback = [o for o in observations if (o.client_port, o.server_port) == (40001, 8080)]
    assert sorted(o.client_hostname for o in loopback) == ["pod-1", "pod-2"]


@pytest.mark.skipif(not Path("/proc/self/net/tcp").exists(), reason="needs Linux /proc")
def test_scanner_runs_on_the_real_proc() -> None:
    result = SocketScanner(Path("/proc")).scan(NOW)
    assert result.processes >= 1
    assert result.namespaces >= 1
    assert result.parse_errors == 0


def test_scanner_skips_a_table_whose_family_has_no_sockets(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    (tmp_path / "ns").write_text("")
    # Garbage tables: reading either would count parse errors.
    fake_process(proc, 7, tmp_path / "ns", "   0: junk\n", "   0: junk\n")
    net = proc / "7" / "net"
    (net / "sockstat").write_text("sockets: used 3\nTCP: inuse 0 orphan 0 tw 2 alloc 1 mem 0\n")
    (net / "sockstat6").write_text("TCP6: inuse 0\nUDP6: inuse 1\n")
    result = SocketScanner(proc).scan(NOW)
    assert (result.namespaces, result.parse_errors, result.observations) == (1, 0, [])

    # A count other than 0, or a file that does not say, means the table is read.
    (net / "sockstat").write_text("TCP: inuse 2 orphan 0 tw 0 alloc 2 mem 0\n")
    (net / "sockstat6").write_text("something else\n")
    assert SocketScanner(proc).scan(NOW).parse_errors == 2
