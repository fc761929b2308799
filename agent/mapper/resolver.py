"""Observations → edges: who (which workload) talked to whom, resolved against the cluster state.

Observations come from the mapper's report mutations (sniffer DNS/TCP/socket scan, Kafka, Istio
and AWS watchers); the cluster state (`agent.mapper.cluster.ClusterState`) is kept current by
`agent.mapper.kube`; the edges go to the store. Pure: no I/O, no clock. Every IP is resolved *as
of the observation's `seen_at`* (IP reuse), and every observation that yields no edge is counted
in `Resolver.stats` by reason, so a dropped edge is visible in metrics rather than silent.

The client side (source IP → workload) is resolved here; the server side, the target, by
`agent.mapper.servers` (by address) and `agent.mapper.names` (by DNS name, and Internet IPs by
the name the client looked up).

What is recorded (`agent.settings.RecordingSettings`), as Otterize's mapper does: an edge whose
client, or whose server workload, is in an excluded namespace is dropped (`excluded_namespace`;
Otterize's `IntentsHolder` and `ExternalTrafficIntentsHolder` drop on the same namespaces), and with
Internet reporting off every edge to an `InternetTarget` is dropped (`internet_reporting_disabled`).
Otterize's switch (`OTTERIZE_CAPTURE_EXTERNAL_TRAFFIC_ENABLED`) stops recording DNS-named external
traffic and uploading it; here it drops every Internet target, IP-only and ExternalName ones too, so
the store, the API, exports and uploads alike never hold one. Both counts are per edge dropped.

hostNetwork rule: a node IP is never resolved to a regular pod. Traffic *from* a node IP is
pinned to a hostNetwork pod of that node only when the socket scan names it: by the pod UID or
the pod (`namespace/name`, or a bare name) of the process owning the client socket
(`agent.sniffer.owners`), else by the namespace's hostname. A UID or `namespace/name` that names
none of them drops the observation (`host_network_pod_unknown`: the owner is known, and is not one
of them). Otherwise, if all hostNetwork pods on that node at that time are one workload, the
client is kept with `ambiguous=True` (`ambiguous_host_network_kept`: node processes such as the
kubelet share the IP), else dropped (`ambiguous_host_network`).

Threading: a `Resolver` is used by one thread (the mapper's single report-queue worker,
`agent.mapper.api.reportqueue`): its memos, name table and `stats` take no lock, and must not be
shared.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from agent.mapper.cluster import ClusterState, PodInfo
from agent.mapper.names import NameResolver
from agent.mapper.servers import Hit, ServerResolver
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
    TcpConnection,
    WorkloadIdentity,
    new_edge,
    seen_once,
)

_DNS, _TCP, _SCAN = frozenset({Method.DNS}), frozenset({Method.TCP}), frozenset({Method.SOCKET_SCAN})
# One shared tuple per server port: an edge's `ports` without a tuple allocated per observation.
_Ports = tuple[int, ...]
_PORTS: dict[int, _Ports] = {0: ()}  # port 0 is no port (the wire accepts 1-65535)
_KAFKA, _ISTIO, _AWS = frozenset({Method.KAFKA}), frozenset({Method.ISTIO}), frozenset({Method.AWS})
# Each edge made here carries its one sighting's provenance (`seen_once`): the method, as a constant.
_M_DNS, _M_TCP, _M_SCAN = Method.DNS, Method.TCP, Method.SOCKET_SCAN
_Client = tuple[WorkloadIdentity, bool]  # (identity, ambiguous)
_CACHE_MAX = 200_000  # entries per memo; external names/IPs would otherwise grow it forever
# `stats` reasons that note a resolution and keep its edge; every other reason is an edge (or a whole
# observation) not recorded.
KEPT_REASONS = frozenset(
    {"internet_ip_named_by_dns", "kafka_server_pod_unknown", "ambiguous_host_network_kept"}
)
_MIRROR = "kubernetes.io/config.mirror"  # a static pod's mirror: the UID its kubelet (and cgroup) knows it by
DROP_REASONS = ("excluded_namespace", "internet_reporting_disabled")  # the recording settings' drops


def _remember(cache: dict[Any, Any], key: Any, entry: tuple[Any, ...]) -> None:
    """Store `entry` under `key`, emptying `cache` first when it is full."""
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[key] = entry


def _owner_pod(candidates: list[PodInfo], pod_uid: str, pod: str) -> PodInfo | None:
    """The one of a node's hostNetwork pods that a socket's owner named: by UID (a static pod's
    too: its mirror's annotation), else by `namespace/name`, else by a bare name or hostname."""
    if pod_uid:
        for p in candidates:
            if pod_uid == p.uid or pod_uid == p.annotations.get(_MIRROR):
                return p
    namespace, _, name = pod.rpartition("/")
    if namespace:
        named = [p for p in candidates if p.name == name and p.namespace == namespace]
    else:
        named = [p for p in candidates if name in (p.name, p.hostname)]
    return named[0] if name and len({p.identity for p in named}) == 1 else None


class Resolver:
    """Turns observations into edges (one instance per thread: see the module doc).

    Answers are memoised per client IP, server IP:port and DNS (name, answers) as
    `(generation, start, end, answer)`: valid while the state's `generation` is unchanged and the
    observation's time is in [start, end) (the pod's or service's span in the IP history).
    """

    def __init__(
        self,
        state: ClusterState,
        cluster_domain: str = "cluster.local",
        internal_cidrs: Sequence[str] = (),
        *,
        exclude_namespaces: Iterable[str] = (),
        internet_reporting: bool = True,
    ) -> None:
        self.state = state
        self.stats: Counter[str] = Counter()
        self._excluded = frozenset(exclude_namespaces)
        self._internet = internet_reporting
        self._filtering = bool(self._excluded) or not internet_reporting
        self._servers = ServerResolver(state, self.stats, internal_cidrs)
        self._names = NameResolver(state, self.stats, self._servers, cluster_domain)
        self._client_memo: dict[str, tuple[int, float, float, _Client]] = {}
        self._server_memo: dict[tuple[str, int], tuple[int, float, float, list[Hit]]] = {}
        self._name_memo: dict[tuple[str, tuple[str, ...]], tuple[int, float, float, list[Hit]]] = {}
        self._handlers: dict[type, Callable[[Any], list[Edge]]] = {
            SocketConnection: self._tcp,
            KafkaAccess: self._kafka,
            IstioRequest: self._istio,
            AwsOperation: self._aws,
        }

    def resolve(self, obs: Observation) -> list[Edge]:
        """The edges `obs` is evidence of (none if a side cannot be resolved, it is a self-edge, or
        the recording settings drop it)."""
        if type(obs) is DnsAnswer:  # the bulk of the traffic: no dispatch lookup
            edges = self._dns(obs)
        elif type(obs) is TcpConnection:
            edges = self._tcp(obs)
        else:
            handler = self._handlers.get(type(obs))
            if handler is None:
                self.stats["unsupported_observation"] += 1
                return []
            edges = handler(obs)
        return self._recorded(edges) if self._filtering and edges else edges

    def dropped(self) -> dict[str, int]:
        """Edges and observations not recorded, by reason (the recording settings' reasons always
        present): for `GET /metrics`. A copy, so another thread may read it: copying the `Counter`
        (a dict with str keys) runs in C without releasing the GIL, so it never sees a half-made
        insertion of the resolver's thread."""
        counts = dict(self.stats)
        dropped = dict.fromkeys(DROP_REASONS, 0)
        dropped.update((reason, n) for reason, n in counts.items() if reason not in KEPT_REASONS)
        return dropped

    def _recorded(self, edges: list[Edge]) -> list[Edge]:
        """`edges` without those the recording settings drop (counted by reason)."""
        excluded, internet = self._excluded, self._internet
        for edge in edges:  # the common case first: nothing to drop, `edges` itself is the answer
            target = edge.target
            if (
                edge.client.namespace in excluded
                or (type(target) is WorkloadIdentity and target.namespace in excluded)
                or (not internet and type(target) is InternetTarget)
            ):
                break
        else:
            return edges
        kept: list[Edge] = []
        for edge in edges:
            target = edge.target
            if edge.client.namespace in excluded or (
                type(target) is WorkloadIdentity and target.namespace in excluded
            ):
                self.stats["excluded_namespace"] += 1
            elif not internet and type(target) is InternetTarget:
                self.stats["internet_reporting_disabled"] += 1
            else:
                kept.append(edge)
        return kept

    def _edges(
        self, client: _Client, hits: list[Hit], methods: frozenset[Method], t: float, ports: _Ports = ()
    ) -> list[Edge]:
        """A DNS/TCP observation's edges: identities from the state are interned, so `is` finds self-edges."""
        identity, unsure = client
        seen = seen_once(next(iter(methods)), t)  # one method: shared by the observation's edges
        edges = [
            new_edge(
                identity,
                target,
                t,
                t,
                methods,
                1,
                (),
                (),
                (),
                service,
                unsure or ambiguous,
                0,
                False,
                ports,
                seen,
            )
            for target, service, ambiguous in hits
            if target is not identity
        ]
        if len(edges) < len(hits):
            self.stats["self_edge"] += len(hits) - len(edges)
        return edges

    def _edge(self, edge: Edge) -> list[Edge]:
        """A watcher's edge (Kafka, Istio, AWS): its identities are built here, so `==` finds self-edges."""
        if edge.target == edge.client:
            self.stats["self_edge"] += 1
            return []
        return [edge]

    # -- the client side ---------------------------------------------------------------------

    def _client(
        self, ip: str, t: float, hostname: str = "", pod_uid: str = "", owner_pod: str = ""
    ) -> _Client | None:
        """(identity, ambiguous) of the pod that sent from `ip` at `t` (`hostname`, `pod_uid`, `owner_pod`:
        what a socket scan says of the client)."""
        generation = self.state.generation
        if not hostname:
            entry = self._client_memo.get(ip)
            if entry is not None and entry[0] == generation and entry[1] <= t < entry[2]:
                return entry[3]
        found = self.state.pod_span_at(ip, t)
        pod = found[2] if found is not None else None
        if found is not None and (not hostname or hostname in (found[2].hostname, found[2].name)):
            client = (found[2].identity, False)
            _remember(self._client_memo, ip, (generation, found[0], found[1], client))
            return client
        if hostname:
            # Confirm or correct with the hostname: near an IP handover the scan names the real holder.
            named = [p for p in self.state.pods_with_ip(ip) if hostname in (p.hostname, p.name)]
            if named:
                return min(named, key=lambda p: abs(p.created_at - t)).identity, False
        if pod is not None:
            return pod.identity, False  # a custom hostname proves nothing either way
        if self.state.is_node_ip(ip):
            return self._client_on_node(ip, t, hostname, pod_uid, owner_pod)
        self.stats["client_unknown_ip"] += 1
        return None

    def _client_on_node(self, ip: str, t: float, hostname: str, pod_uid: str, pod: str) -> _Client | None:
        """A node IP: only a hostNetwork pod can be the client, and only one we can name."""
        candidates = self.state.host_network_pods(ip, t)
        if pod_uid or pod:
            owner = _owner_pod(candidates, pod_uid, pod)
            if owner is not None:
                return owner.identity, False
            if pod_uid or "/" in pod:
                self.stats["host_network_pod_unknown"] += 1
                return None
        if hostname:
            named = [p for p in candidates if hostname in (p.hostname, p.name)]
            if len(named) == 1:
                return named[0].identity, False
        workloads = {p.identity for p in candidates}
        if len(workloads) == 1:
            self.stats["ambiguous_host_network_kept"] += 1
            return workloads.pop(), True
        self.stats["ambiguous_host_network"] += 1
        return None

    # -- DNS, TCP and socket scan: the hot path, both memo checks inlined (a call costs as much) ---

    def _dns(self, obs: DnsAnswer) -> list[Edge]:
        t, generation = obs.seen_at, self.state.generation
        entry = self._client_memo.get(obs.client_ip)
        if entry is not None and entry[0] == generation and entry[1] <= t < entry[2]:
            client = entry[3]
        else:
            resolved = self._client(obs.client_ip, t)
            if resolved is None:
                return []
            client = resolved
        key = (obs.qname, obs.ips)
        found = self._name_memo.get(key)
        if found is not None and found[0] == generation and found[1] <= t < found[2]:
            hits = found[3]
        else:
            hits, span = self._names.name_targets(obs.qname.rstrip(".").lower(), obs.ips, t)
            if not hits:
                return []
            if span is not None:
                _remember(self._name_memo, key, (generation, span[0], span[1], hits))
        if len(hits) == 1 and hits[0][0] is not client[0]:  # the common case, inlined
            target, service, ambiguous = hits[0]
            if type(target) is InternetTarget:
                self._names.remember_name(obs, hits[0])
            unsure, seen = client[1] or ambiguous, seen_once(_M_DNS, t)
            return [
                new_edge(client[0], target, t, t, _DNS, 1, (), (), (), service, unsure, 0, False, (), seen)
            ]
        return self._edges(client, hits, _DNS, t)

    def _tcp(self, obs: TcpConnection | SocketConnection) -> list[Edge]:
        t, generation = obs.seen_at, self.state.generation
        scan = type(obs) is SocketConnection
        entry = None if scan else self._client_memo.get(obs.client_ip)
        if entry is not None and entry[0] == generation and entry[1] <= t < entry[2]:
            client = entry[3]
        else:
            if isinstance(obs, SocketConnection):
                resolved = self._client(
                    obs.client_ip, t, obs.client_hostname, obs.client_pod_uid, obs.client_pod
                )
            else:
                resolved = self._client(obs.client_ip, t)
            if resolved is None:
                return []
            client = resolved
        key = (obs.server_ip, obs.server_port)
        found = self._server_memo.get(key)
        if found is not None and found[0] == generation and found[1] <= t < found[2]:
            hits = found[3]
        else:
            hits, span = self._servers.targets(obs.server_ip, obs.server_port, t)
            if not hits:
                return []
            if span is not None:
                _remember(self._server_memo, key, (generation, span[0], span[1], hits))
        methods, method = (_SCAN, _M_SCAN) if scan else (_TCP, _M_TCP)
        ports = _PORTS.get(obs.server_port) or _PORTS.setdefault(obs.server_port, (obs.server_port,))
        if len(hits) == 1 and hits[0][0] is not client[0]:
            target, service, ambiguous = hits[0]
            if type(target) is InternetTarget:  # an Internet IP: the name the client resolved it from
                named = self._names.named(obs.client_ip, obs.server_ip, t)
                if named is not None:
                    target, service, ambiguous = named
            who, unsure = client[0], client[1] or ambiguous
            seen = seen_once(method, t)
            return [
                new_edge(who, target, t, t, methods, 1, (), (), (), service, unsure, 0, False, ports, seen)
            ]
        return self._edges(client, hits, methods, t, ports)

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
        op = (obs.operation,)
        topic = (
            KafkaTopic(obs.topic, op, obs.principal)
            if obs.allowed
            else KafkaTopic(obs.topic, (), obs.principal, op)
        )
        t, topics = obs.seen_at, (topic,)
        seen = seen_once(Method.KAFKA, t)
        return self._edge(
            Edge(client[0], server, t, t, _KAFKA, kafka_topics=topics, ambiguous=client[1], provenance=seen)
        )

    def _istio(self, obs: IstioRequest) -> list[Edge]:
        names = (obs.source_workload, obs.destination_workload)
        if obs.count <= 0 or not all(names) or "unknown" in names:
            self.stats["istio_unusable"] += 1
            return []
        source = self._workload(obs.source_namespace, obs.source_workload)
        destination = self._workload(obs.destination_namespace, obs.destination_workload)
        principals = (obs.principal,) if obs.principal else ()
        methods = (obs.method,) if obs.method else ()
        http = (HttpResource(obs.path, methods, principals, obs.statuses),) if obs.path else ()
        t, service = obs.seen_at, obs.destination_service
        seen = seen_once(Method.ISTIO, t, obs.count)  # the edge's count: requests since the last scrape
        return self._edge(
            Edge(source, destination, t, t, _ISTIO, obs.count, http, target_service=service, provenance=seen)
        )

    def _aws(self, obs: AwsOperation) -> list[Edge]:
        client = self._client(obs.client_ip, obs.seen_at)
        if client is None:
            return []
        t, action = obs.seen_at, f"{obs.service}:{obs.action}"
        target = AwsTarget(obs.resource or "*")
        seen = seen_once(Method.AWS, t)
        return self._edge(
            Edge(client[0], target, t, t, _AWS, aws_actions=(action,), ambiguous=client[1], provenance=seen)
        )

    def _workload(self, namespace: str, name: str) -> WorkloadIdentity:
        """An identity named by a watcher (Kafka, Istio): its kind from the pods/owners we know."""
        return WorkloadIdentity(namespace, name, self.state.workload_kind(namespace, name))
