"""The sandbox's cluster DNS server (what CoreDNS is in a real cluster).

Data comes from the sandbox's Kubernetes API server: Services and Pods are listed and then
watched (the real ``kubernetes`` client) into an immutable :class:`ClusterState` snapshot;
the command line adds the names of the fake Internet (``--external``, ``--cname``, and
``--external-suffix`` for every name under a domain, such as ``amazonaws.com``). Data goes
out as DNS answers over UDP and TCP (dnslib) to the pods, whose ``resolv.conf`` points here.

The answer logic, :func:`answer`, is pure (name + state → records), so it is tested
without sockets; :class:`ClusterResolver` adapts it to dnslib and :class:`KubeStateSource`
feeds it. Names outside the cluster that are not configured get NXDOMAIN: the sandbox has
no upstream resolver, on purpose (nothing may leave the machine).
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from dnslib import CNAME, QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError, ReadTimeoutError

from sandbox.programs import stop_on_signals

log = logging.getLogger("sandbox.clusterdns")

CLUSTER_TTL = 5  # what CoreDNS's kubernetes plugin uses: pods see changes within seconds
EXTERNAL_TTL = 30
MAX_CNAME_CHAIN = 8  # like resolvers that give up on long or looping chains

Key = tuple[str, str]  # (namespace, name)


# --- pure part: cluster state and answers -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Service:
    namespace: str
    name: str
    cluster_ip: str | None  # None for a headless service (clusterIP: None)
    selector: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Pod:
    namespace: str
    name: str
    ip: str | None
    labels: Mapping[str, str] = field(default_factory=dict)
    ready: bool = True


@dataclass(frozen=True, slots=True)
class ClusterState:
    """What the DNS server knows about the cluster at one moment. Never mutated."""

    services: Mapping[Key, Service] = field(default_factory=dict)
    pods: Mapping[Key, Pod] = field(default_factory=dict)
    synced: bool = True  # False until the first list of every kind has arrived


@dataclass(frozen=True, slots=True)
class Zone:
    """The configuration: cluster domain and the names of the sandbox's fake Internet.

    ``suffixes`` give every name under a domain (at any depth, and the domain itself) the
    same addresses, as a wildcard record would; exact ``externals`` and ``cnames`` win over
    them, the longest suffix wins among them, and names in the cluster domain never match one.
    """

    cluster_domain: str = "cluster.local"
    externals: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    cnames: Mapping[str, str] = field(default_factory=dict)
    suffixes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_flags(
        cls,
        cluster_domain: str,
        externals: Sequence[str],
        cnames: Sequence[str],
        suffixes: Sequence[str] = (),
    ) -> Zone:
        """Build from ``NAME=IP[,IP...]``, ``NAME=TARGET`` and ``SUFFIX=IP[,IP...]`` flag
        values (each repeatable)."""
        targets = {name: _normalize(value) for name, value in (_split_flag(flag) for flag in cnames)}
        return cls(_normalize(cluster_domain), _address_flags(externals), targets, _address_flags(suffixes))


@dataclass(frozen=True, slots=True)
class Record:
    name: str
    rtype: str  # "A" or "CNAME"
    value: str
    ttl: int


@dataclass(frozen=True, slots=True)
class Answer:
    rcode: str  # "NOERROR", "NXDOMAIN" or "SERVFAIL" (dnslib RCODE names)
    records: tuple[Record, ...] = ()


def answer(qname: str, qtype: str, state: ClusterState, zone: Zone) -> Answer:
    """The answer to one question. ``qtype`` is a type name such as ``"A"`` or ``"AAAA"``.

    CNAMEs are followed to the end of the chain and the whole chain is returned, as a
    recursive resolver does; only A and ANY questions get addresses (the sandbox is IPv4),
    other types for a known name get NOERROR with no records.
    """
    name = _normalize(qname)
    records: list[Record] = []
    seen: set[str] = set()
    while (target := zone.cnames.get(name)) is not None:
        if name in seen or len(seen) >= MAX_CNAME_CHAIN:
            return Answer("SERVFAIL", tuple(records))
        seen.add(name)
        records.append(Record(name, "CNAME", target, EXTERNAL_TTL))
        name = target
    addresses = _addresses(name, state, zone)
    if addresses is None:
        # Before the first list, "unknown" may just mean "not loaded yet": ask to retry.
        rcode = "SERVFAIL" if _in_cluster_domain(name, zone) and not state.synced else "NXDOMAIN"
        return Answer(rcode, tuple(records))
    if qtype in ("A", "ANY"):
        external = name in zone.externals or not _in_cluster_domain(name, zone)
        ttl = EXTERNAL_TTL if external else CLUSTER_TTL
        records.extend(Record(name, "A", ip, ttl) for ip in addresses)
    return Answer("NOERROR", tuple(records))


def _addresses(name: str, state: ClusterState, zone: Zone) -> tuple[str, ...] | None:
    """The IPv4 addresses of a name that is not a CNAME; None if the name does not exist."""
    if name in zone.externals:
        return zone.externals[name]
    for kind, lookup in (("svc", _service_addresses), ("pod", _pod_addresses)):
        labels = name.removesuffix(f".{kind}.{zone.cluster_domain}").split(".")
        if name.endswith(f".{kind}.{zone.cluster_domain}") and len(labels) == 2:
            # <svc>.<ns>.svc.<domain> or <a-b-c-d>.<ns>.pod.<domain>; other shapes do not exist here
            return lookup(labels[0], labels[1], state)
    if _in_cluster_domain(name, zone):
        return None
    return _suffix_addresses(name, zone)


def _suffix_addresses(name: str, zone: Zone) -> tuple[str, ...] | None:
    """The addresses of the longest configured suffix that ``name`` is, or is under."""
    labels = name.split(".")
    for start in range(len(labels)):  # longest candidate first
        addresses = zone.suffixes.get(".".join(labels[start:]))
        if addresses is not None:
            return addresses
    return None


def _in_cluster_domain(name: str, zone: Zone) -> bool:
    return name == zone.cluster_domain or name.endswith("." + zone.cluster_domain)


def _service_addresses(name: str, namespace: str, state: ClusterState) -> tuple[str, ...] | None:
    service = state.services.get((namespace, name))
    if service is None:
        return None
    if service.cluster_ip:
        return (service.cluster_ip,)
    return _headless_addresses(service, state)


def _pod_addresses(dashed_ip: str, namespace: str, state: ClusterState) -> tuple[str, ...] | None:
    ip = dashed_ip.replace("-", ".")
    # "pods verified" mode: only IPs of pods that exist in that namespace.
    if any(pod.ip == ip and pod.namespace == namespace for pod in state.pods.values()):
        return (ip,)
    return None


def _headless_addresses(service: Service, state: ClusterState) -> tuple[str, ...]:
    """Ready pods selected by a headless service: what its Endpoints would list."""
    if not service.selector:
        return ()  # no selector: endpoints are managed by hand, and the sandbox has none
    return tuple(
        sorted(
            {
                pod.ip
                for pod in state.pods.values()
                if pod.namespace == service.namespace
                and pod.ip
                and pod.ready
                and all(pod.labels.get(k) == v for k, v in service.selector.items())
            },
            key=ipaddress.IPv4Address,
        )
    )


def _normalize(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _address_flags(flags: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """``NAME=IP[,IP...]`` values → name → addresses (a name given twice gets both lists)."""
    addresses: dict[str, tuple[str, ...]] = {}
    for name, value in (_split_flag(flag) for flag in flags):
        ips = tuple(str(ipaddress.IPv4Address(ip.strip())) for ip in value.split(","))
        addresses[name] = addresses.get(name, ()) + ips
    return addresses


def _split_flag(flag: str) -> tuple[str, str]:
    name, sep, value = flag.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise ValueError(f"expected NAME=VALUE, got {flag!r}")
    return _normalize(name), value.strip()


# --- I/O: dnslib server --------------------------------------------------------------------


class ClusterResolver(BaseResolver):  # type: ignore[misc]  # dnslib is untyped
    """dnslib resolver: asks :func:`answer` with the current state snapshot."""

    def __init__(self, zone: Zone, state: Callable[[], ClusterState]) -> None:
        self._zone = zone
        self._state = state

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        if not request.questions:
            reply.header.rcode = RCODE.FORMERR
            return reply
        question = request.q
        qname, qtype = str(question.qname), QTYPE.get(question.qtype, str(question.qtype))
        result = answer(qname, qtype, self._state(), self._zone)
        reply.header.rcode = getattr(RCODE, result.rcode)
        for record in result.records:
            # Echo the question's spelling for its own records (0x20-style clients compare it).
            owner = qname if record.name == _normalize(qname) else record.name
            rdata = A(record.value) if record.rtype == "A" else CNAME(record.value)
            reply.add_answer(RR(owner, getattr(QTYPE, record.rtype), rdata=rdata, ttl=record.ttl))
        log.debug(
            "%s %s %s from %s -> %s %s",
            handler.protocol,
            qtype,
            qname,
            handler.client_address[0],
            result.rcode,
            " ".join(f"{r.rtype}={r.value}" for r in result.records) or "-",
        )
        return reply


class ClusterDNSServer:
    """The same resolver on UDP and TCP, same address and port (port 0: one free port)."""

    def __init__(self, resolver: BaseResolver, address: str, port: int) -> None:
        # dnslib's default logger prints every packet; keep only its error hook, as a warning.
        quiet = DNSLogger(log="-request,-reply,-truncated", prefix=False, logf=self._log_dnslib_error)
        self._udp = DNSServer(resolver, address=address, port=port, logger=quiet)
        self.address = address
        self.port: int = self._udp.server.server_address[1]
        self._tcp = DNSServer(resolver, address=address, port=self.port, tcp=True, logger=quiet)

    @staticmethod
    def _log_dnslib_error(message: str) -> None:
        log.warning("dnslib: %s", message)

    def start(self) -> None:
        for server in (self._udp, self._tcp):
            # Not dnslib's start_thread: its 0.5 s shutdown poll would make every stop slow.
            threading.Thread(
                target=server.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
            ).start()

    def stop(self) -> None:
        for server in (self._udp, self._tcp):
            server.stop()
            server.server.server_close()


# --- I/O: Kubernetes list + watch ----------------------------------------------------------

T = TypeVar("T", Service, Pod)


def service_from_api(obj: Any) -> Service:
    cluster_ip = obj.spec.cluster_ip
    return Service(
        namespace=obj.metadata.namespace,
        name=obj.metadata.name,
        cluster_ip=None if cluster_ip in (None, "", "None") else cluster_ip,
        selector=dict(obj.spec.selector or {}),
    )


def pod_from_api(obj: Any) -> Pod:
    status = obj.status
    conditions = (status.conditions or []) if status else []
    ready_conditions = [c.status == "True" for c in conditions if c.type == "Ready"]
    phase = status.phase if status else None
    return Pod(
        namespace=obj.metadata.namespace,
        name=obj.metadata.name,
        ip=status.pod_ip if status else None,
        labels=dict(obj.metadata.labels or {}),
        # Pods without a Ready condition (a minimal API server) count as ready when Running.
        ready=ready_conditions[0] if ready_conditions else phase == "Running",
    )


@dataclass(frozen=True, slots=True)
class _Hooks:
    lock: threading.Lock  # guards every informer's items
    on_change: Callable[[], None]  # called with the lock held after every change
    stop: threading.Event


class _Informer(Generic[T]):
    """One kind, listed then watched into ``items``."""

    WATCH_SECONDS = 120  # then re-list: a cheap resync that also recovers a silently expired watch
    INITIAL_BACKOFF, MAX_BACKOFF = 0.5, 10.0

    def __init__(
        self,
        kind: str,
        list_fn: Callable[..., Any],
        convert: Callable[[Any], T],
        hooks: _Hooks,
    ) -> None:
        self.kind, self._list_fn = kind, list_fn
        self._convert: Callable[[Any], T] = convert
        self._lock, self._on_change, self._stop = hooks.lock, hooks.on_change, hooks.stop
        self.items: dict[Key, T] = {}
        self.synced = False

    def run(self) -> None:
        backoff = self.INITIAL_BACKOFF
        while not self._stop.is_set():
            try:
                version = self._relist()
                backoff = self.INITIAL_BACKOFF
                stream = watch.Watch()
                for event in stream.stream(
                    self._list_fn,
                    resource_version=version,
                    timeout_seconds=self.WATCH_SECONDS,
                    _request_timeout=self.WATCH_SECONDS + 30,
                ):
                    self._apply(event["type"], self._convert(event["object"]))
                    if self._stop.is_set():
                        stream.stop()
                log.debug("%s watch ended; re-listing", self.kind)
            except ReadTimeoutError:
                log.debug("%s watch idle past its deadline; re-listing", self.kind)
            except ApiException as exc:
                if exc.status == 410:
                    log.info("%s watch expired (410 Gone); re-listing", self.kind)
                    continue
                backoff = self._retry_later(f"HTTP {exc.status} {exc.reason}", backoff)
            except (HTTPError, OSError, ValueError) as exc:
                backoff = self._retry_later(repr(exc), backoff)

    def _retry_later(self, reason: str, backoff: float) -> float:
        """Wait ``backoff`` seconds (or until stopped); return the next, doubled, backoff."""
        if not self._stop.is_set():  # after stop(), a broken stream is expected, not news
            log.warning("%s list/watch failed: %s; retrying in %.1fs", self.kind, reason, backoff)
        self._stop.wait(backoff)
        return min(backoff * 2, self.MAX_BACKOFF)

    def _relist(self) -> str:
        response = self._list_fn(_request_timeout=10)
        items = {(o.namespace, o.name): o for o in map(self._convert, response.items)}
        with self._lock:
            self.items, self.synced = items, True
            self._on_change()
        log.debug("%s listed: %d", self.kind, len(self.items))
        return str(response.metadata.resource_version)

    def _apply(self, event_type: str, obj: T) -> None:
        if event_type not in ("ADDED", "MODIFIED", "DELETED"):
            return  # BOOKMARK: nothing changed
        key = (obj.namespace, obj.name)
        with self._lock:
            if event_type == "DELETED":
                self.items.pop(key, None)
            else:
                self.items[key] = obj
            self._on_change()


class KubeStateSource:
    """Keeps a :class:`ClusterState` current from the API server, in two daemon threads.

    Readers call :meth:`snapshot` from any thread: it returns an immutable object that is
    replaced (never modified) under the lock whenever a watch event arrives.
    """

    def __init__(self, core_v1: Any) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._snapshot = ClusterState(synced=False)
        hooks = _Hooks(self._lock, self._rebuild, self._stop)
        self._services = _Informer(
            "services", core_v1.list_service_for_all_namespaces, service_from_api, hooks
        )
        self._pods = _Informer("pods", core_v1.list_pod_for_all_namespaces, pod_from_api, hooks)

    def snapshot(self) -> ClusterState:
        return self._snapshot

    def start(self) -> None:
        for informer in (self._services, self._pods):
            threading.Thread(target=informer.run, name=f"watch-{informer.kind}", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _rebuild(self) -> None:
        """Called by an informer with the lock held, so neither dict changes while copied."""
        self._snapshot = ClusterState(
            services=dict(self._services.items),
            pods=dict(self._pods.items),
            synced=self._services.synced and self._pods.synced,
        )


# --- command line --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.clusterdns", description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=53)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--cluster-domain", default="cluster.local")
    parser.add_argument("--external", action="append", default=[], metavar="NAME=IP[,IP]")
    parser.add_argument("--cname", action="append", default=[], metavar="NAME=TARGET")
    parser.add_argument(
        "--external-suffix",
        action="append",
        default=[],
        metavar="SUFFIX=IP[,IP]",
        help="every name under SUFFIX (any depth, and SUFFIX itself) resolves to IP",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    log.setLevel(args.log_level)  # only ours: the kubernetes client's DEBUG dumps whole responses
    try:
        zone = Zone.from_flags(args.cluster_domain, args.external, args.cname, args.external_suffix)
    except ValueError as exc:
        parser.error(str(exc))

    source = KubeStateSource(client.CoreV1Api(config.new_client_from_config(config_file=args.kubeconfig)))
    source.start()
    server = ClusterDNSServer(ClusterResolver(zone, source.snapshot), args.address, args.port)
    server.start()
    log.info(
        "clusterdns serving %s:%d (udp+tcp) for %s, externals %s, suffixes %s, cnames %s, API from %s",
        *(server.address, server.port, zone.cluster_domain, sorted(zone.externals), sorted(zone.suffixes)),
        *(sorted(zone.cnames), args.kubeconfig),
    )
    stop = stop_on_signals(lambda signum: log.info("signal %d: stopping", signum))
    # Wake up now and then: the kernel may hand SIGTERM to a server thread, and Python runs the
    # handler only when the main thread next runs bytecode; an untimed wait() never would.
    while not stop.wait(0.5):
        pass
    server.stop()
    source.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
