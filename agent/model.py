"""The data that flows between the stages of network-mapper.

Producers (the sniffer's DNS parser, TCP capture and socket scan, the Kafka and Istio
watchers, the AWS proxy) create *observations*: what was seen on the wire, by IP and port,
at a time. The mapper's resolver turns observations plus cluster state into *edges*
between *workload identities*; the store keeps edges, and exporters, the CLI and the cloud
read them. Everything here is a frozen, slotted dataclass: cheap to create on hot paths,
hashable (so collectors can aggregate by value) and safe to pass between threads.

Times are float seconds since the Unix epoch (UTC): the capture layer gets them that way
from libpcap, and a float is ~10x cheaper to make than a ``datetime`` on the hot path.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

Timestamp = float
"""Seconds since the Unix epoch, UTC."""


class Method(enum.StrEnum):
    """How an edge was seen. Kept per edge so users can judge its evidence."""

    DNS = "dns"
    TCP = "tcp"
    SOCKET_SCAN = "socket-scan"
    KAFKA = "kafka"
    ISTIO = "istio"
    AWS = "aws"


# --------------------------------------------------------------------------- observations


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """A successful DNS response seen on the wire.

    The client is the response's destination; ``ips`` are the A/AAAA records of the final
    name; ``cnames`` is the chain from the queried name to that final name, in order.
    """

    client_ip: str
    client_port: int
    server_ip: str
    qname: str
    ips: tuple[str, ...]
    seen_at: Timestamp
    cnames: tuple[str, ...] = ()
    ttl: int = 0


@dataclass(frozen=True, slots=True)
class TcpConnection:
    """A TCP connection attempt (SYN without ACK) captured on the wire."""

    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    seen_at: Timestamp


@dataclass(frozen=True, slots=True)
class SocketConnection:
    """An established TCP connection found by scanning ``/proc/<pid>/net/tcp{,6}``.

    ``client_hostname`` is the hostname of a process in the client's network namespace,
    when the client side is local to the scanned node.
    """

    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    seen_at: Timestamp
    client_hostname: str = ""


@dataclass(frozen=True, slots=True)
class KafkaAccess:
    """One Kafka authorizer decision: a client IP did an operation on a topic of a server."""

    client_ip: str
    server: WorkloadIdentity
    topic: str
    operation: str
    seen_at: Timestamp
    client_port: int = 0


@dataclass(frozen=True, slots=True)
class IstioRequest:
    """HTTP requests between two workloads, from an Istio sidecar's ``istio_requests_total``.

    Istio labels name workloads rather than IPs; ``count`` is the delta since the last scrape.
    """

    source_workload: str
    source_namespace: str
    destination_workload: str
    destination_namespace: str
    destination_service: str
    path: str
    method: str
    count: int
    seen_at: Timestamp


@dataclass(frozen=True, slots=True)
class AwsOperation:
    """A signed AWS API request seen by the IAM proxy, mapped to its IAM action and resource."""

    client_ip: str
    client_port: int
    service: str
    action: str
    resource: str
    region: str
    seen_at: Timestamp


Observation = DnsAnswer | TcpConnection | SocketConnection | KafkaAccess | IstioRequest | AwsOperation


# --------------------------------------------------------------------------- identities and edges


@dataclass(frozen=True, slots=True, order=True)
class WorkloadIdentity:
    """A workload: what a pod is, as a user names it. ``kind`` is the root owner's kind
    (``Deployment``, ``StatefulSet``, ``CronJob``, ``Pod`` ...) and is never dropped."""

    namespace: str
    name: str
    kind: str = ""

    def __str__(self) -> str:
        return f"{self.name}.{self.namespace}"


@dataclass(frozen=True, slots=True, order=True)
class InternetTarget:
    """A destination outside the cluster, by DNS name (empty when only the IP is known)."""

    dns_name: str
    ips: tuple[str, ...] = ()
    port: int = 0


@dataclass(frozen=True, slots=True, order=True)
class AwsTarget:
    """An AWS resource (ARN, or ``*`` when the action has none)."""

    arn: str


@dataclass(frozen=True, slots=True, order=True)
class HttpResource:
    path: str
    methods: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, order=True)
class KafkaTopic:
    name: str
    operations: tuple[str, ...] = ()


Target = WorkloadIdentity | InternetTarget | AwsTarget


@dataclass(frozen=True, slots=True)
class Edge:
    """Client → target, with what was seen of it and by which methods."""

    client: WorkloadIdentity
    target: Target
    first_seen: Timestamp
    last_seen: Timestamp
    methods: frozenset[Method] = field(default_factory=frozenset)
    count: int = 1
    http: tuple[HttpResource, ...] = ()
    kafka_topics: tuple[KafkaTopic, ...] = ()
    aws_actions: tuple[str, ...] = ()
    target_service: str = ""  # the Kubernetes Service the client reached the target through, if any
    ambiguous: bool = False  # the client could not be pinned to one pod (e.g. a hostNetwork IP)

    @property
    def key(self) -> tuple[WorkloadIdentity, Target]:
        """What makes two edges the same edge: the store merges edges with equal keys."""
        return (self.client, self.target)


def _merge_named(
    a: tuple[tuple[str, tuple[str, ...]], ...], b: tuple[tuple[str, tuple[str, ...]], ...]
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    merged: dict[str, set[str]] = {}
    for name, values in a + b:
        merged.setdefault(name, set()).update(values)
    return tuple((name, tuple(sorted(values))) for name, values in sorted(merged.items()))


def merge_edges(a: Edge, b: Edge) -> Edge:
    """The cloud's idempotent merge of two observations of the same edge (``a.key == b.key``).

    ``first_seen`` is the earliest, ``last_seen`` the latest; methods, AWS actions, HTTP methods
    per path and Kafka operations per topic are unions; ``count`` is the *maximum*, because
    uploaders send their cumulative count (so a retried or re-sent batch changes nothing);
    ``target_service`` is the newer edge's (by ``last_seen``; on a tie the greater name) unless
    that is empty; ``ambiguous`` holds only while both are ambiguous. The merge is commutative,
    and merging either input into ``merge_edges(a, b)`` again gives the same edge. The result
    is canonical: sorted tuples.
    (The mapper's own store sums counts instead: it merges disjoint observation deltas.)
    """
    if a.key != b.key:
        raise ValueError(f"cannot merge edges with different keys: {a.key} and {b.key}")
    http = _merge_named(
        tuple((r.path, r.methods) for r in a.http), tuple((r.path, r.methods) for r in b.http)
    )
    kafka = _merge_named(
        tuple((t.name, t.operations) for t in a.kafka_topics),
        tuple((t.name, t.operations) for t in b.kafka_topics),
    )
    newer, older = (b, a) if (b.last_seen, b.target_service) >= (a.last_seen, a.target_service) else (a, b)
    return Edge(
        client=a.client,
        target=a.target,
        first_seen=min(a.first_seen, b.first_seen),
        last_seen=max(a.last_seen, b.last_seen),
        methods=a.methods | b.methods,
        count=max(a.count, b.count),
        http=tuple(HttpResource(path, methods) for path, methods in http),
        kafka_topics=tuple(KafkaTopic(name, ops) for name, ops in kafka),
        aws_actions=tuple(sorted(set(a.aws_actions) | set(b.aws_actions))),
        target_service=newer.target_service or older.target_service,
        ambiguous=a.ambiguous and b.ambiguous,
    )
