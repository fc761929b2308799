"""The sandbox's NetworkPolicy enforcement for real: pods as network namespaces on a bridge of this test's
own (names ``nmtest-np-<pid>-*``, never the sandbox's), real TCP listeners, the ruleset of
sandbox.netpolicy loaded by sandbox.netenforcer, and connections that are accepted or refused (a TCP
reset: ConnectionRefusedError at once, not a timeout) as Kubernetes says they should be; and the path the
supervisor runs: objects in the sandbox API server, a NetworkPolicy applied with ``kubectl apply``, the
enforcer reading them through the real client and refusing connections within two seconds."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from sandbox import netns
from sandbox.apiserver import ApiServer
from sandbox.netenforcer import Enforcer, api_source, apply
from sandbox.netpolicy import Cluster, namespaces_from_api, parse_policy, pods_from_api, ruleset
from tests.support.mapper_process import wait_until

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(
        os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("ip", "nft", "kubectl")),
        reason="needs root, iproute2, nftables and kubectl",
    ),
]

PREFIX = f"nmtest-np-{os.getpid()}-"
NODE = PREFIX + "node"
NODE_IP = "10.250.0.1"
HTTP, ADMIN = 8080, 9000  # every pod listens on both; 8080 is named "http"
# pod → (namespace, labels, address)
PODS = {
    "web": ("shop", {"app": "web"}, "10.250.1.10"),
    "client": ("shop", {"app": "client"}, "10.250.1.11"),
    "monitor": ("ops", {"app": "monitor"}, "10.250.1.20"),
    "tool": ("dev", {"app": "tool"}, "10.250.1.30"),
}
NAMESPACES: list[dict[str, Any]] = [
    {"metadata": {"name": "shop"}},
    {"metadata": {"name": "ops", "labels": {"team": "ops"}}},
    {"metadata": {"name": "dev"}},
]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def network() -> Iterator[None]:
    made = []
    servers: list[socket.socket] = []
    try:
        made.append(NODE)
        _ip("netns", "add", NODE)
        _ip("-n", NODE, "link", "set", "lo", "up")
        _ip("-n", NODE, "link", "add", "br0", "type", "bridge")
        _ip("-n", NODE, "addr", "add", f"{NODE_IP}/16", "dev", "br0")
        _ip("-n", NODE, "link", "set", "br0", "up")
        # As the sandbox's node: bridged IPv4 crosses the ip family's hooks (and conntrack).
        netns.run(
            "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1", "net.ipv4.ip_forward=1", netns=NODE
        )
        for i, (name, (_, _, address)) in enumerate(PODS.items()):
            ns = PREFIX + name
            made.append(ns)
            _ip("netns", "add", ns)
            _ip("-n", NODE, "link", "add", f"v{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("-n", NODE, "link", "set", f"v{i}", "master", "br0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{address}/16", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "route", "add", "default", "via", NODE_IP)
            for port in (HTTP, ADMIN):
                with netns.entered(ns):
                    server = socket.create_server(("0.0.0.0", port))
                servers.append(server)
                threading.Thread(target=_accept_forever, args=(server,), daemon=True).start()
        yield
    finally:
        for server in servers:
            server.close()
        for ns in reversed(made):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def _accept_forever(server: socket.socket) -> None:
    try:
        while True:
            conn, _ = server.accept()
            conn.close()
    except OSError:
        return  # closed at teardown


def connects(client: str, server: str, port: int) -> bool:
    """True when ``client``'s pod (or the node) opens a connection to ``server``:``port``; False when it is
    refused by a reset. Any other outcome (a timeout) fails the test: rejects must be prompt."""
    address = PODS[server][2]
    with netns.entered(NODE if client == "node" else PREFIX + client):
        sock = socket.socket()
    sock.settimeout(3)
    try:
        sock.connect((address, port))
    except ConnectionRefusedError:
        return False
    finally:
        sock.close()
    return True


Spec = tuple[str, str, dict[str, Any]]  # (namespace, name, spec)


def cluster(*policies: Spec) -> Cluster:
    pods = [
        {
            "metadata": {"namespace": ns, "name": name, "labels": labels},
            "spec": {"containers": [{"name": name, "ports": [{"name": "http", "containerPort": HTTP}]}]},
            "status": {"podIP": address, "phase": "Running"},
        }
        for name, (ns, labels, address) in PODS.items()
    ]
    parsed = tuple(
        parse_policy({"metadata": {"namespace": ns, "name": n}, "spec": s}) for ns, n, s in policies
    )
    return Cluster(namespaces_from_api(NAMESPACES), pods_from_api(pods), parsed, (NODE_IP,))


def enforce(*policies: Spec) -> None:
    apply(ruleset(cluster(*policies)), NODE)


def verdicts(pairs: list[tuple[str, str, int]]) -> dict[tuple[str, str, int], bool]:
    return {pair: connects(*pair) for pair in pairs}


DENY_SHOP: Spec = ("shop", "deny", {"podSelector": {}})
ALL = [
    (client, server, port)
    for client in ("node", *PODS)
    for server in PODS
    if client != server
    for port in (HTTP, ADMIN)
]


def test_no_policy_allows_everything(network: None) -> None:
    enforce()
    assert all(verdicts(ALL).values())


def test_default_deny_isolates_the_namespace_but_not_the_node(network: None) -> None:
    enforce(DENY_SHOP)
    got = verdicts(ALL)
    denied = {pair for pair, ok in got.items() if not ok}
    assert denied == {(c, s, p) for c, s, p in ALL if s in ("web", "client") and c != "node"}


def test_allow_from_a_labelled_namespace_on_a_named_port(network: None) -> None:
    allow = {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [
            {"from": [{"namespaceSelector": {"matchLabels": {"team": "ops"}}}], "ports": [{"port": "http"}]}
        ],
    }
    enforce(DENY_SHOP, ("shop", "allow-ops", allow))
    assert verdicts(
        [("monitor", "web", HTTP), ("monitor", "web", ADMIN), ("tool", "web", HTTP), ("client", "web", HTTP)]
    ) == {
        ("monitor", "web", HTTP): True,
        ("monitor", "web", ADMIN): False,  # the named port is 8080 only
        ("tool", "web", HTTP): False,  # dev has no team=ops label
        ("client", "web", HTTP): False,  # its own namespace is not selected either
    }


def test_ip_block_with_except(network: None) -> None:
    allow = {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"ipBlock": {"cidr": "10.250.0.0/16", "except": ["10.250.1.30/32"]}}]}],
    }
    enforce(("shop", "block", allow))
    assert verdicts([("client", "web", ADMIN), ("monitor", "web", HTTP), ("tool", "web", HTTP)]) == {
        ("client", "web", ADMIN): True,
        ("monitor", "web", HTTP): True,
        ("tool", "web", HTTP): False,
    }


def test_egress_rules_and_ingress_both_must_allow(network: None) -> None:
    egress = {
        "podSelector": {"matchLabels": {"app": "tool"}},
        "policyTypes": ["Egress"],
        "egress": [
            {
                "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}}}],
                "ports": [{"port": "http"}],
            }
        ],
    }
    only_client = {
        "podSelector": {"matchLabels": {"app": "client"}},
        "ingress": [{"from": [{"podSelector": {}}]}],
    }
    enforce(("dev", "tool-out", egress), ("shop", "client-in", only_client))
    assert verdicts(
        [
            ("tool", "web", HTTP),
            ("tool", "web", ADMIN),
            ("tool", "monitor", HTTP),
            ("tool", "client", HTTP),
            ("web", "tool", HTTP),
        ]
    ) == {
        ("tool", "web", HTTP): True,
        ("tool", "web", ADMIN): False,  # egress: only the named port
        ("tool", "monitor", HTTP): False,  # egress: only namespace shop
        ("tool", "client", HTTP): False,  # egress allows it, client's ingress does not (other namespace)
        ("web", "tool", HTTP): True,  # tool's replies pass (conntrack); its ingress is not isolated
    }


def test_the_enforcer_applies_a_change_within_two_seconds(network: None) -> None:
    current = [cluster()]
    enforcer = Enforcer(lambda: current[0], NODE, interval=0.2).start()
    try:
        assert connects("client", "web", HTTP)
        generation = enforcer.generation
        current[0] = cluster(DENY_SHOP)
        changed = time.monotonic()
        assert enforcer.wait_generation(generation, timeout=2.0)
        wait_until(lambda: not connects("client", "web", HTTP), 2.0, "client -> web refused")
        assert time.monotonic() - changed < 2.0
        assert connects("node", "web", HTTP)
        current[0] = cluster()
        wait_until(lambda: connects("client", "web", HTTP), 2.0, "client -> web allowed again")
    finally:
        enforcer.stop()


def test_a_policy_applied_with_kubectl_is_enforced_from_the_api(network: None, tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    api = ApiServer(log_dir=tmp_path / "logs")
    api.start()
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    enforcer: Enforcer | None = None
    try:
        with client.ApiClient(configuration) as api_client:
            core = client.CoreV1Api(api_client)
            for namespace in NAMESPACES:
                core.create_namespace(namespace)
            for name, (ns, labels, address) in PODS.items():
                meta = client.V1ObjectMeta(name=name, labels=labels)
                pod_spec = client.V1PodSpec(containers=[client.V1Container(name=name, image="demo")])
                core.create_namespaced_pod(ns, client.V1Pod(metadata=meta, spec=pod_spec))
                core.patch_namespaced_pod_status(name, ns, {"status": {"phase": "Running", "podIP": address}})
            enforcer = Enforcer(api_source(api_client, (NODE_IP,)), NODE, interval=0.2).start()
            assert connects("client", "web", HTTP) and connects("monitor", "web", HTTP)
            only_ops = {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": "web-from-ops", "namespace": "shop"},
                "spec": {
                    "podSelector": {"matchLabels": {"app": "web"}},
                    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "ops"}}}]}],
                },
            }
            manifest = tmp_path / "policy.yaml"
            manifest.write_text(yaml.safe_dump(only_ops))
            applied = time.monotonic()
            # --validate=false: the sandbox API server serves no OpenAPI document to validate with.
            result = subprocess.run(
                ["kubectl", "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "kcache")]
                + ["apply", "--validate=false", "-f", str(manifest)],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert result.returncode == 0, result.stderr
            wait_until(lambda: not connects("client", "web", HTTP), 2.0, "client -> web refused")
            assert time.monotonic() - applied < 2.0
            assert connects("monitor", "web", HTTP)
    finally:
        if enforcer is not None:
            enforcer.stop()
        api.stop()
