"""The mapper's background loops (the cloud uploader, the edge pruner, the automatic snapshots):
each a daemon thread running its ``_run`` until :meth:`Background.stop`, started from
``agent.mapper.__main__`` and stopped at shutdown. ``_run`` waits on ``_stopping`` between its
rounds, so a stop wakes it at once.
"""

from __future__ import annotations

import threading
from typing import Self


class Background:
    """A loop on a daemon thread named :attr:`thread_name`; subclasses write :meth:`_run`."""

    thread_name = "background"

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        """Start the thread (once: starting a running loop does nothing)."""
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Wake the loop and wait up to ``timeout`` seconds for it to end."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
