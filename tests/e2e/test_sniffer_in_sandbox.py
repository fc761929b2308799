"""The real sniffer on the sandbox's node, reporting to a recording stand-in for the mapper.

Acceptance of the sniffer: within 30 s of start it has reported every edge of the
microservices-demo map as DNS or TCP observations, and cartservice → redis-cart — a
connection opened long before the sniffer started, making no DNS queries — through the
socket scan alone.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from sandbox.forward import Forward
from sandbox.network import NODE_NETNS
from sandbox.topology import DEMO_NS, EXPECTED_DEMO_MAP, NODE_IP
from tests.e2e.conftest import Sandbox
from tests.support.recording_mapper import RecordingMapper

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

TOKEN = "e2e-agent-token"


@pytest.fixture
def mapper() -> Iterator[RecordingMapper]:
    with RecordingMapper(token=TOKEN) as rm:
        yield rm


def _start_sniffer(url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", NODE_NETNS, sys.executable, "-m", "agent.sniffer"]
        + ["--mapper-url", url, "--token", TOKEN, "--report-interval", "1", "--socket-scan-interval", "2"]
        + ["--health-address", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_sniffer_reports_the_demo_map_within_30s(sandbox: Sandbox, mapper: RecordingMapper) -> None:
    services = {
        s.metadata.name: s.spec.cluster_ip for s in sandbox.core.list_namespaced_service(DEMO_NS).items
    }
    pod_ip = {app: sandbox.pod(DEMO_NS, app).status.pod_ip for app in services}
    pod_ip["loadgenerator"] = sandbox.pod(DEMO_NS, "loadgenerator").status.pod_ip
    # The sniffer runs in the node namespace; it reaches the stand-in through a forward.
    forward = Forward((NODE_IP, 0), ("127.0.0.1", mapper.port), listen_ns=NODE_NETNS).start()
    sniffer = _start_sniffer(f"http://{NODE_IP}:{forward.port}/query")
    started = time.monotonic()
    missing: set[tuple[str, str]] = set()
    try:
        while time.monotonic() - started < 30:
            got = mapper.pairs_by_mutation()
            dns = got.get("reportCaptureResults", set())
            tcp = got.get("reportTCPCaptureResults", set())
            scan = got.get("reportSocketScanResults", set())
            missing = set()
            for client, servers in EXPECTED_DEMO_MAP.items():
                for server in servers:
                    src = pod_ip[client]
                    if server == "redis-cart":
                        ok = any(s == src and port == 6379 for s, _, port in scan)
                    else:
                        fqdn = f"{server}.{DEMO_NS}.svc.cluster.local"
                        ok = any(s == src and d == fqdn for s, d, _ in dns) or any(
                            s == src and d == services[server] for s, d, _ in tcp
                        )
                    if not ok:
                        missing.add((client, server))
            if not missing:
                break
            assert sniffer.poll() is None, sniffer.communicate()[0]
            time.sleep(0.5)
        assert not missing, f"not reported within 30 s: {sorted(missing)}"
        # The Redis connection predates the sniffer: no SYN of it can have been captured.
        assert not any(s == pod_ip["cartservice"] and port == 6379 for s, _, port in tcp)
    finally:
        sniffer.terminate()
        out = sniffer.communicate(timeout=15)[0]
        forward.close()
    assert sniffer.returncode == 0, out


def test_a_60s_mapper_outage_loses_nothing(sandbox: Sandbox, mapper: RecordingMapper) -> None:
    """The mapper is down for 60 s while traffic flows; once back, every pair the sniffer saw
    during the outage arrives (each demo client re-resolves each dependency every ~2 s, so every
    (client, service name) pair of the map is seen inside the outage). Pairs are aggregated to
    their latest sighting, so what arrives carries a time at or after the outage's start; the
    exact-set check with controlled observations is tests/integration/test_sniffer_reporting.py."""
    from datetime import datetime

    pod_ip = {app: sandbox.pod(DEMO_NS, app).status.pod_ip for app in EXPECTED_DEMO_MAP}
    expected = {
        (pod_ip[client], f"{server}.{DEMO_NS}.svc.cluster.local")
        for client, servers in EXPECTED_DEMO_MAP.items()
        for server in servers
        if server != "redis-cart"
    }
    forward = Forward((NODE_IP, 0), ("127.0.0.1", mapper.port), listen_ns=NODE_NETNS).start()
    sniffer = _start_sniffer(f"http://{NODE_IP}:{forward.port}/query")
    try:
        deadline = time.monotonic() + 30
        while not mapper.pairs("reportCaptureResults") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert mapper.pairs("reportCaptureResults"), "no report before the outage"
        mapper.stop()
        outage_start = time.time()
        time.sleep(60)  # the outage itself is the thing under test, not a wait for a condition
        before = len(mapper.recorded())
        mapper.start()
        during: set[tuple[str, str]] = set()
        # The reporter's backoff between failed cycles grows to 60 s: allow one full step.
        deadline = time.monotonic() + 75
        while time.monotonic() < deadline and not expected <= during:
            for call in mapper.recorded()[before:]:
                if call.field != "reportCaptureResults":
                    continue
                for src in call.variables["results"]["results"]:
                    for dest in src["destinations"]:
                        seen = datetime.fromisoformat(dest["lastSeen"].replace("Z", "+00:00")).timestamp()
                        if seen >= outage_start:
                            during.add((src["srcIp"], dest["destination"]))
            time.sleep(0.5)
        assert expected <= during, f"lost during the outage: {sorted(expected - during)}"
    finally:
        sniffer.terminate()
        out = sniffer.communicate(timeout=15)[0]
        forward.close()
    assert "pairs_dropped_total': 0" in out, out[-2000:]
    assert "report_failures_total': 0" not in out, out[-2000:]
