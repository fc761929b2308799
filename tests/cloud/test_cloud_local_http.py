"""The local server over real HTTP (``requests``): the same handler, events built from the wire,
binary bodies, the admin token bootstrap, and the console script's CLI."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from cloud_handler_support import CRD, REPO, demo_edges, recorded

from agent.exports import validate
from cloud_functions.local import serve
from cloud_functions.localserver import CloudServer, ServerSettings


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    running = serve("127.0.0.1:0", tmp_path / "cloud.db", tmp_path / "admin.token")
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{running.server_port}", (tmp_path / "admin.token").read_text().strip()
    finally:
        running.shutdown()
        running.server_close()
        thread.join(5)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_end_to_end_over_http(server: tuple[str, str]) -> None:
    url, admin = server
    with requests.Session() as http:
        tenant = http.post(f"{url}/v1/tenants", json={"name": "acme"}, headers=auth(admin), timeout=10).json()
        owner = auth(tenant["ownerToken"])
        cluster = http.post(
            f"{url}/v1/tenants/{tenant['tenantId']}/clusters",
            json={"name": "prod"},
            headers=owner,
            timeout=10,
        )
        assert cluster.status_code == 201
        minted = http.post(f"{url}/v1/tenants/{tenant['tenantId']}/tokens", headers=owner, timeout=10)
        assert minted.status_code == 201 and minted.json()["role"] == "read"
        read = auth(minted.json()["token"])
        ingest = auth(cluster.json()["ingestToken"])
        batch = {"batchId": "b-1", "anonymized": False, "edges": demo_edges()}
        first = http.post(f"{url}/v1/ingest", json=batch, headers=ingest, timeout=10)
        assert first.status_code == 200 and first.json()["stored"] is True
        again = http.post(f"{url}/v1/ingest", json=batch, headers=ingest, timeout=10)
        assert again.status_code == 200 and again.json() == {"stored": False, "edgesWritten": 0}
        graph = http.get(f"{url}/graph", headers=read, timeout=10)
        assert graph.status_code == 200 and graph.headers["content-type"] == "application/json"
        assert len(graph.json()["edges"]) == len(demo_edges())
        merged = http.get(
            f"{url}/v1/graph", params={"merge": "true", "protocol": "dns"}, headers=read, timeout=10
        )
        assert merged.status_code == 200 and all("dns" in e["methods"] for e in merged.json()["edges"])
        export = http.get(
            f"{url}/v1/tenants/{tenant['tenantId']}/export",
            params={"format": "clientintents", "version": "v1alpha3"},
            headers=read,
            timeout=10,
        )
        assert export.headers["content-type"] == "application/yaml"
        assert all(validate(d, CRD) == [] for d in yaml.safe_load_all(export.text))
        missing = http.get(f"{url}/graph", timeout=10)
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
        unknown = http.get(f"{url}/nope", headers=read, timeout=10)
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
        bad = http.post(
            f"{url}/v1/ingest",
            data=b"{oops",
            headers=ingest | {"Content-Type": "application/json"},
            timeout=10,
        )
        assert bad.status_code == 422
        deleted = http.delete(
            f"{url}/v1/tenants/{tenant['tenantId']}/tokens/k_0000000000000000", headers=owner, timeout=10
        )
        assert deleted.status_code == 404


def test_binary_telemetry_and_public_routes(server: tuple[str, str]) -> None:
    url, _ = server
    payload = base64.b64decode(recorded("metrics_protobuf")["body"])
    reply = requests.post(
        f"{url}/v1/metrics", data=payload, headers={"Content-Type": "application/x-protobuf"}, timeout=10
    )
    assert reply.status_code == 200 and reply.content == b""
    assert requests.get(f"{url}/healthz", timeout=10).json() == {"status": "ok"}
    assert "/v1/ingest" in requests.get(f"{url}/openapi.json", timeout=10).json()["paths"]
    assert requests.get(url + "/", timeout=10).headers["content-type"].startswith("text/html")
    head = requests.head(f"{url}/healthz", timeout=10)
    assert head.status_code in (200, 404) and head.content == b""


def test_concurrent_requests(server: tuple[str, str]) -> None:
    """Six tenants' owners add clusters at once, each on its own connection: every request is
    answered, none lost or refused (each tenant has one request in flight at a time)."""
    url, admin = server
    owners = [
        requests.post(f"{url}/v1/tenants", json={"name": f"t{n}"}, headers=auth(admin), timeout=20).json()
        for n in range(6)
    ]
    results: list[int] = []

    def add_clusters(tenant: dict[str, str]) -> None:
        with requests.Session() as http:
            for i in range(5):
                reply = http.post(
                    f"{url}/v1/tenants/{tenant['tenantId']}/clusters",
                    json={"name": f"c{i}"},
                    headers=auth(tenant["ownerToken"]),
                    timeout=20,
                )
                results.append(reply.status_code)

    threads = [threading.Thread(target=add_clusters, args=(owner,)) for owner in owners]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [201] * 30


def test_admin_token_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    token_file = tmp_path / "secrets" / "admin.token"
    first = serve("127.0.0.1:0", tmp_path / "cloud.db", token_file)
    first.server_close()
    token = token_file.read_text().strip()
    assert re.fullmatch(r"nm_[0-9a-f]{64}", token)
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    second: CloudServer = serve("127.0.0.1:0", tmp_path / "cloud.db", token_file)
    second.server_close()
    assert token_file.read_text().strip() == token, "a store with an admin token keeps it"


def worker_pids(parent: int) -> set[int]:
    """The pids of ``parent``'s worker processes (multiprocessing ``spawn`` children)."""
    found = set()
    for status_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(status_file.read_text().rsplit(")", 1)[1].split()[1])
            command = (status_file.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if ppid == parent and b"spawn_main" in command:
            found.add(int(status_file.parent.name))
    return found


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_console_script_cli(tmp_path: Path, stop: signal.Signals) -> None:
    """``python -m cloud_functions.local``: its two lines, its port, its workers, and a clean stop
    (exit 0, workers gone) on SIGTERM or Ctrl-C."""
    token_file = tmp_path / "admin.token"
    env = os.environ | {"PYTHONPATH": str(REPO), "POWERTOOLS_LOG_LEVEL": "WARNING"}
    argv = [sys.executable, "-m", "cloud_functions.local", "--listen", "127.0.0.1:0", "--workers", "2"]
    process = subprocess.Popen(
        argv + ["--db", str(tmp_path / "c.db"), "--admin-token-file", str(token_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(2)]
        assert f"written to {token_file}" in lines[0]
        assert token_file.read_text().strip() not in "".join(lines), (
            "the token is not printed when written to a file"
        )
        assert lines[1].startswith("network-mapper-cloud: serving on http://127.0.0.1:"), lines[1]
        port = int(lines[1].strip().rsplit(":", 1)[1])
        token = token_file.read_text().strip()
        reply = requests.post(
            f"http://127.0.0.1:{port}/v1/tenants", json={"name": "cli"}, headers=auth(token), timeout=10
        )
        assert reply.status_code == 201, reply.text
        assert json.loads(reply.text)["tenantId"].startswith("t_")
        workers = worker_pids(process.pid)
        assert len(workers) == 2, workers
        process.send_signal(stop)
        assert process.wait(20) == 0, process.stdout.read()
        assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()], "the workers stopped too"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_a_dead_worker_is_replaced(tmp_path: Path) -> None:
    """A worker killed mid-life breaks the process pool: the requests it fails are answered 503
    (never a hang), and a new pool of workers answers the next ones."""
    before = worker_pids(os.getpid())
    running = serve("127.0.0.1:0", tmp_path / "cloud.db", tmp_path / "admin.token", ServerSettings(workers=2))
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{running.server_port}"
    try:
        workers = worker_pids(os.getpid()) - before
        assert len(workers) == 2
        os.kill(next(iter(workers)), signal.SIGKILL)
        statuses = []
        deadline = time.monotonic() + 30
        while not statuses or statuses[-1] != 200 or 503 not in statuses:
            assert time.monotonic() < deadline, f"no recovery: {statuses}"
            reply = requests.get(f"{url}/healthz", timeout=10)
            statuses.append(reply.status_code)
            if reply.status_code == 503:
                assert reply.json()["error"]["code"] == "unavailable" and reply.headers["Retry-After"] == "1"
        assert set(statuses) <= {200, 503}
        now = worker_pids(os.getpid()) - before
        assert now and not now & workers, "new workers (started as requests come), none of the old"
    finally:
        running.shutdown()
        running.server_close()
        thread.join(10)
