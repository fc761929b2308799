"""The sandbox's control plane and node, in one long-lived process.

Started detached by ``python -m sandbox up``; it builds the network (:mod:`sandbox.network`),
serves the Kubernetes API stand-in (:mod:`sandbox.apiserver`) on 127.0.0.1 and, through a
forward, on the node's bridge address (reached by pods at the ``kubernetes`` Service's
ClusterIP), creates the workloads' API objects (:mod:`sandbox.objects`) through the real
``kubernetes`` client, runs each pod's containers (:mod:`sandbox.kubelet`) and publishes their
status (restarts included) through the API, publishes Services/Endpoints/EndpointSlices and
programs the ClusterIP DNAT rules. It records every namespace and process in the state file
before making it, marks the state ready, and on SIGTERM stops its pods. ``down`` removes what
the state file lists.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import requests
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import utils as k8s_utils

from sandbox import awssetup, netns, network, objects, podspec
from sandbox.apiserver import ApiServer
from sandbox.awscloud import prepare
from sandbox.awsdemo import AWS_PORT
from sandbox.control import serve as serve_control
from sandbox.forward import Forward
from sandbox.kubelet import ContainerProcess, ContainerSpec, PodProcess
from sandbox.product import WORKLOADS
from sandbox.state import StateFile
from sandbox.topology import (
    AGENT_NS,
    API_NODE_PORT,
    API_SERVICE_IP,
    AWS_IP,
    CLOUD_IP,
    CLOUD_PORT,
    CLUSTER_DOMAIN,
    DNS_SERVICE_IP,
    NODE_IP,
    SYSTEM_NS,
    Workload,
)

log = logging.getLogger(__name__)


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


def kubeconfig_paths(state_dir: Path) -> tuple[Path, Path]:
    """(the user's kubeconfig on 127.0.0.1, the pods' kubeconfig on the ``kubernetes`` ClusterIP)."""
    return state_dir / "kubeconfig", state_dir / "kubeconfig-incluster"


def node_dial(host: str, port: int, timeout: float) -> socket.socket:
    """A connection made in the node's namespace (where ClusterIPs are DNATed), for the API server."""
    with netns.entered(network.NODE_NETNS):
        return socket.create_connection((host, port), timeout)


def search_domains(namespace: str) -> tuple[str, ...]:
    return podspec.cluster_search(namespace, CLUSTER_DOMAIN)


class Supervisor:
    def __init__(self, state_dir: Path, python: str = sys.executable) -> None:
        self.files = StateFile(state_dir)
        self.state = self.files.load()
        self.log_dir = state_dir / "logs"
        self.python = python
        self.pods: list[PodProcess] = []
        self.stop_requested = threading.Event()
        self._state_lock = threading.Lock()
        self.cluster_ips: dict[tuple[str, str], str] = {}
        self._status_lock = threading.Lock()  # one status patch at a time: the last one is the newest
        self._published: dict[tuple[str, str], tuple[Workload, str, str]] = {}  # pod -> (w, ip, start)
        self.cluster_dns = podspec.ClusterDns(DNS_SERVICE_IP, CLUSTER_DOMAIN)
        self.image_env: dict[str, str] = {}  # what every sandbox image sets (its trust store)

    # ---------------------------------------------------------------- write-ahead records
    def _record_ns(self, name: str) -> None:
        with self._state_lock:
            if name.startswith("/"):
                self.state.etc_netns.append(name)
            elif name not in self.state.netns:
                self.state.netns.append(name)
            self.files.save(self.state)

    def _save(self) -> None:
        with self._state_lock:
            self.files.save(self.state)

    def _record_pid(self, role: str, pid: int) -> None:
        with self._state_lock:  # pod watcher threads record restarts too
            self.state.pids[role] = pid
            self.files.save(self.state)

    # ---------------------------------------------------------------- the steps
    def run(self) -> None:
        self._record_pid("supervisor", os.getpid())
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.state.token = secrets.token_hex(16)
        network.create_node(self._record_ns)
        network.create_internet(self._record_ns)
        node_resolv = podspec.ResolvConf((DNS_SERVICE_IP,), search_domains("default"), ("ndots:5",))
        network.write_resolv_conf(self._record_ns, network.NODE_NETNS, node_resolv.text())

        # Admission webhooks are Services: the API server reaches their ClusterIPs from the node.
        api = ApiServer(host="127.0.0.1", port=0, log_dir=self.log_dir, dial=node_dial)
        self.state.api_port = api.start()
        user_cfg, pod_cfg = kubeconfig_paths(self.files.dir)
        api.write_kubeconfig(user_cfg)
        cfg = yaml.safe_load(user_cfg.read_text())
        for c in cfg["clusters"]:
            c["cluster"]["server"] = f"http://{API_SERVICE_IP}:443"
        pod_cfg.write_text(yaml.safe_dump(cfg))
        Forward(
            (NODE_IP, API_NODE_PORT), ("127.0.0.1", self.state.api_port), listen_ns=network.NODE_NETNS
        ).start()
        self._save()

        api_client = k8s_config.new_client_from_config(config_file=str(user_cfg))
        self.core = k8s.CoreV1Api(api_client)
        self.api_client = api_client
        core = self.core
        self.sources = podspec.Sources(
            lambda ns, name: podspec.secret_data(self._read(core.read_namespaced_secret, ns, name)),
            lambda ns, name: podspec.config_map_data(self._read(core.read_namespaced_config_map, ns, name)),
        )
        self._create_namespaces()
        for w in WORKLOADS:
            if w.service_port:
                self._create_service(w)
        self._start_internet()
        self._start_cloud()
        self._start_aws()
        control = serve_control(self._control)
        self.state.forwards["control"] = control.server_address[1]
        rules = [network.ServiceRule(API_SERVICE_IP, 443, "tcp", ((NODE_IP, API_NODE_PORT),))]
        network.apply_services(rules)
        for i, w in enumerate(WORKLOADS):
            plan = objects.plan_pod(w, f"10.244.1.{10 + i}", fill=self._fill())
            self._run_pod(plan, i)
            if w.name == "network-mapper":
                # The user's side reaches the mapper like `kubectl port-forward` would.
                fwd = Forward(("127.0.0.1", 0), (plan.ip, w.port), target_ns=network.NODE_NETNS).start()
                self.state.forwards["mapper"] = fwd.port
            if w.service_port:
                # Published pod by pod, as an endpoints controller would, so early callers connect.
                rules += self._publish_endpoints(w, plan)
                network.apply_services(rules)
            if w.wait_ready:
                netns.wait_for_port(network.NODE_NETNS, (plan.ip, w.port))
        self.state.ready = True
        self._save()
        log.info("sandbox ready pods=%d api_port=%d", len(self.pods), self.state.api_port)
        self.stop_requested.wait()
        self._stop_pods()
        api.stop()

    def _create(self, manifest: dict[str, Any]) -> Any:
        created = k8s_utils.create_from_dict(
            self.api_client, manifest, namespace=manifest["metadata"].get("namespace")
        )
        return created[0]

    def _create_namespaces(self) -> None:
        existing = {n.metadata.name for n in self.core.list_namespace().items}
        for ns in sorted({w.namespace for w in WORKLOADS} - existing):
            self.core.create_namespace({"metadata": {"name": ns}})

    def _create_service(self, w: Workload) -> None:
        svc = self._create(objects.service(w, DNS_SERVICE_IP if w.namespace == SYSTEM_NS else None))
        self.cluster_ips[(w.namespace, w.service)] = svc.spec.cluster_ip

    def _run_pod(self, plan: objects.PodPlan, index: int) -> None:
        """Create the pod's owners and the pod through the API (where admission may patch it), then
        run the pod *as stored*: its commands, env, volumes and DNS come from the stored spec."""
        w = plan.workload
        owner_uid = ""
        stored: Any = None
        for manifest in (*plan.owners, plan.pod):
            refs = manifest["metadata"].get("ownerReferences")
            if refs:
                refs[0]["uid"] = owner_uid
            stored = self._create(manifest)
            owner_uid = stored.metadata.uid
        pod = self.api_client.sanitize_for_serialization(stored)
        run = podspec.pod_run(pod, plan.ip, self.cluster_dns, self.sources, self.image_env)
        if w.host_network:
            ns = network.NODE_NETNS
        else:
            ns = f"nm-{plan.pod_name}"[:64]
            network.create_pod_netns(self._record_ns, ns, f"nmv{index}", plan.ip)
            network.write_resolv_conf(self._record_ns, ns, run.resolv.text())
        volume_dirs = self._write_volumes(w.namespace, plan.pod_name, run.volumes)
        specs = []
        for c in run.containers:
            for m in c.mounts:
                self._record_mount_point(m.path)
            mounts = tuple((volume_dirs[m.volume], m.path, m.read_only) for m in c.mounts)
            specs.append(ContainerSpec(c.name, c.argv, c.env, mounts))
        proc = PodProcess(
            w.namespace,
            plan.pod_name,
            ns,
            specs,
            log_dir=self.log_dir,
            python=self.python,
            on_change=self._container_changed,
        ).start()
        self.pods.append(proc)
        started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._published[(w.namespace, plan.pod_name)] = (w, plan.ip, started)
        self._publish_status(proc)

    def _fill(self) -> dict[str, str]:
        """The values of the workloads' ``{placeholders}`` (what a real cluster gives by itself)."""
        _, pod_cfg = kubeconfig_paths(self.files.dir)
        return {
            "public_roots": self.image_env.get("AWS_CA_BUNDLE", ""),
            "kubeconfig": str(pod_cfg),
            "data_dir": str(self.files.dir / "mapper-data"),
            "token": self.state.token,
            "cloud_token": self.state.cloud_ingest_token,
            "state_dir": str(self.files.dir),
        }

    def _read(self, read: Any, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return dict(self.api_client.sanitize_for_serialization(read(name, namespace)))
        except k8s.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _write_volumes(
        self, namespace: str, pod: str, volumes: Mapping[str, Mapping[str, bytes]]
    ) -> dict[str, Path]:
        """Each volume's files under the state directory (what the kubelet keeps under /var/lib/kubelet)."""
        dirs = {}
        for name, files in volumes.items():
            d = self.files.dir / "volumes" / f"{namespace}_{pod}" / name
            d.mkdir(parents=True, exist_ok=True)
            for file_name, content in files.items():
                (d / file_name).write_bytes(content)
            dirs[name] = d
        return dirs

    def _record_mount_point(self, path: str) -> None:
        """Write-ahead record of each directory about to be made on the machine for a mount point."""
        missing = []
        p = Path(path)
        while not p.exists():
            missing.append(str(p))
            p = p.parent
        if missing:
            with self._state_lock:
                self.state.mount_points.extend(m for m in missing if m not in self.state.mount_points)
                self.files.save(self.state)
            Path(path).mkdir(parents=True, exist_ok=True)

    def _container_changed(self, pod: PodProcess, container: ContainerProcess) -> None:
        """A container started or exited: record its pid, then tell the API (once the pod's first
        status is out; until then :meth:`_run_pod` publishes it)."""
        if container.alive():
            first = container is pod.containers[0]
            role = f"{pod.namespace}/{pod.pod}" + ("" if first else f"/{container.name}")
            self._record_pid(role, container.pid)
        if (pod.namespace, pod.pod) in self._published:
            self._publish_status(pod)

    def _publish_status(self, pod: PodProcess) -> None:
        w, ip, started = self._published[(pod.namespace, pod.pod)]
        with self._status_lock:  # the states are read inside the lock: a later patch is never older
            body = objects.pod_status(w, ip, started, pod.states())
            try:
                self.core.patch_namespaced_pod_status(pod.pod, pod.namespace, body)
            except k8s.ApiException as exc:  # e.g. a test deleted the pod: keep the kubelet going
                log.warning("pod status not published ns=%s pod=%s: %s", pod.namespace, pod.pod, exc.reason)

    def _publish_endpoints(self, w: Workload, plan: objects.PodPlan) -> list[network.ServiceRule]:
        pods = [(plan.pod_name, plan.ip)]
        self._create(objects.endpoints(w, pods))
        self._create(objects.endpoint_slice(w, pods))
        cluster_ip = self.cluster_ips[(w.namespace, w.service)]
        return [
            *(
                network.ServiceRule(cluster_ip, w.service_port, proto, ((plan.ip, w.serving_port),))
                for proto in (("udp", "tcp") if w.protocol == "UDP" else ("tcp",))
            ),
            *(network.ServiceRule(cluster_ip, port, "tcp", ((plan.ip, port),)) for _, port in w.more_ports),
        ]

    def _start_outside(self, name: str, argv: tuple[str, ...], where: str = network.INTERNET_NETNS) -> None:
        """A process "on the Internet" (or "AWS"): no pod in the API, so nothing but its pid is recorded."""
        role = f"internet/{name}"
        proc = PodProcess(
            "internet",
            name,
            where,
            [ContainerSpec(name, argv)],
            log_dir=self.log_dir,
            python=self.python,
            on_change=lambda _pod, c: self._record_pid(role, c.pid) if c.alive() else None,
        ).start()
        self.pods.append(proc)

    def _start_internet(self) -> None:
        self._start_outside("www", ("-m", "sandbox.workloads", "internet", "--port", "80"))

    def _start_aws(self) -> None:
        """AWS visibility's prerequisites: "AWS" (the stand-in in its own namespace, with the demo's
        bucket, table and queue made through it), the trust every pod gets, the chart's objects and
        the demo's credentials."""
        trust = awssetup.write_trust(self.files.dir / "aws")
        self.image_env["AWS_CA_BUNDLE"] = str(trust.public_roots)
        (self.files.dir / "aws-signatures").mkdir(exist_ok=True)
        for manifest in (*awssetup.product_objects(AGENT_NS), awssetup.credentials_secret()):
            self._create(manifest)
        argv: tuple[str, ...] = ("-m", "sandbox.awscloud", "--listen", f"{AWS_IP}:{AWS_PORT}")
        argv += ("--cert-file", str(trust.cert_file), "--key-file", str(trust.key_file))
        self._start_outside("aws", argv, network.AWS_NETNS)
        fwd = Forward(("127.0.0.1", 0), (AWS_IP, AWS_PORT), target_ns=network.AWS_NETNS).start()
        self.state.forwards["aws"] = fwd.port
        netns.wait_for_port(network.AWS_NETNS, (AWS_IP, AWS_PORT))
        prepare(("127.0.0.1", fwd.port), trust.public_roots)

    def _start_cloud(self) -> None:
        """The local cloud backend in the "Internet" namespace, with a tenant for this cluster."""
        cloud_dir = self.files.dir / "cloud"
        cloud_dir.mkdir(exist_ok=True)
        admin_file = cloud_dir / "admin.token"
        argv: tuple[str, ...] = ("-m", "cloud_functions.local", "--listen", f"{CLOUD_IP}:{CLOUD_PORT}")
        argv += ("--db", str(cloud_dir / "cloud.db"), "--admin-token-file", str(admin_file))
        self._start_outside("cloud", argv)
        fwd = Forward(("127.0.0.1", 0), (CLOUD_IP, CLOUD_PORT), target_ns=network.INTERNET_NETNS).start()
        self.state.forwards["cloud"] = fwd.port
        base = f"http://127.0.0.1:{fwd.port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if admin_file.exists() and requests.get(f"{base}/healthz", timeout=2).ok:
                    break
            except requests.RequestException:
                pass  # not listening yet: keep polling until the deadline
            if time.monotonic() > deadline:
                raise RuntimeError("the local cloud did not start within 60 s; see its log")
            time.sleep(0.2)
        tenant = create_demo_tenant(base, admin_file.read_text().strip())
        self.state.cloud_tenant, self.state.cloud_ingest_token, self.state.cloud_read_token = tenant
        self._save()

    def _control(self, namespace: str, prefix: str, action: str, container: str | None) -> bool:
        matched = [p for p in self.pods if p.namespace == namespace and p.pod.startswith(prefix)]
        done = bool(matched)
        for p in matched:
            if action == "pause":
                p.pause()
            elif action == "resume":
                p.resume()
            else:
                done = p.restart(container) and done
        log.info(
            "control %s ns=%s prefix=%s container=%s pods=%d ok=%s",
            action,
            namespace,
            prefix,
            container,
            len(matched),
            done,
        )
        return done

    def _stop_pods(self) -> None:
        for p in self.pods:
            p.stop()

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requested.set()


def main(state_dir: Path) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    sup = Supervisor(state_dir)
    signal.signal(signal.SIGTERM, sup.request_stop)
    signal.signal(signal.SIGINT, sup.request_stop)
    sup.run()
