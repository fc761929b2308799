"""Kafka brokers' log lines through the Kubernetes pod log API, read incrementally, each line once.

Where the data comes from: ``GET /api/v1/namespaces/{ns}/pods/{pod}/log?timestamps=true&sinceTime=…``
for every pod matching the ``--kafka-servers`` items (``POD.NAMESPACE[:CONTAINER]``, globs allowed in
both names, as :class:`ServerPattern`), polled by :class:`PodLogSource`. Where it goes: each new line,
with its broker pod and the kubelet's timestamp, to the Kafka watcher
(:mod:`agent.watchers.kafkawatcher`), which classifies it.

Reading each line once (the pure half, :func:`take_new_lines`): ``sinceTime`` has one-second
granularity and the kubelet keeps lines at or after it, so consecutive reads overlap. A
:class:`LogCursor` remembers the instant reading is at (``since_ns``) and, as a multiset, the lines
already taken at or after it (each line carries its RFC3339Nano timestamp, so a line's text with
its timestamp names it); a line is new when it is at or after ``since_ns`` and not among those.
The cursor then moves to the start of the second of the newest line, keeping that second's lines.
A trailing line without its newline (a record still being written) is left for the next read.

Pods and containers (the I/O half, :class:`PodLogSource`): a pod is known by its UID, so a pod
recreated under the same name is a new log. The container is the item's, else the pod's first.
Without replaying history: every log is read from the watcher's start time on (a pod already
running at start is read from then; a pod that starts later is, in effect, read whole). Container
restarts: when ``status.containerStatuses[].restartCount`` rose since the last poll, the
``previous=true`` log (the instance that ended) is read first, then the new instance's log. The
previous log is read with the cursor from *before* the last poll widened with every line that
poll took (:attr:`Taken.covered`), because the API's pod status can lag the kubelet: the last poll
may already have read the new instance's file while the status still showed the old count. A
line is never taken twice; lines are lost only when a container restarted twice between polls
(the kubelet keeps one previous log) or its previous log cannot be read.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from agent.settings import server_item

__all__ = [
    "LogCursor",
    "LogTarget",
    "PodLine",
    "PodLogPoll",
    "PodLogSource",
    "ServerPattern",
    "Taken",
    "log_targets",
    "parse_stamp",
    "since_time",
    "take_new_lines",
]

log = logging.getLogger("agent.watchers.kafkalogs")

_NS = 1_000_000_000
_GLOB = re.compile(r"[*?\[]")
_STAMP = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)\Z")


# --------------------------------------------------------------------------- pure: which logs


@dataclass(frozen=True, slots=True)
class ServerPattern:
    """One ``--kafka-servers`` item: ``POD.NAMESPACE[:CONTAINER]`` (the namespace is the part after
    the last dot: namespaces hold none). Pod and namespace may be globs (``kafka-*.kafka``)."""

    pod: str
    namespace: str
    container: str = ""  # "": the pod's first container

    @classmethod
    def parse(cls, item: str) -> ServerPattern:
        """Raises ValueError for an item that is not ``POD.NAMESPACE[:CONTAINER]``."""
        return cls(*server_item(item))

    @property
    def any_namespace(self) -> bool:
        """Whether the namespace is a glob (the pods of every namespace must be listed)."""
        return _GLOB.search(self.namespace) is not None

    def matches(self, namespace: str, pod: str) -> bool:
        return fnmatch.fnmatchcase(namespace, self.namespace) and fnmatch.fnmatchcase(pod, self.pod)


@dataclass(frozen=True, slots=True)
class LogTarget:
    """One container log to read, as the pod's status described it at this poll."""

    namespace: str
    pod: str
    uid: str
    container: str
    restarts: int = 0
    last_finished: float | None = None  # when the previous instance ended (epoch seconds), if any


def _epoch(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    ns = parse_stamp(text)
    return None if ns is None else ns / _NS


def log_targets(patterns: Iterable[ServerPattern], pods: Iterable[Mapping[str, Any]]) -> list[LogTarget]:
    """The container logs to read among ``pods`` (Pod objects as the API serves them, as dicts):
    those matching a pattern, once each, whose container has run (a container that never started
    has no log yet)."""
    patterns = list(patterns)
    targets: dict[tuple[str, str], LogTarget] = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        namespace, name, uid = str(meta.get("namespace", "")), str(meta.get("name", "")), str(meta.get("uid"))
        containers = [str(c.get("name", "")) for c in (pod.get("spec") or {}).get("containers") or []]
        statuses = {str(s.get("name")): s for s in (pod.get("status") or {}).get("containerStatuses") or []}
        for pattern in patterns:
            if not containers or not pattern.matches(namespace, name):
                continue
            container = pattern.container or containers[0]
            status = statuses.get(container, {})
            restarts = int(status.get("restartCount") or 0)
            state = status.get("state") or {}
            never_ran = restarts == 0 and "running" not in state and "terminated" not in state
            if never_ran and container in containers:  # no log yet; an unknown name is read (and refused)
                continue
            finished = ((status.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
            target = LogTarget(namespace, name, uid, container, restarts, _epoch(finished))
            targets.setdefault((uid, container), target)
    return list(targets.values())


# --------------------------------------------------------------------------- pure: which lines


def parse_stamp(text: str) -> int | None:
    """An RFC 3339 timestamp (the kubelet's RFC3339Nano, or seconds) → nanoseconds since the epoch;
    None when it is not one."""
    match = _STAMP.match(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC)
    except ValueError:
        return None
    seconds = int(moment.timestamp())
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return seconds * _NS + int((fraction or "").ljust(9, "0"))


@dataclass(frozen=True, slots=True)
class LogCursor:
    """Where reading a log is: lines before ``since_ns`` are read (or history); ``seen`` counts the
    lines at or after it already taken, by their text with timestamp."""

    since_ns: int
    seen: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def at(cls, moment: float) -> LogCursor:
        """A cursor that takes every line from ``moment`` (epoch seconds, to the microsecond) on."""
        return cls(round(moment * 1_000_000) * 1_000)


def since_time(cursor: LogCursor) -> str:
    """The ``sinceTime`` to ask for: the cursor's instant, rounded down to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(cursor.since_ns // _NS))


@dataclass(frozen=True, slots=True)
class PodLine:
    """One new log line of a broker pod: the message (the kubelet's timestamp removed) and the
    timestamp as epoch seconds."""

    namespace: str
    pod: str
    text: str
    seen_at: float


@dataclass(frozen=True, slots=True)
class Taken:
    """What one read gave: the new lines (``(timestamp ns, message)``, in log order), the cursor for
    the next read, and ``covered``: the old cursor's instant with every line this read returned at
    or after it (a cursor that knows all that was taken since the old one)."""

    lines: tuple[tuple[int, str], ...]
    cursor: LogCursor
    covered: LogCursor


def take_new_lines(cursor: LogCursor, body: str) -> Taken:
    """The lines of ``body`` (a log read with ``timestamps=true`` and ``sinceTime`` =
    :func:`since_time` of ``cursor``) not taken before. Lines without a timestamp (none come with
    ``timestamps=true``) are skipped: without one a line cannot be told from its repeat."""
    records = body.split("\n")
    records.pop()  # "" after the last newline, or a record still being written: left for the next read
    returned: list[tuple[int, str]] = []
    newest = cursor.since_ns
    for record in records:
        stamp, _, _ = record.partition(" ")
        ns = parse_stamp(stamp)
        if ns is None or ns < cursor.since_ns:
            continue
        returned.append((ns, record))
        newest = max(newest, ns)
    fresh: list[tuple[int, str]] = []
    repeats = Counter(cursor.seen)
    for ns, record in returned:
        if repeats[record] > 0:
            repeats[record] -= 1
        else:
            fresh.append((ns, record.partition(" ")[2]))
    all_returned = Counter(record for _, record in returned)
    covered = LogCursor(cursor.since_ns, dict(all_returned | Counter(cursor.seen)))
    since = max(cursor.since_ns, newest - newest % _NS)
    if since == cursor.since_ns:
        seen = covered.seen
    else:
        seen = dict(Counter(record for ns, record in returned if ns >= since))
    return Taken(tuple(fresh), LogCursor(since, seen), covered)


# --------------------------------------------------------------------------- I/O: the API


@dataclass(frozen=True, slots=True)
class PodLogPoll:
    """One poll: the new lines, and how many API requests failed."""

    lines: list[PodLine]
    failures: int


@dataclass(frozen=True, slots=True)
class _Tracked:
    cursor: LogCursor
    covered: LogCursor
    restarts: int


class _Failed(Exception):
    """A request to the API failed (logged where raised)."""


class PodLogSource:
    """Polls the logs of the pods matching ``patterns`` through ``api`` (see the module docstring).
    ``started_at``: the watcher's start (epoch seconds): earlier lines are history. Not
    thread-safe: one poller calls :meth:`poll`."""

    def __init__(
        self, api: ApiClient, patterns: Iterable[ServerPattern], started_at: float, request_timeout: float
    ) -> None:
        self._api = api
        self.patterns = tuple(patterns)
        self._start = LogCursor.at(started_at)
        self._timeout = request_timeout
        self._tracked: dict[tuple[str, str], _Tracked] = {}  # (pod UID, container) → where reading is
        self._complained: set[str] = set()  # reads that failed and have not succeeded since
        self._failures = 0

    def poll(self) -> PodLogPoll:
        """List the matching pods and read what each log has that is new."""
        self._failures = 0
        if any(p.any_namespace for p in self.patterns):
            namespaces: list[str | None] = [None]
        else:
            namespaces = list(dict.fromkeys(p.namespace for p in self.patterns))
        pods: list[Mapping[str, Any]] = []
        listed = 0
        for namespace in namespaces:
            try:
                pods += self._list_pods(namespace)
                listed += 1
            except _Failed:
                continue
        targets = log_targets(self.patterns, pods)
        lines: list[PodLine] = []
        for target in targets:
            lines += self._poll_target(target)
        if listed == len(namespaces):  # every pod is known: forget the deleted (or recreated) ones
            live = {(t.uid, t.container) for t in targets}
            for gone in self._tracked.keys() - live:
                del self._tracked[gone]
        return PodLogPoll(lines, self._failures)

    def _poll_target(self, target: LogTarget) -> list[PodLine]:
        key = (target.uid, target.container)
        tracked = self._tracked.get(key)
        lines: list[PodLine] = []
        if tracked is None:
            tracked = _Tracked(self._start, self._start, target.restarts)
            # Restarted after the watcher started but before it first saw the pod: the ended
            # instance's lines since the start are not history.
            if target.restarts and (target.last_finished or 0) >= self._start.since_ns // _NS:
                lines += self._read(target, tracked.covered, previous=True)[0]
        elif target.restarts > tracked.restarts:
            lines += self._read(target, tracked.covered, previous=True)[0]
        try:
            new, taken = self._read(target, tracked.cursor, previous=False)
        except _Failed:  # tried again from the same cursor next poll; the previous log is not
            self._tracked[key] = _Tracked(tracked.cursor, tracked.covered, target.restarts)
            return lines
        self._tracked[key] = _Tracked(taken.cursor, taken.covered, target.restarts)
        return lines + new

    def _read(self, target: LogTarget, cursor: LogCursor, *, previous: bool) -> tuple[list[PodLine], Taken]:
        """Read one log from ``cursor``. A failed read of a previous log gives nothing (its lines
        are lost: trying it again later could read another instance); of a current one raises."""
        query = [("container", target.container), ("timestamps", "true")]
        if cursor.since_ns > 0:
            query.append(("sinceTime", since_time(cursor)))
        if previous:
            query.append(("previous", "true"))
        what = f"log of {target.namespace}/{target.pod}:{target.container}" + (
            " previous" if previous else ""
        )
        path = "/api/v1/namespaces/{namespace}/pods/{name}/log"
        try:
            body = self._get(path, {"namespace": target.namespace, "name": target.pod}, query, what)
        except _Failed:
            if previous:
                return [], Taken((), cursor, cursor)
            raise
        taken = take_new_lines(cursor, body)
        return [PodLine(target.namespace, target.pod, text, ns / _NS) for ns, text in taken.lines], taken

    def _list_pods(self, namespace: str | None) -> list[Mapping[str, Any]]:
        """The pods of ``namespace`` (None: of every namespace), as dicts."""
        what = f"pods of {namespace or 'every namespace'}"
        if namespace is None:
            body = self._get("/api/v1/pods", {}, [], what, "application/json")
        else:
            path = "/api/v1/namespaces/{namespace}/pods"
            body = self._get(path, {"namespace": namespace}, [], what, "application/json")
        try:
            return list(json.loads(body)["items"] or [])
        except (ValueError, KeyError, TypeError) as exc:
            self._failures += 1
            log.warning("pod list unreadable what=%s error=%r", what, exc)
            raise _Failed from exc

    def _get(
        self, path: str, params: dict[str, str], query: list[tuple[str, str]], what: str, accept: str = "*/*"
    ) -> str:
        try:
            response = self._api.call_api(
                path,
                "GET",
                path_params=params,
                query_params=query,
                header_params={"Accept": accept},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _return_http_data_only=True,
                _request_timeout=self._timeout,
            )
            try:
                body = str(response.data.decode("utf-8", errors="replace"))
            finally:
                response.release_conn()
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            self._failures += 1
            detail = f"HTTP {exc.status}: {_reason(exc)}" if isinstance(exc, ApiException) else repr(exc)
            # One WARNING per failing read until it succeeds again (a poll every few seconds).
            level = logging.DEBUG if what in self._complained else logging.WARNING
            self._complained.add(what)
            log.log(level, "read failed what=%s error=%s", what, detail)
            raise _Failed from exc
        self._complained.discard(what)
        return body


def _reason(exc: ApiException) -> str:
    """The message of the API's Status body, else the HTTP reason."""
    try:
        return str(json.loads(exc.body)["message"])
    except (ValueError, TypeError, KeyError):
        return str(exc.reason)
