"""The sniffer's report documents decoded in one typed pass, without graphql-core's per-value work.

Requests come from :class:`~.app.GraphQLEndpoint` as the raw body; what goes out is the same
coerced input that graphql-core would hand the mutation's resolver (dicts keyed by the schema's
field names, ``Time`` as epoch seconds or NaN), which :mod:`.schema` then converts and queues
exactly as it does for any other request. Why: graphql-core coerces a variable value by value in
Python (about 25 µs per DNS entry), which made the API, not resolution, the mapper's ceiling;
msgspec checks the same types in C.

Only what is certain to mean the same takes this path: a document with one mutation operation
selecting one report field (:data:`FAST_REPORTS`), no directives, its one argument a variable of
the schema's input type, and variables that decode as that type exactly (every field known, every
type right, Int in 32 bits). Anything else — another document, a list given as one value, an
unknown field, a null where the schema says ``!``, a float for an Int — returns None and the
request runs through graphql-core, which accepts or refuses it as it always has. The decoders are
derived from the schema's input types at start, so a field added to ``schema.graphql`` is added
here too (an input type this module cannot express makes :func:`build` refuse it, loudly).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any

import msgspec
from graphql import (
    FieldNode,
    GraphQLError,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
    GraphQLSchema,
    NamedTypeNode,
    NonNullTypeNode,
    OperationDefinitionNode,
    OperationType,
    VariableDefinitionNode,
    VariableNode,
)
from graphql.language import DocumentNode
from graphql.pyutils import Undefined

from agent.mapper.api.scalars import time_at
from agent.wiretime import Time

FAST_REPORTS = ("reportCaptureResults", "reportTCPCaptureResults", "reportSocketScanResults")
"""The reports that carry the bulk of the traffic (every sniffer, every few seconds)."""

_INT32 = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]  # GraphQL's Int
# A Time is read as agent.wire reads it (msgspec's RFC 3339, in C): a text that is none fails the
# decoding and the request takes graphql-core's path, whose scalar makes it NaN (entry skipped).
_SCALARS: dict[str, Any] = {"String": str, "Int": _INT32, "Boolean": bool, "Float": float, "Time": Time}


class Envelope(msgspec.Struct):
    """A GraphQL-over-HTTP request body, its variables left undecoded until the document is known."""

    query: str
    operationName: str | None = None  # the protocol's name
    variables: msgspec.Raw = msgspec.Raw(b"null")


_envelope = msgspec.json.Decoder(Envelope)
_DECODE_ERRORS = (msgspec.MsgspecError, RecursionError, UnicodeDecodeError)


def envelope(body: bytes) -> Envelope | None:
    """The request's query, operation name and raw variables; None when it does not decode as one
    (the slow path then says why)."""
    try:
        return _envelope.decode(body)
    except _DECODE_ERRORS:
        return None


# --------------------------------------------------------------------------- types from the schema

Convert = Callable[[Any], Any]


def _unsupported(what: str) -> TypeError:
    return TypeError(f"reportinputs cannot decode {what}: leave it to graphql-core")


def _typed(kind: GraphQLInputType, structs: dict[str, tuple[Any, Convert]]) -> tuple[Any, Convert | None]:
    """(msgspec type, converter to the coerced value or None when none is needed) of a *nullable*
    GraphQL input type; the caller makes it optional."""
    if isinstance(kind, GraphQLNonNull):
        raise _unsupported("a doubly non-null type")
    if isinstance(kind, GraphQLList):
        item, convert = _field_type(kind.of_type, structs)
        if convert is None:
            return list[item], None  # type: ignore[valid-type]
        return list[item], lambda values: [convert(v) for v in values]  # type: ignore[valid-type]
    if isinstance(kind, GraphQLScalarType):
        if kind.name not in _SCALARS:
            raise _unsupported(f"the scalar {kind.name}")
        return _SCALARS[kind.name], (time_at if kind.name == "Time" else None)
    if isinstance(kind, GraphQLInputObjectType):
        return _struct(kind, structs)
    raise _unsupported(f"the type {kind}")


def _field_type(
    kind: GraphQLInputType, structs: dict[str, tuple[Any, Convert]]
) -> tuple[Any, Convert | None]:
    if isinstance(kind, GraphQLNonNull):
        return _typed(kind.of_type, structs)
    inner, convert = _typed(kind, structs)
    if convert is None:
        return inner | None, None
    return inner | None, lambda value: None if value is None else convert(value)


def _struct(kind: GraphQLInputObjectType, structs: dict[str, tuple[Any, Convert]]) -> tuple[Any, Convert]:
    """A msgspec Struct for an input object type (unknown fields refused, as GraphQL does), and the
    converter of a decoded one to the dict graphql-core would make."""
    if kind.name in structs:
        return structs[kind.name]
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    converters: list[tuple[str, Convert]] = []
    for name, field in kind.fields.items():
        if field.out_name not in (None, name):
            raise _unsupported(f"{kind.name}.{name}, whose Python name differs")
        if field.default_value is not Undefined:  # graphql-core would fill it in: so must we
            raise _unsupported(f"{kind.name}.{name}, which has a default value")
        member, convert = _field_type(field.type, structs)
        required = isinstance(field.type, GraphQLNonNull)
        fields.append((name, member) if required else (name, member, None))
        if convert is not None:
            converters.append((name, convert))
    # required fields first: a Struct's defaults must follow them
    fields.sort(key=lambda f: len(f) == 3)
    struct = msgspec.defstruct(kind.name, fields, forbid_unknown_fields=True, frozen=True)
    asdict = msgspec.structs.asdict

    def to_input(value: Any) -> dict[str, Any]:
        coerced = asdict(value)
        for name, convert in converters:
            coerced[name] = convert(coerced[name])
        return coerced

    structs[kind.name] = (struct, to_input)
    return struct, to_input


# --------------------------------------------------------------------------- documents


@dataclass(frozen=True, slots=True)
class Match:
    """A known report document: the field to run, its response key, the variable that holds its
    argument, and the field's node (for errors located as graphql-core locates them)."""

    field: str
    key: str
    variable: str
    node: FieldNode
    decode: Callable[[bytes], Any]


class ReportInputs:
    """Recognises the fast reports' documents and decodes their variables (see the module docstring)."""

    def __init__(self, schema: GraphQLSchema, parse: Callable[[str], DocumentNode]) -> None:
        mutation = schema.mutation_type
        assert mutation is not None
        self._parse = parse
        self._decoders: dict[str, tuple[str, str, Callable[[bytes], Any]]] = {}
        structs: dict[str, tuple[Any, Convert]] = {}
        for name in FAST_REPORTS:
            ((argument, arg),) = mutation.fields[name].args.items()
            kind = arg.type
            if not (isinstance(kind, GraphQLNonNull) and isinstance(kind.of_type, GraphQLInputObjectType)):
                raise _unsupported(f"{name}'s argument")
            struct, to_input = _struct(kind.of_type, structs)
            decoder = msgspec.json.Decoder(struct)
            self._decoders[name] = (argument, kind.of_type.name, _decoding(decoder.decode, to_input))
        self.match = lru_cache(maxsize=64)(self._match)

    def _match(self, query: str, operation_name: str | None) -> Match | None:
        """The report a document runs, when it is one this module decodes exactly; else None."""
        try:
            found = _single_field(self._parse(query), operation_name)
        except (GraphQLError, ValueError):
            return None
        known = self._decoders.get(found[0].name.value) if found is not None else None
        if found is None or known is None:
            return None
        node, definition = found
        argument, type_name, decode = known
        given, declared = (node.arguments or ())[0], definition.type
        if (
            given.name.value != argument
            or not isinstance(given.value, VariableNode)
            or given.value.name.value != definition.variable.name.value
            or definition.default_value is not None
            or definition.directives
            or not isinstance(declared, NonNullTypeNode)
            or not isinstance(declared.type, NamedTypeNode)
            or declared.type.name.value != type_name
        ):
            return None
        key = node.alias.value if node.alias else node.name.value
        return Match(node.name.value, key, definition.variable.name.value, node, decode)

    @staticmethod
    def variable(match: Match, variables: msgspec.Raw) -> Any | None:
        """The coerced value of the report's variable, or None when it is not exactly the schema's type."""
        try:
            raw = _variables.decode(variables)
        except _DECODE_ERRORS:
            return None
        found = raw.get(match.variable) if raw is not None else None
        return None if found is None else match.decode(found)


def _single_field(
    document: DocumentNode, operation_name: str | None
) -> tuple[FieldNode, VariableDefinitionNode] | None:
    """The one field of a document's one mutation, with one argument and one variable, no
    directives and no sub-selection; None for any other document."""
    operation = document.definitions[0] if len(document.definitions) == 1 else None
    if (
        not isinstance(operation, OperationDefinitionNode)
        or operation.operation is not OperationType.MUTATION
        or operation.directives
        or (operation_name is not None and (operation.name is None or operation.name.value != operation_name))
        or len(operation.selection_set.selections) != 1
        or len(operation.variable_definitions or ()) != 1
    ):
        return None
    node = operation.selection_set.selections[0]
    if (
        not isinstance(node, FieldNode)
        or node.directives
        or node.selection_set
        or len(node.arguments or ()) != 1
    ):
        return None
    return node, (operation.variable_definitions or ())[0]


_variables = msgspec.json.Decoder(dict[str, msgspec.Raw] | None)


def _decoding(decode: Callable[[bytes], Any], to_input: Convert) -> Callable[[bytes], Any]:
    def run(raw: bytes) -> Any | None:
        try:
            return to_input(decode(raw))
        except _DECODE_ERRORS:
            return None

    return run
