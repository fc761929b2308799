"""Pod processes and their logs — the sandbox's kubelet.

A :class:`PodProcess` runs each of a pod's containers (the workload, and any sidecar beside it) as
its own process inside the pod's network namespace (``ip netns exec``) and its own UTS namespace
(``unshare --uts``, hostname = pod name, as in a real pod). Each container's output goes to its own
CRI log file (``<RFC3339Nano> stdout F <line>``), which the API server's ``pods/{name}/log`` reads.
A container whose process exits is restarted with backoff, as ``restartPolicy: Always`` would
(``Never`` leaves it exited, ``OnFailure`` restarts only a failure: run-to-completion pods, such
as a ``helm test`` pod, end so):
its restart count goes up, it gets a new container ID, and its log file becomes the *previous*
log (one generation is kept, as the kubelet keeps) while the new one starts empty. Every start and
exit is told to the caller (``on_change``), which publishes ``status.containerStatuses``.

Log file names (:func:`log_path`) under the log directory — ``_`` cannot occur in Kubernetes
names, and ``~`` cannot either, so no two files collide::

    <namespace>_<pod>.log                       the pod's first container (the historical name)
    <namespace>_<pod>_<container>.log           any container by name (what the kubelet writes
                                                for every container after the first)
    <namespace>_<pod>[_<container>]~previous.log   the same container's previous instance
"""

from __future__ import annotations

import logging
import secrets
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

_PREVIOUS = "~previous"
_DRAIN_SECONDS = 2.0  # a grandchild holding the pipe open must not stall a restart
_MAX_BACKOFF = 30.0
_BACKOFF_RESET_SECONDS = 60.0


def cri_timestamp(t: datetime | None = None) -> str:
    """RFC3339 with nanoseconds, as containerd writes it."""
    t = t or datetime.now(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}000Z"


def _rfc3339(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def log_path(
    log_dir: Path, namespace: str, pod: str, container: str | None = None, previous: bool = False
) -> Path:
    """The CRI log file of a pod's container: ``container=None`` names the pod's first container
    (the name the kubelet writes for it); ``previous=True`` the instance before the current one."""
    stem = f"{namespace}_{pod}" + (f"_{container}" if container else "")
    return log_dir / f"{stem}{_PREVIOUS if previous else ''}.log"


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """One container to run: its name and the interpreter's arguments (``-m module ...``)."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    # (directory on the machine, path in the container, read-only): bound before the program starts
    mounts: tuple[tuple[Path, str, bool], ...] = ()
    restart_policy: str = "Always"  # the pod's: Always | OnFailure | Never


def _setup_script(mounts: Sequence[tuple[Path, str, bool]]) -> str:
    """The shell run in the pod's namespaces before the program: its hostname, then its volumes.

    ``ip netns exec`` has already given the process a mount namespace of its own whose mounts do not
    propagate back, so a bind mount here is seen by this container only, as a container's volume is.
    The mount point is made on the machine's filesystem when missing (recorded by the caller).
    """
    steps = ['hostname "$0"']
    for source, target, read_only in mounts:
        src, dst = shlex.quote(str(source)), shlex.quote(target)
        steps.append(f"mkdir -p {dst} && mount --bind {src} {dst}")
        if read_only:
            steps.append(f"mount -o remount,bind,ro {dst}")
    return " && ".join([*steps, 'exec "$@"'])


@dataclass(frozen=True, slots=True)
class Terminated:
    """A container instance that has exited (``state.terminated`` / ``lastState.terminated``)."""

    exit_code: int
    started_at: str
    finished_at: str
    container_id: str

    @property
    def reason(self) -> str:
        return "Completed" if self.exit_code == 0 else "Error"


@dataclass(frozen=True, slots=True)
class ContainerState:
    """What the kubelet knows of one container, as ``status.containerStatuses[i]`` reports it."""

    name: str
    restart_count: int
    container_id: str  # of the current instance; changes at every restart
    started_at: str
    exited: Terminated | None = None  # the current instance has exited (not yet restarted)
    last: Terminated | None = None  # the previous instance

    @property
    def running(self) -> bool:
        return self.exited is None


def _container_id() -> str:
    return "containerd://" + secrets.token_hex(32)


class ContainerProcess:
    """One container of a pod, kept running (restarted when it exits) until :meth:`stop`."""

    def __init__(
        self,
        pod: PodProcess,
        spec: ContainerSpec,
        log_file: Path,
        python: str,
        on_change: Callable[[ContainerProcess], object],
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.log_file = log_file
        self.previous_log_file = log_file.with_name(log_file.stem + _PREVIOUS + log_file.suffix)
        self._label = f"ns={pod.namespace} pod={pod.pod} container={spec.name}"
        # The hostname comes from the pod's UTS namespace, as HOSTNAME does in a container.
        self.cmd = [
            "ip",
            "netns",
            "exec",
            pod.netns,
            "unshare",
            "--uts",
            "sh",
            "-c",
            _setup_script(spec.mounts),
            pod.pod,
            "env",
            f"HOSTNAME={pod.pod}",
            "PYTHONUNBUFFERED=1",
            *(f"{k}={v}" for k, v in spec.env.items()),
            python,
            *spec.argv,
        ]
        self._on_change = on_change
        self._lock = threading.Lock()
        self._state = ContainerState(spec.name, 0, "", "")
        self._proc: subprocess.Popen[bytes] | None = None
        self._copier: threading.Thread | None = None
        self._stopping = threading.Event()
        self._completed = threading.Event()  # exited for good (restartPolicy Never / OnFailure)
        self._paused = threading.Event()  # stopped on purpose, until resume()
        self._resumed = threading.Event()
        self._restart_now = threading.Event()  # a restart asked for: no backoff
        self._wake = threading.Event()  # ends a backoff early (a restart or stop asked for)
        self._spawned_at = 0.0
        self._started = threading.Condition(self._lock)
        self._watcher = threading.Thread(
            target=self._keep_running, name=f"ctr-{pod.pod}-{spec.name}", daemon=True
        )

    @property
    def pid(self) -> int:
        return self._proc.pid if self._proc else 0

    def wait_completed(self, timeout: float) -> bool:
        """Wait until a run-to-completion container has exited for good; False on timeout."""
        return self._completed.wait(timeout)

    @property
    def paused(self) -> bool:
        """Stopped on purpose (``pause``) until ``resume``."""
        return self._paused.is_set()

    @property
    def state(self) -> ContainerState:
        with self._lock:
            return self._state

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        self._spawn(restart=False)
        self._watcher.start()

    def _spawn(self, *, restart: bool) -> None:
        if restart and self.log_file.exists():
            # The instance that exited becomes the previous one; its log is kept (one generation).
            self.log_file.replace(self.previous_log_file)
        self._restart_now.clear()
        self._wake.clear()
        now = datetime.now(UTC)
        self._spawned_at = time.monotonic()
        out = self.log_file.open("a", buffering=1, encoding="utf-8")  # exists (empty) from the start
        self._proc = subprocess.Popen(
            self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        assert self._proc.stdout is not None
        self._copier = threading.Thread(target=self._copy_log, args=(self._proc.stdout, out), daemon=True)
        self._copier.start()
        with self._lock:
            old = self._state
            self._state = ContainerState(
                self.name,
                old.restart_count + 1 if restart else old.restart_count,
                _container_id(),
                _rfc3339(now),
                exited=None,
                last=old.exited if restart else old.last,
            )
            self._started.notify_all()
        log.info("container started %s pid=%d restarts=%d", self._label, self.pid, self._state.restart_count)
        self._on_change(self)

    @staticmethod
    def _copy_log(stream: IO[bytes], out: IO[str]) -> None:
        with out:
            for raw in stream:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                out.write(f"{cri_timestamp()} stdout F {line}\n")

    def _exited(self, returncode: int) -> None:
        # A process killed by signal N reports -N; a container runtime reports 128 + N (137: KILL).
        code = returncode if returncode >= 0 else 128 - returncode
        if self._copier is not None:
            self._copier.join(_DRAIN_SECONDS)  # every line of the old instance is in its file
        with self._lock:
            s = self._state
            self._state = replace(
                s, exited=Terminated(code, s.started_at, _rfc3339(datetime.now(UTC)), s.container_id)
            )
        self._on_change(self)

    def _keep_running(self) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            assert self._proc is not None
            code = self._proc.wait()
            if self._stopping.is_set():
                return
            self._exited(code)
            policy = self.spec.restart_policy
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                log.info("container completed %s code=%d", self._label, code)
                self._completed.set()
                return
            if time.monotonic() - self._spawned_at > _BACKOFF_RESET_SECONDS:
                backoff = 1.0  # it ran long enough: this exit is not part of a crash loop
            if self._paused.is_set():
                self._resumed.wait()
                self._resumed.clear()
                if self._stopping.is_set():
                    return
            elif not self._restart_now.is_set():
                log.warning("container exited %s code=%d restart_in=%.0fs", self._label, code, backoff)
                self._wake.wait(backoff)
                if self._stopping.is_set():
                    return
                backoff = min(backoff * 2, _MAX_BACKOFF)
            self._spawn(restart=True)

    def _terminate(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()

    def restart(self, timeout: float = 10.0) -> bool:
        """Stop this container's process and start a new instance now; True once it runs."""
        with self._lock:
            before = self._state.restart_count
        self._restart_now.set()
        self._wake.set()
        self._terminate()
        deadline = time.monotonic() + timeout
        with self._started:
            while self._state.restart_count == before:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._started.wait(left)
        return True

    def pause(self) -> None:
        self._resumed.clear()  # a resume from before this pause must not end it
        self._paused.set()
        self._terminate()

    def resume(self) -> None:
        self._paused.clear()
        self._resumed.set()

    def begin_stop(self) -> None:
        self._stopping.set()
        self._resumed.set()
        self._wake.set()
        self._terminate()

    def finish_stop(self, timeout: float) -> None:
        if self._proc is None:
            return
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


class PodProcess:
    """One pod's containers, kept running until :meth:`stop`.

    ``on_change(pod, container)`` is called (from the container's own thread) after every start
    and every exit of a container, the first starts included.
    """

    def __init__(
        self,
        namespace: str,
        pod: str,
        netns: str,
        containers: Sequence[ContainerSpec],
        *,
        log_dir: Path,
        python: str = sys.executable,
        on_change: Callable[[PodProcess, ContainerProcess], object] | None = None,
    ) -> None:
        if not containers:
            raise ValueError(f"pod {namespace}/{pod} has no containers")
        self.namespace, self.pod, self.netns = namespace, pod, netns
        self._on_change = on_change

        def changed(container: ContainerProcess) -> None:
            if self._on_change:
                self._on_change(self, container)

        self.containers = tuple(
            ContainerProcess(
                self,
                spec,
                log_path(log_dir, namespace, pod, None if i == 0 else spec.name),
                python,
                changed,
            )
            for i, spec in enumerate(containers)
        )

    @property
    def pid(self) -> int:
        """The first container's process id."""
        return self.containers[0].pid

    @property
    def log_file(self) -> Path:
        """The first container's log file."""
        return self.containers[0].log_file

    def states(self) -> tuple[ContainerState, ...]:
        return tuple(c.state for c in self.containers)

    def container(self, name: str | None) -> ContainerProcess | None:
        """The container called ``name``; None names the first."""
        if name is None:
            return self.containers[0]
        return next((c for c in self.containers if c.name == name), None)

    def start(self) -> PodProcess:
        for c in self.containers:
            c.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        for c in self.containers:  # every container is told first, so they stop together
            c.begin_stop()
        for c in self.containers:
            c.finish_stop(timeout)

    def pause(self) -> None:
        """Stop every container and keep them stopped (an outage) until :meth:`resume`; each comes
        back as a restart (a new container instance), as after a real outage."""
        for c in self.containers:
            c.pause()

    def resume(self) -> None:
        for c in self.containers:
            c.resume()

    def restart(self, container: str | None = None, timeout: float = 10.0) -> bool:
        """Restart one container (None: the first) now; True once its new instance runs."""
        target = self.container(container)
        return target is not None and target.restart(timeout)

    def alive(self) -> bool:
        return all(c.alive() for c in self.containers)

    def wait_completed(self, timeout: float) -> bool:
        """Wait until every container of a run-to-completion pod has exited for good."""
        deadline = time.monotonic() + timeout
        return all(c.wait_completed(max(0.0, deadline - time.monotonic())) for c in self.containers)
