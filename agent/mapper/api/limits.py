"""Caps on GraphQL documents, so one request cannot make the mapper do unbounded work.

Documents come from producers and CLIs over HTTP. The body size is capped by the app
(``max_body_bytes``); here the document itself: its length and token count (at parse time),
the nesting depth of selections and the number of fields selected, with fragments expanded
(at most :data:`MAX_FIELDS`, so a thousand aliases of ``intents`` cannot each read the store).
The standard introspection query fits.
"""

from __future__ import annotations

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

    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            roots = len(definition.selection_set.selections)
            if roots > MAX_ROOT_FIELDS:
                raise DocumentTooComplex(f"operation has more than {MAX_ROOT_FIELDS} top-level fields")
            depth, _ = measure(definition.selection_set, frozenset())
            if depth > MAX_DEPTH:
                raise DocumentTooComplex(f"document nests selections deeper than {MAX_DEPTH} levels")
