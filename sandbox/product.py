"""The product in the sandbox, as its helm chart runs it, and everything the sandbox runs.

:data:`AGENTS` are network-mapper's own components in ``otterize-system``: the mapper (a
Deployment with a Service), the sniffer (a hostNetwork DaemonSet pod in the node's namespace) and
the Kafka and Istio watchers (Deployments), with the commands and environment the chart
(``helm/network-mapper``) renders for :data:`CHART_VALUES` — a test renders the chart and
compares (``tests/unit/helm/test_helm_sandbox.py``). What the sandbox adds is only what a real
cluster gives a pod by itself: ``--kubeconfig`` instead of the in-cluster service account, the
token's value instead of the Secret reference, and the local cloud's address.

:data:`AWS_AGENTS` are AWS visibility's (``aws.visibility.enabled``): the IAM proxy, the DNS forwarder
and the admission webhook, with the Secrets and ConfigMap the chart mounts (made by
:mod:`sandbox.awssetup`); they start before the AWS demo's clients, each gating the next pods on
its port, as readiness would.

:data:`WORKLOADS` is the whole cluster: the system pods, the product, and the patterns of
:mod:`sandbox.topology` (the demo, the identity extras, the Kafka and Istio tutorials) and the AWS demo
(:mod:`sandbox.awsdemo`).
:mod:`sandbox.supervisor` turns it into API objects and processes.
"""

from __future__ import annotations

from typing import Any

from sandbox.awsdemo import AWS_DEMO, PROXY_VOLUMES, WEBHOOK_VOLUMES
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
    "aws": {"visibility": {"enabled": True}},
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

_AWS_PROXY_HOST = f"network-mapper-aws-proxy.{AGENT_NS}.svc.{CLUSTER_DOMAIN}"

AWS_AGENTS: tuple[Workload, ...] = (
    # Started before the webhook and the demo's clients: the webhook points pods at the forwarder,
    # the forwarder health-checks the proxy.
    Workload(
        AGENT_NS,
        "network-mapper-aws-proxy",
        "Deployment",
        (),
        port=8443,
        service_port=443,
        more_ports=(("health", 9094),),
        module="agent.aws.proxy_runner",
        env={
            **_IN_CLUSTER,
            "OTTERIZE_MAPPER_API": MAPPER_URL,
            "AWS_PROXY_LISTEN_ADDRESS": "0.0.0.0:8443",
            "AWS_PROXY_HEALTH_ADDRESS": "0.0.0.0:9094",
            "AWS_PROXY_CONFDIR": "/etc/network-mapper/proxy-ca",
            # What the image's system trust store is on a real node: the public roots.
            "AWS_PROXY_UPSTREAM_CA_BUNDLE": "{public_roots}",
        },
        volumes=PROXY_VOLUMES,
        mounts=(("proxy-ca", "/etc/network-mapper/proxy-ca"),),
        wait_ready=True,
    ),
    Workload(
        AGENT_NS,
        "network-mapper-aws-dns",
        "Deployment",
        (),
        port=5353,
        service_port=53,
        protocol="UDP",
        module="agent.aws.dns_forwarder",
        env={
            "OTTERIZE_TELEMETRY_ENABLED": "true",
            "AWS_DNS_LISTEN_ADDRESS": "0.0.0.0:5353",
            "AWS_DNS_HEALTH_ADDRESS": "0.0.0.0:9095",
            "AWS_DNS_PROXY_HOST": _AWS_PROXY_HOST,
            "AWS_DNS_PROXY_HEALTH_URL": f"http://{_AWS_PROXY_HOST}:9094/healthz",
            "AWS_DNS_HEALTH_INTERVAL": "2",
            "AWS_DNS_ANSWER_TTL": "5",
        },
        wait_ready=True,
    ),
    Workload(
        AGENT_NS,
        "network-mapper-aws-webhook",
        "Deployment",
        ("--kubeconfig", "{kubeconfig}"),
        port=8443,
        service_port=443,
        module="agent.aws.webhookserver",
        env={
            "OTTERIZE_TELEMETRY_ENABLED": "true",
            "AWS_WEBHOOK_LISTEN_ADDRESS": "0.0.0.0:8443",
            "AWS_WEBHOOK_FORWARDER_SERVICE": f"{AGENT_NS}/network-mapper-aws-dns",
            "AWS_WEBHOOK_CLUSTER_DOMAIN": CLUSTER_DOMAIN,
            "AWS_WEBHOOK_SYSTEM_CA_FILE": "{public_roots}",
        },
        volumes=WEBHOOK_VOLUMES,
        mounts=(
            ("webhook-tls", "/etc/network-mapper/webhook-tls"),
            ("proxy-ca-cert", "/etc/network-mapper/proxy-ca-cert"),
        ),
        wait_ready=True,
    ),
)
"""AWS visibility (``aws.visibility.enabled``): the IAM proxy, the DNS forwarder and the webhook."""

WATCHER_MODULES = {
    "network-mapper-kafka-watcher": "agent.watchers.kafkawatcher",
    "network-mapper-istio-watcher": "agent.watchers.istiowatcher",
}
"""The chart's commands (the image's console scripts) → the modules the sandbox runs them as."""

AWS_MODULES = {
    "network-mapper-aws-proxy": "agent.aws.proxy_runner",
    "network-mapper-aws-dns-forwarder": "agent.aws.dns_forwarder",
    "network-mapper-aws-webhook": "agent.aws.webhookserver",
}
SANDBOX_ONLY_ENV = frozenset({"AWS_PROXY_UPSTREAM_CA_BUNDLE", "AWS_WEBHOOK_SYSTEM_CA_FILE"})
"""Where a real image's system trust store would do: the sandbox's public roots (sandbox.awssetup)."""

WORKLOADS: tuple[Workload, ...] = SYSTEM + AGENTS + AWS_AGENTS + DEMO + EXTRAS + KAFKA + ISTIO + AWS_DEMO
