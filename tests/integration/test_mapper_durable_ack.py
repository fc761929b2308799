"""Acknowledged means durable: a report mutation the mapper answered ``true`` survives ``kill -9``.

The real mapper process (a small report queue, so a flood fills it) is flooded with DNS reports
from several threads until some are answered "mapper busy" (the queue is full: batches are
waiting); it is then killed with SIGKILL, restarted on the same data dir, and every observation
whose mutation was answered ``true`` must be in the map as the edge it implies.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from agent.model import InternetTarget, Target, WorkloadIdentity
from tests.support.mapper_process import (
    DNS_MUTATION,
    FRONTEND,
    Cluster,
    MapperProcess,
    now_rfc3339,
    running_cluster,
)

SENDERS = 6
BATCH = 300  # DNS answers per report: enough that resolving and recording a batch takes a while
QUEUE_BATCHES = 2  # a small queue, so the flood finds it full
ACKS_BEFORE_KILL = 8
FLOOD_DEADLINE = 60.0
BUSY = "MAPPER_BUSY"

Key = tuple[WorkloadIdentity, Target]


def _ip(j: int) -> str:
    return f"203.0.113.{j % 250 + 1}"


def _report(thread: int, n: int) -> tuple[dict[str, Any], list[Key]]:
    """One report (the sniffer's document and variables) of unique names, and the edges it implies."""
    names = [f"r{thread}-b{n}-n{j}.durable-example.com" for j in range(BATCH)]
    seen = now_rfc3339()
    destinations = [
        {"destination": name, "destinationIP": _ip(j), "TTL": 60, "lastSeen": seen}
        for j, name in enumerate(names)
    ]
    body = {
        "query": DNS_MUTATION,
        "variables": {
            "results": {"results": [{"srcIp": "", "srcHostname": "", "destinations": destinations}]}
        },
    }
    keys: list[Key] = [(FRONTEND, InternetTarget(name, (_ip(j),), 0)) for j, name in enumerate(names)]
    return body, keys


class Flood:
    """Sender threads posting reports until stopped or the mapper goes away."""

    def __init__(self, mapper: MapperProcess) -> None:
        self._mapper = mapper
        self._src_ip = mapper.cluster.pod_ips[FRONTEND]
        self._lock = threading.Lock()
        self.acknowledged: set[Key] = set()
        self.acks = 0
        self.busy = 0
        self.other: list[str] = []
        self.stop = threading.Event()
        self.progress = threading.Condition(self._lock)
        self._threads = [threading.Thread(target=self._send, args=(t,), daemon=True) for t in range(SENDERS)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(30)
            assert not thread.is_alive(), "a sender did not stop"

    def _send(self, thread: int) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self._mapper.token}"
        n = 0
        while not self.stop.is_set():
            body, keys = _report(thread, n)
            body["variables"]["results"]["results"][0]["srcIp"] = self._src_ip
            n += 1
            try:
                reply = session.post(self._mapper.query_url, json=body, timeout=30)
            except requests.RequestException:
                return  # the mapper was killed: this report's fate is unknown, it was not acknowledged
            answer = reply.json() if reply.status_code == 200 else {}
            with self.progress:
                if answer.get("data") == {"reportCaptureResults": True} and not answer.get("errors"):
                    self.acknowledged.update(keys)
                    self.acks += 1
                elif any(
                    e.get("extensions", {}).get("code") == "MAPPER_BUSY" for e in answer.get("errors", ())
                ):
                    self.busy += 1
                else:
                    self.other.append(f"{reply.status_code} {reply.text[:200]}")
                self.progress.notify_all()

    def wait_until_queued(self) -> None:
        """Until reports were refused busy (the queue was full) and some were acknowledged."""
        deadline = time.monotonic() + FLOOD_DEADLINE
        with self.progress:
            while not (self.busy and self.acks >= ACKS_BEFORE_KILL):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    pytest.fail(f"flood: {self.acks} acknowledged, {self.busy} busy in {FLOOD_DEADLINE}s")
                self.progress.wait(remaining)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with running_cluster(tmp_path_factory.mktemp("durable-ack-cluster")) as running:
        yield running


@pytest.mark.slow
@pytest.mark.parametrize("attempt", range(5))
def test_acknowledged_reports_survive_kill_9(cluster: Cluster, tmp_path: Path, attempt: int) -> None:
    env = {"MAPPER_QUEUE_BATCHES": str(QUEUE_BATCHES)}
    mapper = MapperProcess(cluster, tmp_path, env=env)
    with mapper:
        flood = Flood(mapper)
        flood.start()
        try:
            flood.wait_until_queued()
        finally:
            mapper.kill()  # SIGKILL while the senders are still sending and the queue holds batches
            flood.join()
    assert not flood.other, flood.other[:3]
    acknowledged = set(flood.acknowledged)

    with MapperProcess(cluster, tmp_path, env=env) as restarted:  # the same data dir
        stored = {e.key for e in restarted.edges() if e.client == FRONTEND}
    missing = acknowledged - stored
    assert not missing, (
        f"{len(missing)} of {len(acknowledged)} acknowledged edges lost, e.g. {sorted(missing)[:2]}"
    )
