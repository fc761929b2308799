"""The one bounded-JSON check: refuses exactly what nests deeper than MAX_DEPTH or holds a number
literal longer than MAX_NUMBER_CHARS, whatever the strings hold (brackets, quotes, escapes)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import boundedjson
from agent.boundedjson import MAX_DEPTH, JsonTooComplex

tricky = st.text(alphabet='[]{}"\\\\/abc0123456789 ', max_size=12)
leaves = st.none() | st.booleans() | st.integers(-(10**40), 10**40) | st.floats(allow_nan=False) | tricky
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(tricky, inner, max_size=3),
    max_leaves=12,
)


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


def longest_number(value: Any) -> int:
    if isinstance(value, list):
        return max((longest_number(v) for v in value), default=0)
    if isinstance(value, dict):
        return max((longest_number(v) for v in value.values()), default=0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return len(json.dumps(value))


@settings(max_examples=400, deadline=None)
@given(value=values, wrap=st.integers(0, 80), number=st.integers(0, 130))
def test_refuses_exactly_what_is_too_deep_or_too_long(value: Any, wrap: int, number: int) -> None:
    for _ in range(wrap):
        value = [value, ']]]\\"[[{']  # every level also holds a string of brackets and escapes
    if number:
        value = {"n": int("9" * number), "v": value}
    text = json.dumps(value)
    too_deep = depth(value) > MAX_DEPTH
    too_long = longest_number(value) > boundedjson.MAX_NUMBER_CHARS
    if too_deep or too_long:
        with pytest.raises(JsonTooComplex):
            boundedjson.check(text)
    else:
        boundedjson.check(text)
        assert boundedjson.loads(text) == json.loads(text)


@pytest.mark.parametrize("text", ["[" * 100_000, "[" * 65 + "1" + "]" * 65, '{"a":' * 70 + "1" + "}" * 70])
def test_deep_or_unclosed_documents_are_refused_before_parsing(text: str) -> None:
    with pytest.raises(JsonTooComplex, match="nested deeper"):
        boundedjson.loads(text)
