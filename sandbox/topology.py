"""What the sandbox cluster runs: namespaces, workloads, their ports and their calls.

This is pure data. :mod:`sandbox.cluster` turns it into API objects (Deployment →
ReplicaSet → Pod, StatefulSet → Pod, CronJob → Job → Pod, Services, Endpoints,
EndpointSlices) and into processes in network namespaces. The calls reproduce the
Google microservices-demo pattern in ``otterize-ecom-demo`` (the map in DESIGN.md §4) plus
one workload for each identity rule the mapper must honour.
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

    @property
    def service(self) -> str:
        return self.service_name or self.name


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

# The product itself, as the helm chart would run it: the mapper as a Deployment with a
# Service, the sniffer as a hostNetwork DaemonSet pod in the node's namespace.
AGENTS: tuple[Workload, ...] = (
    Workload(
        AGENT_NS,
        "network-mapper",
        "Deployment",
        (
            "--listen-address",
            f"0.0.0.0:{MAPPER_PORT}",
            "--data-dir",
            "{data_dir}",
            "--kubeconfig",
            "{kubeconfig}",
        ),
        port=MAPPER_PORT,
        service_port=MAPPER_PORT,
        module="agent.mapper",
        env={
            "NETWORK_MAPPER_TOKEN": "{token}",
            "NETWORK_MAPPER_CLOUD_URL": f"http://{CLOUD_NAME}:{CLOUD_PORT}",
            "NETWORK_MAPPER_CLOUD_TOKEN": "{cloud_token}",
            "NETWORK_MAPPER_UPLOAD_INTERVAL": "5",  # the demo's pace; the default is 60 s
        },
    ),
    Workload(
        AGENT_NS,
        "network-mapper-node-agent",
        "DaemonSet",
        (
            "--mapper-url",
            f"http://network-mapper.{AGENT_NS}.svc.{CLUSTER_DOMAIN}:{MAPPER_PORT}/query",
            "--health-address",
            "127.0.0.1:9091",
        ),
        host_network=True,
        module="agent.sniffer",
        env={"NETWORK_MAPPER_TOKEN": "{token}"},
    ),
)

WORKLOADS: tuple[Workload, ...] = SYSTEM + AGENTS + DEMO + EXTRAS

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
