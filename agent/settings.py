"""Typed settings for every component, built once from flags and environment, then passed down.

Each component has one frozen dataclass: the producers' are here, the mapper's (groups by concern:
``api``, ``store``, ``upload``, ``anonymization``, ``telemetry``, ``cluster``, ``recording``,
``otel``, each handed to the part it configures) in :mod:`agent.mapper.settings`, AWS
visibility's in :mod:`agent.aws.settings`; all are built with the machinery here. A field
names its environment variable and help; its flag is the variable without the product's prefix
(``NETWORK_MAPPER_UPLOAD_INTERVAL`` → ``--upload-interval``) unless given. :func:`load` builds
the ``argparse`` parser from the dataclass, so ``--help`` documents every setting with its
variable and default. Precedence: flag > environment > default. The environment is passed in
(``main`` hands over ``os.environ``): tests pass a plain dict. Values are checked here, at load
and whenever a settings object is built (tests, benches), so the components only wire; a bad
value raises :class:`SettingsError` naming its flag or variable.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

T = TypeVar("T")
Check = Callable[[Any], object]  # raises ValueError (the message says what is wrong) on a bad value


class SettingsError(ValueError):
    """A setting's value (flag or environment) could not be parsed, or is not allowed."""


def setting(default: Any, env: str, help: str, *, flag: str = "", check: Check | None = None) -> Any:
    """A settings field; ``flag`` (without dashes) when not the variable's, ``check`` besides the type's."""
    return dataclasses.field(
        default=default, metadata={"env": env, "help": help, "flag": flag, "check": check}
    )


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


_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_ANNOTATION_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
# A name both an OpenTelemetry instrument and a Prometheus metric may have (OTel allows . - /,
# Prometheus allows :, neither allows the other's).
_METRIC_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,254}")


def namespaces(value: tuple[str, ...]) -> None:
    for name in value:
        if not _DNS_LABEL.fullmatch(name):
            raise ValueError(f"not a namespace name (a DNS label): {name!r}")


def annotation_key(value: str) -> None:
    """A Kubernetes annotation key: ``[prefix/]name``, the prefix a DNS subdomain."""
    prefix, slash, name = value.rpartition("/")
    if not _ANNOTATION_NAME.fullmatch(name) or (slash and not _DNS_SUBDOMAIN.fullmatch(prefix)):
        raise ValueError(f"not an annotation key ([prefix/]name): {value!r}")


def metric_name(value: str) -> None:
    if not _METRIC_NAME.fullmatch(value):
        raise ValueError(f"not a metric name (a letter, then letters, digits or _): {value!r}")


def http_url(value: str) -> None:
    scheme, sep, rest = value.partition("://")
    if scheme not in ("http", "https") or not sep or not rest.strip("/"):
        raise ValueError(f"not an http(s) URL: {value!r}")


def cidrs(value: tuple[str, ...]) -> None:
    for cidr in value:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ValueError(f"not a CIDR: {cidr!r}") from None


# A field's type says how its text is parsed.
_PARSERS: dict[Any, Callable[[str], Any]] = {
    bool: parse_bool,
    int: int,
    float: float,
    str: str,
    Path: Path,
    tuple[str, ...]: lambda text: tuple(item.strip() for item in text.split(",") if item.strip()),
}


def _check(f: dataclasses.Field[Any], hint: Any, value: Any) -> None:
    """Every number (an interval, a timeout, a bound) is positive; a field may name a check of its own."""
    if hint in (int, float) and not value > 0:
        raise ValueError(f"must be {'at least 1' if hint is int else 'more than 0'}, not {value}")
    if f.metadata["check"] is not None:
        f.metadata["check"](value)


def _flag(f: dataclasses.Field[Any]) -> str:
    """``--`` + the field's flag, or its variable without the product's prefix, in lower case."""
    name = f.metadata["flag"] or re.sub(r"^(NETWORK_MAPPER|MAPPER|SNIFFER|OTTERIZE)_", "", f.metadata["env"])
    return "--" + name.lower().replace("_", "-")


class CheckedSettings:
    """Runs the checks of a settings dataclass's fields whenever one is built."""

    __slots__ = ()

    def __post_init__(self) -> None:
        hints = get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            try:
                _check(f, hints[f.name], getattr(self, f.name))
            except ValueError as exc:
                raise SettingsError(f"{_flag(f)} (env {f.metadata['env']}): {exc}") from exc


def mapper_url_setting() -> Any:
    """The producers' (the sniffer's, the watchers') mapper endpoint: one variable for all."""
    return setting(
        "http://network-mapper:9090/query",
        "OTTERIZE_MAPPER_API",
        "the mapper's GraphQL endpoint",
        flag="mapper_url",
    )


def token_setting() -> Any:
    return setting("", "NETWORK_MAPPER_TOKEN", "agent token sent as 'Authorization: Bearer'")


def kubeconfig_setting() -> Any:
    return setting("", "KUBECONFIG", "kubeconfig file (empty: in-cluster configuration)")


def node_name_setting() -> Any:
    """The node the producer runs on (the chart sets it from the downward API's ``spec.nodeName``)."""
    return setting("", "NODE_NAME", "the node this pod runs on, for status reports (empty: unknown)")


def pod_name_setting() -> Any:
    """The producer's pod (the chart sets it from ``metadata.name``): the instance in status reports."""
    return setting("", "POD_NAME", "this pod's name, for status reports (empty: the host name)")


def status_interval_setting() -> Any:
    return setting(30.0, "STATUS_INTERVAL", "seconds between status reports to the mapper")


@dataclasses.dataclass(frozen=True, slots=True)
class SnifferSettings(CheckedSettings):
    """The node agent: capture DNS and TCP SYNs, scan sockets, report to the mapper."""

    mapper_url: str = mapper_url_setting()
    token: str = token_setting()
    node_name: str = node_name_setting()
    pod_name: str = pod_name_setting()
    status_interval: float = status_interval_setting()
    report_interval: float = setting(1.0, "SNIFFER_REPORT_INTERVAL", "seconds between reports to the mapper")
    socket_scan_interval: float = setting(5.0, "SNIFFER_SOCKET_SCAN_INTERVAL", "seconds between /proc scans")
    max_pending_pairs: int = setting(
        100_000,
        "SNIFFER_MAX_PENDING_PAIRS",
        "bound on distinct (source, destination) pairs held between reports",
    )
    proc_root: Path = setting(Path("/proc"), "SNIFFER_PROC_ROOT", "the host's /proc (hostPID)")
    health_address: str = setting(
        "0.0.0.0:9091", "SNIFFER_HEALTH_ADDRESS", "host:port for /healthz and /metrics", check=parse_address
    )
    request_timeout: float = setting(10.0, "SNIFFER_REQUEST_TIMEOUT", "seconds per request to the mapper")


def server_item(item: str) -> tuple[str, str, str]:
    """A ``--kafka-servers`` item ``POD.NAMESPACE[:CONTAINER]`` → (pod, namespace, container or
    ""): the one reading of it, for this check and for the watcher. ValueError when it is not one."""
    server, colon, container = item.partition(":")
    pod, dot, namespace = server.rpartition(".")
    if not dot or not pod or not namespace or (colon and not container):
        raise ValueError(f"not a POD.NAMESPACE[:CONTAINER] item: {item!r}")
    return pod, namespace, container


def log_file_item(item: str) -> tuple[str, str, str]:
    """A ``--log-files`` item ``PATH=POD.NAMESPACE`` → (path, pod, namespace). ValueError when it
    is not one."""
    path, sep, server = item.rpartition("=")
    if not sep or not path or ":" in server:
        raise ValueError(f"not a PATH=POD.NAMESPACE item: {item!r}")
    pod, namespace, _ = server_item(server)
    return path, pod, namespace


def server_patterns(value: tuple[str, ...]) -> None:
    for item in value:
        server_item(item)


def log_file_items(value: tuple[str, ...]) -> None:
    for item in value:
        log_file_item(item)


@dataclasses.dataclass(frozen=True, slots=True)
class KafkaWatcherSettings(CheckedSettings):
    """The Kafka watcher: read Kafka's authorizer log lines (pod logs, files), report topic accesses."""

    mapper_url: str = mapper_url_setting()
    token: str = token_setting()
    node_name: str = node_name_setting()
    pod_name: str = pod_name_setting()
    status_interval: float = status_interval_setting()
    kafka_servers: tuple[str, ...] = setting(
        (),
        "OTTERIZE_KAFKA_SERVERS",
        "Kafka server pods whose logs to read, comma-separated POD.NAMESPACE[:CONTAINER] items (globs"
        " allowed: kafka-*.kafka; the container defaults to the pod's first)",
        check=server_patterns,
    )
    log_files: tuple[str, ...] = setting(
        (),
        "KAFKA_WATCHER_LOG_FILES",
        "authorizer log files to tail, comma-separated PATH=POD.NAMESPACE items (the broker pod"
        " that writes the file)",
        check=log_file_items,
        flag="log_files",
    )
    kubeconfig: str = kubeconfig_setting()
    poll_interval: float = setting(
        5.0, "KAFKA_WATCHER_POLL_INTERVAL", "seconds between reads of the logs", flag="poll_interval"
    )
    report_interval: float = setting(
        10.0, "KAFKA_WATCHER_REPORT_INTERVAL", "seconds between reports to the mapper", flag="report_interval"
    )
    max_pending: int = setting(
        100_000,
        "KAFKA_WATCHER_MAX_PENDING",
        "bound on distinct (client IP, server pod, topic, operation) accesses held between reports",
        flag="max_pending",
    )
    request_timeout: float = setting(
        10.0, "KAFKA_WATCHER_REQUEST_TIMEOUT", "seconds per request", flag="request_timeout"
    )
    health_address: str = setting(
        "0.0.0.0:9092",
        "KAFKA_WATCHER_HEALTH_ADDRESS",
        "host:port for /healthz and /metrics",
        check=parse_address,
        flag="health_address",
    )


@dataclasses.dataclass(frozen=True, slots=True)
class IstioWatcherSettings(CheckedSettings):
    """The Istio watcher: scrape sidecars' istio_requests_total, report HTTP paths and methods."""

    mapper_url: str = mapper_url_setting()
    token: str = token_setting()
    node_name: str = node_name_setting()
    pod_name: str = pod_name_setting()
    status_interval: float = status_interval_setting()
    kubeconfig: str = kubeconfig_setting()
    namespaces: tuple[str, ...] = setting(
        (),
        "ISTIO_WATCHER_NAMESPACES",
        "namespaces to watch, comma-separated (empty: all)",
        flag="namespaces",
    )
    metrics_port: int = setting(
        15090, "ISTIO_WATCHER_METRICS_PORT", "the sidecars' Prometheus port", flag="metrics_port"
    )
    scrape_interval: float = setting(
        10.0, "ISTIO_WATCHER_SCRAPE_INTERVAL", "seconds between scrapes", flag="scrape_interval"
    )
    scrape_timeout: float = setting(
        3.0,
        "ISTIO_WATCHER_SCRAPE_TIMEOUT",
        "seconds per sidecar scrape, connecting and reading included",
        flag="scrape_timeout",
    )
    max_concurrent_scrapes: int = setting(
        16, "ISTIO_WATCHER_MAX_CONCURRENT_SCRAPES", "sidecars scraped at once", flag="max_concurrent_scrapes"
    )
    max_series_per_pod: int = setting(
        5_000,
        "ISTIO_WATCHER_MAX_SERIES_PER_POD",
        "istio_requests_total series kept per sidecar (the excess is counted and skipped)",
        flag="max_series_per_pod",
    )
    max_scrape_bytes: int = setting(
        64 << 20,
        "ISTIO_WATCHER_MAX_SCRAPE_BYTES",
        "largest sidecar scrape read (a larger one counts as a failed scrape)",
        flag="max_scrape_bytes",
    )
    path_templates: bool = setting(
        True,
        "ISTIO_WATCHER_PATH_TEMPLATES",
        "template numeric, UUID and hash-like path segments (/api/orders/{id}); false keeps paths as seen",
        flag="path_templates",
    )
    report_interval: float = setting(
        10.0,
        "ISTIO_WATCHER_REPORT_INTERVAL",
        "seconds between reports to the mapper",
        flag="report_interval",
    )
    max_pending: int = setting(
        100_000,
        "ISTIO_WATCHER_MAX_PENDING",
        "bound on distinct (source, destination, path, method) requests held between reports",
        flag="max_pending",
    )
    request_timeout: float = setting(
        10.0,
        "ISTIO_WATCHER_REQUEST_TIMEOUT",
        "seconds per request to the mapper or the Kubernetes API",
        flag="request_timeout",
    )
    health_address: str = setting(
        "0.0.0.0:9093",
        "ISTIO_WATCHER_HEALTH_ADDRESS",
        "host:port for /healthz and /metrics",
        check=parse_address,
        flag="health_address",
    )


def _shown(default: Any) -> str:
    if isinstance(default, tuple):
        return repr(",".join(default))
    return repr(str(default) if isinstance(default, Path) else default)


def load(cls: type[T], argv: Sequence[str] | None, environ: Mapping[str, str], prog: str | None = None) -> T:
    """Build ``cls`` (a settings dataclass, or one made of such groups) from flags (``argv``) over
    environment over defaults; :class:`SettingsError` names the flag or variable of a bad value."""
    parser = argparse.ArgumentParser(prog=prog, description=(cls.__doc__ or "").strip() or None)
    hints = get_type_hints(cls)
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    names = [f.name for f in fields if dataclasses.is_dataclass(hints[f.name])]
    groups: dict[str, Any] = {name: hints[name] for name in names} or {"": cls}
    for name, group in groups.items():
        arguments = parser.add_argument_group(name, (group.__doc__ or "").strip()) if name else parser
        for f in dataclasses.fields(group):
            arguments.add_argument(
                _flag(f),
                dest=f"{name}.{f.name}",
                default=None,
                metavar=_flag(f)[2:].upper().replace("-", "_"),
                help=f"{f.metadata['help']} (env {f.metadata['env']}; default {_shown(f.default)})",
            )
    # None means the process arguments, as with argparse itself.
    args = vars(parser.parse_args(None if argv is None else list(argv)))
    built: dict[str, Any] = {}
    for name, group in groups.items():
        values: dict[str, Any] = {}
        types = get_type_hints(group)
        for f in dataclasses.fields(group):
            raw, source, env = args[f"{name}.{f.name}"], _flag(f), f.metadata["env"]
            if raw is None and env in environ:
                raw, source = environ[env], env
            if raw is None:
                continue
            try:
                values[f.name] = _PARSERS[types[f.name]](raw)
                _check(f, types[f.name], values[f.name])
            except (ValueError, KeyError) as exc:
                raise SettingsError(f"{source}: {exc}") from exc
        built[name] = group(**values)
    return cls(**built) if names else built[""]
