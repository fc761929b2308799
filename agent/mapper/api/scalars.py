"""The GraphQL ``Time`` scalar: RFC 3339 text on the wire, float epoch seconds inside.

Producers (the sniffer, the Kafka and Istio watchers) send times as RFC 3339 with ``Z`` or a
numeric offset and fractional seconds of any precision (Go sends nanoseconds); resolvers hand
back ``agent.model.Timestamp`` (float seconds since the epoch, UTC). Both ways are the one
time format, :func:`agent.wire.parse_time` and :func:`agent.wire.format_time`; this module only
binds them to ariadne.

``Time`` appears in inputs only as the ``lastSeen`` of report entries. A string that is no
RFC 3339 time, or one outside the codec's range, reads as NaN (:data:`NOT_A_TIME`): the report
skips that one entry and counts it (:mod:`.mutations`) instead of GraphQL refusing the whole
batch, which the producer would re-send forever. A value that is not even a string is still a
coercion error (a GraphQL error, never an HTTP 500).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from ariadne import ScalarType
from graphql import StringValueNode, ValueNode

from agent.wire import WireError, format_time, parse_time
from agent.wiretime import seconds

time_scalar = ScalarType("Time")


@time_scalar.serializer
def _serialize(value: Any) -> str:
    if isinstance(value, datetime):
        return format_time(value.timestamp())
    if isinstance(value, str):  # an edge document's time (agent.wire), written already
        return format_time(parse_time(value))
    return format_time(float(value))


NOT_A_TIME = math.nan


def time_value(text: str) -> float:
    """A ``Time`` input's value: epoch seconds, or :data:`NOT_A_TIME` (also for the fast report
    decoding of :mod:`.reportinputs`, which hands it strings already checked to be strings)."""
    try:
        return parse_time(text)
    except WireError:
        return NOT_A_TIME


def time_at(at: datetime) -> float:
    """An aware ``datetime`` that the fast report decoding (:mod:`.reportinputs`) read from the
    same RFC 3339 text in C → what :func:`time_value` gives for that text."""
    try:
        return seconds(at)
    except WireError:
        return NOT_A_TIME


@time_scalar.value_parser
def _parse_value(value: Any) -> float:
    if not isinstance(value, str):
        raise WireError(f"a time must be an RFC 3339 string, got {type(value).__name__}")
    return time_value(value)


@time_scalar.literal_parser
def _parse_literal(node: ValueNode, variables: dict[str, Any] | None = None) -> float:
    if not isinstance(node, StringValueNode):
        raise WireError("a time must be an RFC 3339 string")
    return time_value(node.value)
