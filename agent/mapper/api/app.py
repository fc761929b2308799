"""The mapper's HTTP front: a Starlette app serving GraphQL at ``/query`` and ``/healthz``.

Requests come from producers (report mutations from the sniffer, watchers and AWS proxy) and
from the CLIs and console (queries). Before GraphQL runs, the app enforces, in order:

* size: a body over ``max_body_bytes`` gets 413 without being read into memory (Content-Length
  is checked first; a chunked body is counted while it streams);
* shape: invalid JSON or a request that is not ``{"query": str, "variables": {}|null,
  "operationName": str|null}`` → 400 with GraphQL-style ``errors``;
* document: at most ``MAX_QUERY_CHARS`` characters and ``MAX_TOKENS`` tokens, at most
  ``MAX_DEPTH`` levels of selections and ``MAX_FIELDS`` fields (fragments expanded) → else 400;
* auth: a mutation needs ``Authorization: Bearer <token>`` when a token is configured (compared
  in constant time), a query too unless ``open_queries``; otherwise 401 with ``errors`` and
  nothing reaches the queue. 401 (not 200) because Otterize's Go clients and our reporter treat
  any non-200 as a failed report, and our reporter logs a 4xx as an ERROR instead of retrying it
  as a transient error. GET serves queries only (405 for mutations).

Execution then runs in a worker thread (resolvers block on SQLite and on JSON of large
batches). A report mutation's ``true`` means "committed to the store": the endpoint awaits the
completions of the batches the request queued (on the event loop, holding no thread, so many
waiting reporters neither block queries nor stop the workers taking their batches in turn), up
to ``ACK_TIMEOUT``; a batch that failed to record, or is still queued then, answers an error
instead (``data`` null, as the fields are ``Boolean!``), which reporters retry.

Status: 200 once execution started (including field errors such as "mapper busy, retry", which
reporters retry), 400 when the request failed before (parse, validation, variable coercion,
e.g. a bad ``Time``). No request makes a 500 unless the code has a bug.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

from ariadne import graphql_sync
from ariadne.format_error import format_error
from graphql import GraphQLError, GraphQLSchema, OperationType, get_operation_ast
from graphql.language import DocumentNode, parse
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agent import boundedjson
from agent.mapper.api.limits import (
    MAX_QUERY_CHARS,
    MAX_TOKENS,
    DocumentTooComplex,
    check_document,
)
from agent.mapper.api.protocols import (
    EdgeStoreLike,
    FactsSource,
    LabelSource,
    NoLabels,
    ObservationResolver,
    SnapshotKeeper,
)
from agent.mapper.api.reportinputs import ReportInputs, envelope
from agent.mapper.api.reportqueue import Busy, ReportQueue
from agent.mapper.api.schema import (
    BUSY_CODE,
    RECORD_FAILED_CODE,
    UNAUTHORIZED_CODE,
    ApiState,
    RequestContext,
    accept_report,
    build_schema,
    busy_error,
)
from agent.mapper.coverage import CountingResolver, Coverage
from agent.mapper.settings import ApiSettings

log = logging.getLogger("agent.mapper.api")
_quiet = logging.getLogger("agent.mapper.api.graphql")  # ariadne's own error log: we log ourselves
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False

JSON = "application/json"
STOP_TIMEOUT = 10.0
ACK_TIMEOUT = 20.0
"""How long a report mutation waits for its batch to be recorded before answering "retry"
(below the reporters' HTTP timeouts, so they see the answer rather than a timeout)."""

Acks = Sequence[tuple[str, "Future[int]"]]
INLINE_BODY_BYTES = 64 << 10
"""A sniffer report this small runs on the event loop (well under a millisecond); larger ones,
and everything else, in a worker thread."""


class BodyTooLarge(Exception):
    pass


def _errors(status: int, message: str, **headers: str) -> Response:
    return JSONResponse({"errors": [{"message": message}]}, status_code=status, headers=headers or None)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or :class:`BodyTooLarge` as soon as it is known to exceed ``limit``."""
    length = request.headers.get("content-length")
    if length is not None and length.strip().isdigit() and int(length) > limit:
        raise BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


@lru_cache(maxsize=512)
def parse_document(query: str) -> DocumentNode:
    """Parse and check a document (cached: producers send the same few documents again and again)."""
    document = parse(query, no_location=False, max_tokens=MAX_TOKENS)
    check_document(document)
    return document


def _finished(status: int, result: dict[str, Any], acks: Acks) -> tuple[int, bytes | dict[str, Any], Acks]:
    """An executed request's status and body; while reports it queued await their commit, the
    result itself (``_acknowledge`` finishes it) instead of the body."""
    return status, (result if acks else json.dumps(result, separators=(",", ":")).encode()), acks


def _error_formatter(error: GraphQLError, debug: bool = False) -> dict[str, Any]:
    original = error.original_error
    if error.path is not None and original is not None and not isinstance(original, GraphQLError | Busy):
        log.error(
            "resolver failed path=%s error=%s", ".".join(map(str, error.path)), error, exc_info=original
        )
    return format_error(error, debug)


class GraphQLEndpoint:
    """``/query``: checks (see the module docstring), then ariadne's ``graphql_sync``."""

    def __init__(self, settings: ApiSettings, state: ApiState, schema: GraphQLSchema) -> None:
        self._token = settings.token.encode()
        self._open_queries = settings.open_queries
        self._limit = settings.max_body_bytes
        self._state = state
        self._schema = schema
        self._reports = ReportInputs(schema, parse_document)

    def _has_token(self, authorization: str | None) -> bool:
        if not self._token:
            return True
        scheme, _, credentials = (authorization or "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(credentials.strip().encode(), self._token)

    async def handle(self, request: Request) -> Response:
        peer = f"{request.client.host}:{request.client.port}" if request.client else ""
        if request.method == "GET":
            params = request.query_params
            data: Any = {"query": params.get("query"), "operationName": params.get("operationName")}
            try:
                variables = params.get("variables")
                data["variables"] = boundedjson.loads(variables) if variables else None
            except boundedjson.JsonTooComplex as exc:
                return _errors(400, f"variables: {exc}")
            except ValueError:
                return _errors(400, "variables must be a JSON object")
        else:
            try:
                body = await read_body(request, self._limit)
            except BodyTooLarge:
                log.warning("request refused peer=%s status=413 limit=%d", peer, self._limit)
                return _errors(413, f"request body exceeds {self._limit} bytes", Connection="close")
            except ClientDisconnect:
                return Response(status_code=400)
            data = body
        authorization = request.headers.get("authorization")
        # A small sniffer report is decoded and queued right here: the hop to a worker thread and
        # back cost more than its work (tens of µs), and 5,000 nodes send thousands a second.
        inline = isinstance(data, bytes) and len(data) <= INLINE_BODY_BYTES
        fast = self._fast_report(data, authorization, peer) if inline else None
        if fast is not None:
            status, payload, acks = _finished(*fast)
        else:
            status, payload, acks = await run_in_threadpool(
                self._handle, data, authorization, request.method, peer, not inline
            )
        if acks:
            payload = await self._acknowledge(payload, acks, peer)
        return Response(
            payload,
            status_code=status,
            media_type=JSON,
            headers={"WWW-Authenticate": "Bearer"} if status == 401 else None,
        )

    def _handle(
        self, raw: bytes | dict[str, Any], authorization: str | None, method: str, peer: str, fast: bool
    ) -> tuple[int, bytes | dict[str, Any], Acks]:
        """Status and body; when reports were queued, the result (to finish once they are
        recorded) and their completions instead of the body. ``fast``: try the sniffer reports'
        decoding first (not yet tried on the event loop)."""
        status, result, acks = self._execute(raw, authorization, method, peer, fast)
        if status >= 400:
            messages = "; ".join(str(e.get("message", ""))[:200] for e in result.get("errors", ()))
            log.info("request failed peer=%s status=%d errors=%s", peer, status, messages)
        return _finished(status, result, acks)

    @staticmethod
    async def _acknowledge(result: bytes | dict[str, Any], acks: Acks, peer: str) -> bytes:
        """The mutation's body once its batches are recorded: ``true`` stays only if all were."""
        assert isinstance(result, dict)
        waits = [asyncio.wrap_future(done) for _, done in acks]
        # Not cancelled on timeout: the batch stays accepted and is recorded later (a retry
        # records its edges again, which the store merges).
        _, pending = await asyncio.wait(waits, timeout=ACK_TIMEOUT)
        errors: list[dict[str, Any]] = []
        for (key, _), wait in zip(acks, waits, strict=True):
            if wait in pending:
                message = f"mapper busy: report queued but not recorded within {ACK_TIMEOUT:g}s, retry"
                errors.append({"message": message, "path": [key], "extensions": {"code": BUSY_CODE}})
            elif (exc := wait.exception()) is not None:
                errors.append(
                    {"message": str(exc), "path": [key], "extensions": {"code": RECORD_FAILED_CODE}}
                )
        if errors:
            # The report fields are Boolean!: a field error nulls the whole data, as GraphQL does.
            log.warning("report not acknowledged peer=%s errors=%s", peer, errors[0]["message"])
            result = {**result, "data": None, "errors": [*result.get("errors", ()), *errors]}
        return json.dumps(result, separators=(",", ":")).encode()

    def _request(self, raw: bytes | dict[str, Any]) -> tuple[dict[str, Any], DocumentNode] | str:
        """The request's data and parsed document, or why the request is refused (400)."""
        if isinstance(raw, bytes):
            try:
                data = boundedjson.loads(raw)
            except boundedjson.JsonTooComplex as exc:
                return f"request body: {exc}"
            except ValueError:  # includes UnicodeDecodeError
                return "request body is not valid JSON"
        else:
            data = raw
        query = data.get("query") if isinstance(data, dict) else None
        if not isinstance(query, str) or not query:
            return "request must be a JSON object with a 'query' string"
        if len(query) > MAX_QUERY_CHARS:
            return f"query longer than {MAX_QUERY_CHARS} characters"
        try:
            return data, parse_document(query)
        except (GraphQLError, DocumentTooComplex) as exc:
            return exc.message if isinstance(exc, GraphQLError) else str(exc)

    def _fast_report(
        self, raw: bytes, authorization: str | None, peer: str
    ) -> tuple[int, dict[str, Any], Acks] | None:
        """A sniffer report run without graphql-core (:mod:`.reportinputs`), with the result
        graphql-core would give; None for every request that is not certain to be one (an
        unauthorized one too: the slow path answers it as always)."""
        request = envelope(raw)
        match = self._reports.match(request.query, request.operationName) if request else None
        if request is None or match is None or not self._has_token(authorization):
            return None
        value = self._reports.variable(match, request.variables)
        if value is None:
            return None
        context = RequestContext(self._state, True, peer)
        try:
            accept_report(match.field, value, context, match.key)
        except Busy:
            error = busy_error([match.node], [match.key])
            return 200, {"data": None, "errors": [_error_formatter(error)]}, ()
        return 200, {"data": {match.key: True}}, context.acks

    def _execute(
        self,
        raw: bytes | dict[str, Any],
        authorization: str | None,
        method: str,
        peer: str,
        fast: bool = True,
    ) -> tuple[int, dict[str, Any], Acks]:
        fast_result = self._fast_report(raw, authorization, peer) if fast and isinstance(raw, bytes) else None
        if fast_result is not None:
            return fast_result
        request = self._request(raw)
        if isinstance(request, str):
            return 400, {"errors": [{"message": request}]}, ()
        data, document = request
        name = data.get("operationName")
        operation = get_operation_ast(document, name if isinstance(name, str) else None)
        authorized = self._has_token(authorization)
        if operation is not None:
            is_mutation = operation.operation is not OperationType.QUERY
            if is_mutation and method == "GET":
                return 405, {"errors": [{"message": "mutations must be sent with POST"}]}, ()
            if not authorized and (is_mutation or not self._open_queries):
                what = "mutations" if is_mutation else "queries"
                message = f"unauthorized: {what} need 'Authorization: Bearer <token>'"
                error = {"message": message, "extensions": {"code": UNAUTHORIZED_CODE}}
                return 401, {"errors": [error]}, ()
        context = RequestContext(self._state, authorized, peer)
        _, result = graphql_sync(
            self._schema,
            data,
            context_value=context,
            query_document=document,
            logger=_quiet,
            error_formatter=_error_formatter,
        )
        # Errors with a path happened during execution (e.g. "mapper busy"): 200, as GraphQL over
        # HTTP answers field errors. No data and no path: parse/validation/variables: 400.
        executed = result.get("data") is not None or any(e.get("path") for e in result.get("errors", ()))
        return (200 if executed else 400), result, context.acks


def create_app(
    settings: ApiSettings,
    store: EdgeStoreLike,
    resolver: ObservationResolver,
    labels: LabelSource | None = None,
    *,
    workers: int = 1,
    ingest: ReportQueue | None = None,
    clock: Callable[[], float] | None = None,
    positions: Callable[[], tuple[int, int]] | None = None,
    facts: FactsSource | None = None,
    snapshots: SnapshotKeeper | None = None,
    coverage: Coverage | None = None,
) -> Starlette:
    """The API app. Report batches are resolved by ``workers`` threads (started now; drained and
    stopped at the app's shutdown) and recorded in ``store``; queries read ``store`` and
    ``labels``; ``positions`` (the store's, when the mapper uploads) answers ``uploadPosition``;
    ``facts`` (the cluster state) ``clusterFacts``; ``snapshots`` keeps the snapshots; ``coverage``
    answers ``coverage`` and counts what the workers resolve (pass ``resolver`` unwrapped).
    ``app.state.ingest`` is the :class:`ReportQueue` (``drain()`` for tests). The
    resolver is called from the worker threads only: ``workers > 1`` needs a resolver that is
    safe to share (``agent.mapper.resolver.Resolver`` keeps unlocked stats, so keep 1)."""
    if coverage is not None and isinstance(resolver, CountingResolver):
        resolver = coverage.resolver(resolver)
    ingest = ingest or ReportQueue(resolver, store, max_batches=settings.queue_batches, workers=workers)
    state = ApiState(
        store,
        ingest,
        labels or NoLabels(),
        positions=positions,
        facts=facts,
        snapshots=snapshots,
        coverage=coverage,
    )
    if coverage is not None:
        coverage.attach_api(lambda: dict(state.skipped), lambda: ingest.stats.batches_refused)
    if clock is not None:
        state.clock = clock
    endpoint = GraphQLEndpoint(settings, state, build_schema())
    if not settings.token:
        log.warning("no token configured: report mutations and resetCapture are open to anyone")

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "pending_batches": ingest.pending})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        ingest.start()
        yield
        await run_in_threadpool(ingest.stop, STOP_TIMEOUT)

    app = Starlette(
        routes=[
            Route("/query", endpoint.handle, methods=["GET", "POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.ingest = ingest
    app.state.api = state
    ingest.start()
    return app
