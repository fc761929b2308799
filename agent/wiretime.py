"""Times on the wire: RFC 3339 text ⇄ float epoch seconds, within a sane range.

Every stage that writes or reads a time goes through here: the edge codec (:mod:`agent.wire`,
which re-exports these names), the mapper's ``Time`` scalar, the sniffer's reports, the cloud's
filters. Times are written in UTC with ``Z`` and microseconds (the fraction left out when it is
zero), read with any offset and any fraction (rounded to microseconds), and always within
:data:`RANGE`: a time outside is a broken clock or a hostile peer, and every stage can rely on
the times it reads being sane.

Errors::

    ValueError
    └── WireError       bytes or values that are not valid (the message says what and where)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import msgspec

EARLIEST, END = 946684800.0, 4102444800.0
"""Times lie in [2000-01-01, 2100-01-01) (epoch seconds)."""
RANGE = "[2000, 2100)"

Time = Annotated[datetime, msgspec.Meta(tz=True)]
"""How documents hold a time: an aware ``datetime`` (msgspec reads RFC 3339 into it, in C)."""


class WireError(ValueError):
    """Bytes or values that are not a valid edge document (the message says what and where)."""


_encoder = msgspec.json.Encoder()
_time_decoder = msgspec.json.Decoder(Time)


def moment(timestamp: float) -> datetime:
    """Epoch seconds → an aware ``datetime`` in UTC (how the documents hold times)."""
    if not EARLIEST <= timestamp < END:
        raise WireError(f"time out of range {RANGE}: {timestamp!r}")
    return datetime.fromtimestamp(timestamp, UTC)


def seconds(at: datetime) -> float:
    """An aware ``datetime`` → epoch seconds; :class:`WireError` outside :data:`RANGE`."""
    value = at.timestamp()  # of an aware datetime: exact microseconds / 10**6, correctly rounded
    if not EARLIEST <= value < END:
        raise WireError(f"time out of range {RANGE}: {at.isoformat()}")
    return value


def format_time(timestamp: float) -> str:
    """Epoch seconds → ``2026-11-28T02:15:06.918878Z`` (UTC, rounded to the microsecond)."""
    return _encoder.encode(moment(timestamp)).decode()[1:-1]


def parse_time(text: object) -> float:
    """RFC 3339 (an offset required; any fraction, rounded to microseconds) → epoch seconds;
    :class:`WireError` naming the text when it is not one or lies outside :data:`RANGE`."""
    if not isinstance(text, str):
        raise WireError(f"a time must be an RFC 3339 string, got {type(text).__name__}")
    try:
        return seconds(_time_decoder.decode(_encoder.encode(text)))
    except msgspec.ValidationError as error:
        raise WireError(f"not an RFC 3339 time with an offset: {text[:64]!r}") from error
