"""schemathesis over the whole OpenAPI document, against the real local server over HTTP:
zero server errors. Each operation gets the token that reaches the most code (admin for
tenant creation, the ingest token for ingest, the tenant's owner token elsewhere) and, for every other
example, the token's own tenant id in place of the generated one; the rest stay random
(and are refused with 403). Bounded examples keep the run well under a minute."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error

from cloud_functions.handlers.app import openapi_document
from cloud_functions.local import serve
from cloud_functions.localserver import ServerSettings

pytestmark = pytest.mark.slow

schema = schemathesis.openapi.from_dict(json.loads(openapi_document()))


class Server:
    def __init__(self, tmp: Path) -> None:
        # Without per-tenant limits: a 429 would stop the examples short of the code they reach.
        settings = ServerSettings(limit_tenants=False)
        self.running = serve("127.0.0.1:0", tmp / "cloud.db", tmp / "admin.token", settings)
        self.thread = threading.Thread(target=self.running.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.running.server_port}"
        self.admin = (tmp / "admin.token").read_text().strip()
        self.http = requests.Session()
        tenant = self.http.post(
            f"{self.url}/v1/tenants", json={"name": "fuzz"}, headers=self.auth(self.admin), timeout=10
        ).json()
        self.tenant, self.owner = tenant["tenantId"], tenant["ownerToken"]
        cluster = self.http.post(
            f"{self.url}/v1/tenants/{self.tenant}/clusters",
            json={"name": "c"},
            headers=self.auth(self.owner),
            timeout=10,
        ).json()
        self.ingest = cluster["ingestToken"]

    @staticmethod
    def auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def close(self) -> None:
        self.http.close()
        self.running.shutdown()
        self.running.server_close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("schemathesis"))
    yield running
    running.close()


@schema.parametrize()
@settings(
    max_examples=15,
    phases=[Phase.explicit, Phase.generate],  # report the first failure as found: no shrinking
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors(case: schemathesis.Case, server: Server) -> None:
    path = case.operation.path
    token = server.owner
    if path == "/v1/tenants":
        token = server.admin
    elif path == "/v1/ingest":
        token = server.ingest
    params = case.path_parameters or {}
    if "tenantId" in params and len(str(params["tenantId"])) % 2 == 0:
        params["tenantId"] = server.tenant
    if path.endswith("/tokens/{tokenId}") and case.method.upper() == "DELETE":
        params["tenantId"] = "t_fuzz_elsewhere"  # never revoke the token the run depends on
    case.call_and_validate(
        base_url=server.url,
        session=server.http,
        headers=server.auth(token),
        checks=[not_a_server_error],
        timeout=30,
    )
