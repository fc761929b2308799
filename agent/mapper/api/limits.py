"""Caps on GraphQL documents, so one request cannot make the mapper do unbounded work.

Documents come from producers and CLIs over HTTP. The body size is capped by the app
(``max_body_bytes``); here the document itself: its length and token count (at parse time),
the nesting depth of selections and the number of fields selected, with fragments expanded
(at most :data:`MAX_FIELDS`, so a thousand aliases of ``intents`` cannot each read the store).
The standard introspection query fits. The JSON around the document is bounded by
:mod:`agent.boundedjson`.
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
ROOT_COSTS = {
    "edges": 100,
    "intents": 100,
    "serviceIntents": 100,
    "snapshot": 100,
    "saveSnapshot": 100,
    "loadSnapshot": 100,
    "clusterFacts": 10,
}
"""The cost of a top-level field (default 1): these read (or write) the whole map, which costs far
more than anything else a query can select; ``clusterFacts`` walks every pod."""
MAX_COST = 400
"""The cost an operation's top-level fields may add up to: a few full reads of the map per request
(``network-mapper list`` needs one), not hundreds. (Fields below them are capped by
:data:`MAX_FIELDS` and :data:`MAX_DEPTH`.)"""


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

    def root_fields(selections: SelectionSetNode, visiting: frozenset[str]) -> tuple[int, int]:
        """(count, cost) of the top-level fields, counted through inline fragments and fragment
        spreads (``{ ... on Query { a: edges b: edges } }`` selects two root fields, each a read
        of the map)."""
        count = cost = 0
        for node in selections.selections:
            if isinstance(node, FieldNode):
                count, cost = count + 1, cost + ROOT_COSTS.get(node.name.value, 1)
            elif isinstance(node, InlineFragmentNode | FragmentSpreadNode):
                inner: SelectionSetNode | None = (
                    node.selection_set if isinstance(node, InlineFragmentNode) else None
                )
                if isinstance(node, FragmentSpreadNode):
                    name = node.name.value
                    if name in visiting or name not in fragments:
                        continue
                    inner, visiting = fragments[name].selection_set, visiting | {name}
                n, c = root_fields(inner, visiting) if inner is not None else (0, 0)
                count, cost = count + n, cost + c
            if count > MAX_ROOT_FIELDS:
                break
        return count, cost

    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            roots, cost = root_fields(definition.selection_set, frozenset())
            if roots > MAX_ROOT_FIELDS:
                raise DocumentTooComplex(f"operation has more than {MAX_ROOT_FIELDS} top-level fields")
            depth, _ = measure(definition.selection_set, frozenset())
            if depth > MAX_DEPTH:
                raise DocumentTooComplex(f"document nests selections deeper than {MAX_DEPTH} levels")
            if cost > MAX_COST:
                raise DocumentTooComplex(
                    f"operation costs more than {MAX_COST} (a read of the map costs {ROOT_COSTS['edges']})"
                )
