"""Pod logs: reads the CRI-format files the sandbox's pod runner writes, as the kubelet would.

Input: `{log_dir}/{namespace}_{pod}.log`, one record per line:
    `<RFC3339Nano UTC timestamp> <stdout|stderr> <F|P> <message>`
(`P` marks a partial record continued by the next one; `F` ends a line). Output: the bytes
`GET .../pods/{name}/log` returns through `server.py` — messages only, or prefixed by their
timestamp when `timestamps=true`. Filtering follows the kubelet (pkg/kubelet/kuberuntime/logs):
`tailLines` picks the last N records first, then `sinceTime`/`sinceSeconds` keeps records whose
timestamp is at or after the bound (`>=`, like the kubelet's `!timestamp.Before(since)`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


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


class LogReader:
    """Reads a pod's log file incrementally: an initial snapshot, then appended records.

    Only complete lines (ending in a newline) are consumed, so a record the runner is still
    writing is never returned half-read; truncation (a smaller file) restarts from the top.
    """

    def __init__(self, path: Path, options: LogOptions) -> None:
        self.path = path
        self.options = options
        self._offset = 0

    def _read_new(self) -> list[LogRecord]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(0, 2)
                if handle.tell() < self._offset:
                    self._offset = 0
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return []
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
