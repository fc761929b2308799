"""The sandbox kubelet's probes (sandbox.probes) against a real container process in a real network
namespace: readiness turns true once the server answers; a container that keeps failing its
liveness probe is restarted (a new instance, restart count up); a paused one is left alone."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.kubelet import ContainerSpec, PodProcess
from sandbox.podspec import Probe
from sandbox.probes import TICK, Prober, probe_once
from tests.support.mapper_process import wait_until

NETNS = "nmtest-probes"
IP = "127.0.0.1"
PORT = 18080
WAIT = 20.0  # seconds for a probe round's effect
# Answers /healthz with 200 until the file named in argv[1] exists, then with 500.
SERVER = """
import http.server, os, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(500 if os.path.exists(sys.argv[1]) else 200)
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", 18080), H).serve_forever()
"""


@pytest.fixture
def netns() -> Iterator[str]:
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True, check=False)
    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    subprocess.run(["ip", "netns", "exec", NETNS, "ip", "link", "set", "lo", "up"], check=True)
    yield NETNS
    subprocess.run(["ip", "netns", "del", NETNS], check=False)


def test_readiness_then_liveness_restart_and_pause(netns: str, tmp_path: Path) -> None:
    failing = tmp_path / "fail"
    spec = ContainerSpec("server", ("-c", SERVER, str(failing)))
    pod = PodProcess("ns", "pod", netns, [spec], log_dir=tmp_path).start()
    readiness = Probe("/healthz", PORT, period=0.2, timeout=1.0)
    liveness = Probe("/healthz", PORT, period=0.2, timeout=1.0, failure_threshold=2)
    changes: list[bool] = []
    restarted = threading.Event()

    def dead(p: PodProcess, container: str) -> None:
        restarted.set()
        threading.Thread(target=p.restart, args=(container,), daemon=True).start()

    prober = Prober(lambda _p, ready: changes.append(ready), dead).start()
    try:
        prober.add(pod, netns, IP, {"server": (readiness, liveness)})
        prober.wait_ready(pod, 20)
        assert changes == [True] and probe_once(netns, IP, readiness)
        first = pod.containers[0].state.container_id
        failing.touch()
        wait_until(restarted.is_set, WAIT, "a restart after the liveness probe failed twice")
        failing.unlink()
        wait_until(lambda: pod.containers[0].state.restart_count == 1, WAIT, "the restarted instance")
        assert pod.containers[0].state.container_id != first
        wait_until(lambda: prober.ready(pod), WAIT, "ready again")
        restarted.clear()
        pod.pause()
        wait_until(lambda: not probe_once(netns, IP, readiness), WAIT, "the paused server gone")
        # Ten rounds (over ten liveness periods): a paused container must not be restarted meanwhile.
        start = prober.rounds
        wait_until(lambda: prober.rounds >= start + 10 / TICK * 0.2 + 1, WAIT, "ten liveness periods")
        assert not restarted.is_set()
        pod.resume()
        wait_until(lambda: probe_once(netns, IP, readiness), WAIT, "the resumed server")
    finally:
        prober.stop()
        pod.stop()
