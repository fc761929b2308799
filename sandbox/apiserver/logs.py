"""Pod logs: reads the CRI-format files the sandbox's kubelet writes, as the kubelet would.

Input: one file per container instance, named by :func:`sandbox.kubelet.log_path` —
`{log_dir}/{namespace}_{pod}[_{container}][~previous].log` — one record per line:
    `<RFC3339Nano UTC timestamp> <stdout|stderr> <F|P> <message>`
(`P` marks a partial record continued by the next one; `F` ends a line). Which container is read
follows the API server's LogLocation (:func:`log_container`); the pod's first container may be
written under either of its two names (:func:`container_log_file`). Output: the
bytes `GET .../pods/{name}/log` returns through `server.py` — messages only, or prefixed by their
timestamp when `timestamps=true`. Filtering follows the kubelet (pkg/kubelet/kuberuntime/logs):
`tailLines` picks the last N records first, then `sinceTime`/`sinceSeconds` keeps records whose
timestamp is at or after the bound (`>=`, like the kubelet's `!timestamp.Before(since)`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from sandbox.apiserver.errors import bad_request
from sandbox.apiserver.store import Obj
from sandbox.kubelet import log_path


@dataclass(frozen=True)
class LogRecord:
    timestamp: datetime | None  # None for a line that is not CRI-formatted (passed through)
    raw_timestamp: str
    stream: str
    partial: bool
    message: str


@dataclass(frozen=True)
class LogOptions:
    since: datetime | None = None
    tail: int | None = None
    timestamps: bool = False
    stream: str | None = None  # "stdout" or "stderr" to keep only one (the `stream=` query)


def parse_time(text: str) -> datetime:
    """RFC 3339 (with or without nanoseconds, 'Z' or offset) to an aware datetime."""
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {text!r}")
    return moment


def parse_record(line: str) -> LogRecord:
    """One CRI record (without its trailing newline); anything else passes through as stdout."""
    parts = line.split(" ", 3)
    if len(parts) >= 3 and parts[1] in ("stdout", "stderr") and parts[2] in ("F", "P"):
        try:
            stamp = parse_time(parts[0])
        except ValueError:
            pass
        else:
            message = parts[3] if len(parts) == 4 else ""
            return LogRecord(stamp, parts[0], parts[1], parts[2] == "P", message)
    return LogRecord(None, "", "stdout", False, line)


def render(records: list[LogRecord], options: LogOptions) -> bytes:
    """The response body for these records (a partial record gets no newline, as in the kubelet)."""
    out: list[str] = []
    for record in records:
        if options.since is not None and record.timestamp is not None and record.timestamp < options.since:
            continue
        if options.stream is not None and record.stream != options.stream:
            continue
        prefix = f"{record.raw_timestamp} " if options.timestamps and record.raw_timestamp else ""
        out.append(prefix + record.message + ("" if record.partial else "\n"))
    return "".join(out).encode()


def container_log_file(
    log_dir: Path, namespace: str, pod: str, container: str, *, first: bool, previous: bool = False
) -> Path:
    """The file holding ``container``'s log: its own name, or — for the pod's first container,
    when no file carries its name — the pod's name alone (what the kubelet writes for it)."""
    named = log_path(log_dir, namespace, pod, container, previous)
    if not first or named.exists():
        return named
    return log_path(log_dir, namespace, pod, None, previous)


def log_container(pod: Obj, name: str, requested: str) -> tuple[str, bool]:
    """(the container whose log is asked for, whether it is the pod's first), as the API server's
    LogLocation picks it: the only one when none is named; a 400 otherwise."""
    names = [str(c.get("name", "")) for c in pod.get("spec", {}).get("containers") or []]
    if not requested:
        if len(names) == 1:
            return names[0], True
        if not names:
            raise bad_request(f"a container name must be specified for pod {name}")
        raise bad_request(
            f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"
        )
    if requested not in names:
        raise bad_request(f"container {requested} is not valid for pod {name}")
    return requested, requested == names[0]


def _status_of(pod: Obj, container: str) -> Obj:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return next((s for s in statuses if s.get("name") == container), {})


def container_id(pod: Obj, container: str) -> str:
    return str(_status_of(pod, container).get("containerID") or "")


def running_instance(pod: Obj, container: str) -> str:
    """The container's running instance's ID; "" when it is not running."""
    status = _status_of(pod, container)
    return str(status.get("containerID") or "") if "running" in (status.get("state") or {}) else ""


class LogReader:
    """Reads one container instance's log file incrementally: a snapshot, then appended records.

    The file is opened once and followed by its handle, as the kubelet follows a container's log:
    when the kubelet renames it to the previous log at a restart, the reader still reads the old
    instance to its end. Until the file exists, each read tries to open it again. Only complete
    lines (ending in a newline) are consumed, so a record being written is never returned
    half-read; truncation (a smaller file) restarts from the top.
    """

    def __init__(self, path: Path, options: LogOptions) -> None:
        self.path = path
        self.options = options
        self._offset = 0
        self._handle: BinaryIO | None = None

    def _read_new(self) -> list[LogRecord]:
        if self._handle is None:
            try:
                self._handle = self.path.open("rb")
            except FileNotFoundError:
                return []
        handle = self._handle
        handle.seek(0, 2)
        if handle.tell() < self._offset:
            self._offset = 0
        handle.seek(self._offset)
        data = handle.read()
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self._offset += end + 1
        text = data[: end + 1].decode("utf-8", errors="replace")
        return [parse_record(line) for line in text.split("\n")[:-1]]

    def initial(self) -> bytes:
        records = self._read_new()
        if self.options.tail is not None:
            records = records[-self.options.tail :] if self.options.tail > 0 else []
        return render(records, self.options)

    def poll(self) -> bytes:
        return render(self._read_new(), self.options)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
