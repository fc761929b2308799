"""An anonymized run end to end, with the real processes (issue 6): the sandbox API server, the
real mapper (``--anonymize=true`` with a key file, uploading every second), the real local
cloud (``python -m cloud_functions.local``, SQLite), and the user's CLI.

* After the upload, the cloud's database files hold not one plaintext workload, pod, Service,
  namespace or external DNS name, nor the raw ``kube-system`` UID (telemetry is on, to the
  same cloud).
* The cloud's ClientIntents export, de-anonymized by the CLI with the key and the mapper's
  edges (``network-mapper deanonymize``), is the CLI's own plain ``export``, document for
  document and byte for byte.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from agent.anonymize import TOKEN, generate_key
from agent.model import InternetTarget, WorkloadIdentity
from tests.support.mapper_process import (
    CART,
    EXTERNAL_IP,
    EXTERNAL_NAME,
    FRONTEND,
    REDIS,
    REPO,
    Cluster,
    MapperProcess,
    clean_env,
    free_port,
    run_cli,
    running_cluster,
    wait_until,
)

CONNECTIONS = [(FRONTEND, CART, 7070), (CART, REDIS, 6379)]


@dataclass(frozen=True)
class Cloud:
    url: str
    db: Path
    admin_token: str
    log: Path

    def post(self, path: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
        reply = requests.post(f"{self.url}{path}", json=body, headers=bearer(token), timeout=10)
        assert reply.status_code == 201, (reply.status_code, reply.text)
        answer: dict[str, Any] = reply.json()
        return answer

    def get(self, path: str, token: str, **params: str) -> requests.Response:
        reply = requests.get(f"{self.url}{path}", params=params, headers=bearer(token), timeout=10)
        assert reply.status_code == 200, (reply.status_code, reply.text)
        return reply


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path) as running:
        yield running


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    """``python -m cloud_functions.local`` on a free port, with its SQLite file and admin token."""
    port, db, token_file = free_port(), tmp_path / "cloud" / "cloud.db", tmp_path / "cloud" / "admin.token"
    db.parent.mkdir()
    log = tmp_path / "cloud.log"
    argv = [sys.executable, "-m", "cloud_functions.local", "--listen", f"127.0.0.1:{port}"]
    argv += ["--db", str(db), "--admin-token-file", str(token_file)]
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=clean_env(), cwd=REPO)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the cloud exited with {process.returncode}:\n{log.read_text()}")
        try:
            return requests.get(f"{url}/healthz", timeout=1).status_code == 200 and token_file.exists()
        except requests.RequestException:
            return False

    try:
        wait_until(healthy, 20, f"the local cloud on {url}", interval=0.1)
        yield Cloud(url, db, token_file.read_text().strip(), log)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def database_bytes(db: Path) -> dict[str, bytes]:
    """The SQLite database and its journal files (``-wal``, ``-shm``, ``-journal``) as they are."""
    return {p.name: p.read_bytes() for p in sorted(db.parent.glob(db.name + "*"))}


def test_anonymized_uploads_hold_no_names_and_deanonymize_to_the_plain_export(
    cluster: Cluster, cloud: Cloud, tmp_path: Path
) -> None:
    tenant = cloud.post("/v1/tenants", cloud.admin_token, {"name": "acme"})
    tenant_id, owner_token = tenant["tenantId"], tenant["ownerToken"]
    ingest_token = cloud.post(f"/v1/tenants/{tenant_id}/clusters", owner_token, {"name": "prod"})[
        "ingestToken"
    ]
    read_token = cloud.post(f"/v1/tenants/{tenant_id}/tokens", owner_token, {"role": "read"})["token"]
    key_file = tmp_path / "anonymization.key"
    key_file.write_bytes(generate_key().hex().encode())  # a Secret's value: text
    key_file.chmod(0o600)

    args = ["--cloud-url", cloud.url, "--upload-interval", "1", "--telemetry-interval", "1"]
    args += ["--anonymize=true", "--anonymize-key-file", str(key_file)]
    with MapperProcess(cluster, tmp_path, args, env={"NETWORK_MAPPER_CLOUD_TOKEN": ingest_token}) as mapper:
        mapper.report_tcp(CONNECTIONS)
        mapper.report_dns(FRONTEND, EXTERNAL_NAME, EXTERNAL_IP)
        external = InternetTarget(EXTERNAL_NAME, (EXTERNAL_IP,), 0)
        expected: set[tuple[WorkloadIdentity, Any]] = {(src, dst) for src, dst, _ in CONNECTIONS}
        edges = mapper.wait_for_edges(expected | {(FRONTEND, external)}, timeout=10)

        def cloud_graph() -> list[dict[str, Any]]:
            reply = cloud.get(f"/v1/tenants/{tenant_id}/graph", read_token)
            found: list[dict[str, Any]] = reply.json()["edges"]
            return found if len(found) >= len(edges) else []

        graph = wait_until(cloud_graph, 15, f"the upload to reach the cloud:\n{mapper.log()}", interval=0.2)
        assert len(graph) == len(edges)
        for edge in graph:  # hashes where names were
            assert TOKEN.fullmatch(edge["client"]["name"]) and TOKEN.fullmatch(edge["client"]["namespace"])

        # The cloud's export, de-anonymized, is the plain export (the CLI needs the mapper up).
        export = cloud.get(f"/v1/tenants/{tenant_id}/export", read_token, format="clientintents")
        assert not any(secret in export.text for secret in cluster.names)
        cloud_export = tmp_path / "cloud-export.yaml"
        cloud_export.write_text(export.text)
        mapper_url = ["--mapper-url", mapper.query_url]
        restored = run_cli(
            [*mapper_url, "deanonymize", "--key-file", str(key_file), "--input", str(cloud_export)]
        )
        assert restored.returncode == 0, restored.stderr
        assert "not in the mapper's map" not in restored.stderr, restored.stderr
        plain = run_cli([*mapper_url, "export", "--format", "yaml"])
        assert plain.returncode == 0, plain.stderr
        plain_docs = list(yaml.safe_load_all(plain.stdout))
        assert len(plain_docs) == 2  # one ClientIntents per client: frontend, cart
        assert list(yaml.safe_load_all(restored.stdout)) == plain_docs
        assert restored.stdout == plain.stdout

        status = mapper.stop()  # its last telemetry export goes out now
    assert status == 0, f"the mapper exited with {status} on SIGTERM:\n{mapper.log()}"

    # Not one name in the cloud's files, telemetry included; the mapper's own store (in the
    # cluster) has them all, so the scan does find names where they are
    secrets = [*cluster.names, EXTERNAL_NAME, cluster.kube_system_uid]
    in_cluster = b"".join(database_bytes(mapper.data_dir / "edges.db").values())
    assert all(name.encode() in in_cluster for name in (*cluster.namespaces, FRONTEND.name, EXTERNAL_NAME))
    files = database_bytes(cloud.db)
    assert cloud.db.name in files
    hashed_cluster = hashlib.sha256(cluster.kube_system_uid.encode()).hexdigest().encode()
    assert any(hashed_cluster in data for data in files.values()), "no telemetry reached the cloud"
    leaks = [(name, secret) for name, data in files.items() for secret in secrets if secret.encode() in data]
    assert not leaks, f"plaintext names in the cloud's database files: {leaks}"
