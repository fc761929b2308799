"""Request routing and the REST verbs of the sandbox API server, independent of the socket layer.

`server.py` turns each HTTP request into a `Request` and writes back the `Response` returned by
`Api.handle`. Paths follow the real server: `/api/v1/...` for the core group, `/apis/{group}/{version}/...`
otherwise, `namespaces/{ns}/` for namespaced resources, `/{name}/status` and `/{name}/log`
subresources. Objects go to and from `store.Store` through `admission.py` (and `webhooks.py` on create).
Every failure is raised as `ApiError`, which becomes a `Status` response.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sandbox.apiserver import admission, discovery, streams, tables
from sandbox.apiserver.discovery import ResourceType
from sandbox.apiserver.errors import (
    ApiError,
    bad_request,
    method_not_allowed,
    path_not_found,
    unsupported_media_type,
)
from sandbox.apiserver.logs import (
    LogOptions,
    LogReader,
    container_id,
    container_log_file,
    log_container,
    parse_time,
    running_instance,
)
from sandbox.apiserver.patch import JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, json_patch, merge_patch
from sandbox.apiserver.selectors import parse_field_selector, parse_label_selector
from sandbox.apiserver.store import Obj, Store, parse_resource_version
from sandbox.apiserver.webhooks import MutatingWebhooks

JSON = "application/json"
# Namespaces the real server refuses to delete.
_UNDELETABLE = frozenset({"default", "kube-system", "kube-public"})


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    content_type: str = ""
    accept: str = ""


@dataclass
class Response:
    code: int
    body: Obj | bytes = b""
    content_type: str = JSON
    stream: Iterator[bytes] | None = None


_OK = Response(200, b"ok", "text/plain; charset=utf-8")
STATIC = {
    "/healthz": _OK,
    "/readyz": _OK,
    "/livez": _OK,
    # An empty OpenAPI document (protobuf, zero fields): `kubectl apply` validates against it before
    # sending, refuses when the document is missing, and skips the kinds it lacks. The server's own
    # checks (admission, stored-form validation) still apply.
    "/openapi/v2": Response(200, b"", "application/octet-stream"),
}
"""Answers that never change, by path."""


@dataclass(frozen=True)
class Target:
    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None


def encode_continue(resource_version: int, last: tuple[str, str]) -> str:
    """The opaque `continue` token of a paged list: where the next page starts, and as of when."""
    document = {"v": "meta.k8s.io/v1", "rv": resource_version, "start": list(last)}
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode()


def decode_continue(token: str) -> tuple[int, tuple[str, str]]:
    """(resourceVersion, last key) of a token from `encode_continue`; 400 BadRequest otherwise."""
    try:
        document = json.loads(base64.urlsafe_b64decode(token.encode()))
        namespace, name = document["start"]
        return int(document["rv"]), (str(namespace), str(name))
    except (ValueError, KeyError, TypeError) as error:
        raise bad_request(f"continue key is not valid: {error}") from None


def _flag(query: dict[str, str], name: str) -> bool:
    return query.get(name, "").lower() in ("true", "1")


def _int_param(query: dict[str, str], name: str) -> int | None:
    text = query.get(name)
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise bad_request(f"invalid {name}: {text!r} is not an integer") from None


class Api:
    """The API server's behaviour: discovery, CRUD, watch and logs over one `Store`."""

    def __init__(self, store: Store, log_dir: Path | None, webhooks: MutatingWebhooks) -> None:
        self.store = store
        self.webhooks = webhooks
        self.log_dir = log_dir
        self.server_address = ""  # set by the server once bound
        self.allocator = admission.ClusterIPAllocator()
        self.stop = threading.Event()
        self.default_watch_timeout = 1800.0
        self.bookmark_interval = 60.0

    # -- routing -------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        parts = [p for p in request.path.split("/") if p]
        if request.path == "/version":
            return Response(200, dict(discovery.SERVER_VERSION))
        static = STATIC.get(request.path)
        if static is not None:
            return static
        if request.path == "/sandbox/compact":
            if request.method != "POST":
                raise method_not_allowed()
            self.store.compact()
            return Response(200, {"compactedTo": str(self.store.resource_version)})
        if parts[:1] == ["api"]:
            return self._route_group("", parts[1:], request, legacy=True)
        if parts[:1] == ["apis"]:
            if len(parts) == 1:
                return self._discovery(request, discovery.api_group_list())
            return self._route_group(parts[1], parts[2:], request, legacy=False)
        raise path_not_found()

    def _discovery(self, request: Request, doc: Obj | None) -> Response:
        # Aggregated discovery (Accept ...;as=APIGroupDiscoveryList) gets the legacy document
        # with Content-Type application/json; kubectl sees the type and falls back.
        if doc is None:
            raise path_not_found()
        if request.method != "GET":
            raise method_not_allowed()
        return Response(200, doc)

    def _route_group(self, group: str, parts: list[str], request: Request, legacy: bool) -> Response:
        if legacy and not parts:
            return self._discovery(request, discovery.api_versions(self.server_address))
        if not legacy and not parts:
            return self._discovery(request, discovery.api_group(group))
        version, rest = parts[0], parts[1:]
        if not rest:
            return self._discovery(request, discovery.api_resource_list(group, version))
        return self._resource(self._target(group, version, rest), request)

    def _target(self, group: str, version: str, rest: list[str]) -> Target:
        namespace = None
        # `namespaces/{ns}/status` is the Namespace's own subresource, not a resource in {ns}.
        if (
            rest[0] == "namespaces"
            and len(rest) >= 3
            and not (len(rest) == 3 and rest[2] in ("status", "finalize"))
        ):
            namespace, rest = rest[1], rest[2:]
        if len(rest) > 3:
            raise path_not_found()
        rt = discovery.lookup(group, version, rest[0])
        if rt is None or (namespace is not None and not rt.namespaced):
            raise path_not_found()
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if (rt.namespaced and name is not None and namespace is None) or (
            sub is not None and sub not in rt.subresources
        ):
            raise path_not_found()
        return Target(rt, namespace, name, sub)

    def _resource(self, target: Target, request: Request) -> Response:
        method = request.method
        if "dryRun" in request.query and method != "GET":
            # Silently persisting a dry run would be worse than refusing it.
            raise bad_request("dryRun is not supported by the sandbox API server")
        if target.subresource == "log":
            verbs = {"GET": self._log}
        elif target.name is None:
            watching = _flag(request.query, "watch")
            verbs = {"GET": self._watch if watching else self._list}
            if target.namespace is not None or not target.rt.namespaced:
                verbs["POST"] = self._create
        else:
            verbs = {"GET": self._get, "PUT": self._update, "PATCH": self._patch}
            if target.subresource is None:
                verbs["DELETE"] = self._delete
        handler = verbs.get(method)
        if handler is None:
            raise method_not_allowed()
        return handler(target, request)

    # -- reads ---------------------------------------------------------------------------------

    def _render(self, target: Target, request: Request, objects: list[Obj], rv: str) -> Obj | None:
        version = tables.table_version(request.accept)
        if version is None:
            return None
        include = request.query.get("includeObject", "Metadata")
        return tables.render_table(target.rt.key, objects, rv, version=version, include_object=include)

    def _selectors(self, target: Target, request: Request) -> tuple[Any, Any]:
        fields = parse_field_selector(request.query.get("fieldSelector"))
        for path in fields.paths:
            if path not in target.rt.field_selectors:
                raise bad_request(f'field label not supported: "{path}"')
        return parse_label_selector(request.query.get("labelSelector")), fields

    def _list(self, target: Target, request: Request) -> Response:
        parse_resource_version(request.query.get("resourceVersion"))
        labels, fields = self._selectors(target, request)
        limit = _int_param(request.query, "limit")
        limit = limit if limit is not None and limit > 0 else None
        after, as_of = None, None
        if request.query.get("continue"):
            as_of, after = decode_continue(request.query["continue"])
            self.store.check_watchable(as_of)  # 410 Expired, as the real server says for an old token
        items, rv = self.store.list(target.rt.key, target.namespace, labels, fields, limit=limit, after=after)
        # Pages after the first are as of the first page's resourceVersion: a watch from it replays
        # whatever changed while the pages were read (the real server reads one etcd snapshot).
        rv = as_of if as_of is not None else rv
        metadata: dict[str, Any] = {"resourceVersion": str(rv)}
        if limit is not None and len(items) > limit:
            items = items[:limit]
            last = items[-1]["metadata"]
            metadata["continue"] = encode_continue(rv, (str(last.get("namespace") or ""), str(last["name"])))
        table = self._render(target, request, items, str(rv))
        if table is not None:
            return Response(200, table)
        kind = f"{target.rt.kind}List"
        return Response(
            200, {"kind": kind, "apiVersion": target.rt.api_version, "metadata": metadata, "items": items}
        )

    def _get(self, target: Target, request: Request) -> Response:
        obj = self.store.get(target.rt.key, target.namespace or "", str(target.name))
        table = self._render(target, request, [obj], obj["metadata"]["resourceVersion"])
        return Response(200, table if table is not None else obj)

    def _watch(self, target: Target, request: Request) -> Response:
        query = request.query
        rv = parse_resource_version(query.get("resourceVersion"))
        labels, fields = self._selectors(target, request)
        timeout = _int_param(query, "timeoutSeconds")
        table_version = tables.table_version(request.accept)
        include = query.get("includeObject", "Metadata")

        def as_table(obj: Obj) -> Obj:
            rv_text = str(obj.get("metadata", {}).get("resourceVersion", ""))
            return tables.render_table(
                target.rt.key, [obj], rv_text, version=table_version or "v1", include_object=include
            )

        watch = streams.WatchRequest(
            rt=target.rt,
            namespace=target.namespace,
            labels=labels,
            fields=fields,
            resource_version=rv,
            timeout=float(timeout) if timeout and timeout > 0 else self.default_watch_timeout,
            bookmarks=_flag(query, "allowWatchBookmarks"),
            send_initial_events=_flag(query, "sendInitialEvents"),
            bookmark_interval=self.bookmark_interval,
            render=as_table if table_version else None,
        )
        if rv and not watch.send_initial_events:
            try:
                self.store.check_watchable(rv)
            except ApiError as error:
                return Response(200, stream=streams.expired_stream(error))
        return Response(200, stream=streams.watch_stream(self.store, watch))

    def _log(self, target: Target, request: Request) -> Response:
        query = request.query
        namespace, name = target.namespace or "", str(target.name)
        pod = self.store.get("pods", namespace, name)
        container, first = log_container(pod, name, query.get("container", ""))
        previous = _flag(query, "previous")
        if query.get("sinceTime") and query.get("sinceSeconds"):
            raise bad_request("at most one of sinceTime or sinceSeconds may be specified")
        since = None
        if query.get("sinceTime"):
            try:
                since = parse_time(query["sinceTime"])
            except ValueError:
                raise bad_request(f"invalid sinceTime: {query['sinceTime']!r}") from None
        seconds = _int_param(query, "sinceSeconds")
        if seconds is not None:
            if seconds <= 0:
                raise bad_request("sinceSeconds: Invalid value: must be greater than 0")
            since = datetime.now(UTC) - timedelta(seconds=seconds)
        stream = query.get("stream", "All")
        if stream not in ("All", "Stdout", "Stderr"):
            raise bad_request(f"invalid stream {stream!r}: must be All, Stdout or Stderr")
        tail = _int_param(query, "tailLines")
        if tail is not None and tail < 0:
            raise bad_request("tailLines: Invalid value: must be greater than or equal to 0")
        options = LogOptions(
            since=since,
            tail=tail,
            timestamps=_flag(query, "timestamps"),
            stream=None if stream == "All" else stream.lower(),
        )
        limit = _int_param(query, "limitBytes")
        text = "text/plain"
        if self.log_dir is None:
            return Response(200, b"", text)
        path = container_log_file(self.log_dir, namespace, name, container, first=first, previous=previous)
        if previous and not path.exists():
            # The kubelet's wording (validateContainerLogStatus), relayed as a 400 by the API server.
            raise bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
        reader = LogReader(path, options)
        if previous or not _flag(query, "follow"):  # a previous instance has ended: nothing to follow
            try:
                data = reader.initial()
            finally:
                reader.close()
            return Response(200, data[:limit] if limit is not None else data, text)
        uid = pod["metadata"]["uid"]
        instance = container_id(pod, container)

        def still_there() -> bool:
            # The pod deleted (or deleted and recreated under the same name), or the container
            # instance followed stopped or restarted, ends the stream, as with the kubelet.
            try:
                current = self.store.get("pods", namespace, name)
            except ApiError:
                return False
            if current["metadata"]["uid"] != uid:
                return False
            return not instance or running_instance(current, container) == instance

        return Response(
            200, content_type=text, stream=streams.follow_log(reader, still_there, self.stop, limit)
        )

    # -- writes --------------------------------------------------------------------------------

    @staticmethod
    def _json_body(request: Request) -> Any:
        try:
            return json.loads(request.body or b"null")
        except (ValueError, UnicodeDecodeError) as error:
            raise bad_request(f"the body of the request could not be decoded as JSON: {error}") from None

    def _create(self, target: Target, request: Request) -> Response:
        rt = target.rt
        obj = admission.check_body(rt, self._json_body(request), target.namespace)
        if rt.namespaced and not self.store.exists("namespaces", "", str(target.namespace)):
            raise ApiError(
                404,
                "NotFound",
                f'namespaces "{target.namespace}" not found',
                {"name": target.namespace, "kind": "namespaces"},
            )
        # Defaulting, then the mutating webhooks, then the registry's allocation, as kube orders them.
        obj = self.webhooks.admit_create(rt, admission.default_fields(rt, obj), target.namespace)
        obj = admission.allocate_cluster_ip(rt, obj, self.allocator)
        try:
            created = self.store.create(rt.key, obj)
        except ApiError:
            if rt.plural == "services":
                self.allocator.release(obj.get("spec", {}).get("clusterIP"))
            raise
        return Response(201, created)

    def _update(self, target: Target, request: Request) -> Response:
        rt, name = target.rt, str(target.name)
        body = admission.check_body(rt, self._json_body(request), target.namespace, name)
        updated = self.store.update(
            rt.key,
            target.namespace or "",
            name,
            lambda old: admission.merge_update(rt, old, body, target.subresource),
        )
        return Response(200, updated)

    def _patch(self, target: Target, request: Request) -> Response:
        rt, name = target.rt, str(target.name)
        content_type = request.content_type.split(";")[0].strip().lower()
        if content_type not in (MERGE_PATCH, STRATEGIC_MERGE_PATCH, JSON_PATCH):
            raise unsupported_media_type(content_type)
        patch = self._json_body(request)
        if content_type != JSON_PATCH and not isinstance(patch, dict):
            raise bad_request("a merge patch must be a JSON object")

        def mutate(old: Obj) -> Obj:
            patched = json_patch(old, patch) if content_type == JSON_PATCH else merge_patch(old, patch)
            patched = admission.check_body(rt, patched, target.namespace, name)
            return admission.merge_update(rt, old, patched, target.subresource)

        return Response(200, self.store.update(rt.key, target.namespace or "", name, mutate))

    def _delete(self, target: Target, request: Request) -> Response:
        rt, name = target.rt, str(target.name)
        options = self._json_body(request) if request.body.strip() else {}
        if rt.plural == "namespaces" and name in _UNDELETABLE:
            raise ApiError(
                403, "Forbidden", f'namespaces "{name}" is forbidden: this namespace may not be deleted'
            )
        if rt.plural == "namespaces":
            self.store.get(rt.key, "", name)  # 404 before touching the contents
            for key, namespace, item in self.store.in_namespace(name):
                self._delete_one(discovery.by_key(key), namespace, item, orphan=True)
        orphan = isinstance(options, dict) and options.get("propagationPolicy") == "Orphan"
        return Response(200, self._delete_one(rt, target.namespace or "", name, orphan=orphan))

    def _delete_one(self, rt: ResourceType, namespace: str, name: str, *, orphan: bool) -> Obj:
        """Delete now (no graceful period), then garbage-collect dependents left without owners."""
        deleted = self.store.delete(rt.key, namespace, name)
        if rt.plural == "services":
            self.allocator.release(deleted.get("spec", {}).get("clusterIP"))
        if not orphan:
            for key, dep_ns, dep_name in self.store.owned_by(deleted["metadata"]["uid"]):
                try:
                    dependent = self.store.get(key, dep_ns, dep_name)
                except ApiError:
                    continue  # already collected through another owner
                owners = dependent["metadata"].get("ownerReferences") or []
                if not any(self.store.uid_exists(str(ref.get("uid"))) for ref in owners):
                    self._delete_one(discovery.by_key(key), dep_ns, dep_name, orphan=False)
        return deleted
