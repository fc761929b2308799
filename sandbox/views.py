"""What ``python -m sandbox status|demo`` prints: the pods (read through the real
``kubernetes`` client, as a user's tools would) and a short live-traffic capture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from sandbox.nodeconfig import kubeconfig_paths
from sandbox.nodes import NODES


def _core(state_dir: Path) -> k8s.CoreV1Api:
    user_cfg, _ = kubeconfig_paths(state_dir)
    return k8s.CoreV1Api(k8s_config.new_client_from_config(config_file=str(user_cfg)))


def pods_table(state_dir: Path) -> str:
    pods = _core(state_dir).list_pod_for_all_namespaces().items
    rows = [("NAMESPACE", "POD", "READY", "RESTARTS", "IP", "NODE", "PHASE", "OWNER")]
    for p in sorted(pods, key=lambda p: (p.metadata.namespace, p.metadata.name)):
        owner = p.metadata.owner_references[0] if p.metadata.owner_references else None
        statuses = p.status.container_statuses or []
        rows.append(
            (
                p.metadata.namespace,
                p.metadata.name,
                f"{sum(1 for c in statuses if c.ready)}/{len(p.spec.containers)}",
                str(sum(c.restart_count for c in statuses)),
                (p.status.pod_ip or "-") + (" (hostNetwork)" if p.spec.host_network else ""),
                p.spec.node_name or "-",
                p.status.phase or "-",
                f"{owner.kind}/{owner.name}" if owner else "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def ip_to_pod(state_dir: Path) -> dict[str, str]:
    """Pod and Service IPs → ``namespace/name`` labels for the traffic view."""
    core = _core(state_dir)
    names: dict[str, str] = {}
    for p in core.list_pod_for_all_namespaces().items:
        if p.status.pod_ip and not p.spec.host_network:
            names[p.status.pod_ip] = f"{p.metadata.namespace}/{p.metadata.name}"
    for s in core.list_service_for_all_namespaces().items:
        if s.spec.cluster_ip and s.spec.cluster_ip != "None":
            names[s.spec.cluster_ip] = f"svc {s.metadata.namespace}/{s.metadata.name}"
    return names


def traffic_view(state_dir: Path, seconds: float) -> str:
    from sandbox.traffic import capture, format_summary

    return format_summary(capture([n.netns for n in NODES], seconds, ip_to_pod(state_dir)))


def mapper_url(state_dir: Path) -> str:
    from sandbox.state import StateFile

    return f"http://127.0.0.1:{StateFile(state_dir).load().forwards['mapper']}/query"


def demo_map(url: str) -> dict[str, frozenset[str]]:
    """The mapper's current map of the demo namespace, as {client: servers} names."""
    from agent.cli.queries import EDGES_QUERY, edge_from_json
    from agent.mapperclient import HttpMapperClient
    from agent.model import WorkloadIdentity
    from sandbox.topology import DEMO_NS

    client = HttpMapperClient(url, "", 10.0)
    try:
        raw = client.execute(EDGES_QUERY, {"namespaces": [DEMO_NS]})["edges"]
    finally:
        client.close()
    found: dict[str, set[str]] = {}
    for edge in map(edge_from_json, raw):
        if isinstance(edge.target, WorkloadIdentity) and edge.target.namespace == DEMO_NS:
            found.setdefault(edge.client.name, set()).add(edge.target.name)
    return {k: frozenset(v) for k, v in found.items()}


def wait_for_demo_map(url: str, timeout: float) -> tuple[bool, float]:
    """Polls the mapper until the demo namespace's map is DESIGN.md's; (complete?, seconds)."""
    import time

    from agent.mapperclient import MapperError
    from sandbox.topology import EXPECTED_DEMO_MAP

    start = time.monotonic()
    expected = sum(len(v) for v in EXPECTED_DEMO_MAP.values())
    last = -1
    while (elapsed := time.monotonic() - start) < timeout:
        try:
            current = demo_map(url)
        except MapperError:
            current = {}
        have = sum(len(v & EXPECTED_DEMO_MAP.get(k, frozenset())) for k, v in current.items())
        if current == EXPECTED_DEMO_MAP:
            return True, elapsed
        if have != last:
            print(f"  mapped {have}/{expected} demo edges after {elapsed:.0f}s", flush=True)
            last = have
        time.sleep(1)
    return False, timeout


def cloud_access(state_dir: Path) -> tuple[str, str, str]:
    """(base URL on 127.0.0.1, tenant id, read token) of the sandbox's local cloud. The token only
    reads (the graph, exports, the cluster list): it is what the demo prints, not an admin key."""
    from sandbox.state import StateFile

    state = StateFile(state_dir).load()
    return f"http://127.0.0.1:{state.forwards['cloud']}", state.cloud_tenant, state.cloud_read_token


def cloud_graph(state_dir: Path) -> list[dict[str, Any]]:
    """The cloud's graph (what `curl …/graph` shows), every page of it: the edge documents, each
    with its cluster. The cloud answers a page at a time; ``nextCursor`` asks for the next."""
    import requests

    base, _, token = cloud_access(state_dir)
    edges: list[dict[str, Any]] = []
    query: dict[str, str] = {}
    while True:
        reply = requests.get(
            f"{base}/graph", params=query, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        reply.raise_for_status()
        page = reply.json()
        edges += page["edges"]
        if not page.get("nextCursor"):
            return edges
        query = {"cursor": page["nextCursor"]}


def cloud_demo_map(state_dir: Path) -> dict[str, frozenset[str]]:
    """The cloud's graph of the demo namespace, as {client: servers} names."""
    from agent.model import WorkloadIdentity
    from agent.wire import edge_from_plain
    from sandbox.topology import DEMO_NS

    found: dict[str, set[str]] = {}
    for raw in cloud_graph(state_dir):
        edge = edge_from_plain(raw)
        if edge.client.namespace == DEMO_NS and isinstance(edge.target, WorkloadIdentity):
            found.setdefault(edge.client.name, set()).add(edge.target.name)
    return {k: frozenset(v) for k, v in found.items()}


INTENTS_QUERY = """query($namespaces: [String!]) {
  intents(namespaces: $namespaces) {
    client { name namespace } server { name namespace } type
    kafkaTopics { name operations } httpResources { path methods }
  }
}"""

KafkaMap = dict[str, dict[str, frozenset[str]]]
IstioMap = dict[tuple[str, str], dict[str, frozenset[str]]]


def watcher_maps(url: str) -> tuple[KafkaMap, IstioMap]:
    """What the Kafka and Istio watchers made of the tutorials, read as the Otterize CLI reads it
    (the ``intents`` query): {client: {topic: operations}} and {(client, server): {path: methods}}."""
    from agent.mapperclient import HttpMapperClient
    from sandbox.topology import ISTIO_NS, KAFKA_NS

    client = HttpMapperClient(url, "", 10.0)
    try:
        intents = client.execute(INTENTS_QUERY, {"namespaces": [KAFKA_NS, ISTIO_NS]})["intents"]
    finally:
        client.close()
    kafka: dict[str, dict[str, set[str]]] = {}
    istio: dict[tuple[str, str], dict[str, set[str]]] = {}
    for intent in intents:
        who, server = intent["client"], intent["server"]["name"]
        if intent["type"] == "KAFKA" and who["namespace"] == KAFKA_NS:
            for topic in intent["kafkaTopics"]:
                kafka.setdefault(who["name"], {}).setdefault(topic["name"], set()).update(topic["operations"])
        elif intent["type"] == "HTTP" and who["namespace"] == ISTIO_NS:
            for resource in intent["httpResources"]:
                paths = istio.setdefault((who["name"], server), {})
                paths.setdefault(resource["path"], set()).update(resource["methods"])
    return (
        {c: {t: frozenset(ops) for t, ops in topics.items()} for c, topics in kafka.items()},
        {pair: {p: frozenset(m) for p, m in paths.items()} for pair, paths in istio.items()},
    )


def wait_for_watcher_maps(url: str, timeout: float) -> tuple[bool, float]:
    """Polls the mapper until the watchers' maps are the tutorials' expected ones; (complete?, seconds)."""
    import time

    from agent.mapperclient import MapperError
    from sandbox.topology import EXPECTED_ISTIO, EXPECTED_KAFKA

    start = time.monotonic()
    last: tuple[int, int] = (-1, -1)
    while (elapsed := time.monotonic() - start) < timeout:
        try:
            kafka, istio = watcher_maps(url)
        except MapperError:
            kafka, istio = {}, {}
        if kafka == EXPECTED_KAFKA and istio == EXPECTED_ISTIO:
            return True, elapsed
        have = (sum(map(len, kafka.values())), sum(map(len, istio.values())))
        if have != last:
            print(f"  mapped {have[0]} topics and {have[1]} HTTP paths after {elapsed:.0f}s", flush=True)
            last = have
        time.sleep(1)
    return False, timeout


AwsMap = dict[str, dict[str, frozenset[str]]]


def aws_map(url: str) -> AwsMap:
    """What the IAM proxy showed of the AWS demo: {client: {resource ARN: IAM actions}}."""
    from agent.cli.queries import EDGES_QUERY, edge_from_json
    from agent.mapperclient import HttpMapperClient
    from agent.model import AwsTarget
    from sandbox.awsdemo import AWS_DEMO_NS

    client = HttpMapperClient(url, "", 10.0)
    try:
        raw = client.execute(EDGES_QUERY, {"namespaces": [AWS_DEMO_NS]})["edges"]
    finally:
        client.close()
    found: dict[str, dict[str, set[str]]] = {}
    for edge in map(edge_from_json, raw):
        if isinstance(edge.target, AwsTarget) and edge.client.namespace == AWS_DEMO_NS:
            found.setdefault(edge.client.name, {}).setdefault(edge.target.arn, set()).update(edge.aws_actions)
    return {c: {arn: frozenset(a) for arn, a in arns.items()} for c, arns in found.items()}


def wait_for_aws_map(url: str, timeout: float) -> tuple[bool, float]:
    """Polls the mapper until ``aws-client``'s AWS calls are the expected ones (and the unlabelled
    client's are absent); (complete?, seconds)."""
    import time

    from agent.mapperclient import MapperError
    from sandbox.awsdemo import CLIENT, EXPECTED_IAM

    start = time.monotonic()
    last = -1
    while (elapsed := time.monotonic() - start) < timeout:
        try:
            current = aws_map(url)
        except MapperError:
            current = {}
        if current == {CLIENT: EXPECTED_IAM}:
            return True, elapsed
        have = sum(len(actions) for actions in current.get(CLIENT, {}).values())
        if have != last:
            print(f"  mapped {have} AWS actions of {CLIENT} after {elapsed:.0f}s", flush=True)
            last = have
        time.sleep(1)
    return False, timeout
