"""A stand-in for the cloud backend: the ingest API the mapper's uploader talks to, and the OTLP
metrics endpoint telemetry pushes to.

A real HTTP server (standard library, one thread per request) on 127.0.0.1 (port 0: a free one).

* ``POST /v1/ingest`` with ``Authorization: Bearer <token>`` (401 otherwise) and
  ``{"batchId": str, "anonymized": bool, "edges": [edge_dict + {"live": bool}, ...], "seenAt"?:
  RFC 3339}`` (≤ 500 edges; 400 when the shape is wrong): a batch id seen before answers
  ``{"stored": false, "edgesWritten": 0}``; a new one merges each edge into the graph by key
  (first_seen min, last_seen max, count MAX, methods, HTTP resources, Kafka topics and AWS actions
  unioned, target_service the newest non-empty, ambiguous AND; ``live``: the last one sent), raises
  the heartbeat to ``seenAt`` if given, and answers ``{"stored": true, "edgesWritten": n}``. The
  merge is idempotent. No edges and a ``seenAt``: a heartbeat only (no batch id kept), answered
  ``{"stored": true, "edgesWritten": 0}``. Every answered request is logged in order
  (:meth:`RecordingCloud.requests`).
* ``POST /v1/metrics``: records the raw body and headers (OTLP protobuf), answers 200.

It can be stopped and started again on the same port (a cloud outage), or told to answer every
request with an HTTP status (e.g. 503).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agent.exports.jsonexport import DocumentError, edge_from_dict, parse_rfc3339
from agent.model import Edge, HttpResource, KafkaTopic, Target, WorkloadIdentity

MAX_EDGES = 500


@dataclass(frozen=True)
class MetricsRequest:
    body: bytes  # decompressed
    headers: dict[str, str]


@dataclass(frozen=True)
class IngestRequest:
    """One ingest answered 200, as received."""

    batch_id: str
    anonymized: bool
    edges: tuple[Edge, ...]
    live: tuple[bool, ...]  # per edge
    seen_at: float | None
    stored: bool

    @property
    def heartbeat(self) -> bool:
        return not self.edges and self.seen_at is not None


def _merge_named(a: tuple[Any, ...], b: tuple[Any, ...], cls: Any) -> tuple[Any, ...]:
    merged: dict[str, set[str]] = {}
    for item in (*a, *b):
        name, values = dataclasses.astuple(item)
        merged.setdefault(name, set()).update(values)
    return tuple(cls(name, tuple(sorted(values))) for name, values in sorted(merged.items()))


def merge(old: Edge, new: Edge) -> Edge:
    """The cloud's idempotent merge of two states of one edge."""
    newest = new if new.last_seen >= old.last_seen else old
    service = newest.target_service or old.target_service or new.target_service
    return dataclasses.replace(
        old,
        first_seen=min(old.first_seen, new.first_seen),
        last_seen=max(old.last_seen, new.last_seen),
        count=max(old.count, new.count),
        methods=old.methods | new.methods,
        http=_merge_named(old.http, new.http, HttpResource),
        kafka_topics=_merge_named(old.kafka_topics, new.kafka_topics, KafkaTopic),
        aws_actions=tuple(sorted(set(old.aws_actions) | set(new.aws_actions))),
        target_service=service,
        ambiguous=old.ambiguous and new.ambiguous,
    )


def normalized(edge: Edge) -> Edge:
    """An edge with its set-like details sorted, as :func:`merge` leaves them (for comparisons)."""
    return dataclasses.replace(
        edge,
        http=_merge_named(edge.http, (), HttpResource),
        kafka_topics=_merge_named(edge.kafka_topics, (), KafkaTopic),
        aws_actions=tuple(sorted(set(edge.aws_actions))),
    )


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        cloud = self.server.cloud
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        cloud._count("requests")
        if self.path == "/v1/metrics":
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            cloud._record_metrics(MetricsRequest(body, dict(self.headers.items())))
            self._reply(200, b"", "application/x-protobuf")
            return
        if self.path != "/v1/ingest":
            self._json(404, {"error": "not found"})
            return
        if self.headers.get("Authorization") != f"Bearer {cloud.token}":
            cloud._count("unauthorized")
            self._json(401, {"error": "unauthorized"})
            return
        if cloud.fail_status is not None:
            cloud._count("failed")
            self._json(cloud.fail_status, {"error": "injected failure"})
            return
        try:
            request = json.loads(body)
            batch_id, anonymized, raw = request["batchId"], request["anonymized"], request["edges"]
            if not isinstance(batch_id, str) or not batch_id or not isinstance(anonymized, bool):
                raise TypeError("batchId must be a non-empty string, anonymized a boolean")
            if not isinstance(raw, list) or len(raw) > MAX_EDGES:
                raise TypeError(f"edges must be a list of at most {MAX_EDGES}")
            edges = [edge_from_dict(e) for e in raw]
            live = [e.get("live", False) for e in raw]
            if not all(isinstance(flag, bool) for flag in live):
                raise TypeError("live must be a boolean")
            seen_text = request.get("seenAt")
            if seen_text is not None and not isinstance(seen_text, str):
                raise TypeError("seenAt must be an RFC 3339 string")
            seen_at = None if seen_text is None else parse_rfc3339(seen_text)
        except (ValueError, KeyError, TypeError, DocumentError) as exc:
            cloud._count("bad_request")
            self._json(400, {"error": str(exc)})
            return
        stored = cloud._ingest(IngestRequest(batch_id, anonymized, tuple(edges), tuple(live), seen_at, True))
        self._json(200, {"stored": stored, "edgesWritten": len(edges) if stored else 0})

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        self._reply(status, json.dumps(payload).encode(), "application/json")

    def _reply(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], cloud: RecordingCloud) -> None:
        self.cloud = cloud
        super().__init__(address, _Handler)


class RecordingCloud:
    """``with RecordingCloud(token="t") as cloud: ... cloud.url ... cloud.graph()``."""

    def __init__(self, token: str = "test-ingest-token", host: str = "127.0.0.1", port: int = 0) -> None:
        self.token = token
        self.host = host
        self.port = port
        self.fail_status: int | None = None
        self._lock = threading.Lock()
        self._graph: dict[tuple[WorkloadIdentity, Target], Edge] = {}
        self._live: dict[tuple[WorkloadIdentity, Target], bool] = {}
        self._heartbeat: float | None = None
        self._requests: list[IngestRequest] = []
        self._stored_batches: list[str] = []
        self._stored_ids: set[str] = set()
        self._received_batches: list[tuple[str, bool, int]] = []  # (id, stored, edges)
        self._metrics: list[MetricsRequest] = []
        self._counts: Counter[str] = Counter()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL (``cloud_url``): ``/v1/ingest`` and ``/v1/metrics`` hang off it."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> RecordingCloud:
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

    @property
    def running(self) -> bool:
        return self._server is not None

    def fail_with(self, status: int | None) -> None:
        """Answer every authorized ingest with ``status`` (None: answer normally again)."""
        self.fail_status = status

    # ------------------------------------------------------------------ recording

    def _ingest(self, request: IngestRequest) -> bool:
        with self._lock:
            if request.heartbeat:
                self._requests.append(request)
                self._raise_heartbeat(request.seen_at)
                return True
            batch_id = request.batch_id
            stored = batch_id not in self._stored_ids
            self._requests.append(dataclasses.replace(request, stored=stored))
            self._received_batches.append((batch_id, stored, len(request.edges)))
            if not stored:
                return False
            self._stored_batches.append(batch_id)
            self._stored_ids.add(batch_id)
            for edge, live in zip(request.edges, request.live, strict=True):
                old = self._graph.get(edge.key)
                self._graph[edge.key] = normalized(edge) if old is None else merge(old, edge)
                self._live[edge.key] = live
            self._raise_heartbeat(request.seen_at)
            return True

    def _raise_heartbeat(self, seen_at: float | None) -> None:
        if seen_at is not None and (self._heartbeat is None or seen_at > self._heartbeat):
            self._heartbeat = seen_at

    def _record_metrics(self, request: MetricsRequest) -> None:
        with self._lock:
            self._metrics.append(request)

    def _count(self, what: str) -> None:
        with self._lock:
            self._counts[what] += 1

    def count(self, what: str) -> int:
        """``requests`` (all), ``unauthorized``, ``failed`` (injected status), ``bad_request``."""
        with self._lock:
            return self._counts[what]

    def graph(self) -> dict[tuple[WorkloadIdentity, Target], Edge]:
        """The merged graph: edge key → merged edge."""
        with self._lock:
            return dict(self._graph)

    def live(self) -> dict[tuple[WorkloadIdentity, Target], bool]:
        """Edge key → the ``live`` flag last stored for it."""
        with self._lock:
            return dict(self._live)

    def heartbeat(self) -> float | None:
        """The latest ``seenAt`` received (None: none yet)."""
        with self._lock:
            return self._heartbeat

    def effective_graph(self) -> dict[tuple[WorkloadIdentity, Target], Edge]:
        """The graph as the cloud reads it: a live edge was last seen at least at the heartbeat."""
        with self._lock:
            beat = self._heartbeat
            return {
                key: dataclasses.replace(edge, last_seen=beat)
                if self._live.get(key) and beat is not None and beat > edge.last_seen
                else edge
                for key, edge in self._graph.items()
            }

    def requests(self) -> list[IngestRequest]:
        """Every ingest answered 200, heartbeats included, in the order received."""
        with self._lock:
            return list(self._requests)

    def heartbeats(self) -> list[float]:
        """The ``seenAt`` of every heartbeat-only request, in order."""
        with self._lock:
            return [r.seen_at for r in self._requests if r.seen_at is not None and r.heartbeat]

    def stored_batches(self) -> list[str]:
        """Ids of the batches stored, in order (each once)."""
        with self._lock:
            return list(self._stored_batches)

    def received_batches(self) -> list[tuple[str, bool, int]]:
        """Every edge batch answered 200 (not heartbeats): ``(batch id, stored, edges)``,
        duplicates included."""
        with self._lock:
            return list(self._received_batches)

    def metrics_requests(self) -> list[MetricsRequest]:
        with self._lock:
            return list(self._metrics)

    def __enter__(self) -> RecordingCloud:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
