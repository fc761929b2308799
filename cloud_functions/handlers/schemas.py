"""The edge codec's JSON Schemas, made self-contained for the OpenAPI document.

Data comes from :mod:`agent.wire` (:func:`~agent.wire.edge_schema`, :func:`~agent.wire.ingest_schema`:
each with its definitions under ``$defs``, referenced as ``#/$defs/<name>``). Embedded in the
OpenAPI document those references would point at the document's root, so :func:`inline` replaces
each with its definition, for the routes that document them. Pure.
"""

from __future__ import annotations

from typing import Any

_PREFIX = "#/$defs/"


def inline(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with every ``#/$defs/<name>`` reference replaced by its definition and no
    ``$defs`` (a discriminator's mapping, whose values are such references, is dropped: its
    ``propertyName`` stays)."""
    definitions: dict[str, Any] = schema.get("$defs", {})

    def resolve(value: Any) -> Any:
        if isinstance(value, list):
            return [resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        ref = value.get("$ref")
        if isinstance(ref, str) and ref.startswith(_PREFIX):
            return resolve(definitions[ref.removeprefix(_PREFIX)])
        return {
            key: {"propertyName": v["propertyName"]} if key == "discriminator" else resolve(v)
            for key, v in value.items()
            if key != "$defs"
        }

    resolved: dict[str, Any] = resolve(schema)
    return resolved
