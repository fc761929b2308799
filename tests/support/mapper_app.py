"""The real mapper API app in this process, for the tests of its producers (the sniffer's reporter).

The app is ``agent.mapper.api.create_app`` as the mapper runs it: the token check, the GraphQL
schema and its ``Time`` scalar, the mutations' conversion to observations and the bounded report
queue are all real. Only its back end is a stand-in: an :class:`ObservationLog` for a resolver
keeps every observation the queue's workers take (and makes no edges, so the store is never
written), which is what a producer's tests compare with what the producer saw.

* :class:`InProcessMapper`: the app reached through :class:`tests.support.transports.AsgiTransport`
  behind a :class:`~tests.support.transports.RecordingTransport` (no socket);
* :class:`MapperServer`: the app under uvicorn on 127.0.0.1, for tests about HTTP itself (an
  outage: :meth:`MapperServer.stop`, then :meth:`MapperServer.start` again on the same port).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterable
from typing import Any

import uvicorn

from agent.mapper.api import create_app
from agent.mapper.settings import ApiSettings
from agent.model import Edge, Observation
from tests.support.transports import AsgiTransport, RecordingTransport

GATE_TIMEOUT = 30.0


class ObservationLog:
    """An ``ObservationResolver`` that keeps what it is given and resolves nothing into edges.

    While :attr:`gate` is clear, resolving blocks (up to 30 s): the mapper's workers are busy, its
    report queue fills, and further reports are answered "mapper busy, retry"."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self._lock = threading.Lock()
        self._seen: list[Observation] = []

    def resolve(self, obs: Observation) -> list[Edge]:
        if not self.gate.wait(GATE_TIMEOUT):
            raise TimeoutError("the test never opened the gate")
        with self._lock:
            self._seen.append(obs)
        return []

    def observations(self) -> list[Observation]:
        with self._lock:
            return list(self._seen)


class NoEdges:
    """An ``EdgeStoreLike`` for an app whose resolver makes no edges: empty, and stays empty."""

    def record(self, edges: Iterable[Edge]) -> int:
        return len(list(edges))

    def edges(self, namespaces: Collection[str] | None = None) -> list[Edge]:
        return []

    def reset(self) -> None:
        pass


def mapper_app(token: str, log: ObservationLog, **settings: Any) -> Any:
    """The API app with ``token`` and ``settings`` (``ApiSettings`` fields) over ``log``."""
    return create_app(ApiSettings(token=token, **settings), NoEdges(), log)


class InProcessMapper:
    """``with InProcessMapper(token) as mapper: HttpMapperClient(mapper.url, token, 5.0, mapper.transport)``.

    :meth:`restart` replaces the app (e.g. with another token: a rotated secret) keeping the log."""

    url = "http://mapper.in-process:9090/query"

    def __init__(self, token: str, **settings: Any) -> None:
        self.log = ObservationLog()
        self.app = mapper_app(token, self.log, **settings)
        self._app_transport = AsgiTransport(self.app)
        self.transport = RecordingTransport(self._app_transport)

    def observations(self) -> list[Observation]:
        return self.log.observations()

    def restart(self, token: str, **settings: Any) -> None:
        """Start a new app with ``token`` over the same log, send every request from now on to it,
        then stop the old one (its queue drained): no request falls between the two."""
        old = self._app_transport
        self.app = mapper_app(token, self.log, **settings)
        self._app_transport = AsgiTransport(self.app).start()
        self.transport.inner = self._app_transport
        old.close()

    def __enter__(self) -> InProcessMapper:
        self._app_transport.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.log.gate.set()
        self._app_transport.close()


class MapperServer:
    """``with MapperServer(app) as server: ... server.url ...``: uvicorn in a thread."""

    def __init__(self, app: Any, host: str = "127.0.0.1") -> None:
        self.app = app
        self.host = host
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/query"

    def start(self, timeout: float = 10.0) -> MapperServer:
        """Listen (again) on the same port; the first start picks a free one."""
        if self._server is not None:
            raise RuntimeError("already running")
        config = uvicorn.Config(self.app, host=self.host, port=self.port, log_level="warning", lifespan="on")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="uvicorn-mapper", daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        self.port = server.servers[0].sockets[0].getsockname()[1]
        self._server, self._thread = server, thread
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop listening (the app's lifespan ends): connections are refused until :meth:`start`."""
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError("uvicorn did not stop")
        self._server = self._thread = None

    def __enter__(self) -> MapperServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
