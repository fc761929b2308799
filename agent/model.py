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
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field, fields
from typing import Any

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
    when the client side is local to the scanned node. For a client socket in the node's own
    network namespace (a hostNetwork pod, or a node process), the process that owns it names its
    pod when it can: ``client_pod_uid`` from its cgroup path, else ``client_pod``
    (``namespace/name``) from its environment; both empty when unknown.
    """

    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    seen_at: Timestamp
    client_hostname: str = ""
    client_pod_uid: str = ""
    client_pod: str = ""


@dataclass(frozen=True, slots=True)
class KafkaAccess:
    """One Kafka authorizer decision: a client IP did an operation on a topic of a server, as
    ``principal`` (``User:CN=...``; empty: unknown), and the authorizer ``allowed`` it or not."""

    client_ip: str
    server: WorkloadIdentity
    topic: str
    operation: str
    seen_at: Timestamp
    client_port: int = 0
    principal: str = ""
    allowed: bool = True


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
    principal: str = ""  # the source's principal (``spiffe://<domain>/ns/<ns>/sa/<sa>``; empty: plaintext)
    statuses: tuple[int, ...] = ()  # the response codes of these requests


@dataclass(frozen=True, slots=True)
class IamCall:
    """What one signed AWS request asks IAM for (``agent.aws.iam_actions`` → the IAM proxy).

    ``known`` is False when the operation, or its IAM action, is not in the datasets: ``action`` is
    then ``<prefix>:<Operation>`` as the request names it (``<prefix>:Unknown`` when the request
    names no operation), so it is reported and counted, never dropped.
    """

    service: str  # the SigV4 credential scope's service: s3, dynamodb, sqs, sts, ...
    operation: str  # the API operation: ListObjectsV2, PutItem, ... ("" when not found)
    action: str  # the IAM action: s3:ListBucket, dynamodb:PutItem, ...
    resource: str  # the ARN the action applies to, or "*" when it has none
    region: str  # from the credential scope
    known: bool = True


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
    """An HTTP path the client called: the methods, the source principals it called as (Istio's
    ``source_principal``) and the response codes seen. One per path on an edge."""

    path: str
    methods: tuple[str, ...] = ()
    principals: tuple[str, ...] = ()
    statuses: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True, order=True)
class KafkaTopic:
    """What one principal (empty: unknown) did on a topic: the operations the broker allowed, and
    those it ``denied`` (kept to show what an ACL would break; never exported as granted). One per
    (topic, principal) on an edge."""

    name: str
    operations: tuple[str, ...] = ()
    principal: str = ""
    denied: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.principal)


Target = WorkloadIdentity | InternetTarget | AwsTarget


@dataclass(frozen=True, slots=True, order=True)
class MethodSeen:
    """What one method saw of an edge: when first and last, and how often (an edge's ``count``
    counted per method). One per method on an edge (:attr:`Edge.provenance`), sorted by method."""

    method: Method
    first_seen: Timestamp
    last_seen: Timestamp
    count: int = 1


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
    # When target_service was last seen, if before last_seen (0: at last_seen): a later sighting
    # without a Service must not make an older Service look newer than one seen after it.
    target_service_seen: Timestamp = 0.0
    truncated: bool = False  # a detail set hit its bound (MAX_DETAILS, MAX_VALUES): values were left out
    # The server ports of the TCP connections seen (SYN, socket scan), sorted; not part of the key.
    # Empty: unknown (an edge seen only through DNS, Kafka logs, Istio or the AWS proxy).
    ports: tuple[int, ...] = ()
    # Per method, when it saw the edge and how often (one per method, sorted by method). Empty: not
    # known (an edge written before version 5 of the document); nothing is derived for it.
    provenance: tuple[MethodSeen, ...] = ()

    @property
    def key(self) -> tuple[WorkloadIdentity, Target]:
        """What makes two edges the same edge: the store merges edges with equal keys."""
        return (self.client, self.target)

    @property
    def dns_only(self) -> bool:
        """Seen only through DNS: a name was resolved, no connection seen (a lookup that led
        nowhere, or traffic no other method saw)."""
        return self.methods == _DNS_ONLY


_DNS_ONLY = frozenset({Method.DNS})
_EDGE_SLOTS = [getattr(Edge, f.name).__set__ for f in fields(Edge)]
# as many as Edge has fields
_s0, _s1, _s2, _s3, _s4, _s5, _s6, _s7, _s8, _s9, _s10, _s11, _s12, _s13, _s14 = _EDGE_SLOTS
_alloc = object.__new__


def new_edge(  # noqa: PLR0917 - Edge's fields, positionally, for speed
    client: WorkloadIdentity,
    target: Target,
    first_seen: Timestamp,
    last_seen: Timestamp,
    methods: frozenset[Method],
    count: int,
    http: tuple[HttpResource, ...],
    kafka_topics: tuple[KafkaTopic, ...],
    aws_actions: tuple[str, ...],
    target_service: str,
    ambiguous: bool,
    target_service_seen: Timestamp = 0.0,
    truncated: bool = False,
    ports: tuple[int, ...] = (),
    provenance: tuple[MethodSeen, ...] = (),
) -> Edge:
    """``Edge(...)`` with every field given, for the hot paths (the resolver, the codec's bulk
    reads): it writes the slots directly instead of through the frozen ``__setattr__`` per field,
    which halves the cost. Equal to the plain constructor (tests/unit/agent/test_model_merge.py)."""
    edge: Edge = _alloc(Edge)
    _s0(edge, client), _s1(edge, target), _s2(edge, first_seen), _s3(edge, last_seen), _s4(edge, methods)
    _s5(edge, count), _s6(edge, http), _s7(edge, kafka_topics), _s8(edge, aws_actions)
    _s9(edge, target_service), _s10(edge, ambiguous), _s11(edge, target_service_seen), _s12(edge, truncated)
    _s13(edge, ports), _s14(edge, provenance)
    return edge


_m0, _m1, _m2, _m3 = [getattr(MethodSeen, f.name).__set__ for f in fields(MethodSeen)]


def seen_once(method: Method, t: Timestamp, count: int = 1) -> tuple[MethodSeen, ...]:
    """``(MethodSeen(method, t, t, count),)``, the provenance of one sighting, for the resolver's
    hot path: slots written directly, as :func:`new_edge` does (equal to the plain constructor)."""
    seen: MethodSeen = _alloc(MethodSeen)
    _m0(seen, method), _m1(seen, t), _m2(seen, t), _m3(seen, count)
    return (seen,)


MAX_DETAILS = 256
"""Bound of an edge's HTTP paths, Kafka topics, AWS actions and server ports: each keeps its lexicographically
smallest values, so a client that requests ever new paths (IDs in them) cannot grow one edge
without limit, while merging stays commutative, associative and idempotent."""
MAX_VALUES = 32
"""Bound of the values of one detail: the HTTP methods, principals and response codes of one path,
the operations (allowed or denied) on one topic (the same rule)."""


def _smallest(values: set[Any], bound: int) -> tuple[tuple[Any, ...], bool]:
    """The ``bound`` smallest of ``values``, sorted, and whether any were left out."""
    ordered = sorted(values)
    return tuple(ordered[:bound]), len(ordered) > bound


def _merged_details(rows: Iterable[tuple[Hashable, tuple[tuple[Any, ...], ...]]]) -> tuple[list[Any], bool]:
    """Rows of (key, value tuples) → per key, each value tuple's union, bounded (:data:`MAX_DETAILS`
    keys, :data:`MAX_VALUES` values each), keys sorted; and whether anything was left out."""
    merged: dict[Any, list[set[Any]]] = {}
    for key, values in rows:
        sets = merged.get(key)
        if sets is None:
            merged[key] = [set(v) for v in values]
        else:
            for into, more in zip(sets, values, strict=True):
                into.update(more)
    keys, cut = _smallest(set(merged), MAX_DETAILS)
    out = []
    for key in keys:
        parts = []
        for value_set in merged[key]:
            kept, cut_values = _smallest(value_set, MAX_VALUES)
            parts.append(kept)
            cut = cut or cut_values
        out.append((key, parts))
    return out, cut


def _merged_http(
    a: tuple[HttpResource, ...], b: tuple[HttpResource, ...]
) -> tuple[tuple[HttpResource, ...], bool]:
    rows, cut = _merged_details((r.path, (r.methods, r.principals, r.statuses)) for r in a + b)
    return tuple(HttpResource(path, *parts) for path, parts in rows), cut


def _merged_kafka(
    a: tuple[KafkaTopic, ...], b: tuple[KafkaTopic, ...]
) -> tuple[tuple[KafkaTopic, ...], bool]:
    rows, cut = _merged_details(((t.name, t.principal), (t.operations, t.denied)) for t in a + b)
    return tuple(KafkaTopic(name, ops, principal, denied) for (name, principal), (ops, denied) in rows), cut


def merged_provenance(
    a: tuple[MethodSeen, ...], b: tuple[MethodSeen, ...], *, cumulative: bool = True
) -> tuple[MethodSeen, ...]:
    """Two provenances (or, ``b`` empty, one with a method repeated) as one: per method the
    earliest ``first_seen``, the latest ``last_seen`` and the counts summed (``cumulative``: their
    maximum, as :func:`merge_edges` does ``count``); one per method, sorted by method."""
    if len(a) == 1 and len(b) == 1 and a[0].method == b[0].method:  # the store's common case
        x, y = a[0], b[0]
        count = max(x.count, y.count) if cumulative else x.count + y.count
        return (MethodSeen(x.method, min(x.first_seen, y.first_seen), max(x.last_seen, y.last_seen), count),)
    merged: dict[Method, MethodSeen] = {}
    for seen in a + b:
        found = merged.get(seen.method)
        if found is None:
            merged[seen.method] = seen
            continue
        count = max(found.count, seen.count) if cumulative else found.count + seen.count
        merged[seen.method] = MethodSeen(
            seen.method, min(found.first_seen, seen.first_seen), max(found.last_seen, seen.last_seen), count
        )
    return tuple(sorted(merged.values()))


def merge_edges(a: Edge, b: Edge, *, cumulative: bool = True) -> Edge:
    """The one merge of two sightings of the same edge (``a.key == b.key``), used by every store.

    ``first_seen`` is the earliest, ``last_seen`` the latest; methods, AWS actions, HTTP methods,
    principals and response codes per path, Kafka operations (allowed, denied) per topic and
    principal, and server ports are unions; ``provenance`` is merged per method
    (:func:`merged_provenance`; an edge without one adds nothing); ``target_service`` is the non-empty one
    seen last (by ``target_service_seen``; on a tie the greater name: an empty one never erases a
    known service, and a later sighting without one keeps when the known one was seen);
    ``ambiguous`` holds only while both are ambiguous (one unambiguous sighting pins the edge to
    its client for good). The result is canonical: sorted tuples. Detail sets are bounded
    (:data:`MAX_DETAILS`, :data:`MAX_VALUES`: the smallest values kept), and ``truncated`` says
    that either input was, or that the union overflowed.

    ``count``: with ``cumulative`` (the cloud, whose uploaders send their cumulative count) the
    *maximum*, so a retried or re-sent batch changes nothing: the merge is then idempotent and
    commutative, and merging either input into the result again gives the result. Without it (the
    mapper's store, which merges disjoint deltas of observations) the *sum*.
    """
    if a.key != b.key:
        raise ValueError(f"cannot merge edges with different keys: {a.key} and {b.key}")
    # Most edges have no details: skip the set work for them.
    http, cut_http = _merged_http(a.http, b.http) if a.http or b.http else ((), False)
    kafka, cut_kafka = (
        _merged_kafka(a.kafka_topics, b.kafka_topics) if a.kafka_topics or b.kafka_topics else ((), False)
    )
    aws, cut_aws = (
        _smallest({*a.aws_actions, *b.aws_actions}, MAX_DETAILS)
        if a.aws_actions or b.aws_actions
        else ((), False)
    )
    ports, cut_ports = (
        (a.ports, False)
        if a.ports == b.ports
        else _smallest({*a.ports, *b.ports}, MAX_DETAILS)
        if a.ports and b.ports
        else (a.ports or b.ports, False)
    )
    pa, pb = a.provenance, b.provenance
    provenance = (
        pa
        if cumulative and pa == pb
        else merged_provenance(pa, pb, cumulative=cumulative)
        if pa and pb
        else pa or pb
    )
    service, service_seen = _newer_service(a, b)
    last_seen = max(a.last_seen, b.last_seen)
    return Edge(
        client=a.client,
        target=a.target,
        first_seen=min(a.first_seen, b.first_seen),
        last_seen=last_seen,
        methods=a.methods if a.methods == b.methods else a.methods | b.methods,
        count=max(a.count, b.count) if cumulative else a.count + b.count,
        http=http,
        kafka_topics=kafka,
        aws_actions=aws,
        target_service=service,
        ambiguous=a.ambiguous and b.ambiguous,
        target_service_seen=service_seen if service and service_seen != last_seen else 0.0,
        truncated=a.truncated or b.truncated or cut_http or cut_kafka or cut_aws or cut_ports,
        ports=ports,
        provenance=provenance,
    )


def _newer_service(a: Edge, b: Edge) -> tuple[str, float]:
    """The non-empty ``target_service`` seen last, and when (on a tie, the greater name)."""
    seen_a = (a.target_service_seen or a.last_seen) if a.target_service else -1.0
    seen_b = (b.target_service_seen or b.last_seen) if b.target_service else -1.0
    seen, service = max((seen_a, a.target_service), (seen_b, b.target_service))
    return service, seen


# --------------------------------------------------------------------------- cluster facts, snapshots
# What a policy evaluator needs of the cluster beyond the edges (``agent.policy``), exposed by the
# mapper's API (``clusterFacts``), kept in snapshots, and read by the NetworkPolicy exporter.


@dataclass(frozen=True, slots=True, order=True)
class NamedPort:
    """A container port of a workload's pods: ``name`` (empty when unnamed), number and protocol."""

    name: str
    port: int
    protocol: str = "TCP"


@dataclass(frozen=True, slots=True, order=True)
class WorkloadFacts:
    """A workload's pods as policies select them: their labels (those all its pods share), their
    container ports, whether they run on the host network, and their current IPs."""

    workload: WorkloadIdentity
    labels: tuple[tuple[str, str], ...] = ()  # sorted (key, value)
    ports: tuple[NamedPort, ...] = ()
    host_network: bool = False
    ips: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, order=True)
class NamespaceFacts:
    name: str
    labels: tuple[
        tuple[str, str], ...
    ] = ()  # sorted (key, value); the API server adds kubernetes.io/metadata.name


@dataclass(frozen=True, slots=True, order=True)
class NodeFacts:
    name: str
    addresses: tuple[str, ...] = ()  # InternalIP/ExternalIP: the source of hostNetwork clients' traffic


@dataclass(frozen=True, slots=True)
class ClusterFacts:
    """The cluster as a policy evaluator sees it. Empty: nothing known (labels default to
    ``app.kubernetes.io/name: <workload>``, namespaces to their ``kubernetes.io/metadata.name``)."""

    namespaces: tuple[NamespaceFacts, ...] = ()
    workloads: tuple[WorkloadFacts, ...] = ()
    nodes: tuple[NodeFacts, ...] = ()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The map at ``taken_at``: its edges and the cluster's facts, saved under ``name`` (``auto``:
    saved by the mapper's own schedule, not by a user)."""

    name: str
    taken_at: Timestamp
    edges: tuple[Edge, ...] = ()
    facts: ClusterFacts = field(default_factory=ClusterFacts)
    auto: bool = False
