"""The sandbox's control plane and node, in one long-lived process.

Started detached by ``python -m sandbox up``; it builds the network (:mod:`sandbox.network`),
serves the Kubernetes API stand-in (:mod:`sandbox.apiserver`, over HTTPS as a cluster's) on
127.0.0.1 and, through a forward, on the node's bridge address (reached by pods at the
``kubernetes`` Service's ClusterIP). It installs the product from its helm chart
(:mod:`sandbox.chartrun`: the rendered objects created through the API, each workload's pod made
as its controller would), creates the sandbox's own workloads' API objects (:mod:`sandbox.objects`)
through the real ``kubernetes`` client, runs each pod's containers as stored (:mod:`sandbox.podspec`,
:mod:`sandbox.kubelet`: service-account token, volumes and claims, probes by :mod:`sandbox.probes`)
and publishes their status (restarts and readiness included) through the API, publishes
Services/Endpoints/EndpointSlices and programs the ClusterIP DNAT rules, enforces the API's
NetworkPolicies (:mod:`sandbox.netenforcer`) and serves traffic control (:mod:`sandbox.trafficcontrol`)
on its control endpoint. It records every namespace
and process in the state file before making it, marks the state ready, and on SIGTERM stops its
pods. ``down`` removes what the state file lists.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import sys
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import utils as k8s_utils

from sandbox import awssetup, chartrun, netns, network, objects, podspec
from sandbox.apiserver import ApiServer
from sandbox.apiserver.discovery import RESOURCES
from sandbox.awscloud import prepare
from sandbox.awsdemo import AWS_PORT
from sandbox.cloudsetup import create_demo_tenant, wait_for_cloud
from sandbox.control import serve as serve_control
from sandbox.forward import Forward
from sandbox.kubelet import ContainerProcess, ContainerSpec, PodProcess
from sandbox.netenforcer import Enforcer, api_source
from sandbox.nodeconfig import (
    IMAGE_TRUST_ENV,
    claim_dir,
    console_scripts,
    hides_image,
    kubeconfig_paths,
    node_dial,
    search_domains,
    serving_tls,
)
from sandbox.nodes import FIRST_NODE, NODES, Node, node_object, node_of
from sandbox.probes import Prober
from sandbox.product import FIRST, WORKLOADS
from sandbox.state import StateFile
from sandbox.topology import (
    AGENT_NS,
    API_NODE_PORT,
    API_SERVICE_IP,
    AWS_IP,
    CLOUD_IP,
    CLOUD_NAME,
    CLOUD_PORT,
    CLUSTER_DOMAIN,
    DNS_SERVICE_IP,
    NODE_IP,
    SYSTEM_NS,
    Workload,
)
from sandbox.trafficcontrol import TrafficControl

log = logging.getLogger(__name__)

READY_TIMEOUT = 90.0  # seconds a chart pod may take to pass its readiness probes
HOOK_TIMEOUT = 120.0  # seconds a `helm test` pod may run


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
        # pod → ((container, image), ip, start time)
        self._published: dict[tuple[str, str], tuple[tuple[tuple[str, str], ...], str, str]] = {}
        self.cluster_dns = podspec.ClusterDns(DNS_SERVICE_IP, CLUSTER_DOMAIN)
        self.image_env: dict[str, str] = {}  # what every sandbox image sets (its trust store)
        self.scripts = console_scripts(python)
        self.image_paths = (Path(sys.prefix), Path(__file__).resolve().parents[1], state_dir)
        self.prober = Prober(self._readiness_changed, self._liveness_failed)
        self._probed: set[tuple[str, str]] = set()
        self._restart_policies: dict[tuple[str, str], str] = {}
        self._hook_lock = threading.Lock()  # one `helm test` at a time
        self._next_ip = 10
        self._host_ips: dict[tuple[str, str], str] = {}  # pod → its node's address (status.hostIP)

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
        network.create_nodes(self._record_ns)
        network.create_internet(self._record_ns)
        node_resolv = podspec.ResolvConf((DNS_SERVICE_IP,), search_domains("default"), ("ndots:5",))
        for node in NODES:
            network.write_resolv_conf(self._record_ns, node.netns, node_resolv.text())

        # Admission webhooks are Services: the API server reaches their ClusterIPs from the node.
        # HTTPS, as in a cluster: in-cluster clients (the product's) accept nothing else.
        tls = serving_tls(self.files.dir / "apiserver")
        api = ApiServer(host="127.0.0.1", port=0, log_dir=self.log_dir, dial=node_dial, tls=tls)
        self.state.api_port = api.start()
        self.api_access = podspec.ApiAccess(API_SERVICE_IP, 443, tls.ca_pem, api.token)
        user_cfg, pod_cfg = kubeconfig_paths(self.files.dir)
        api.write_kubeconfig(user_cfg)
        cfg = yaml.safe_load(user_cfg.read_text())
        for c in cfg["clusters"]:
            c["cluster"]["server"] = f"https://{API_SERVICE_IP}:443"
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
        enforcer = self._register_nodes()
        self.traffic = TrafficControl(self._service_target, self.log_dir, self.python, self._record_pid)
        for w in WORKLOADS:
            if w.service_port:
                self._create_service(w)
        self._start_internet()
        self._start_cloud()
        self._start_aws()
        release = self._install_chart()
        control = serve_control(
            self._control,
            lambda: self._helm_test(release),
            lambda ns, workload, action, server: self.traffic.act(
                list(self.pods), ns, workload, action, server
            ),
        )
        self.state.forwards["control"] = control.server_address[1]
        self.prober.start()
        self.rules = [network.ServiceRule(API_SERVICE_IP, 443, "tcp", ((NODE_IP, API_NODE_PORT),))]
        network.apply_services(self.rules)
        for w in WORKLOADS[:FIRST]:
            self._run_workload(w)
        for workload in release.workloads:
            self._run_chart_pod(workload, release)
        for w in WORKLOADS[FIRST:]:
            self._run_workload(w)
        self.state.ready = True
        self._save()
        log.info("sandbox ready pods=%d api_port=%d", len(self.pods), self.state.api_port)
        self.stop_requested.wait()
        self.prober.stop()
        enforcer.stop()
        self.traffic.stop()
        self._stop_pods()
        api.stop()

    def _register_nodes(self) -> Enforcer:
        """The Node objects, as each node's kubelet registers its node, and the CNI's policy agent on
        every node: in force before the first pod starts (no policy = all allowed); the same table on
        each node, as a call between nodes crosses the forward path of both."""
        for node in NODES:
            self._create(node_object(node))
        source = api_source(self.api_client, tuple(n.ip for n in NODES))
        return Enforcer(source, tuple(n.netns for n in NODES)).start()

    def _ip(self, node: Node = FIRST_NODE) -> str:
        ip = f"{node.pod_prefix}{self._next_ip}"
        self._next_ip += 1
        return ip

    def _run_workload(self, w: Workload) -> None:
        """One of the sandbox's own workloads (not the product): planned from :mod:`sandbox.topology`,
        on the node :func:`sandbox.nodes.node_of` places it on."""
        node = node_of(w)
        plan = objects.plan_pod(w, self._ip(node), fill=self._fill(), node_name=node.name, node_ip=node.ip)
        stored = self._create_chain(plan.owners, plan.pod)
        self._start_pod(stored, plan.ip, w.host_network, objects.images(w), node)
        if w.service_port:
            # Published pod by pod, as an endpoints controller would, so early callers connect.
            self.rules += self._publish_endpoints(w, plan, node)
            network.apply_services(self.rules)
        if w.wait_ready:
            netns.wait_for_port(node.netns, (plan.ip, w.port))

    def _install_chart(self) -> chartrun.Release:
        """``helm install``: the chart rendered for the sandbox's values, its objects created through
        the API (Secrets, RBAC, Services, the webhook configuration, ...); the workloads follow."""
        values = chartrun.sandbox_values(
            f"http://{CLOUD_NAME}:{CLOUD_PORT}", self.state.cloud_ingest_token, self.state.token
        )
        release = chartrun.render(values, AGENT_NS, [r.kind for r in RESOURCES])
        for obj in release.objects:
            created = self._create(obj)
            if obj["kind"] == "Service":
                self.cluster_ips[(AGENT_NS, obj["metadata"]["name"])] = created.spec.cluster_ip
        log.info(
            "chart installed objects=%d workloads=%d skipped_kinds=%s",
            len(release.objects),
            len(release.workloads),
            ",".join(release.kinds_skipped) or "-",
        )
        return release

    def _run_chart_pod(self, workload: dict[str, Any], release: chartrun.Release) -> None:
        """A chart workload's pod (a DaemonSet's: one per node), as its controller and the kubelet
        make and run it; the next one starts once its readiness probes pass (``helm install --wait``)."""
        owner_uid = ""
        first: tuple[chartrun.ChartPod, dict[str, Any], str] | None = None
        for node in NODES if workload["kind"] == "DaemonSet" else (FIRST_NODE,):
            planned = chartrun.pod_plan(workload, node.name, per_node=node is not FIRST_NODE)
            ip = node.ip if planned.host_network else self._ip(node)
            # The controller exists once: a further node's pod is only the pod, owned by it.
            stored = self._create_chain(() if owner_uid else planned.owners, planned.pod, owner_uid)
            owner_uid = stored["metadata"]["ownerReferences"][0]["uid"]
            first = first or (planned, stored, ip)
            proc = self._start_pod(stored, ip, planned.host_network, planned.images, node)
            if (planned.namespace, planned.name) in self._probed:
                self.prober.wait_ready(proc, READY_TIMEOUT)
        assert first is not None
        planned, stored, ip = first  # the first node's pod (a Deployment's only one) backs Services
        if workload["metadata"]["name"] == chartrun.RELEASE:
            # The user's side reaches the mapper like `kubectl port-forward` would.
            port = stored["spec"]["containers"][0]["ports"][0]["containerPort"]
            fwd = Forward(("127.0.0.1", 0), (ip, port), target_ns=network.NODE_NETNS).start()
            self.state.forwards["mapper"] = fwd.port
        for obj in release.objects:
            if obj["kind"] == "Service" and chartrun.selects(obj, stored):
                service = self.api_client.sanitize_for_serialization(
                    self.core.read_namespaced_service(obj["metadata"]["name"], planned.namespace)
                )
                ep, eps, routes = chartrun.endpoints(service, stored, ip, FIRST_NODE.name)
                self._create(ep)
                self._create(eps)
                self.rules += [
                    network.ServiceRule(r.cluster_ip, r.port, r.protocol, ((r.pod_ip, r.target_port),))
                    for r in routes
                ]
                network.apply_services(self.rules)

    def _create(self, manifest: dict[str, Any]) -> Any:
        created = k8s_utils.create_from_dict(
            self.api_client, manifest, namespace=manifest["metadata"].get("namespace")
        )
        return created[0]

    def _create_namespaces(self) -> None:
        existing = {n.metadata.name for n in self.core.list_namespace().items}
        for ns in sorted({AGENT_NS} | {w.namespace for w in WORKLOADS} - existing):
            self.core.create_namespace({"metadata": {"name": ns}})

    def _create_service(self, w: Workload) -> None:
        svc = self._create(objects.service(w, DNS_SERVICE_IP if w.namespace == SYSTEM_NS else None))
        self.cluster_ips[(w.namespace, w.service)] = svc.spec.cluster_ip

    def _create_chain(
        self, owners: tuple[dict[str, Any], ...], pod: dict[str, Any], owner_uid: str = ""
    ) -> dict[str, Any]:
        """Create each owner and then the pod, each owned by the one before (the first by the object
        whose UID is ``owner_uid``, when given); the pod as stored (admission may have patched it).
        The kubelet runs the pod *as stored*: its commands, env, volumes and DNS."""
        stored: Any = None
        for manifest in (*owners, pod):
            refs = manifest["metadata"].get("ownerReferences")
            if refs:
                refs[0]["uid"] = owner_uid
            stored = self._create(manifest)
            owner_uid = stored.metadata.uid
        return dict(self.api_client.sanitize_for_serialization(stored))

    def _start_pod(
        self,
        pod: dict[str, Any],
        ip: str,
        host_network: bool,
        images: tuple[tuple[str, str], ...],
        node: Node = FIRST_NODE,
    ) -> PodProcess:
        meta = pod["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        run = podspec.pod_run(
            pod,
            ip,
            self.cluster_dns,
            self.sources,
            self.image_env,
            api=self.api_access,
            scripts=self.scripts,
            host_ip=node.ip,
        )
        if host_network:
            ns = node.netns
        else:
            ns = f"nm-{name}"[:64]
            network.create_pod_netns(self._record_ns, ns, f"nmv{ip.rsplit('.', 1)[1]}", ip, node)
            network.write_resolv_conf(self._record_ns, ns, run.resolv.text())
        volume_dirs = self._write_volumes(namespace, name, run.volumes, run.claims)
        specs = []
        for c in run.containers:
            mounts = []
            for m in c.mounts:
                if hides_image(m.path, self.image_paths):
                    log.info(
                        "volume not mounted ns=%s pod=%s path=%s: the image lives there",
                        namespace,
                        name,
                        m.path,
                    )
                    continue
                self._record_mount_point(m.path)
                mounts.append((volume_dirs[m.volume], m.path, m.read_only))
            specs.append(ContainerSpec(c.name, c.argv, c.env, tuple(mounts), run.restart_policy))
        proc = PodProcess(
            namespace,
            name,
            ns,
            specs,
            log_dir=self.log_dir,
            python=self.python,
            on_change=self._container_changed,
        ).start()
        self.pods.append(proc)
        probes = {c.name: (c.readiness, c.liveness) for c in run.containers if c.readiness or c.liveness}
        if probes:
            self._probed.add((namespace, name))
            self.prober.add(proc, node.netns, ip, probes)  # from the pod's node, as its kubelet
        started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._host_ips[(namespace, name)] = node.ip
        self._published[(namespace, name)] = (images, ip, started)
        self._restart_policies[(namespace, name)] = run.restart_policy
        self._publish_status(proc)
        return proc

    def _readiness_changed(self, pod: PodProcess, ready: bool) -> None:
        log.info("readiness ns=%s pod=%s ready=%s", pod.namespace, pod.pod, ready)
        self._publish_status(pod)

    def _helm_test(self, release: chartrun.Release) -> tuple[bool, str]:
        """``helm test``: each of the release's test hooks run as a pod to completion (an earlier run's
        pod deleted first, as ``before-hook-creation`` says); (all succeeded, a report with each
        pod's phase and output)."""
        report = []
        ok = True
        with self._hook_lock:
            for hook in chartrun.test_hooks(release):
                meta = hook["metadata"]
                name, namespace = meta["name"], meta.get("namespace", AGENT_NS)
                for old in [p for p in self.pods if (p.namespace, p.pod) == (namespace, name)]:
                    old.stop()
                    self.pods.remove(old)
                    self.core.delete_namespaced_pod(name, namespace)
                pod = chartrun.hook_pod(hook, namespace, FIRST_NODE.name)
                stored = self._create_chain((), pod)
                images = tuple((c["name"], c.get("image", "")) for c in stored["spec"]["containers"])
                proc = self._start_pod(stored, self._ip(), bool(stored["spec"].get("hostNetwork")), images)
                done = proc.wait_completed(HOOK_TIMEOUT)
                codes = [s.exited.exit_code if s.exited else None for s in proc.states()]
                phase = "Succeeded" if done and codes and all(c == 0 for c in codes) else "Failed"
                ok = ok and phase == "Succeeded"
                # As `helm test --logs` shows it: the pod's log through the API.
                answer = self.core.read_namespaced_pod_log(name, namespace, _preload_content=False)
                output = answer.data.decode("utf-8", "replace")
                report.append(f"TEST SUITE:     {name}\nPhase:          {phase}\n{output}")
                log.info("helm test pod=%s/%s phase=%s codes=%s", namespace, name, phase, codes)
        return ok, "\n".join(report)

    def _liveness_failed(self, pod: PodProcess, container: str) -> None:
        # A restart waits for the old process to end: not in the prober's thread.
        threading.Thread(target=pod.restart, args=(container,), daemon=True).start()

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
        self,
        namespace: str,
        pod: str,
        volumes: Mapping[str, Mapping[str, bytes]],
        claims: Mapping[str, str],
    ) -> dict[str, Path]:
        """Each volume's files under the state directory (what the kubelet keeps under /var/lib/kubelet);
        a claim's directory is the claim's, kept across the pod's restarts and re-creations."""
        dirs = {}
        for name, files in volumes.items():
            if name in claims:
                d = claim_dir(self.files.dir, namespace, claims[name])
            else:
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
        status is out; until then :meth:`_start_pod` publishes it)."""
        if container.alive():
            first = container is pod.containers[0]
            role = f"{pod.namespace}/{pod.pod}" + ("" if first else f"/{container.name}")
            self._record_pid(role, container.pid)
        if (pod.namespace, pod.pod) in self._published:
            self._publish_status(pod)

    def _publish_status(self, pod: PodProcess) -> None:
        images, ip, started = self._published[(pod.namespace, pod.pod)]
        probed = (pod.namespace, pod.pod) in self._probed
        with self._status_lock:  # the states are read inside the lock: a later patch is never older
            ready = self.prober.ready(pod) if probed else True
            policy = self._restart_policies.get((pod.namespace, pod.pod), "Always")
            host_ip = self._host_ips.get((pod.namespace, pod.pod), NODE_IP)
            body = objects.pod_status(
                images, ip, started, pod.states(), ready, restart_policy=policy, host_ip=host_ip
            )
            try:
                self.core.patch_namespaced_pod_status(pod.pod, pod.namespace, body)
            except k8s.ApiException as exc:  # e.g. a test deleted the pod: keep the kubelet going
                log.warning("pod status not published ns=%s pod=%s: %s", pod.namespace, pod.pod, exc.reason)

    def _publish_endpoints(self, w: Workload, plan: objects.PodPlan, node: Node) -> list[network.ServiceRule]:
        pods = [(plan.pod_name, plan.ip)]
        self._create(objects.endpoints(w, pods, node.name))
        self._create(objects.endpoint_slice(w, pods, node.name))
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
        # The image's system trust store: the public roots, "AWS"'s CA among them.
        for variable in IMAGE_TRUST_ENV:
            self.image_env[variable] = str(trust.public_roots)
        (self.files.dir / "aws-signatures").mkdir(exist_ok=True)
        self._create(awssetup.credentials_secret())
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
        wait_for_cloud(base, admin_file, timeout=60)
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

    def _service_target(self, namespace: str, name: str) -> str | None:
        """``<name>:<its Service's first port>`` (what ``traffic add`` calls, by DNS name); None without."""
        service = self._read(self.core.read_namespaced_service, namespace, name)
        ports = ((service or {}).get("spec") or {}).get("ports") or []
        return f"{name}:{ports[0]['port']}" if ports else None

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
