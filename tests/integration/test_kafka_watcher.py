"""The Kafka watcher process (``python -m agent.watchers.kafkawatcher``) against the sandbox's
Kubernetes API server (in this process, over real HTTP, serving CRI log files written through
``sandbox.kubelet.log_path`` as the sandbox's kubelet writes them) and the real mapper API app
(under uvicorn, its observation log counting what arrives).

One run: history written before the watcher starts is never reported; broker lines arriving over
three polls (the second in the same second as the first, so ``sinceTime`` reads overlap), across a
container restart (restartCount raised in the pod status, the old log moved to the previous
file), from a pod created after the start, and from a log file rotated by rename (a line split
across the rotation) each arrive once: every line makes a distinct (client, topic, operation), and
the mapper observes each exactly once with the kubelet's timestamp; the line counters are exact.
A denied access arrives with allowed=false; group/cluster lines and unparsed lines are counted in
/metrics; a pod outside the glob is not read; SIGTERM ends the process cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import client

from agent.model import KafkaAccess
from agent.wire import parse_time
from sandbox.kubelet import cri_timestamp, log_path
from tests.support.apiserver import running_api
from tests.support.mapper_app import MapperServer, ObservationLog, mapper_app
from tests.support.mapper_process import wait_until

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "kafka"
NS = "kafka"
TOKEN = "kafka-watcher-token-5d1e"
POLL = 0.2

# Real broker lines (tests/data/kafka): an allowed Read, a group access, an unparsable audit line.
_ACL = (DATA / "aclauthorizer.log").read_text(encoding="utf-8").splitlines()
READ_LINE, GROUP_LINE = _ACL[1], _ACL[2]
UNPARSED_LINE = (DATA / "malformed.log").read_text(encoding="utf-8").splitlines()[0]
PLAIN_LINE = (DATA / "broker-other.log").read_text(encoding="utf-8").splitlines()[0]
PRINCIPAL = "User:CN=client,OU=Dev Team,O=Example\\, Inc.,C=US"
_ACCESS = (
    " is Allowed Operation = Read from host = 10.244.0.27 on resource = Topic:LITERAL:orders.v1-eu_west "
)
assert _ACCESS in READ_LINE


STORED_OPERATIONS = {"Read": "consume", "Write": "produce"}


def audit(host: str, topic: str, operation: str = "Read", allowed: bool = True) -> str:
    """The fixture's Read line, for another client, topic, operation or result."""
    result = "Allowed" if allowed else "Denied"
    access = f" is {result} Operation = {operation} from host = {host} on resource = Topic:LITERAL:{topic} "
    return READ_LINE.replace(_ACCESS, access)


class WatcherProcess:
    """The watcher as a child process; its output is collected by a thread."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.output: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agent.watchers.kafkawatcher", *argv],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._collect, daemon=True).start()
        self.health_url = ""
        wait_until(self._found_health_url, 30, "the watcher's health endpoint")

    def _collect(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

    def _found_health_url(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"the watcher exited {self.process.returncode}:\n{''.join(self.output)}")
        for line in list(self.output):
            match = re.search(r"health endpoint listening url=(\S+)", line)
            if match:
                self.health_url = match.group(1)
                return True
        return False

    def metrics(self) -> dict[str, float]:
        text = requests.get(f"{self.health_url}/metrics", timeout=5).text
        return {m[1]: float(m[2]) for m in re.finditer(r"^network_mapper_kafka_(\w+) (\S+)$", text, re.M)}

    def metric(self, name: str) -> float:
        return self.metrics()[name]

    def wait_polls(self, count: int = 2) -> None:
        """Until ``count`` more polls have completed: a line written before has been read."""
        target = self.metric("polls_total") + count
        wait_until(lambda: self.metric("polls_total") >= target, 30, f"{count} more polls")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    (tmp_path / "logs").mkdir()
    return tmp_path / "logs"


@pytest.fixture
def v1(log_dir: Path, tmp_path: Path) -> Iterator[client.CoreV1Api]:
    with running_api(tmp_path, log_dir) as running:  # its kubeconfig: tmp_path / "kubeconfig"
        running.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
        yield running.core


@pytest.fixture
def mapper() -> Iterator[tuple[MapperServer, ObservationLog]]:
    observed = ObservationLog()
    with MapperServer(mapper_app(TOKEN, observed)) as server:
        yield server, observed


def container_status(name: str, instance: int, restarts: int = 0) -> dict[str, Any]:
    status: dict[str, Any] = {
        "name": name,
        "containerID": f"containerd://{name}-{instance}",
        "ready": True,
        "restartCount": restarts,
        "image": "kafka",
        "imageID": "",
        "state": {"running": {"startedAt": "2024-05-01T12:00:00Z"}},
    }
    if restarts:
        finished = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        status["lastState"] = {"terminated": {"exitCode": 1, "finishedAt": finished}}
    return status


def make_pod(v1: client.CoreV1Api, name: str, containers: list[str], ip: str) -> None:
    body = {
        "metadata": {"name": name},
        "spec": {"nodeName": "node-1", "containers": [{"name": c, "image": "kafka"} for c in containers]},
        "status": {
            "phase": "Running",
            "podIP": ip,
            "containerStatuses": [container_status(c, 1) for c in containers],
        },
    }
    v1.create_namespaced_pod(NS, body)


class Broker:
    """Writes a pod's CRI log as the kubelet does, and what the mapper should observe of it."""

    def __init__(self, log_dir: Path, pod: str, expected: dict[tuple[Any, ...], float | None]) -> None:
        self.log_dir, self.pod, self.expected = log_dir, pod, expected
        self.path = log_path(log_dir, NS, pod)  # the first container's file

    def write(self, lines: list[tuple[datetime, str]], path: Path | None = None) -> None:
        with (path or self.path).open("a", encoding="utf-8") as handle:
            for moment, message in lines:
                handle.write(f"{cri_timestamp(moment)} stdout F {message}\n")
        for moment, message in lines:
            expect(self.expected, message, self.pod, parse_time(cri_timestamp(moment)))


def expect(expected: dict[tuple[Any, ...], float | None], message: str, pod: str, seen: float | None) -> None:
    match = re.search(
        r" is (Allowed|Denied) Operation = (\w+) from host = (\S+) on resource = Topic:LITERAL:(\S+) ",
        message,
    )
    if match and message != UNPARSED_LINE:
        result, operation, host, topic = match.groups()
        stored = STORED_OPERATIONS.get(operation, operation.lower())  # the mapper's one spelling
        key = (host, pod, topic, stored, result == "Allowed")
        assert key not in expected, "each line is made to be a distinct access"
        expected[key] = seen


def observed_keys(observed: ObservationLog) -> Counter[tuple[Any, ...]]:
    found: Counter[tuple[Any, ...]] = Counter()
    for o in observed.observations():
        assert isinstance(o, KafkaAccess)
        assert o.server.namespace == NS and o.server.kind == "Pod" and o.principal == PRINCIPAL
        found[(o.client_ip, o.server.name, o.topic, o.operation, o.allowed)] += 1
    return found


def test_lines_over_polls_restarts_and_rotation_are_each_reported_once(
    v1: client.CoreV1Api,
    log_dir: Path,
    tmp_path: Path,
    mapper: tuple[MapperServer, ObservationLog],
) -> None:
    server, observed = mapper
    expected: dict[tuple[Any, ...], float | None] = {}
    kafka0, kafka1, late = (Broker(log_dir, p, expected) for p in ("kafka-0", "kafka-1", "kafka-2"))
    make_pod(v1, "kafka-0", ["kafka", "jmx-exporter"], "10.244.1.10")
    make_pod(v1, "kafka-1", ["kafka"], "10.244.1.11")
    make_pod(v1, "zookeeper-0", ["zookeeper"], "10.244.1.20")
    file_log = tmp_path / "broker-logs" / "server.log"
    file_log.parent.mkdir()

    # History: logged before the watcher starts, never reported.
    past = datetime.now(UTC) - timedelta(minutes=5)
    for path in (kafka0.path, kafka1.path):
        with path.open("a", encoding="utf-8") as handle:
            handle.write(f"{cri_timestamp(past)} stdout F {audit('10.244.9.1', 'history')}\n")
    file_log.write_text(audit("10.244.9.2", "history") + "\n", encoding="utf-8")

    env = {**os.environ, "NETWORK_MAPPER_TOKEN": TOKEN, "PYTHONPATH": str(REPO)}
    watcher = WatcherProcess(
        [
            "--kubeconfig", str(tmp_path / "kubeconfig"),
            "--kafka-servers", "kafka-*.kafka",
            "--log-files", f"{file_log}=kafka-file-0.{NS}",
            "--mapper-url", server.url,
            "--poll-interval", str(POLL),
            "--report-interval", str(POLL),
            "--health-address", "127.0.0.1:0",
        ],
        env,
    )  # fmt: skip
    try:
        watcher.wait_polls(1)
        lines_written = 0

        # Three polls of kafka-0; the first two batches in one second, so the reads overlap.
        second = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
        batches = [
            [(second + timedelta(milliseconds=100), audit("10.244.2.1", "orders")),
             (second + timedelta(milliseconds=100), GROUP_LINE),
             (second + timedelta(milliseconds=110), audit("10.244.2.2", "orders", "Write", allowed=False))],
            [(second + timedelta(milliseconds=300), audit("10.244.2.3", "orders", "Describe")),
             (second + timedelta(milliseconds=310), UNPARSED_LINE),
             (second + timedelta(milliseconds=320), PLAIN_LINE)],
            [(second + timedelta(milliseconds=1050), audit("10.244.2.4", "payments", "Write")),
             (second + timedelta(milliseconds=1060), audit("10.244.2.1", "payments"))],
        ]  # fmt: skip
        for batch in batches:
            kafka0.write(batch)
            lines_written += len(batch)
            watcher.wait_polls()
        # A pod outside the glob: not read.
        Broker(log_dir, "zookeeper-0", {}).write([(datetime.now(UTC), audit("10.244.9.3", "zk"))])

        # kafka-1 restarts: lines before, the old instance's last words after the last poll of it
        # (they reach the previous log only), then the new instance's.
        kafka1.write([(datetime.now(UTC), audit("10.244.3.1", "inventory"))])
        watcher.wait_polls()
        previous = log_path(log_dir, NS, "kafka-1", previous=True)
        kafka1.path.replace(previous)
        kafka1.write([(datetime.now(UTC), audit("10.244.3.2", "inventory", "Write"))], previous)
        patch = {"status": {"containerStatuses": [container_status("kafka", 2, restarts=1)]}}
        v1.patch_namespaced_pod_status("kafka-1", NS, patch)
        watcher.wait_polls()
        kafka1.write([(datetime.now(UTC), audit("10.244.3.3", "inventory", "Read"))])
        watcher.wait_polls()
        lines_written += 3

        # A pod created after the start: what it logged before the watcher saw it is read.
        late.write([(datetime.now(UTC), audit("10.244.4.1", "late-topic"))])
        make_pod(v1, "kafka-2", ["kafka"], "10.244.1.12")
        watcher.wait_polls()
        lines_written += 1

        # The log file: a line, then a rotation by rename with a line split across it.
        with file_log.open("a", encoding="utf-8") as handle:
            handle.write(audit("10.244.5.1", "files") + "\n")
        expect(expected, audit("10.244.5.1", "files"), "kafka-file-0", None)
        watcher.wait_polls()
        split = audit("10.244.5.2", "files", "Write")
        with file_log.open("a", encoding="utf-8") as handle:
            handle.write(split[:40])
        watcher.wait_polls()
        rotated = file_log.with_name("server.log.1")
        file_log.rename(rotated)
        with rotated.open("a", encoding="utf-8") as handle:
            handle.write(split[40:] + "\n")
        file_log.write_text(
            audit("10.244.5.3", "files", "Describe") + "\n" + GROUP_LINE + "\n", encoding="utf-8"
        )
        for message in (split, audit("10.244.5.3", "files", "Describe")):
            expect(expected, message, "kafka-file-0", None)
        lines_written += 4

        wait_until(lambda: set(observed_keys(observed)) == set(expected), 30, "every access at the mapper")
        # Some more polls and reports: nothing read twice, nothing reported twice.
        watcher.wait_polls(5)
        wait_until(lambda: watcher.metric("accesses_pending") == 0, 30, "nothing left to report")
        found = observed_keys(observed)
        assert found == Counter(dict.fromkeys(expected, 1))
        for o in observed.observations():
            assert isinstance(o, KafkaAccess)
            stamp = expected[(o.client_ip, o.server.name, o.topic, o.operation, o.allowed)]
            if stamp is not None:  # a pod line: its time is the kubelet's timestamp
                assert o.seen_at == stamp
        denied = [o for o in observed.observations() if isinstance(o, KafkaAccess) and not o.allowed]
        assert [(d.client_ip, d.topic, d.operation) for d in denied] == [("10.244.2.2", "orders", "produce")]

        metrics = watcher.metrics()
        assert metrics["lines_read_total"] == lines_written
        assert metrics["accesses_total"] == len(expected) == 12
        assert metrics["lines_other_resource_total"] == 2
        assert metrics["lines_unparsed_total"] == 1
        assert metrics["accesses_dropped_total"] == 0
        assert metrics["report_failures_total"] == 0
        assert metrics["reports_sent_total"] >= 1
        assert metrics["poll_failures_total"] == 0
        assert requests.get(f"{watcher.health_url}/healthz", timeout=5).text == "ok\n"
    finally:
        code = watcher.stop()
    assert code == 0, "".join(watcher.output)
    assert TOKEN not in "".join(watcher.output)


def test_a_named_container_is_read_and_a_wrong_name_is_counted_not_fatal(
    v1: client.CoreV1Api,
    log_dir: Path,
    tmp_path: Path,
    mapper: tuple[MapperServer, ObservationLog],
) -> None:
    """``POD.NAMESPACE:CONTAINER`` reads that container's log (here not the pod's first); a
    container the pod lacks makes the API refuse each read: counted as poll failures, the
    watcher stays healthy and keeps reading the rest."""
    server, observed = mapper
    make_pod(v1, "broker-0", ["istio-proxy", "broker"], "10.244.1.30")
    env = {**os.environ, "NETWORK_MAPPER_TOKEN": TOKEN, "PYTHONPATH": str(REPO)}
    watcher = WatcherProcess(
        [
            "--kubeconfig", str(tmp_path / "kubeconfig"),
            "--kafka-servers", f"broker-0.{NS}:broker,broker-0.{NS}:no-such-container",
            "--mapper-url", server.url,
            "--poll-interval", str(POLL),
            "--report-interval", str(POLL),
            "--health-address", "127.0.0.1:0",
        ],
        env,
    )  # fmt: skip
    try:
        watcher.wait_polls(1)
        now = datetime.now(UTC)
        proxy = log_path(log_dir, NS, "broker-0")  # the first container: istio-proxy
        broker = log_path(log_dir, NS, "broker-0", "broker")
        proxy.write_text(
            f"{cri_timestamp(now)} stdout F {audit('10.244.6.1', 'not-this-one')}\n", encoding="utf-8"
        )
        broker.write_text(
            f"{cri_timestamp(now)} stdout F {audit('10.244.6.2', 'this-one')}\n", encoding="utf-8"
        )
        wait_until(lambda: len(observed.observations()) == 1, 30, "the broker container's access")
        watcher.wait_polls(3)
        [access] = observed.observations()
        assert isinstance(access, KafkaAccess)
        assert (access.client_ip, access.topic, access.server.name) == ("10.244.6.2", "this-one", "broker-0")
        metrics = watcher.metrics()
        assert metrics["poll_failures_total"] >= metrics["polls_total"] >= 4  # a refusal in every poll
        assert metrics["lines_read_total"] == 1
        assert requests.get(f"{watcher.health_url}/healthz", timeout=5).text == "ok\n"
    finally:
        code = watcher.stop()
    assert code == 0
    output = "".join(watcher.output)
    # One WARNING for the refused container, not one per poll.
    assert output.count("read failed what=log of kafka/broker-0:no-such-container") == 1, output
    assert "container no-such-container is not valid for pod broker-0" in output
