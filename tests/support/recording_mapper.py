"""A stand-in for the mapper's GraphQL API that records what producers report.

A real HTTP server (standard library, one thread per request) on 127.0.0.1. It accepts
``POST /query`` with a GraphQL JSON body, requires ``Authorization: Bearer <token>`` (401
otherwise), checks the report mutations' variables against the shape of the mapper's schema
(Otterize's, with its additive ``Destination`` fields; 422 with GraphQL ``errors`` when they do not
match, as gqlgen answers), records the mutation
name and variables, and answers ``{"data": {<field>: true}}``. It can be stopped and started
again on the same port (a mapper outage), told to answer with an HTTP status (e.g. 500), or
with GraphQL ``errors``.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REPORT_FIELDS = frozenset({"reportCaptureResults", "reportTCPCaptureResults", "reportSocketScanResults"})
_FIELD = re.compile(r"\{\s*([A-Za-z_]\w*)")
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")

Pair = tuple[str, str, int | None]
DESTINATION_FIELDS = frozenset(
    {"destination", "destinationIP", "destinationPort", "TTL", "lastSeen"}  # Otterize's
    # the schema's additive extension fields
    | {"srcPort", "dnsServerIP", "cnames", "clientPodUid", "clientPod"}
)


@dataclass(frozen=True)
class RecordedCall:
    field: str
    variables: dict[str, Any]


def schema_problems(variables: dict[str, Any]) -> list[str]:
    """What in ``variables`` does not fit ``results: CaptureResults!`` (and its siblings)."""
    outer = variables.get("results")
    if not isinstance(outer, dict) or not isinstance(outer.get("results"), list):
        return ["$results must be an object with a 'results' list"]
    problems = []
    for i, src in enumerate(outer["results"]):
        if not isinstance(src.get("srcIp"), str) or not isinstance(src.get("srcHostname"), str):
            problems.append(f"results[{i}]: srcIp and srcHostname are required strings")
        for j, dest in enumerate(src.get("destinations") or []):
            where = f"results[{i}].destinations[{j}]"
            unknown = set(dest) - DESTINATION_FIELDS
            if unknown:
                problems.append(f"{where}: unknown fields {sorted(unknown)}")
            if not isinstance(dest.get("destination"), str):
                problems.append(f"{where}: destination is a required string")
            if not isinstance(dest.get("lastSeen"), str) or not _TIME.match(dest["lastSeen"]):
                problems.append(f"{where}: lastSeen must be an RFC 3339 time")
            for name in ("destinationPort", "TTL", "srcPort"):
                if name in dest and dest[name] is not None and not isinstance(dest[name], int):
                    problems.append(f"{where}: {name} must be an Int")
            for name in ("destinationIP", "dnsServerIP", "clientPodUid", "clientPod"):
                if name in dest and dest[name] is not None and not isinstance(dest[name], str):
                    problems.append(f"{where}: {name} must be a String")
            cnames = dest.get("cnames")
            if cnames is not None and not (
                isinstance(cnames, list) and all(isinstance(c, str) for c in cnames)
            ):
                problems.append(f"{where}: cnames must be a list of strings")
        if not isinstance(src.get("destinations"), list):
            problems.append(f"results[{i}]: destinations is a required list")
    return problems


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        mapper = self.server.mapper
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/query":
            self._reply(404, {"errors": [{"message": "not found"}]})
            return
        if self.headers.get("Authorization") != f"Bearer {mapper.token}":
            mapper._count("unauthorized")
            self._reply(401, {"errors": [{"message": "unauthorized"}]})
            return
        if mapper.fail_status is not None:
            mapper._count("failed")
            self._reply(mapper.fail_status, {"errors": [{"message": "injected failure"}]})
            return
        try:
            request = json.loads(body)
            query, variables = request["query"], request.get("variables") or {}
        except (ValueError, KeyError, TypeError):
            self._reply(400, {"errors": [{"message": "not a GraphQL request"}]})
            return
        match = _FIELD.search(query)
        field = match.group(1) if match else ""
        if field not in REPORT_FIELDS:
            self._reply(422, {"errors": [{"message": f"Cannot query field {field!r} on type Mutation"}]})
            return
        problems = schema_problems(variables)
        if problems:
            self._reply(422, {"errors": [{"message": p} for p in problems]})
            return
        if mapper.graphql_errors:
            mapper._count("graphql_errors")
            self._reply(200, {"errors": [{"message": "injected resolver error"}], "data": None})
            return
        mapper._record(RecordedCall(field, variables))
        self._reply(200, {"data": {field: True}})

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], mapper: RecordingMapper) -> None:
        self.mapper = mapper
        super().__init__(address, _Handler)


class RecordingMapper:
    """``with RecordingMapper(token="t") as mapper: ... mapper.url ... mapper.recorded()``."""

    def __init__(self, token: str = "test-agent-token", host: str = "127.0.0.1", port: int = 0) -> None:
        self.token = token
        self.host = host
        self.port = port
        self.fail_status: int | None = None
        self.graphql_errors = False
        self._lock = threading.Lock()
        self._calls: list[RecordedCall] = []
        self._counts: dict[str, int] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/query"

    def start(self) -> RecordingMapper:
        """Listen (again) on the same port; the first start picks a free one."""
        if self._server is not None:
            raise RuntimeError("already running")
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: connections are refused until :meth:`start`."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        assert self._thread is not None
        self._thread.join()
        self._server = self._thread = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self._server is not None

    def fail_with(self, status: int | None) -> None:
        """Answer every authorized request with ``status`` (None: answer normally again)."""
        self.fail_status = status

    def _record(self, call: RecordedCall) -> None:
        with self._lock:
            self._calls.append(call)

    def _count(self, what: str) -> None:
        with self._lock:
            self._counts[what] = self._counts.get(what, 0) + 1

    def count(self, what: str) -> int:
        """Requests answered with ``unauthorized``, ``failed`` (injected status) or ``graphql_errors``."""
        with self._lock:
            return self._counts.get(what, 0)

    def recorded(self) -> list[RecordedCall]:
        with self._lock:
            return list(self._calls)

    def pairs_by_mutation(self) -> dict[str, set[Pair]]:
        """``{mutation: {(srcIp, destination, destinationPort or None)}}`` over every accepted call."""
        result: dict[str, set[Pair]] = {}
        for call in self.recorded():
            pairs = result.setdefault(call.field, set())
            for src in call.variables["results"]["results"]:
                for dest in src["destinations"]:
                    pairs.add((src["srcIp"], dest["destination"], dest.get("destinationPort")))
        return result

    def pairs(self, field: str) -> set[Pair]:
        return self.pairs_by_mutation().get(field, set())

    def __enter__(self) -> RecordingMapper:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
