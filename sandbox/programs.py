"""What the sandbox's pod programs share (the workloads, the cluster DNS, the Kafka broker and
its clients, the mesh app and its sidecar): ``HOST:PORT`` arguments, and stopping on SIGTERM or
SIGINT as a container's process does when the kubelet stops it."""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Callable
from types import FrameType


def host_port(value: str) -> tuple[str, int]:
    """``HOST:PORT`` → ``(host, port)``; ValueError when it is not one."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or "/" in host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


def host_port_argument(value: str) -> tuple[str, int]:
    """:func:`host_port` as an argparse type (its message, not argparse's "invalid value")."""
    try:
        return host_port(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


class StopEvent(threading.Event):
    """An event whose untimed :meth:`wait` wakes every half second: Python runs a signal handler only
    when the main thread executes bytecode, and a signal the kernel delivered to another thread
    would otherwise wait for an untimed ``Event.wait`` in the main thread forever."""

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is not None:
            return super().wait(timeout)
        while not super().wait(0.5):
            pass
        return True


def stop_on_signals(told: Callable[[int], object] | None = None) -> threading.Event:
    """An event that SIGTERM or SIGINT sets (``told(signum)`` first, to log it, say)."""
    stop = StopEvent()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if told is not None:
            told(signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop
