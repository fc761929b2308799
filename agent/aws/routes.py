"""API operations of AWS requests, from the botocore service models that boto3 ships.

:func:`models_for` finds the botocore models a SigV4 signing name (the credential scope's service)
stands for: the model of that name when its signing name matches, else every model signing as it
(``monitoring`` → ``cloudwatch``; ``dynamodb`` is also ``dynamodbstreams``), from a one-time scan of
all models' metadata (the head of each model file, ~0.1 s; done only when needed). :func:`match_route`
finds a REST request's operation from each operation's ``http.method`` / ``http.requestUri``
(``/{Bucket}/{Key+}?uploads``), its required query-string and header members (S3 ``UploadPart``
needs ``partNumber`` and ``uploadId``, ``CopyObject`` the ``x-amz-copy-source`` header) and, among
the routes that fit, the most specific. Route tables are built once per model, lazily. Used by
:mod:`agent.aws.iam_actions`; no route is written by hand.
"""

from __future__ import annotations

import functools
import gzip
import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

_LABEL = re.compile(r"\{([A-Za-z0-9_]+)(\+?)\}")
_HEAD = 16384  # characters of a model file that hold its metadata


@dataclass(frozen=True, slots=True)
class Member:
    """An input member that travels outside the body: a URI label, a query key or a header."""

    name: str  # the member's name in the model: Bucket, VersionId, Qualifier
    location: str  # uri | querystring | header
    wire_name: str  # its name on the wire: versionId, x-amz-copy-source (headers lower-cased)


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    method: str
    members: tuple[Member, ...]
    body_members: bool  # the JSON body holds named members (not a raw payload such as Invoke's)


@dataclass(frozen=True, slots=True)
class Route:
    operation: Operation
    labels: tuple[str, ...]  # member name of each group of its path pattern
    query: tuple[tuple[str, str | None], ...]  # keys its requestUri fixes (with this value if not None)
    required_query: tuple[str, ...]  # query keys of required members (UploadPart's uploadId)
    required_headers: tuple[str, ...]  # header names of required members (x-amz-copy-source)
    deprecated: bool  # loses a tie (GetBucketLifecycle to GetBucketLifecycleConfiguration)


@dataclass(frozen=True, slots=True)
class PathRoutes:
    """The routes of one method that share a path pattern (S3's ``/{Bucket}/{Key+}``)."""

    path: re.Pattern[str]
    literal: int  # characters of fixed text in the path: more is more specific
    routes: tuple[Route, ...]


@dataclass(frozen=True, slots=True, eq=False)  # one per botocore model: compared (and hashed) by identity
class Model:
    """What the mapping needs of one botocore service model."""

    name: str  # botocore's name: s3, dynamodb, dynamodbstreams
    signing_name: str
    endpoint_prefix: str
    protocol: str
    target_prefix: str  # JSON protocols: X-Amz-Target is <target_prefix>.<Operation>
    operations: Mapping[str, Operation]
    routes: Mapping[str, tuple[PathRoutes, ...]]  # by HTTP method


@dataclass(frozen=True, slots=True)
class RouteMatch:
    operation: Operation
    labels: Mapping[str, str]  # member name → percent-decoded value


def match_route(  # noqa: PLR0917 - a request's parts, as the caller holds them
    model: Model,
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    preferred: frozenset[str] = frozenset(),
) -> RouteMatch | None:
    """The operation of a REST request: ``path`` raw (percent-encoded), ``query`` decoded, ``headers``
    with lower-case names. None when no route of ``model`` fits.

    A route fits when its path pattern matches and the query has the keys its requestUri fixes
    (``?uploads``, ``?list-type=2``). Among those that fit, the one with the most of these and of
    its required query keys and headers present wins, then the one with the fewest of them missing
    (a bare PUT is PutObject, not CopyObject), then the longer fixed path, then an operation in
    ``preferred`` (those IAM knows under the request's signing service: S3 Express's
    ListDirectoryBuckets has ListBuckets' route), then the current operation over a deprecated one
    of the same shape. botocore's own ``x-id`` hint, when a fitting route has that operation,
    decides."""
    hinted = query.get("x-id")
    best: tuple[tuple[int, int, int, bool, bool, str], Route, re.Match[str]] | None = None
    for group in model.routes.get(method.upper(), ()):
        match = group.path.match(path)
        if match is None:
            continue
        for route in group.routes:
            if any(
                key not in query or (value is not None and query[key] != value) for key, value in route.query
            ):
                continue
            present = sum(key in query for key in route.required_query)
            present += sum(name in headers for name in route.required_headers)
            missing = len(route.required_query) + len(route.required_headers) - present
            if route.operation.name == hinted:
                return _matched(route, match)
            rank = (
                -(len(route.query) + present),
                missing,
                -group.literal,
                route.operation.name not in preferred,
                route.deprecated,
                route.operation.name,
            )
            if best is None or rank < best[0]:
                best = (rank, route, match)
    return None if best is None else _matched(best[1], best[2])


def _matched(route: Route, match: re.Match[str]) -> RouteMatch:
    labels = {name: unquote(value) for name, value in zip(route.labels, match.groups(), strict=True)}
    return RouteMatch(route.operation, labels)


@functools.lru_cache(maxsize=64)
def model(name: str) -> Model | None:
    """The botocore model ``name`` (``s3``), or None if botocore has none. Built once per name."""
    with _lock:
        if name not in _available():
            return None
        service = _session().get_service_model(name)
    return _model(service)


def models_for(signing_name: str) -> tuple[Model, ...]:
    """The models whose requests are signed for ``signing_name``, the one named so first."""
    own = model(signing_name)
    if own is not None and own.signing_name == signing_name:
        return (own,)
    return tuple(m for m in (model(name) for name in signing_index().get(signing_name, ())) if m is not None)


def siblings(first: Model) -> tuple[Model, ...]:
    """The other models that sign as ``first`` does (``dynamodbstreams`` for ``dynamodb``)."""
    names = signing_index().get(first.signing_name, ())
    return tuple(m for m in (model(n) for n in names if n != first.name) if m is not None)


_lock = threading.RLock()


@functools.lru_cache(maxsize=1)
def _session() -> Any:
    import botocore.session

    return botocore.session.get_session()


@functools.lru_cache(maxsize=1)
def _available() -> frozenset[str]:
    return frozenset(_session().get_available_services())


@functools.lru_cache(maxsize=1)
def signing_index() -> Mapping[str, tuple[str, ...]]:
    """Signing name → botocore model names, from every model's metadata."""
    loader = _session().get_component("data_loader")
    index: dict[str, list[str]] = {}
    for name in sorted(_available()):
        metadata = _metadata(loader, name)
        signing = metadata.get("signingName") or metadata.get("endpointPrefix") or name
        index.setdefault(signing, []).append(name)
    return {signing: tuple(names) for signing, names in index.items()}


def _metadata(loader: Any, name: str) -> Mapping[str, Any]:
    """A model's ``metadata``, read from the head of its file, where botocore's models have it:
    parsing ~450 whole models would take ~3 s and leave ~300 MB of freed heap behind."""
    version = loader.determine_latest_version(name, "service-2")
    for base in loader.search_paths:
        for suffix in (".json.gz", ".json"):
            path = Path(base, name, version, f"service-2{suffix}")
            if not path.is_file():
                continue
            opener = gzip.open if suffix == ".json.gz" else open
            with opener(path, "rt", encoding="utf-8") as model_file:
                head = model_file.read(_HEAD)
            start = head.find("{", head.find('"metadata"'))
            try:
                found, _ = json.JSONDecoder().raw_decode(head, start)
            except ValueError:  # not at the head of this file: read it whole
                break
            if isinstance(found, dict):
                return found
    metadata: Mapping[str, Any] = loader.load_service_model(name, "service-2").get("metadata", {})
    return metadata


def _model(service: Any) -> Model:
    metadata = service.metadata
    operations: dict[str, Operation] = {}
    by_path: dict[str, dict[tuple[str, int], list[Route]]] = {}
    protocol = metadata.get("protocol", "")
    for name in service.operation_names:
        operation_model = service.operation_model(name)
        operation = _operation(operation_model)
        operations[name] = operation
        if protocol.startswith("rest"):
            pattern, literal, route = _route(operation, operation_model)
            by_path.setdefault(operation.method, {}).setdefault((pattern, literal), []).append(route)
    return Model(
        name=service.service_name,
        signing_name=service.signing_name or metadata.get("endpointPrefix", ""),
        endpoint_prefix=metadata.get("endpointPrefix", ""),
        protocol=protocol,
        target_prefix=metadata.get("targetPrefix", ""),
        operations=operations,
        routes={
            method: tuple(
                PathRoutes(re.compile(pattern, re.DOTALL), literal, tuple(found))
                for (pattern, literal), found in groups.items()
            )
            for method, groups in by_path.items()
        },
    )


def _operation(operation_model: Any) -> Operation:
    shape = operation_model.input_shape
    members, body = [], False
    if shape is not None:
        for name, member in shape.members.items():
            location = member.serialization.get("location")
            wire = member.serialization.get("name", name)
            if location in ("uri", "querystring"):
                members.append(Member(name, location, wire))
            elif location == "header":
                members.append(Member(name, location, wire.lower()))
            elif location is None:
                body = True
        body = body and "payload" not in shape.serialization
    return Operation(operation_model.name, operation_model.http.get("method", "POST"), tuple(members), body)


def _route(operation: Operation, operation_model: Any) -> tuple[str, int, Route]:
    """(path pattern, fixed characters in it, route) of one REST operation."""
    uri = operation_model.http.get("requestUri", "/")
    path, _, query_text = uri.partition("?")
    by_wire = {m.wire_name: m.name for m in operation.members if m.location == "uri"}
    pattern, labels, literal, last = [], [], 0, 0
    for match in _LABEL.finditer(path):
        fixed = path[last : match.start()]
        pattern.append(re.escape(fixed))
        literal += len(fixed)
        pattern.append("(.+)" if match.group(2) else "([^/]+)")
        labels.append(by_wire.get(match.group(1), match.group(1)))
        last = match.end()
    tail = path[last:]
    pattern.append(re.escape(tail.rstrip("/")) + "/?")  # a trailing '/' is optional on the wire
    literal += len(tail)
    query: dict[str, str | None] = {}
    for pair in filter(None, query_text.split("&")):
        key, equals, value = pair.partition("=")
        if key != "x-id":  # botocore's operation hint, not a discriminator
            query[key] = value if equals else None
    required = operation_model.input_shape.required_members if operation_model.input_shape else ()
    required_query, required_headers = [], []
    for member in operation.members:
        if member.name in required and member.location == "querystring" and member.wire_name not in query:
            required_query.append(member.wire_name)
        elif member.name in required and member.location == "header":
            required_headers.append(member.wire_name)
    route = Route(
        operation,
        tuple(labels),
        tuple(sorted(query.items())),
        tuple(sorted(required_query)),
        tuple(sorted(required_headers)),
        bool(operation_model.deprecated),
    )
    return "".join(pattern) + r"\Z", literal, route
