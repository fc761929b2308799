"""The cloud at scale: 1,000 clusters of 200 edges each uploading into DynamoDB Local.

Each cluster is the real mapper side (:mod:`bench.cloudscale_clusters`): an
:class:`~agent.mapper.store.EdgeStore` (its own SQLite file) fed its edges on a simulated clock,
and the real :class:`~agent.mapper.uploader.Uploader`
(its ledger, liveness and heartbeats; bodies encoded by :mod:`agent.wire` through its
:class:`~agent.mapper.cloudclient.HttpCloudClient`), whose transport is the cloud's Lambda
handler (``cloud_functions.handlers.CloudApp``, API Gateway v2 events: ``tests.support.transports``)
over :class:`~cloud_functions.store.dynamodb.DynamoGraphStore` with a boto3 client of AWS's
DynamoDB Local (:mod:`tests.support.dynamolocal`: 127.0.0.1 only, stopped at the end). The client is built
as the Lambda builds it (``open_store``: botocore's default retries), plus a connection pool for
the threads. Tenants (1 to 4 clusters each), clusters and ingest tokens are created in the store as
the cloud keeps them. The handler answers one request at a time per process (its router keeps
the request in class attributes), as a Lambda container does, so ``--shards`` processes (16) are
the concurrent containers, each with the clusters of every 16th tenant and a bounded thread pool
(``--threads``, 4) running their upload cycles.

Timeline: at simulated time 0 every cluster's 200 edges (workload, Internet, Kafka, AWS; some with
HTTP paths) are recorded and uploaded; then every ``interval`` simulated seconds, for ``hours``
hours, every edge is seen again (``last_seen`` advancing) and, now and then, a cluster gains an
edge or an edge an HTTP path; then each cluster's uploader runs one cycle. Writes are counted with
botocore's event hooks on the client (:mod:`bench.dynamohooks`: items per successful write call,
edge items apart), per simulated hour. ``--throttle`` (default 5%) of write calls are answered
``ProvisionedThroughputExceededException`` (HTTP 400, DynamoDB's error body) from ``before-send``
instead of reaching DynamoDB Local: botocore's retries, then the store's
(:mod:`cloud_functions.store.dynamotable`), must absorb them; an
upload the handler still answers with an error is retried by the uploader (its own backoff,
shortened here with the simulated clock), and a cycle that fails is left for the next one, as the
mapper does. At the end every edge the mappers' ledgers hold as acknowledged is read back from the
store and compared: missing, or content different, or an older ``last_seen``, counts as lost.

Last line: ``cloud_scale: <C> clusters x <E> edges, <N> edge writes per cluster-hour in steady
state, <T> throttles retried, <L> lost``. Goals: 0 edge writes per cluster-hour after the first
hour apart from real changes (bench_cloud_ingest.py's hour-granular ``last_seen`` scheme), 0 lost.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import multiprocessing
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")

from botocore.config import Config  # noqa: E402
from procfigures import percentile  # noqa: E402 - bench/: run as `python bench/<file>.py`

from agent.mapper.store import EdgeStore  # noqa: E402
from agent.mapper.uploader import HttpCloudClient, Uploader, digest  # noqa: E402
from agent.mapperclient import Request, Response  # noqa: E402
from bench.cloudscale_clusters import Cluster, cluster_edges  # noqa: E402
from bench.dynamohooks import DynamoMeter  # noqa: E402
from cloud_functions.auth import hash_token, new_token  # noqa: E402
from cloud_functions.handlers import CloudApp, CloudSettings  # noqa: E402
from cloud_functions.store.base import TokenRecord  # noqa: E402
from cloud_functions.store.dynamodb import DynamoGraphStore  # noqa: E402
from cloud_functions.store.dynamotable import create_table  # noqa: E402
from tests.support.dynamolocal import client, dynamodb_local, listeners  # noqa: E402
from tests.support.transports import CloudTransport  # noqa: E402

TABLE = "network-mapper-scale"
HOUR = 3600.0
T0 = time.time() - 2 * 86400  # two days ago: the simulated hours end in the past (seenAt ≤ the cloud's now)


@dataclass
class Requests:
    """What the uploaders' requests met at one container's handler (thread-safe): the time each
    waited for the container (busy with another request), the time the handler took, and the
    answers that were not a 200."""

    latencies: list[float] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)
    errors: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    container: threading.Lock = field(default_factory=threading.Lock)

    def add(self, waited: float, seconds: float, status: int) -> None:
        with self.lock:
            self.waits.append(waited)
            self.latencies.append(seconds)
            if status != 200:
                self.errors[status] = self.errors.get(status, 0) + 1


class TimedTransport:
    """The handler's transport: one request in the container at a time (timed apart from the wait
    for it), each answer that is not a 200 noted."""

    def __init__(self, inner: CloudTransport, requests: Requests) -> None:
        self.inner, self.requests = inner, requests

    def __call__(self, request: Request) -> Response:
        queued = time.perf_counter()
        with self.requests.container:
            started = time.perf_counter()
            response = self.inner(request)
            done = time.perf_counter()
        self.requests.add(started - queued, done - started, response.status)
        return response


@dataclass
class Cloud:
    store: DynamoGraphStore
    app: CloudApp
    meter: DynamoMeter
    requests: Requests


def open_cloud(endpoint: str, threads: int) -> Cloud:
    """The store over a metered client as the Lambda builds it (a pool for the threads), and the
    handler: one Lambda container."""
    boto = client(endpoint, Config(max_pool_connections=threads * 8 + 8))
    meter = DynamoMeter(boto)
    store = DynamoGraphStore(boto, TABLE)
    app = CloudApp(store, CloudSettings(store=f"dynamodb:{TABLE}", dynamodb_endpoint=endpoint))
    return Cloud(store, app, meter, Requests())


Tenants = list[tuple[str, list[int]]]


def tenants_of(clusters: int) -> Tenants:
    """Tenants of 1, 2, 3, 4, 1, 2, ... clusters: ``(tenant id, cluster indexes)``."""
    found: Tenants = []
    start = 0
    while start < clusters:
        size = min(len(found) % 4 + 1, clusters - start)
        found.append((f"t{len(found):04d}", list(range(start, start + size))))
        start += size
    return found


def make_clusters(
    cloud: Cloud, directory: Path, tenants: Tenants, args: argparse.Namespace, pool: ThreadPoolExecutor
) -> list[Cluster]:
    """Tenants, clusters and ingest tokens in the store; each cluster's edge store and uploader."""

    def tenant(entry: tuple[str, list[int]]) -> list[Cluster]:
        tenant_id, indexes = entry
        cloud.store.create_tenant(tenant_id, f"tenant {tenant_id}", T0)
        return [one(tenant_id, index) for index in indexes]

    def one(tenant_id: str, index: int) -> Cluster:
        cluster_id = f"c{index:04d}"
        cloud.store.add_cluster(tenant_id, cluster_id, f"cluster {index}", T0)
        token = new_token()
        cloud.store.put_token(
            TokenRecord(hash_token(token), tenant_id, "ingest", f"k{index:04d}", T0, cluster_id=cluster_id)
        )
        transport = TimedTransport(CloudTransport(cloud.app), cloud.requests)
        cloud_client = HttpCloudClient("http://cloud.bench", token, 30.0, transport=transport)
        clock = [T0]
        uploader = Uploader(
            EdgeStore(directory / f"{cluster_id}.db"),
            cloud_client,
            interval=args.interval,
            clock=lambda: clock[0],
            retry_initial=0.05,
            retry_max=1.0,
        )
        return Cluster(index, uploader.store, uploader, clock, cluster_edges(index, args.edges, T0))

    return [cluster for found in pool.map(tenant, tenants) for cluster in found]


def run(
    clusters: list[Cluster], pool: ThreadPoolExecutor, cloud: Cloud, args: argparse.Namespace
) -> tuple[list[Any], list[float]]:
    """The timeline (see the module doc): the meter's counts at the end of each simulated hour,
    and the wall-clock seconds each hour took."""
    per_hour = int(HOUR // args.interval)
    hours: list[Any] = []
    ends = [time.perf_counter()]

    def one_round(step: int) -> None:
        now = T0 + step * args.interval

        def one(cluster: Cluster) -> None:
            cluster.see(now, random.Random(cluster.index * 7919 + step), args.changes if step else 0.0)
            cluster.cycle(now)

        list(pool.map(one, clusters))

    one_round(0)
    for step in range(1, args.hours * per_hour):
        if step % per_hour == 0:  # the hour ends before this round
            hours.append(cloud.meter.snapshot())
            ends.append(time.perf_counter())
            if args.shard == 0:
                print(
                    f"  shard 0: hour {len(hours)} done at {time.perf_counter() - STARTED:.0f} s", flush=True
                )
        one_round(step)
    last = T0 + (args.hours * per_hour - 1) * args.interval
    for _ in range(20):  # cycles that failed: their changes go with the next cycle, as in the mapper
        pending = [c for c in clusters if c.pending]
        if not pending:
            break
        list(pool.map(lambda c: c.cycle(last), pending))
    hours.append(cloud.meter.snapshot())
    ends.append(time.perf_counter())
    return hours, [b - a for a, b in itertools.pairwise(ends)]


def lost_edges(clusters: list[Cluster], cloud: Cloud, tenants: Tenants) -> tuple[int, int, int]:
    """(acknowledged, missing, different): every edge the ledgers hold as uploaded, read back from
    the store (content digest, ``last_seen`` no older, ``live`` flag)."""
    by_cluster = {c.index: c for c in clusters}
    acknowledged = missing = different = 0
    for tenant, indexes in tenants:
        stored = {(s.cluster_id, s.edge.key): s for s in cloud.store.edges(tenant)}
        for index in indexes:
            cluster = by_cluster[index]
            edges = cluster.store.edges()
            marks = cluster.uploader.ledger.upload_marks([e.key for e in edges])
            for edge in edges:
                mark = marks.get(edge.key)
                if mark is None:
                    continue  # never acknowledged (none should be left: see the drain in run)
                acknowledged += 1
                found = stored.get((f"c{index:04d}", edge.key))
                if found is None:
                    missing += 1
                elif (
                    digest(found.edge) != mark[1]
                    or found.edge.last_seen < mark[0] - 1e-3
                    or found.live != mark[2]
                ):
                    different += 1
    return acknowledged, missing, different


def shard(endpoint: str, args: argparse.Namespace) -> dict[str, Any]:
    """One Lambda container (a process: the handler answers one request at a time) and the
    clusters of every ``args.shards``-th tenant: set up, run, read back."""
    logging.disable(logging.WARNING)
    cpu = time.process_time()
    tenants = tenants_of(args.clusters)[args.shard :: args.shards]
    cloud = open_cloud(endpoint, args.threads)
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.threads) as pool:
        started = time.perf_counter()
        clusters = make_clusters(cloud, Path(tmp), tenants, args, pool)
        setup, setup_time = cloud.meter.snapshot(), time.perf_counter() - started
        cloud.meter.throttle = args.throttle
        hours, hour_times = run(clusters, pool, cloud, args)
        started = time.perf_counter()
        readback = lost_edges(clusters, cloud, tenants)
        read_time = time.perf_counter() - started
        for cluster in clusters:
            cluster.store.close()
    return {
        "setup": setup,
        "hours": hours,
        "latencies": cloud.requests.latencies,
        "waits": cloud.requests.waits,
        "times": {"setup": setup_time, "hours": hour_times, "read back": read_time},
        "errors": cloud.requests.errors,
        "failed cycles": sum(c.failed_cycles for c in clusters),
        "edges at the end": sum(len(c.edges) for c in clusters),
        "readback": readback,
        "cpu": time.process_time() - cpu,
    }


STARTED = time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--edges", type=int, default=200)
    parser.add_argument("--hours", type=int, default=3, help="simulated hours")
    parser.add_argument("--interval", type=float, default=1200.0, help="simulated seconds between uploads")
    parser.add_argument(
        "--changes", type=float, default=0.02, help="per cluster and interval: a new edge, a path"
    )
    parser.add_argument("--throttle", type=float, default=0.05, help="share of write attempts throttled")
    parser.add_argument("--shards", type=int, default=16, help="Lambda containers (processes)")
    parser.add_argument("--threads", type=int, default=4, help="clusters uploading at once per container")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, dynamodb_local(Path(tmp)) as endpoint:
        port = int(endpoint.rpartition(":")[2])
        bound = listeners(port)
        if any(address not in ("127.0.0.1", "::ffff:127.0.0.1") for address in bound):
            raise SystemExit(f"DynamoDB Local listens beyond 127.0.0.1: {bound}")
        print(f"DynamoDB Local at {endpoint}, listening on {', '.join(bound)} only")
        create_table(client(endpoint), TABLE)
        started = time.perf_counter()
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(args.shards, mp_context=context) as processes:
            futures = [
                processes.submit(shard, endpoint, argparse.Namespace(**vars(args), shard=k))
                for k in range(args.shards)
            ]
            shards = [f.result() for f in futures]
        elapsed = time.perf_counter() - started
    report(args, shards, elapsed)


def summed(counts: Iterable[Mapping[str, int]]) -> Counter[str]:
    total: Counter[str] = Counter()
    for one in counts:
        total.update(one)
    return total


def report(args: argparse.Namespace, shards: list[dict[str, Any]], elapsed: float) -> None:
    n = args.clusters
    setup = summed(s["setup"] for s in shards)
    hours = [summed(s["hours"][h] for s in shards) for h in range(args.hours)]
    latencies = [x for s in shards for x in s["latencies"]]

    def delta(h: int, key: str) -> int:
        return hours[h][key] - (hours[h - 1][key] if h else setup[key])

    print(
        f"clusters: {n} ({args.shards} Lambda containers), edges: {n * args.edges} at first,"
        f" {sum(s['edges at the end'] for s in shards)} at the end"
    )
    waits = [x for s in shards for x in s["waits"]]
    slowest = {
        "setup": max(s["times"]["setup"] for s in shards),
        "first hour": max(s["times"]["hours"][0] for s in shards),
        "later hours": max(sum(s["times"]["hours"][1:]) for s in shards),
        "read back": max(s["times"]["read back"] for s in shards),
    }
    running = slowest["first hour"] + slowest["later hours"]
    print(
        f"uploads: {len(latencies)} requests in {running:.0f} s ({len(latencies) / running:.1f}/s;"
        f" first hour: {n * args.edges / slowest['first hour']:.0f} edges/s); wall clock (slowest container):"
        + ",".join(f" {k} {v:.0f} s" for k, v in slowest.items())
        + f", all {elapsed:.0f} s; CPU of the containers {sum(s['cpu'] for s in shards):.0f} s"
    )
    print(
        f"upload latency in the handler: p50 {percentile(latencies, 0.5) * 1000:.0f} ms,"
        f" p99 {percentile(latencies, 0.99) * 1000:.0f} ms; waiting for a busy container:"
        f" p99 {percentile(waits, 0.99) * 1000:.0f} ms"
    )
    for h in range(args.hours):
        print(
            f"  hour {h + 1}: {delta(h, 'edge items written') / n:.2f} edge writes per cluster,"
            f" {delta(h, 'items written') / n:.2f} writes in all (with batch markers, heartbeats)"
        )
    first = delta(0, "edge items written") / n
    steady = args.hours - 1
    steady_edges = sum(delta(h, "edge items written") for h in range(1, args.hours)) / (n * max(1, steady))
    steady_all = sum(delta(h, "items written") for h in range(1, args.hours)) / (n * max(1, steady))
    print(
        f"writes per cluster-hour: first hour {first:.1f} edge writes; steady state {steady_edges:.2f} edge"
        f" writes, {steady_all:.2f} in all (goal: 0 edge writes after the first hour, real changes apart:"
        f" here {args.changes:.0%} of clusters gain an edge, and {args.changes:.0%} a path, per interval)"
    )
    counts = hours[-1]
    injected = counts["throttles injected"]
    print(
        f"throttles: {injected} injected ({args.throttle:.0%} of write attempts):"
        f" {counts['throttles retried by botocore']} retried by botocore,"
        f" {counts['throttles surfaced']} reached the store (retried there)"
    )
    errors = summed({str(k): v for k, v in s["errors"].items()} for s in shards)
    print(
        f"handler errors (retried by the uploaders): {dict(errors) or 'none'};"
        f" failed upload cycles: {sum(s['failed cycles'] for s in shards)}"
    )
    acknowledged, missing, different = (sum(s["readback"][i] for s in shards) for i in range(3))
    print(f"read back: {acknowledged} acknowledged edges, {missing} missing, {different} different")
    lost = missing + different
    print(f"lost: {lost}")
    print(
        f"cloud_scale: {n} clusters x {args.edges} edges, {steady_edges:.2f} edge writes per cluster-hour"
        f" in steady state, {injected} throttles retried, {lost} lost"
    )


if __name__ == "__main__":
    main()
