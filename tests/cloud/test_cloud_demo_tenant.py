"""The sandbox's demo tenant, made by ``sandbox.cloudsetup.create_demo_tenant`` against the real local
cloud server over HTTP (no sandbox needed): the token ``make demo`` prints is a read token, which
reads the graph and refuses administration, and the ingest token is the cluster's."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from cloud_functions.auth import hash_token
from cloud_functions.local import serve
from cloud_functions.store.sqlite import SqliteGraphStore
from sandbox.cloudsetup import create_demo_tenant


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[SqliteGraphStore, str, str]]:
    """The server (its workers answer over their own connections) and the test's own connection
    to the same store, to see what the requests left there."""
    running = serve("127.0.0.1:0", tmp_path / "cloud.db", tmp_path / "admin.token")
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    store = SqliteGraphStore(tmp_path / "cloud.db")
    try:
        url = f"http://127.0.0.1:{running.server_port}"
        yield store, url, (tmp_path / "admin.token").read_text().strip()
    finally:
        store.close()
        running.shutdown()
        running.server_close()
        thread.join(5)


def test_the_demo_prints_a_read_token(server: tuple[SqliteGraphStore, str, str]) -> None:
    store, url, admin = server
    tenant, ingest, read = create_demo_tenant(url, admin)
    record = store.get_token(hash_token(read))
    assert record is not None and (record.role, record.tenant_id) == ("read", tenant)
    auth = {"Authorization": f"Bearer {read}"}
    with requests.Session() as http:
        assert http.get(f"{url}/graph", headers=auth, timeout=10).status_code == 200
        clusters = http.get(f"{url}/v1/tenants/{tenant}/clusters", headers=auth, timeout=10)
        assert [c["name"] for c in clusters.json()["clusters"]] == ["sandbox"]
        for method, path in (("POST", "clusters"), ("POST", "tokens"), ("GET", "tokens")):
            body = {"name": "x"} if path == "clusters" else None
            reply = http.request(
                method, f"{url}/v1/tenants/{tenant}/{path}", json=body, headers=auth, timeout=10
            )
            assert reply.status_code == 403, (method, path, reply.text)
    uploader = store.get_token(hash_token(ingest))
    assert uploader is not None and uploader.role == "ingest"
    assert [c.id for c in store.clusters(tenant)] == [uploader.cluster_id]
    roles = sorted(t.role for t in store.tokens(tenant))
    assert roles == ["ingest", "owner", "read"], "the owner token exists, but only the read token left"
