"""Pod processes and their logs — the sandbox's kubelet.

A :class:`PodProcess` runs a pod's program inside the pod's network namespace
(``ip netns exec``) and its own UTS namespace (``unshare --uts``, hostname = pod name, as in
a real pod), pipes its output into ``<log_dir>/<namespace>_<pod>.log`` in the CRI log format
the API server's ``pods/{name}/log`` reads (``<RFC3339Nano> stdout F <line>``), and restarts
it with backoff if it dies, as ``restartPolicy: Always`` would.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)


def cri_timestamp(t: datetime | None = None) -> str:
    """RFC3339 with nanoseconds, as containerd writes it."""
    t = t or datetime.now(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}000Z"


def log_path(log_dir: Path, namespace: str, pod: str) -> Path:
    return log_dir / f"{namespace}_{pod}.log"


class PodProcess:
    """One pod's program, kept running until :meth:`stop`."""

    def __init__(
        self,
        namespace: str,
        pod: str,
        netns: str,
        argv: Sequence[str],
        *,
        log_dir: Path,
        python: str = sys.executable,
        env: dict[str, str] | None = None,
        on_start: Callable[[int], object] | None = None,
    ) -> None:
        self.namespace, self.pod, self.netns = namespace, pod, netns
        # The hostname comes from the pod's UTS namespace, as HOSTNAME does in a container.
        self.cmd = [
            "ip",
            "netns",
            "exec",
            netns,
            "unshare",
            "--uts",
            "sh",
            "-c",
            'hostname "$0" && exec "$@"',
            pod,
            "env",
            f"HOSTNAME={pod}",
            "PYTHONUNBUFFERED=1",
            *(f"{k}={v}" for k, v in (env or {}).items()),
            python,
            *argv,
        ]
        self.log_file = log_path(log_dir, namespace, pod)
        self.restarts = 0
        self._on_start = on_start  # told each new pid, so `down` can always find the process
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._paused = threading.Event()  # stopped on purpose, until resume()
        self._resumed = threading.Event()
        self._watcher = threading.Thread(target=self._keep_running, name=f"pod-{pod}", daemon=True)

    @property
    def pid(self) -> int:
        return self._proc.pid if self._proc else 0

    def start(self) -> PodProcess:
        self._spawn()
        self._watcher.start()
        return self

    def _spawn(self) -> None:
        self._proc = subprocess.Popen(
            self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        assert self._proc.stdout is not None
        threading.Thread(target=self._copy_log, args=(self._proc.stdout,), daemon=True).start()
        log.info("pod started ns=%s pod=%s pid=%d", self.namespace, self.pod, self._proc.pid)
        if self._on_start:
            self._on_start(self._proc.pid)

    def _copy_log(self, stream: IO[bytes]) -> None:
        with self.log_file.open("a", buffering=1, encoding="utf-8") as out:
            for raw in stream:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                out.write(f"{cri_timestamp()} stdout F {line}\n")

    def _keep_running(self) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            assert self._proc is not None
            code = self._proc.wait()
            if self._stopping.is_set():
                return
            if self._paused.is_set():
                self._resumed.wait()
                self._resumed.clear()
                if self._stopping.is_set():
                    return
                self._spawn()
                continue
            log.warning(
                "pod exited ns=%s pod=%s code=%d restart_in=%.0fs", self.namespace, self.pod, code, backoff
            )
            if self._stopping.wait(backoff):
                return
            backoff = min(backoff * 2, 30.0)
            self.restarts += 1
            self._spawn()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._resumed.set()
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def pause(self) -> None:
        """Stop the process and keep it stopped (an outage) until :meth:`resume`."""
        self._paused.set()
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()

    def resume(self) -> None:
        self._paused.clear()
        self._resumed.set()

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None
