"""Istio sidecar scrape processing: the watcher's path (prefilter to the ``istio_requests_total``
lines, prometheus_client's parser on those that changed since the pod's previous scrape, deltas,
aggregation) against the naive one (the whole scrape through the same parser, then filtered, then
the same deltas and aggregation), on the same texts.

The mesh: 200 sidecar pods, each scrape being the real Istio 1.5 sidecar scrape of
tests/data/istio (~500 lines of ``envoy_*`` noise and 7 ``istio_requests_total`` series to
hosts outside the mesh) with 50 ``istio_requests_total`` series of in-mesh traffic spliced in
after the fixture's own (Istio's 25 standard labels plus ``request_path`` and
``request_method``; paths with ids, codes 200/201/404/500, half source- and half
destination-reported). A round is four scrape cycles of the 200 pods by a fresh watcher state:
the first (baselines: every line parsed, nothing reported), then three in which a tenth of the
series grew (steady state: what a running watcher does every scrape interval). Both paths must
leave the same pending requests. The first cycle's times are printed too: they are also about
what a cycle costs when every series grows.

Last line: ``istio_scrape: <ratio>x naive (<N> pod scrapes/s, <M>k series/s)``: steady state, N
and M being the watcher's rates.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from agent.watchers.istio import METRIC, RequestKey, RequestLines, RequestSeen, Scrape, Series, select_lines
from agent.watchers.istiopods import SidecarPod
from agent.watchers.istiorequests import IstioWatcherMetrics, RequestCollector, ScrapeProcessor

ROOT = Path(__file__).resolve().parents[1]
REAL = (ROOT / "tests" / "data" / "istio" / "istio-1.5-sidecar-stats.txt").read_text()
SPLICE_AT = REAL.index("\n", REAL.rindex("\nistio_requests_total{")) + 1
PODS, SERIES, CYCLES, GROWING = 200, 50, 4, 0.1
STARTED = 1_767_225_600.0
WORKLOADS = [f"svc-{i:02d}" for i in range(20)]
PATHS = ["/api/orders/{}", "/api/users/{}/cart", "/healthz", "/static/app.v2.js", "/api/items?page={}"]


def labels_of(rng: random.Random, pod: int, index: int) -> str:
    own, peer = WORKLOADS[pod % len(WORKLOADS)], WORKLOADS[(pod + index + 1) % len(WORKLOADS)]
    reporter = "destination" if index % 2 else "source"
    src, dst = (peer, own) if reporter == "destination" else (own, peer)
    path = PATHS[index % len(PATHS)].format(rng.randrange(1, 10**6))
    fields = {
        "response_code": rng.choice(["200", "200", "200", "201", "404", "500"]),
        "reporter": reporter,
        "source_workload": src,
        "source_canonical_service": src,
        "source_canonical_revision": "v1",
        "source_workload_namespace": "shop",
        "source_principal": f"spiffe://cluster.local/ns/shop/sa/{src}",
        "source_app": src,
        "source_version": "v1",
        "source_cluster": "Kubernetes",
        "destination_workload": dst,
        "destination_workload_namespace": "shop",
        "destination_principal": f"spiffe://cluster.local/ns/shop/sa/{dst}",
        "destination_app": dst,
        "destination_version": "v1",
        "destination_service": f"{dst}.shop.svc.cluster.local",
        "destination_canonical_service": dst,
        "destination_canonical_revision": "v1",
        "destination_service_name": dst,
        "destination_service_namespace": "shop",
        "destination_cluster": "Kubernetes",
        "request_protocol": "http",
        "response_flags": "-",
        "grpc_response_status": "",
        "connection_security_policy": "mutual_tls",
        "request_path": path,
        "request_method": rng.choice(["GET", "GET", "POST", "PUT", "DELETE"]),
    }
    return ",".join(f'{k}="{v}"' for k, v in fields.items())


def mesh() -> tuple[list[SidecarPod], list[list[str]]]:
    """The pods, and each cycle's scrape text of each pod (counters growing cycle to cycle)."""
    rng = random.Random(7)
    pods = [
        SidecarPod("shop", f"{WORKLOADS[i % len(WORKLOADS)]}-{i}", f"uid-{i}", f"10.0.{i // 250}.{i % 250}",
                   WORKLOADS[i % len(WORKLOADS)], STARTED - 3600)
        for i in range(PODS)
    ]  # fmt: skip
    series = []
    for p in range(PODS):
        labels: dict[str, None] = {}  # distinct label sets, as a sidecar prints them
        while len(labels) < SERIES:
            labels[labels_of(rng, p, len(labels))] = None
        series.append(list(labels))
    values = [[rng.randrange(1, 10_000) for _ in range(SERIES)] for _ in range(PODS)]
    cycles = []
    for _ in range(CYCLES):
        texts = []
        for p in range(PODS):
            lines = "".join(
                f"{METRIC}{{{labels}}} {v}\n" for labels, v in zip(series[p], values[p], strict=True)
            )
            texts.append(REAL[:SPLICE_AT] + lines + REAL[SPLICE_AT:])
            values[p] = [v + (rng.randrange(1, 20) if rng.random() < GROWING else 0) for v in values[p]]
        cycles.append(texts)
    return pods, cycles


def naive_scrape(text: str) -> Scrape:
    """The whole text through the parser, then the requests series picked out."""
    series = [
        Series(hash(tuple(sorted(s.labels.items()))), s.labels, float(s.value))
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == METRIC
    ]
    return Scrape(tuple(series))


def run(
    pods: list[SidecarPod], cycles: list[list[str]], scrape: Callable[[str], RequestLines | Scrape]
) -> tuple[float, float, dict[RequestKey, RequestSeen]]:
    """One round: a fresh watcher state through every cycle. Seconds of the first cycle (every
    line parsed, nothing reported: baselines), seconds of the others (steady state), and what is
    pending at the end."""
    metrics = IstioWatcherMetrics()
    collector = RequestCollector(1_000_000, metrics)
    processor = ScrapeProcessor(collector, metrics, STARTED)
    seconds = []
    for n, texts in enumerate(cycles):
        start = time.perf_counter()
        scrapes = [(pod, scrape(text), STARTED + 10 * (n + 1)) for pod, text in zip(pods, texts, strict=True)]
        processor.process(pods, scrapes, listed=True)
        seconds.append(time.perf_counter() - start)
    return seconds[0], sum(seconds[1:]), dict(collector.drain().entries)


def ours(text: str) -> RequestLines:
    return select_lines(text, 5_000)


def main() -> None:
    pods, cycles = mesh()
    size = sum(map(len, cycles[0])) / PODS
    print(
        f"mesh: {PODS} pods x {SERIES} series (+7 fixture series, {REAL.count(chr(10))} noise lines,"
        f" {size / 1024:.0f} KiB a scrape); a round: 1 baseline cycle + {CYCLES - 1} cycles with"
        f" {GROWING:.0%} of series growing"
    )
    # Rounds interleaved, best of 3: a change in machine load (shared CI machines) hits both alike.
    first = {"ours": float("inf"), "naive": float("inf")}
    steady = dict(first)
    results = {}
    for _ in range(3):
        for name, scrape in (("ours", ours), ("naive", naive_scrape)):
            cold, warm, results[name] = run(pods, cycles, scrape)
            first[name], steady[name] = min(first[name], cold), min(steady[name], warm)
    assert results["ours"] == results["naive"], "the two paths disagree"
    print(f"pending after a round: {len(results['ours'])} requests (the same on both paths)")
    rate = {name: PODS * (CYCLES - 1) / seconds for name, seconds in steady.items()}
    print(
        f"first cycle (every line parsed): ours {1000 * first['ours']:.0f} ms, naive"
        f" {1000 * first['naive']:.0f} ms: {first['naive'] / first['ours']:.1f}x"
    )
    print(
        f"steady cycle of {PODS} pods: ours {1000 * PODS / rate['ours']:.0f} ms,"
        f" naive {1000 * PODS / rate['naive']:.0f} ms ({rate['naive']:.0f} pod scrapes/s)"
    )
    speed = f"{rate['ours']:.0f} pod scrapes/s, {rate['ours'] * SERIES / 1000:.0f}k series/s"
    print(f"istio_scrape: {rate['ours'] / rate['naive']:.1f}x naive ({speed})")


if __name__ == "__main__":
    main()
