"""Traffic control (sandbox.trafficcontrol) on real workload processes in a network namespace of this
test's own (``nmtest-np-<pid>-tc``): ``stop`` makes a ``service`` stop its periodic calls and keep
serving, ``start`` makes it call again, ``add`` runs a caller in the client's namespace that connects to
the server periodically; the control endpoint's traffic paths reach the same actions."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox import control, netns
from sandbox.kubelet import ContainerSpec, PodProcess, log_path
from sandbox.trafficcontrol import TrafficControl, catches
from tests.support.mapper_process import wait_until

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"), reason="needs root and iproute2"),
]

NETNS = f"nmtest-np-{os.getpid()}-tc"
SERVICE_PORT, CALLED_PORT, ADDED_PORT = 18181, 18182, 18183
INTERVAL = 0.1
WAIT = 15.0


class Listener:
    """A TCP server in the namespace that counts the connections it accepted."""

    def __init__(self, port: int) -> None:
        with netns.entered(NETNS):
            self.sock = socket.create_server(("127.0.0.1", port))
        self.accepted = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            while True:
                conn, _ = self.sock.accept()
                conn.close()
                self.accepted += 1
        except OSError:
            return


@pytest.fixture
def namespace() -> Iterator[str]:
    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    subprocess.run(["ip", "-n", NETNS, "link", "set", "lo", "up"], check=True)
    try:
        yield NETNS
    finally:
        subprocess.run(["ip", "netns", "del", NETNS], check=False)


def _lines(path: Path, text: str) -> int:
    return path.read_text().count(text) if path.exists() else 0


def test_stop_start_and_add(namespace: str, tmp_path: Path) -> None:
    called, added = Listener(CALLED_PORT), Listener(ADDED_PORT)
    argv: tuple[str, ...] = ("-m", "sandbox.workloads", "service", "--port", str(SERVICE_PORT))
    argv += ("--call", f"127.0.0.1:{CALLED_PORT}", "--interval", str(INTERVAL))
    pod = PodProcess("shop", "client-7d4b9-x2x", namespace, [ContainerSpec("client", argv)], log_dir=tmp_path)
    pod.start()
    pids: dict[str, int] = {}
    traffic = TrafficControl(
        lambda ns, server: f"127.0.0.1:{ADDED_PORT}" if (ns, server) == ("shop", "server") else None,
        tmp_path,
        sys.executable,
        pids.__setitem__,
    )
    log = log_path(tmp_path, "shop", pod.pod)
    try:
        wait_until(lambda: called.accepted >= 2, WAIT, "the service's calls")
        wait_until(lambda: catches(pod.pid, 10), WAIT, "the service's SIGUSR1 handler")
        assert not traffic.act([pod], "shop", "cli", "stop", None)  # a prefix of no workload's name
        assert traffic.act([pod], "shop", "client", "stop", None)
        wait_until(lambda: _lines(log, "calls off") == 1, WAIT, "the service saw the stop")
        before = called.accepted
        # An absence needs an observation window: ten call intervals.
        threading.Event().wait(10 * INTERVAL)
        assert called.accepted - before <= 1  # at most the call that was under way
        netns.wait_for_port(namespace, ("127.0.0.1", SERVICE_PORT), timeout=WAIT)  # still serving
        assert traffic.act([pod], "shop", "client", "start", None)
        wait_until(lambda: called.accepted >= before + 3, WAIT, "calls again after start")

        assert not traffic.act([pod], "shop", "client", "add", "nobody")  # no such Service
        assert traffic.act([pod], "shop", "client", "add", "server")
        wait_until(lambda: added.accepted >= 2, WAIT, "the added calls")
        assert set(pids) == {"shop/client-7d4b9-x2x/traffic-server"}
        caller = traffic.callers[("shop", "client", "server")]
        wait_until(lambda: catches(caller.pid, 10), WAIT, "the caller's SIGUSR1 handler")
        assert traffic.act([pod], "shop", "client", "stop", None)  # the pod and its added caller
        caller_log = log_path(tmp_path, "shop", caller.pod)
        wait_until(lambda: _lines(caller_log, "calls off") == 1, WAIT, "the caller saw the stop")
        assert traffic.act([pod], "shop", "client", "remove", "server")  # the caller ends
        assert ("shop", "client", "server") not in traffic.callers
        wait_until(lambda: not Path(f"/proc/{caller.pid}").exists(), WAIT, "the removed caller gone")
        assert not traffic.act([pod], "shop", "client", "remove", "server")  # nothing left to remove
    finally:
        traffic.stop()
        pod.stop()


def test_control_endpoint_traffic_paths() -> None:
    asked: list[tuple[str, str, str, str | None]] = []

    def act(namespace: str, workload: str, action: str, server: str | None) -> bool:
        asked.append((namespace, workload, action, server))
        return workload != "missing"

    server = control.serve(lambda *_: False, lambda: (True, ""), act)
    try:
        port = server.server_address[1]
        assert control.traffic(port, "otterize-ecom-demo", "recommendationservice", "stop")
        assert control.traffic(port, "otterize-ecom-demo", "frontend", "add", "adservice")
        assert control.traffic(port, "otterize-ecom-demo", "frontend", "remove", "adservice")
        assert not control.traffic(port, "otterize-ecom-demo", "missing", "start")
    finally:
        server.shutdown()
    assert asked == [
        ("otterize-ecom-demo", "recommendationservice", "stop", None),
        ("otterize-ecom-demo", "frontend", "add", "adservice"),
        ("otterize-ecom-demo", "frontend", "remove", "adservice"),
        ("otterize-ecom-demo", "missing", "start", None),
    ]
