"""The chart's values (helm/network-mapper/values.yaml and values.schema.json), rendered offline.

* the schema rejects unknown keys and wrong types at any level with a message naming the key, so a
  ``--set`` typo fails the install; the Kubernetes types it reuses are kubernetes-validate's current ones;
* every value is wired: each container's variables are settings its component reads (its settings
  dataclass's field variables), and the values reach them (Otterize's names included);
* Otterize's aliases and this chart's deprecated names keep working, the new name wins, and NOTES
  prints a deprecation line for an old name in use;
* per-component scheduling and the global pod/object metadata reach every workload;
* the security contexts: the sniffer with only NET_RAW and SYS_PTRACE added, everything else
  non-root, read-only, no privilege escalation, seccomp RuntimeDefault; probes on each health endpoint.
"""

from __future__ import annotations

import json
from typing import Any

import helm_python as helm
import pytest
import yaml

from agent.aws.settings import AwsProxySettings, AwsWebhookSettings, DnsForwarderSettings
from agent.cli.main import build_parser
from agent.mapper.settings import MapperSettings
from agent.settings import IstioWatcherSettings, KafkaWatcherSettings, SnifferSettings
from tests.support.chart import CHART, NS, env, rendered
from tests.unit.helm.k8s_definitions import PREFIX, SCHEMA, definitions

SETTINGS: dict[str, Any] = {
    "network-mapper": MapperSettings,
    "network-mapper-sniffer": SnifferSettings,
    "network-mapper-kafka-watcher": KafkaWatcherSettings,
    "network-mapper-istio-watcher": IstioWatcherSettings,
    "network-mapper-aws-proxy": AwsProxySettings,
    "network-mapper-aws-dns": DnsForwarderSettings,
    "network-mapper-aws-webhook": AwsWebhookSettings,
}
# global.telemetry.enabled reaches every container by design (one opt-out for the whole product);
# the components that send telemetry read it.
EVERYWHERE = {"OTTERIZE_TELEMETRY_ENABLED"}
ALL_ON: dict[str, Any] = {
    "aws": {"visibility": {"enabled": True}},
    "kafkawatcher": {"enable": True, "kafkaServers": ["kafka-0.kafka"]},
    "enableIstioCollection": True,
    "cloud": {"url": "https://cloud.example.com", "token": "t", "anonymize": True},
}


@pytest.fixture(scope="module")
def all_on() -> list[dict[str, Any]]:
    return rendered(ALL_ON)[0]


def pods(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Workload name → pod spec (the helm test Pod included)."""
    out = {}
    for doc in docs:
        if doc["kind"] in {"Deployment", "DaemonSet"}:
            out[doc["metadata"]["name"]] = doc["spec"]["template"]["spec"]
        elif doc["kind"] == "Pod":
            out[doc["metadata"]["name"]] = doc["spec"]
    return out


def mapper_env(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = pods(docs)["network-mapper"]["containers"]
    return env(container)


def variables(cls: Any) -> set[str]:
    """The environment variables a settings dataclass (or one made of groups) reads."""
    out: set[str] = set()
    for f in cls.__dataclass_fields__.values():
        if "env" in f.metadata:
            out.add(f.metadata["env"])
        else:
            out |= variables(f.default_factory)
    return out


# -- the schema ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"snifer": {"enable": True}}, "additional properties 'snifer' not allowed"),
        ({"sniffer": {"enable": "yes"}}, "at '/sniffer/enable': got string, want boolean"),
        ({"mapper": {"excludeNamespace": ["kube-system"]}}, "additional properties 'excludeNamespace'"),
        ({"mapper": {"tolerations": [{"operater": "Exists"}]}}, "at '/mapper/tolerations/0'"),
        ({"mapper": {"resources": {"limit": {"memory": "1Gi"}}}}, "additional properties 'limit'"),
        (
            {"aws": {"visibility": {"webhook": {"certCheckInterval": 0}}}},
            "/aws/visibility/webhook/certCheckInterval",
        ),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"kafkawatcher": {"kafkaServers": ["kafka-0"]}}, "/kafkawatcher/kafkaServers/0"),
        ({"global": {"otterizeCloud": {"credentials": {"clientId": "x"}}}}, "'clientId' not allowed"),
    ],
)
def test_a_typo_or_a_wrong_type_fails_with_the_schemas_message(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.errors.HelmValuesError) as failure:
        rendered(values)
    assert message in str(failure.value)


def test_the_schema_closes_every_object() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" or "properties" in node:
                assert "additionalProperties" in node, where  # false, or a map's value type
                if "properties" in node:
                    assert node["additionalProperties"] is False, where
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}/{i}")

    walk(schema, "")
    # Every default in values.yaml is described by the schema (the defaults render, too).
    defaults = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))

    def keys(values: dict[str, Any], node: dict[str, Any], where: str) -> None:
        for key, value in values.items():
            assert key in node["properties"], f"{where}.{key} not in the schema"
            child = node["properties"][key]
            if isinstance(value, dict) and "properties" in child:
                keys(value, child, f"{where}.{key}")

    keys(defaults, schema, "")


def test_the_kubernetes_definitions_are_current() -> None:
    """``python -m tests.unit.helm.k8s_definitions`` regenerates them."""
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    ours = {k: v for k, v in schema["definitions"].items() if k.startswith(PREFIX)}
    assert ours == definitions()


# -- wiring ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_every_variable_is_one_its_component_reads(all_on: list[dict[str, Any]], name: str) -> None:
    (container,) = pods(all_on)[name]["containers"]
    unknown = set(env(container)) - variables(SETTINGS[name]) - EVERYWHERE
    assert not unknown, f"{name} sets variables its settings do not read: {sorted(unknown)}"


def test_the_helm_test_pod_lists_through_the_mapper_service(all_on: list[dict[str, Any]]) -> None:
    (test,) = [d for d in all_on if d["kind"] == "Pod"]
    assert test["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = test["spec"]["containers"]
    assert container["command"] == ["network-mapper"]
    assert container["args"] == ["list"]
    assert set(env(container)) == {"OTTERIZE_MAPPER_API", "NETWORK_MAPPER_TOKEN"}  # what the CLI reads
    variables = {k: v for k, v in env(container).items() if isinstance(v, str)}
    args = build_parser(variables).parse_args(container["args"])
    assert args.mapper_url == f"http://network-mapper.{NS}.svc.cluster.local:9090/query"
    assert env(container)["NETWORK_MAPPER_TOKEN"] == {
        "secretKeyRef": {"name": "network-mapper", "key": "agent-token"}
    }
    assert test["spec"]["automountServiceAccountToken"] is False
    assert test["spec"]["restartPolicy"] == "Never"


def test_the_mapper_values_reach_its_variables() -> None:
    defaults = mapper_env(rendered({})[0])
    assert defaults["MAPPER_EXCLUDE_NAMESPACES"] == "istio-system"
    assert defaults["MAPPER_INTERNET_TRAFFIC_REPORTING"] == "true"
    assert defaults["MAPPER_WORKLOAD_NAME_ANNOTATION"] == "intents.otterize.com/workload-name"
    assert defaults["MAPPER_OTEL_ENABLED"] == "false"
    assert defaults["MAPPER_OTEL_METRIC_NAME"] == "traces_service_graph_request_total"
    assert defaults["NETWORK_MAPPER_UPLOAD_INTERVAL"] == "60"
    assert not {"NETWORK_MAPPER_CLOUD_URL", "NETWORK_MAPPER_CLOUD_TOKEN"} & set(defaults)
    values = {
        "mapper": {"excludeNamespaces": ["istio-system", "kube-system"]},
        "enableInternetFacingTrafficReporting": False,
        "global": {"serviceNameOverrideAnnotationName": "example.com/app"},
        "opentelemetry": {"enable": True, "metricName": "edges_total", "endpoint": "http://otel:4318"},
        "cloud": {"uploadInterval": 15},
    }
    custom = mapper_env(rendered(values)[0])
    assert custom["MAPPER_EXCLUDE_NAMESPACES"] == "istio-system,kube-system"
    assert custom["MAPPER_INTERNET_TRAFFIC_REPORTING"] == "false"
    assert custom["MAPPER_WORKLOAD_NAME_ANNOTATION"] == "example.com/app"
    assert (custom["MAPPER_OTEL_ENABLED"], custom["MAPPER_OTEL_METRIC_NAME"]) == ("true", "edges_total")
    assert custom["MAPPER_OTEL_ENDPOINT"] == "http://otel:4318"
    assert custom["NETWORK_MAPPER_UPLOAD_INTERVAL"] == "15"


def test_the_webhook_renews_its_certificate_from_the_charts_secret(all_on: list[dict[str, Any]]) -> None:
    (container,) = pods(all_on)["network-mapper-aws-webhook"]["containers"]
    variables = env(container)
    assert variables["AWS_WEBHOOK_TLS_SECRET"] == f"{NS}/network-mapper-aws-webhook-tls"
    assert variables["AWS_WEBHOOK_CONFIGURATION"] == "network-mapper-aws-visibility"
    assert variables["AWS_WEBHOOK_RENEW_BEFORE"] == str(30 * 86400)
    assert variables["AWS_WEBHOOK_CERT_CHECK_INTERVAL"] == "3600"
    kinds = {(d["kind"], d["metadata"]["name"]) for d in all_on}
    assert ("Secret", "network-mapper-aws-webhook-tls") in kinds
    assert ("MutatingWebhookConfiguration", "network-mapper-aws-visibility") in kinds


# -- aliases and deprecated names ------------------------------------------------------------------


def test_otterizes_cloud_names_are_aliases_and_ours_win() -> None:
    otterize = {
        "global": {
            "otterizeCloud": {"apiAddress": "https://o.example.com", "credentials": {"clientSecret": "s"}}
        }
    }
    docs, notes = rendered(otterize)
    variables = mapper_env(docs)
    assert variables["NETWORK_MAPPER_CLOUD_URL"] == "https://o.example.com"
    assert variables["NETWORK_MAPPER_CLOUD_TOKEN"] == {
        "secretKeyRef": {"name": "network-mapper", "key": "cloud-token"}
    }
    (secret,) = [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "network-mapper"]
    assert "cloud-token" in secret["data"]
    assert "https://o.example.com/#token=" in notes
    both = {**otterize, "cloud": {"url": "https://ours.example.com"}}
    assert mapper_env(rendered(both)[0])["NETWORK_MAPPER_CLOUD_URL"] == "https://ours.example.com"

    ref = {
        "global": {
            "otterizeCloud": {
                "credentials": {"clientSecretKeyRef": {"secretName": "theirs", "secretKey": "k"}}
            }
        }
    }
    docs, _ = rendered(ref)
    assert mapper_env(docs)["NETWORK_MAPPER_CLOUD_TOKEN"] == {"secretKeyRef": {"name": "theirs", "key": "k"}}
    ours = {**ref, "cloud": {"existingSecret": {"name": "mine", "key": "token"}}}
    docs, _ = rendered(ours)
    assert mapper_env(docs)["NETWORK_MAPPER_CLOUD_TOKEN"] == {
        "secretKeyRef": {"name": "mine", "key": "token"}
    }
    (secret,) = [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "network-mapper"]
    assert "cloud-token" not in secret["data"]  # the user's Secret holds it


def test_deprecated_names_keep_working_with_a_notice() -> None:
    docs, notes = rendered({"sniffer": {"enabled": False}, "imagePullSecrets": [{"name": "old"}]})
    assert "DaemonSet" not in {d["kind"] for d in docs}
    assert "DEPRECATED: sniffer.enabled is set; use sniffer.enable" in notes
    assert "DEPRECATED: imagePullSecrets is set; use image.pullSecrets" in notes
    assert all(spec["imagePullSecrets"] == [{"name": "old"}] for spec in pods(docs).values())
    # The new names win; no notice without an old name.
    docs, notes = rendered({"image": {"pullSecrets": ["new"]}, "imagePullSecrets": [{"name": "old"}]})
    assert all(spec["imagePullSecrets"] == [{"name": "new"}] for spec in pods(docs).values())
    assert "sniffer.enabled" not in notes
    docs, notes = rendered({})
    assert "DEPRECATED" not in notes
    assert "DaemonSet" in {d["kind"] for d in docs}
    assert "kubectl port-forward -n observability svc/network-mapper 9090:9090" in notes
    assert "network-mapper list --mapper-url http://127.0.0.1:9090/query" in notes
    docs, _ = rendered({"sniffer": {"enable": False, "enabled": True}})
    assert "DaemonSet" not in {d["kind"] for d in docs}


# -- metadata, scheduling, security ----------------------------------------------------------------


def test_global_metadata_and_per_component_scheduling_reach_every_workload() -> None:
    scheduling = {
        "nodeSelector": {"pool": "system"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "system", "effect": "NoSchedule"}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        "priorityClassName": "system-cluster-critical",
    }
    values: dict[str, Any] = {
        "global": {
            "podLabels": {"team": "platform"},
            "podAnnotations": {"a/b": "c"},
            "commonLabels": {"cc": "42"},
        },
        "mapper": scheduling,
        "sniffer": scheduling,
        "kafkawatcher": {**ALL_ON["kafkawatcher"], **scheduling},
        "enableIstioCollection": True,
        "istiowatcher": scheduling,
        "aws": {
            "visibility": {
                "enabled": True,
                "proxy": scheduling,
                "dnsForwarder": scheduling,
                "webhook": scheduling,
            }
        },
    }
    docs, _ = rendered(values)
    assert all(d["metadata"]["labels"]["cc"] == "42" for d in docs)
    workloads = [d for d in docs if d["kind"] in {"Deployment", "DaemonSet"}]
    assert len(workloads) == 7
    for workload in workloads:
        template = workload["spec"]["template"]
        assert template["metadata"]["labels"]["team"] == "platform"
        assert template["metadata"]["annotations"] == {"a/b": "c"}
        assert workload["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
        assert {k: template["spec"][k] for k in scheduling} == scheduling, workload["metadata"]["name"]


def test_security_contexts_and_probes(all_on: list[dict[str, Any]]) -> None:
    for name, spec in pods(all_on).items():
        (container,) = spec["containers"]
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, name
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["capabilities"]["drop"] == ["ALL"], name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert "limits" in container["resources"] and "requests" in container["resources"], name
        if name == "network-mapper-sniffer":
            assert sorted(context["capabilities"]["add"]) == ["NET_RAW", "SYS_PTRACE"]
            assert spec["hostNetwork"] is True and spec["hostPID"] is True
            assert spec["securityContext"]["runAsUser"] == 0
        else:
            assert "add" not in context["capabilities"], name
            assert context["runAsNonRoot"] is True and context["runAsUser"] == 1000, name
            assert spec["securityContext"]["runAsNonRoot"] is True, name
        if name.endswith("-test"):
            continue  # one run: nothing to probe
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe in ("readinessProbe", "livenessProbe"):
            get = container[probe]["httpGet"]
            assert get["path"] == "/healthz" and get["port"] in ports, (name, probe)
        if name != "network-mapper-aws-webhook":
            found = env(container)
            health = [v for k, v in found.items() if k.endswith("_HEALTH_ADDRESS")]
            address = (health or [found.get("MAPPER_LISTEN_ADDRESS")])[0]
            assert int(address.rsplit(":", 1)[1]) == ports[container["livenessProbe"]["httpGet"]["port"]], (
                name
            )
