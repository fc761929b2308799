"""Observations → edges: who (which workload) talked to whom, resolved against the cluster state.

Observations come from the mapper's report mutations (sniffer DNS/TCP/socket scan, Kafka, Istio
and AWS watchers); the cluster state (`agent.mapper.cluster.ClusterState`) is kept current by
`agent.mapper.kube`; the edges go to the store. Pure: no I/O, no clock. Every IP is resolved *as
of the observation's `seen_at`* (IP reuse), and every observation that yields no edge is counted
in `Resolver.stats` by reason, so a dropped edge is visible in metrics rather than silent.

The resolving is done by three parts, each its own module: `agent.mapper.clients` (client IP →
workload, the hostNetwork rule), `agent.mapper.names` (DNS names → targets, and Internet IPs named
by the client's own DNS answers) and `agent.mapper.servers` (server IP:port → targets, Kafka
brokers, Istio workloads, AWS resources). This module dispatches each observation to them and
builds the edges; the hot path (DNS and TCP) reads the parts' memos inline.

Threading: a `Resolver` is used by one thread (the mapper's single report-queue worker,
`agent.mapper.api.reportqueue`): its parts' memos, name table and `stats` take no lock, and must
not be shared.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from agent.mapper.clients import ClientResolver
from agent.mapper.cluster import ClusterState
from agent.mapper.hits import Client, Hit, remember
from agent.mapper.names import NameResolver
from agent.mapper.servers import ServerResolver
from agent.model import (
    AwsOperation,
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
    new_edge,
)

_METHODS = {m: frozenset({m}) for m in Method}
_DNS, _TCP, _SCAN = _METHODS[Method.DNS], _METHODS[Method.TCP], _METHODS[Method.SOCKET_SCAN]


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
        self.clients = ClientResolver(state, self.stats)
        self.servers = ServerResolver(state, self.stats, internal_cidrs)
        self.names = NameResolver(state, self.stats, self.servers, cluster_domain)
        # Bound once: the hot path reads the memos and calls the parts without attribute lookups.
        self._client_memo, self._client = self.clients.memo, self.clients.client
        self._name_memo, self._name_targets = self.names.memo, self.names.targets
        self._server_memo, self._server_targets = self.servers.memo, self.servers.targets
        self._remember_name, self._named = self.names.remember, self.names.named
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
        client: Client,
        hits: list[Hit],
        method: Method,
        t: float,
        count: int = 1,
        http: tuple[HttpResource, ...] = (),
        kafka: tuple[KafkaTopic, ...] = (),
        aws: tuple[str, ...] = (),
    ) -> list[Edge]:
        identity, client_ambiguous = client
        methods, new = _METHODS[method], new_edge
        edges = [
            new(
                identity,
                target,
                t,
                t,
                methods,
                count,
                http,
                kafka,
                aws,
                service,
                client_ambiguous or ambiguous,
            )
            for target, service, ambiguous in hits
            # Identities from the state are interned (`is` suffices); Kafka/Istio ones are built here.
            if target is not identity and target != identity
        ]
        if len(edges) < len(hits):
            self.stats["self_edge"] += len(hits) - len(edges)
        return edges

    def _emit(self, client: Client, hits: list[Hit], methods: frozenset[Method], t: float) -> list[Edge]:
        """Edges of a DNS/TCP observation: all identities come from the state, so `is` finds self-edges."""
        identity, ambiguous = client
        if len(hits) == 1:
            target, service, target_ambiguous = hits[0]
            if target is identity:
                self.stats["self_edge"] += 1
                return []
            return [
                new_edge(
                    identity, target, t, t, methods, 1, (), (), (), service, ambiguous or target_ambiguous
                )
            ]
        return self._edges(client, hits, next(iter(methods)), t)

    # -- DNS ---------------------------------------------------------------------------------

    def _dns(self, obs: DnsAnswer) -> list[Edge]:
        # The hot path: both memo checks are inlined (a call costs as much as the check).
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
            hits, span = self._name_targets(obs.qname.rstrip(".").lower(), obs.ips, t)
            if not hits:
                return []
            if span is not None:
                remember(self._name_memo, key, (generation, span[0], span[1], hits))
        if len(hits) == 1 and hits[0][0] is not client[0]:  # the common case, inlined
            target, service, ambiguous = hits[0]
            if type(target) is InternetTarget:
                self._remember_name(obs, hits[0])
            return [new_edge(client[0], target, t, t, _DNS, 1, (), (), (), service, client[1] or ambiguous)]
        return self._emit(client, hits, _DNS, t)

    # -- TCP and socket scan -----------------------------------------------------------------

    def _tcp(self, obs: TcpConnection | SocketConnection) -> list[Edge]:
        t, generation = obs.seen_at, self.state.generation
        scan = type(obs) is SocketConnection
        entry = None if scan else self._client_memo.get(obs.client_ip)
        if entry is not None and entry[0] == generation and entry[1] <= t < entry[2]:
            client = entry[3]
        else:
            hostname = obs.client_hostname if scan else ""  # type: ignore[union-attr]
            resolved = self._client(obs.client_ip, t, hostname)
            if resolved is None:
                return []
            client = resolved
        key = (obs.server_ip, obs.server_port)
        found = self._server_memo.get(key)
        if found is not None and found[0] == generation and found[1] <= t < found[2]:
            hits = found[3]
        else:
            hits, span = self._server_targets(obs.server_ip, obs.server_port, t)
            if not hits:
                return []
            if span is not None:
                remember(self._server_memo, key, (generation, span[0], span[1], hits))
        methods = _SCAN if scan else _TCP
        if len(hits) == 1 and hits[0][0] is not client[0]:
            target, service, ambiguous = hits[0]
            if type(target) is InternetTarget:  # an Internet IP: the name the client resolved it from
                named = self._named(obs.client_ip, obs.server_ip, t)
                if named is not None:
                    target, service, ambiguous = named
            return [
                new_edge(client[0], target, t, t, methods, 1, (), (), (), service, client[1] or ambiguous)
            ]
        return self._emit(client, hits, methods, t)

    # -- Kafka, Istio, AWS -------------------------------------------------------------------

    def _kafka(self, obs: KafkaAccess) -> list[Edge]:
        client = self._client(obs.client_ip, obs.seen_at)
        if client is None:
            return []
        server = self.servers.kafka_server(obs.server)
        topics = (KafkaTopic(obs.topic, (obs.operation,)),)
        return self._edges(client, [(server, "", False)], Method.KAFKA, obs.seen_at, kafka=topics)

    def _istio(self, obs: IstioRequest) -> list[Edge]:
        names = (obs.source_workload, obs.destination_workload)
        if obs.count <= 0 or not all(names) or "unknown" in names:
            self.stats["istio_unusable"] += 1
            return []
        source = self.servers.workload(obs.source_namespace, obs.source_workload)
        destination = self.servers.workload(obs.destination_namespace, obs.destination_workload)
        http = (HttpResource(obs.path, (obs.method,) if obs.method else ()),) if obs.path else ()
        hits: list[Hit] = [(destination, obs.destination_service, False)]
        return self._edges((source, False), hits, Method.ISTIO, obs.seen_at, count=obs.count, http=http)

    def _aws(self, obs: AwsOperation) -> list[Edge]:
        client = self._client(obs.client_ip, obs.seen_at)
        if client is None:
            return []
        hits: list[Hit] = [(self.servers.aws_target(obs.resource), "", False)]
        return self._edges(client, hits, Method.AWS, obs.seen_at, aws=(f"{obs.service}:{obs.action}",))
