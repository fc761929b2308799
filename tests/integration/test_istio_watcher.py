"""The real Istio watcher process (``python -m agent.watchers.istiowatcher``) against real servers:

* the sandbox's in-process Kubernetes API (``sandbox.apiserver.ApiServer``, reached through the
  real ``kubernetes`` client), holding pods labelled ``security.istio.io/tlsMode`` whose
  ``status.podIP`` is 127.0.0.x;
* one ``http.server`` per pod on 127.0.0.x:<port> serving ``/stats/prometheus``: the real Istio 1.5
  sidecar scrape (tests/data/istio) with this test's ``istio_requests_total`` series spliced in
  after its own, counters the test raises as requests "happen";
* the real mapper API (``agent.mapper.api.create_app``: token check, GraphQL, report queue, the
  real resolver and the SQLite edge store) under uvicorn, read back through its ``edges`` query.

It checks what arrives (paths templated, methods, principals, response codes; each request once,
HEAD and unknown peers left out), that a restarted watcher replays nothing (exact lastSeen and
count of every edge before and after two scrape cycles of the new process, including a pod that
started between the two watchers), and that new requests after a restart do arrive.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from agent.cli.queries import EDGES_QUERY
from agent.mapper.api import create_app
from agent.mapper.cluster import ClusterState
from agent.mapper.resolver import Resolver
from agent.mapper.settings import ApiSettings
from agent.mapper.store import EdgeStore
from agent.mapperclient import HttpMapperClient
from agent.wire import format_time
from tests.support.apiserver import running_api
from tests.support.mapper_app import MapperServer
from tests.support.mapper_process import REPO, clean_env, free_port, wait_until

TOKEN = "istio-watcher-test-token"
NS = "shop"
REAL = (REPO / "tests" / "data" / "istio" / "istio-1.5-sidecar-stats.txt").read_text()
SPLICE_AT = REAL.index("\n", REAL.rindex("\nistio_requests_total{")) + 1  # after the fixture's own series
PRINCIPAL = "spiffe://cluster.local/ns/shop/sa/{}"
METRIC = "network_mapper_istio_watcher_{}"


class Sidecar:
    """A sidecar's stats endpoint on ``ip:port``: the real scrape plus this test's counters."""

    def __init__(self, ip: str, port: int) -> None:
        self.ip = ip
        self._lock = threading.Lock()
        self._counters: dict[tuple[tuple[str, str], ...], int] = {}
        sidecar = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = sidecar.text().encode() if self.path == "/stats/prometheus" else b"not found\n"
                self.send_response(200 if self.path == "/stats/prometheus" else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((ip, port), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def count(
        self, n: int, reporter: str, src: str, dst: str, path: str, method: str, code: int = 200
    ) -> None:
        """``n`` more requests ``src`` → ``dst``, as this sidecar counts them (Istio's labels)."""
        labels = (
            ("response_code", str(code)),
            ("reporter", reporter),
            ("source_workload", src),
            ("source_workload_namespace", NS if src != "unknown" else "unknown"),
            ("source_principal", PRINCIPAL.format(src) if src != "unknown" else "unknown"),
            ("destination_workload", dst),
            ("destination_workload_namespace", NS),
            ("destination_principal", PRINCIPAL.format(dst)),
            ("destination_service", f"{dst}.{NS}.svc.cluster.local"),
            ("destination_service_name", dst),
            ("destination_service_namespace", NS),
            ("request_protocol", "http"),
            ("response_flags", "-"),
            ("connection_security_policy", "mutual_tls"),
            ("request_path", path),
            ("request_method", method),
        )
        with self._lock:
            self._counters[labels] = self._counters.get(labels, 0) + n

    def text(self) -> str:
        with self._lock:
            lines = [
                "istio_requests_total{" + ",".join(f'{k}="{v}"' for k, v in labels) + f"}} {value}\n"
                for labels, value in self._counters.items()
            ]
        return REAL[:SPLICE_AT] + "".join(lines) + REAL[SPLICE_AT:]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def sidecars_on_one_port(ips: list[str]) -> list[Sidecar]:
    """One sidecar per address, all on one port (the watcher's --metrics-port)."""
    for _ in range(20):
        first = Sidecar(ips[0], 0)
        started = [first]
        try:
            started += [Sidecar(ip, first.port) for ip in ips[1:]]
        except OSError:  # that port is taken on another address: try another one
            for sidecar in started:
                sidecar.stop()
            continue
        return started
    raise AssertionError("no port free on every address")


class Watcher:
    """The watcher process; its /metrics read with prometheus_client's parser."""

    def __init__(self, directory: Path, name: str, kubeconfig: Path, mapper_url: str, port: int) -> None:
        self.health = free_port()
        self.log_path = directory / f"{name}.log"
        argv = [
            sys.executable, "-m", "agent.watchers.istiowatcher",
            "--mapper-url", mapper_url, "--token", TOKEN, "--kubeconfig", str(kubeconfig),
            "--namespaces", NS, "--metrics-port", str(port),
            "--scrape-interval", "0.2", "--report-interval", "0.2", "--scrape-timeout", "2",
            "--health-address", f"127.0.0.1:{self.health}",
        ]  # fmt: skip
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=clean_env(), cwd=REPO
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metrics(self) -> dict[str, float]:
        if self.process.poll() is not None:
            raise AssertionError(f"the watcher exited with {self.process.returncode}:\n{self.log()}")
        try:
            text = requests.get(f"http://127.0.0.1:{self.health}/metrics", timeout=2).text
        except requests.RequestException:
            return {}
        return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}

    def wait_cycles(self, cycles: int) -> dict[str, float]:
        """The metrics once ``cycles`` scrape cycles are done."""
        name = METRIC.format("cycles_total")

        def done() -> dict[str, float]:
            metrics = self.metrics()
            return metrics if metrics.get(name, 0) >= cycles else {}

        return wait_until(done, 30, f"{cycles} scrape cycles")

    def stop(self) -> None:
        """SIGTERM: the reporter flushes what is pending, then the process exits 0."""
        self.process.send_signal(signal.SIGTERM)
        try:
            assert self.process.wait(20) == 0, self.log()
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(5)


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[tuple[Path, client.CoreV1Api]]:
    with running_api(tmp_path) as running:
        running.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
        yield running.kubeconfig, running.core


@pytest.fixture
def mapper(tmp_path: Path) -> Iterator[MapperServer]:
    with EdgeStore(tmp_path / "edges.db") as store:
        state = ClusterState()
        app = create_app(ApiSettings(token=TOKEN), store, Resolver(state, "cluster.local"), state)
        with MapperServer(app) as server:
            yield server


def create_pod(core: client.CoreV1Api, workload: str, ip: str, started: str) -> None:
    """A Deployment's pod with a sidecar (no kubelet here: the test writes its status)."""
    template_hash = "6d8f7c"
    owner = client.V1OwnerReference(
        api_version="apps/v1", kind="ReplicaSet", name=f"{workload}-{template_hash}", uid=f"rs-{workload}",
        controller=True,
    )  # fmt: skip
    core.create_namespaced_pod(
        NS,
        client.V1Pod(
            metadata=client.V1ObjectMeta(
                name=f"{workload}-{template_hash}-x2k4q",
                generate_name=f"{workload}-{template_hash}-",
                labels={
                    "app": workload,
                    "pod-template-hash": template_hash,
                    "security.istio.io/tlsMode": "istio",
                },
                owner_references=[owner],
            ),
            spec=client.V1PodSpec(
                containers=[
                    client.V1Container(name=workload, image="demo"),
                    client.V1Container(name="istio-proxy", image="proxyv2"),
                ]
            ),
            status=client.V1PodStatus(phase="Running", pod_ip=ip, start_time=started),
        ),
    )


def istio_edges(mapper: MapperServer) -> dict[tuple[str, str], dict[str, Any]]:
    """The mapper's Istio edges by (client, target) name, drained of pending reports first."""
    assert mapper.app.state.ingest.drain(10)
    http = HttpMapperClient(mapper.url, TOKEN, 10.0)
    try:
        edges = http.execute(EDGES_QUERY, {"namespaces": None})["edges"]
    finally:
        http.close()
    return {(e["client"]["name"], e["target"]["name"]): e for e in edges if "istio" in e["methods"]}


def resources(edge: dict[str, Any]) -> dict[str, tuple[list[str], list[str], list[int]]]:
    return {
        r["path"]: (sorted(r["methods"]), sorted(r["principals"]), sorted(r["statuses"]))
        for r in edge["http"]
    }


def test_requests_arrive_once_and_a_restart_replays_nothing(
    tmp_path: Path, kube: tuple[Path, client.CoreV1Api], mapper: MapperServer
) -> None:
    kubeconfig, core = kube
    frontend, cart, payment = sidecars = sidecars_on_one_port(["127.0.0.2", "127.0.0.3", "127.0.0.4"])
    try:
        an_hour_ago = format_time(time.time() - 3600)
        create_pod(core, "frontend", frontend.ip, an_hour_ago)
        create_pod(core, "cartservice", cart.ip, an_hour_ago)
        # History from before the watcher: must never be reported.
        frontend.count(5, "source", "frontend", "cartservice", "/api/orders/1001?expand=items", "GET")
        cart.count(5, "destination", "frontend", "cartservice", "/api/orders/1001?expand=items", "GET")
        cart.count(3, "destination", "frontend", "cartservice", "/api/history/77", "GET")

        watcher = Watcher(tmp_path, "first", kubeconfig, mapper.url, frontend.port)
        try:
            first = watcher.wait_cycles(2)
            assert first[METRIC.format("scrapes_total")] >= 4 and first[METRIC.format("increases_total")] == 0
            assert istio_edges(mapper) == {}

            # New requests, each counted by both sidecars; a HEAD and an unknown caller too.
            for sidecar, reporter in ((frontend, "source"), (cart, "destination")):
                sidecar.count(2, reporter, "frontend", "cartservice", "/api/orders/1001?expand=items", "GET")
                sidecar.count(1, reporter, "frontend", "cartservice", "/api/orders/1002", "GET", 500)
                sidecar.count(1, reporter, "frontend", "cartservice", "/api/orders", "POST", 201)
                sidecar.count(4, reporter, "frontend", "cartservice", "/api/orders/1002", "HEAD")
            cart.count(6, "destination", "unknown", "cartservice", "/admin", "GET")
            # A pod that starts while the watcher runs: all it counted is new.
            create_pod(core, "paymentservice", payment.ip, format_time(time.time()))
            payment.count(
                3,
                "destination",
                "cartservice",
                "paymentservice",
                "/charge/9f8e7d6c5b4a39281716151413121110",
                "POST",
            )

            wanted = {("frontend", "cartservice"), ("cartservice", "paymentservice")}

            def arrived() -> dict[tuple[str, str], dict[str, Any]]:
                edges = istio_edges(mapper)
                return edges if edges.keys() == wanted else {}

            edges = wait_until(arrived, 30, "the Istio edges")
            cart_principal = [PRINCIPAL.format("frontend")]
            assert resources(edges[("frontend", "cartservice")]) == {
                "/api/orders/{id}": (["GET"], cart_principal, [200, 500]),
                "/api/orders": (["POST"], cart_principal, [201]),
            }
            assert resources(edges[("cartservice", "paymentservice")]) == {
                "/charge/{id}": (["POST"], [PRINCIPAL.format("cartservice")], [200]),
            }
            metrics = watcher.metrics()
            assert metrics[METRIC.format("skipped_duplicate_total")] >= 3
            assert metrics[METRIC.format("skipped_method_total")] >= 1
            assert metrics[METRIC.format("skipped_unknown_total")] >= 1
        finally:
            watcher.stop()
        before = istio_edges(mapper)

        # A restart with no new requests: two cycles, then a stop that flushes everything pending.
        restarted = Watcher(tmp_path, "second", kubeconfig, mapper.url, frontend.port)
        try:
            second = restarted.wait_cycles(2)
            assert second[METRIC.format("sidecars")] == 3
            assert second[METRIC.format("increases_total")] == 0
        finally:
            restarted.stop()
        after = istio_edges(mapper)
        assert after == before  # every lastSeen, count, path, method: exactly as before

        # Another restart, then new requests: they arrive, with a newer lastSeen.
        third = Watcher(tmp_path, "third", kubeconfig, mapper.url, frontend.port)
        try:
            third.wait_cycles(2)
            frontend.count(1, "source", "frontend", "cartservice", "/api/orders/1003", "PUT")
            cart.count(1, "destination", "frontend", "cartservice", "/api/orders/1003", "PUT")

            def newer() -> dict[tuple[str, str], dict[str, Any]]:
                now = istio_edges(mapper)
                moved = (
                    now[("frontend", "cartservice")]["lastSeen"]
                    != before[("frontend", "cartservice")]["lastSeen"]
                )
                return now if moved else {}

            latest = wait_until(newer, 30, "a newer lastSeen after the restart")
        finally:
            third.stop()
        frontend_cart = latest[("frontend", "cartservice")]
        assert frontend_cart["lastSeen"] > before[("frontend", "cartservice")]["lastSeen"]
        assert resources(frontend_cart)["/api/orders/{id}"][0] == ["GET", "PUT"]
        assert latest[("cartservice", "paymentservice")] == before[("cartservice", "paymentservice")]
    finally:
        for sidecar in sidecars:
            sidecar.stop()
