"""The kubelet's probes: ``httpGet`` readiness and liveness probes of the pods the sandbox runs.

Probes come from the pods as stored (:class:`sandbox.podspec.Probe`, one pair per container); they
are sent from the node's network namespace to the pod's IP, as a kubelet sends them. Results go
back to :mod:`sandbox.supervisor` through two callbacks: ``on_ready`` when a pod's readiness
changes (it publishes the pod's ``Ready`` condition) and ``on_dead`` when a container failed its
liveness probe ``failureThreshold`` times in a row (it restarts the container, as the kubelet
does). HTTPS probes do not verify the certificate, as the kubelet's do not.

A paused container (``sandbox control pause``: the sandbox's stand-in for a pod that is down) is
neither probed nor restarted: its pause is the test's to end.
"""

from __future__ import annotations

import http.client
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sandbox import netns
from sandbox.kubelet import PodProcess
from sandbox.podspec import Probe

log = logging.getLogger(__name__)

TICK = 0.25  # seconds between looks at which probes are due


def probe_once(namespace: str, ip: str, probe: Probe) -> bool:
    """One probe: True when the GET answers 200 to 399 within the probe's timeout."""
    connection: http.client.HTTPConnection
    try:
        with netns.entered(namespace):
            if probe.scheme.upper() == "HTTPS":
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE  # the kubelet does not verify probes' certificates
                connection = http.client.HTTPSConnection(
                    ip, probe.port, timeout=probe.timeout, context=context
                )
            else:
                connection = http.client.HTTPConnection(ip, probe.port, timeout=probe.timeout)
            connection.connect()  # the socket is made here, inside the namespace
        try:
            connection.request("GET", probe.path, headers={"User-Agent": "kube-probe/1.37"})
            status = connection.getresponse().status
        finally:
            connection.close()
    except (OSError, http.client.HTTPException):
        return False
    return 200 <= status < 400


@dataclass(slots=True)
class _Probed:
    pod: PodProcess
    netns: str
    ip: str
    probes: dict[str, tuple[Probe | None, Probe | None]]  # container → (readiness, liveness)
    started: float = field(default_factory=time.monotonic)
    ready: dict[str, bool] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    due: dict[tuple[str, str], float] = field(default_factory=dict)  # (container, kind) → when

    def is_ready(self) -> bool:
        return all(self.ready.get(c, readiness is None) for c, (readiness, _) in self.probes.items())


class Prober:
    """Runs every added pod's probes on their periods, in one background thread."""

    def __init__(
        self,
        on_ready: Callable[[PodProcess, bool], object],
        on_dead: Callable[[PodProcess, str], object],
    ) -> None:
        self._on_ready = on_ready
        self._on_dead = on_dead
        self._pods: list[_Probed] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self.rounds = 0  # probe rounds done (each looks at every pod once): progress to wait on
        self._thread = threading.Thread(target=self._run, name="prober", daemon=True)

    def start(self) -> Prober:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def add(
        self, pod: PodProcess, namespace: str, ip: str, probes: dict[str, tuple[Probe | None, Probe | None]]
    ) -> None:
        with self._lock:
            self._pods.append(_Probed(pod, namespace, ip, probes))

    def ready(self, pod: PodProcess) -> bool:
        with self._lock:
            return any(p.pod is pod and p.is_ready() for p in self._pods)

    def wait_ready(self, pod: PodProcess, timeout: float) -> None:
        """Return once every readiness probe of ``pod`` has passed; TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not any(p.pod is pod and p.is_ready() for p in self._pods):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"pod {pod.namespace}/{pod.pod} not ready within {timeout:g} s")
                self._changed.wait(left)

    def _run(self) -> None:
        while not self._stop.wait(TICK):
            with self._lock:
                pods = list(self._pods)
            for probed in pods:
                if probed.pod.alive():
                    self._probe_pod(probed)
            self.rounds += 1

    def _probe_pod(self, probed: _Probed) -> None:
        now = time.monotonic()
        was_ready = probed.is_ready()
        for name, (readiness, liveness) in probed.probes.items():
            container = probed.pod.container(name)
            if container is None or container.paused:
                continue
            for kind, probe in (("readiness", readiness), ("liveness", liveness)):
                if probe is None:
                    continue
                due = probed.due.get((name, kind), probed.started + probe.initial_delay)
                if now < due:
                    continue
                # Until ready, readiness is tried every tick: pods start faster than a period.
                waiting = kind == "readiness" and not probed.ready.get(name, False)
                probed.due[(name, kind)] = now + (TICK if waiting else probe.period)
                ok = probe_once(probed.netns, probed.ip, probe)
                if kind == "readiness":
                    probed.ready[name] = ok
                    continue
                probed.failures[name] = 0 if ok else probed.failures.get(name, 0) + 1
                if probed.failures[name] >= probe.failure_threshold:
                    log.warning(
                        "liveness probe failed %d times ns=%s pod=%s container=%s: restarting",
                        probed.failures[name],
                        probed.pod.namespace,
                        probed.pod.pod,
                        name,
                    )
                    probed.failures[name] = 0
                    probed.ready[name] = False
                    self._on_dead(probed.pod, name)
        if probed.is_ready() != was_ready:
            self._on_ready(probed.pod, probed.is_ready())
        with self._changed:
            self._changed.notify_all()
