"""Settings of the AWS visibility components: the proxy, the DNS forwarder and the webhook.

Built once by each component's ``main`` with :func:`agent.settings.load` (flags over environment
over defaults) and passed down. The helm chart (``aws.visibility.enabled``) and the sandbox set
them through the environment variables named here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from agent.settings import (
    CheckedSettings,
    kubeconfig_setting,
    mapper_url_setting,
    node_name_setting,
    parse_address,
    pod_name_setting,
    setting,
    status_interval_setting,
    token_setting,
)

MAX_FAIL_OPEN_SECONDS = 5.0  # the health-check interval and the AWS answers' TTL: both this at most
DAY = 86_400.0
CERT_VALIDITY_SECONDS = 365 * DAY  # of a renewed serving certificate (agent.aws.webhookcerts.VALIDITY)


def _at_most_fail_open(value: float) -> None:
    if value > MAX_FAIL_OPEN_SECONDS:
        raise ValueError(
            f"must be at most {MAX_FAIL_OPEN_SECONDS:g} s so DNS fails open quickly, not {value}"
        )


def _domains(value: tuple[str, ...]) -> None:
    if not value:
        raise ValueError("at least one domain is needed")


def _address_or_empty(value: str) -> None:
    if value:
        parse_address(value)


def _namespaced_or_empty(value: str) -> None:
    if value and (value.count("/") != 1 or "" in value.split("/")):
        raise ValueError(f"not namespace/name: {value!r}")


def _renew_before(value: float) -> None:
    if not 0 < value < CERT_VALIDITY_SECONDS:
        raise ValueError(
            f"must be above 0 and below a renewed certificate's {CERT_VALIDITY_SECONDS:g} s, not {value}"
        )


def _positive(value: float) -> None:
    if value <= 0:
        raise ValueError(f"must be above 0, not {value}")


@dataclasses.dataclass(frozen=True, slots=True)
class AwsProxySettings(CheckedSettings):
    """The IAM proxy: terminates TLS for AWS endpoints, maps each signed request to its IAM action and
    resource, forwards it unchanged and reports it to the mapper."""

    mapper_url: str = mapper_url_setting()
    token: str = token_setting()
    node_name: str = node_name_setting()
    pod_name: str = pod_name_setting()
    status_interval: float = status_interval_setting()
    listen_address: str = setting(
        "0.0.0.0:8443",
        "AWS_PROXY_LISTEN_ADDRESS",
        "host:port the proxy accepts TLS on (the proxy Service's 443 points here)",
        flag="listen_address",
        check=parse_address,
    )
    health_address: str = setting(
        "0.0.0.0:9094",
        "AWS_PROXY_HEALTH_ADDRESS",
        "host:port for /healthz and /metrics",
        flag="health_address",
        check=parse_address,
    )
    confdir: Path = setting(
        Path("/etc/network-mapper/proxy-ca"),
        "AWS_PROXY_CONFDIR",
        "directory holding mitmproxy-ca.pem: the proxy CA's key and certificate (from a Secret)",
        flag="confdir",
    )
    upstream_ca_bundle: str = setting(
        "",
        "AWS_PROXY_UPSTREAM_CA_BUNDLE",
        "CA bundle that AWS endpoints' certificates are verified against (empty: the system's)",
        flag="upstream_ca_bundle",
    )
    domains: tuple[str, ...] = setting(
        ("amazonaws.com",),
        "AWS_PROXY_DOMAINS",
        "comma-separated DNS suffixes of the AWS endpoints that are intercepted",
        flag="domains",
        check=_domains,
    )
    report_interval: float = setting(
        2.0, "AWS_PROXY_REPORT_INTERVAL", "seconds between reports", flag="report_interval"
    )
    max_pending: int = setting(
        100_000,
        "AWS_PROXY_MAX_PENDING",
        "bound on distinct (client, action, resource) entries held between reports",
        flag="max_pending",
    )
    request_timeout: float = setting(
        10.0, "AWS_PROXY_REQUEST_TIMEOUT", "seconds per request to the mapper", flag="request_timeout"
    )
    account_wait: float = setting(
        10.0,
        "AWS_PROXY_ACCOUNT_WAIT",
        "seconds a call whose ARN lacks the account waits for its credential's account to be learned"
        " (from an ARN or an STS GetCallerIdentity answer) before it is reported with '*'",
        flag="account_wait",
    )


@dataclasses.dataclass(frozen=True, slots=True)
class DnsForwarderSettings(CheckedSettings):
    """The DNS forwarder: answers AWS names with the proxy's address while the proxy is healthy (their
    real addresses while it is not) and forwards every other query to the cluster DNS unchanged."""

    listen_address: str = setting(
        "0.0.0.0:5353",
        "AWS_DNS_LISTEN_ADDRESS",
        "host:port served over UDP and TCP (the forwarder Service's 53 points here)",
        flag="listen_address",
        check=parse_address,
    )
    upstream: str = setting(
        "",
        "AWS_DNS_UPSTREAM",
        "host:port of the cluster DNS (empty: the first nameserver of --resolv-conf)",
        flag="upstream",
        check=_address_or_empty,
    )
    resolv_conf: Path = setting(
        Path("/etc/resolv.conf"),
        "AWS_DNS_RESOLV_CONF",
        "where the default upstream is read",
        flag="resolv_conf",
    )
    proxy_host: str = setting(
        "network-mapper-aws-proxy",
        "AWS_DNS_PROXY_HOST",
        "the proxy's address, or its Service name resolved through the upstream",
        flag="proxy_host",
    )
    proxy_health_url: str = setting(
        "http://network-mapper-aws-proxy:9094/healthz",
        "AWS_DNS_PROXY_HEALTH_URL",
        "URL whose 200 means the proxy is up",
        flag="proxy_health_url",
    )
    health_interval: float = setting(
        2.0,
        "AWS_DNS_HEALTH_INTERVAL",
        "seconds between health checks of the proxy (at most 5)",
        flag="health_interval",
        check=_at_most_fail_open,
    )
    answer_ttl: int = setting(
        5,
        "AWS_DNS_ANSWER_TTL",
        "TTL of the answers for AWS names (at most 5)",
        flag="answer_ttl",
        check=_at_most_fail_open,
    )
    domains: tuple[str, ...] = setting(
        ("amazonaws.com",),
        "AWS_DNS_DOMAINS",
        "comma-separated DNS suffixes answered with the proxy's address",
        flag="domains",
        check=_domains,
    )
    upstream_timeout: float = setting(
        2.0,
        "AWS_DNS_UPSTREAM_TIMEOUT",
        "seconds to wait for the upstream (then SERVFAIL)",
        flag="upstream_timeout",
    )
    health_address: str = setting(
        "0.0.0.0:9095",
        "AWS_DNS_HEALTH_ADDRESS",
        "host:port for /healthz and /metrics",
        flag="health_address",
        check=parse_address,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class AwsWebhookSettings(CheckedSettings):
    """The admission webhook: patches labelled pods at creation to use the forwarder and trust the
    proxy's CA (besides the system CAs)."""

    listen_address: str = setting(
        "0.0.0.0:8443",
        "AWS_WEBHOOK_LISTEN_ADDRESS",
        "host:port served over HTTPS",
        flag="listen_address",
        check=parse_address,
    )
    tls_secret: str = setting(
        "",
        "AWS_WEBHOOK_TLS_SECRET",
        "namespace/name of the kubernetes.io/tls Secret (tls.crt, tls.key, ca.crt) the serving certificate"
        " is read from and renewed in, through the Kubernetes API (empty: the files below, never renewed)",
        flag="tls_secret",
        check=_namespaced_or_empty,
    )
    webhook_configuration: str = setting(
        "",
        "AWS_WEBHOOK_CONFIGURATION",
        "the MutatingWebhookConfiguration whose webhooks' caBundle is kept current and whose Services"
        " name the renewed certificate (needed with --tls-secret)",
        flag="webhook_configuration",
    )
    renew_before: float = setting(
        30 * DAY,
        "AWS_WEBHOOK_RENEW_BEFORE",
        "seconds before the serving certificate expires that it is renewed",
        flag="renew_before",
        check=_renew_before,
    )
    cert_check_interval: float = setting(
        3600.0,
        "AWS_WEBHOOK_CERT_CHECK_INTERVAL",
        "seconds between reads of the Secret (renewal when due, a certificate renewed elsewhere loaded)",
        flag="cert_check_interval",
        check=_positive,
    )
    tls_cert_file: Path = setting(
        Path("/etc/network-mapper/webhook-tls/tls.crt"),
        "AWS_WEBHOOK_TLS_CERT_FILE",
        "the serving certificate (PEM) when --tls-secret is empty (a mounted Secret; not renewed)",
        flag="tls_cert_file",
    )
    tls_key_file: Path = setting(
        Path("/etc/network-mapper/webhook-tls/tls.key"),
        "AWS_WEBHOOK_TLS_KEY_FILE",
        "the serving certificate's key (PEM) when --tls-secret is empty",
        flag="tls_key_file",
    )
    proxy_ca_file: Path = setting(
        Path("/etc/network-mapper/proxy-ca-cert/ca.crt"),
        "AWS_WEBHOOK_PROXY_CA_FILE",
        "the proxy CA's certificate (never its key)",
        flag="proxy_ca_file",
    )
    system_ca_file: Path = setting(
        Path("/etc/ssl/certs/ca-certificates.crt"),
        "AWS_WEBHOOK_SYSTEM_CA_FILE",
        "the system CAs, added to the pods' bundle so direct connections verify when the proxy is down",
        flag="system_ca_file",
    )
    forwarder_service: str = setting(
        "otterize-system/network-mapper-aws-dns",
        "AWS_WEBHOOK_FORWARDER_SERVICE",
        "namespace/name of the forwarder's Service: its ClusterIP becomes the pods' nameserver",
        flag="forwarder_service",
    )
    forwarder_address: str = setting(
        "",
        "AWS_WEBHOOK_FORWARDER_ADDRESS",
        "the forwarder's IP (empty: the Service's ClusterIP)",
        flag="forwarder_address",
    )
    cluster_domain: str = setting(
        "cluster.local", "AWS_WEBHOOK_CLUSTER_DOMAIN", "the cluster's DNS domain", flag="cluster_domain"
    )
    bundle_configmap: str = setting(
        "network-mapper-aws-ca-bundle",
        "AWS_WEBHOOK_BUNDLE_CONFIGMAP",
        "ConfigMap made in each patched pod's namespace with the CA bundle",
        flag="bundle_configmap",
    )
    mount_path: str = setting(
        "/etc/network-mapper/aws-ca",
        "AWS_WEBHOOK_MOUNT_PATH",
        "where the bundle is mounted in the pods' containers (AWS_CA_BUNDLE=<path>/ca-bundle.pem)",
        flag="mount_path",
    )
    kubeconfig: str = kubeconfig_setting()
