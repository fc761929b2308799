"""Following a log file like ``tail -F``: complete lines as they are appended, across rotation.

Where the data comes from: a broker's log file on a volume the watcher mounts (the
``--log-files PATH=POD.NAMESPACE`` items of :class:`agent.settings.KafkaWatcherSettings`), written by
Log4j's file appenders and rotated by them or by logrotate. Where it goes: the Kafka watcher
(:mod:`agent.watchers.kafkawatcher`) calls :meth:`FileTail.read_lines` every poll and classifies
the lines.

The rules, each for a reason:

* The file as it is when the tail is made is history: reading starts at its end. A file that
  appears later, and every file rotated in, is new: read from its start.
* Only complete lines: a partial last line (the writer is mid-line) is kept until its newline.
* Rotation by rename (``app.log`` → ``app.log.1``, a new ``app.log`` created): the path names a
  new inode. The old file is read to its end first (writes that landed before the rename),
  its unterminated last line, if any, counts as a line (the writer has left it), then the new
  file is read from its start. The path is looked at *before* the old file is drained, so what
  was written to the old file up to the switch is read.
* Truncation in place (logrotate's ``copytruncate``): the file is shorter than what was read,
  so reading starts again at 0. As with ``tail``, a file truncated and then regrown past the
  read offset between two reads cannot be told from one that grew.
* A missing path (deleted, not yet re-created) is no error: the open file is still read, and
  the path is tried again on the next read.

Memory is bounded: at most ``max_read`` bytes are read per call (the rest on the next), and a
"line" that grows past ``max_line`` bytes without a newline is handed over in pieces.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

__all__ = ["FileTail"]

MAX_READ = 8 << 20
MAX_LINE = 1 << 20


class FileTail:
    """Follows ``path`` (see the module docstring). Not thread-safe: one reader calls
    :meth:`read_lines`. ``from_end=False`` reads a file that exists now from its start too.
    OSError other than a missing file (a directory, no permission) propagates, here as well."""

    def __init__(
        self, path: Path, *, from_end: bool = True, max_read: int = MAX_READ, max_line: int = MAX_LINE
    ) -> None:
        if max_read < 1 or max_line < 1:
            raise ValueError("max_read and max_line must be positive")
        self.path = path
        self._max_read = max_read
        self._max_line = max_line
        self._handle: BinaryIO | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the open file
        self._offset = 0
        self._partial = b""
        self._open(from_start=not from_end)

    def read_lines(self) -> list[str]:
        """The complete lines appended since the last call (without their line ending).
        OSError other than a missing file (permissions, I/O) propagates."""
        if self._handle is None and not self._open(from_start=True):
            return []
        current = self._path_identity()
        lines, at_end = self._drain()
        if at_end and current is not None and current != self._identity:
            if self._partial:  # the writer has moved on: the old file's last line is complete
                lines.append(self._decode(self._partial))
                self._partial = b""
            self.close()
            if self._open(from_start=True):
                more, _ = self._drain()
                lines += more
        return lines

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        self._handle = None
        self._identity = None

    def _path_identity(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_dev, st.st_ino

    def _open(self, *, from_start: bool) -> bool:
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            return False
        st = os.fstat(handle.fileno())
        self._handle = handle
        self._identity = (st.st_dev, st.st_ino)
        self._offset = 0 if from_start else st.st_size
        self._partial = b""
        return True

    def _drain(self) -> tuple[list[str], bool]:
        """Lines of what the open file has past the offset, and whether its end was reached."""
        handle = self._handle
        if handle is None:
            return [], True
        if os.fstat(handle.fileno()).st_size < self._offset:  # truncated in place: start again
            self._offset = 0
            self._partial = b""
        handle.seek(self._offset)
        data = handle.read(self._max_read)
        self._offset += len(data)
        at_end = len(data) < self._max_read
        buffer = self._partial + data
        end = buffer.rfind(b"\n")
        lines = [] if end < 0 else [self._decode(raw) for raw in buffer[:end].split(b"\n")]
        rest = buffer[end + 1 :]
        while len(rest) > self._max_line:  # no newline for too long: hand it over in pieces
            lines.append(self._decode(rest[: self._max_line]))
            rest = rest[self._max_line :]
        self._partial = rest
        return lines, at_end

    @staticmethod
    def _decode(raw: bytes) -> str:
        return raw.removesuffix(b"\r").decode("utf-8", errors="replace")
