"""The Istio watcher's I/O parts against real servers: the sidecar scraper (HTTP on 127.0.0.1,
bounded in time and size) and the pod lister (the sandbox's Kubernetes API through the real
``kubernetes`` client)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from kubernetes import client

from agent.watchers.istiopods import SidecarPod
from agent.watchers.istiowatcher import PodLister, PodListError, ScrapeFailed, SidecarScraper
from tests.support.apiserver import running_api
from tests.support.mapper_process import REPO, free_port

REAL = (REPO / "tests" / "data" / "istio" / "istio-1.5-sidecar-stats.txt").read_bytes()


def pod_at(port: int) -> tuple[SidecarPod, int]:
    return SidecarPod("shop", "p", "uid-p", "127.0.0.1", "p", None), port


STATUS = {"code": 200}  # what the stats server answers (Envoy answers 503 while it starts)


@pytest.fixture
def stats_server() -> Iterator[int]:
    """/stats/prometheus → the real scrape (with ``STATUS["code"]``); anything else → 404."""
    STATUS["code"] = 200

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path == "/stats/prometheus"
            body = REAL if ok else b"no\n"
            self.send_response(STATUS["code"] if ok else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture
def trickling_server() -> Iterator[int]:
    """Answers 200 and then one byte of body every 50 ms, for as long as the client reads."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(4096)
                try:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                    while not stop.wait(0.05):
                        conn.sendall(b"#")
                except OSError:  # the client gave up: what the test wants
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join(5)
    listener.close()


def test_a_scrape_reads_the_whole_stats_text(stats_server: int) -> None:
    pod, port = pod_at(stats_server)
    assert SidecarScraper(port, 5.0, 1 << 20)(pod) == REAL.decode()


def test_a_scrape_larger_than_the_bound_fails(stats_server: int) -> None:
    pod, port = pod_at(stats_server)
    with pytest.raises(ScrapeFailed, match="larger than"):
        SidecarScraper(port, 5.0, len(REAL) - 1)(pod)


def test_a_refused_connection_fails() -> None:
    pod, port = pod_at(free_port())
    with pytest.raises(ScrapeFailed):
        SidecarScraper(port, 2.0, 1 << 20)(pod)


def test_a_sidecar_trickling_bytes_cannot_hold_a_scrape_past_its_timeout(trickling_server: int) -> None:
    pod, port = pod_at(trickling_server)
    started = time.monotonic()
    with pytest.raises(ScrapeFailed, match="timed out"):
        SidecarScraper(port, 0.5, 1 << 20)(pod)
    assert time.monotonic() - started < 2.0


def test_a_status_other_than_200_fails(stats_server: int) -> None:
    pod, port = pod_at(stats_server)
    STATUS["code"] = 503
    with pytest.raises(ScrapeFailed, match="HTTP 503"):
        SidecarScraper(port, 5.0, 1 << 20)(pod)


def _pod(name: str, namespace: str, labels: dict[str, str], phase: str = "Running") -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, namespace=namespace, labels=labels),
        spec=client.V1PodSpec(containers=[client.V1Container(name="app", image="demo")]),
        status=client.V1PodStatus(phase=phase, pod_ip="10.1.0.9", start_time="2026-01-01T00:00:00Z"),
    )


def test_the_lister_finds_running_sidecar_pods_of_the_watched_namespaces(tmp_path: Path) -> None:
    with running_api(tmp_path) as running:
        core, kubeconfig = running.core, running.kubeconfig
        mesh = {"security.istio.io/tlsMode": "istio"}
        for ns in ("shop", "other"):
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
            core.create_namespaced_pod(ns, _pod(f"meshed-{ns}", ns, mesh))
        core.create_namespaced_pod("shop", _pod("plain", "shop", {}))
        core.create_namespaced_pod("shop", _pod("pending", "shop", mesh, phase="Pending"))
        watched = PodLister.from_kubeconfig(str(kubeconfig), ["shop"], 5.0)()
        everywhere = PodLister.from_kubeconfig(str(kubeconfig), [], 5.0)()
        assert [(p.namespace, p.name, p.ip) for p in watched] == [("shop", "meshed-shop", "10.1.0.9")]
        assert sorted(p.name for p in everywhere) == ["meshed-other", "meshed-shop"]
        assert watched[0].started_at == 1_767_225_600.0
    with pytest.raises(PodListError):
        PodLister.from_kubeconfig(str(kubeconfig), ["shop"], 1.0)()
