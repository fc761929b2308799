"""IAM calls seen by the AWS proxy → the ``reportAWSOperation`` mutations it sends (pure).

Where the data comes from: :func:`agent.aws.iam_actions.iam_calls` maps each signed request to its
:class:`~agent.model.IamCall` s; the proxy (:mod:`agent.aws.proxy_addon`) knows the connecting
client's address and when, has :class:`agent.aws.accounts.AccountBook` fill the account of ARNs
that lack it, and aggregates the calls in an :class:`agent.pending.Pending` keyed by
:class:`OperationKey` (client IP, resource, action; the newest sighting wins: :func:`combine`), so
memory is bounded by distinct keys, not by requests. Where it goes: :func:`mutations_for` turns a
drained batch into mutations that :class:`agent.reporter.Reporter` sends to the mapper
(``agent/mapper/api/schema.graphql``: ``input AWSOperation {resource, actions, srcIp}``; the
mapper's side is ``agent.mapper.api.mutations.aws_operations``), one input per (client IP,
resource) with its actions sorted.

Only the action and the resource ARN leave the proxy: never a header, a body, a signature or a
credential. The region is part of the ARN (``AWSOperation`` has no field of its own for it), and
the mapper stamps the time it receives a report, so the sighting time only orders the collector.
Client IPs are sent as :mod:`ipaddress` prints them (IPv4-mapped IPv6 → IPv4, no scope), which is
how the mapper resolves them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, NamedTuple

from agent.model import IamCall
from agent.pending import Batch
from agent.reporter import Mutation, sorted_chunks

__all__ = [
    "MAX_KEYS_PER_MUTATION",
    "MUTATION",
    "OperationKey",
    "client_ip",
    "combine",
    "mutations_for",
    "operation_key",
    "operations_for",
]

MUTATION = "reportAWSOperation"
_QUERY = f"mutation {MUTATION}($operation: [AWSOperation!]!) {{ {MUTATION}(operation: $operation) }}"

MAX_KEYS_PER_MUTATION = 2_000
"""(client, resource, action) keys per request. A key is at most ~2.3 kB on the wire (an ARN and
an action of at most 2048 characters each are what the mapper accepts), so a request stays far
below the mapper's 16 MiB body limit whatever the batch size."""


class OperationKey(NamedTuple):
    """What one reported action is about. The field order makes keys of one (client, resource)
    adjacent when sorted, so a chunk of sorted keys groups into few ``AWSOperation`` inputs."""

    client_ip: str  # normalised: see :func:`client_ip`
    resource: str  # the ARN, or "*" for actions on no resource
    action: str  # the IAM action: s3:GetObject, dynamodb:PutItem, ...


@lru_cache(maxsize=4096)  # the proxy sees the same few pods over and over
def client_ip(host: str) -> str:
    """A connecting peer's address → as :mod:`ipaddress` prints it: ``::ffff:10.0.0.7`` (a
    dual-stack listener's view of an IPv4 client) → ``10.0.0.7``, a ``%scope`` dropped. Raises
    ValueError when ``host`` is no IP."""
    address = ipaddress.ip_address(host.partition("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def operation_key(src_ip: str, call: IamCall) -> OperationKey:
    """The key of ``call`` made by the client at ``src_ip`` (already normalised)."""
    return OperationKey(src_ip, call.resource, call.action)


def combine(a: float, b: float) -> float:
    """Two sightings of one key: the newest time wins."""
    return a if a >= b else b


def operations_for(keys: Mapping[OperationKey, float]) -> list[dict[str, Any]]:
    """Keys → ``AWSOperation`` inputs: one per (client IP, resource), its actions sorted; the
    inputs sorted by client IP, then resource."""
    grouped: dict[tuple[str, str], set[str]] = {}
    for key in keys:
        grouped.setdefault((key.client_ip, key.resource), set()).add(key.action)
    return [
        {"resource": resource, "actions": sorted(actions), "srcIp": ip}
        for (ip, resource), actions in sorted(grouped.items())
    ]


def mutations_for(batch: Batch[OperationKey, float]) -> list[Mutation[OperationKey, float]]:
    """A drained batch → its mutations, in key order (stable output), at most
    :data:`MAX_KEYS_PER_MUTATION` keys each; none for an empty batch."""
    return [
        Mutation(MUTATION, _QUERY, {"operation": operations_for(chunk)}, chunk)
        for chunk in sorted_chunks(batch.entries, MAX_KEYS_PER_MUTATION)
    ]
