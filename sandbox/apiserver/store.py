"""The in-memory object store behind the sandbox API server (the sandbox's "etcd").

Objects arrive from the HTTP layer (`server.py`) already defaulted and validated by
`admission.py`; the store assigns identity (uid, resourceVersion, creationTimestamp,
generation, generateName suffixes), keeps one dict per resource, and records every change as an
`Event` in a bounded history that list/watch handlers read back out (`wait_for_events`).
Pure: threads and a condition variable, no I/O.

Resource versions are one global, increasing integer (like etcd's revision), rendered as a string.
Objects are deep-copied on the way in and out so no caller can mutate stored state (except
`preload`, which takes ownership of a bulk load). Lists can be paged (`limit` and a continue key,
as `handlers.py` serves them); owners' dependents and UIDs are indexed, so garbage collection on
delete costs the same with 150,000 objects as with 15.
"""

from __future__ import annotations

import bisect
import builtins
import copy
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sandbox.apiserver.errors import already_exists, bad_request, expired, not_found
from sandbox.apiserver.selectors import FieldSelector, LabelSelector

Obj = dict[str, Any]

# The alphabet apimachinery's names.SimpleNameGenerator uses (no vowels, no look-alikes).
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


@dataclass(frozen=True)
class Event:
    """One change to one object. `old` is the previous state (None for ADDED)."""

    type: str  # ADDED, MODIFIED or DELETED
    resource_version: int
    resource: str
    obj: Obj
    old: Obj | None = None

    @property
    def namespace(self) -> str:
        return str(self.obj.get("metadata", {}).get("namespace") or "")


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_resource_version(text: str | None) -> int | None:
    """`None` for absent/empty; raises 400 BadRequest for a non-integer, as the real server does."""
    if text is None or text == "":
        return None
    try:
        value = int(text)
    except ValueError:
        raise bad_request(f"invalid resource version: {text!r}") from None
    if value < 0:
        raise bad_request(f"invalid resource version: {text!r}")
    return value


def meta(obj: Obj) -> dict[str, Any]:
    metadata = obj.setdefault("metadata", {})
    if not isinstance(metadata, dict):
        raise bad_request("metadata must be an object")
    return metadata


def matches(obj: Obj, labels: LabelSelector | None, fields: FieldSelector | None) -> bool:
    if labels is not None and not labels.matches(obj.get("metadata", {}).get("labels")):
        return False
    return fields is None or fields.matches(obj)


class Store:
    """Thread-safe objects per resource, plus the change history watches resume from."""

    def __init__(self, history_limit: int = 1000, clock: Callable[[], datetime] | None = None) -> None:
        if history_limit < 1:
            raise ValueError("history_limit must be at least 1")
        self._clock = clock or (lambda: datetime.now(UTC))
        self._cond = threading.Condition(threading.RLock())
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {}
        self._history: deque[Event] = deque(maxlen=history_limit)
        # Per resource, its keys in order (None: to sort again), for paged lists.
        self._sorted: dict[str, builtins.list[tuple[str, str]] | None] = {}
        self._by_uid: dict[str, tuple[str, str, str]] = {}  # uid → (resource, namespace, name)
        self._dependents: dict[str, set[tuple[str, str, str]]] = {}  # owner uid → its dependents
        self._rv = 0
        # Every event with resourceVersion > _floor is still in _history.
        self._floor = 0
        self._closed = False

    # -- reads ---------------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        with self._cond:
            return self._rv

    @property
    def closed(self) -> bool:
        return self._closed

    def get(self, resource: str, namespace: str, name: str) -> Obj:
        with self._cond:
            obj = self._objects.get(resource, {}).get((namespace, name))
            if obj is None:
                raise not_found(resource.rsplit("/", 1)[-1], name, _group(resource))
            return copy.deepcopy(obj)

    def exists(self, resource: str, namespace: str, name: str) -> bool:
        with self._cond:
            return (namespace, name) in self._objects.get(resource, {})

    def list(
        self,
        resource: str,
        namespace: str | None = None,
        labels: LabelSelector | None = None,
        fields: FieldSelector | None = None,
        *,
        limit: int | None = None,
        after: tuple[str, str] | None = None,
    ) -> tuple[builtins.list[Obj], int]:
        """Matching objects sorted by (namespace, name), and the resourceVersion they are as-of.

        With `limit`, at most that many, starting after the key `after` (the last key of the
        previous page): a paged list, as `handlers.py` serves `limit` and `continue`.
        """
        with self._cond:
            objects = self._objects.get(resource, {})
            keys = self._sorted.get(resource)
            if keys is None:
                keys = self._sorted[resource] = sorted(objects)
            items: builtins.list[Obj] = []
            for key in keys[bisect.bisect_right(keys, after) if after is not None else 0 :]:
                obj = objects[key]
                if (namespace is None or key[0] == namespace) and matches(obj, labels, fields):
                    items.append(copy.deepcopy(obj))
                    if limit is not None and len(items) > limit:
                        break  # one more than asked: the caller learns there is a next page
            return items, self._rv

    def owned_by(self, uid: str) -> builtins.list[tuple[str, str, str]]:
        """(resource, namespace, name) of every object with an ownerReference to `uid`."""
        with self._cond:
            return sorted(self._dependents.get(uid, ()))

    def in_namespace(self, namespace: str) -> builtins.list[tuple[str, str, str]]:
        with self._cond:
            return [
                (resource, ns, name)
                for resource, objects in self._objects.items()
                for (ns, name) in objects
                if ns == namespace
            ]

    def uid_exists(self, uid: str) -> bool:
        with self._cond:
            return uid in self._by_uid

    # -- writes --------------------------------------------------------------------------------

    def create(self, resource: str, obj: Obj, uid: str | None = None) -> Obj:
        """Store a new object; `metadata.namespace` ("" if cluster-scoped) and name/generateName set."""
        obj = copy.deepcopy(obj)
        metadata = meta(obj)
        namespace = str(metadata.get("namespace") or "")
        with self._cond:
            objects = self._objects.setdefault(resource, {})
            if not metadata.get("name") and metadata.get("generateName"):
                # Retry on the (unlikely) collision, as the real registry does.
                for _ in range(16):
                    candidate = str(metadata["generateName"]) + "".join(
                        secrets.choice(_GENERATE_ALPHABET) for _ in range(5)
                    )
                    if (namespace, candidate) not in objects:
                        metadata["name"] = candidate
                        break
            name = str(metadata.get("name") or "")
            if (namespace, name) in objects:
                raise already_exists(resource.rsplit("/", 1)[-1], name, _group(resource))
            metadata["uid"] = uid or str(uuid.uuid4())
            metadata["creationTimestamp"] = rfc3339(self._clock())
            metadata["generation"] = 1
            metadata.pop("deletionTimestamp", None)
            self._rv += 1
            metadata["resourceVersion"] = str(self._rv)
            self._insert(resource, obj)
            self._record(Event("ADDED", self._rv, resource, obj))
            return copy.deepcopy(obj)

    def preload(self, resource: str, objs: Iterable[Obj]) -> int:
        """Bulk-load objects that exist before any client looks (a large cluster for a benchmark),
        taking ownership of them (no copies): identity is assigned as by `create` except that
        `creationTimestamp` is kept when given, and no events are recorded — the history starts
        after them (older resourceVersions are expired). Returns how many were loaded."""
        count = 0
        with self._cond:
            objects = self._objects.setdefault(resource, {})
            for obj in objs:
                metadata = meta(obj)
                key = (str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))
                if not key[1] or key in objects:
                    raise bad_request(f"preload: missing or duplicate name {key!r} in {resource}")
                metadata.setdefault("uid", str(uuid.uuid4()))
                metadata.setdefault("creationTimestamp", rfc3339(self._clock()))
                metadata["generation"] = 1
                self._rv += 1
                metadata["resourceVersion"] = str(self._rv)
                self._insert(resource, obj)
                count += 1
            self._history.clear()
            self._floor = self._rv
            self._cond.notify_all()
        return count

    def _insert(self, resource: str, obj: Obj) -> None:
        """Put a new object in place and in the indexes (under the lock)."""
        metadata = obj["metadata"]
        key = (str(metadata.get("namespace") or ""), str(metadata["name"]))
        self._objects.setdefault(resource, {})[key] = obj
        self._sorted[resource] = None
        self._by_uid[metadata["uid"]] = (resource, *key)
        self._index_owners(resource, key, obj, add=True)

    def _index_owners(self, resource: str, key: tuple[str, str], obj: Obj, *, add: bool) -> None:
        for ref in obj["metadata"].get("ownerReferences") or []:
            owner = str(ref.get("uid"))
            if add:
                self._dependents.setdefault(owner, set()).add((resource, *key))
            elif (dependents := self._dependents.get(owner)) is not None:
                dependents.discard((resource, *key))
                if not dependents:
                    del self._dependents[owner]

    def update(self, resource: str, namespace: str, name: str, mutate: Callable[[Obj], Obj]) -> Obj:
        """Read-modify-write under the store lock: `mutate` gets a copy of the current object.

        Identity fields (name, namespace, uid, creationTimestamp) always survive; generation is
        bumped when `spec` changes; a no-op update changes nothing and emits no event (as in
        the real server, which skips the etcd write).
        """
        with self._cond:
            objects = self._objects.get(resource, {})
            old = objects.get((namespace, name))
            if old is None:
                raise not_found(resource.rsplit("/", 1)[-1], name, _group(resource))
            new = copy.deepcopy(mutate(copy.deepcopy(old)))
            metadata = meta(new)
            for key in ("name", "namespace", "uid", "creationTimestamp"):
                if key in old["metadata"]:
                    metadata[key] = old["metadata"][key]
            metadata["generation"] = old["metadata"].get("generation", 1)
            if new.get("spec") != old.get("spec"):
                metadata["generation"] += 1
            metadata["resourceVersion"] = old["metadata"]["resourceVersion"]
            if new == old:
                return copy.deepcopy(old)
            self._rv += 1
            metadata["resourceVersion"] = str(self._rv)
            objects[(namespace, name)] = new
            self._index_owners(resource, (namespace, name), old, add=False)
            self._index_owners(resource, (namespace, name), new, add=True)
            self._record(Event("MODIFIED", self._rv, resource, new, old))
            return copy.deepcopy(new)

    def delete(self, resource: str, namespace: str, name: str) -> Obj:
        """Remove an object; the DELETED event (and the return value) carries a new resourceVersion."""
        with self._cond:
            objects = self._objects.get(resource, {})
            old = objects.pop((namespace, name), None)
            if old is None:
                raise not_found(resource.rsplit("/", 1)[-1], name, _group(resource))
            self._sorted[resource] = None
            self._by_uid.pop(old["metadata"]["uid"], None)
            self._index_owners(resource, (namespace, name), old, add=False)
            self._rv += 1
            final = copy.deepcopy(old)
            final["metadata"]["resourceVersion"] = str(self._rv)
            self._record(Event("DELETED", self._rv, resource, final, old))
            return copy.deepcopy(final)

    def _record(self, event: Event) -> None:
        if len(self._history) == self._history.maxlen:
            self._floor = self._history[0].resource_version
        self._history.append(event)
        self._cond.notify_all()

    # -- watch support -------------------------------------------------------------------------

    def check_watchable(self, resource_version: int) -> None:
        """Raise 410 Expired if events after `resource_version` are no longer all retained."""
        with self._cond:
            if resource_version < self._floor:
                raise expired(resource_version, self._floor + 1)

    def wait_for_events(self, resource: str, after: int, timeout: float) -> tuple[builtins.list[Event], int]:
        """Events for `resource` newer than `after`, waiting up to `timeout` s for the first one.

        Returns (events, cursor): pass `cursor` as `after` next time. The cursor moves to the
        store's current resourceVersion even when only other resources changed, so a watcher
        that keeps up is never expired by unrelated churn. Returns early (possibly empty) when
        the store is closed. Raises 410 Expired if the history has been trimmed past `after`.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if after < self._floor:
                    raise expired(after, self._floor + 1)
                found: builtins.list[Event] = []
                for event in reversed(self._history):
                    if event.resource_version <= after:
                        break
                    if event.resource == resource:
                        found.append(event)
                found.reverse()
                cursor = max(after, self._rv)
                remaining = deadline - time.monotonic()
                if found or self._closed or remaining <= 0:
                    return found, cursor
                self._cond.wait(remaining)

    def compact(self) -> None:
        """Drop all history: every resourceVersion older than the current one becomes too old."""
        with self._cond:
            self._history.clear()
            self._floor = self._rv
            self._cond.notify_all()

    def close(self) -> None:
        """Wake every waiting watcher so it can end its stream (server shutdown)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def _group(resource: str) -> str:
    # Resource keys are "plural" for the core group and "group/plural" otherwise.
    return resource.rsplit("/", 1)[0] if "/" in resource else ""
