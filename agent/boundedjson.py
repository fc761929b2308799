"""JSON from untrusted peers, bounded before any parser sees it: the one check both servers use.

Bodies and query variables come from producers, CLIs and browsers over HTTP — the mapper's
``/query`` (:mod:`agent.mapper.api.app`) and every cloud route that reads JSON
(:mod:`cloud_functions.handlers`) — and go from here to ``json.loads`` or the codec's msgspec
decoders (:mod:`agent.wire`). Parsers recurse once per nesting level (Python's ``json`` hits its
recursion limit near 1000: a 500, not a 400) and Python refuses to convert integers of over
4300 digits (a ``ValueError`` deep in a handler) and takes time quadratic in the digits below
that. So :func:`check` refuses, on the raw text, nesting deeper than :data:`MAX_DEPTH` and
number literals longer than :data:`MAX_NUMBER_CHARS`; :func:`loads` is that check plus
``json.loads``. Brackets and digits inside strings count as neither.

Errors::

    ValueError
    └── JsonTooComplex     too deep, or a number too long (the message says which)
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 64
"""Nesting of arrays and objects: no route needs more than a handful."""
MAX_NUMBER_CHARS = 100
"""Characters of one number literal: a double needs fewer than 30, an int below 2**63 19."""

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_LONG_NUMBER = re.compile(rb"[-+0-9.eE]{%d,}" % (MAX_NUMBER_CHARS + 1))
# A valid number has at most three runs of digits, so one longer than MAX_NUMBER_CHARS has a
# run of over a third of it: the cheap test that lets the usual body skip the scan.
_LONG_DIGITS = re.compile(rb"[0-9]{%d}" % (MAX_NUMBER_CHARS // 3 - 2))


class JsonTooComplex(ValueError):
    """JSON nested deeper than :data:`MAX_DEPTH` or with a number longer than :data:`MAX_NUMBER_CHARS`."""


def _deepest(bare: bytes) -> int:
    depth = deepest = 0
    for byte in bare.translate(None, _NOT_BRACKETS):
        if byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def check(text: bytes | str) -> None:
    """:class:`JsonTooComplex` when ``text`` nests too deep or holds too long a number. The text
    may still be malformed otherwise: that is the parser's to report."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    deep = raw.count(b"[") + raw.count(b"{") > MAX_DEPTH  # it cannot nest deeper than its openers
    if not deep and _LONG_DIGITS.search(raw) is None:
        return  # the usual body: no scan at all
    bare = _STRING.sub(b'""', raw)
    if _LONG_NUMBER.search(bare):
        raise JsonTooComplex(f"a number has more than {MAX_NUMBER_CHARS} characters")
    if deep and _deepest(bare) > MAX_DEPTH:
        raise JsonTooComplex(f"JSON nested deeper than {MAX_DEPTH} levels")


def loads(text: bytes | str) -> Any:
    """:func:`check`, then ``json.loads`` (whose ``ValueError`` reports other malformed JSON)."""
    check(text)
    return json.loads(text)
