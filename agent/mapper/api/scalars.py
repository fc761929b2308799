"""The GraphQL ``Time`` scalar: RFC 3339 text on the wire, float epoch seconds inside.

Producers (the sniffer, the Kafka and Istio watchers) send times as RFC 3339 with ``Z`` or a
numeric offset and optional fractional seconds of any precision (Go sends nanoseconds). Inside,
times are ``agent.model.Timestamp`` (float seconds since the epoch, UTC). A malformed time makes
:func:`parse_time` raise ``ValueError``; graphql-core turns that into a variable-coercion error
(a GraphQL error, never an HTTP 500).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from ariadne import ScalarType
from graphql import StringValueNode, ValueNode

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)
_offsets: dict[tuple[str, int, int], timezone] = {}

time_scalar = ScalarType("Time")


def parse_time(text: object) -> float:
    """RFC 3339 → epoch seconds. Raises ``ValueError`` (or ``TypeError`` for a non-string)."""
    if not isinstance(text, str):
        raise TypeError(f"Time must be an RFC 3339 string, got {type(text).__name__}")
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise ValueError(f"not an RFC 3339 time: {text[:64]!r}")
    year, month, day, hour, minute, second, frac, zulu, sign, oh, om = m.groups()
    if zulu:
        tz: timezone = UTC
    else:
        key = (sign, int(oh), int(om))
        found = _offsets.get(key)
        if found is None:
            if key[1] > 23 or key[2] > 59:
                raise ValueError(f"bad UTC offset in {text[:64]!r}")
            delta = timedelta(hours=key[1], minutes=key[2])
            found = _offsets.setdefault(key, timezone(-delta if sign == "-" else delta))
        tz = found
    try:  # datetime checks the ranges (month 13, Feb 30, second 60 ...)
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=tz)
    except ValueError as exc:
        raise ValueError(f"not an RFC 3339 time: {text[:64]!r} ({exc})") from None
    seconds = moment.timestamp()
    if frac:
        seconds += int(frac) / 10 ** len(frac)
    return seconds


def format_time(timestamp: float) -> str:
    """Epoch seconds → RFC 3339 in UTC with microseconds: ``2026-11-28T02:15:06.918878Z``."""
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@time_scalar.serializer
def _serialize(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return format_time(float(value))


@time_scalar.value_parser
def _parse_value(value: Any) -> float:
    return parse_time(value)


@time_scalar.literal_parser
def _parse_literal(node: ValueNode, variables: dict[str, Any] | None = None) -> float:
    if not isinstance(node, StringValueNode):
        raise TypeError("Time must be an RFC 3339 string")
    return parse_time(node.value)
