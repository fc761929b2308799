"""Typed reads of one parsed YAML document's fields for ``agent.policy.parsing``: each read checks
its field and raises :class:`~agent.policy.documents.PolicyError` naming the file, the document
number, the object and the field path, so every bad input gets the one kind of error."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from agent.policy.documents import PolicyError


@dataclass(frozen=True, slots=True)
class Where:
    """A document being read: its file label, 1-based number and, once known, ``Kind ns/name``."""

    source: str
    document: int
    label: str = ""

    def fail(self, path: str, message: str) -> NoReturn:
        named = f" ({self.label})" if self.label else ""
        where = f"{path}: " if path else ""
        raise PolicyError(f"{self.source}: document {self.document}{named}: {where}{message}")


def describe(value: Any) -> str:
    """A value's type as a user reads it in YAML terms."""
    kinds: tuple[tuple[Any, str], ...] = (
        (type(None), "null"),
        (bool, "a boolean"),
        (int | float, "a number"),
        (str, "a string"),
        (list, "a list"),
        (Mapping, "a mapping"),
    )
    return next((name for kind, name in kinds if isinstance(value, kind)), type(value).__name__)


def mapping(where: Where, value: Any, path: str, known: frozenset[str] | None = None) -> Mapping[str, Any]:
    """``value`` as a mapping with string keys; with ``known``, a key outside it is an error (a
    typo such as ``podselector`` would otherwise silently select everything)."""
    if not isinstance(value, Mapping):
        where.fail(path, f"must be a mapping, not {describe(value)}")
    for key in value:
        if not isinstance(key, str):
            where.fail(path, f"key {key!r} must be a string")
        if known is not None and key not in known:
            where.fail(f"{path}.{key}" if path else key, f"unknown field (expected one of {sorted(known)})")
    return value


def optional_mapping(
    where: Where, parent: Mapping[str, Any], key: str, path: str, known: frozenset[str] | None = None
) -> Mapping[str, Any] | None:
    value = parent.get(key)
    return None if value is None else mapping(where, value, f"{path}.{key}" if path else key, known)


def sequence(where: Where, value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        where.fail(path, f"must be a list, not {describe(value)}")
    return value


def optional_list(where: Where, parent: Mapping[str, Any], key: str, path: str) -> list[Any] | None:
    value = parent.get(key)
    return None if value is None else sequence(where, value, f"{path}.{key}" if path else key)


def string(where: Where, parent: Mapping[str, Any], key: str, path: str, *, required: bool = True) -> str:
    """``parent[key]`` as a non-empty string ("" when absent and not ``required``)."""
    value = parent.get(key)
    full = f"{path}.{key}" if path else key
    if value is None:
        if required:
            where.fail(full, "required field is missing")
        return ""
    if not isinstance(value, str):
        where.fail(full, f"must be a string, not {describe(value)}")
    if not value and required:
        where.fail(full, "must not be empty")
    return value


def strings(where: Where, value: Any, path: str) -> list[str]:
    items = sequence(where, value, path)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            where.fail(f"{path}[{i}]", f"must be a string, not {describe(item)}")
    return items
