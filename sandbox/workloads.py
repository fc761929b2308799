"""The programs the sandbox's pods run: ``python -m sandbox.workloads <role> ...``.

They make the traffic network-mapper has to discover, for real: HTTP servers, periodic
HTTP calls *by DNS name* (each call resolves the name again, through the pod's
``resolv.conf`` and the sandbox's cluster DNS, and opens a new TCP connection, so the
sniffer sees both DNS answers and SYNs), one long-lived Redis-style connection (seen only
by a socket scan once it is established), and an "Internet" server. Every event is one
line on stdout (the pod's log, read through the sandbox's API server). SIGTERM stops a
role cleanly with exit status 0.

Roles:
  service  --port P [--call TARGET ...] [--interval S] [--hold HOST:PORT] [--hold-interval S]
  calls    --call TARGET ... [--interval S]   (calls only: what ``sandbox traffic add`` runs in a pod)
  redis    --port 6379
  internet --port 80
  job      --call TARGET [--attempts N]

A TARGET is an ``http://host:port/path`` URL (GET) or ``host:port`` (TCP connect and close).
SIGUSR1 stops a ``service``'s or ``calls``' periodic calls (it keeps serving), SIGUSR2 starts them
again: how ``python -m sandbox traffic stop|start`` (:mod:`sandbox.trafficcontrol`) reaches them.
"""

from __future__ import annotations

import argparse
import http.client
import logging
import random
import signal
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from sandbox.programs import host_port, stop_on_signals

log = logging.getLogger("sandbox.workloads")

CALL_TIMEOUT = 2.0
HOLD_PING_INTERVAL = 3.0
RETRY_DELAY = 1.0
PING = b"*1\r\n$4\r\nPING\r\n"
CALLS_ON = threading.Event()  # cleared by SIGUSR1, set again by SIGUSR2 (traffic control)
CALLS_ON.set()


@dataclass(frozen=True, slots=True)
class CallResult:
    target: str
    ok: bool
    detail: str  # "HTTP 200", "connected", or the error
    peer: str | None  # "ip:port" actually connected to: shows what DNS answered
    millis: float


def call(target: str, timeout: float = CALL_TIMEOUT) -> CallResult:
    """One call to ``target`` on a new connection, resolving its name now. Never raises."""
    started = time.monotonic()
    try:
        ok, detail, peer = _http_get(target, timeout) if "://" in target else _connect(target, timeout)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        ok, detail, peer = False, f"{type(exc).__name__}: {exc}", None
    return CallResult(target, ok, detail, peer, (time.monotonic() - started) * 1000)


def _http_get(target: str, timeout: float) -> tuple[bool, str, str | None]:
    _check_target(target)
    url = urlsplit(target)
    assert url.hostname  # checked above; tells mypy
    # A fresh HTTPConnection per call: a new getaddrinfo (DNS query) and a new TCP handshake.
    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=timeout)
    try:
        conn.request("GET", (url.path or "/") + (f"?{url.query}" if url.query else ""))
        peer = _peer(conn.sock)
        response = conn.getresponse()
        response.read()
        return response.status < 500, f"HTTP {response.status}", peer
    finally:
        conn.close()


def _connect(target: str, timeout: float) -> tuple[bool, str, str | None]:
    with socket.create_connection(host_port(target), timeout=timeout) as sock:
        return True, "connected", _peer(sock)


def _log_call(result: CallResult) -> None:
    log.info(
        "call %s -> %s%s (%.0f ms)",
        result.target,
        result.detail,
        f" via {result.peer}" if result.peer else "",
        result.millis,
    )


def _peer(sock: socket.socket | None) -> str | None:
    if sock is None:
        return None
    host, port = sock.getpeername()[:2]
    return f"{host}:{port}"


def _check_target(value: str) -> None:
    """Raise ValueError unless ``value`` is an http:// URL with a host, or HOST:PORT."""
    if "://" not in value:
        host_port(value)
    elif urlsplit(value).scheme != "http" or not urlsplit(value).hostname:
        raise ValueError(f"expected an http:// URL or HOST:PORT, got {value!r}")


def _arg(check: Callable[[str], object]) -> Callable[[str], str]:
    """An argparse type: malformed targets are rejected at start, not at every call."""

    def parse(value: str) -> str:
        try:
            check(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc
        return value

    return parse


# --- servers -------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """Answers every path, method and Host with 200 and a short body."""

    server_version = "sandbox-workload/1"

    def do_GET(self) -> None:
        body = f"ok from {socket.gethostname()} ({self.headers.get('Host', '-')} {self.path})\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:  # stdlib's signature
        log.info("served %s %s", self.client_address[0], format % args)


def _http_server(port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("0.0.0.0", port), _Handler)
    server.daemon_threads = True  # an open keep-alive connection must not delay exit
    return server


class _RedisHandler(socketserver.StreamRequestHandler):
    """Just enough RESP: PING answers PONG, anything else an error; the connection stays open."""

    def handle(self) -> None:
        client = "{}:{}".format(*self.client_address[:2])
        log.info("redis connection from %s", client)
        try:
            while command := self._read_command():
                if command[0].upper() == b"PING":
                    self.wfile.write(b"+PONG\r\n")
                    log.info("redis PING from %s", client)
                else:
                    self.wfile.write(b"-ERR unknown command '" + command[0] + b"'\r\n")
        except (OSError, ValueError) as exc:
            log.info("redis connection from %s broken: %s", client, exc)
            return
        log.info("redis connection from %s closed", client)

    def _read_command(self) -> list[bytes] | None:
        """One command, as an array of bulk strings or an inline command; None at EOF."""
        line = self.rfile.readline()
        if not line:
            return None
        if not line.startswith(b"*"):
            return line.split() or [b""]
        args = []
        for _ in range(int(line[1:])):
            size = int(self.rfile.readline()[1:])  # "$<len>\r\n"
            args.append(self.rfile.read(size + 2)[:size])
        return args or [b""]


class _RedisServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


# --- roles ---------------------------------------------------------------------------------


def _call_loop(target: str, interval: float, stop: threading.Event) -> None:
    while not stop.is_set():
        if CALLS_ON.is_set():
            _log_call(call(target))
        # Jitter keeps many pods from calling in lockstep, like real services.
        stop.wait(interval * random.uniform(0.9, 1.1))  # noqa: S311  # timing jitter, not security


def _hold(target: str, interval: float, stop: threading.Event) -> None:
    """One long-lived connection sending PINGs; reconnect (same address) only if it breaks.

    The name is resolved once, at start: later DNS traffic must not reveal this edge.
    """
    host, port = host_port(target)
    address: str | None = None
    while address is None and not stop.is_set():
        try:
            address = str(socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)[0][4][0])
            log.info("hold %s resolved to %s", target, address)
        except OSError as exc:
            log.info("hold %s: resolve failed: %s", target, exc)
            stop.wait(RETRY_DELAY)
    while address is not None and not stop.is_set():
        try:
            with socket.create_connection((address, port), timeout=CALL_TIMEOUT) as sock:
                log.info("hold %s connected %s -> %s", target, _peer_local(sock), _peer(sock))
                while not stop.is_set():
                    sock.sendall(PING)
                    reply = sock.recv(64)
                    if not reply:
                        raise ConnectionResetError("closed by peer")
                    log.info("hold %s PING -> %s", target, reply.strip().decode(errors="replace"))
                    stop.wait(interval)
        except OSError as exc:
            log.info("hold %s: %s; reconnecting", target, exc)
            stop.wait(RETRY_DELAY)


def _peer_local(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"{host}:{port}"


def _thread(target: Callable[..., object], *args: Any) -> None:
    threading.Thread(target=target, args=args, daemon=True).start()


def run_service(
    port: int,
    calls: Sequence[str],
    interval: float,
    stop: threading.Event,
    *,
    hold: str | None = None,
    hold_interval: float = HOLD_PING_INTERVAL,
) -> int:
    server = _http_server(port)
    _thread(server.serve_forever, 0.1)  # poll interval: SIGTERM stops within 0.1 s
    log.info("service listening on 0.0.0.0:%d; calls %s every %.1fs; hold %s", port, calls, interval, hold)
    for target in calls:  # one loop per target: a slow target does not delay the others
        _thread(_call_loop, target, interval, stop)
    if hold:
        _thread(_hold, hold, hold_interval, stop)
    stop.wait()
    server.shutdown()
    server.server_close()
    return 0


def _calls_switch(signum: int, _frame: object) -> None:
    """SIGUSR1: stop making calls; SIGUSR2: make them again (the loops keep their pace)."""
    if signum == signal.SIGUSR1:
        CALLS_ON.clear()
    else:
        CALLS_ON.set()
    log.info("calls %s (signal %d)", "on" if CALLS_ON.is_set() else "off", signum)


def run_calls(calls: Sequence[str], interval: float, stop: threading.Event) -> int:
    """Calls only, no server: a client's extra calls, run beside its pod's own program."""
    log.info("calls %s every %.1fs", calls, interval)
    for target in calls:
        _thread(_call_loop, target, interval, stop)
    stop.wait()
    return 0


def run_redis(port: int, stop: threading.Event) -> int:
    server = _RedisServer(("0.0.0.0", port), _RedisHandler)
    _thread(server.serve_forever, 0.1)  # poll interval: SIGTERM stops within 0.1 s
    log.info("redis listening on 0.0.0.0:%d", port)
    stop.wait()
    server.shutdown()
    server.server_close()
    return 0


def run_job(target: str, attempts: int, stop: threading.Event) -> int:
    """One successful call, then exit 0; 1 if every attempt failed (the Job then fails)."""
    for attempt in range(1, attempts + 1):
        result = call(target)
        _log_call(result)
        if result.ok:
            return 0
        if attempt < attempts and stop.wait(RETRY_DELAY):
            return 0  # terminated while waiting: a clean stop, not a failure
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.workloads", description=__doc__.splitlines()[0])
    roles = parser.add_subparsers(dest="role", required=True)
    service = roles.add_parser("service", help="HTTP server that calls others by DNS name")
    service.add_argument("--port", type=int, required=True)
    service.add_argument(
        "--call", action="append", default=[], type=_arg(_check_target), metavar="URL_OR_HOSTPORT"
    )
    service.add_argument("--interval", type=float, default=2.0, metavar="SECONDS")
    service.add_argument(
        "--hold", type=_arg(host_port), metavar="HOST:PORT", help="one long-lived connection, Redis PINGs"
    )
    service.add_argument("--hold-interval", type=float, default=HOLD_PING_INTERVAL, metavar="SECONDS")
    calls = roles.add_parser("calls", help="periodic calls only (no server)")
    calls.add_argument("--call", action="append", required=True, type=_arg(_check_target), metavar="TARGET")
    calls.add_argument("--interval", type=float, default=2.0, metavar="SECONDS")
    roles.add_parser("redis", help="answers RESP PING").add_argument("--port", type=int, default=6379)
    roles.add_parser("internet", help="HTTP server for any Host").add_argument("--port", type=int, default=80)
    job = roles.add_parser("job", help="one call, then exit")
    job.add_argument("--call", required=True, type=_arg(_check_target), metavar="URL_OR_HOSTPORT")
    job.add_argument("--attempts", type=int, default=5)
    args = parser.parse_args(argv)
    # StreamHandler flushes every record: the pod log shows events as they happen.
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(message)s")

    stop = stop_on_signals(lambda signum: log.info("%s: signal %d, stopping", args.role, signum))
    if args.role in ("service", "calls"):
        signal.signal(signal.SIGUSR1, _calls_switch)
        signal.signal(signal.SIGUSR2, _calls_switch)
    if args.role == "calls":
        return run_calls(args.call, args.interval, stop)
    if args.role == "service":
        return run_service(
            args.port, args.call, args.interval, stop, hold=args.hold, hold_interval=args.hold_interval
        )
    if args.role == "redis":
        return run_redis(args.port, stop)
    if args.role == "internet":
        return run_service(args.port, [], 0.0, stop)
    return run_job(args.call, args.attempts, stop)


if __name__ == "__main__":
    sys.exit(main())
