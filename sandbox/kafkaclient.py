"""A Kafka client stand-in: ``python -m sandbox.kafkaclient --bootstrap kafka:9092 --principal P
--group G --call "CONSUME mytopic" --call "DESCRIBE mytopic" ...``.

It connects to the broker stand-in (:mod:`sandbox.kafkabroker`) by its Service name — resolved
through the pod's ``resolv.conf`` and the sandbox's cluster DNS at each (re)connect — and keeps
the connection, as a Kafka client does. It authenticates as its principal, then repeats its calls
every few seconds: ``CONSUME <topic>`` (as a member of ``--group``), ``PRODUCE <topic>`` (a short
payload) and ``DESCRIBE <topic>``, in the broker's line protocol. Each answer (``OK ...``,
``DENIED ...``) is one line on stdout, the pod's log. SIGTERM stops it with exit status 0.
"""

from __future__ import annotations

import argparse
import logging
import random
import socket
import sys
import threading
from collections.abc import Sequence

from sandbox.programs import host_port_argument, stop_on_signals

log = logging.getLogger("sandbox.kafkaclient")

TIMEOUT = 5.0
RETRY_DELAY = 1.0
VERBS = frozenset({"CONSUME", "PRODUCE", "DESCRIBE"})


def request_line(call: str, group: str, sequence: int) -> str:
    """The protocol line for a call ``VERB topic``: consumers name their group, producers send
    a numbered payload."""
    verb, topic = call.split(" ")
    if verb == "CONSUME":
        return f"CONSUME {topic} {group}"
    if verb == "PRODUCE":
        return f"PRODUCE {topic} message-{sequence}"
    return f"DESCRIBE {topic}"


def _call_arg(value: str) -> str:
    parts = value.split(" ")
    if len(parts) != 2 or parts[0] not in VERBS or not parts[1]:
        raise argparse.ArgumentTypeError(f"expected '<CONSUME|PRODUCE|DESCRIBE> <topic>', got {value!r}")
    return value


class _Session:
    """One connection to the broker: a request line out, an answer line back."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = sock.makefile("rb")

    def ask(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\n")
        answer = self.reader.readline()
        if not answer:
            raise ConnectionResetError("the broker closed the connection")
        return answer.decode("utf-8", "replace").strip()

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def _connect(bootstrap: tuple[str, int], principal: str) -> _Session:
    sock = socket.create_connection(bootstrap, timeout=TIMEOUT)  # resolves the name now
    session = _Session(sock)
    local, peer = sock.getsockname()[:2], sock.getpeername()[:2]
    log.info("connected %s:%d -> %s:%d", *local, *peer)
    answer = session.ask(f"AUTH {principal}")
    if answer != "OK":
        session.close()
        raise ConnectionError(f"AUTH refused: {answer}")
    return session


def run(
    bootstrap: tuple[str, int],
    principal: str,
    group: str,
    calls: Sequence[str],
    *,
    interval: float,
    stop: threading.Event,
) -> int:
    session: _Session | None = None
    sequence = 0
    while not stop.is_set():
        try:
            if session is None:
                session = _connect(bootstrap, principal)
            for call in calls:
                sequence += 1
                log.info("%s -> %s", call, session.ask(request_line(call, group, sequence)))
        except OSError as exc:
            log.info("broker %s:%d: %s; reconnecting", *bootstrap, exc)
            if session is not None:
                session.close()
                session = None
            stop.wait(RETRY_DELAY)
            continue
        # Jitter keeps the clients from calling in lockstep.
        stop.wait(interval * random.uniform(0.9, 1.1))  # noqa: S311  # timing jitter, not security
    if session is not None:
        session.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.kafkaclient", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--bootstrap", type=host_port_argument, required=True, metavar="HOST:PORT")
    parser.add_argument("--principal", required=True, help="e.g. 'User:CN=client,O=Otterize Tutorial'")
    parser.add_argument("--group", required=True, help="the consumer group")
    parser.add_argument("--call", action="append", required=True, type=_call_arg, metavar="'VERB TOPIC'")
    parser.add_argument("--interval", type=float, default=3.0, metavar="SECONDS")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(message)s")
    stop = stop_on_signals(lambda signum: log.info("signal %d, stopping", signum))
    return run(args.bootstrap, args.principal, args.group, args.call, interval=args.interval, stop=stop)


if __name__ == "__main__":
    sys.exit(main())
