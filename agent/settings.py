"""Typed settings for every component, built once from flags and environment, then passed down.

Each component has one frozen dataclass, grouped by concern. A field's metadata names its
environment variable and help text; :func:`load` builds an ``argparse`` parser from the
dataclass, so ``--help`` documents every setting with its variable and default. Precedence:
flag > environment > default. The environment is passed in (``main`` hands over
``os.environ``), so no module reads ``os.environ`` and tests pass a plain dict.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

T = TypeVar("T")


class SettingsError(ValueError):
    """A setting's value (flag or environment) could not be parsed."""


def setting(default: Any, env: str, help: str) -> Any:
    return dataclasses.field(default=default, metadata={"env": env, "help": help})


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"not a boolean: {text!r} (use true or false)")


def parse_address(address: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` → ``(host, port)``; raises ValueError when malformed."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"not a host:port address: {address!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "0.0.0.0", int(port_text)


_PARSERS: dict[Any, Any] = {bool: parse_bool, int: int, float: float, str: str, Path: Path}


@dataclasses.dataclass(frozen=True, slots=True)
class TelemetrySettings:
    enabled: bool = setting(True, "OTTERIZE_TELEMETRY_ENABLED", "send anonymous usage counts (never names)")


@dataclasses.dataclass(frozen=True, slots=True)
class MapperClientSettings:
    """How producers and the CLI reach the mapper's API."""

    mapper_url: str = setting(
        "http://network-mapper:9090/query", "OTTERIZE_MAPPER_API", "the mapper's GraphQL endpoint"
    )
    token: str = setting(
        "", "NETWORK_MAPPER_TOKEN", "agent token sent as 'Authorization: Bearer' on mutations"
    )
    timeout: float = setting(10.0, "NETWORK_MAPPER_TIMEOUT", "seconds per request to the mapper")


@dataclasses.dataclass(frozen=True, slots=True)
class SnifferSettings:
    """The node agent: capture DNS and TCP SYNs, scan sockets, report to the mapper."""

    mapper_url: str = setting(
        "http://network-mapper:9090/query", "OTTERIZE_MAPPER_API", "the mapper's GraphQL endpoint"
    )
    token: str = setting("", "NETWORK_MAPPER_TOKEN", "agent token sent as 'Authorization: Bearer'")
    report_interval: float = setting(1.0, "SNIFFER_REPORT_INTERVAL", "seconds between reports to the mapper")
    socket_scan_interval: float = setting(5.0, "SNIFFER_SOCKET_SCAN_INTERVAL", "seconds between /proc scans")
    max_pending_pairs: int = setting(
        100_000,
        "SNIFFER_MAX_PENDING_PAIRS",
        "bound on distinct (source, destination) pairs held between reports",
    )
    proc_root: Path = setting(Path("/proc"), "SNIFFER_PROC_ROOT", "the host's /proc (hostPID)")
    health_address: str = setting(
        "0.0.0.0:9091", "SNIFFER_HEALTH_ADDRESS", "host:port for /healthz and /metrics"
    )
    request_timeout: float = setting(10.0, "SNIFFER_REQUEST_TIMEOUT", "seconds per request to the mapper")


@dataclasses.dataclass(frozen=True, slots=True)
class MapperSettings:
    """The mapper: cluster state, resolution, the edge store and the GraphQL API."""

    listen_address: str = setting("0.0.0.0:9090", "MAPPER_LISTEN_ADDRESS", "host:port of the GraphQL API")
    data_dir: Path = setting(
        Path("/var/lib/network-mapper"), "MAPPER_DATA_DIR", "where the edge store (SQLite) lives"
    )
    token: str = setting("", "NETWORK_MAPPER_TOKEN", "agent token that report mutations must carry")
    open_queries: bool = setting(True, "MAPPER_OPEN_QUERIES", "serve queries without the token")
    max_body_bytes: int = setting(16 << 20, "MAPPER_MAX_BODY_BYTES", "largest request body accepted")
    queue_batches: int = setting(256, "MAPPER_QUEUE_BATCHES", "report batches waiting for resolution")
    kubeconfig: str = setting("", "KUBECONFIG", "kubeconfig file (empty: in-cluster configuration)")
    cluster_domain: str = setting("cluster.local", "CLUSTER_DOMAIN", "the cluster's DNS domain")
    pod_cidrs: str = setting(
        "",
        "MAPPER_POD_CIDRS",
        "the cluster's pod CIDRs, comma-separated (e.g. 10.244.0.0/16): unknown IPs in them are"
        " never Internet edges (empty: unknown)",
    )
    service_cidrs: str = setting(
        "",
        "MAPPER_SERVICE_CIDRS",
        "the cluster's Service (ClusterIP) CIDRs, comma-separated (e.g. 10.96.0.0/12): unknown IPs"
        " in them are never Internet edges (empty: unknown)",
    )
    # The cloud: uploads (agent.mapper.uploader), anonymization, telemetry (agent.mapper.telemetry).
    cloud_url: str = setting(
        "", "NETWORK_MAPPER_CLOUD_URL", "the cloud backend's base URL (empty: no upload)"
    )
    cloud_token: str = setting("", "NETWORK_MAPPER_CLOUD_TOKEN", "this cluster's ingest token for the cloud")
    upload_interval: float = setting(
        60.0, "NETWORK_MAPPER_UPLOAD_INTERVAL", "seconds between uploads of changed edges"
    )
    upload_granularity: float = setting(
        3600.0,
        "NETWORK_MAPPER_UPLOAD_GRANULARITY",
        "seconds within which a seen edge counts as live: a live edge is uploaded once and kept current"
        " by one heartbeat per this period; an edge idle for longer is re-sent once, as not live",
    )
    anonymize: bool = setting(
        False, "NETWORK_MAPPER_ANONYMIZE", "upload keyed hashes instead of names and namespaces"
    )
    anonymize_key_file: str = setting(
        "", "NETWORK_MAPPER_ANONYMIZE_KEY_FILE", "file holding the anonymization key (required to anonymize)"
    )
    telemetry_enabled: bool = setting(
        True, "OTTERIZE_TELEMETRY_ENABLED", "send anonymous usage counts (never names)"
    )
    telemetry_url: str = setting(
        "", "NETWORK_MAPPER_TELEMETRY_URL", "where telemetry goes (empty: the cloud URL)"
    )
    telemetry_interval: float = setting(
        300.0, "NETWORK_MAPPER_TELEMETRY_INTERVAL", "seconds between telemetry exports"
    )


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def load(cls: type[T], argv: Sequence[str] | None, environ: Mapping[str, str], prog: str | None = None) -> T:
    """Build ``cls`` from flags (``argv``) over environment over defaults.

    Raises :class:`SettingsError` naming the flag or variable whose value is bad.
    """
    hints = get_type_hints(cls)
    parser = argparse.ArgumentParser(prog=prog, description=(cls.__doc__ or "").strip() or None)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        env = f.metadata.get("env", "")
        parser.add_argument(
            _flag(f.name),
            dest=f.name,
            default=None,
            metavar=f.name.upper(),
            help=f"{f.metadata.get('help', '')} (env {env}; default {f.default!r})",
        )
    # None means the process arguments, as with argparse itself.
    args = vars(parser.parse_args(None if argv is None else list(argv)))
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        env = f.metadata.get("env", "")
        raw, source = args[f.name], _flag(f.name)
        if raw is None and env in environ:
            raw, source = environ[env], env
        if raw is None:
            continue
        try:
            values[f.name] = _PARSERS[hints[f.name]](raw)
        except (ValueError, KeyError) as exc:
            raise SettingsError(f"{source}: {exc}") from exc
    return cls(**values)
