"""The sandbox's kubelet runs pods as stored: sandbox.podspec from a pod object to processes."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from sandbox import objects, podspec
from sandbox.product import WORKLOADS
from sandbox.topology import CLUSTER_DOMAIN, DNS_SERVICE_IP

DNS = podspec.ClusterDns(DNS_SERVICE_IP, CLUSTER_DOMAIN, ("192.0.2.53",))
FILL = {
    "kubeconfig": "/k",
    "data_dir": "/d",
    "token": "t0k",
    "cloud_token": "c",
    "state_dir": "/s",
    "public_roots": "/roots.pem",
}


class EveryKey(dict[str, bytes]):
    """A Secret or ConfigMap that has whatever key is asked for, its value naming the key."""

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> bytes:
        return f"value-of-{key}".encode()


def _sources(
    secrets: dict[tuple[str, str], dict[str, bytes]] | None = None, cms: Any = None
) -> podspec.Sources:
    secrets = secrets or {}
    cms = cms or {}
    return podspec.Sources(lambda ns, n: secrets.get((ns, n)), lambda ns, n: cms.get((ns, n)))


def _pod(spec: dict[str, Any], namespace: str = "shop", name: str = "p-1") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace}, "spec": spec}


def _container(**extra: Any) -> dict[str, Any]:
    return {"name": "app", "command": ["python", "-m", "sandbox.workloads"], "args": ["service"], **extra}


@pytest.mark.parametrize("w", WORKLOADS, ids=lambda w: f"{w.namespace}/{w.name}")
def test_every_sandbox_pod_runs_its_program_with_its_filled_arguments_and_environment(w: Any) -> None:
    plan = objects.plan_pod(w, "10.244.1.99", fill=FILL)
    run = podspec.pod_run(
        plan.pod, plan.ip, DNS, podspec.Sources(lambda *_: EveryKey(), lambda *_: EveryKey())
    )
    fill = {**FILL, "pod_name": plan.pod_name, "pod_ip": plan.ip}
    assert [c.name for c in run.containers] == [c.name for c in w.containers]
    for got, want in zip(run.containers, w.containers, strict=True):
        assert got.argv == ("-m", want.module, *(a.format(**fill) for a in want.args))
        for key, value in want.env.items():
            assert got.env[key] == value.format(**fill)
        for key, (_, secret_key) in want.secret_env.items():
            assert got.env[key] == f"value-of-{secret_key}"
        assert [(m.volume, m.path, m.read_only) for m in got.mounts] == [(v, p, True) for v, p in want.mounts]


def test_env_comes_from_values_secrets_config_maps_and_the_pods_fields() -> None:
    env = [
        {"name": "PLAIN", "value": "x"},
        {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "id"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
        {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "nope", "optional": True}}},
        {"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "URL", "value": "http://$(ME):80/$(UNSET)"},
    ]
    sources = _sources({("shop", "creds"): {"id": b"AKIA1"}}, {("shop", "cfg"): {"mode": b"fast"}})
    run = podspec.pod_run(
        _pod({"containers": [_container(env=env)]}), "10.244.1.5", DNS, sources, {"BASE": "1"}
    )
    assert run.containers[0].env == {
        "BASE": "1",
        "PLAIN": "x",
        "KEY": "AKIA1",
        "MODE": "fast",
        "ME": "p-1",
        "URL": "http://p-1:80/$(UNSET)",  # an unknown reference stays as written, as in Kubernetes
    }


def test_the_specs_env_overrides_the_images() -> None:
    env = [{"name": "AWS_CA_BUNDLE", "value": "/etc/network-mapper/aws-ca/ca-bundle.pem"}]
    run = podspec.pod_run(
        _pod({"containers": [_container(env=env)]}),
        "10.0.0.1",
        DNS,
        _sources(),
        {"AWS_CA_BUNDLE": "/roots.pem"},
    )
    assert run.containers[0].env["AWS_CA_BUNDLE"] == "/etc/network-mapper/aws-ca/ca-bundle.pem"


def test_a_missing_secret_key_stops_the_pod_with_a_message() -> None:
    env = [{"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "id"}}}]
    with pytest.raises(podspec.PodSpecError, match="Secret shop/creds has no key 'id'"):
        podspec.pod_run(_pod({"containers": [_container(env=env)]}), "10.0.0.1", DNS, _sources())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"envFrom": [{"secretRef": {"name": "x"}}]}, "envFrom"),
        ({"command": ["/bin/sh"]}, "not an image of the sandbox"),
        ({"volumeMounts": [{"name": "v", "mountPath": "/x", "subPath": "a"}]}, "subPath"),
        ({"volumeMounts": [{"name": "absent", "mountPath": "/x"}]}, "no volume 'absent'"),
    ],
)
def test_what_the_sandbox_cannot_run_is_refused_not_ignored(extra: dict[str, Any], message: str) -> None:
    spec = {"containers": [_container(**extra)], "volumes": [{"name": "v", "emptyDir": {}}]}
    with pytest.raises(podspec.PodSpecError, match=message):
        podspec.pod_run(_pod(spec), "10.0.0.1", DNS, _sources())


def test_secret_and_config_map_volumes_become_files_mounted_where_the_spec_says() -> None:
    spec = {
        "containers": [
            _container(
                volumeMounts=[
                    {"name": "tls", "mountPath": "/etc/tls", "readOnly": True},
                    {"name": "ca", "mountPath": "/etc/ca"},
                ]
            )
        ],
        "volumes": [
            {"name": "tls", "secret": {"secretName": "tls"}},
            {
                "name": "ca",
                "configMap": {"name": "bundle", "items": [{"key": "ca.crt", "path": "roots.pem"}]},
            },
            {"name": "scratch", "emptyDir": {}},
        ],
    }
    sources = _sources(
        {("shop", "tls"): {"tls.crt": b"C", "tls.key": b"K"}},
        {("shop", "bundle"): {"ca.crt": b"R", "x": b"-"}},
    )
    run = podspec.pod_run(_pod(spec), "10.0.0.1", DNS, sources)
    assert run.volumes == {
        "tls": {"tls.crt": b"C", "tls.key": b"K"},
        "ca": {"roots.pem": b"R"},
        "scratch": {},
    }
    assert run.containers[0].mounts == (
        podspec.Mount("tls", "/etc/tls", True),
        podspec.Mount("ca", "/etc/ca", False),
    )


def test_a_missing_volume_source_stops_the_pod_unless_optional() -> None:
    spec = {"containers": [_container()], "volumes": [{"name": "tls", "secret": {"secretName": "tls"}}]}
    with pytest.raises(podspec.PodSpecError, match="Secret shop/tls not found"):
        podspec.pod_run(_pod(spec), "10.0.0.1", DNS, _sources())
    spec["volumes"][0]["secret"]["optional"] = True
    assert podspec.pod_run(_pod(spec), "10.0.0.1", DNS, _sources()).volumes == {"tls": {}}


def test_cluster_first_gives_the_namespaces_search_path_and_ndots_5() -> None:
    resolv = podspec.resolv_conf(_pod({"containers": []}, namespace="aws-visibility-demo"), DNS)
    assert resolv.text() == (
        f"nameserver {DNS_SERVICE_IP}\n"
        "search aws-visibility-demo.svc.cluster.local svc.cluster.local cluster.local\n"
        "options ndots:5\n"
    )


def test_dns_policy_none_is_exactly_the_dns_config() -> None:
    config = {
        "nameservers": ["10.96.0.53"],
        "searches": ["shop.svc.cluster.local", "svc.cluster.local", "cluster.local"],
        "options": [{"name": "ndots", "value": "5"}, {"name": "edns0"}],
    }
    resolv = podspec.resolv_conf(_pod({"dnsPolicy": "None", "dnsConfig": config}), DNS)
    assert resolv == podspec.ResolvConf(
        ("10.96.0.53",),
        ("shop.svc.cluster.local", "svc.cluster.local", "cluster.local"),
        ("ndots:5", "edns0"),
    )
    assert resolv.searches == podspec.resolv_conf(_pod({}), DNS).searches


def test_dns_config_merges_after_the_policys_own_and_overrides_its_options() -> None:
    config = {
        "nameservers": ["1.1.1.1"],
        "searches": ["extra.example"],
        "options": [{"name": "ndots", "value": "2"}],
    }
    resolv = podspec.resolv_conf(_pod({"dnsConfig": config}), DNS)
    assert resolv.nameservers == (DNS_SERVICE_IP, "1.1.1.1")
    assert resolv.searches[-1] == "extra.example" and resolv.options == ("ndots:2",)


def test_host_network_pods_get_the_nodes_resolver_unless_cluster_first_with_host_net() -> None:
    assert podspec.resolv_conf(_pod({"hostNetwork": True}), DNS).nameservers == ("192.0.2.53",)
    spec = {"hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet"}
    assert podspec.resolv_conf(_pod(spec), DNS).nameservers == (DNS_SERVICE_IP,)


def test_secret_data_is_decoded_from_base64() -> None:
    obj = {"data": {"k": base64.b64encode(b"\x00v").decode()}}
    assert podspec.secret_data(obj) == {"k": b"\x00v"}
    assert podspec.config_map_data({"data": {"a": "b"}, "binaryData": {"c": "ZA=="}}) == {
        "a": b"b",
        "c": b"d",
    }
    assert podspec.secret_data(None) is None
