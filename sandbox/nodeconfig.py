"""What the sandbox's node and kubelet are configured with, and where they keep things.

Used by :mod:`sandbox.supervisor` (which builds the node) and by the views and tests that read
what it made: the API server's HTTPS identity, the kubeconfigs, the connection dialer of the node's
network namespace, the "image" the product's containers run (the machine's own interpreter and
console scripts, which no volume may cover), and where claims and trust files live.
"""

from __future__ import annotations

import importlib.metadata
import socket
from pathlib import Path

from sandbox import certs, netns, network, podspec
from sandbox.apiserver.server import ServingTls
from sandbox.topology import API_SERVICE_IP, CLUSTER_DOMAIN, NODE_IP


def claim_dir(state_dir: Path, namespace: str, claim: str) -> Path:
    """Where a PersistentVolumeClaim's volume lives (the sandbox's provisioner: a directory)."""
    return state_dir / "pvc" / f"{namespace}_{claim}"


def kubeconfig_paths(state_dir: Path) -> tuple[Path, Path]:
    """(the user's kubeconfig on 127.0.0.1, the pods' kubeconfig on the ``kubernetes`` ClusterIP)."""
    return state_dir / "kubeconfig", state_dir / "kubeconfig-incluster"


def node_dial(host: str, port: int, timeout: float) -> socket.socket:
    """A connection made in the node's namespace (where ClusterIPs are DNATed), for the API server."""
    with netns.entered(network.NODE_NETNS):
        return socket.create_connection((host, port), timeout)


def search_domains(namespace: str) -> tuple[str, ...]:
    return podspec.cluster_search(namespace, CLUSTER_DOMAIN)


API_SERVER_NAMES = ("kubernetes", "kubernetes.default", "kubernetes.default.svc")
IMAGE_TRUST_ENV = ("AWS_CA_BUNDLE", "AWS_PROXY_UPSTREAM_CA_BUNDLE", "AWS_WEBHOOK_SYSTEM_CA_FILE")
"""What an image's system CA bundle is to the programs that read these: the sandbox's public roots."""


def serving_tls(directory: Path) -> ServingTls:
    """The API server's CA and certificate: for its ClusterIP, the node's address and 127.0.0.1."""
    ca_cert, ca_key = certs.make_ca("sandbox kubernetes CA")
    names = (*API_SERVER_NAMES, f"kubernetes.default.svc.{CLUSTER_DOMAIN}")
    cert, key = certs.make_leaf(ca_cert, ca_key, names, (API_SERVICE_IP, NODE_IP, "127.0.0.1"))
    return ServingTls(cert, key, ca_cert, directory)


def console_scripts(python: str) -> dict[str, str]:
    """The product's commands as its image has them on PATH: console script name → file (beside
    ``python``, where pip installed them)."""
    scripts = {}
    for ep in importlib.metadata.entry_points(group="console_scripts"):
        if ep.dist is not None and ep.dist.name == "network-mapper":
            scripts[ep.name] = str(Path(python).parent / ep.name)
    return scripts


def hides_image(mount_path: str, image_paths: tuple[Path, ...]) -> bool:
    """Whether a volume at ``mount_path`` would cover the sandbox's "image" (the machine's own
    files: the interpreter, the project, the state directory), which a real container keeps apart."""
    target = Path(mount_path)
    return any(p == target or target in p.parents for p in image_paths)
