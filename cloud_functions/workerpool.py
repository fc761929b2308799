"""Where the local server's requests are answered: :class:`WorkerPool`, worker processes each
with its own :class:`~cloud_functions.handlers.CloudApp` over its own store connection (what
``network-mapper-cloud`` runs), or :class:`InProcess`, a callable of this process run on threads
(tests: :class:`tests.support.local_cloud.LocalCloud` wraps the app to record and inject).

Why processes: the handlers' router (aws-lambda-powertools) keeps the current event in class
attributes, so one process answers one request at a time (``CloudApp`` holds a lock). Each worker
answers one at a time too; several workers answer several, and a tenant's long request holds one
worker, not the server. Workers are started with ``spawn`` (the front runs threads, which ``fork``
must not copy) from the :class:`~cloud_functions.handlers.CloudSettings` given, and open the store
themselves: SQLite in WAL mode with a busy timeout and ``BEGIN IMMEDIATE`` writes, safe across
processes (:mod:`cloud_functions.store.sqlite`).

Both take an API Gateway v2 event (:mod:`cloud_functions.gatewayevents`) and give back an
:class:`~cloud_functions.handlers.Answer`: the response and the tenant its token authenticated as.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol

from cloud_functions.handlers import Answer, CloudApp, CloudSettings, open_store

log = logging.getLogger(__name__)

Dispatch = Callable[[dict[str, Any]], Answer]


class WorkersUnavailable(Exception):
    """No worker could answer: one died (the pool is being replaced) or none started."""


class Backend(Protocol):
    """What the front hands events to."""

    async def answer(self, event: dict[str, Any]) -> Answer: ...

    def close(self) -> None: ...


class InProcess:
    """``dispatch`` (e.g. :meth:`CloudApp.answer`) called on a thread pool of this process."""

    def __init__(self, dispatch: Dispatch, threads: int = 4) -> None:
        self._dispatch = dispatch
        self._threads = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="cloud-app")

    async def answer(self, event: dict[str, Any]) -> Answer:
        return await asyncio.get_running_loop().run_in_executor(self._threads, self._dispatch, event)

    def close(self) -> None:
        self._threads.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------- in each worker process

_app: CloudApp | None = None  # the worker's own app, set by _start_worker


def _start_worker(settings: CloudSettings, started: Any) -> None:
    """A worker's initializer: its store connection and app; then it tells the pool it is ready."""
    global _app  # noqa: PLW0603 - one app per worker process, for every request it answers
    # Ctrl-C reaches the whole process group: the server stops its workers itself, in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _app = CloudApp(open_store(settings), settings)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True).start()
    started.release()


def _exit_with(parent_sentinel: int) -> None:
    """End the worker when the server process is gone (killed: it could not stop its workers),
    so no orphan keeps a store connection open."""
    multiprocessing.connection.wait([parent_sentinel])
    os._exit(0)


def _answer(event: dict[str, Any]) -> Answer:
    if _app is None:  # the initializer sets it before any task runs
        raise WorkersUnavailable("the worker has no app")
    return _app.answer(event)


def _pid() -> int:
    return os.getpid()


# --------------------------------------------------------------------------- in the server process


class WorkerPool:
    """``workers`` processes answering events with their own ``CloudApp(open_store(settings))``."""

    def __init__(self, settings: CloudSettings, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.settings, self.workers = settings, workers
        self._context = multiprocessing.get_context("spawn")
        self._started = self._context.Semaphore(0)
        self._lock = threading.Lock()
        self._pool = self._new_pool()

    def _new_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        return concurrent.futures.ProcessPoolExecutor(
            self.workers,
            mp_context=self._context,
            initializer=_start_worker,
            initargs=(self.settings, self._started),
        )

    def warm_up(self, timeout: float = 60.0) -> None:
        """Start every worker now and wait until each has opened its store: the first requests
        then wait for no start, and a store that cannot open fails the server's start, not a
        request. :class:`WorkersUnavailable` when they do not start within ``timeout`` s."""
        deadline = time.monotonic() + timeout
        # The pool starts a process for each task submitted while none is idle.
        probes = [self._pool.submit(_pid) for _ in range(self.workers)]
        try:
            for probe in probes:
                probe.result(max(0.0, deadline - time.monotonic()))
        except (BrokenProcessPool, TimeoutError) as error:
            raise WorkersUnavailable(f"the workers did not start: {error!r}") from error
        for _ in range(self.workers):
            if not self._started.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise WorkersUnavailable(f"not all {self.workers} workers started within {timeout} s")

    async def answer(self, event: dict[str, Any]) -> Answer:
        pool = self._pool
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, _answer, event)
        except BrokenProcessPool as error:
            self._replace(pool, error)
            raise WorkersUnavailable("a worker process died; new ones are starting") from error

    def _replace(self, broken: concurrent.futures.ProcessPoolExecutor, error: BrokenProcessPool) -> None:
        """A dead worker breaks the whole pool (every pending request fails with it): start a new
        pool, once, whichever request noticed first."""
        with self._lock:
            if self._pool is not broken:
                return
            log.error("worker pool broken; starting new workers: workers=%d error=%r", self.workers, error)
            self._pool = self._new_pool()
        broken.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the workers: queued requests are dropped, running ones finish first."""
        with self._lock:
            pool = self._pool
        pool.shutdown(wait=True, cancel_futures=True)
