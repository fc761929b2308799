"""The GraphQL ``Time`` scalar: RFC 3339 text on the wire, float epoch seconds inside.

Producers (the sniffer, the Kafka and Istio watchers) send times as RFC 3339 with ``Z`` or a
numeric offset and fractional seconds of any precision (Go sends nanoseconds); resolvers hand
back ``agent.model.Timestamp`` (float seconds since the epoch, UTC). Both ways are the one
time format, :func:`agent.wire.parse_time` and :func:`agent.wire.format_time`; this module only
binds them to ariadne. A malformed time raises :class:`agent.wire.WireError` (a ``ValueError``),
which graphql-core turns into a variable-coercion error (a GraphQL error, never an HTTP 500).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ariadne import ScalarType
from graphql import StringValueNode, ValueNode

from agent.wire import WireError, format_time, parse_time

time_scalar = ScalarType("Time")


@time_scalar.serializer
def _serialize(value: Any) -> str:
    if isinstance(value, datetime):
        return format_time(value.timestamp())
    if isinstance(value, str):  # an edge document's time (agent.wire), written already
        return format_time(parse_time(value))
    return format_time(float(value))


@time_scalar.value_parser
def _parse_value(value: Any) -> float:
    return parse_time(value)


@time_scalar.literal_parser
def _parse_literal(node: ValueNode, variables: dict[str, Any] | None = None) -> float:
    if not isinstance(node, StringValueNode):
        raise WireError("a time must be an RFC 3339 string")
    return parse_time(node.value)
