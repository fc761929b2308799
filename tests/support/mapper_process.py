"""The real mapper process, driven as a user drives it, for integration tests.

* :func:`running_cluster`: an in-process sandbox Kubernetes API (``sandbox.apiserver.ApiServer``)
  holding two namespaces of workloads created through the real ``kubernetes`` client (Deployments
  with ReplicaSets and pods, a StatefulSet, Services), and a kubeconfig for it. Every name made is
  in :attr:`Cluster.names`, for tests that check names do not leave the cluster.
* :class:`MapperProcess`: ``python -m agent.mapper`` as a subprocess on a free port with a data
  dir, a token and the kubeconfig; waits for ``/healthz``, reports observations over GraphQL with
  :class:`agent.mapperclient.HttpMapperClient` (the sniffer's mutations), reads the edges back,
  and stops with SIGTERM. Its output goes to a log file, quoted when something goes wrong.
* :func:`wait_until`, :func:`free_port`, :func:`clean_env`, :func:`run_cli`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import requests
from kubernetes import client

from agent.cli.queries import EDGES_QUERY, edge_from_json
from agent.mapperclient import HttpMapperClient
from agent.model import Edge, Target, WorkloadIdentity
from agent.wire import format_time
from sandbox.apiserver import ApiServer
from tests.support.apiserver import running_api

REPO = Path(__file__).resolve().parents[2]
AGENT_TOKEN = "agent-token-for-tests"
T = TypeVar("T")

# Distinctive names: a byte scan for them cannot match by accident.
SHOP = "zebra-shop"
DATA = "yak-data"
FRONTEND = WorkloadIdentity(SHOP, "quokka-frontend", "Deployment")
CART = WorkloadIdentity(SHOP, "wombat-cart", "Deployment")
REDIS = WorkloadIdentity(DATA, "platypus-redis", "StatefulSet")
EXTERNAL_NAME = "api.narwhal-example.com"
EXTERNAL_IP = "93.184.216.34"

TCP_MUTATION = (
    "mutation reportTCPCaptureResults($results: CaptureTCPResults!) "
    "{ reportTCPCaptureResults(results: $results) }"
)
DNS_MUTATION = (
    "mutation reportCaptureResults($results: CaptureResults!) { reportCaptureResults(results: $results) }"
)


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    what: str | Callable[[], str],
    interval: float = 0.05,
    retry_on: tuple[type[Exception], ...] = (),
) -> T:
    """Poll ``predicate`` until it returns something true (returned); AssertionError after ``timeout``.

    ``what`` may be a callable, asked only at the deadline, so the message can say what was last
    seen. A ``retry_on`` exception from ``predicate`` counts as "not yet" (a server restarting).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value: T | None = predicate()
        except retry_on:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            described = what if isinstance(what, str) else what()
            raise AssertionError(f"timed out after {timeout}s waiting for {described}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


_OWN_PREFIXES = ("NETWORK_MAPPER_", "OTTERIZE_", "MAPPER_", "SNIFFER_")


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any of the product's own variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES) and k not in {"KUBECONFIG"}}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def now_rfc3339() -> str:
    return format_time(time.time())


# --------------------------------------------------------------------------- the cluster


@dataclass(frozen=True)
class Cluster:
    server: ApiServer
    kubeconfig: Path
    kube_system_uid: str
    pod_ips: dict[WorkloadIdentity, str]
    names: tuple[str, ...]  # every namespace, workload, ReplicaSet, pod and Service name created

    @property
    def namespaces(self) -> tuple[str, ...]:
        return (SHOP, DATA)

    @property
    def workloads(self) -> tuple[WorkloadIdentity, ...]:
        return tuple(self.pod_ips)


def _meta(name: str, labels: Mapping[str, str] | None = None, owner: Any = None) -> client.V1ObjectMeta:
    references = None
    if owner is not None:
        references = [
            client.V1OwnerReference(
                api_version="apps/v1",
                kind=owner.kind,
                name=owner.metadata.name,
                uid=owner.metadata.uid,
                controller=True,
            )
        ]
    return client.V1ObjectMeta(name=name, labels=dict(labels or {}), owner_references=references)


def _pod_spec() -> client.V1PodSpec:
    return client.V1PodSpec(containers=[client.V1Container(name="main", image="demo")], node_name="node-1")


def _populate(api: client.ApiClient) -> tuple[dict[WorkloadIdentity, str], list[str]]:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    names: list[str] = []
    for ns in (SHOP, DATA):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
        names.append(ns)
    pod_ips: dict[WorkloadIdentity, str] = {}

    def service(workload: WorkloadIdentity, port: int) -> None:
        core.create_namespaced_service(
            workload.namespace,
            client.V1Service(
                metadata=_meta(workload.name),
                spec=client.V1ServiceSpec(
                    selector={"app": workload.name}, ports=[client.V1ServicePort(port=port)]
                ),
            ),
        )

    def pod(workload: WorkloadIdentity, name: str, ip: str, owner: Any) -> None:
        core.create_namespaced_pod(
            workload.namespace,
            client.V1Pod(
                metadata=_meta(name, {"app": workload.name}, owner),
                spec=_pod_spec(),
                status=client.V1PodStatus(phase="Running", pod_ip=ip, host_ip="192.168.50.1"),
            ),
        )
        pod_ips[workload] = ip
        names.append(name)

    template = client.V1PodTemplateSpec(spec=_pod_spec())
    for workload, ip, port in ((FRONTEND, "10.244.7.10", 8080), (CART, "10.244.7.20", 7070)):
        selector = client.V1LabelSelector(match_labels={"app": workload.name})
        template.metadata = client.V1ObjectMeta(labels={"app": workload.name})
        deployment = apps.create_namespaced_deployment(
            workload.namespace,
            client.V1Deployment(
                metadata=_meta(workload.name),
                spec=client.V1DeploymentSpec(selector=selector, template=template),
            ),
        )
        deployment.kind = "Deployment"
        replica_set = apps.create_namespaced_replica_set(
            workload.namespace,
            client.V1ReplicaSet(
                metadata=_meta(f"{workload.name}-7f8d9c", owner=deployment),
                spec=client.V1ReplicaSetSpec(selector=selector, template=template),
            ),
        )
        replica_set.kind = "ReplicaSet"
        names += [workload.name, replica_set.metadata.name]
        pod(workload, f"{workload.name}-7f8d9c-x2k4q", ip, replica_set)
        service(workload, port)
    selector = client.V1LabelSelector(match_labels={"app": REDIS.name})
    template.metadata = client.V1ObjectMeta(labels={"app": REDIS.name})
    stateful_set = apps.create_namespaced_stateful_set(
        REDIS.namespace,
        client.V1StatefulSet(
            metadata=_meta(REDIS.name),
            spec=client.V1StatefulSetSpec(selector=selector, template=template, service_name=REDIS.name),
        ),
    )
    stateful_set.kind = "StatefulSet"
    names.append(REDIS.name)
    pod(REDIS, f"{REDIS.name}-0", "10.244.7.30", stateful_set)
    service(REDIS, 6379)
    return pod_ips, names


@contextlib.contextmanager
def running_cluster(directory: Path) -> Iterator[Cluster]:
    """The sandbox API server with the workloads above; stopped on exit."""
    with running_api(directory) as running:
        pod_ips, names = _populate(running.api)
        uid = running.core.read_namespace("kube-system").metadata.uid
        assert uid, "the API server gave kube-system no UID"
        yield Cluster(running.server, running.kubeconfig, uid, pod_ips, tuple(dict.fromkeys(names)))


# --------------------------------------------------------------------------- the mapper


def _destination(target: str, port: int | None = None, ip: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"destination": target, "lastSeen": now_rfc3339()}
    if port is not None:
        found["destinationPort"] = port
    if ip is not None:
        found["destinationIP"] = ip
        found["TTL"] = 60
    return found


class MapperProcess:
    """``with MapperProcess(cluster, tmp_path, ["--cloud-url", url]) as mapper: ...``

    Starts the mapper (``python -m agent.mapper``) and waits for its ``/healthz``; the exit
    stops it with SIGTERM (and kills it if it does not exit in time).
    """

    def __init__(
        self,
        cluster: Cluster,
        directory: Path,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        token: str = AGENT_TOKEN,
    ) -> None:
        self.cluster = cluster
        self.directory = directory
        self.port = free_port()
        self.token = token
        self.data_dir = directory / "mapper-data"
        self.log_path = directory / "mapper.log"
        self.argv = [
            sys.executable,
            "-m",
            "agent.mapper",
            "--listen-address",
            f"127.0.0.1:{self.port}",
            "--data-dir",
            str(self.data_dir),
            "--kubeconfig",
            str(cluster.kubeconfig),
            *args,
        ]
        self.env = clean_env({"NETWORK_MAPPER_TOKEN": token, **(env or {})})
        self.process: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def query_url(self) -> str:
        return f"{self.url}/query"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def start(self, timeout: float = 20.0) -> MapperProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=REPO
            )
        wait_until(self._healthy, timeout, f"the mapper's /healthz on {self.url}", interval=0.1)
        return self

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the mapper exited with {self.process.returncode}:\n{self.log()}")
        try:
            return requests.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def client(self) -> HttpMapperClient:
        return HttpMapperClient(self.query_url, self.token, timeout=10.0)

    def report_tcp(self, connections: Sequence[tuple[WorkloadIdentity, WorkloadIdentity, int]]) -> None:
        """The sniffer's TCP SYN report: each client pod's IP → the server pod's IP and port."""
        results = [
            {
                "srcIp": self.cluster.pod_ips[src],
                "srcHostname": "",
                "destinations": [_destination(self.cluster.pod_ips[dst], port)],
            }
            for src, dst, port in connections
        ]
        self._mutate(TCP_MUTATION, results, "reportTCPCaptureResults")

    def report_dns(self, source: WorkloadIdentity, name: str, ip: str) -> None:
        """The sniffer's DNS report: ``source`` resolved ``name`` to ``ip``."""
        results = [
            {
                "srcIp": self.cluster.pod_ips[source],
                "srcHostname": "",
                "destinations": [_destination(name, ip=ip)],
            }
        ]
        self._mutate(DNS_MUTATION, results, "reportCaptureResults")

    def _mutate(self, document: str, results: list[dict[str, Any]], field: str) -> None:
        mapper = self.client()
        try:
            answer = mapper.execute(document, {"results": {"results": results}})
        finally:
            mapper.close()
        assert answer == {field: True}, answer

    def edges(self) -> list[Edge]:
        mapper = self.client()
        try:
            return [edge_from_json(e) for e in mapper.execute(EDGES_QUERY, {"namespaces": None})["edges"]]
        finally:
            mapper.close()

    def wait_for_edges(
        self, keys: Iterable[tuple[WorkloadIdentity, Target]], timeout: float = 10.0
    ) -> list[Edge]:
        """The mapper's edges once every expected ``(client, target)`` key is among them."""
        expected = set(keys)

        def resolved() -> list[Edge]:
            found = self.edges()
            return found if expected <= {e.key for e in found} else []

        return wait_until(resolved, timeout, f"the mapper to resolve {len(expected)} edges")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then wait; the exit status (killed and AssertionError after ``timeout``)."""
        if self.process is None:
            raise RuntimeError("not started")
        if self.returncode is not None:
            return self.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            self.returncode = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.returncode = self.process.wait(5)
            raise AssertionError(
                f"the mapper did not exit within {timeout}s of SIGTERM:\n{self.log()}"
            ) from None
        return self.returncode

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def __enter__(self) -> MapperProcess:
        try:
            return self.start()
        except BaseException:
            self.kill()
            raise

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self.returncode is None and self.process is not None and self.process.poll() is None:
                self.stop()
        finally:
            self.kill()


def run_cli(args: Sequence[str], timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """``python -m agent.cli ARGS`` (the user's command line), its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(),
        cwd=REPO,
        check=False,
    )
