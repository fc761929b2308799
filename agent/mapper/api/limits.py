"""Caps on GraphQL documents, so one request cannot make the mapper do unbounded work.

Documents come from producers and CLIs over HTTP. The body size is capped by the app
(``max_body_bytes``); here the document itself: its length and token count (at parse time),
the nesting depth of selections and the number of fields selected, with fragments expanded
(at most :data:`MAX_FIELDS`, so a thousand aliases of ``intents`` cannot each read the store).
The standard introspection query fits. And the JSON around it (:func:`loads_bounded`): its
nesting depth and the length of its integers.
"""

from __future__ import annotations

import json
import re
from typing import Any

from graphql.language import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)

MAX_QUERY_CHARS = 100_000
MAX_TOKENS = 10_000
MAX_DEPTH = 16
MAX_FIELDS = 2_000
MAX_ROOT_FIELDS = 20


class DocumentTooComplex(ValueError):
    """The document is deeper, or selects more fields, than the caps allow."""


def check_document(document: DocumentNode) -> None:
    """Raise :class:`DocumentTooComplex` when an operation exceeds :data:`MAX_DEPTH`,
    :data:`MAX_FIELDS` or :data:`MAX_ROOT_FIELDS`. Unknown fragments and fragment cycles count
    as nothing here: validation reports them afterwards."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    memo: dict[str, tuple[int, int]] = {}

    def measure(selections: SelectionSetNode | None, visiting: frozenset[str]) -> tuple[int, int]:
        """(depth, fields) of a selection set."""
        if selections is None:
            return 0, 0
        depth = fields = 0
        for node in selections.selections:
            if isinstance(node, FieldNode):
                d, f = measure(node.selection_set, visiting)
                depth, fields = max(depth, d + 1), fields + f + 1
            elif isinstance(node, InlineFragmentNode):
                d, f = measure(node.selection_set, visiting)
                depth, fields = max(depth, d), fields + f
            elif isinstance(node, FragmentSpreadNode):
                name = node.name.value
                if name in visiting or name not in fragments:
                    continue
                if name not in memo:
                    memo[name] = measure(fragments[name].selection_set, visiting | {name})
                d, f = memo[name]
                depth, fields = max(depth, d), fields + f
            if fields > MAX_FIELDS:
                raise DocumentTooComplex(f"document selects more than {MAX_FIELDS} fields")
        return depth, fields

    def root_fields(selections: SelectionSetNode, visiting: frozenset[str]) -> int:
        """Top-level fields, counted through inline fragments and fragment spreads (``{ ... on
        Query { a: edges b: edges } }`` selects two root fields, each a read of the map)."""
        count = 0
        for node in selections.selections:
            if isinstance(node, FieldNode):
                count += 1
            elif isinstance(node, InlineFragmentNode):
                count += root_fields(node.selection_set, visiting)
            elif isinstance(node, FragmentSpreadNode):
                name = node.name.value
                if name not in visiting and name in fragments:
                    count += root_fields(fragments[name].selection_set, visiting | {name})
            if count > MAX_ROOT_FIELDS:
                break
        return count

    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            roots = root_fields(definition.selection_set, frozenset())
            if roots > MAX_ROOT_FIELDS:
                raise DocumentTooComplex(f"operation has more than {MAX_ROOT_FIELDS} top-level fields")
            depth, _ = measure(definition.selection_set, frozenset())
            if depth > MAX_DEPTH:
                raise DocumentTooComplex(f"document nests selections deeper than {MAX_DEPTH} levels")


MAX_JSON_DEPTH = 64
MAX_INT_DIGITS = 100

# Strings (escapes included) are dropped before counting brackets: a "[" inside one nests nothing.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_LONG_DIGITS = re.compile(rb"[0-9]{%d}" % (MAX_INT_DIGITS + 1))


class JsonTooComplex(ValueError):
    """The JSON nests deeper than :data:`MAX_JSON_DEPTH` or holds an integer longer than
    :data:`MAX_INT_DIGITS` digits (which would hit Python's recursion or int-conversion limits)."""


def _depth(text: bytes) -> int:
    if text.count(b"[") + text.count(b"{") <= MAX_JSON_DEPTH:
        return 0  # cannot nest deeper than it has openers: the usual case, no scan needed
    depth = deepest = 0
    for byte in _JSON_STRING.sub(b"", text).translate(None, _NOT_BRACKETS):
        if byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise JsonTooComplex(f"JSON holds an integer longer than {MAX_INT_DIGITS} digits")
    return int(digits)


def loads_bounded(text: bytes | str) -> Any:
    """``json.loads``, refusing (:class:`JsonTooComplex`) before parsing JSON nested deeper than
    :data:`MAX_JSON_DEPTH`, and integers longer than :data:`MAX_INT_DIGITS` digits. Other
    invalid JSON raises ``ValueError`` as ``json.loads`` does."""
    raw = text.encode() if isinstance(text, str) else text
    if _depth(raw) > MAX_JSON_DEPTH:
        raise JsonTooComplex(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    if _LONG_DIGITS.search(raw):  # maybe inside a string: check the integers themselves
        return json.loads(raw, parse_int=_bounded_int)
    return json.loads(raw)
