"""The reporter's parts: aggregation and the bound (agent.sniffer.pairs), conversion to mutations
(agent.sniffer.reports), and one report cycle with merge-back (agent.sniffer.reporter) against the
real mapper API app in process."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from agent.mapperclient import HttpMapperClient
from agent.model import DnsAnswer, Method, SocketConnection, TcpConnection
from agent.reporter import Reporter
from agent.settings import parse_address
from agent.sniffer.metrics import SnifferMetrics
from agent.sniffer.pairs import MAX_CNAMES, MAX_IPS_PER_NAME, Batch, PairCollector, PairKey, Seen
from agent.sniffer.reports import mutations_for
from agent.wire import format_time
from tests.support.mapper_app import InProcessMapper

T0 = datetime(2026, 11, 28, 2, 15, 6, 918878, tzinfo=UTC).timestamp()


def tcp(client: str, server: str, port: int, at: float) -> TcpConnection:
    return TcpConnection(client, 40000, server, port, at)


def dns(
    client: str, name: str, ips: tuple[str, ...], at: float, ttl: int = 30, cnames: tuple[str, ...] = ()
) -> DnsAnswer:
    return DnsAnswer(client, 53000, "10.96.0.10", name, ips, at, cnames, ttl)


def sock(client: str, server: str, port: int, at: float, host: str = "") -> SocketConnection:
    return SocketConnection(client, 50000, server, port, at, host)


# --------------------------------------------------------------------------- aggregation


def test_aggregation_keeps_the_latest_time_whatever_the_arrival_order() -> None:
    collector = PairCollector(max_pairs=10)
    for at in (T0 + 10, T0 + 30, T0 + 20):
        assert collector.add(tcp("10.0.0.1", "10.0.0.2", 80, at))
    collector.add(tcp("10.0.0.1", "10.0.0.2", 443, T0))  # another port is another pair
    batch = collector.drain()
    assert dict(batch.entries) == {
        PairKey(Method.TCP, "10.0.0.1", "10.0.0.2", 80): Seen(T0 + 30, client_port=40000),
        PairKey(Method.TCP, "10.0.0.1", "10.0.0.2", 443): Seen(T0, client_port=40000),
    }
    assert len(collector) == 0
    assert len(collector.drain()) == 0


def test_dns_keeps_the_latest_ttl_and_the_union_of_ips_newest_first() -> None:
    collector = PairCollector(max_pairs=10)
    collector.add(dns("10.0.0.1", "api.example.com", ("1.1.1.1", "2.2.2.2"), T0 + 1, ttl=60))
    collector.add(dns("10.0.0.1", "api.example.com", ("3.3.3.3", "1.1.1.1"), T0 + 2, ttl=20))
    collector.add(dns("10.0.0.1", "api.example.com", ("4.4.4.4",), T0, ttl=99))  # older: IP kept, TTL not
    (seen,) = collector.drain().entries.values()
    assert seen == Seen(
        T0 + 2, ("3.3.3.3", "1.1.1.1", "2.2.2.2", "4.4.4.4"), 20, client_port=53000, server_ip="10.96.0.10"
    )


def test_dns_keeps_the_newest_sighting_of_port_server_and_cname_chain() -> None:
    collector = PairCollector(max_pairs=10)
    chain = ("shop.example.com.cdn.net", "edge-7.cdn.net")
    collector.add(
        DnsAnswer("10.0.0.1", 41000, "10.96.0.10", "shop.example.com", ("1.1.1.1",), T0 + 5, chain, 60)
    )
    collector.add(DnsAnswer("10.0.0.1", 42000, "10.96.0.11", "shop.example.com", ("2.2.2.2",), T0, (), 10))
    (seen,) = collector.drain().entries.values()
    assert seen == Seen(T0 + 5, ("1.1.1.1", "2.2.2.2"), 60, "", 41000, "10.96.0.10", chain)


def test_dns_cname_chain_is_capped() -> None:
    collector = PairCollector(max_pairs=10)
    chain = tuple(f"hop{i}.example.com" for i in range(3 * MAX_CNAMES))
    collector.add(dns("10.0.0.1", "deep.example.com", ("1.1.1.1",), T0, cnames=chain))
    (seen,) = collector.drain().entries.values()
    assert seen.cnames == chain[:MAX_CNAMES]


def test_dns_ip_union_is_capped() -> None:
    collector = PairCollector(max_pairs=10)
    for i in range(3 * MAX_IPS_PER_NAME):
        collector.add(dns("10.0.0.1", "rr.example.com", (f"1.1.1.{i}",), T0 + i))
    (seen,) = collector.drain().entries.values()
    assert len(seen.ips) == MAX_IPS_PER_NAME
    assert seen.ips[0] == f"1.1.1.{3 * MAX_IPS_PER_NAME - 1}"


def test_socket_scan_keeps_a_known_hostname() -> None:
    collector = PairCollector(max_pairs=10)
    collector.add(sock("10.0.0.1", "10.0.0.2", 6379, T0, host="cart-7d9f"))
    collector.add(sock("10.0.0.1", "10.0.0.2", 6379, T0 + 5))  # client not local this time
    (seen,) = collector.drain().entries.values()
    assert seen == Seen(T0 + 5, hostname="cart-7d9f", client_port=50000)


def test_other_observations_are_refused() -> None:
    with pytest.raises(TypeError):
        PairCollector(max_pairs=1).add("10.0.0.1")  # type: ignore[arg-type]


@pytest.mark.parametrize("at", [-1.0, 253402300800.0, float("nan")])
def test_times_the_wire_cannot_write_are_refused_and_counted_apart(at: float) -> None:
    metrics = SnifferMetrics()
    collector = PairCollector(max_pairs=10, metrics=metrics)
    assert not collector.add(tcp("10.0.0.1", "10.0.0.2", 80, at))
    assert collector.add(tcp("10.0.0.1", "10.0.0.2", 80, T0))
    assert (collector.bad_times, collector.dropped, metrics.pairs_dropped.value) == (1, 0, 0)
    batch = collector.drain()
    assert (len(batch), batch.bad_times, batch.dropped) == (1, 1, 0)
    assert collector.drain().bad_times == 0


# --------------------------------------------------------------------------- the bound


def test_bound_drops_exactly_the_new_pairs_beyond_it_and_counts_them() -> None:
    metrics = SnifferMetrics()
    bound, flood = 100, 5_000
    collector = PairCollector(max_pairs=bound, metrics=metrics)
    results = [collector.add(tcp(f"10.1.{i // 250}.{i % 250}", "10.0.0.2", 80, T0)) for i in range(flood)]
    assert results.count(False) == flood - bound
    assert collector.dropped == flood - bound
    assert len(collector) == bound
    assert metrics.pairs_dropped.value == flood - bound
    assert metrics.pairs_pending.value == bound
    # Updates to pairs already pending always succeed, even at the bound.
    assert collector.add(tcp("10.1.0.0", "10.0.0.2", 80, T0 + 9))
    assert collector.dropped == flood - bound
    batch = collector.drain()
    assert batch.dropped == flood - bound  # reported once per drain ...
    assert batch.entries[PairKey(Method.TCP, "10.1.0.0", "10.0.0.2", 80)].last_seen == T0 + 9
    assert collector.drain().dropped == 0  # ... then reset; the total stays
    assert collector.dropped == flood - bound
    assert metrics.pairs_pending.value == 0


def test_bound_is_exact_under_concurrent_adders() -> None:
    bound, threads, per_thread = 300, 4, 2_000
    collector = PairCollector(max_pairs=bound)
    start = threading.Barrier(threads)

    def flood(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            collector.add(tcp(f"10.{t}.{i // 250}.{i % 250}", "10.0.0.2", 80, T0))

    workers = [threading.Thread(target=flood, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(collector) == bound
    assert collector.dropped == threads * per_thread - bound


# --------------------------------------------------------------------------- merge-back


def test_merge_back_newest_time_wins_and_overflow_is_dropped() -> None:
    collector = PairCollector(max_pairs=3)
    collector.add(tcp("10.0.0.1", "10.0.0.9", 80, T0))
    collector.add(tcp("10.0.0.1", "10.0.0.9", 81, T0))
    failed = collector.drain()
    # While the batch was in flight: a newer sighting of port 80, and two new pairs.
    collector.add(tcp("10.0.0.1", "10.0.0.9", 80, T0 + 50))
    collector.add(tcp("10.0.0.3", "10.0.0.9", 80, T0 + 50))
    assert collector.merge(failed.entries) == 0
    merged = collector.drain().entries
    assert merged[PairKey(Method.TCP, "10.0.0.1", "10.0.0.9", 80)].last_seen == T0 + 50
    assert merged[PairKey(Method.TCP, "10.0.0.1", "10.0.0.9", 81)].last_seen == T0
    assert len(merged) == 3
    # Older pending data merged under newer: still newest wins.
    collector.merge(merged)
    collector.merge({PairKey(Method.TCP, "10.0.0.1", "10.0.0.9", 81): Seen(T0 - 100, client_port=1)})
    assert collector.drain().entries[PairKey(Method.TCP, "10.0.0.1", "10.0.0.9", 81)] == Seen(
        T0, client_port=40000
    )
    # A merge beyond the bound: the overflow is counted as dropped.
    collector.merge(merged)
    extra = {PairKey(Method.TCP, f"10.0.1.{i}", "10.0.0.9", 80): Seen(T0) for i in range(5)}
    assert collector.merge(extra) == 5
    assert collector.drain().dropped == 5


# --------------------------------------------------------------------------- conversion


def _by_field(batch: Batch) -> dict[str, dict[str, Any]]:
    return {m.field: m.variables for m in mutations_for(batch)}


def test_dns_becomes_report_capture_results_one_destination_per_ip() -> None:
    collector = PairCollector(max_pairs=10)
    collector.add(dns("10.244.0.5", "redis-cart.shop.svc.cluster.local", ("10.96.0.20",), T0, ttl=5))
    collector.add(
        dns("10.244.0.5", "api.example.com", ("1.1.1.1", "2001:db8::1"), T0, ttl=300, cnames=("api.cdn.net",))
    )
    collector.add(DnsAnswer("10.244.0.6", 0, "", "api.example.com", ("1.1.1.1",), T0 + 1, (), 299))
    (mutation,) = mutations_for(collector.drain())
    assert mutation.field == "reportCaptureResults"
    assert mutation.query == (
        "mutation reportCaptureResults($results: CaptureResults!) { reportCaptureResults(results: $results) }"
    )
    t0, t1 = "2026-11-28T02:15:06.918878Z", "2026-11-28T02:15:07.918878Z"
    sniffed = {"srcPort": 53000, "dnsServerIP": "10.96.0.10"}  # the extension fields, when known
    assert mutation.variables == {
        "results": {
            "results": [
                {
                    "srcIp": "10.244.0.5",
                    "srcHostname": "",
                    "destinations": [
                        {
                            "destination": "api.example.com",
                            "destinationIP": "1.1.1.1",
                            "TTL": 300,
                            "lastSeen": t0,
                            **sniffed,
                            "cnames": ["api.cdn.net"],
                        },
                        {
                            "destination": "api.example.com",
                            "destinationIP": "2001:db8::1",
                            "TTL": 300,
                            "lastSeen": t0,
                            **sniffed,
                            "cnames": ["api.cdn.net"],
                        },
                        {
                            "destination": "redis-cart.shop.svc.cluster.local",
                            "destinationIP": "10.96.0.20",
                            "TTL": 5,
                            "lastSeen": t0,
                            **sniffed,
                        },
                    ],
                },
                {
                    "srcIp": "10.244.0.6",
                    "srcHostname": "",
                    "destinations": [
                        {  # nothing known beyond Otterize's fields: nothing more sent
                            "destination": "api.example.com",
                            "destinationIP": "1.1.1.1",
                            "TTL": 299,
                            "lastSeen": t1,
                        }
                    ],
                },
            ]
        }
    }


def test_a_whole_second_is_written_without_a_fraction() -> None:
    collector = PairCollector(max_pairs=10)
    collector.add(tcp("10.244.0.5", "10.244.0.9", 8080, 1764296106.0))
    (mutation,) = mutations_for(collector.drain())
    (source,) = mutation.variables["results"]["results"]
    assert source["destinations"][0]["lastSeen"] == "2025-11-28T02:15:06Z"


def test_tcp_becomes_report_tcp_capture_results() -> None:
    collector = PairCollector(max_pairs=10)
    collector.add(tcp("10.244.0.5", "10.244.0.9", 8080, T0))
    collector.add(tcp("10.244.0.5", "10.96.0.20", 6379, T0 + 1))
    (mutation,) = mutations_for(collector.drain())
    assert mutation.field == "reportTCPCaptureResults"
    assert "($results: CaptureTCPResults!)" in mutation.query
    assert mutation.variables == {
        "results": {
            "results": [
                {
                    "srcIp": "10.244.0.5",
                    "srcHostname": "",
                    "destinations": [
                        {
                            "destination": "10.244.0.9",
                            "destinationPort": 8080,
                            "srcPort": 40000,
                            "lastSeen": format_time(T0),
                        },
                        {
                            "destination": "10.96.0.20",
                            "destinationPort": 6379,
                            "srcPort": 40000,
                            "lastSeen": format_time(T0 + 1),
                        },
                    ],
                }
            ]
        }
    }


def test_socket_scan_becomes_report_socket_scan_results_with_the_client_hostname() -> None:
    collector = PairCollector(max_pairs=10)
    collector.add(sock("10.244.0.5", "10.244.0.9", 7070, T0, host="cartservice-5d8f"))
    collector.add(sock("10.244.0.5", "10.244.0.10", 3550, T0 + 2))
    collector.add(sock("10.244.0.7", "10.244.0.9", 7070, T0, host="checkout-77c4"))
    (mutation,) = mutations_for(collector.drain())
    assert mutation.field == "reportSocketScanResults"
    assert "($results: SocketScanResults!)" in mutation.query
    results = mutation.variables["results"]["results"]
    assert [(r["srcIp"], r["srcHostname"]) for r in results] == [
        ("10.244.0.5", "cartservice-5d8f"),
        ("10.244.0.7", "checkout-77c4"),
    ]
    assert results[0]["destinations"] == [
        {
            "destination": "10.244.0.10",
            "destinationPort": 3550,
            "srcPort": 50000,
            "lastSeen": format_time(T0 + 2),
        },
        {"destination": "10.244.0.9", "destinationPort": 7070, "srcPort": 50000, "lastSeen": format_time(T0)},
    ]


def test_a_mixed_batch_gives_one_mutation_per_kind_and_skips_empty_ones() -> None:
    collector = PairCollector(max_pairs=10)
    assert mutations_for(collector.drain()) == []
    collector.add(tcp("10.0.0.1", "10.0.0.2", 80, T0))
    collector.add(sock("10.0.0.1", "10.0.0.2", 80, T0))
    mutations = mutations_for(collector.drain())
    assert [m.field for m in mutations] == ["reportTCPCaptureResults", "reportSocketScanResults"]
    assert [m.field for m in mutations] == ["reportTCPCaptureResults", "reportSocketScanResults"]
    assert all(len(m.entries) == 1 for m in mutations)


# ------------------------------------------------------------- report_once, against the real mapper app

TOKEN = "unit-agent-token"


@pytest.fixture
def mapper() -> Iterator[InProcessMapper]:
    with InProcessMapper(TOKEN) as running:
        yield running


def _reporter(
    mapper: InProcessMapper, collector: PairCollector, metrics: SnifferMetrics, token: str = TOKEN
) -> Reporter[PairKey, Seen]:
    client = HttpMapperClient(mapper.url, token, timeout=5.0, transport=mapper.transport)
    return Reporter(
        collector,
        mutations_for,
        client,
        0.01,
        metrics=metrics,
        attempts=3,
        backoff_initial=0.001,
        backoff_max=0.01,
    )


def _resolved(mapper: InProcessMapper, count: int) -> list[Any]:
    assert mapper.app.state.ingest.drain(5)
    found = mapper.observations()
    assert len(found) == count, found
    return found


def test_a_report_cycle_delivers_what_was_sniffed(mapper: InProcessMapper) -> None:
    collector = PairCollector(max_pairs=10)
    reporter = _reporter(mapper, collector, SnifferMetrics())
    sniffed = [
        dns("10.0.0.1", "a.example.com", ("1.1.1.1", "1.1.1.2"), T0, cnames=("a.cdn.net", "b.cdn.net")),
        tcp("10.0.0.1", "10.0.0.2", 80, T0),
        sock("10.0.0.3", "10.0.0.2", 443, T0, host="web-1"),
    ]
    for observation in sniffed:
        collector.add(observation)
    assert reporter.report_once() is True
    assert set(_resolved(mapper, 3)) == set(sniffed)  # T0 is a whole microsecond: exact on the wire


def test_failed_batch_is_merged_back_and_sent_later(mapper: InProcessMapper) -> None:
    metrics = SnifferMetrics()
    collector = PairCollector(max_pairs=10, metrics=metrics)
    mapper.transport.fail_with(503, times=4)
    reporter = _reporter(mapper, collector, metrics)
    collector.add(dns("10.0.0.1", "a.example.com", ("1.1.1.1",), T0))
    collector.add(tcp("10.0.0.1", "10.0.0.2", 80, T0))
    assert reporter.report_once() is False
    assert mapper.transport.operations() == ["reportCaptureResults"] * 3  # retried, then TCP not even tried
    assert len(collector) == 2 and reporter.failed_cycles == 1
    newer = dataclasses.replace(tcp("10.0.0.1", "10.0.0.2", 80, T0 + 1), client_port=40001)
    collector.add(newer)  # a newer sighting meanwhile
    assert reporter.report_once() is True
    assert mapper.transport.operations()[3:] == [
        "reportCaptureResults",
        "reportCaptureResults",
        "reportTCPCaptureResults",
    ]
    assert [e.response.status for e in mapper.transport.exchanges() if e.response] == [503] * 4 + [200] * 2
    assert len(collector) == 0 and reporter.failed_cycles == 0
    assert metrics.report_failures.value == 4
    assert metrics.reports_sent.value == 2
    assert newer in _resolved(mapper, 2)


def test_rejection_is_not_retried_and_the_pairs_are_kept(mapper: InProcessMapper) -> None:
    metrics = SnifferMetrics()
    collector = PairCollector(max_pairs=10, metrics=metrics)
    reporter = _reporter(mapper, collector, metrics, token="not-the-token")
    collector.add(tcp("10.0.0.1", "10.0.0.2", 80, T0))
    assert reporter.report_once() is False
    assert mapper.transport.operations() == ["reportTCPCaptureResults"]
    assert mapper.transport.count(401) == 1
    assert len(collector) == 1
    assert _resolved(mapper, 0) == []


def test_parse_address() -> None:
    assert parse_address("0.0.0.0:9091") == ("0.0.0.0", 9091)
    assert parse_address("[::]:9091") == ("::", 9091)
    assert parse_address(":9091") == ("0.0.0.0", 9091)
    with pytest.raises(ValueError, match="host:port"):
        parse_address("localhost")
