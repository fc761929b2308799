"""Network namespaces: the sandbox's pods and node.

The sandbox makes one "node" namespace (a bridge, like a node's CNI bridge) and one
namespace per pod, joined to the bridge by a veth pair. Everything here shells out to
``ip``/``nft`` (iproute2, nftables) — the real tools — except :func:`entered`, which moves
the *calling thread* into a namespace with ``setns(2)`` so that sockets created inside
the ``with`` block belong to that namespace (a socket keeps its namespace for life; the
thread goes back afterwards). That is how root-namespace processes listen or connect
"inside" the cluster, the way ``kubectl port-forward`` does, without giving the root
namespace any route into the pod or service ranges.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class NetnsError(RuntimeError):
    """An ``ip``/``nft`` command or a namespace switch failed."""


def run(*args: str, netns: str | None = None, input_text: str | None = None, check: bool = True) -> str:
    """Run a command (optionally inside ``netns``) and return its stdout."""
    cmd = (["ip", "netns", "exec", netns] if netns else []) + list(args)
    proc = subprocess.run(cmd, input=input_text, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise NetnsError(f"{' '.join(cmd)}: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


def exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetnsError(f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def entered(name: str) -> Iterator[None]:
    """Run the block with this thread inside network namespace ``name``.

    Only sockets *created* inside the block live in that namespace; using them later
    from any thread is fine. Other threads are not affected (namespaces are per thread).
    """
    own = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
    try:
        target = os.open(NETNS_DIR / name, os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)


def wait_for_port(name: str, address: tuple[str, int], timeout: float = 60.0) -> None:
    """A readiness gate: return once ``address`` accepts a TCP connection made in namespace ``name``;
    TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with entered(name):
                sock = socket.create_connection(address, timeout=1)
        except OSError as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{address[0]}:{address[1]} accepted no connection within {timeout:g} s"
                ) from exc
            time.sleep(0.2)
        else:
            sock.close()
            return
