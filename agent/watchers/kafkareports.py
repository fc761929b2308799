"""Kafka topic accesses → the ``reportKafkaMapperResults`` mutations the watcher sends (pure).

Where the data comes from: :func:`agent.watchers.kafka.classify_authorizer_line` gives a
:class:`~agent.watchers.kafka.TopicAccess` per authorizer line; the watcher
(:mod:`agent.watchers.kafkawatcher`) knows which broker pod logged it and when, and aggregates the
accesses in an :class:`agent.pending.Pending` keyed by :class:`AccessKey` (the newest sighting wins:
:func:`combine`). Where it goes: :func:`mutations_for` turns a drained batch into mutations that
:class:`agent.reporter.Reporter` sends to the mapper (``agent/mapper/api/schema.graphql``:
``KafkaMapperResult {srcIp, serverPodName, serverNamespace, topic, operation, lastSeen, principal,
allowed}``; the mapper's side is ``agent.mapper.api.mutations.kafka_results``).

Client IPs are normalised here: Java logs IPv6 uncompressed (``fd00:10:244:0:0:0:0:1b``), maybe
with the broker's ``%scope`` (meaningless off the broker) or as an IPv4-mapped address; the mapper
resolves IPs as :mod:`ipaddress` prints them, so ``fd00:10:244::1b`` and ``10.244.0.27`` are sent.
Operations are sent by their canonical ACL name (``Read``, ``DescribeConfigs``): the mapper
lower-cases them and maps them to its ``KafkaOperation`` values.
"""

from __future__ import annotations

import ipaddress
from typing import Any, NamedTuple

from agent.pending import Batch
from agent.reporter import Mutation, sorted_chunks
from agent.watchers.kafka import TopicAccess
from agent.wire import format_time

__all__ = [
    "MAX_RESULTS_PER_MUTATION",
    "MUTATION",
    "AccessKey",
    "access_key",
    "combine",
    "mutations_for",
    "normalise_ip",
    "result_for",
]

MUTATION = "reportKafkaMapperResults"
_QUERY = f"mutation {MUTATION}($results: KafkaMapperResults!) {{ {MUTATION}(results: $results) }}"

MAX_RESULTS_PER_MUTATION = 5_000
"""Results per request. A result is at most ~1.5 kB (a 1024-character principal, a 249-character
topic), so a request stays far below the mapper's 16 MiB body limit whatever the batch size."""

_IP_CACHE_LIMIT = 4096
_IPS: dict[str, str] = {}  # as logged → as sent; brokers see the same few clients over and over


class AccessKey(NamedTuple):
    """What one reported result is about: accesses with equal keys are reported once per interval."""

    client_ip: str  # normalised (see the module docstring)
    server_pod: str
    server_namespace: str
    topic: str
    operation: str  # canonical ACL name: Read, Write, DescribeConfigs ...
    principal: str
    allowed: bool


def normalise_ip(host: str) -> str:
    """A host as Java logged it → as :mod:`ipaddress` prints it (no scope, IPv4-mapped → IPv4).
    Raises ValueError when it is no IP (the parser only gives IPs)."""
    found = _IPS.get(host)
    if found is None:
        address = ipaddress.ip_address(host.partition("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        found = str(address)
        if len(_IPS) >= _IP_CACHE_LIMIT:  # emptied when full: a rare rebuild beats LRU bookkeeping
            _IPS.clear()
        _IPS[host] = found
    return found


def access_key(access: TopicAccess, server_namespace: str, server_pod: str) -> AccessKey:
    """The key of one access logged by the broker pod ``server_pod.server_namespace``."""
    return AccessKey(
        normalise_ip(access.host),
        server_pod,
        server_namespace,
        access.topic,
        access.operation,
        access.principal,
        access.allowed,
    )


def combine(a: float, b: float) -> float:
    """Two sightings of one key: the newest time wins."""
    return a if a >= b else b


def result_for(key: AccessKey, last_seen: float) -> dict[str, Any]:
    """One key and its newest sighting → a ``KafkaMapperResult`` input."""
    return {
        "srcIp": key.client_ip,
        "serverPodName": key.server_pod,
        "serverNamespace": key.server_namespace,
        "topic": key.topic,
        "operation": key.operation,
        "lastSeen": format_time(last_seen),
        "principal": key.principal,
        "allowed": key.allowed,
    }


def mutations_for(batch: Batch[AccessKey, float]) -> list[Mutation[AccessKey, float]]:
    """A drained batch → its mutations, in key order (stable output), at most
    :data:`MAX_RESULTS_PER_MUTATION` results each; none for an empty batch."""
    mutations = []
    for chunk in sorted_chunks(batch.entries, MAX_RESULTS_PER_MUTATION):
        variables = {"results": {"results": [result_for(key, seen) for key, seen in chunk.items()]}}
        mutations.append(Mutation(MUTATION, _QUERY, variables, chunk))
    return mutations
