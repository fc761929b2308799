"""Errors of the sniffer's packet parsers (``frames.py``, ``dns.py``).

::

    ValueError
     └── PacketParseError      a malformed or truncated frame (link, IP, UDP or TCP header)
          └── DnsParseError    a malformed DNS message inside an otherwise well-formed frame

The capture loop catches :class:`PacketParseError` alone: no other exception comes out of
:func:`agent.sniffer.frames.parse_frame`, whatever bytes it is given.
"""

from __future__ import annotations


class PacketParseError(ValueError):
    """The bytes are not a well-formed frame (truncated, a length out of bounds)."""


class DnsParseError(PacketParseError):
    """The bytes are not a well-formed DNS message (truncated, out of bounds, looping)."""
