"""Observations → edges: who (which workload) talked to whom, resolved against the cluster state.

Observations come from the mapper's report mutations (sniffer DNS/TCP/socket scan, Kafka, Istio
and AWS watchers); the cluster state (`agent.mapper.cluster.ClusterState`) is kept current by
`agent.mapper.kube`; the edges go to the store. Pure: no I/O, no clock. Every IP is resolved *as
of the observation's `seen_at`* (IP reuse), and every observation that yields no edge is counted
in `Resolver.stats` by reason, so a dropped edge is visible in metrics rather than silent.

hostNetwork rule: a node IP is never resolved to a regular pod. Traffic *from* a node IP is
pinned to a hostNetwork pod only when the socket scan's hostname names it; otherwise, if all
hostNetwork pods on that node at that time are one workload, the edge is kept with
`ambiguous=True` (node processes such as the kubelet share the IP), else dropped. Traffic *to* a
node IP goes to the pod listening on that port there (hostNetwork port or hostPort).

One Internet edge per name: each external DNS answer is remembered per (client IP, answered IP)
(bounded, oldest first out), so a TCP connection or socket-scan entry from that client to that IP
becomes an edge to the *same* `InternetTarget` (the store merges them and adds the method) rather
than a second, IP-only one. A name holds from an hour before its answer was seen until the later of
its TTL and an hour after (clients keep connections, and their own caches, past the TTL). A
connection reported before the answer that named its IP keeps its IP-only target.

Threading: a `Resolver` is used by one thread (the mapper's single ingest worker,
`agent.mapper.api.ingest`): its memos, name table and `stats` take no lock, and must not be shared.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import socket
from collections import Counter
from collections.abc import Callable, Sequence
from itertools import islice
from typing import Any

from agent.mapper.cluster import ClusterState, ServiceInfo
from agent.model import (
    AwsOperation,
    AwsTarget,
    DnsAnswer,
    Edge,
    HttpResource,
    InternetTarget,
    IstioRequest,
    KafkaAccess,
    KafkaTopic,
    Method,
    Observation,
    SocketConnection,
    Target,
    TcpConnection,
    WorkloadIdentity,
)

_METHODS = {m: frozenset({m}) for m in Method}
_DNS, _TCP, _SCAN = _METHODS[Method.DNS], _METHODS[Method.TCP], _METHODS[Method.SOCKET_SCAN]
_Hit = tuple[Target, str, bool]  # (target, target_service, ambiguous)
_Client = tuple[WorkloadIdentity, bool]  # (identity, ambiguous)
_CACHE_MAX = 200_000  # entries per cache; external names/IPs would otherwise grow it forever
_ALWAYS = (-math.inf, math.inf)
_NAMED_MAX = 100_000  # (client IP, answered IP) pairs remembered for naming Internet IPs
_NAME_HOLD = 3600.0  # a DNS name holds for its IP for at least this long (and as long before)
_Named = tuple[float, float, _Hit]  # (valid from, valid until, the DNS answer's hit)


def _edge_init(  # noqa: PLR0917 - mirrors Edge's fields, positionally for speed
    client: WorkloadIdentity,
    target: Target,
    t: float,
    methods: frozenset[Method],
    count: int,
    http: tuple[HttpResource, ...],
    kafka_topics: tuple[KafkaTopic, ...],
    aws_actions: tuple[str, ...],
    target_service: str,
    ambiguous: bool,
) -> Edge:
    return Edge(
        client, target, t, t, methods, count, http, kafka_topics, aws_actions, target_service, ambiguous
    )


_EDGE_FIELDS = (
    "client", "target", "first_seen", "last_seen", "methods", "count",
    "http", "kafka_topics", "aws_actions", "target_service", "ambiguous",
)  # fmt: skip
_new_edge = _edge_init
if tuple(f.name for f in dataclasses.fields(Edge)) == _EDGE_FIELDS and hasattr(Edge, "__slots__"):
    # The frozen dataclass __init__ (object.__setattr__ per field) is half the cost of resolving
    # an observation; writing the slots directly builds the same object ~2.5x faster. Used only
    # while Edge has exactly these fields (else the plain constructor above); tested for equality.
    _set = [getattr(Edge, name).__set__ for name in _EDGE_FIELDS]
    _s0, _s1, _s2, _s3, _s4, _s5, _s6, _s7, _s8, _s9, _s10 = _set
    _alloc = object.__new__

    def _edge_fast(  # noqa: PLR0917 - mirrors Edge's fields, positionally for speed
        client: WorkloadIdentity,
        target: Target,
        t: float,
        methods: frozenset[Method],
        count: int,
        http: tuple[HttpResource, ...],
        kafka_topics: tuple[KafkaTopic, ...],
        aws_actions: tuple[str, ...],
        target_service: str,
        ambiguous: bool,
    ) -> Edge:
        edge: Edge = _alloc(Edge)
        _s0(edge, client), _s1(edge, target), _s2(edge, t), _s3(edge, t), _s4(edge, methods)
        _s5(edge, count), _s6(edge, http), _s7(edge, kafka_topics), _s8(edge, aws_actions)
        _s9(edge, target_service), _s10(edge, ambiguous)
        return edge

    _new_edge = _edge_fast


class Resolver:
    """Turns observations into edges. One instance per resolving thread (nothing in it is locked).

    Answers are memoised per client IP, server IP:port and DNS (name, answers) together with the
    time span they hold for (the pod's or service's span in the IP history) and the state's
    `generation`: any cluster change, or an observation outside the span, recomputes.
    """

    def __init__(
        self, state: ClusterState, cluster_domain: str = "cluster.local", internal_cidrs: Sequence[str] = ()
    ) -> None:
        self.state = state
        self.stats: Counter[str] = Counter()
        domain = cluster_domain.strip(".").lower()
        self._domain, self._domain_suffix = domain, "." + domain
        self._svc_suffix, self._pod_suffix = f".svc.{domain}", f".pod.{domain}"
        # The cluster's pod/service CIDRs, when known: unknown IPs inside are never "Internet".
        self._internal = [ipaddress.ip_network(c, strict=False) for c in internal_cidrs]
        self._internal_v4 = [
            (int(n.network_address), int(n.netmask)) for n in self._internal if n.version == 4
        ]
        self._clients: dict[str, tuple[int, float, float, _Client]] = {}
        self._servers: dict[tuple[str, int], tuple[int, float, float, list[_Hit]]] = {}
        self._names: dict[tuple[str, tuple[str, ...]], tuple[int, float, float, list[_Hit]]] = {}
        # (client IP, answered IP) → the Internet target that client's DNS answer named, in answer order.
        self._named: dict[tuple[str, str], _Named] = {}
        self._handlers: dict[type, Callable[[Any], list[Edge]]] = {
            DnsAnswer: self._dns,
            TcpConnection: self._tcp,
            SocketConnection: self._tcp,
            KafkaAccess: self._kafka,
            IstioRequest: self._istio,
            AwsOperation: self._aws,
        }

    def resolve(self, obs: Observation) -> list[Edge]:
        """The edges `obs` is evidence of (none if a side cannot be resolved, or it is a self-edge)."""
        if type(obs) is DnsAnswer:  # the bulk of the traffic: skip the dispatch lookup
            return self._dns(obs)
        if type(obs) is TcpConnection:
            return self._tcp(obs)
        handler = self._handlers.get(type(obs))
        if handler is None:
            self.stats["unsupported_observation"] += 1
            return []
        return handler(obs)

    # -- edges -------------------------------------------------------------------------------

    def _edges(  # noqa: PLR0917
        self,
        client: _Client,
        hits: list[_Hit],
        method: Method,
        t: float,
        count: int = 1,
        http: tuple[HttpResource, ...] = (),
        kafka: tuple[KafkaTopic, ...] = (),
        aws: tuple[str, ...] = (),
    ) -> list[Edge]:
        identity, client_ambiguous = client
        methods, new = _METHODS[method], _new_edge
        edges = [
            new(identity, target, t, methods, count, http, kafka, aws, service, client_ambiguous or ambiguous)
            for target, service, ambiguous in hits
            # Identities from the state are interned (`is` suffices); Kafka/Istio ones are built here.
            if target is not identity and target != identity
        ]
        if len(edges) < len(hits):
            self.stats["self_edge"] += len(hits) - len(edges)
        return edges

    def _emit(self, client: _Client, hits: list[_Hit], methods: frozenset[Method], t: float) -> list[Edge]:
        """Edges of a DNS/TCP observation: all identities come from the state, so `is` finds self-edges."""
        identity, ambiguous = client
        if len(hits) == 1:
            target, service, target_ambiguous = hits[0]
            if target is identity:
                self.stats["self_edge"] += 1
                return []
            return [
                _new_edge(identity, target, t, methods, 1, (), (), (), service, ambiguous or target_ambiguous)
            ]
        return self._edges(client, hits, next(iter(methods)), t)

    @staticmethod
    def _remember(cache: dict[Any, Any], key: Any, entry: tuple[Any, ...]) -> None:
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[key] = entry

    # -- the client side ---------------------------------------------------------------------

    def _client(self, ip: str, t: float, hostname: str = "") -> _Client | None:
        """(identity, ambiguous) of the pod that sent from `ip` at `t`."""
        generation = self.state.generation
        if not hostname:
            entry = self._clients.get(ip)
            if entry is not None and entry[0] == generation and entry[1] <= t < entry[2]:
                return entry[3]
        found = self.state.pod_span_at(ip, t)
        pod = found[2] if found is not None else None
        if found is not None and (not hostname or hostname in (found[2].hostname, found[2].name)):
            client = (found[2].identity, False)
            self._remember(self._clients, ip, (generation, found[0], found[1], client))
            return client
        if hostname:
            # Confirm or correct with the hostname: near an IP handover the scan names the real holder.
            named = [p for _, _, p in self.state.pods_with_ip(ip) if hostname in (p.hostname, p.name)]
            if named:
                return min(named, key=lambda p: abs(p.created_at - t)).identity, False
        if pod is not None:
            return pod.identity, False  # a custom hostname proves nothing either way
        if self.state.is_node_ip(ip):
            return self._client_on_node(ip, t, hostname)
        self.stats["client_unknown_ip"] += 1
        return None

    def _client_on_node(self, ip: str, t: float, hostname: str) -> _Client | None:
        """A node IP: only a hostNetwork pod can be the client, and only one we can name."""
        candidates = self.state.host_network_pods(ip, t)
        if hostname:
            named = [p for p in candidates if hostname in (p.hostname, p.name)]
            if len(named) == 1:
                return named[0].identity, False
        workloads = {p.identity for p in candidates}
        if len(workloads) == 1:
            return workloads.pop(), True
        self.stats["client_node_ip_unresolved"] += 1
        return None

    # -- DNS ---------------------------------------------------------------------------------

    def _dns(self, obs: DnsAnswer) -> list[Edge]:
        # The hot path: both memo checks are inlined (a call costs as much as the check).
        t, generation = obs.seen_at, self.state.generation
        entry = self._clients.get(obs.client_ip)
        if entry is not None and entry[0] == generation and entry[1] <= t < entry[2]:
            client = entry[3]
        else:
            resolved = self._client(obs.client_ip, t)
            if resolved is None:
                return []
            client = resolved
        key = (obs.qname, obs.ips)
        found = self._names.get(key)
        if found is not None and found[0] == generation and found[1] <= t < found[2]:
            hits = found[3]
        else:
            hits, span = self._dns_targets(obs.qname.rstrip(".").lower(), obs.ips, t)
            if not hits:
                return []
            if span is not None:
                self._remember(self._names, key, (generation, span[0], span[1], hits))
        if len(hits) == 1 and hits[0][0] is not client[0]:  # the common case, inlined
            target, service, ambiguous = hits[0]
            if type(target) is InternetTarget:
                self._remember_name(obs, hits[0])
            return [_new_edge(client[0], target, t, _DNS, 1, (), (), (), service, client[1] or ambiguous)]
        return self._emit(client, hits, _DNS, t)

    def _remember_name(self, obs: DnsAnswer, hit: _Hit) -> None:
        """Connections from `obs`'s client to the IPs it answered go to `hit`'s target (see module doc)."""
        t, ttl, client, named = obs.seen_at, obs.ttl, obs.client_ip, self._named
        entry = (t - _NAME_HOLD, t + (ttl if ttl > _NAME_HOLD else _NAME_HOLD), hit)
        for ip in obs.ips:
            key = (client, ip)
            # Re-inserted at the end, so the dict's order is answer order: the front is the oldest.
            if named.pop(key, None) is None and len(named) >= _NAMED_MAX:
                # Oldest first, a tenth at a time: one front scan per many evictions (a front scan
                # per eviction would walk every earlier deletion's hole).
                for old in list(islice(named, _NAMED_MAX // 10 or 1)):
                    del named[old]
            named[key] = entry

    def _dns_targets(
        self, name: str, ips: tuple[str, ...], t: float
    ) -> tuple[list[_Hit], tuple[float, float] | None]:
        """The targets of a DNS answer, and the time span they hold for (None: do not cache)."""
        if name.endswith(self._svc_suffix):
            parts = name[: -len(self._svc_suffix)].split(".")
            if len(parts) == 2:  # <service>.<namespace>
                return self._service_name_targets(parts[1], parts[0], ips, t)
            if len(parts) == 3:  # <hostname>.<service>.<namespace>: one pod of a headless service
                hits = self._pod_hits(ips, t, parts[1])
                if not hits:
                    pod = self.state.pod_named(parts[2], parts[0])
                    hits = [(pod.identity, parts[1], False)] if pod is not None else []
                if not hits:
                    self.stats["dns_service_pod_unknown"] += 1
                return hits, None
            self.stats["dns_cluster_name_unsupported"] += 1
            return [], None
        if name.endswith(self._pod_suffix):  # a-b-c-d.<namespace>.pod.<domain>
            dashed = name[: -len(self._pod_suffix)].split(".", maxsplit=1)[0]
            ip = dashed.replace("-", ".") if dashed.count("-") == 3 else dashed.replace("-", ":")
            hits = self._pod_hits((ip,), t, "")
            if not hits:
                self.stats["dns_pod_unknown"] += 1
            return hits, None
        if name == self._domain or name.endswith(self._domain_suffix):
            self.stats["dns_cluster_name_unsupported"] += 1
            return [], None
        return [(InternetTarget(name, tuple(sorted(ips))), "", False)], _ALWAYS

    def _service_name_targets(
        self, namespace: str, name: str, ips: tuple[str, ...], t: float
    ) -> tuple[list[_Hit], tuple[float, float] | None]:
        found = self.state.service_span_named(namespace, name, t)
        if found is None:
            self.stats["dns_service_unknown"] += 1
            return [], None
        start, end, service = found
        if service.external_name:
            target = InternetTarget(service.external_name.rstrip(".").lower(), tuple(sorted(ips)))
            return [(target, name, False)], (start, end)
        if service.headless:  # the answer's IPs are the pods themselves
            hits = self._pod_hits(ips, t, name)
            if hits:
                return hits, None
        return self._service_hits(service), (start, end)

    def _pod_hits(self, ips: tuple[str, ...], t: float, service: str) -> list[_Hit]:
        found: dict[WorkloadIdentity, None] = {}
        for ip in ips:
            pod = self.state.pod_at(ip, t)
            if pod is not None:
                found[pod.identity] = None
        return [(identity, service, False) for identity in found]

    def _service_hits(self, service: ServiceInfo) -> list[_Hit]:
        targets = self.state.service_targets(service)
        if not targets:
            self.stats["service_without_endpoints"] += 1
        return [(identity, service.name, False) for identity in targets]

    # -- TCP and socket scan -----------------------------------------------------------------

    def _tcp(self, obs: TcpConnection | SocketConnection) -> list[Edge]:
        t, generation = obs.seen_at, self.state.generation
        scan = type(obs) is SocketConnection
        entry = None if scan else self._clients.get(obs.client_ip)
        if entry is not None and entry[0] == generation and entry[1] <= t < entry[2]:
            client = entry[3]
        else:
            hostname = obs.client_hostname if scan else ""  # type: ignore[union-attr]
            resolved = self._client(obs.client_ip, t, hostname)
            if resolved is None:
                return []
            client = resolved
        key = (obs.server_ip, obs.server_port)
        found = self._servers.get(key)
        if found is not None and found[0] == generation and found[1] <= t < found[2]:
            hits = found[3]
        else:
            hits, span = self._server_targets(obs.server_ip, obs.server_port, t)
            if not hits:
                return []
            if span is not None:
                self._remember(self._servers, key, (generation, span[0], span[1], hits))
        methods = _SCAN if scan else _TCP
        if len(hits) == 1 and hits[0][0] is not client[0]:
            target, service, ambiguous = hits[0]
            if type(target) is InternetTarget:  # an Internet IP: the name the client resolved it from
                named = self._named.get((obs.client_ip, obs.server_ip))
                if named is not None and named[0] <= t < named[1]:
                    target, service, ambiguous = named[2]
                    self.stats["internet_ip_named_by_dns"] += 1
            return [_new_edge(client[0], target, t, methods, 1, (), (), (), service, client[1] or ambiguous)]
        return self._emit(client, hits, methods, t)

    def _server_targets(self, ip: str, port: int, t: float) -> tuple[list[_Hit], tuple[float, float] | None]:
        state = self.state
        service = state.service_span_at_ip(ip, t)
        if service is not None:
            return self._service_hits(service[2]), (service[0], service[1])
        pod = state.pod_span_at(ip, t)
        if pod is not None:
            return [(pod[2].identity, "", False)], (pod[0], pod[1])
        if state.is_node_ip(ip):
            workloads = {p.identity for p in state.pods_on_node_port(ip, port, t)}
            if len(workloads) == 1:
                return [(workloads.pop(), "", False)], None
            self.stats["server_node_port_unresolved"] += 1
            return [], None
        if state.is_known_ip(ip) or not self._external(ip):
            self.stats["server_unknown_cluster_ip"] += 1
            return [], None
        return [(InternetTarget("", (ip,), port), "", False)], _ALWAYS

    def _external(self, ip: str) -> bool:
        try:  # IPv4 first, as integers: ipaddress objects cost ~10x more, once per new Internet IP
            value = int.from_bytes(socket.inet_pton(socket.AF_INET, ip), "big")
        except OSError:
            value = -1
        if value >= 0:
            if value >> 24 == 127 or value >> 16 == 0xA9FE or value >> 28 == 0xE or value == 0:
                return False  # loopback, link-local, multicast, unspecified
            return not any(value & mask == network for network, mask in self._internal_v4)
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if address.is_loopback or address.is_link_local or address.is_multicast or address.is_unspecified:
            return False
        return not any(address in network for network in self._internal)

    # -- Kafka, Istio, AWS -------------------------------------------------------------------

    def _kafka(self, obs: KafkaAccess) -> list[Edge]:
        client = self._client(obs.client_ip, obs.seen_at)
        if client is None:
            return []
        server = obs.server
        if server.kind == "Pod":  # reportKafkaMapperResults names the broker by pod: use its workload
            pod = self.state.pod_named(server.namespace, server.name)
            if pod is not None:
                server = pod.identity
            else:
                self.stats["kafka_server_pod_unknown"] += 1  # kept as the bare pod
        elif not server.kind:
            server = self._workload(server.namespace, server.name)
        topics = (KafkaTopic(obs.topic, (obs.operation,)),)
        return self._edges(client, [(server, "", False)], Method.KAFKA, obs.seen_at, kafka=topics)

    def _istio(self, obs: IstioRequest) -> list[Edge]:
        names = (obs.source_workload, obs.destination_workload)
        if obs.count <= 0 or not all(names) or "unknown" in names:
            self.stats["istio_unusable"] += 1
            return []
        source = self._workload(obs.source_namespace, obs.source_workload)
        destination = self._workload(obs.destination_namespace, obs.destination_workload)
        http = (HttpResource(obs.path, (obs.method,) if obs.method else ()),) if obs.path else ()
        hits: list[_Hit] = [(destination, obs.destination_service, False)]
        return self._edges((source, False), hits, Method.ISTIO, obs.seen_at, count=obs.count, http=http)

    def _aws(self, obs: AwsOperation) -> list[Edge]:
        client = self._client(obs.client_ip, obs.seen_at)
        if client is None:
            return []
        hits: list[_Hit] = [(AwsTarget(obs.resource or "*"), "", False)]
        return self._edges(client, hits, Method.AWS, obs.seen_at, aws=(f"{obs.service}:{obs.action}",))

    def _workload(self, namespace: str, name: str) -> WorkloadIdentity:
        """An identity named by a watcher (Kafka, Istio): its kind from the pods/owners we know."""
        return WorkloadIdentity(namespace, name, self.state.workload_kind(namespace, name))
