"""Settings: nested groups loaded from flat flags and variables (flag > env > default), every flag
documented in --help with its variable and default, values checked at load naming their source,
and every variable the helm chart sets known to the component it sets it on."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from agent.mapper.settings import (
    AnonymizationSettings,
    ApiSettings,
    ClusterSettings,
    MapperSettings,
    OtelSettings,
    RecordingSettings,
    TelemetrySettings,
    UploadSettings,
)
from agent.settings import SettingsError, SnifferSettings, load
from tests.support import chart

CHART = chart.CHART / "templates"

# Every flag and variable the mapper had when its settings were flat: all still load, into a group.
MAPPER_FLAGS: dict[str, tuple[str, str, str, Any]] = {
    # flag: (variable, group, field, a value as parsed from "text" below)
    "--listen-address": ("MAPPER_LISTEN_ADDRESS", "api", "listen_address", "127.0.0.1:9999"),
    "--data-dir": ("MAPPER_DATA_DIR", "store", "data_dir", Path("/data")),
    "--token": ("NETWORK_MAPPER_TOKEN", "api", "token", "t0k3n"),
    "--open-queries": ("MAPPER_OPEN_QUERIES", "api", "open_queries", False),
    "--max-body-bytes": ("MAPPER_MAX_BODY_BYTES", "api", "max_body_bytes", 1024),
    "--queue-batches": ("MAPPER_QUEUE_BATCHES", "api", "queue_batches", 8),
    "--request-timeout": ("MAPPER_REQUEST_TIMEOUT", "api", "request_timeout", 2.5),
    "--kubeconfig": ("KUBECONFIG", "cluster", "kubeconfig", "/kube/config"),
    "--cluster-domain": ("CLUSTER_DOMAIN", "cluster", "domain", "corp.internal"),
    "--pod-cidrs": ("MAPPER_POD_CIDRS", "cluster", "pod_cidrs", ("10.244.0.0/16", "fd00::/8")),
    "--service-cidrs": ("MAPPER_SERVICE_CIDRS", "cluster", "service_cidrs", ("10.96.0.0/12",)),
    "--cloud-url": ("NETWORK_MAPPER_CLOUD_URL", "upload", "cloud_url", "https://cloud.example"),
    "--cloud-token": ("NETWORK_MAPPER_CLOUD_TOKEN", "upload", "cloud_token", "ingest"),
    "--upload-interval": ("NETWORK_MAPPER_UPLOAD_INTERVAL", "upload", "interval", 5.0),
    "--upload-granularity": ("NETWORK_MAPPER_UPLOAD_GRANULARITY", "upload", "granularity", 600.0),
    "--upload-retry-attempts": ("NETWORK_MAPPER_UPLOAD_RETRY_ATTEMPTS", "upload", "retry_attempts", 2),
    "--upload-retry-initial": ("NETWORK_MAPPER_UPLOAD_RETRY_INITIAL", "upload", "retry_initial", 0.5),
    "--upload-retry-max": ("NETWORK_MAPPER_UPLOAD_RETRY_MAX", "upload", "retry_max", 4.0),
    "--upload-request-timeout": ("NETWORK_MAPPER_UPLOAD_REQUEST_TIMEOUT", "upload", "request_timeout", 7.0),
    "--anonymize": ("NETWORK_MAPPER_ANONYMIZE", "anonymization", "enabled", True),
    "--anonymize-key-file": ("NETWORK_MAPPER_ANONYMIZE_KEY_FILE", "anonymization", "key_file", "/key"),
    "--telemetry-enabled": ("OTTERIZE_TELEMETRY_ENABLED", "telemetry", "enabled", False),
    "--telemetry-url": ("NETWORK_MAPPER_TELEMETRY_URL", "telemetry", "url", "https://t.example"),
    "--telemetry-interval": ("NETWORK_MAPPER_TELEMETRY_INTERVAL", "telemetry", "interval", 30.0),
    # issue 15: what is recorded, how workloads are named, the service graph over OTLP.
    "--workload-name-annotation": (
        "MAPPER_WORKLOAD_NAME_ANNOTATION",
        "cluster",
        "workload_name_annotation",
        "example.com/app",
    ),
    "--exclude-namespaces": (
        "MAPPER_EXCLUDE_NAMESPACES",
        "recording",
        "exclude_namespaces",
        ("istio-system", "kube-system"),
    ),
    "--internet-traffic-reporting": (
        "MAPPER_INTERNET_TRAFFIC_REPORTING",
        "recording",
        "internet_traffic_reporting",
        False,
    ),
    "--otel-enabled": ("MAPPER_OTEL_ENABLED", "otel", "enabled", True),
    "--otel-metric-name": ("MAPPER_OTEL_METRIC_NAME", "otel", "metric_name", "edges_total"),
    "--otel-endpoint": ("MAPPER_OTEL_ENDPOINT", "otel", "endpoint", "http://otel-collector:4318"),
    "--otel-export-interval": ("MAPPER_OTEL_EXPORT_INTERVAL", "otel", "export_interval", 15.0),
}


def text(value: Any) -> str:
    """``value`` as written on a command line or in a variable."""
    if isinstance(value, tuple):
        return ", ".join(value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def test_defaults_when_nothing_given() -> None:
    settings = load(MapperSettings, [], {})
    assert settings == MapperSettings()
    assert settings.api.address == ("0.0.0.0", 9090) and settings.store.data_dir == Path(
        "/var/lib/network-mapper"
    )
    assert (settings.upload.cloud_url, settings.upload.interval, settings.upload.granularity) == (
        "",
        60.0,
        3600.0,
    )
    assert (settings.upload.retry_attempts, settings.upload.request_timeout) == (5, 30.0)
    assert settings.anonymization == AnonymizationSettings(enabled=False, key_file="")
    assert settings.telemetry == TelemetrySettings(enabled=True, url="", interval=300.0)
    assert settings.cluster == ClusterSettings(
        "", "cluster.local", (), (), "intents.otterize.com/workload-name"
    )
    assert settings.recording == RecordingSettings(exclude_namespaces=(), internet_traffic_reporting=True)
    assert settings.otel == OtelSettings(
        enabled=False,
        metric_name="traces_service_graph_request_total",
        endpoint="http://localhost:4318",
        export_interval=60.0,
    )
    assert load(SnifferSettings, [], {}) == SnifferSettings()


@pytest.mark.parametrize("source", ["flag", "env"])
def test_every_flat_flag_and_variable_fills_its_group(source: str) -> None:
    argv: list[str] = []
    environ: dict[str, str] = {}
    for flag, (env, _, _, value) in MAPPER_FLAGS.items():
        if source == "flag":
            argv += [flag, text(value)]
        else:
            environ[env] = text(value)
    settings = load(MapperSettings, argv, environ)
    for flag, (_, group, field, value) in MAPPER_FLAGS.items():
        assert getattr(getattr(settings, group), field) == value, flag


def test_flag_beats_environment_beats_default() -> None:
    env = {"NETWORK_MAPPER_CLOUD_URL": "http://env", "NETWORK_MAPPER_UPLOAD_INTERVAL": "3"}
    settings = load(MapperSettings, ["--cloud-url", "http://flag"], env)
    assert settings.upload.cloud_url == "http://flag"
    assert settings.upload.interval == 3.0
    assert settings.upload.granularity == 3600.0


@pytest.mark.parametrize(
    ("value", "expected"), [("false", False), ("0", False), ("TRUE", True), ("on", True)]
)
def test_telemetry_switch(value: str, expected: bool) -> None:
    assert load(MapperSettings, [], {"OTTERIZE_TELEMETRY_ENABLED": value}).telemetry.enabled is expected
    assert load(MapperSettings, [f"--telemetry-enabled={value}"], {}).telemetry.enabled is expected


@pytest.mark.parametrize(
    ("argv", "environ", "named"),
    [
        ([], {"OTTERIZE_TELEMETRY_ENABLED": "maybe"}, "OTTERIZE_TELEMETRY_ENABLED"),
        (["--upload-interval", "soon"], {}, "--upload-interval"),
        (["--telemetry-interval", "0"], {}, "--telemetry-interval.*more than 0"),
        ([], {"NETWORK_MAPPER_TELEMETRY_INTERVAL": "-1"}, "NETWORK_MAPPER_TELEMETRY_INTERVAL.*more than 0"),
        ([], {"MAPPER_QUEUE_BATCHES": "0"}, "MAPPER_QUEUE_BATCHES.*at least 1"),
        (["--max-body-bytes", "0"], {}, "--max-body-bytes.*at least 1"),
        (["--upload-retry-attempts", "0"], {}, "--upload-retry-attempts"),
        (["--upload-request-timeout", "0"], {}, "--upload-request-timeout"),
        ([], {"MAPPER_POD_CIDRS": "10.0.0.0/8,bogus"}, "MAPPER_POD_CIDRS.*'bogus'"),
        (["--listen-address", "localhost"], {}, "--listen-address.*host:port"),
        (["--anonymize=true"], {}, "--anonymize-key-file"),
        ([], {"NETWORK_MAPPER_ANONYMIZE": "true"}, "NETWORK_MAPPER_ANONYMIZE_KEY_FILE"),
        ([], {"MAPPER_EXCLUDE_NAMESPACES": "istio-system kube-system"}, "MAPPER_EXCLUDE_NAMESPACES"),
        (["--workload-name-annotation", "no spaces/x"], {}, "--workload-name-annotation"),
        ([], {"MAPPER_OTEL_METRIC_NAME": "a-b"}, "MAPPER_OTEL_METRIC_NAME"),
        (["--otel-endpoint", "localhost:4318"], {}, "--otel-endpoint"),
    ],
)
def test_bad_value_names_its_source(argv: list[str], environ: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load(MapperSettings, argv, environ)


def test_anonymize_with_a_key_file_loads() -> None:
    settings = load(MapperSettings, ["--anonymize=true", "--anonymize-key-file", "/etc/key"], {})
    assert settings.anonymization == AnonymizationSettings(enabled=True, key_file="/etc/key")


def test_groups_built_directly_are_checked_too() -> None:
    with pytest.raises(SettingsError, match="--queue-batches"):
        ApiSettings(queue_batches=0)
    with pytest.raises(SettingsError, match="--upload-interval"):
        UploadSettings(interval=0)
    with pytest.raises(SettingsError, match="--pod-cidrs"):
        ClusterSettings(pod_cidrs=("nope",))
    with pytest.raises(SettingsError, match="--anonymize-key-file"):
        AnonymizationSettings(enabled=True)
    with pytest.raises(SettingsError, match="--report-interval"):
        SnifferSettings(report_interval=0)
    with pytest.raises(SettingsError, match="--exclude-namespaces"):
        RecordingSettings(exclude_namespaces=("UPPER",))
    with pytest.raises(SettingsError, match="--otel-endpoint"):
        OtelSettings(endpoint="")


def test_sniffer_settings_load_and_check() -> None:
    env = {"OTTERIZE_MAPPER_API": "http://m:9090/query", "SNIFFER_MAX_PENDING_PAIRS": "10"}
    settings = load(SnifferSettings, ["--report-interval", "2"], env)
    assert (settings.mapper_url, settings.max_pending_pairs, settings.report_interval) == (
        "http://m:9090/query",
        10,
        2.0,
    )
    with pytest.raises(SettingsError, match="SNIFFER_HEALTH_ADDRESS"):
        load(SnifferSettings, [], {"SNIFFER_HEALTH_ADDRESS": "nowhere"})
    with pytest.raises(SettingsError, match="--max-pending-pairs"):
        load(SnifferSettings, ["--max-pending-pairs", "0"], {})


def test_settings_are_frozen_and_slotted() -> None:
    settings = MapperSettings()
    for group in (settings, *(getattr(settings, f.name) for f in dataclasses.fields(settings))):
        assert hasattr(type(group), "__slots__"), type(group)
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(group, dataclasses.fields(group)[0].name, None)


def test_help_documents_every_flag_with_its_variable_and_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        load(MapperSettings, ["--help"], {}, prog="network-mapper-mapper")
    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for flag, (env, group, field, _) in MAPPER_FLAGS.items():
        default = getattr(getattr(MapperSettings(), group), field)
        default_text = repr(",".join(default) if isinstance(default, tuple) else default)
        if isinstance(default, Path):
            default_text = repr(str(default))
        assert re.search(rf"{flag} \S+ .*?\(env {env}; default {re.escape(default_text)}\)", shown), flag
    for group in ("api", "store", "upload", "anonymization", "telemetry", "cluster", "recording", "otel"):
        assert f" {group}: " in shown, group


def test_the_mapper_command_help_shows_the_new_settings(capsys: pytest.CaptureFixture[str]) -> None:
    from agent.mapper.__main__ import main

    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert shown.startswith("usage: network-mapper-mapper")
    for env in (
        "MAPPER_EXCLUDE_NAMESPACES",
        "MAPPER_INTERNET_TRAFFIC_REPORTING",
        "MAPPER_WORKLOAD_NAME_ANNOTATION",
        "MAPPER_OTEL_ENABLED",
        "MAPPER_OTEL_METRIC_NAME",
        "MAPPER_OTEL_ENDPOINT",
        "MAPPER_OTEL_EXPORT_INTERVAL",
    ):
        assert f"(env {env}; default" in shown, env


def variables(*templates: str) -> set[str]:
    found: set[str] = set()
    for name in templates:
        found |= set(re.findall(r"- name: ([A-Z][A-Z0-9_]+)", (CHART / name).read_text()))
    return found


def known(cls: type[Any]) -> set[str]:
    envs: set[str] = set()
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(f.default_factory):  # type: ignore[misc]
            envs |= known(f.default_factory)  # type: ignore[arg-type, misc]
        else:
            envs.add(f.metadata["env"])
    return envs


def test_every_variable_the_chart_sets_is_a_setting() -> None:
    helpers = {"OTTERIZE_TELEMETRY_ENABLED", "NETWORK_MAPPER_TOKEN"}  # from _helpers.tpl, on every container
    mapper = variables("mapper-deployment.yaml") | helpers
    assert "MAPPER_POD_CIDRS" in mapper and "NETWORK_MAPPER_ANONYMIZE_KEY_FILE" in mapper
    assert mapper <= known(MapperSettings), mapper - known(MapperSettings)
    sniffer = variables("sniffer-daemonset.yaml") | {"NETWORK_MAPPER_TOKEN"}
    assert "SNIFFER_PROC_ROOT" in sniffer
    assert sniffer <= known(SnifferSettings), sniffer - known(SnifferSettings)
