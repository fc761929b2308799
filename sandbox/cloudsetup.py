"""The local cloud as the sandbox starts it: waiting for it, and the demo's tenant.

Used by :mod:`sandbox.supervisor` when it starts the cloud "on the Internet", and by the console's
bench and tests that need a tenant made the same way. Everything goes through the cloud's public
HTTP API, as a user's tools would.
"""

from __future__ import annotations

import time
from pathlib import Path

import requests


def wait_for_cloud(base: str, admin_file: Path, timeout: float) -> None:
    """Return once the cloud at ``base`` answers ``/healthz`` and has written its admin token;
    RuntimeError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if admin_file.exists() and requests.get(f"{base}/healthz", timeout=2).ok:
                return
        except requests.RequestException:
            pass  # not listening yet: keep polling until the deadline
        if time.monotonic() > deadline:
            raise RuntimeError(f"the local cloud did not start within {timeout:g} s; see its log")
        time.sleep(0.2)


def create_demo_tenant(base: str, admin_token: str, name: str = "sandbox") -> tuple[str, str, str]:
    """Through the cloud's API at ``base``: a tenant ``name`` with one cluster of that name; returns
    (tenant id, the cluster's ingest token, a read token).

    The tenant's owner token adds the cluster and mints the read token, which is what the demo
    prints (and a console URL may carry): it reads the graph and exports only. The owner token
    is dropped here, never saved or shown.
    """
    admin = {"Authorization": f"Bearer {admin_token}"}
    tenant = requests.post(f"{base}/v1/tenants", json={"name": name}, headers=admin, timeout=10)
    tenant.raise_for_status()
    tenant_id = str(tenant.json()["tenantId"])
    owner = {"Authorization": f"Bearer {tenant.json()['ownerToken']}"}
    tenant_url = f"{base}/v1/tenants/{tenant_id}"
    cluster = requests.post(f"{tenant_url}/clusters", json={"name": name}, headers=owner, timeout=10)
    cluster.raise_for_status()
    reader = requests.post(f"{tenant_url}/tokens", json={"role": "read"}, headers=owner, timeout=10)
    reader.raise_for_status()
    return tenant_id, str(cluster.json()["ingestToken"]), str(reader.json()["token"])
