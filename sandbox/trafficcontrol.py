"""Traffic control for tests and the demo: a workload stops or starts its calls; a client gets a new one.

Asked through the supervisor's control endpoint (:mod:`sandbox.control`, ``python -m sandbox
traffic ...``); acts on the pods' processes (:mod:`sandbox.kubelet`), which the supervisor owns:

- ``stop`` / ``start``: SIGUSR1 / SIGUSR2 to the workload's own container process (the
  ``service`` role of :mod:`sandbox.workloads` stops or resumes its periodic calls and keeps serving)
  and to the client's added callers. Only a process that catches the signal is sent one (read from
  ``/proc/<pid>/status``): the default action would kill it. A container restart starts calling again.
- ``add``: like ``kubectl exec`` into the client's pod, a ``calls`` process in the client pod's network
  namespace (its resolv.conf, its address) calls ``SERVER:<the server Service's first port>`` by DNS
  name every two seconds, TCP connect and close, until ``remove`` or the sandbox stops.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from sandbox.kubelet import ContainerSpec, PodProcess

log = logging.getLogger(__name__)

ACTIONS = frozenset({"stop", "start", "add", "remove"})
CALL_INTERVAL = 2.0

Target = Callable[[str, str], str | None]
"""(namespace, server) → what a client calls: ``<server>:<its Service's first port>``; None without one."""


def workload_pods(pods: Sequence[PodProcess], namespace: str, workload: str) -> list[PodProcess]:
    """The workload's pods: named after it (``<workload>`` or ``<workload>-<suffixes>``)."""
    return [
        p
        for p in pods
        if p.namespace == namespace and (p.pod == workload or p.pod.startswith(workload + "-"))
    ]


def catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (its SigCgt mask)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def _signal(pod: PodProcess, signum: int) -> bool:
    pid = pod.pid
    if pid <= 0 or not catches(pid, signum):
        return False
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return False
    return True


class TrafficControl:
    def __init__(
        self,
        target: Target,
        log_dir: Path,
        python: str,
        record_pid: Callable[[str, int], None],
    ) -> None:
        self.target = target
        self.log_dir = log_dir
        self.python = python
        self.record_pid = record_pid
        self._lock = threading.Lock()
        self.callers: dict[tuple[str, str, str], PodProcess] = {}  # (namespace, client, server)

    def act(
        self, pods: Sequence[PodProcess], namespace: str, workload: str, action: str, server: str | None
    ) -> bool:
        """Do ``action``; True when done (every matching process told, or the caller running)."""
        matched = workload_pods(pods, namespace, workload)
        if action == "add":
            done = bool(matched) and server is not None and self._add(matched[0], workload, server)
        elif action == "remove":
            done = self._remove((namespace, workload, server or ""))
        else:
            signum = signal.SIGUSR1 if action == "stop" else signal.SIGUSR2
            with self._lock:
                added = [
                    p for (ns, client, _), p in self.callers.items() if (ns, client) == (namespace, workload)
                ]
            told = [_signal(p, signum) for p in (*matched, *added)]
            done = bool(told) and all(told)
        log.info(
            "traffic %s ns=%s workload=%s server=%s pods=%d ok=%s",
            action,
            namespace,
            workload,
            server,
            len(matched),
            done,
        )
        return done

    def _add(self, client: PodProcess, workload: str, server: str) -> bool:
        key = (client.namespace, workload, server)
        with self._lock:
            if key in self.callers:
                return True
            target = self.target(client.namespace, server)
            if target is None:
                return False
            role = f"{client.namespace}/{client.pod}/traffic-{server}"
            argv = (
                "-m",
                "sandbox.workloads",
                "calls",
                "--call",
                target,
                "--interval",
                str(CALL_INTERVAL),
            )
            caller = PodProcess(
                client.namespace,
                f"{client.pod}.traffic-{server}",  # its own log file beside the pod's
                client.netns,
                [ContainerSpec(f"traffic-{server}", argv)],
                log_dir=self.log_dir,
                python=self.python,
                on_change=lambda _pod, c: self.record_pid(role, c.pid) if c.alive() else None,
            ).start()
            self.callers[key] = caller
        return True

    def _remove(self, key: tuple[str, str, str]) -> bool:
        """Stop and forget an added caller; False when there was none."""
        with self._lock:
            caller = self.callers.pop(key, None)
        if caller is None:
            return False
        caller.stop()
        return True

    def stop(self) -> None:
        with self._lock:
            callers = list(self.callers.values())
            self.callers.clear()
        for caller in callers:
            caller.stop()
