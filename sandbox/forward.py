"""TCP forwards across network namespaces — the sandbox's ``kubectl port-forward``.

A :class:`Forward` listens on an address inside one namespace (``None`` = the root
namespace) and, for each accepted connection, connects from another namespace to a
target, then copies bytes both ways. The user's side (CLI, browser) reaches in-cluster
services through forwards on 127.0.0.1; pods reach the API server (which listens on the
root namespace's loopback) through a forward on the node's bridge address.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from contextlib import AbstractContextManager, nullcontext

from sandbox import netns

log = logging.getLogger(__name__)


def _in(ns: str | None) -> AbstractContextManager[None]:
    return netns.entered(ns) if ns else nullcontext()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass  # the peer went away; closing both ends below is the whole handling
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):  # already shut down by the other pump
                s.shutdown(socket.SHUT_RDWR)
        src.close()


class Forward:
    """Listen on ``listen`` in ``listen_ns``; forward each connection to ``target`` in ``target_ns``."""

    def __init__(
        self,
        listen: tuple[str, int],
        target: tuple[str, int],
        listen_ns: str | None = None,
        target_ns: str | None = None,
    ) -> None:
        self.target = target
        self.target_ns = target_ns
        with _in(listen_ns):
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(listen)
        self._sock.listen(64)
        self.port: int = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name=f"forward-{self.port}", daemon=True)

    def start(self) -> Forward:
        self._thread.start()
        return self

    def close(self) -> None:
        self._sock.close()

    def _connect(self) -> socket.socket:
        with _in(self.target_ns):
            out = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        out.settimeout(5)
        out.connect(self.target)
        out.settimeout(None)
        return out

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # listening socket closed: the forward is over
            try:
                out = self._connect()
            except OSError as exc:
                log.warning("forward to %s:%d failed: %s", *self.target, exc)
                conn.close()
                continue
            for a, b in ((conn, out), (out, conn)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()
