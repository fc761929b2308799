"""Simulation: the real mapper process under a 5,000-node, 150,000-pod cluster for 24 simulated hours.

    .venv/bin/python bench/bench_cluster_sim.py [--nodes 5000] [--pods 150000] [--churn 2.0]

* The cluster: the sandbox's Kubernetes API server (``sandbox.apiserver.ApiServer``, real REST
  wire protocol) in its own process, bulk-loaded (``Store.preload``) with the cluster of
  ``simcluster.py``: Nodes, Namespaces, Deployments → ReplicaSets → Pods, Services, Endpoints and
  EndpointSlices. Its clock is the simulation's, so objects created by churn carry simulated
  ``creationTimestamp``\\ s.
* The mapper: ``python -m agent.mapper`` as a child, with a kubeconfig for that server, a token, a
  temp data dir, and the project's local cloud (``tests.support.local_cloud.LocalCloud``, SQLite,
  127.0.0.1) as its upload target. It lists and watches the cluster over HTTP like in a cluster;
  it is ready when its log says every kind was listed and ``/healthz`` answers.
* The simulated day: ``--hours`` hours ending when the bench starts, cut into slots of
  ``--slot-minutes``. Per slot: churn first, through the API server (pairs of Deployments
  rescheduled with their IPs swapped: every churned IP is reused by another workload at once;
  ``--churn`` % of pods per simulated hour; Endpoints and EndpointSlices follow), then the
  observation stream of that moment: ``--nodes-per-slot`` nodes (a different slice each slot, so
  the day covers every node) each send ``--intervals`` aggregation intervals of 40 observations
  (``simstream.py``), from ``--senders`` concurrent senders, retrying "mapper busy" as the
  sniffer does. The full stream (40 obs/s on every node for the whole day) cannot be replayed on
  one machine: the sampling factor is printed.
* Measured: observations resolved per CPU-second of the mapper process (utime+stime from
  /proc/<pid>/stat, before/after the stream) and per wall second; ingest latency (POST sent →
  acknowledged, i.e. committed); the mapper's VmHWM/VmRSS; the store's size (its SQLite files) at
  simulated hours 12 and 24; the cloud's edge writes; and whether every edge the mapper holds is
  one the call graph allows (an IP reused without regard to time would make wrong ones).

The last line: ``cluster_sim: <nodes> nodes, <pods> pods: <N>k obs/s resolved per mapper
CPU-second (goal 200k), p99 <L> ms, RSS <R> MiB (goal 1024), store <S> MB after 24 h``.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import requests  # noqa: E402
from procfigures import cpu_seconds, percentile  # noqa: E402 - bench/: run as `python bench/<file>.py`
from simcluster import (  # noqa: E402 - bench/: run as `python bench/<bench>.py`
    Layout,
    Placement,
    Swap,
    churn_plan,
    cluster_objects,
    endpoints_subsets,
    pod_obj,
    slice_endpoints,
    slice_name,
)
from simstream import Report, node_reports  # noqa: E402

from agent.cli.queries import EDGES_QUERY  # noqa: E402
from agent.mapper.kube import DEFAULT_KINDS  # noqa: E402
from tests.support.local_cloud import LocalCloud  # noqa: E402

TOKEN = "cluster-sim-token"
HOUR = 3600.0
MIB = 1 << 20
GOAL_RATE, GOAL_RSS = 200_000, 1024


# --------------------------------------------------------------------------- the API server (child)


def serve_cluster(
    layout: Layout, placement: Placement, clock: Any, kubeconfig: Path, pipe: Connection
) -> None:
    """The API server process: load the cluster, serve it, say the port, stop when told."""
    from sandbox.apiserver import ApiServer

    server = ApiServer(
        history_limit=1_000_000,  # churn must never expire the mapper's watches (a relist is 150k pods)
        clock=lambda: datetime.fromtimestamp(clock.value, UTC),
    )
    started = time.perf_counter()
    loaded = sum(server.store.preload(key, objs) for key, objs in cluster_objects(layout, placement).items())
    server.start()
    server.write_kubeconfig(kubeconfig)
    pipe.send((loaded, time.perf_counter() - started))
    pipe.recv()  # until the bench is done
    server.stop()


# --------------------------------------------------------------------------- process figures


@dataclass
class Phases:
    """The mapper's CPU seconds while each part of the slots ran (the watch's work on a slot's
    churn may spill into its stream phase: the stream's figure is the conservative one)."""

    churn: float = 0.0
    stream: float = 0.0


def memory_mib(pid: int) -> dict[str, float]:
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            found[key] = int(value.split()[0]) / 1024
    return found


def store_mb(data_dir: Path) -> float:
    return sum(f.stat().st_size for f in data_dir.iterdir() if f.is_file()) / 1e6


# --------------------------------------------------------------------------- the plan


@dataclass(slots=True)
class Slot:
    """One moment of the simulated day: the churn applied then, and the reports sent then."""

    at: float
    swaps: list[Swap] = field(default_factory=list)
    requests: list[tuple[str, str, bytes]] = field(default_factory=list)  # (method, path, body)
    reports: list[Report] = field(default_factory=list)


def churn_requests(
    layout: Layout, placement: Placement, swaps: list[Swap], at: float
) -> list[tuple[str, str, bytes]]:
    """The API requests of a slot's churn, as the kubelets and controllers would make them."""
    out: list[tuple[str, str, bytes]] = []
    touched: set[int] = set()
    for swap in swaps:
        for namespace, name in swap.gone:
            out.append(("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}", b""))
        for p in (swap.a, swap.b):
            d = p // layout.replicas
            touched.add(d)
            body = json.dumps(pod_obj(layout, placement, p, at)).encode()
            out.append(("POST", f"/api/v1/namespaces/{layout.namespace(d)}/pods", body))
    for d in sorted(touched):  # the endpoints controllers, once per Service per slot
        ns, name = layout.namespace(d), layout.deployment(d)
        subsets = json.dumps({"subsets": endpoints_subsets(layout, placement, d)}).encode()
        out.append(("PATCH", f"/api/v1/namespaces/{ns}/endpoints/{name}", subsets))
        slices = json.dumps({"endpoints": slice_endpoints(layout, placement, d)}).encode()
        out.append(
            (
                "PATCH",
                f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices/{slice_name(layout, d)}",
                slices,
            )
        )
    return out


def plan(layout: Layout, placement: Placement, args: argparse.Namespace, start: float) -> list[Slot]:
    """Every slot of the day, its churn requests and reports encoded (placement moves along)."""
    rng = random.Random(18)
    slot_seconds = args.slot_minutes * 60
    slots = int(args.hours * HOUR / slot_seconds)
    pairs = max(1, round(layout.pods * args.churn / 100 * slot_seconds / HOUR / (2 * layout.replicas)))
    out = []
    for s in range(slots):
        at = start + s * slot_seconds
        slot = Slot(at)
        if s:
            slot.swaps = churn_plan(layout, placement, at, pairs, rng, generation=s)
            slot.requests = churn_requests(layout, placement, slot.swaps, at)
        for k in range(args.nodes_per_slot):
            node = (s * args.nodes_per_slot + k) % layout.nodes
            for i in range(args.intervals):
                slot.reports.extend(node_reports(layout, placement, node, at + 1 + i, args.per_node, rng))
        out.append(slot)
    return out


# --------------------------------------------------------------------------- driving


@dataclass(slots=True)
class Sent:
    latencies: list[float] = field(default_factory=list)
    busy: int = 0
    observations: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def send_all(base: str, reports: list[Report], pool: ThreadPoolExecutor, sent: Sent) -> None:
    """POST every report (concurrently), retrying "mapper busy" answers as the sniffer does."""
    local = threading.local()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

    def one(report: Report) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        while True:
            begun = time.perf_counter()
            reply = session.post(f"{base}/query", data=report.body, headers=headers, timeout=120)
            reply.raise_for_status()
            answer = reply.json()
            if answer.get("data") and not answer.get("errors"):
                break
            with sent.lock:
                sent.busy += 1
            time.sleep(0.05)  # the reporter's retry backoff (it waits longer: this keeps the mapper busy)
        with sent.lock:
            sent.latencies.append(time.perf_counter() - begun)
            sent.observations += report.observations

    list(pool.map(one, reports))


def apply_churn(api: str, requests_: list[tuple[str, str, bytes]], pool: ThreadPoolExecutor) -> None:
    """Send a slot's churn to the API server: deletions and creations first, then endpoints."""
    local = threading.local()

    def one(request: tuple[str, str, bytes]) -> None:
        method, path, body = request
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        content = "application/merge-patch+json" if method == "PATCH" else "application/json"
        reply = session.request(
            method, f"{api}{path}", data=body or None, headers={"Content-Type": content}, timeout=60
        )
        if reply.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {reply.status_code} {reply.text[:200]}")

    pods = [r for r in requests_ if r[0] != "PATCH"]
    list(pool.map(one, pods))
    list(pool.map(one, [r for r in requests_ if r[0] == "PATCH"]))


def caught_up(api: str, base: str, slot: int, namespace: str) -> None:
    """Wait until the mapper has applied this slot's churn: a sentinel pod created after it, on a
    node of its own, shows in the mapper's coverage (the pods' watch is one ordered stream). Reports
    stamped after the churn must not race its watch events: in a cluster the sniffers report
    seconds after the fact, long after the watch delivered the pods (a test of the mapper, not of
    the race)."""
    node = f"sim-sentinel-{slot}"
    sentinel = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": node, "namespace": namespace, "uid": f"uid-{node}"},
        "spec": {"nodeName": node, "containers": [{"name": "pause", "image": "registry.example/pause:1"}]},
        "status": {"phase": "Pending", "hostIP": "192.0.2.1"},
    }
    reply = requests.post(f"{api}/api/v1/namespaces/{namespace}/pods", json=sentinel, timeout=60)
    if reply.status_code >= 300:
        raise RuntimeError(f"sentinel pod: {reply.status_code} {reply.text[:200]}")
    query = {"query": "query { coverage { nodes { name } } }"}

    def seen() -> bool:
        answer = requests.post(f"{base}/query", json=query, timeout=60).json()
        return any(n["name"] == node for n in answer["data"]["coverage"]["nodes"])

    wait_for(seen, 120, f"the mapper to apply slot {slot}'s churn")


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def listed(log: Path) -> dict[str, float]:
    """kind → seconds its first list took, from the mapper's log."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return {m[1]: float(m[2]) for m in re.finditer(r"listed kind=(\w+) items=\d+ .*?seconds=([\d.]+)", text)}


def check_edges(base: str, layout: Layout) -> tuple[int, list[dict[str, Any]]]:
    """(how many edges the mapper holds, those the call graph does not allow)."""
    reply = requests.post(f"{base}/query", json={"query": EDGES_QUERY}, timeout=120)
    reply.raise_for_status()
    allowed, wrong, edges = layout.edges(), [], reply.json()["data"]["edges"]
    for edge in edges:
        client, target = edge["client"], edge["target"]
        key = f"{client['namespace']}/{client['name']}"
        servers = {f"{target.get('namespace')}/{target.get('name')}", target.get("dnsName") or ""}
        servers.update(target.get("ips") or ())
        if not any((key, s) in allowed for s in servers):
            wrong.append(edge)
    return len(edges), wrong


def cloud_edge_writes(cloud: LocalCloud) -> int:
    return sum(len(batch.edges) for batch in cloud.batches())


def start_mapper(
    tmp: Path, kubeconfig: Path, cloud: LocalCloud, args: argparse.Namespace
) -> tuple[subprocess.Popen[bytes], str, Path]:
    data, log = tmp / "mapper-data", tmp / "mapper.log"
    port = 19000 + os.getpid() % 1000
    command = [
        sys.executable, "-m", "agent.mapper",
        f"--listen-address=127.0.0.1:{port}", f"--token={TOKEN}", f"--data-dir={data}",
        f"--kubeconfig={kubeconfig}", "--telemetry-enabled=false",
        f"--cloud-url={cloud.url}", f"--cloud-token={cloud.token}",
        f"--upload-interval={args.upload_interval}",
        "--pod-cidrs=10.64.0.0/10", "--service-cidrs=10.96.0.0/12",
    ]  # fmt: skip
    with log.open("wb") as out:
        child = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    return child, f"http://127.0.0.1:{port}", data


def healthy(base: str) -> bool:
    try:
        return requests.get(f"{base}/healthz", timeout=2).ok
    except requests.RequestException:
        return False


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--pods", type=int, default=150_000)
    parser.add_argument("--replicas", type=int, default=30, help="pods per Deployment")
    parser.add_argument("--churn", type=float, default=2.0, help="%% of pods replaced per simulated hour")
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--slot-minutes", type=float, default=5.0)
    parser.add_argument("--nodes-per-slot", type=int, default=20)
    parser.add_argument("--intervals", type=int, default=2, help="aggregation intervals per sampled node")
    parser.add_argument("--per-node", type=int, default=40, help="observations per node per interval")
    parser.add_argument("--senders", type=int, default=16)
    parser.add_argument("--upload-interval", type=float, default=10.0, help="the mapper's, in wall seconds")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy binary: record the mapper")
    args = parser.parse_args()

    bench_started = time.time()
    day_start = float(int(bench_started - args.hours * HOUR))
    layout = Layout(args.nodes, args.pods, args.replicas, 100, 4, 200, day_start - HOUR)
    placement = Placement.initial(layout)
    clock = multiprocessing.Value("d", layout.t0)
    with tempfile.TemporaryDirectory(prefix="cluster-sim-") as tmp_name:
        tmp = Path(tmp_name)
        kubeconfig = tmp / "kubeconfig"
        ctx = multiprocessing.get_context("fork")
        ours, theirs = ctx.Pipe()
        apiserver = ctx.Process(
            target=serve_cluster, args=(layout, placement, clock, kubeconfig, theirs), daemon=True
        )
        apiserver.start()  # forks with the initial placement, before the plan moves it
        began = time.perf_counter()
        slots = plan(layout, placement, args, day_start)
        planned = time.perf_counter() - began
        loaded, load_seconds = ours.recv()
        print(f"API server: {loaded} objects loaded in {load_seconds:.1f} s; plan encoded in {planned:.1f} s")
        with LocalCloud(tmp / "cloud") as cloud:
            logging.getLogger("network-mapper-cloud").setLevel(logging.WARNING)  # one line per request
            run(args, layout, slots, tmp, kubeconfig, cloud, clock)
        ours.send("stop")
        apiserver.join(30)
    print(f"run time: {time.time() - bench_started:.0f} s")


def run(
    args: argparse.Namespace,
    layout: Layout,
    slots: list[Slot],
    tmp: Path,
    kubeconfig: Path,
    cloud: LocalCloud,
    clock: Any,
) -> None:
    api = re.search(r"server: (\S+)", kubeconfig.read_text())
    assert api is not None
    mapper, base, data = start_mapper(tmp, kubeconfig, cloud, args)
    log = tmp / "mapper.log"
    profiler = None
    try:
        began = time.perf_counter()
        wait_for(
            lambda: len(listed(log)) == len(DEFAULT_KINDS) and healthy(base),
            300,
            "the mapper to list the cluster",
        )
        lists = listed(log)
        print(
            f"mapper synced in {time.perf_counter() - began:.1f} s (pods listed in {lists['pods']:.1f} s);"
            f" RSS {memory_mib(mapper.pid)['VmRSS']:.0f} MiB, CPU {cpu_seconds(mapper.pid):.1f} s so far"
        )
        if args.profile:
            profiler = subprocess.Popen(
                [str(args.profile), "record", "-o", str(REPO / "cluster_sim_profile.txt"), "-f", "raw",
                 "-p", str(mapper.pid), "-r", "50"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        sent, churn_seconds, marks, phases = Sent(), 0.0, {}, Phases()
        cpu0, wall0, writes0 = cpu_seconds(mapper.pid), time.perf_counter(), cloud_edge_writes(cloud)
        with ThreadPoolExecutor(args.senders) as senders, ThreadPoolExecutor(4) as churners:
            for s, slot in enumerate(slots):
                clock.value = slot.at
                c0, p0 = time.perf_counter(), cpu_seconds(mapper.pid)
                apply_churn(api[1], slot.requests, churners)
                caught_up(api[1], base, s, layout.namespace(0))
                churn_seconds += time.perf_counter() - c0
                p1 = cpu_seconds(mapper.pid)
                send_all(base, slot.reports, senders, sent)
                phases.churn += p1 - p0
                phases.stream += cpu_seconds(mapper.pid) - p1
                hour = (s + 1) * args.slot_minutes / 60
                if hour in (args.hours / 2, args.hours):
                    marks[hour] = (store_mb(data), memory_mib(mapper.pid), cloud_edge_writes(cloud) - writes0)
                if hour.is_integer() and hour % 2 == 0:  # progress, so a cut-short run still says something
                    print(
                        f"  simulated hour {hour:g}: {sent.observations} obs,"
                        f" {time.perf_counter() - wall0:.0f} s wall"
                        f" ({churn_seconds:.0f} s churn), mapper CPU {cpu_seconds(mapper.pid) - cpu0:.1f} s,"
                        f" RSS {memory_mib(mapper.pid)['VmRSS']:.0f} MiB, store {store_mb(data):.1f} MB",
                        flush=True,
                    )
        wall, cpu = time.perf_counter() - wall0, cpu_seconds(mapper.pid) - cpu0
        if profiler is not None:
            profiler.terminate()
            profiler.wait(30)
        report(args, layout, slots, sent, wall, cpu, churn_seconds, marks, mapper.pid, base, phases)
    finally:
        mapper.terminate()
        try:
            mapper.wait(60)
        except subprocess.TimeoutExpired:
            mapper.kill()
        errors = [line for line in log.read_text(errors="replace").splitlines() if " ERROR " in line]
        if errors:
            print(f"mapper log: {len(errors)} ERROR lines, first: {errors[0][:300]}")


def report(
    args: argparse.Namespace,
    layout: Layout,
    slots: list[Slot],
    sent: Sent,
    wall: float,
    cpu: float,
    churn_seconds: float,
    marks: dict[float, Any],
    pid: int,
    base: str,
    phases: Phases,
) -> None:
    observations = sent.observations
    full = layout.nodes * 40 * args.hours * HOUR
    swaps = sum(len(s.swaps) for s in slots)
    requests_ = sum(len(s.requests) for s in slots)
    print(
        f"stream: {len(slots)} slots of {args.slot_minutes:g} simulated min; {args.nodes_per_slot} nodes x"
        f" {args.intervals} intervals x {args.per_node} obs per slot; {observations} observations in"
        f" {len(sent.latencies)} requests; sampling factor 1/{full / observations:,.0f} of 40 obs/s x"
        f" {layout.nodes} nodes x {args.hours:g} h"
    )
    print(
        f"churn: {2 * swaps} pods replaced ({2 * swaps / layout.pods / args.hours * 100:.2f}% per"
        f" simulated hour,"
        f" every IP reused by another workload), {requests_} API requests, {churn_seconds:.1f} s wall"
    )
    per_cpu, per_wall = observations / phases.stream, observations / wall
    print(
        f"resolved per mapper CPU-second: {per_cpu / 1000:.1f}k obs/s (goal {GOAL_RATE // 1000}k):"
        f" mapper CPU {phases.stream:.1f} s while the reports were sent ({len(sent.latencies)} requests,"
        f" {phases.stream / max(1, len(sent.latencies)) * 1000:.2f} ms each), {phases.churn:.1f} s while the"
        f" churn was applied ({phases.churn / max(1, 2 * swaps) * 1000:.2f} ms per pod replaced), {cpu:.1f} s"
        f" in all ({observations / cpu / 1000:.1f}k obs per CPU-second, churn included)"
    )
    print(f"resolved per wall second: {per_wall / 1000:.1f}k obs/s over {wall:.1f} s (churn included)")
    lat = sent.latencies
    print(
        f"ingest latency (sent -> acknowledged): p50 {percentile(lat, 0.5) * 1000:.1f} ms, p99"
        f" {percentile(lat, 0.99) * 1000:.1f} ms, max {max(lat) * 1000:.0f} ms; busy answers"
        f" retried: {sent.busy}"
    )
    memory = memory_mib(pid)
    print(
        f"mapper memory with {layout.pods} pods: VmHWM {memory['VmHWM']:.0f} MiB, VmRSS"
        f" {memory['VmRSS']:.0f} MiB (goal {GOAL_RSS})"
    )
    half, end = marks.get(args.hours / 2), marks.get(args.hours)
    if half and end:
        print(
            f"store: {half[0]:.1f} MB at simulated hour {args.hours / 2:g}, {end[0]:.1f} MB at hour"
            f" {args.hours:g}"
            f" (growth {end[0] - half[0]:+.1f} MB); retention: defaults (edges visible 30 d, pruned"
            f" after 90 d, on wall time)"
        )
        print(
            f"uploads: {end[2]} edge writes to the cloud over the simulated day"
            f" ({end[2] / args.hours:.0f} per simulated"
            f" cluster-hour; {end[2] - half[2]} in hours {args.hours / 2:g}-{args.hours:g}); the"
            f" uploader runs on wall time"
            f" (every {args.upload_interval:g} s): {end[2] / wall * 60:.0f} writes per wall minute"
        )
    edges, wrong = check_edges(base, layout)
    print(f"correctness: {edges} edges in the map, {len(wrong)} not in the call graph (misattributed)")
    for edge in wrong[:5]:
        client, target = edge["client"], edge["target"]
        print(
            f"  misattributed: {client['namespace']}/{client['name']} -> {target.get('namespace')}/"
            f"{target.get('name') or target.get('dnsName')} {target.get('ips') or ''} by {edge['methods']},"
            f" seen {edge['firstSeen']} .. {edge['lastSeen']} x{edge['count']}"
        )
    store = end[0] if end else 0.0
    print(
        f"cluster_sim: {layout.nodes} nodes, {layout.pods} pods: {per_cpu / 1000:.0f}k obs/s"
        f" resolved per mapper"
        f" CPU-second (goal {GOAL_RATE // 1000}k), p99 {percentile(lat, 0.99) * 1000:.0f} ms, RSS"
        f" {memory['VmHWM']:.0f} MiB (goal {GOAL_RSS}), store {store:.1f} MB after 24 h"
    )


if __name__ == "__main__":
    main()
