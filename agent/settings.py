"""Typed settings for every component, built once from flags and environment, then passed down.

Each component has one frozen dataclass; the mapper's is grouped by concern (``api``, ``store``,
``upload``, ``anonymization``, ``telemetry``, ``cluster``), each group a frozen dataclass of its
own that the part it configures receives. A field's metadata names its flag, environment variable
and help text; :func:`load` builds one flat ``argparse`` parser from the (nested) dataclass, so
``--help`` documents every setting with its variable and default, grouped as the dataclass is.
Precedence: flag > environment > default. The environment is passed in (``main`` hands over
``os.environ``), so no module reads ``os.environ`` and tests pass a plain dict.

Values are checked here, once: a setting's parser and check run in :func:`load`, which raises
:class:`SettingsError` naming the flag or variable the bad value came from; the same checks run
again when a settings object is built directly (tests, benches), so a settings object is always
valid and the components only wire.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

T = TypeVar("T")
Check = Callable[[Any], None]  # raises ValueError (the message says what is wrong) on a bad value


class SettingsError(ValueError):
    """A setting's value (flag or environment) could not be parsed, or is not allowed."""


def setting(default: Any, env: str, help: str, *, flag: str = "", check: Check | None = None) -> Any:
    """A settings field: its default, environment variable, help, flag (``--<field-name>`` unless
    given, without the dashes) and the check its value must pass."""
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


def parse_list(text: str) -> tuple[str, ...]:
    """A comma-separated list (blanks around items and empty items dropped)."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


# -- checks ------------------------------------------------------------------------------------


def positive(value: float) -> None:
    if not value > 0:
        raise ValueError(f"must be more than 0, not {value}")


def at_least_one(value: int) -> None:
    if value < 1:
        raise ValueError(f"must be at least 1, not {value}")


def address(value: str) -> None:
    parse_address(value)


def cidrs(value: tuple[str, ...]) -> None:
    for cidr in value:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ValueError(f"not a CIDR: {cidr!r}") from None


_PARSERS: dict[Any, Callable[[str], Any]] = {
    bool: parse_bool,
    int: int,
    float: float,
    str: str,
    Path: Path,
    tuple[str, ...]: parse_list,
}


def _flag(f: dataclasses.Field[Any]) -> str:
    return "--" + (f.metadata.get("flag") or f.name).replace("_", "-")


def _source(f: dataclasses.Field[Any]) -> str:
    return f"{_flag(f)} (env {f.metadata['env']})"


def check_fields(obj: Any) -> None:
    """Run the checks of ``obj``'s own fields; SettingsError names the flag and variable."""
    for f in dataclasses.fields(obj):
        check = f.metadata.get("check")
        if check is not None:
            try:
                check(getattr(obj, f.name))
            except ValueError as exc:
                raise SettingsError(f"{_source(f)}: {exc}") from exc


# -- the sniffer -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class SnifferSettings:
    """The node agent: capture DNS and TCP SYNs, scan sockets, report to the mapper."""

    mapper_url: str = setting(
        "http://network-mapper:9090/query", "OTTERIZE_MAPPER_API", "the mapper's GraphQL endpoint"
    )
    token: str = setting("", "NETWORK_MAPPER_TOKEN", "agent token sent as 'Authorization: Bearer'")
    report_interval: float = setting(
        1.0, "SNIFFER_REPORT_INTERVAL", "seconds between reports to the mapper", check=positive
    )
    socket_scan_interval: float = setting(
        5.0, "SNIFFER_SOCKET_SCAN_INTERVAL", "seconds between /proc scans", check=positive
    )
    max_pending_pairs: int = setting(
        100_000,
        "SNIFFER_MAX_PENDING_PAIRS",
        "bound on distinct (source, destination) pairs held between reports",
        check=at_least_one,
    )
    proc_root: Path = setting(Path("/proc"), "SNIFFER_PROC_ROOT", "the host's /proc (hostPID)")
    health_address: str = setting(
        "0.0.0.0:9091", "SNIFFER_HEALTH_ADDRESS", "host:port for /healthz and /metrics", check=address
    )
    request_timeout: float = setting(
        10.0, "SNIFFER_REQUEST_TIMEOUT", "seconds per request to the mapper", check=positive
    )

    def __post_init__(self) -> None:
        check_fields(self)


# -- the mapper, by concern --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ApiSettings:
    """The GraphQL API (agent.mapper.api): where it listens, who may report, how much it takes."""

    listen_address: str = setting(
        "0.0.0.0:9090", "MAPPER_LISTEN_ADDRESS", "host:port of the GraphQL API", check=address
    )
    token: str = setting("", "NETWORK_MAPPER_TOKEN", "agent token that report mutations must carry")
    open_queries: bool = setting(True, "MAPPER_OPEN_QUERIES", "serve queries without the token")
    max_body_bytes: int = setting(
        16 << 20, "MAPPER_MAX_BODY_BYTES", "largest request body accepted", check=at_least_one
    )
    queue_batches: int = setting(
        256, "MAPPER_QUEUE_BATCHES", "report batches waiting for resolution", check=at_least_one
    )

    def __post_init__(self) -> None:
        check_fields(self)

    @property
    def address(self) -> tuple[str, int]:
        """``listen_address`` as (host, port)."""
        return parse_address(self.listen_address)


@dataclasses.dataclass(frozen=True, slots=True)
class StoreSettings:
    """The edge store (agent.mapper.store)."""

    data_dir: Path = setting(
        Path("/var/lib/network-mapper"), "MAPPER_DATA_DIR", "where the edge store (SQLite) lives"
    )


@dataclasses.dataclass(frozen=True, slots=True)
class UploadSettings:
    """Uploads of edges to the cloud backend (agent.mapper.uploader)."""

    cloud_url: str = setting(
        "", "NETWORK_MAPPER_CLOUD_URL", "the cloud backend's base URL (empty: no upload)"
    )
    cloud_token: str = setting("", "NETWORK_MAPPER_CLOUD_TOKEN", "this cluster's ingest token for the cloud")
    interval: float = setting(
        60.0,
        "NETWORK_MAPPER_UPLOAD_INTERVAL",
        "seconds between uploads of changed edges",
        flag="upload_interval",
        check=positive,
    )
    granularity: float = setting(
        3600.0,
        "NETWORK_MAPPER_UPLOAD_GRANULARITY",
        "seconds within which a seen edge counts as live: a live edge is uploaded once and kept current"
        " by one heartbeat per this period; an edge idle for longer is re-sent once, as not live",
        flag="upload_granularity",
        check=positive,
    )
    retry_attempts: int = setting(
        5,
        "NETWORK_MAPPER_UPLOAD_RETRY_ATTEMPTS",
        "attempts per batch while the cloud is unavailable, before the cycle gives up until the next",
        flag="upload_retry_attempts",
        check=at_least_one,
    )
    retry_initial: float = setting(
        1.0,
        "NETWORK_MAPPER_UPLOAD_RETRY_INITIAL",
        "seconds before the first retry, doubling after each (plus up to as much again at random)",
        flag="upload_retry_initial",
        check=positive,
    )
    retry_max: float = setting(
        30.0,
        "NETWORK_MAPPER_UPLOAD_RETRY_MAX",
        "most seconds between two retries",
        flag="upload_retry_max",
        check=positive,
    )
    request_timeout: float = setting(
        30.0,
        "NETWORK_MAPPER_UPLOAD_REQUEST_TIMEOUT",
        "seconds per request to the cloud",
        flag="upload_request_timeout",
        check=positive,
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclasses.dataclass(frozen=True, slots=True)
class AnonymizationSettings:
    """Anonymized uploads (agent.anonymize): names replaced by keyed hashes before they leave."""

    enabled: bool = setting(
        False,
        "NETWORK_MAPPER_ANONYMIZE",
        "upload keyed hashes instead of names and namespaces",
        flag="anonymize",
    )
    key_file: str = setting(
        "",
        "NETWORK_MAPPER_ANONYMIZE_KEY_FILE",
        "file holding the anonymization key (required to anonymize)",
        flag="anonymize_key_file",
    )

    def __post_init__(self) -> None:
        if self.enabled and not self.key_file:
            raise SettingsError(
                "--anonymize (env NETWORK_MAPPER_ANONYMIZE) needs --anonymize-key-file"
                " (env NETWORK_MAPPER_ANONYMIZE_KEY_FILE): a Secret mounted as a file"
            )


@dataclasses.dataclass(frozen=True, slots=True)
class TelemetrySettings:
    """Anonymous usage counts (agent.mapper.telemetry); any of the opt-outs turns them off."""

    enabled: bool = setting(
        True,
        "OTTERIZE_TELEMETRY_ENABLED",
        "send anonymous usage counts (never names)",
        flag="telemetry_enabled",
    )
    url: str = setting(
        "",
        "NETWORK_MAPPER_TELEMETRY_URL",
        "where telemetry goes (empty: the cloud URL)",
        flag="telemetry_url",
    )
    interval: float = setting(
        300.0,
        "NETWORK_MAPPER_TELEMETRY_INTERVAL",
        "seconds between telemetry exports",
        flag="telemetry_interval",
        check=positive,
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclasses.dataclass(frozen=True, slots=True)
class ClusterSettings:
    """The cluster (agent.mapper.kube, agent.mapper.resolver): how to reach it, its names and ranges."""

    kubeconfig: str = setting("", "KUBECONFIG", "kubeconfig file (empty: in-cluster configuration)")
    domain: str = setting(
        "cluster.local", "CLUSTER_DOMAIN", "the cluster's DNS domain", flag="cluster_domain"
    )
    pod_cidrs: tuple[str, ...] = setting(
        (),
        "MAPPER_POD_CIDRS",
        "the cluster's pod CIDRs, comma-separated (e.g. 10.244.0.0/16): unknown IPs in them are"
        " never Internet edges (empty: unknown)",
        check=cidrs,
    )
    service_cidrs: tuple[str, ...] = setting(
        (),
        "MAPPER_SERVICE_CIDRS",
        "the cluster's Service (ClusterIP) CIDRs, comma-separated (e.g. 10.96.0.0/12): unknown IPs"
        " in them are never Internet edges (empty: unknown)",
        check=cidrs,
    )

    def __post_init__(self) -> None:
        check_fields(self)

    @property
    def internal_cidrs(self) -> tuple[str, ...]:
        """The pod and service CIDRs: unknown IPs in them are never Internet edges."""
        return self.pod_cidrs + self.service_cidrs


@dataclasses.dataclass(frozen=True, slots=True)
class MapperSettings:
    """The mapper: cluster state, resolution, the edge store, the GraphQL API, uploads, telemetry."""

    api: ApiSettings = dataclasses.field(default_factory=ApiSettings)
    store: StoreSettings = dataclasses.field(default_factory=StoreSettings)
    upload: UploadSettings = dataclasses.field(default_factory=UploadSettings)
    anonymization: AnonymizationSettings = dataclasses.field(default_factory=AnonymizationSettings)
    telemetry: TelemetrySettings = dataclasses.field(default_factory=TelemetrySettings)
    cluster: ClusterSettings = dataclasses.field(default_factory=ClusterSettings)


# -- loading -----------------------------------------------------------------------------------


def _is_group(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


Leaf = tuple[tuple[str, ...], dataclasses.Field[Any], Any, type[Any]]  # (path, field, type, owner)


def _leaves(cls: type[Any], path: tuple[str, ...] = ()) -> Iterator[Leaf]:
    """(path, field, type, the dataclass declaring it) of every setting of ``cls``, groups
    flattened, in declaration order."""
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if _is_group(hints[f.name]):
            yield from _leaves(hints[f.name], (*path, f.name))
        else:
            yield (*path, f.name), f, hints[f.name], cls


def _shown(default: Any) -> str:
    if isinstance(default, tuple):
        return repr(",".join(default))
    return repr(str(default) if isinstance(default, Path) else default)


def _build(cls: type[T], values: Mapping[tuple[str, ...], Any], path: tuple[str, ...] = ()) -> T:
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        key = (*path, f.name)
        if _is_group(hints[f.name]):
            kwargs[f.name] = _build(hints[f.name], values, key)
        elif key in values:
            kwargs[f.name] = values[key]
    return cls(**kwargs)


def load(cls: type[T], argv: Sequence[str] | None, environ: Mapping[str, str], prog: str | None = None) -> T:
    """Build ``cls`` from flags (``argv``) over environment over defaults.

    Raises :class:`SettingsError` naming the flag or variable whose value is bad.
    """
    parser = argparse.ArgumentParser(prog=prog, description=(cls.__doc__ or "").strip() or None)
    leaves = list(_leaves(cls))
    groups: dict[tuple[str, ...], Any] = {}
    for path, f, _, owner_cls in leaves:
        owner = path[:-1]
        if owner and owner not in groups:
            groups[owner] = parser.add_argument_group(
                ".".join(owner), (owner_cls.__doc__ or "").strip() or None
            )
        env = f.metadata["env"]
        (groups[owner] if owner else parser).add_argument(
            _flag(f),
            dest=".".join(path),
            default=None,
            metavar=(f.metadata.get("flag") or f.name).upper(),
            help=f"{f.metadata.get('help', '')} (env {env}; default {_shown(f.default)})",
        )
    # None means the process arguments, as with argparse itself.
    args = vars(parser.parse_args(None if argv is None else list(argv)))
    values: dict[tuple[str, ...], Any] = {}
    for path, f, hint, _ in leaves:
        env = f.metadata["env"]
        raw, source = args[".".join(path)], _flag(f)
        if raw is None and env in environ:
            raw, source = environ[env], env
        if raw is None:
            continue
        try:
            value = _PARSERS[hint](raw)
            if f.metadata.get("check") is not None:
                f.metadata["check"](value)
        except (ValueError, KeyError) as exc:
            raise SettingsError(f"{source}: {exc}") from exc
        values[path] = value
    return _build(cls, values)
