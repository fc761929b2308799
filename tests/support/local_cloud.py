"""The real cloud, in this process, over real HTTP: for tests of what the mapper sends it.

:class:`LocalCloud` is the product's cloud — :class:`~cloud_functions.handlers.CloudApp` over a
:class:`~cloud_functions.store.sqlite.SqliteGraphStore` in a directory of the test's, served by
:class:`cloud_functions.localserver.CloudServer` on 127.0.0.1 (port 0: a free one), the app answering
in this process (:class:`cloud_functions.workerpool.InProcess`, not the worker processes of
``network-mapper-cloud``; without per-tenant limits) — provisioned as the
product provisions it: the platform admin token bootstrapped on the empty store
(:func:`cloud_functions.local.ensure_admin_token`), then through the cloud's HTTP API a tenant
(``POST /v1/tenants``: its owner token), one cluster (``POST /v1/tenants/{id}/clusters``: its
ingest token, :attr:`LocalCloud.token`) and a read token (``POST /v1/tenants/{id}/tokens``).

Nothing of the cloud's behaviour is re-implemented here. What the test adds sits at the HTTP
boundary, around the app callable the server calls with each request's event (:meth:`CloudApp.answer`):

* a record of every request after provisioning and of its answer, in order
  (:meth:`~LocalCloud.exchanges`), with decoded views: each ingest request decoded with the
  product's codec (:func:`agent.wire.decode_ingest`) with the cloud's reply
  (:meth:`~LocalCloud.ingests`, :meth:`~LocalCloud.batches`, :meth:`~LocalCloud.heartbeats`),
  the ``/v1/metrics`` requests' raw bodies and headers (:meth:`~LocalCloud.metrics_requests`),
  and counts (:meth:`~LocalCloud.count`: all requests, or those answered a given status);
* :meth:`~LocalCloud.fail_with`: every request answered with an HTTP status (a 503 from the
  gateway in front of the cloud) until cleared; the cloud never sees those requests;
* :meth:`~LocalCloud.stop` and :meth:`~LocalCloud.start`: an outage — connections are refused,
  and open keep-alive connections are cut, until it listens again on the same port, over the
  same store (the cloud's data survives its outage).

The cloud's state is read through the store's public reads: :meth:`~LocalCloud.edges` (the
EFFECTIVE edges, as the cloud serves them: a live edge reads as last seen at least at its
cluster's heartbeat), :meth:`~LocalCloud.live`, :meth:`~LocalCloud.heartbeat` (the cluster's)
and :meth:`~LocalCloud.telemetry` (the payloads ``/v1/metrics`` kept).

    with LocalCloud(tmp_path) as cloud:
        client = HttpCloudClient(cloud.url, cloud.token, timeout=2.0)
        ...
        assert cloud.edges()[(frontend, cart)].count == 3
"""

from __future__ import annotations

import base64
import json
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from agent import wire
from agent.model import Edge, Target, WorkloadIdentity
from cloud_functions.handlers import Answer, CloudApp, CloudSettings
from cloud_functions.local import ensure_admin_token
from cloud_functions.localserver import CloudServer, ServerSettings
from cloud_functions.store.sqlite import SqliteGraphStore
from cloud_functions.workerpool import InProcess

EdgeKey = tuple[WorkloadIdentity, Target]
INGEST = "/v1/ingest"
METRICS = "/v1/metrics"


@dataclass(frozen=True)
class Exchange:
    """One request as the server received it (its API Gateway v2 event's parts) and its answer."""

    method: str
    path: str
    headers: dict[str, str]  # lower-cased names, as in the event
    body: bytes
    status: int
    reply: bytes
    injected: bool  # answered by fail_with: the cloud never saw it


@dataclass(frozen=True)
class IngestRequest:
    """A ``POST /v1/ingest`` decoded with the product's codec, and the cloud's reply."""

    status: int
    batch_id: str
    anonymized: bool
    edges: tuple[Edge, ...]
    live: tuple[bool, ...]  # per edge
    seen_at: float | None
    stored: bool | None  # the reply's (None: not answered 200)
    edges_written: int | None

    @property
    def heartbeat(self) -> bool:
        """No edges and a ``seenAt``: the cluster's heartbeat only."""
        return not self.edges and self.seen_at is not None


@dataclass(frozen=True)
class MetricsRequest:
    """A ``POST /v1/metrics`` as received: the raw (OTLP) body and the headers."""

    status: int
    body: bytes
    headers: dict[str, str]


def _ingest(exchange: Exchange) -> IngestRequest:
    body = wire.decode_ingest(exchange.body)
    stored: bool | None = None
    written: int | None = None
    if exchange.status == 200:
        reply = json.loads(exchange.reply)
        stored, written = reply["stored"], reply["edgesWritten"]
    return IngestRequest(
        status=exchange.status,
        batch_id=body.batchId,
        anonymized=body.anonymized,
        edges=tuple(wire.from_doc(doc) for doc in body.edges),
        live=tuple(doc.live for doc in body.edges),
        seen_at=None if body.seenAt is None else body.seenAt.timestamp(),
        stored=stored,
        edges_written=written,
    )


class _Boundary:
    """The app callable the server calls: records each exchange; answers ``fail_status`` itself
    while it is set."""

    def __init__(self, app: CloudApp) -> None:
        self.app = app
        self.fail_status: int | None = None
        self.recording = False
        self._lock = threading.Lock()
        self._exchanges: list[Exchange] = []

    def __call__(self, event: Mapping[str, Any]) -> Answer:
        status = self.fail_status
        if status is None:
            answer = self.app.answer(event)
        else:
            message = json.dumps({"message": f"injected by the test: HTTP {status}"})
            answer = Answer(
                {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": message}
            )
        if self.recording:
            self._record(event, answer.response, injected=status is not None)
        return answer

    def _record(self, event: Mapping[str, Any], response: Mapping[str, Any], *, injected: bool) -> None:
        raw = event.get("body") or ""
        body = base64.b64decode(raw) if event.get("isBase64Encoded") else str(raw).encode()
        reply = response.get("body") or ""
        reply_bytes = base64.b64decode(reply) if response.get("isBase64Encoded") else str(reply).encode()
        exchange = Exchange(
            method=event["requestContext"]["http"]["method"],
            path=event["rawPath"],
            headers=dict(event.get("headers") or {}),
            body=body,
            status=int(response.get("statusCode", 200)),
            reply=reply_bytes,
            injected=injected,
        )
        with self._lock:
            self._exchanges.append(exchange)

    def exchanges(self) -> list[Exchange]:
        with self._lock:
            return list(self._exchanges)


class LocalCloud:
    """The real cloud on 127.0.0.1 with one tenant and cluster (see the module docstring).

    ``directory`` holds the store (a temporary directory, removed by :meth:`close`, when None).
    Provisioned on the first :meth:`start`: :attr:`tenant_id`, :attr:`cluster_id`, :attr:`token`
    (the cluster's ingest token), :attr:`owner_token`, :attr:`read_token`, :attr:`admin_token`.
    """

    def __init__(self, directory: Path | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self._tempdir = tempfile.TemporaryDirectory(prefix="local-cloud-") if directory is None else None
        self.directory = Path(self._tempdir.name) if self._tempdir else directory
        assert self.directory is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        self.db = self.directory / "cloud.db"
        self.host, self.port = host, port
        self.store = SqliteGraphStore(self.db)
        self.app = CloudApp(self.store, CloudSettings(store=f"sqlite:{self.db}"))
        self._boundary = _Boundary(self.app)
        self._server: CloudServer | None = None
        self._thread: threading.Thread | None = None
        self.admin_token = self.owner_token = self.read_token = self.token = ""
        self.tenant_id = self.cluster_id = ""

    @property
    def url(self) -> str:
        """The base URL (the mapper's ``cloud_url``): ``/v1/ingest`` and ``/v1/metrics`` hang off it."""
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> LocalCloud:
        """Listen (again) on the same port (the first start picks a free one and provisions)."""
        if self._server is not None:
            raise RuntimeError("already running")
        settings = ServerSettings(host=self.host, port=self.port, limit_tenants=False)
        self._server = CloudServer(settings, InProcess(self._boundary))
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        if not self.token:
            try:
                self._provision()
            except BaseException:
                self.close()
                raise
            self._boundary.recording = True
        return self

    def stop(self) -> None:
        """Stop listening and cut open connections: refused until :meth:`start` (the store stays)."""
        if self._server is None:
            return
        # HTTP/1.1: a client's pooled connection would otherwise outlive the outage.
        self._server.shutdown(cut_connections=True)
        self._server.server_close()
        assert self._thread is not None
        self._thread.join(10)
        self._server = self._thread = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def close(self) -> None:
        self.stop()
        self.store.close()
        if self._tempdir is not None:
            self._tempdir.cleanup()

    def __enter__(self) -> LocalCloud:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def fail_with(self, status: int | None) -> None:
        """Answer every request with ``status`` before the cloud sees it (None: the cloud answers again)."""
        self._boundary.fail_status = status

    def _provision(self) -> None:
        """As the product does (``sandbox/supervisor.py``): the admin token on the empty store, then
        the tenant, its cluster and a read token through the HTTP API."""
        admin = ensure_admin_token(self.store, None)
        assert admin is not None, "the store was not empty"
        self.admin_token = admin
        with requests.Session() as http:
            tenant = self._created(http, "/v1/tenants", admin, {"name": "tests"})
            self.tenant_id, self.owner_token = tenant["tenantId"], tenant["ownerToken"]
            tenant_path = f"/v1/tenants/{self.tenant_id}"
            cluster = self._created(
                http, f"{tenant_path}/clusters", self.owner_token, {"name": "test-cluster"}
            )
            self.cluster_id, self.token = cluster["clusterId"], cluster["ingestToken"]
            reader = self._created(http, f"{tenant_path}/tokens", self.owner_token, {"role": "read"})
            self.read_token = reader["token"]

    def _created(self, http: requests.Session, path: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
        reply = http.post(
            f"{self.url}{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert reply.status_code == 201, f"POST {path}: {reply.status_code} {reply.text}"
        created: dict[str, Any] = reply.json()
        return created

    # ------------------------------------------------------------------ what was answered

    def exchanges(self) -> list[Exchange]:
        """Every request since provisioning, with its answer, in the order answered."""
        return self._boundary.exchanges()

    def count(self, status: int | None = None) -> int:
        """Requests answered (None), or answered with ``status`` (401: refused tokens)."""
        return sum(1 for e in self.exchanges() if status is None or e.status == status)

    def ingests(self, status: int | None = 200) -> list[IngestRequest]:
        """The ingest requests answered ``status`` (None: all), batches and heartbeats, in order."""
        return [
            _ingest(e)
            for e in self.exchanges()
            if e.path == INGEST and e.method == "POST" and (status is None or e.status == status)
        ]

    def batches(self) -> list[IngestRequest]:
        """The edge batches the cloud answered 200 (``stored`` False: a re-sent id), in order."""
        return [r for r in self.ingests() if r.edges]

    def heartbeats(self) -> list[float]:
        """The ``seenAt`` of every heartbeat-only ingest the cloud answered 200, in order."""
        return [r.seen_at for r in self.ingests() if r.heartbeat and r.seen_at is not None]

    def metrics_requests(self) -> list[MetricsRequest]:
        """Every ``POST /v1/metrics`` received, in order."""
        return [
            MetricsRequest(e.status, e.body, e.headers)
            for e in self.exchanges()
            if e.path == METRICS and e.method == "POST"
        ]

    # ------------------------------------------------------------------ the cloud's state

    def edges(self) -> dict[EdgeKey, Edge]:
        """The tenant's graph as the cloud reads it (effective: live edges lifted to the heartbeat)."""
        return {stored.edge.key: stored.edge for stored in self.store.edges(self.tenant_id)}

    def live(self) -> dict[EdgeKey, bool]:
        """Edge key → the ``live`` flag the cloud holds for it (the last one sent)."""
        return {stored.edge.key: stored.live for stored in self.store.edges(self.tenant_id)}

    def heartbeat(self) -> float | None:
        """The cluster's latest heartbeat (None: none yet)."""
        [cluster] = [c for c in self.store.clusters(self.tenant_id) if c.id == self.cluster_id]
        return cluster.heartbeat

    def telemetry(self) -> list[tuple[str, float, bytes]]:
        """What ``/v1/metrics`` kept: ``(cluster hash, received at, body)``, newest first."""
        return self.store.telemetry()
