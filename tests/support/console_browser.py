"""The web console in a real browser against a real local cloud, for the browser tests, the
sandbox's console tests and the bench (``bench/bench_console.py`` imports it from the checkout).

- :func:`launch_chromium`: Debian's Chromium (``/usr/bin/chromium``; never ``playwright install``),
  headless, WebGL on SwiftShader rather than ``--disable-gpu``.
- :func:`console_url`: the console's address with the token (and options such as
  ``aggregate="off"``) in the fragment, which never reaches a server.
- :class:`CloudProcess`: ``python -m cloud_functions.local`` on a free port over a fresh SQLite file.
- :func:`provision` / :func:`upload` / :func:`seed_demo`: a tenant with clusters and a read token made
  through the cloud's API, and edges posted to ``/v1/ingest`` with a cluster's ingest token.
  :func:`demo_edges` is a small realistic graph: the microservices demo in ``shop`` (checkoutservice
  calls six servers), Kafka with topics, HTTP paths, an Internet name and AWS resources with actions.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

import requests
from playwright.sync_api import Browser, Playwright

from agent import wire
from agent.model import AwsTarget, Edge, HttpResource, InternetTarget, KafkaTopic, Method, WorkloadIdentity

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--use-angle=swiftshader",  # WebGL on the software renderer, not --disable-gpu
    "--enable-unsafe-swiftshader",
)
START_TIMEOUT = 60.0
INGEST_BATCH = 500  # the ingest route's maximum


def launch_chromium(playwright: Playwright, **options: Any) -> Browser:
    """Debian's Chromium, headless, with the project's flags (``options`` go to ``launch``)."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_ARGS), **options
    )


def console_url(base: str, token: str, **fragment: str) -> str:
    """``<base>/#token=<token>&<fragment…>``: the token only ever in the fragment."""
    return f"{base.rstrip('/')}/#{urlencode({'token': token, **fragment})}"


def wait_for(probe: Callable[[], Any], seconds: float, what: str) -> Any:
    """``probe()``'s first truthy answer, polled until ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    while not (answer := probe()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {seconds:.0f} s for {what}")
        time.sleep(0.05)
    return answer


class CloudProcess:
    """The local cloud (``python -m cloud_functions.local``) on 127.0.0.1, a free port, over
    ``directory/cloud.db``; :attr:`base` and :attr:`admin_token` once started."""

    def __init__(
        self, directory: Path, workers: int | None = 2, limits: tuple[float, int] | None = (500, 1000)
    ) -> None:
        """``workers`` and ``limits`` (requests a second, burst, per tenant): None keeps the local
        cloud's own defaults (what a bench measures against)."""
        self.directory = directory
        self.workers = workers
        self.limits = limits
        self.out = directory / "cloud.out"
        self.base = ""
        self.admin_token = ""
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> CloudProcess:
        self.directory.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "cloud_functions.local", "--listen", "127.0.0.1:0"]
        argv += [
            "--db",
            str(self.directory / "cloud.db"),
            "--admin-token-file",
            str(self.directory / "admin.token"),
        ]
        if self.workers is not None:
            argv += ["--workers", str(self.workers)]
        if self.limits is not None:
            argv += ["--rate", str(self.limits[0]), "--burst", str(self.limits[1])]
        env = os.environ | {"PYTHONPATH": str(ROOT), "POWERTOOLS_LOG_LEVEL": "WARNING"}
        with self.out.open("w") as log:
            self._process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        try:
            self.base = wait_for(self._serving_url, START_TIMEOUT, f"the cloud to serve (see {self.out})")
            wait_for(self._healthy, START_TIMEOUT, "the cloud's /healthz")
        except BaseException:
            self.stop()
            raise
        self.admin_token = (self.directory / "admin.token").read_text().strip()
        return self

    def _serving_url(self) -> str | None:
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError(
                f"the cloud exited ({self._process.returncode}): {self.out.read_text()[-2000:]}"
            )
        for line in self.out.read_text().splitlines():
            if "serving on " in line:
                return line.split("serving on ", 1)[1].strip()
        return None

    def _healthy(self) -> bool:
        try:
            return requests.get(f"{self.base}/healthz", timeout=2).ok
        except requests.ConnectionError:
            return False  # not accepting yet

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def __enter__(self) -> CloudProcess:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


@dataclass
class Tenant:
    """A tenant made through the API: its read token (what the console signs in with), its owner
    token, and its clusters (name → (cluster id, ingest token))."""

    base: str
    tenant_id: str
    owner_token: str
    read_token: str
    clusters: dict[str, tuple[str, str]] = field(default_factory=dict)

    def ingest_token(self, cluster: str | None = None) -> str:
        return self.clusters[cluster or next(iter(self.clusters))][1]

    def get(self, path: str, **params: str) -> requests.Response:
        """``GET <base><path>`` with the read token (in the header, as the console sends it)."""
        headers = {"Authorization": f"Bearer {self.read_token}"}
        return requests.get(f"{self.base}{path}", params=params, headers=headers, timeout=60)

    def export(self, **params: str) -> str:
        """The export route's body for ``params`` (one page: the graphs here are small)."""
        reply = self.get(f"/v1/tenants/{self.tenant_id}/export", limit="10000", **params)
        reply.raise_for_status()
        assert "X-Next-Cursor" not in reply.headers, "one page expected"
        return reply.text


def provision(
    base: str, admin_token: str, name: str = "console", clusters: Sequence[str] = ("prod",)
) -> Tenant:
    """A tenant, its clusters and a read token, as ``sandbox.cloudsetup.create_demo_tenant`` makes them."""

    def created(path: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
        reply = requests.post(
            f"{base}{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        assert reply.status_code == 201, f"POST {path}: {reply.status_code} {reply.text}"
        answer: dict[str, Any] = reply.json()
        return answer

    made = created("/v1/tenants", admin_token, {"name": name})
    tenant = Tenant(base, made["tenantId"], made["ownerToken"], "")
    for cluster in clusters:
        added = created(f"/v1/tenants/{tenant.tenant_id}/clusters", tenant.owner_token, {"name": cluster})
        tenant.clusters[cluster] = (added["clusterId"], added["ingestToken"])
    tenant.read_token = created(
        f"/v1/tenants/{tenant.tenant_id}/tokens", tenant.owner_token, {"role": "read"}
    )["token"]
    return tenant


def upload(base: str, ingest_token: str, edges: Sequence[Edge], batch_prefix: str = "seed") -> None:
    """``edges`` through ``POST /v1/ingest`` (500 a batch), with the cluster's heartbeat."""
    with requests.Session() as http:
        http.headers["Authorization"] = f"Bearer {ingest_token}"
        http.headers["Content-Type"] = "application/json"
        for start in range(0, len(edges), INGEST_BATCH):
            docs = tuple(wire.to_doc(e) for e in edges[start : start + INGEST_BATCH])
            body = wire.IngestBody(
                version=wire.FORMAT_VERSION,
                batchId=f"{batch_prefix}-{start}",
                seenAt=wire.moment(time.time()),
                edges=docs,
            )
            reply = http.post(f"{base}/v1/ingest", data=wire.encode(body), timeout=60)
            assert reply.status_code == 200, f"ingest: {reply.status_code} {reply.text[:500]}"


# --------------------------------------------------------------------------- the seeded graph

SHOP = "shop"
DEMO_CALLS = {
    "cartservice": ["redis-cart"],
    "checkoutservice": [
        "cartservice",
        "currencyservice",
        "emailservice",
        "paymentservice",
        "productcatalogservice",
        "shippingservice",
    ],
    "frontend": [
        "adservice",
        "cartservice",
        "checkoutservice",
        "currencyservice",
        "productcatalogservice",
        "recommendationservice",
        "shippingservice",
    ],
    "loadgenerator": ["frontend"],
    "recommendationservice": ["productcatalogservice"],
}
"""The microservices demo's calls (DESIGN.md section 4), all in namespace ``shop``."""
KAFKA = WorkloadIdentity("streaming", "kafka", "StatefulSet")
ORDERS_ARCHIVE = "arn:aws:s3:::orders-archive"
ORDERS_TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/orders"
SENDGRID = "api.sendgrid.com"


def _workload(namespace: str, name: str) -> WorkloadIdentity:
    return WorkloadIdentity(namespace, name, "StatefulSet" if name == "redis-cart" else "Deployment")


def demo_edges(now: float | None = None) -> list[Edge]:
    """The seeded graph: ``shop`` (the microservices demo, HTTP paths on loadgenerator → frontend,
    emailservice → an Internet name), ``orders`` (Kafka producer and consumer with topics, AWS S3
    and DynamoDB with actions) and ``streaming`` (the Kafka broker)."""
    now = time.time() if now is None else now
    first, last = now - 3600, now - 60
    tcp = frozenset({Method.DNS, Method.TCP})
    edges = [
        Edge(_workload(SHOP, client), _workload(SHOP, server), first, last, tcp, count=5)
        for client, servers in DEMO_CALLS.items()
        for server in servers
        if client != "loadgenerator"
    ]
    http = (HttpResource("/", ("GET",)), HttpResource("/cart", ("GET", "POST"), statuses=(200,)))
    edges.append(
        Edge(
            _workload(SHOP, "loadgenerator"),
            _workload(SHOP, "frontend"),
            first,
            last,
            frozenset({Method.TCP, Method.ISTIO}),
            count=40,
            http=http,
        )
    )
    edges.append(
        Edge(
            _workload(SHOP, "emailservice"),
            InternetTarget(SENDGRID, ("198.51.100.7",), 443),
            first,
            last,
            frozenset({Method.DNS, Method.TCP}),
            count=3,
        )
    )
    edges.append(
        Edge(
            _workload("orders", "order-api"),
            KAFKA,
            first,
            last,
            frozenset({Method.KAFKA, Method.TCP}),
            count=12,
            kafka_topics=(KafkaTopic("orders", ("describe", "produce"), "User:CN=order-api"),),
        )
    )
    edges.append(
        Edge(
            _workload("orders", "order-processor"),
            KAFKA,
            first,
            last,
            frozenset({Method.KAFKA, Method.SOCKET_SCAN}),
            count=30,
            kafka_topics=(KafkaTopic("orders", ("consume", "describe")),),
        )
    )
    edges.append(
        Edge(
            _workload("orders", "order-processor"),
            AwsTarget(ORDERS_ARCHIVE),
            first,
            last,
            frozenset({Method.AWS}),
            count=8,
            aws_actions=("s3:GetObject", "s3:PutObject"),
        )
    )
    edges.append(
        Edge(
            _workload("orders", "order-api"),
            AwsTarget(ORDERS_TABLE),
            first,
            last,
            frozenset({Method.AWS}),
            count=20,
            aws_actions=("dynamodb:PutItem",),
        )
    )
    edges.append(
        Edge(_workload("orders", "order-api"), _workload(SHOP, "currencyservice"), first, last, tcp, count=2)
    )
    return edges


def seed_demo(base: str, admin_token: str, now: float | None = None) -> Tenant:
    """A tenant with one cluster ``prod`` holding :func:`demo_edges`."""
    tenant = provision(base, admin_token, "console-demo")
    upload(base, tenant.ingest_token(), demo_edges(now))
    return tenant


def wide_edges(namespaces: int = 8, per_namespace: int = 22, now: float | None = None) -> list[Edge]:
    """A graph too big to start expanded (more than 150 workloads): ``ns-<i>`` each with a chain of
    workloads, and a call from each namespace's first workload to the next namespace's."""
    now = time.time() if now is None else now
    tcp = frozenset({Method.TCP})
    edges = []
    for i in range(namespaces):
        ns = f"ns-{i}"
        names = [f"svc-{i}-{j}" for j in range(per_namespace)]
        edges += [
            Edge(
                WorkloadIdentity(ns, a, "Deployment"),
                WorkloadIdentity(ns, b, "Deployment"),
                now - 600,
                now,
                tcp,
            )
            for a, b in pairwise(names)
        ]
        following = f"ns-{(i + 1) % namespaces}"
        edges.append(
            Edge(
                WorkloadIdentity(ns, names[0], "Deployment"),
                WorkloadIdentity(following, f"svc-{(i + 1) % namespaces}-0", "Deployment"),
                now - 600,
                now,
                tcp,
            )
        )
    return edges
