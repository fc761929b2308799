"""The sandbox as its users see it: kubectl, the real client, pods talking through ClusterIPs,
and a ``down`` that leaves nothing behind."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes.client.rest import ApiException
from prometheus_client.parser import text_string_to_metric_families

from sandbox import chartrun, netns
from sandbox.apiserver.discovery import RESOURCES
from sandbox.nodes import NODES
from sandbox.product import WORKLOADS
from sandbox.state import StateFile
from sandbox.topology import (
    AGENT_NS,
    DEMO_NS,
    EXPECTED_ISTIO,
    EXPECTED_KAFKA,
    ISTIO_NS,
    ISTIO_STATS_PORT,
    KAFKA_CLIENT_CALLS,
    KAFKA_DENIED,
    KAFKA_NS,
    KAFKA_PRINCIPALS,
)
from tests.e2e.conftest import Sandbox, sandbox_cli
from tests.support.mapper_process import wait_until

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]
POLL = 0.5  # seconds between checks: each asks the sandbox's API or reads a pod's log


def _pod_log(sb: Sandbox, namespace: str, pod: str, **options: Any) -> str:
    # The raw response: kubernetes 36.x returns the repr of the bytes otherwise (#2596).
    response = sb.core.read_namespaced_pod_log(pod, namespace, _preload_content=False, **options)
    return str(response.data.decode())


def _netns_of(sb: Sandbox, namespace: str, app: str) -> str:
    return f"nm-{sb.pod(namespace, app).metadata.name}"[:64]


def test_kubectl_lists_every_pod_with_its_ip(sandbox: Sandbox) -> None:
    out = subprocess.run(
        ["kubectl", "--kubeconfig", str(sandbox.kubeconfig), "get", "pods", "-A", "-o", "wide"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    everything = sandbox.core.list_pod_for_all_namespaces().items
    # `helm test` pods run to completion (tests/e2e/test_chart_in_sandbox.py): not part of the count.
    pods = [p for p in everything if "helm.sh/hook" not in (p.metadata.annotations or {})]
    chart = chartrun.render(
        chartrun.sandbox_values("http://cloud", "t"), AGENT_NS, [r.kind for r in RESOURCES]
    )
    # A DaemonSet of the chart has a pod on each node (sandbox.nodes).
    chart_pods = sum(len(NODES) if w["kind"] == "DaemonSet" else 1 for w in chart.workloads)
    assert len(pods) == len(WORKLOADS) + chart_pods
    for p in pods:
        line = next((ln for ln in out.splitlines() if f" {p.metadata.name} " in ln), "")
        assert p.status.pod_ip and p.status.pod_ip in line, f"{p.metadata.name} missing from:\n{out}"
        assert "Running" in line


def test_services_and_endpoints_are_published(sandbox: Sandbox) -> None:
    services = {s.metadata.name: s for s in sandbox.core.list_namespaced_service(DEMO_NS).items}
    endpoints = {e.metadata.name: e for e in sandbox.core.list_namespaced_endpoints(DEMO_NS).items}
    cart = sandbox.pod(DEMO_NS, "cartservice")
    assert services["cartservice"].spec.cluster_ip.startswith("10.96.")
    assert endpoints["cartservice"].subsets[0].addresses[0].ip == cart.status.pod_ip


CLIENT = r"""
import socket, sys
name, port = sys.argv[1], int(sys.argv[2])
ip = socket.getaddrinfo(name, port, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
s = socket.create_connection((ip, port), timeout=5)
print(ip, s.getsockname()[1], flush=True)
print(open("/proc/self/net/tcp").read(), flush=True)
print("END", flush=True)
sys.stdin.readline()  # hold the connection until the test has looked at the server
"""


def _hex_addr(ip: str, port: int) -> str:
    """An address as /proc/net/tcp prints it (little-endian IPv4, big-endian port)."""
    return socket.inet_aton(ip)[::-1].hex().upper() + f":{port:04X}"


def test_pod_reaches_a_service_by_dns_through_its_cluster_ip(sandbox: Sandbox) -> None:
    cluster_ip = sandbox.core.read_namespaced_service("cartservice", DEMO_NS).spec.cluster_ip
    server_ip = sandbox.pod(DEMO_NS, "cartservice").status.pod_ip
    client_ip = sandbox.pod(DEMO_NS, "frontend").status.pod_ip
    client_ns = _netns_of(sandbox, DEMO_NS, "frontend")
    proc = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            client_ns,
            sys.executable,
            "-c",
            CLIENT,
            f"cartservice.{DEMO_NS}.svc.cluster.local",
            "7070",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        resolved, local_port = proc.stdout.readline().split()
        tcp_table = "".join(iter(proc.stdout.readline, "END\n"))
        assert resolved == cluster_ip
        # The client's socket shows the ClusterIP, not the pod: DNAT happened on the node.
        assert f"{_hex_addr(client_ip, int(local_port))} {_hex_addr(cluster_ip, 7070)} 01" in tcp_table
        server_ns = _netns_of(sandbox, DEMO_NS, "cartservice")
        deadline = time.monotonic() + 10
        seen = ""
        while time.monotonic() < deadline:
            seen = subprocess.run(
                ["ip", "netns", "exec", server_ns, "ss", "-tnH", "state", "established"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            if f"{server_ip}:7070 {client_ip}:{local_port}" in " ".join(seen.split()):
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"server never saw {client_ip}:{local_port}; it has:\n{seen}")
        proc.stdin.write("\n")
        proc.stdin.flush()
    finally:
        proc.wait(timeout=10)


def test_non_root_gets_one_clear_line() -> None:
    result = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            sys.executable,
            "-m",
            "sandbox",
            "status",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parents[2],
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "sandbox: must run as root (it creates network namespaces and nftables rules)"
    ]


def test_live_traffic_covers_the_demo_map(sandbox: Sandbox) -> None:
    """What ``make demo`` shows: each expected edge (but the held Redis connection, which makes
    no new SYN) is seen on the nodes as a DNS answer and a connection to the Service (on the
    client's node, before the DNAT)."""
    from sandbox.topology import EXPECTED_DEMO_MAP, EXTERNAL_NAMES, EXTERNAL_SUFFIXES
    from sandbox.traffic import capture
    from sandbox.views import ip_to_pod

    names = ip_to_pod(sandbox.state_dir)
    summary = capture([n.netns for n in NODES], 6.0, names)
    seen: dict[str, set[str]] = {}
    for client in summary.clients:
        app = client.client.split("/")[-1].rsplit("-", 2)[0]
        for conn in client.connections:
            if conn.server_name and conn.server_name.startswith(f"svc {DEMO_NS}/"):
                seen.setdefault(app, set()).add(conn.server_name.split("/")[1])
        for name, _ in client.dns_answers:
            external = name in EXTERNAL_NAMES or any(name.endswith(f".{s}") for s in EXTERNAL_SUFFIXES)
            assert name.endswith(".svc.cluster.local") or external, name
    expected = {c: set(s) - {"redis-cart"} for c, s in EXPECTED_DEMO_MAP.items()}
    assert {c: s for c, s in seen.items() if c in expected} == {c: s for c, s in expected.items() if s}


# The KRaft authorizer's audit line (StandardAuthorizerData.buildAuditMessage) under log4j's
# "[%d] %p %m (%c)%n", for topics; principals may hold commas and spaces.
KAFKA_AUDIT = re.compile(
    r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\] (?P<level>DEBUG|INFO) Principal = (?P<principal>.+?) "
    r"is (?P<result>Allowed|Denied) operation = (?P<op>[A-Z_]+) from host = (?P<host>\S+) "
    r"on resource = Topic:LITERAL:(?P<topic>\S+) for request = (?P<request>\w+) "
    r"with resourceRefCount = 1 based on rule \S.* \(kafka\.authorizer\.logger\)$"
)
KAFKA_OPERATIONS = {"READ": "CONSUME", "WRITE": "PRODUCE", "DESCRIBE": "DESCRIBE"}


def test_kafka_broker_logs_its_clients_accesses_with_their_pod_ips(sandbox: Sandbox) -> None:
    """kafka-0's log, read through the API as a watcher would, carries an authorizer line for
    each access its clients make, from their own pod IPs: the tutorial's expected result, and
    client2's denied attempt on "payments"."""
    broker = sandbox.pod(KAFKA_NS, "kafka")
    assert broker.metadata.name == "kafka-0"
    app_of = {sandbox.pod(KAFKA_NS, app).status.pod_ip: app for app in KAFKA_CLIENT_CALLS}
    seen: dict[str, dict[str, dict[str, set[str]]]] = {}

    def complete() -> bool:
        seen.clear()
        for line in _pod_log(sandbox, KAFKA_NS, "kafka-0").splitlines():
            if not (m := KAFKA_AUDIT.match(line)):
                continue
            app = app_of[m["host"]]  # any other host would be a bug: KeyError fails the test
            assert m["principal"] == KAFKA_PRINCIPALS[app], line
            assert (m["level"] == "DEBUG") == (m["result"] == "Allowed"), line
            ops = seen.setdefault(m["result"], {}).setdefault(app, {}).setdefault(m["topic"], set())
            ops.add(KAFKA_OPERATIONS[m["op"]])
        return seen.get("Allowed") == EXPECTED_KAFKA and seen.get("Denied") == KAFKA_DENIED

    wait_until(complete, 30, lambda: f"the expected accesses in kafka-0's log; seen {seen}", interval=POLL)
    text = _pod_log(sandbox, KAFKA_NS, "kafka-0")
    assert "] INFO [KafkaRaftServer nodeId=0] Kafka Server started (kafka.server.KafkaRaftServer)" in text
    assert " on resource = Group:LITERAL:client-group for request = OffsetCommit " in text


def _container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in pod["status"]["containerStatuses"] if s["name"] == name)


def _kubectl_pod(sb: Sandbox, namespace: str, name: str) -> dict[str, Any]:
    out = subprocess.run(
        ["kubectl", "--kubeconfig", str(sb.kubeconfig), "get", "pod", "-n", namespace, name, "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return dict(json.loads(out))


def test_restarting_a_container_counts_it_and_keeps_its_previous_log(sandbox: Sandbox) -> None:
    """``python -m sandbox restart`` restarts one container of a two-container pod: kubectl sees its
    restartCount go up and a new containerID, ``previous=true`` returns the old instance's log, and
    the new instance's log starts afresh."""
    pod = sandbox.pod(ISTIO_NS, "client2").metadata.name
    proxy = "istio-proxy"
    wait_until(
        lambda: "via_upstream" in _pod_log(sandbox, ISTIO_NS, pod, container=proxy),
        30,
        "proxied calls",
        interval=POLL,
    )
    before = _kubectl_pod(sandbox, ISTIO_NS, pod)
    old_log = _pod_log(sandbox, ISTIO_NS, pod, container=proxy)
    result = sandbox_cli("restart", ISTIO_NS, pod, proxy, state_dir=sandbox.state_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    after = _kubectl_pod(sandbox, ISTIO_NS, pod)
    old, new = _container(before, proxy), _container(after, proxy)
    assert new["restartCount"] == old["restartCount"] + 1
    assert new["containerID"] != old["containerID"] and new["containerID"].startswith("containerd://")
    assert new["lastState"]["terminated"]["containerID"] == old["containerID"]
    assert "running" in new["state"] and new["ready"] is True
    assert _container(after, "client2")["restartCount"] == _container(before, "client2")["restartCount"]
    previous = _pod_log(sandbox, ISTIO_NS, pod, container=proxy, previous=True)
    assert previous.startswith(old_log)
    # The new instance's log starts empty; its first line is the new process's start.
    wait_until(
        lambda: _pod_log(sandbox, ISTIO_NS, pod, container=proxy) != "",
        30,
        "the new instance's log",
        interval=POLL,
    )
    current = _pod_log(sandbox, ISTIO_NS, pod, container=proxy)
    assert current.startswith("istio-proxy stand-in for ")
    old_request_ids = set(
        re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", previous)
    )
    assert old_request_ids and not any(rid in current for rid in old_request_ids)
    with pytest.raises(ApiException) as caught:
        sandbox.core.read_namespaced_pod_log(pod, ISTIO_NS, container="client2", previous=True)
    assert caught.value.status == 400
    assert json.loads(caught.value.body)["message"] == (
        f'previous terminated container "client2" in pod "{pod}" not found'
    )


def test_a_crashed_container_is_restarted_and_counted(sandbox: Sandbox) -> None:
    """kill -9 of a container's process: the kubelet restarts it (restartPolicy Always), reports
    exit code 137 as its last state, and keeps the dead instance's log as the previous log."""
    pod = sandbox.pod(KAFKA_NS, "client").metadata.name
    wait_until(
        lambda: " -> OK " in _pod_log(sandbox, KAFKA_NS, pod), 30, "the client's first answers", interval=POLL
    )
    before = _container(_kubectl_pod(sandbox, KAFKA_NS, pod), "client")
    os.kill(StateFile(sandbox.state_dir).load().pids[f"{KAFKA_NS}/{pod}"], signal.SIGKILL)

    def restarted() -> bool:
        now = _container(_kubectl_pod(sandbox, KAFKA_NS, pod), "client")
        return now["restartCount"] == before["restartCount"] + 1 and "running" in now["state"]

    wait_until(restarted, 30, "the client's new instance", interval=POLL)
    last = _container(_kubectl_pod(sandbox, KAFKA_NS, pod), "client")["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"], last["containerID"]) == (137, "Error", before["containerID"])
    assert " -> OK " in _pod_log(sandbox, KAFKA_NS, pod, previous=True)


def _scrape(ip: str) -> str:
    with netns.entered("nm-node"):  # as the mapper's Istio watcher would, from inside the cluster
        reply = requests.get(f"http://{ip}:{ISTIO_STATS_PORT}/stats/prometheus", timeout=5)
    reply.raise_for_status()
    return reply.text


def _requests_total(text: str, reporter: str) -> dict[tuple[str, str, str, str], float]:
    """(source, destination, method, path without query and with ids as {id}) → count."""
    counts: dict[tuple[str, str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name != "istio_requests_total" or labels["reporter"] != reporter:
                continue
            route = labels["request_path"].partition("?")[0]
            path = "/".join("{id}" if part.isdigit() else part for part in route.split("/"))
            key = (labels["source_workload"], labels["destination_workload"], labels["request_method"], path)
            counts[key] = counts.get(key, 0.0) + sample.value
    return counts


def _as_expected(
    counts: dict[tuple[str, str, str, str], float],
) -> dict[tuple[str, str], dict[str, set[str]]]:
    found: dict[tuple[str, str], dict[str, set[str]]] = {}
    for src, dst, method, path in counts:
        found.setdefault((src, dst), {}).setdefault(path, set()).add(method)
    return found


def test_server_sidecar_counts_the_clients_requests(sandbox: Sandbox) -> None:
    """The server's istio-proxy stand-in serves Prometheus text whose istio_requests_total rises
    with the clients' real calls, and whose series are the tutorial's expected result."""
    server = sandbox.pod(ISTIO_NS, "server")
    labels = server.metadata.labels
    assert (
        labels["security.istio.io/tlsMode"] == "istio"
        and labels["service.istio.io/canonical-name"] == "server"
    )
    assert [c.name for c in server.spec.containers] == ["server", "istio-proxy"]
    first = _requests_total(_scrape(server.status.pod_ip), "destination")
    latest: dict[tuple[str, str, str, str], float] = {}

    def risen() -> bool:
        latest.update(_requests_total(_scrape(server.status.pod_ip), "destination"))
        keys = {
            (c, s, m, p) for (c, s), paths in EXPECTED_ISTIO.items() for p, ms in paths.items() for m in ms
        }
        return all(latest.get(k, 0.0) > first.get(k, 0.0) for k in keys)

    wait_until(risen, 30, lambda: f"every expected call counted again; have {latest}", interval=POLL)
    assert _as_expected(latest) == EXPECTED_ISTIO
    text = _scrape(server.status.pod_ip)
    sample = next(
        s
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "istio_requests_total" and s.labels["source_workload"] == "client"
    )
    assert sample.labels["destination_service"] == f"server.{ISTIO_NS}.svc.cluster.local"
    assert sample.labels["source_principal"] == f"spiffe://cluster.local/ns/{ISTIO_NS}/sa/client"
    assert sample.labels["connection_security_policy"] == "mutual_tls"
    # The client's own sidecar reports the same calls as their source, naming the server it reached.
    client_side = _requests_total(_scrape(sandbox.pod(ISTIO_NS, "client").status.pod_ip), "source")
    assert ("client", "server", "POST", "/api/orders/{id}") in client_side
    assert {c for c, _, _, _ in client_side} == {"client"}
