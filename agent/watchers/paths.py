"""HTTP request paths as sidecars report them → the paths the mapper keeps (pure: no I/O).

Where paths come from: the ``request_path`` label of Istio's ``istio_requests_total`` (Envoy's
``request.path`` attribute, which is the whole ``:path`` header: it carries the query string).
Where they go: the Istio watcher reports them as ``IstioConnection.path``; the exporters
(ClientIntents ``http`` targets) read the same strings back from the edges, so they must be small
in number and stable.

* :func:`strip_query` drops the query string and the fragment (``/a?b=1#c`` → ``/a``).
* :func:`template_path` also replaces each segment that is an identifier by :data:`TEMPLATE_MARKER`
  (``/api/orders/1234`` → ``/api/orders/{id}``), so a path per order does not become one HTTP
  resource per order. A segment is an identifier when it is (see :func:`is_identifier`):

  - all decimal digits (``1234``);
  - a UUID (``3f2c1a9e-8b7d-4c6e-9f0a-1b2c3d4e5f60``, any case);
  - hexadecimal of 16 characters or more (hashes, Mongo ObjectIds, trace ids);
  - an opaque token of 16 characters or more from the base64 / base64url alphabet that looks
    random: letters and digits alternate often (at least 4 switches, one per 5 characters: ULIDs,
    base32/base36 ids), or it is 20 characters or more mixing upper case, lower case and digits
    with at least 2 switches (base64 ids). ``oauth2-callback-v2-step3`` (3 switches) and
    ``listAllOrdersForCustomer2024`` (1 switch) stay.

  A segment with a dot is never templated (``/static/app.v2.js``, ``/v1.2/items`` stay whole:
  Otterize's own watcher splits its stat names on dots and so truncates such paths). Words,
  versions (``v2``), dates and kebab-case names (``order-2023-summary``) stay. Empty segments
  (``//``, a trailing ``/``) are kept, as is percent-encoding.

The marker is exactly ``{id}``: the exporters recognise templated segments by it.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["TEMPLATE_MARKER", "is_identifier", "strip_query", "template_path"]

TEMPLATE_MARKER = "{id}"
"""What replaces an identifier segment. Other components match on it: do not change it."""

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HEX = re.compile(r"[0-9a-fA-F]{16,}")
_TOKEN = re.compile(r"[A-Za-z0-9_+=-]{16,}")
_SWITCH = re.compile(r"(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])")
_MIN_SWITCHES = 4  # letter/digit alternations of a random-looking token ...
_CHARS_PER_SWITCH = 5  # ... and at least one per this many characters
_MIXED_CASE_LENGTH = 20
_MIXED_CASE_SWITCHES = 2


def strip_query(path: str) -> str:
    """``path`` without its query string and fragment (``/a/b?x=1#top`` → ``/a/b``)."""
    end = len(path)
    for mark in ("?", "#"):
        at = path.find(mark)
        if 0 <= at < end:
            end = at
    return path[:end]


def is_identifier(segment: str) -> bool:
    """Whether one path segment (no ``/``) names an instance rather than a resource (see module)."""
    if not segment or "." in segment:
        return False
    if segment.isdigit() and segment.isascii():
        return True
    if _UUID.fullmatch(segment) or _HEX.fullmatch(segment):
        return True
    if not _TOKEN.fullmatch(segment):
        return False
    switches = len(_SWITCH.findall(segment))
    if switches >= _MIN_SWITCHES and switches * _CHARS_PER_SWITCH >= len(segment):
        return True
    return (
        len(segment) >= _MIXED_CASE_LENGTH
        and switches >= _MIXED_CASE_SWITCHES
        and any(c.isdigit() for c in segment)
        and any(c.isupper() for c in segment)
        and any(c.islower() for c in segment)
    )


@lru_cache(maxsize=65536)
def template_path(path: str) -> str:
    """``path`` without query string and fragment, each identifier segment replaced by
    :data:`TEMPLATE_MARKER` (``/api/orders/42?x=1`` → ``/api/orders/{id}``). Cached: a mesh
    repeats its few paths on every scrape."""
    segments = strip_query(path).split("/")
    return "/".join(TEMPLATE_MARKER if is_identifier(s) else s for s in segments)
