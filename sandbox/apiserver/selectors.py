"""Label and field selectors, parsed from `labelSelector=` / `fieldSelector=` query strings.

Data comes from the list/watch query parameters (via `server.py`); the parsed selectors are
applied to stored objects by `store.py`. Pure: no I/O, no server state.
Grammar follows k8s.io/apimachinery/pkg/labels and pkg/fields:
  labels: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, `k>1`, `k<1`
  fields: `path=v`, `path==v`, `path!=v` (dotted paths such as `status.podIP`)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.apiserver.errors import bad_request

_SET_RE = re.compile(r"^(?P<key>[^\s=!<>(),]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_BINARY_RE = re.compile(r"^(?P<key>[^\s=!<>(),]+)\s*(?P<op>==|!=|=|>|<)\s*(?P<value>[^\s=!<>(),]*)$")
_KEY_RE = re.compile(r"^[^\s=!<>(),]+$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # one of: =, !=, in, notin, exists, !, >, <
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:  # noqa: PLR0911 - one return per operator reads best
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            # Kubernetes semantics: an absent label satisfies != and notin.
            return not present or value not in self.values
        # > and < compare integers; a non-integer label never matches (as in apimachinery).
        try:
            number = int(value) if value is not None else None
        except ValueError:
            return False
        if number is None:
            return False
        bound = int(self.values[0])
        return number > bound if self.op == ">" else number < bound


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)


@dataclass(frozen=True)
class FieldRequirement:
    path: str
    negate: bool
    value: str


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(r.path for r in self.requirements)

    def matches(self, obj: Mapping[str, Any]) -> bool:
        for req in self.requirements:
            equal = field_value(obj, req.path) == req.value
            if equal == req.negate:
                return False
        return True


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside `( )` (the values of `in`/`notin`)."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse a label selector; an empty or missing selector matches everything."""
    if not text:
        return LabelSelector()
    requirements: list[Requirement] = []
    for term in _split_top_level(text):
        requirements.append(_parse_label_term(term))
    return LabelSelector(tuple(requirements))


def _parse_label_term(term: str) -> Requirement:
    if term.startswith("!"):
        key = term[1:].strip()
        if not _KEY_RE.match(key):
            raise bad_request(f"unable to parse requirement: invalid label key {key!r}")
        return Requirement(key, "!")
    match = _SET_RE.match(term)
    if match:
        values = tuple(v.strip() for v in match["values"].split(",") if v.strip())
        return Requirement(match["key"], match["op"], values)
    match = _BINARY_RE.match(term)
    if match:
        op = "=" if match["op"] == "==" else match["op"]
        if op in (">", "<"):
            try:
                int(match["value"])
            except ValueError:
                raise bad_request(
                    f"unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an "
                    f"integer: {term!r}"
                ) from None
        return Requirement(match["key"], op, (match["value"],))
    if _KEY_RE.match(term):
        return Requirement(term, "exists")
    raise bad_request(f"unable to parse requirement: {term!r}")


def parse_field_selector(text: str | None) -> FieldSelector:
    """Parse a field selector; an empty or missing selector matches everything."""
    if not text:
        return FieldSelector()
    requirements: list[FieldRequirement] = []
    for term in (t.strip() for t in text.split(",")):
        if not term:
            continue
        for op, negate in (("!=", True), ("==", False), ("=", False)):
            if op in term:
                path, value = term.split(op, 1)
                requirements.append(FieldRequirement(path.strip(), negate, value.strip()))
                break
        else:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
    return FieldSelector(tuple(requirements))


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string form of a dotted field, as the real field-label converters render it."""
    current: Any = obj
    for part in path.split("."):
        if not isinstance(current, Mapping):
            return ""
        current = current.get(part)
    if current is None:
        return ""
    if isinstance(current, bool):
        return "true" if current else "false"
    return str(current)
