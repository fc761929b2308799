"""The API operation of a signed AWS request, and the parameters it names resources with.

Input: a :class:`SignedRequest` (built by :mod:`agent.aws.iam_actions` from what the proxy saw) and
the botocore models its signing name stands for (:mod:`agent.aws.routes`). The protocol decides:

- ``X-Amz-Target: <targetPrefix>.<Operation>`` (AWS JSON 1.0/1.1: DynamoDB, SQS, KMS, Secrets
  Manager, ...); the target prefix picks the model among those that sign alike (DynamoDB Streams);
- ``Smithy-Protocol: rpc-v2-cbor`` with ``/service/<name>/operation/<Operation>`` (CloudWatch, ...);
- ``Action=<Operation>`` in the query string or form body (AWS query: STS, SNS, older SQS);
- otherwise the REST route (S3, Lambda, ...).

Output: a :class:`Resolved` with the operation ("" when none is found), the URI labels, the string
parameters (labels, query-string members, the top level of a JSON or form body) and the parsed JSON
document. The body is parsed here and not kept beyond the call.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from agent.aws import routes

_OPERATION = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,127}\Z")
_CBOR_PATH = re.compile(r"/service/([^/]+)/operation/([^/]+)\Z")
MAX_JSON = 16 * 1024 * 1024  # DynamoDB's largest request; a larger body is not parsed


@dataclass(frozen=True, slots=True)
class SignedRequest:
    method: str
    host: str
    path: str  # raw, percent-encoded; for S3, path-style (the virtual-hosted bucket in front)
    query: Mapping[str, str]  # decoded; the first of repeated keys
    headers: Mapping[str, str]  # lower-case names
    body: bytes


@dataclass(frozen=True, slots=True)
class Resolved:
    model: routes.Model | None
    operation: str  # "" when the request names none that botocore knows the shape of
    labels: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    document: Mapping[str, Any] = field(default_factory=dict)

    @property
    def known(self) -> bool:
        return self.model is not None and self.operation in self.model.operations


Preferred = Callable[[routes.Model], frozenset[str]]  # a model's operations IAM knows for the request


def resolve(
    request: SignedRequest,
    candidates: tuple[routes.Model, ...],
    preferred: Preferred,
    *,
    siblings: bool = True,
) -> Resolved:
    """The operation of ``request`` among ``candidates`` (the models of its signing name; with
    ``siblings``, REST requests also try the other models that sign alike). ``preferred`` breaks
    ties between REST operations that share a route (see :func:`agent.aws.routes.match_route`)."""
    target = request.headers.get("x-amz-target", "")
    cbor = (
        _CBOR_PATH.search(request.path) if request.headers.get("smithy-protocol") == "rpc-v2-cbor" else None
    )
    if cbor is not None:
        model = _by_target(candidates, cbor.group(1), cbor.group(2))
        return Resolved(model, operation_name(cbor.group(2)))
    if target:
        target_prefix, _, operation = target.rpartition(".")
        document = parse_json(request.body)
        return Resolved(
            _by_target(candidates, target_prefix, operation),
            operation_name(operation),
            {},
            _strings(document),
            document,
        )
    form = _form(request.headers, request.body)
    action = request.query.get("Action") or form.get("Action")
    if action:
        params = {**form, **request.query}
        params.pop("Action", None)
        model = next((m for m in candidates if action in m.operations), candidates[0] if candidates else None)
        return Resolved(model, operation_name(action), {}, params)
    for model in candidates:
        found = _rest(model, request, preferred)
        if found is not None:
            return found
    if candidates and siblings:  # a REST API that shares its signing name (bedrock-runtime, ...)
        for model in routes.siblings(candidates[0]):
            found = _rest(model, request, preferred)
            if found is not None:
                return found
    return Resolved(candidates[0] if candidates else None, "")


def operation_name(name: str) -> str:
    """``name`` if it can be an operation's name, else "" (a request may say anything)."""
    return name if _OPERATION.match(name) else ""


def parse_json(body: bytes) -> Mapping[str, Any]:
    """The body's JSON object, or {} when it is none (or too large or too deep to parse)."""
    if not body or len(body) > MAX_JSON or body.lstrip()[:1] != b"{":
        return {}
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # not JSON (UnicodeDecodeError is a ValueError), or too deep
        return {}
    return document if isinstance(document, dict) else {}


def _rest(model: routes.Model, request: SignedRequest, preferred: Preferred) -> Resolved | None:
    match = routes.match_route(
        model, request.method, request.path, request.query, request.headers, preferred(model)
    )
    if match is None:
        return None
    params = dict(match.labels)
    for member in match.operation.members:
        if member.location == "querystring" and member.wire_name in request.query:
            params.setdefault(member.name, request.query[member.wire_name])
    document = parse_json(request.body) if match.operation.body_members else {}
    for key, value in _strings(document).items():
        params.setdefault(key, value)
    return Resolved(model, match.operation.name, match.labels, params, document)


def _by_target(
    candidates: tuple[routes.Model, ...], target_prefix: str, operation: str
) -> routes.Model | None:
    for model in candidates:
        if model.target_prefix == target_prefix:
            return model
    if candidates:
        for model in routes.siblings(candidates[0]):
            if model.target_prefix == target_prefix:
                return model
    return next((m for m in candidates if operation in m.operations), candidates[0] if candidates else None)


def _form(headers: Mapping[str, str], body: bytes) -> dict[str, str]:
    if "x-www-form-urlencoded" not in headers.get("content-type", "") or not body:
        return {}
    text = body.decode("utf-8", errors="replace")
    return dict(parse_qsl(text, keep_blank_values=True)[::-1])  # the first of repeated keys wins


def _strings(document: Mapping[str, Any]) -> dict[str, str]:
    return {key: value for key, value in document.items() if isinstance(value, str)}
