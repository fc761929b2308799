"""What the sandbox cluster runs: namespaces, workloads, their ports and their calls.

This is pure data. :mod:`sandbox.objects` turns it into API objects (Deployment →
ReplicaSet → Pod, StatefulSet → Pod, CronJob → Job → Pod, Services, Endpoints,
EndpointSlices) and :mod:`sandbox.supervisor` into processes in network namespaces (one per
container: a pod may carry a sidecar beside its workload). The calls reproduce the
Google microservices-demo pattern in ``otterize-ecom-demo`` (the map in DESIGN.md §4), one
workload for each identity rule the mapper must honour, and Otterize's two watcher tutorials:
Kafka clients of a broker that logs its authorizer decisions (``otterize-tutorial-kafka-mapping``,
:data:`EXPECTED_KAFKA`) and Istio workloads whose sidecars count HTTP requests
(``otterize-tutorial-istio``, :data:`EXPECTED_ISTIO`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEMO_NS = "otterize-ecom-demo"
EXTRAS_NS = "sandbox-extras"
SYSTEM_NS = "kube-system"
CLUSTER_DOMAIN = "cluster.local"

NODE_NAME = "sandbox-node"
NODE_IP = "10.244.0.1"
POD_PREFIX = "10.244."
SERVICE_CIDR = "10.96.0.0/16"
DNS_SERVICE_IP = "10.96.0.10"
API_SERVICE_IP = "10.96.0.1"
API_NODE_PORT = 6443
INTERNET_IP = "198.51.100.10"
INTERNET_GATEWAY = "198.51.100.1"
# The product's cloud backend runs "on the Internet" too, as the SaaS would.
CLOUD_IP = "198.51.100.20"
CLOUD_PORT = 8800
CLOUD_NAME = "cloud.network-mapper.example"
EXTERNAL_NAMES = {"api.example.com": INTERNET_IP, CLOUD_NAME: CLOUD_IP}
# "AWS" (sandbox.awsdemo): every name under amazonaws.com is its stand-in's address.
AWS_IP = "203.0.113.10"  # TEST-NET-3: never a real address
AWS_GATEWAY = "203.0.113.1"
EXTERNAL_SUFFIXES = {"amazonaws.com": AWS_IP}


@dataclass(frozen=True, slots=True)
class Container:
    """A further container of a workload's pod (a sidecar): its own process, beside the workload's,
    in the pod's network namespace, running ``python -m <module> <args>``."""

    name: str
    module: str
    args: tuple[str, ...]
    ports: tuple[int, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    secret_env: dict[str, tuple[str, str]] = field(default_factory=dict)  # variable → (Secret, key)
    mounts: tuple[tuple[str, str], ...] = ()  # (volume name, mount path), read-only


@dataclass(frozen=True, slots=True)
class Volume:
    """A pod volume from a Secret or a ConfigMap of the pod's namespace."""

    name: str
    kind: str  # "secret" | "configMap"
    source: str  # the Secret's or ConfigMap's name


@dataclass(frozen=True, slots=True)
class Workload:
    """One workload and the program its pod runs (``python -m sandbox.workloads ...``)."""

    namespace: str
    name: str
    kind: str  # Deployment | StatefulSet | CronJob | DaemonSet
    args: tuple[str, ...]
    port: int = 0  # container port; 0 = no server
    service_port: int = 0  # Service port (0 = no Service)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    host_network: bool = False
    protocol: str = "TCP"
    module: str = "sandbox.workloads"
    service_name: str = ""  # defaults to the workload's name
    env: dict[str, str] = field(default_factory=dict)  # "{token}"-style placeholders allowed
    sidecars: tuple[Container, ...] = ()  # containers after the workload's own, in its pod
    target_port: int = 0  # the Service's targetPort when not ``port`` (a sidecar in front of it)
    pod_labels: dict[str, str] = field(default_factory=dict)  # on pods only (as an injector adds)
    service_account: str = ""  # "" = the namespace's "default"
    secret_env: dict[str, tuple[str, str]] = field(default_factory=dict)  # the workload's own container
    mounts: tuple[tuple[str, str], ...] = ()  # the workload's own container's (volume, path)
    volumes: tuple[Volume, ...] = ()
    more_ports: tuple[tuple[str, int], ...] = ()  # further TCP (name, port) of the Service and the pod
    wait_ready: bool = False  # the next pods wait until its port accepts connections (a readiness gate)

    @property
    def service(self) -> str:
        return self.service_name or self.name

    @property
    def serving_port(self) -> int:
        """Where the Service's traffic goes in the pod (its endpoints' port)."""
        return self.target_port or self.port

    @property
    def containers(self) -> tuple[Container, ...]:
        """The pod's containers, the workload's own first (named after the workload)."""
        ports = ((self.port,) if self.port else ()) + tuple(p for _, p in self.more_ports)
        own = Container(self.name, self.module, self.args, ports, self.env, self.secret_env, self.mounts)
        return (own, *self.sidecars)


def _svc(ns: str, name: str, port: int, calls: tuple[str, ...] = (), service_port: int = 0) -> Workload:
    args = ("service", "--port", str(port), *(a for c in calls for a in ("--call", c)))
    return Workload(ns, name, "Deployment", args, port=port, service_port=service_port or port)


def _url(name: str, port: int) -> str:
    return f"http://{name}:{port}/"


# Service ports as in microservices-demo; frontend's Service maps 80 → 8080 so a client's
# socket shows a port different from the server's.
PORTS = {
    "adservice": 9555,
    "cartservice": 7070,
    "checkoutservice": 5050,
    "currencyservice": 7000,
    "emailservice": 5000,
    "paymentservice": 50051,
    "productcatalogservice": 3550,
    "recommendationservice": 8080,
    "shippingservice": 50052,
}


def _calls(*names: str) -> tuple[str, ...]:
    return tuple(_url(n, PORTS[n]) for n in names)


DEMO: tuple[Workload, ...] = (
    *(_svc(DEMO_NS, n, PORTS[n]) for n in ("adservice", "currencyservice", "emailservice")),
    *(_svc(DEMO_NS, n, PORTS[n]) for n in ("paymentservice", "productcatalogservice", "shippingservice")),
    Workload(
        DEMO_NS,
        "cartservice",
        "Deployment",
        ("service", "--port", "7070", "--hold", "redis-cart:6379"),
        port=7070,
        service_port=7070,
    ),
    Workload(DEMO_NS, "redis-cart", "Deployment", ("redis", "--port", "6379"), port=6379, service_port=6379),
    _svc(
        DEMO_NS,
        "checkoutservice",
        PORTS["checkoutservice"],
        _calls(
            "cartservice",
            "currencyservice",
            "emailservice",
            "paymentservice",
            "productcatalogservice",
            "shippingservice",
        ),
    ),
    _svc(
        DEMO_NS,
        "frontend",
        8080,
        _calls(
            "adservice",
            "cartservice",
            "checkoutservice",
            "currencyservice",
            "productcatalogservice",
            "recommendationservice",
            "shippingservice",
        ),
        service_port=80,
    ),
    _svc(DEMO_NS, "recommendationservice", PORTS["recommendationservice"], _calls("productcatalogservice")),
    Workload(
        DEMO_NS, "loadgenerator", "Deployment", ("service", "--port", "0", "--call", "http://frontend:80/")
    ),
)

EXTRAS: tuple[Workload, ...] = (
    # A StatefulSet (pod "inventory-db-0") that others call.
    Workload(
        EXTRAS_NS, "inventory-db", "StatefulSet", ("service", "--port", "5432"), port=5432, service_port=5432
    ),
    # Identity by label: the Deployment is "billing-v2", the workload is "billing".
    Workload(
        EXTRAS_NS,
        "billing-v2",
        "Deployment",
        ("service", "--port", "8000", "--call", "http://inventory-db:5432/"),
        port=8000,
        service_port=8000,
        labels={"otterize/service-name": "billing"},
    ),
    # Identity by annotation; also the workload that calls the Internet.
    Workload(
        EXTRAS_NS,
        "audit-logger",
        "Deployment",
        (
            "service",
            "--port",
            "0",
            "--call",
            "http://api.example.com/v1/events",
            "--call",
            "http://billing-v2:8000/",
        ),
        annotations={"intents.otterize.com/workload-name": "audit"},
    ),
    # A CronJob's Job pod (long-running here so its traffic outlives the capture's start).
    Workload(
        EXTRAS_NS,
        "nightly-report",
        "CronJob",
        ("service", "--port", "0", "--call", "http://inventory-db:5432/"),
    ),
    # A hostNetwork DaemonSet pod: it shares the node's IP, as on a real node.
    Workload(
        EXTRAS_NS,
        "node-agent",
        "DaemonSet",
        ("service", "--port", "9100", "--call", "http://billing-v2.sandbox-extras.svc.cluster.local:8000/"),
        port=9100,
        host_network=True,
    ),
)

SYSTEM: tuple[Workload, ...] = (
    # The cluster DNS; "{pod_ip}" and "{kubeconfig}" are filled in when the pod starts.
    Workload(
        SYSTEM_NS,
        "coredns",
        "Deployment",
        (
            "--address",
            "{pod_ip}",
            "--port",
            "53",
            "--kubeconfig",
            "{kubeconfig}",
            "--cluster-domain",
            CLUSTER_DOMAIN,
            *(a for name, ip in EXTERNAL_NAMES.items() for a in ("--external", f"{name}={ip}")),
            *(a for name, ip in EXTERNAL_SUFFIXES.items() for a in ("--external-suffix", f"{name}={ip}")),
        ),
        port=53,
        service_port=53,
        protocol="UDP",
        module="sandbox.clusterdns",
        service_name="kube-dns",
        labels={"k8s-app": "kube-dns"},
    ),
)

AGENT_NS = "otterize-system"
MAPPER_PORT = 9090

EXPECTED_DEMO_MAP: dict[str, frozenset[str]] = {
    "cartservice": frozenset({"redis-cart"}),
    "checkoutservice": frozenset(
        {
            "cartservice",
            "currencyservice",
            "emailservice",
            "paymentservice",
            "productcatalogservice",
            "shippingservice",
        }
    ),
    "frontend": frozenset(
        {
            "adservice",
            "cartservice",
            "checkoutservice",
            "currencyservice",
            "productcatalogservice",
            "recommendationservice",
            "shippingservice",
        }
    ),
    "loadgenerator": frozenset({"frontend"}),
    "recommendationservice": frozenset({"productcatalogservice"}),
}
"""The map DESIGN.md §4 expects for ``otterize-ecom-demo``."""


# --- Otterize's Kafka tutorial: clients of a broker whose authorizer log shows their accesses -----

KAFKA_NS = "otterize-tutorial-kafka-mapping"
KAFKA_PORT = 9092
KAFKA_PRINCIPALS = {
    # mTLS principals, as an SSL listener builds them from the client certificates' subjects.
    "client": "User:CN=client,O=Otterize Tutorial",
    "client2": "User:CN=client2,O=Otterize Tutorial",
}
KAFKA_GROUPS = {"client": "client-group", "client2": "client2-group"}

KAFKA_ACLS: tuple[tuple[str, str, str, str, str], ...] = (
    # (permission, operation, resource type, resource name, principal); no ACL names topic
    # "payments", so the authorizer's default (deny) answers client2's attempt to consume it.
    ("ALLOW", "READ", "TOPIC", "mytopic", KAFKA_PRINCIPALS["client"]),
    ("ALLOW", "DESCRIBE", "TOPIC", "mytopic", KAFKA_PRINCIPALS["client"]),
    ("ALLOW", "READ", "GROUP", KAFKA_GROUPS["client"], KAFKA_PRINCIPALS["client"]),
    ("ALLOW", "WRITE", "TOPIC", "mytopic", KAFKA_PRINCIPALS["client2"]),
    ("ALLOW", "DESCRIBE", "TOPIC", "mytopic", KAFKA_PRINCIPALS["client2"]),
    ("ALLOW", "READ", "GROUP", KAFKA_GROUPS["client2"], KAFKA_PRINCIPALS["client2"]),
)
KAFKA_CLIENT_CALLS: dict[str, tuple[tuple[str, str], ...]] = {
    # (request, topic), repeated every few seconds in this order.
    "client": (("CONSUME", "mytopic"), ("DESCRIBE", "mytopic")),
    "client2": (("DESCRIBE", "mytopic"), ("PRODUCE", "mytopic"), ("CONSUME", "payments")),
}


def _kafka_client(name: str) -> Workload:
    calls = tuple(a for request, topic in KAFKA_CLIENT_CALLS[name] for a in ("--call", f"{request} {topic}"))
    args: tuple[str, ...] = ("--bootstrap", f"kafka:{KAFKA_PORT}", "--principal", KAFKA_PRINCIPALS[name])
    args += ("--group", KAFKA_GROUPS[name], *calls)
    return Workload(KAFKA_NS, name, "Deployment", args, module="sandbox.kafkaclient")


KAFKA: tuple[Workload, ...] = (
    Workload(
        KAFKA_NS,
        "kafka",
        "StatefulSet",
        ("--port", str(KAFKA_PORT), *(a for acl in KAFKA_ACLS for a in ("--acl", ":".join(acl)))),
        port=KAFKA_PORT,
        service_port=KAFKA_PORT,
        module="sandbox.kafkabroker",
    ),
    _kafka_client("client"),
    _kafka_client("client2"),
)

EXPECTED_KAFKA: dict[str, dict[str, frozenset[str]]] = {
    "client": {"mytopic": frozenset({"CONSUME", "DESCRIBE"})},
    "client2": {"mytopic": frozenset({"DESCRIBE", "PRODUCE"})},
}
"""The tutorial's expected result: workload → topic → operations the broker allowed."""
KAFKA_DENIED: dict[str, dict[str, frozenset[str]]] = {"client2": {"payments": frozenset({"CONSUME"})}}
"""Accesses the broker's ACL table denies (logged at INFO, as ``Denied``)."""

# --- Otterize's Istio tutorial: sidecars count the HTTP requests between workloads --------------

ISTIO_NS = "otterize-tutorial-istio"
ISTIO_STATS_PORT = 15090  # Envoy's Prometheus endpoint, /stats/prometheus
ISTIO_OUTBOUND_PORT = 15001
ISTIO_INBOUND_PORT = 15006
MESH_APP_PORT = 8080
ISTIO_CALLS: dict[str, tuple[str, ...]] = {
    # "<a-b>" in a URL becomes a random number from a to b at each call.
    "client": ("GET http://server/api/cart?user=<1-5>", "POST http://server/api/orders/<1000-1999>"),
    "client2": ("GET http://server/api/cart",),
}


def _mesh(name: str, args: tuple[str, ...], port: int = 0, service_port: int = 0) -> Workload:
    """A workload with Istio's sidecar injected: the pod labels, annotation and ``istio-proxy``."""
    flags: dict[str, object] = {
        "namespace": ISTIO_NS,
        "workload": name,
        "app": name,
        "service-account": name,
        "cluster-domain": CLUSTER_DOMAIN,
        "pod-name": "{pod_name}",
        "pod-ip": "{pod_ip}",
        "stats-port": ISTIO_STATS_PORT,
        "outbound-port": ISTIO_OUTBOUND_PORT,
    }
    if port:  # a server: the sidecar's inbound listener in front of the workload's port
        flags |= {"inbound-port": ISTIO_INBOUND_PORT, "app-port": port}
    proxy_args = tuple(a for flag, value in flags.items() for a in (f"--{flag}", str(value)))
    ports = (ISTIO_STATS_PORT, ISTIO_INBOUND_PORT) if port else (ISTIO_STATS_PORT,)
    return Workload(
        ISTIO_NS,
        name,
        "Deployment",
        args,
        port=port,
        service_port=service_port,
        module="sandbox.meshapp",
        sidecars=(Container("istio-proxy", "sandbox.istiosidecar", proxy_args, ports),),
        target_port=ISTIO_INBOUND_PORT if port else 0,
        pod_labels={
            "security.istio.io/tlsMode": "istio",
            "service.istio.io/canonical-name": name,
            "service.istio.io/canonical-revision": "latest",
        },
        annotations={
            "sidecar.istio.io/status": '{"initContainers":["istio-init"],"containers":["istio-proxy"]}',
            # What the injector adds so `kubectl logs` without -c reads the workload, not the proxy.
            "kubectl.kubernetes.io/default-container": name,
            "kubectl.kubernetes.io/default-logs-container": name,
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(ISTIO_STATS_PORT),
            "prometheus.io/path": "/stats/prometheus",
        },
        service_account=name,
    )


def _mesh_client(name: str) -> Workload:
    proxy = f"127.0.0.1:{ISTIO_OUTBOUND_PORT}"
    return _mesh(name, ("client", "--proxy", proxy, *(a for c in ISTIO_CALLS[name] for a in ("--call", c))))


ISTIO: tuple[Workload, ...] = (
    _mesh("server", ("server", "--port", str(MESH_APP_PORT)), port=MESH_APP_PORT, service_port=80),
    _mesh_client("client"),
    _mesh_client("client2"),
)

EXPECTED_ISTIO: dict[tuple[str, str], dict[str, frozenset[str]]] = {
    ("client", "server"): {"/api/cart": frozenset({"GET"}), "/api/orders/{id}": frozenset({"POST"})},
    ("client2", "server"): {"/api/cart": frozenset({"GET"})},
}
"""The tutorial's expected result: (client, server) → path (query dropped, ids as ``{id}``) → methods."""
