"""JSON from untrusted peers, bounded before any parser sees it: the one check both servers use.

Bodies and query variables come from producers, CLIs and browsers over HTTP — the mapper's
``/query`` (:mod:`agent.mapper.api.app`) and every cloud route that reads JSON
(:mod:`cloud_functions.handlers`) — and go from here to ``json.loads`` or the codec's msgspec
decoders (:mod:`agent.wire`). Parsers recurse once per nesting level (Python's ``json`` hits its
recursion limit near 1000: a 500, not a 400) and Python refuses to convert integers of over
4300 digits (a ``ValueError`` deep in a handler) and takes time quadratic in the digits below
that. So :func:`check` refuses, on the raw text, nesting deeper than :data:`MAX_DEPTH` and
number literals longer than :data:`MAX_NUMBER_CHARS`; :func:`loads` is that check plus
``json.loads``. Brackets and digits inside strings count as neither. The check runs in C (bytes methods; a
regex only on a body with a long run of digits): a 150 KB upload batch costs a fraction of a
millisecond.

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

_INNERMOST = re.compile(rb"\[\]|\{\}")
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_LONG_NUMBER = re.compile(rb"[-+0-9.eE]{%d,}" % (MAX_NUMBER_CHARS + 1))
# A valid number has at most three runs of digits, so one longer than MAX_NUMBER_CHARS has a
# run of over a third of it: the cheap test (a translate and a substring search, in C) that lets
# the usual body skip the scan for numbers.
_DIGITS = bytes(ord("9") if chr(b).isdigit() and b < 128 else ord(" ") for b in range(256))
_DIGIT_RUN = b"9" * (MAX_NUMBER_CHARS // 3 - 2)


class JsonTooComplex(ValueError):
    """JSON nested deeper than :data:`MAX_DEPTH` or with a number longer than :data:`MAX_NUMBER_CHARS`."""


def _too_deep(brackets: bytes) -> bool:
    """Whether ``brackets`` (a document's brackets outside strings, nothing else) nest deeper than
    :data:`MAX_DEPTH`.

    Each pass deletes the innermost pairs (in C), so a document of depth d is empty after d
    passes: no Python loop over its bytes. Unbalanced brackets stop the passes early: refused only
    when more than :data:`MAX_DEPTH` openers are left (a parser could recurse that deep before
    finding the fault); otherwise malformed JSON is the parser's to report."""
    for _ in range(MAX_DEPTH):
        shorter = _INNERMOST.sub(b"", brackets)  # one pass: a pair made by this pass waits
        if shorter == brackets:  # none left, or unbalanced: refuse only what could recurse deep
            return shorter.count(b"[") + shorter.count(b"{") > MAX_DEPTH
        brackets = shorter
    return bool(brackets)


def _unescaped(raw: bytes) -> bytes:
    """``raw`` without escaped backslashes and quotes: every quote left delimits a string. (Text
    after a backslash outside a string may be read wrongly here, but the parser stops at that
    backslash, having seen only what was read right.)"""
    if b"\\" not in raw:  # the usual body: nothing escaped
        return raw
    return raw.replace(b"\\\\", b"").replace(b'\\"', b"")


def _outside_strings(text: bytes) -> bytes:
    """``text`` (unescaped) with what is inside its strings removed."""
    return b"".join(text.split(b'"')[::2])


def check(text: bytes | str) -> None:
    """:class:`JsonTooComplex` when ``text`` nests too deep or holds too long a number. The text
    may still be malformed otherwise: that is the parser's to report."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if _DIGIT_RUN in raw.translate(_DIGITS) and _LONG_NUMBER.search(_outside_strings(_unescaped(raw))):
        raise JsonTooComplex(f"a number has more than {MAX_NUMBER_CHARS} characters")
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return  # it cannot nest deeper than it has openers
    # Quotes and brackets only; then the empty strings go (most strings hold no bracket, and
    # deleting a pair of adjacent quotes leaves every bracket on its side of a string's edge),
    # so what is left to split is small.
    skeleton = _unescaped(raw).translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    if _too_deep(_outside_strings(skeleton)):
        raise JsonTooComplex(f"JSON nested deeper than {MAX_DEPTH} levels")


def loads(text: bytes | str) -> Any:
    """:func:`check`, then ``json.loads`` (whose ``ValueError`` reports other malformed JSON)."""
    check(text)
    return json.loads(text)
