"""``network-mapper-cloud``: the cloud's Lambda handlers served over HTTP, for local use
(``make demo``, tests).

Each HTTP request becomes an API Gateway HTTP API **v2** event
(:func:`~cloud_functions.gatewayevents.http_event`) answered by the same
:class:`~cloud_functions.handlers.CloudApp` the Lambda runs, in one of ``--workers`` worker
processes, each over its own connection to the SQLite file ``--db``
(:mod:`cloud_functions.workerpool`); the answer is written back. uvicorn serves HTTP/1.1 in front
of them (:mod:`cloud_functions.localserver`, :mod:`cloud_functions.localfront`): bodies chunked
or not, bounded sizes and read timeouts, and per-tenant limits — ``--rate`` requests a second
(bursts of ``--burst``) and all workers but one at once — answered ``429`` with ``Retry-After``
(:mod:`cloud_functions.ratelimit`). On AWS, API Gateway's stage throttling plays that role.

On first start with an empty store the platform admin token is created and written to
``--admin-token-file`` (mode 0600), or printed when no file is given. Two lines on stdout say
what happened (``sandbox/supervisor.py`` and ``make demo`` rely on them)::

    network-mapper-cloud: created the admin token: written to admin.token
    network-mapper-cloud: serving on http://127.0.0.1:8800

SIGTERM or Ctrl-C stop the server: open requests are answered, then the workers stop.

    network-mapper-cloud --listen 127.0.0.1:8800 --db cloud.db --admin-token-file admin.token
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType

from cloud_functions.auth import PLATFORM_TENANT, issue_token
from cloud_functions.handlers import CloudSettings
from cloud_functions.localserver import CloudServer, ServerSettings, default_workers
from cloud_functions.store.base import GraphStore, StoreError
from cloud_functions.workerpool import WorkerPool, WorkersUnavailable

log = logging.getLogger("network-mapper-cloud")

WORKERS_START_TIMEOUT = 60.0


def ensure_admin_token(store: GraphStore, token_file: Path | None) -> str | None:
    """On an empty store (no admin token), create the platform admin token; return it (else None)."""
    if store.get_tenant(PLATFORM_TENANT) is None:
        store.create_tenant(PLATFORM_TENANT, "platform", time.time())
    if any(t.role == "admin" for t in store.tokens(PLATFORM_TENANT)):
        return None
    _, token = issue_token(store, PLATFORM_TENANT, "admin", time.time())
    if token_file is not None:
        token_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(token + "\n")
    return token


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``; an empty host is 127.0.0.1) → (host, port)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def serve(
    listen: str, db: Path, admin_token_file: Path | None = None, settings: ServerSettings | None = None
) -> CloudServer:
    """Open the store, bootstrap the admin token, start the workers, and return a bound (not yet
    serving) server."""
    from cloud_functions.store.sqlite import SqliteGraphStore

    host, port = parse_listen(listen)
    settings = replace(settings or ServerSettings(), host=host, port=port)
    store = SqliteGraphStore(db)  # created and migrated here, before the workers open it
    try:
        token = ensure_admin_token(store, admin_token_file)
    finally:
        store.close()
    if token is not None:
        where = f"written to {admin_token_file}" if admin_token_file else token
        print(f"network-mapper-cloud: created the admin token: {where}", flush=True)
    workers = WorkerPool(CloudSettings(store=f"sqlite:{db}"), settings.workers)
    try:
        server = CloudServer(settings, workers)
    except OSError:
        workers.close()
        raise
    try:
        workers.warm_up(WORKERS_START_TIMEOUT)
    except WorkersUnavailable:
        server.server_close()
        raise
    return server


def _stop_on_signals(server: CloudServer) -> None:
    """SIGINT/SIGTERM stop the server. uvicorn installs its own handlers while it serves and, once
    stopped, raises the signal it caught again to the handler found before: this one, so the
    process goes on to stop its workers instead of dying of the signal."""

    def stop(signum: int, frame: FrameType | None) -> None:
        server.request_stop()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="network-mapper-cloud", description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:8800", help="host:port (default %(default)s)")
    parser.add_argument("--db", type=Path, default=Path("network-mapper-cloud.db"), help="SQLite file")
    parser.add_argument("--admin-token-file", type=Path, help="where to write the admin token on first start")
    parser.add_argument(
        "--workers", type=int, default=default_workers(), help="worker processes (default %(default)s)"
    )
    parser.add_argument("--rate", type=float, default=50.0, help="requests a second per tenant (default 50)")
    parser.add_argument("--burst", type=int, default=100, help="burst of requests per tenant (default 100)")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.rate <= 0 or args.burst < 1:
        parser.error("--workers and --burst must be at least 1, --rate above 0")
    try:
        parse_listen(args.listen)
    except ValueError:
        parser.error(f"--listen must be host:port, got {args.listen!r}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = ServerSettings(workers=args.workers, rate=args.rate, burst=args.burst)
    try:
        server = serve(args.listen, args.db, args.admin_token_file, settings)
    except (OSError, sqlite3.Error, StoreError, WorkersUnavailable) as error:
        log.error("cannot start: %s", error)  # noqa: TRY400 - the message says it all; no traceback
        return 1
    _stop_on_signals(server)
    host, port = server.server_address
    host = f"[{host}]" if ":" in host else host
    print(f"network-mapper-cloud: serving on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
