"""agent.aws.webhookserver.KubeCluster: caching and failure handling of the bundle ConfigMap and the
forwarder's ClusterIP, against a scripted CoreV1Api and a hand-moved clock (the real client and API
server are in tests/integration/test_aws_webhook.py)."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from agent.aws.settings import AwsWebhookSettings
from agent.aws.webhook import ClusterError
from agent.aws.webhookserver import CACHE_SECONDS, KubeCluster

BUNDLE = "-----BEGIN CERTIFICATE-----\nQUFBQQ==\n-----END CERTIFICATE-----\n"
SETTINGS = AwsWebhookSettings()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeCore:
    """Scripted CoreV1Api: ``configmaps`` and ``services`` are the cluster; ``fail`` the next errors."""

    def __init__(self) -> None:
        self.configmaps: dict[tuple[str, str], dict[str, str]] = {}
        self.services: dict[tuple[str, str], str] = {
            ("otterize-system", "network-mapper-aws-dns"): "10.96.0.53"
        }
        self.calls: list[str] = []
        self.fail: list[ApiException | OSError] = []
        self.created_meanwhile = False

    def _maybe_fail(self, call: str) -> None:
        self.calls.append(call)
        if self.fail:
            raise self.fail.pop(0)

    def read_namespaced_config_map(self, name: str, namespace: str, **kw: Any) -> Any:
        self._maybe_fail("read")
        if (namespace, name) not in self.configmaps:
            raise ApiException(status=404, reason="Not Found")
        return SimpleNamespace(data=dict(self.configmaps[namespace, name]))

    def create_namespaced_config_map(self, namespace: str, body: dict[str, Any], **kw: Any) -> None:
        self._maybe_fail("create")
        assert kw["_request_timeout"] > 0
        if self.created_meanwhile:
            self.configmaps[namespace, body["metadata"]["name"]] = {"ca-bundle.pem": BUNDLE}
            raise ApiException(status=409, reason="Conflict")
        self.configmaps[namespace, body["metadata"]["name"]] = dict(body["data"])

    def replace_namespaced_config_map(self, name: str, namespace: str, body: Any, **kw: Any) -> None:
        self._maybe_fail("replace")
        self.configmaps[namespace, name] = dict(body.data)

    def read_namespaced_service(self, name: str, namespace: str, **kw: Any) -> Any:
        self._maybe_fail("read service")
        ip = self.services.get((namespace, name))
        if ip is None:
            raise ApiException(status=404, reason="Not Found")
        return SimpleNamespace(spec=SimpleNamespace(cluster_ip=ip))


@pytest.fixture
def core() -> FakeCore:
    return FakeCore()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def cluster_of(core: FakeCore, clock: Clock, settings: AwsWebhookSettings = SETTINGS) -> KubeCluster:
    return KubeCluster(core, settings, BUNDLE, clock=clock)  # type: ignore[arg-type]


def test_bundle_is_created_once_then_cached(core: FakeCore, clock: Clock) -> None:
    cluster = cluster_of(core, clock)
    cluster.ensure_bundle("team-a")
    assert core.configmaps == {("team-a", "network-mapper-aws-ca-bundle"): {"ca-bundle.pem": BUNDLE}}
    assert core.calls == ["read", "create"]
    cluster.ensure_bundle("team-a")
    assert core.calls == ["read", "create"]  # no API call for the next pods
    cluster.ensure_bundle("team-b")
    assert core.calls == ["read", "create", "read", "create"]


def test_cache_expires_so_a_deleted_configmap_comes_back(core: FakeCore, clock: Clock) -> None:
    cluster = cluster_of(core, clock)
    cluster.ensure_bundle("team-a")
    core.configmaps.clear()
    clock.now += CACHE_SECONDS - 1
    cluster.ensure_bundle("team-a")
    assert not core.configmaps
    clock.now += 2
    cluster.ensure_bundle("team-a")
    assert core.configmaps[("team-a", "network-mapper-aws-ca-bundle")] == {"ca-bundle.pem": BUNDLE}


def test_other_content_is_updated_and_other_keys_kept(core: FakeCore, clock: Clock) -> None:
    core.configmaps["team-a", "network-mapper-aws-ca-bundle"] = {"ca-bundle.pem": "old", "note": "x"}
    cluster_of(core, clock).ensure_bundle("team-a")
    assert core.configmaps["team-a", "network-mapper-aws-ca-bundle"] == {"ca-bundle.pem": BUNDLE, "note": "x"}
    assert core.calls == ["read", "replace"]


def test_same_content_is_left_alone(core: FakeCore, clock: Clock) -> None:
    core.configmaps["team-a", "network-mapper-aws-ca-bundle"] = {"ca-bundle.pem": BUNDLE}
    cluster_of(core, clock).ensure_bundle("team-a")
    assert core.calls == ["read"]


def test_made_by_another_replica_meanwhile(core: FakeCore, clock: Clock) -> None:
    core.created_meanwhile = True
    cluster_of(core, clock).ensure_bundle("team-a")
    assert core.calls == ["read", "create", "read"]


@pytest.mark.parametrize(
    "error", [ApiException(status=403, reason="Forbidden"), ConnectionRefusedError("refused")]
)
def test_failure_is_reported_and_not_cached(core: FakeCore, clock: Clock, error: Exception) -> None:
    cluster = cluster_of(core, clock)
    core.fail.append(error)  # type: ignore[arg-type]
    with pytest.raises(ClusterError, match="ConfigMap team-a/network-mapper-aws-ca-bundle"):
        cluster.ensure_bundle("team-a")
    cluster.ensure_bundle("team-a")  # the next pod re-checks at once
    assert ("team-a", "network-mapper-aws-ca-bundle") in core.configmaps


def test_forwarder_ip_from_the_service_is_cached(core: FakeCore, clock: Clock) -> None:
    cluster = cluster_of(core, clock)
    assert cluster.forwarder_ip() == "10.96.0.53"
    assert cluster.forwarder_ip() == "10.96.0.53"
    assert core.calls == ["read service"]
    clock.now += CACHE_SECONDS + 1
    core.services["otterize-system", "network-mapper-aws-dns"] = "10.96.7.7"
    assert cluster.forwarder_ip() == "10.96.7.7"


def test_forwarder_unreadable_keeps_the_last_address_and_reads_again(core: FakeCore, clock: Clock) -> None:
    cluster = cluster_of(core, clock)
    cluster.forwarder_ip()
    clock.now += CACHE_SECONDS + 1
    core.fail.append(ApiException(status=503, reason="Service Unavailable"))
    assert cluster.forwarder_ip() == "10.96.0.53"
    core.services["otterize-system", "network-mapper-aws-dns"] = "10.96.9.9"
    assert cluster.forwarder_ip() == "10.96.9.9"  # not cached from the failure: read again


def test_forwarder_never_read_is_an_error(core: FakeCore, clock: Clock) -> None:
    core.services.clear()
    with pytest.raises(ClusterError, match="Service otterize-system/network-mapper-aws-dns: HTTP 404"):
        cluster_of(core, clock).forwarder_ip()


def test_headless_forwarder_service_is_an_error(core: FakeCore, clock: Clock) -> None:
    core.services["otterize-system", "network-mapper-aws-dns"] = "None"
    with pytest.raises(ClusterError, match="ValueError"):
        cluster_of(core, clock).forwarder_ip()


def test_forwarder_address_setting_wins_without_api_call(core: FakeCore, clock: Clock) -> None:
    cluster = cluster_of(core, clock, replace(SETTINGS, forwarder_address="10.0.0.53"))
    assert cluster.forwarder_ip() == "10.0.0.53"
    assert core.calls == []
