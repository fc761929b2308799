"""The product in the sandbox, as its helm chart runs it, and everything the sandbox runs.

:data:`AGENTS` are network-mapper's own components in ``otterize-system``: the mapper (a
Deployment with a Service), the sniffer (a hostNetwork DaemonSet pod in the node's namespace) and
the Kafka and Istio watchers (Deployments), with the commands and environment the chart
(``helm/network-mapper``) renders for :data:`CHART_VALUES` — a test renders the chart and
compares (``tests/unit/helm/test_helm_sandbox.py``). What the sandbox adds is only what a real
cluster gives a pod by itself: ``--kubeconfig`` instead of the in-cluster service account, the
token's value instead of the Secret reference, and the local cloud's address.

:data:`WORKLOADS` is the whole cluster: the system pods, the product, and the patterns of
:mod:`sandbox.topology` (the demo, the identity extras, the Kafka and Istio tutorials).
:mod:`sandbox.supervisor` turns it into API objects and processes.
"""

from __future__ import annotations

from typing import Any

from sandbox.topology import (
    AGENT_NS,
    CLOUD_NAME,
    CLOUD_PORT,
    CLUSTER_DOMAIN,
    DEMO,
    EXTRAS,
    ISTIO,
    KAFKA,
    KAFKA_NS,
    MAPPER_PORT,
    SYSTEM,
    Workload,
)

MAPPER_URL = f"http://network-mapper.{AGENT_NS}.svc.{CLUSTER_DOMAIN}:{MAPPER_PORT}/query"

CHART_VALUES: dict[str, Any] = {
    "kafkawatcher": {
        "enable": True,
        "kafkaServers": [{"name": "kafka-0", "namespace": KAFKA_NS}],
        "pollInterval": 2,  # the demo's pace; the chart's defaults are 5 s and 10 s
        "reportInterval": 2,
    },
    "enableIstioCollection": True,
    "istiowatcher": {"scrapeInterval": 2, "reportInterval": 2},
}
"""The values the sandbox "installs" the chart with (release ``network-mapper`` in ``otterize-system``)."""

_IN_CLUSTER = {"OTTERIZE_TELEMETRY_ENABLED": "true", "NETWORK_MAPPER_TOKEN": "{token}"}

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
        ("--mapper-url", MAPPER_URL, "--health-address", "127.0.0.1:9091"),
        host_network=True,
        module="agent.sniffer",
        env={"NETWORK_MAPPER_TOKEN": "{token}"},
    ),
    Workload(
        AGENT_NS,
        "network-mapper-kafka-watcher",
        "Deployment",
        ("--kubeconfig", "{kubeconfig}"),
        module="agent.watchers.kafkawatcher",
        env={
            **_IN_CLUSTER,
            "OTTERIZE_MAPPER_API": MAPPER_URL,
            "OTTERIZE_KAFKA_SERVERS": f"kafka-0.{KAFKA_NS}",
            "KAFKA_WATCHER_POLL_INTERVAL": "2",
            "KAFKA_WATCHER_REPORT_INTERVAL": "2",
            "KAFKA_WATCHER_HEALTH_ADDRESS": "0.0.0.0:9092",
        },
    ),
    Workload(
        AGENT_NS,
        "network-mapper-istio-watcher",
        "Deployment",
        ("--kubeconfig", "{kubeconfig}"),
        module="agent.watchers.istiowatcher",
        env={
            **_IN_CLUSTER,
            "OTTERIZE_MAPPER_API": MAPPER_URL,
            "ISTIO_WATCHER_SCRAPE_INTERVAL": "2",
            "ISTIO_WATCHER_REPORT_INTERVAL": "2",
            "ISTIO_WATCHER_PATH_TEMPLATES": "true",
            "ISTIO_WATCHER_HEALTH_ADDRESS": "0.0.0.0:9093",
        },
    ),
)

WATCHER_MODULES = {
    "network-mapper-kafka-watcher": "agent.watchers.kafkawatcher",
    "network-mapper-istio-watcher": "agent.watchers.istiowatcher",
}
"""The chart's commands (the image's console scripts) → the modules the sandbox runs them as."""

WORKLOADS: tuple[Workload, ...] = SYSTEM + AGENTS + DEMO + EXTRAS + KAFKA + ISTIO
