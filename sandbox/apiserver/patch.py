"""PATCH bodies applied to stored objects: JSON merge patch (RFC 7386) and JSON patch (RFC 6902).

The HTTP layer (`server.py`) picks the function by Content-Type and hands the result to
`Store.update`. Strategic merge patch is applied as a JSON merge patch: lists are replaced
rather than merged by key (a documented deviation; the sandbox's clients patch maps and
scalars). Pure functions; errors are `ApiError`s with the codes the real server uses.
"""

from __future__ import annotations

import copy
from typing import Any

from sandbox.apiserver.errors import ApiError, bad_request

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, `null` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"invalid JSON pointer: {path!r}")
    return [_unescape(t) for t in path[1:].split("/")]


def _index(container: list[Any], part: str, *, for_add: bool) -> int:
    if for_add and part == "-":  # RFC 6902: "-" appends
        return len(container)
    if not part.isdigit():
        raise _unprocessable(f"invalid array index {part!r}")
    index = int(part)
    limit = len(container) if for_add else len(container) - 1
    if index > limit:
        raise _unprocessable(f"array index {index} out of range")
    return index


def _unprocessable(message: str) -> ApiError:
    # The real server reports failed JSON patch operations as 422 Invalid... except for
    # unparsable patches, which are 400; we follow that split.
    return ApiError(
        422, "Invalid", f"the server rejected our request due to an error in our request: {message}"
    )


def _parent(doc: Any, tokens: list[str]) -> Any:
    current = doc
    for token in tokens[:-1]:
        if isinstance(current, dict) and token in current:
            current = current[token]
        elif isinstance(current, list):
            current = current[_index(current, token, for_add=False)]
        else:
            raise _unprocessable(f"path element {token!r} not found")
    return current


def _get(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        return doc
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _unprocessable(f"path element {last!r} not found")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, for_add=False)]
    raise _unprocessable(f"path element {last!r} not found")


def _remove(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise _unprocessable("cannot remove the whole document")
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _unprocessable(f"path element {last!r} not found")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, for_add=False))
    raise _unprocessable(f"path element {last!r} not found")


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, for_add=True), value)
    else:
        raise _unprocessable(f"path element {last!r} not found")
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 add/remove/replace/move/copy/test, applied to a copy of `target`."""
    if not isinstance(operations, list):
        raise bad_request("json patch must be a JSON array of operations")
    doc = copy.deepcopy(target)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise bad_request(f"invalid json patch operation: {operation!r}")
        op = operation["op"]
        tokens = _pointer(str(operation["path"]))
        if op == "add":
            doc = _add(doc, tokens, copy.deepcopy(operation.get("value")))
        elif op == "remove":
            _remove(doc, tokens)
        elif op == "replace":
            _get(doc, tokens)  # must exist
            if tokens:
                _remove(doc, tokens)
            doc = _add(doc, tokens, copy.deepcopy(operation.get("value")))
        elif op in ("move", "copy"):
            source = _pointer(str(operation.get("from", "")))
            value = _remove(doc, source) if op == "move" else copy.deepcopy(_get(doc, source))
            doc = _add(doc, tokens, value)
        elif op == "test":
            if _get(doc, tokens) != operation.get("value"):
                raise _unprocessable(f"test operation failed at {operation['path']!r}")
        else:
            raise bad_request(f"unknown json patch operation: {op!r}")
    return doc
