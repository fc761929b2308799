"""agent.watchers.istiorequests and istiopods: pods from the API → sidecars; a cycle's scrapes →
pending requests, each counted once, aggregated per templated path, with the metrics that say so.

Pods are JSON objects as the Kubernetes API lists them; scrapes are Prometheus text, handed over
as the watcher does (their request lines, parsed as they change).
"""

from __future__ import annotations

from typing import Any

import pytest

from agent.watchers.istio import RequestKey, RequestLines, RequestSeen, parse_scrape, select_lines
from agent.watchers.istiopods import SidecarPod, istio_workload, sidecar_pods
from agent.watchers.istiorequests import IstioWatcherMetrics, RequestCollector, ScrapeProcessor

STARTED = 1_767_225_600.0  # the watcher's start: 2026-01-01T00:00:00Z
BEFORE = "2025-12-31T23:00:00Z"
AFTER = "2026-01-01T00:00:30Z"


# --------------------------------------------------------------------------- pods


def pod(
    name: str,
    ip: str | None = "10.0.0.1",
    *,
    phase: str = "Running",
    generate: str = "",
    owner: tuple[str, str] | None = None,
    labels: dict[str, str] | None = None,
    status: dict[str, Any] | None = None,
    host_network: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": "shop",
        "uid": f"uid-{name}",
        "labels": {"security.istio.io/tlsMode": "istio", **(labels or {})},
    }
    if generate:
        meta["generateName"] = generate
    if owner:
        meta["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "uid": "x", "controller": True}]
    return {
        "metadata": meta,
        "spec": {"hostNetwork": host_network, "containers": [{"name": "app"}, {"name": "istio-proxy"}]},
        "status": {"phase": phase, "podIP": ip, "startTime": BEFORE, **(status or {})},
    }


@pytest.mark.parametrize(
    ("obj", "workload"),
    [
        (pod("cart-7f8d9c-x2k4q", generate="cart-7f8d9c-", owner=("ReplicaSet", "cart-7f8d9c"),
             labels={"pod-template-hash": "7f8d9c"}), "cart"),
        (pod("cart-7f8d9c-x2k4q", generate="cart-7f8d9c-", owner=("ReplicaSet", "cart-7f8d9c")),
             "cart-7f8d9c"),
        (pod("redis-0", generate="redis-", owner=("StatefulSet", "redis")), "redis"),
        (pod("backup-28901234-abcde", generate="backup-28901234-", owner=("Job", "backup-28901234"),
             labels={"job-name": "backup-28901234"}), "backup"),
        (pod("once-xyz", generate="once-", owner=("Job", "once"), labels={"job-name": "once"}), "once"),
        (pod("standalone"), "standalone"),
        (pod("named-abc", generate="named-", owner=("ReplicaSet", "named-1"),
             labels={"service.istio.io/workload-name": "override"}), "override"),
        (pod("orphan-abc", generate="orphan-"), "orphan-abc"),
    ],
)  # fmt: skip
def test_workload_names_are_the_ones_istio_reports(obj: dict[str, Any], workload: str) -> None:
    assert istio_workload(obj["metadata"]) == workload


def test_only_running_pods_with_an_ip_and_their_own_network_are_scraped() -> None:
    items = [
        pod("a"),
        pod("pending", phase="Pending"),
        pod("no-ip", ip=None),
        pod("host", host_network=True),
    ]
    assert [p.name for p in sidecar_pods(items)] == ["a"]


def test_the_sidecar_start_is_the_proxy_containers_else_the_pods() -> None:
    running = {"state": {"running": {"startedAt": AFTER}}}
    regular = pod("a", status={"containerStatuses": [{"name": "app"}, {"name": "istio-proxy", **running}]})
    native = pod("b", status={"initContainerStatuses": [{"name": "istio-proxy", **running}]})
    waiting = pod("c", status={"containerStatuses": [{"name": "istio-proxy", "state": {"waiting": {}}}]})
    unknown = pod("d", status={"startTime": "not a time"})
    started = {p.name: p.started_at for p in sidecar_pods([regular, native, waiting, unknown])}
    assert started == {"a": STARTED + 30, "b": STARTED + 30, "c": STARTED - 3600, "d": None}


# --------------------------------------------------------------------------- the processor


def series(value: float, reporter: str = "destination", **labels: str) -> str:
    merged = {
        "reporter": reporter,
        "source_workload": "frontend",
        "source_workload_namespace": "shop",
        "source_principal": "spiffe://cluster.local/ns/shop/sa/frontend",
        "destination_workload": "cart",
        "destination_workload_namespace": "shop",
        "destination_service_name": "cart",
        "response_code": "200",
        "request_path": "/api/orders/1",
        "request_method": "GET",
        **labels,
    }
    return "istio_requests_total{" + ",".join(f'{k}="{v}"' for k, v in merged.items()) + f"}} {value}"


def scrape(*lines: str, cap: int | None = None) -> RequestLines:
    """A scrape as the watcher hands it over: its request lines, not parsed yet."""
    return select_lines("\n".join(lines) + "\n", cap)


FRONTEND = SidecarPod("shop", "frontend-1", "uid-f", "10.0.0.1", "frontend", STARTED - 60)
CART = SidecarPod("shop", "cart-1", "uid-c", "10.0.0.2", "cart", STARTED - 60)
ORDERS = RequestKey("frontend", "shop", "cart", "cart", "shop", "/api/orders/{id}", "GET")


def setup(templates: bool = True) -> tuple[ScrapeProcessor, RequestCollector, IstioWatcherMetrics]:
    metrics = IstioWatcherMetrics()
    collector = RequestCollector(1000, metrics)
    return ScrapeProcessor(collector, metrics, STARTED, templates=templates), collector, metrics


def test_a_request_counted_by_both_sidecars_is_reported_once_from_the_destination() -> None:
    processor, collector, metrics = setup()
    pods = [FRONTEND, CART]
    processor.process(
        pods,
        [(FRONTEND, scrape(series(5, "source")), STARTED + 1), (CART, scrape(series(5)), STARTED + 1)],
        listed=True,
    )
    assert len(collector) == 0  # baselines
    processor.process(
        pods,
        [(FRONTEND, scrape(series(8, "source")), STARTED + 10), (CART, scrape(series(8)), STARTED + 11)],
        listed=True,
    )
    entries = dict(collector.drain().entries)
    principal = frozenset({"spiffe://cluster.local/ns/shop/sa/frontend"})
    assert entries == {ORDERS: RequestSeen(STARTED + 11, principal, frozenset({200}))}
    snapshot = metrics.snapshot()
    assert snapshot["network_mapper_istio_watcher_skipped_duplicate_total"] == 1
    assert snapshot["network_mapper_istio_watcher_requests_counted_total"] == 3
    assert snapshot["network_mapper_istio_watcher_increases_total"] == 2


def test_a_source_report_to_a_destination_without_a_scraped_sidecar_is_kept() -> None:
    processor, collector, _ = setup()
    external = series(2, "source", destination_workload="legacy", destination_workload_namespace="old")
    processor.process([FRONTEND], [(FRONTEND, scrape(external), STARTED + 1)], listed=True)
    processor.process(
        [FRONTEND], [(FRONTEND, scrape(external.replace("} 2", "} 3")), STARTED + 2)], listed=True
    )
    (key,) = collector.drain().entries
    assert (key.destination_workload, key.destination_namespace) == ("legacy", "old")


def test_a_destination_that_reports_for_itself_is_meshed_whatever_its_pod_is_named() -> None:
    """Istio's name for the workload may differ from ours: its own series say it is meshed."""
    processor, collector, metrics = setup()
    odd = SidecarPod("shop", "weird-pod", "uid-w", "10.0.0.3", "weird-pod", STARTED - 60)
    own = series(1, destination_workload="cart-v2")
    client = series(1, "source", destination_workload="cart-v2")
    processor.process(
        [FRONTEND, odd],
        [(FRONTEND, scrape(client), STARTED + 1), (odd, scrape(own), STARTED + 1)],
        listed=True,
    )
    grown = [
        (FRONTEND, scrape(client.replace("} 1", "} 2")), STARTED + 2),
        (odd, scrape(own.replace("} 1", "} 2")), STARTED + 2),
    ]
    processor.process([FRONTEND, odd], grown, listed=True)
    assert len(collector.drain().entries) == 1
    assert metrics.skipped_duplicate.value == 1


def test_ids_in_paths_aggregate_into_one_templated_entry_with_every_code_and_the_newest_time() -> None:
    processor, collector, _ = setup()
    first = [series(1, request_path="/api/orders/1"), series(1, request_path="/api/orders/2?x=1")]
    processor.process([CART], [(CART, scrape(*first), STARTED + 1)], listed=True)
    grown = [*first, series(1, request_path="/api/orders/3", response_code="503")]
    processor.process([CART], [(CART, scrape(*grown), STARTED + 5)], listed=True)
    grown[0] = grown[0].replace("} 1", "} 4")
    processor.process([CART], [(CART, scrape(*grown), STARTED + 9)], listed=True)
    entries = collector.drain().entries
    assert set(entries) == {ORDERS}
    assert entries[ORDERS].codes == {200, 503}
    assert entries[ORDERS].last_seen == STARTED + 9


def test_templating_off_keeps_each_path() -> None:
    processor, collector, _ = setup(templates=False)
    new_pod = SidecarPod("shop", "cart-2", "uid-c2", "10.0.0.4", "cart", STARTED + 1)
    lines = [series(1, request_path="/api/orders/1?x=1"), series(1, request_path="/api/orders/2")]
    processor.process([new_pod], [(new_pod, scrape(*lines), STARTED + 2)], listed=True)
    assert {k.path for k in collector.drain().entries} == {"/api/orders/1", "/api/orders/2"}


def test_skips_cap_and_bad_values_are_counted() -> None:
    processor, collector, metrics = setup()
    new_pod = SidecarPod("shop", "cart-2", "uid-c2", "10.0.0.4", "cart", STARTED + 1)
    lines = [
        series(1, source_workload="unknown"),
        series(1, request_method="HEAD"),
        series(1, request_path="unknown"),
        series(1, request_path="/kept"),
        series(-1, request_path="/negative"),
    ]
    processor.process([new_pod], [(new_pod, scrape(*lines, cap=4), STARTED + 2)], listed=True)
    snapshot = metrics.snapshot()
    skipped = [
        snapshot[f"network_mapper_istio_watcher_skipped_{why}_total"]
        for why in ("unknown", "method", "no_path")
    ]
    assert snapshot["network_mapper_istio_watcher_series_over_cap_total"] == 1
    assert sum(skipped) + len(collector) + snapshot["network_mapper_istio_watcher_bad_values_total"] == 4
    assert snapshot["network_mapper_istio_watcher_sidecars"] == 1
    assert snapshot["network_mapper_istio_watcher_requests_pending"] == len(collector)


def test_pods_gone_from_a_fresh_list_are_forgotten_but_not_on_a_failed_list() -> None:
    processor, _, metrics = setup()
    processor.process(
        [FRONTEND, CART],
        [(FRONTEND, scrape(series(1)), STARTED + 1), (CART, scrape(series(1)), STARTED + 1)],
        listed=True,
    )
    processor.process([FRONTEND, CART], [], listed=False)  # the list failed: the old one is used
    assert processor.tracker.knows(CART.uid)
    processor.process([FRONTEND], [], listed=True)
    assert not processor.tracker.knows(CART.uid) and processor.tracker.knows(FRONTEND.uid)
    assert metrics.series_tracked.value == 1


def test_a_scrape_that_is_not_prometheus_text_is_counted_and_the_pod_keeps_its_counters() -> None:
    processor, collector, metrics = setup()
    processor.process([CART], [(CART, scrape(series(10)), STARTED + 1)], listed=True)
    broken = scrape(series(12).replace("} 12", "} twelve"))
    assert processor.process([CART], [(CART, broken, STARTED + 2)], listed=True) == 1
    assert metrics.unparsable_scrapes.value == 1
    processor.process([CART], [(CART, scrape(series(15)), STARTED + 3)], listed=True)
    assert metrics.requests_counted.value == 5
    assert [seen.last_seen for seen in collector.drain().entries.values()] == [STARTED + 3]


def test_parsed_scrapes_are_taken_too() -> None:
    """The bench's naive path hands over parsed series: the same increases come out."""
    processor, collector, _ = setup()
    processor.process([CART], [(CART, parse_scrape(series(1)), STARTED + 1)], listed=True)
    processor.process([CART], [(CART, parse_scrape(series(3)), STARTED + 2)], listed=True)
    assert list(collector.drain().entries) == [ORDERS]


def test_when_the_destinations_scrape_fails_its_clients_count_is_taken_not_lost() -> None:
    processor, collector, metrics = setup()
    pods = [FRONTEND, CART]
    baseline = [(FRONTEND, scrape(series(5, "source")), STARTED + 1), (CART, scrape(series(5)), STARTED + 1)]
    processor.process(pods, baseline, listed=True)
    # cart's sidecar did not answer this cycle: only the client's count is there
    processor.process(pods, [(FRONTEND, scrape(series(7, "source")), STARTED + 2)], listed=True)
    assert [seen.last_seen for seen in collector.drain().entries.values()] == [STARTED + 2]
    assert metrics.skipped_duplicate.value == 0
    # cart answers again: what it counted meanwhile is reported (a repeat, not a loss)
    back = [(FRONTEND, scrape(series(7, "source")), STARTED + 3), (CART, scrape(series(7)), STARTED + 3)]
    processor.process(pods, back, listed=True)
    assert [seen.last_seen for seen in collector.drain().entries.values()] == [STARTED + 3]
