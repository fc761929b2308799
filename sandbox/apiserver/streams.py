"""Long-running responses: watch event streams and followed pod logs.

Both are generators of byte chunks that `server.py` writes with chunked transfer encoding, one
flush per chunk. An empty chunk is a heartbeat: the generator is idle, and the HTTP layer uses it
to notice a client that went away. Watch events come from `Store.wait_for_events`; log bytes from
`logs.LogReader`. Streams end at their deadline, when the pod goes away or its container stops
or restarts (logs), or when the server stops (`stop` event set / store closed).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sandbox.apiserver.discovery import ResourceType
from sandbox.apiserver.errors import ApiError
from sandbox.apiserver.logs import LogReader
from sandbox.apiserver.selectors import FieldSelector, LabelSelector
from sandbox.apiserver.store import Event, Obj, Store, matches

# Idle streams wake at least this often, to emit a heartbeat the HTTP layer checks the client with.
HEARTBEAT_SECONDS = 2.0
LOG_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class WatchRequest:
    rt: ResourceType
    namespace: str | None
    labels: LabelSelector
    fields: FieldSelector
    resource_version: int | None
    timeout: float
    bookmarks: bool = False
    send_initial_events: bool = False
    bookmark_interval: float = 60.0
    # Wraps each event object (e.g. into a one-row Table for kubectl get -w); identity by default.
    render: Callable[[Obj], Obj] | None = None


def _line(event_type: str, obj: Obj) -> bytes:
    return (json.dumps({"type": event_type, "object": obj}, separators=(",", ":")) + "\n").encode()


def translate(event: Event, request: WatchRequest) -> tuple[str, Obj] | None:
    """The event a client filtered by namespace/selectors sees, or None.

    Like the real watch cache, an object that starts matching arrives as ADDED and one that stops
    matching leaves as DELETED, so a selector-filtered informer's cache stays correct.
    """
    if request.namespace is not None and event.namespace != request.namespace:
        return None
    now_matches = matches(event.obj, request.labels, request.fields)
    was_matching = event.old is not None and matches(event.old, request.labels, request.fields)
    if event.type == "ADDED":
        return ("ADDED", event.obj) if now_matches else None
    if event.type == "DELETED":
        return ("DELETED", event.obj) if was_matching else None
    if now_matches:
        return ("MODIFIED" if was_matching else "ADDED", event.obj)
    return ("DELETED", event.obj) if was_matching else None


def _bookmark(rt: ResourceType, resource_version: int, initial_end: bool = False) -> Obj:
    metadata: Obj = {"resourceVersion": str(resource_version)}
    if initial_end:
        metadata["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": metadata}


def watch_stream(store: Store, request: WatchRequest) -> Iterator[bytes]:
    """Newline-delimited watch events until the timeout, an expiry, or server stop."""
    render = request.render or (lambda obj: obj)
    deadline = time.monotonic() + request.timeout
    start_rv = request.resource_version
    if start_rv is None or start_rv == 0 or request.send_initial_events:
        # No (or "any") resourceVersion: synthesize ADDED for the current state, then go live.
        items, cursor = store.list(request.rt.key, request.namespace, request.labels, request.fields)
        for item in items:
            yield _line("ADDED", render(item))
        if request.send_initial_events and request.bookmarks:
            yield _line("BOOKMARK", _bookmark(request.rt, cursor, initial_end=True))
    else:
        cursor = start_rv
    last_sent = time.monotonic()
    while not store.closed:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        try:
            events, cursor = store.wait_for_events(request.rt.key, cursor, min(remaining, HEARTBEAT_SECONDS))
        except ApiError as error:
            # Too old (history trimmed past our cursor): tell the client, as the real server does.
            yield _line("ERROR", error.status())
            return
        sent = False
        for event in events:
            seen = translate(event, request)
            if seen is not None:
                yield _line(seen[0], render(seen[1]))
                sent = True
        now = time.monotonic()
        if sent:
            last_sent = now
        elif request.bookmarks and now - last_sent >= request.bookmark_interval:
            yield _line("BOOKMARK", _bookmark(request.rt, cursor))
            last_sent = now
        else:
            yield b""


def expired_stream(error: ApiError) -> Iterator[bytes]:
    """A watch that starts too far back: one ERROR event, then the end of the stream."""
    yield _line("ERROR", error.status())


def follow_log(
    reader: LogReader,
    still_there: Callable[[], bool],
    stop: threading.Event,
    limit_bytes: int | None = None,
) -> Iterator[bytes]:
    """The log so far, then appended records until the container (or its pod) is gone, the limit
    hit, or stop. The reader's file is closed however the stream ends."""
    sent = 0

    def capped(data: bytes) -> bytes:
        nonlocal sent
        if limit_bytes is not None:
            data = data[: max(limit_bytes - sent, 0)]
        sent += len(data)
        return data

    try:
        yield capped(reader.initial())
        while not stop.is_set() and (limit_bytes is None or sent < limit_bytes):
            if not still_there():
                yield capped(reader.poll())  # whatever the runner wrote before the container went away
                return
            stop.wait(LOG_POLL_SECONDS)
            yield capped(reader.poll())
    finally:
        reader.close()
