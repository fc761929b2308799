"""The executable schema: ``schema.graphql`` bound to the query and mutation resolvers.

Mutations are producers' reports over HTTP (the sniffer, the Kafka and Istio watchers, the AWS
proxy): each converts its input to observations (:mod:`.mutations`) and submits them as one
batch to :class:`~.reportqueue.ReportQueue`, whose workers resolve them into edges for the store.
Queries read the store and shape its edges (:mod:`.queries`) for the Otterize CLI and ours.
The snapshot fields (``snapshots``, ``snapshot``, ``saveSnapshot``, ``loadSnapshot``,
``deleteSnapshot``) reach a :class:`~.protocols.SnapshotKeeper`, ``clusterFacts`` a
:class:`~.protocols.FactsSource`; bad names and documents are field errors with code
:data:`BAD_INPUT_CODE` and a message saying what is wrong.
Resolvers reach the mapper's parts through :class:`RequestContext` (``info.context``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ariadne import MutationType, ObjectType, QueryType, load_schema_from_path, make_executable_schema
from graphql import GraphQLError, GraphQLResolveInfo, GraphQLSchema

from agent import snapshotwire
from agent.mapper.api import mutations, queries
from agent.mapper.api.coverageapi import coverage_mutation, coverage_query, sniffer_node
from agent.mapper.api.protocols import EdgeStoreLike, FactsSource, LabelSource, SnapshotKeeper
from agent.mapper.api.reportqueue import Busy, ReportQueue
from agent.mapper.api.scalars import time_scalar
from agent.mapper.coverage import Coverage
from agent.model import ClusterFacts

log = logging.getLogger("agent.mapper.api")

SCHEMA_PATH = Path(__file__).with_name("schema.graphql")

BUSY_CODE = "MAPPER_BUSY"
RECORD_FAILED_CODE = "MAPPER_RECORD_FAILED"
UNAUTHORIZED_CODE = "UNAUTHENTICATED"
BAD_INPUT_CODE = "BAD_USER_INPUT"
NO_SNAPSHOTS_CODE = "SNAPSHOTS_UNAVAILABLE"


@dataclass
class ApiState:
    """What the resolvers use, shared by every request."""

    store: EdgeStoreLike
    ingest: ReportQueue
    labels: LabelSource
    clock: Callable[[], float] = time.time
    positions: Callable[[], tuple[int, int]] | None = None
    """The store's (newest change, upload cursor) when the mapper uploads (``uploadPosition``)."""
    facts: FactsSource | None = None
    """The cluster state (``clusterFacts``, and the facts kept in snapshots); None: none known."""
    snapshots: SnapshotKeeper | None = None
    """Where snapshots are kept; None: the snapshot mutations are refused, the queries find none."""
    coverage: Coverage | None = None
    """What the map covers (``coverage``, ``reportComponentStatus``); None: nothing tracked."""
    not_stored: dict[str, int] = field(default_factory=dict)
    """Entries of the reports that are accepted but not stored (Azure, GCP, traffic levels)."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Report entries skipped as unusable, by reason (:data:`.mutations.REASONS`): on ``/metrics``."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count_not_stored(self, kind: str, entries: int) -> None:
        with self._lock:
            self.not_stored[kind] = self.not_stored.get(kind, 0) + entries

    def count_skipped(self, reasons: Mapping[str, int]) -> None:
        with self._lock:
            for reason, entries in reasons.items():
                self.skipped[reason] = self.skipped.get(reason, 0) + entries


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Per request: the shared state, whether the bearer token was given, the peer (for logs)."""

    state: ApiState
    authorized: bool
    peer: str = ""
    acks: list[tuple[str, Future[int]]] = field(default_factory=list)
    """(response key, completion) of each report this request queued: the endpoint awaits them
    after execution, so ``true`` is answered only once the report is in the store."""


Info = GraphQLResolveInfo[RequestContext]


def _namespaces(namespaces: Collection[str] | None) -> Collection[str] | None:
    """Otterize semantics: a null or empty list means every namespace."""
    return namespaces or None


query = QueryType()
mutation = MutationType()


@query.field("health")
def _health(_: Any, info: Info) -> bool:
    return True


@query.field("uploadPosition")
def _upload_position(_: Any, info: Info) -> dict[str, int] | None:
    positions = info.context.state.positions
    if positions is None:
        return None
    changed, uploaded = positions()
    return {"changed": changed, "uploaded": uploaded}


@query.field("serviceIntents")
def _service_intents(
    _: Any,
    info: Info,
    *,
    namespaces: list[str] | None = None,
    includeLabels: list[str] | None = None,
    includeAllLabels: bool | None = None,
) -> list[queries.Shape]:
    state = info.context.state
    edges = state.store.edges(_namespaces(namespaces))
    return queries.service_intents(
        edges, state.labels, include_labels=includeLabels, include_all_labels=includeAllLabels
    )


@query.field("intents")
def _intents(
    _: Any,
    info: Info,
    *,
    namespaces: list[str] | None = None,
    includeLabels: list[str] | None = None,
    excludeServiceWithLabels: list[str] | None = None,
    includeAllLabels: bool | None = None,
    server: Mapping[str, str] | None = None,
) -> list[queries.Shape]:
    state = info.context.state
    edges = state.store.edges(_namespaces(namespaces))
    return queries.intents(
        edges,
        state.labels,
        include_labels=includeLabels,
        exclude_service_with_labels=excludeServiceWithLabels,
        include_all_labels=includeAllLabels,
        server=server,
    )


@query.field("edges")
def _edges(_: Any, info: Info, namespaces: list[str] | None = None) -> list[queries.Shape]:
    return [queries.mapped_edge(e) for e in info.context.state.store.edges(_namespaces(namespaces))]


# The earlier shape of MappedEdge's target and HTTP resources, read from the edge document.
mapped_target = ObjectType("MappedTarget")
mapped_edge = ObjectType("MappedEdge")


def _of_type(kind: str) -> Callable[[queries.Shape, Info], queries.Shape | None]:
    return lambda target, _: target if target["type"] == kind else None


for _kind in ("workload", "internet", "aws"):
    mapped_target.set_field(_kind, _of_type(_kind))
mapped_edge.set_alias("httpResources", "http")
mapped_edge.set_field("targetService", lambda edge, _: edge["targetService"] or None)  # as ever: null


def _authorized(info: Info) -> RequestContext:
    """The app refuses unauthorized mutations with HTTP 401 before execution; this is the
    resolvers' own check, so no code path reaches the store or the queue without the token."""
    ctx = info.context
    if not ctx.authorized:
        raise GraphQLError(
            "unauthorized: mutations need 'Authorization: Bearer <token>'",
            extensions={"code": UNAUTHORIZED_CODE},
        )
    return ctx


authorized = _authorized  # the same check for the coverage fields (coverageapi)


@mutation.field("resetCapture")
def _reset_capture(_: Any, info: Info) -> bool:
    ctx = _authorized(info)
    ctx.state.store.reset()
    log.info("capture reset peer=%s", ctx.peer)
    return True


Converter = Callable[[Any, RequestContext], mutations.Converted]
CONVERTERS: dict[str, Converter] = {}
"""Each report mutation's converter by field name: the resolvers below, and the fast path of
:mod:`.reportinputs` (through :func:`accept_report`), run the same one."""


def accept_report(name: str, value: Any, ctx: RequestContext, key: str) -> None:
    """Convert report ``name``'s input ``value``, count what it skipped and queue the rest; the
    completion goes to ``ctx.acks`` under response ``key``. Raises :class:`Busy` (logged) when the
    queue is full. The caller has checked the token."""
    converted = CONVERTERS[name](value, ctx)
    if converted.skipped:
        ctx.state.count_skipped(converted.skipped)
        log.warning(
            "report entries skipped mutation=%s peer=%s skipped=%d accepted=%d reasons=%s first=%s",
            name,
            ctx.peer,
            converted.skipped.total(),
            len(converted.observations),
            ",".join(sorted(converted.skipped)),
            converted.first,
        )
    try:
        done = ctx.state.ingest.submit(converted.observations)
    except Busy:
        log.warning(
            "report refused, queue full mutation=%s peer=%s observations=%d",
            name,
            ctx.peer,
            len(converted.observations),
        )
        raise
    log.debug(
        "report accepted mutation=%s peer=%s observations=%d", name, ctx.peer, len(converted.observations)
    )
    if not done.done():
        ctx.acks.append((key, done))


def busy_error(nodes: Any = None, path: Sequence[str | int] | None = None) -> GraphQLError:
    return GraphQLError("mapper busy, retry", nodes, path=path, extensions={"code": BUSY_CODE})


def _report(name: str, argument: str, convert: Converter) -> None:
    CONVERTERS[name] = convert

    def resolve(_: Any, info: Info, **kwargs: Any) -> bool:
        ctx = _authorized(info)
        try:
            accept_report(name, kwargs[argument], ctx, str(info.path.key))
        except Busy:
            raise busy_error() from None
        return True

    mutation.set_field(name, resolve)


def _counted(kind: str) -> Callable[[Sequence[Any], RequestContext], mutations.Converted]:
    def count(entries: Sequence[Any], ctx: RequestContext) -> mutations.Converted:
        ctx.state.count_not_stored(kind, len(entries))
        return mutations.Converted()

    return count


_report("reportCaptureResults", "results", sniffer_node(mutations.capture_results))
_report("reportTCPCaptureResults", "results", sniffer_node(mutations.tcp_results))
_report("reportSocketScanResults", "results", sniffer_node(mutations.socket_results))
_report("reportKafkaMapperResults", "results", lambda r, _: mutations.kafka_results(r))
_report("reportIstioConnectionResults", "results", lambda r, _: mutations.istio_results(r))
_report("reportAWSOperation", "operation", lambda ops, ctx: mutations.aws_operations(ops, ctx.state.clock()))
# Accepted (so producers that send them keep working), validated by the schema, counted, not stored:
# the model has no Azure/GCP targets and no traffic volumes yet.
_report("reportAzureOperation", "operation", _counted("azure"))
_report("reportGCPOperation", "operation", _counted("gcp"))
_report("reportTrafficLevelResults", "results", lambda r, ctx: _counted("traffic")(r["results"], ctx))


# ---------------------------------------------------------------- cluster facts and snapshots


def _facts(state: ApiState) -> ClusterFacts:
    return state.facts.facts() if state.facts is not None else ClusterFacts()


def _info(info: Any) -> dict[str, Any]:
    """A ``SnapshotInfo`` in the schema's shape (``takenAt``: epoch seconds, which the scalar formats)."""
    return {"name": info.name, "takenAt": info.taken_at, "auto": info.auto, "edges": info.edges}


def _bad_input(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": BAD_INPUT_CODE})


def _keeper(ctx: RequestContext) -> SnapshotKeeper:
    if ctx.state.snapshots is None:
        raise GraphQLError("this mapper keeps no snapshots", extensions={"code": NO_SNAPSHOTS_CODE})
    return ctx.state.snapshots


@query.field("clusterFacts")
def _cluster_facts(_: Any, info: Info) -> queries.Shape:
    return queries.cluster_facts(_facts(info.context.state))


@query.field("snapshots")
def _snapshots(_: Any, info: Info) -> list[dict[str, Any]]:
    keeper = info.context.state.snapshots
    return [_info(found) for found in keeper.snapshot_infos()] if keeper is not None else []


@query.field("snapshot")
def _snapshot(_: Any, info: Info, name: str) -> str | None:
    keeper = info.context.state.snapshots
    document = keeper.document(name) if keeper is not None else None
    return document.decode() if document is not None else None


@mutation.field("saveSnapshot")
def _save_snapshot(_: Any, info: Info, name: str) -> dict[str, Any]:
    ctx = _authorized(info)
    keeper = _keeper(ctx)
    try:
        saved = keeper.take(name, _facts(ctx.state), ctx.state.clock())
    except ValueError as error:  # a bad or reserved name (SnapshotError)
        raise _bad_input(str(error)) from None
    log.info("snapshot saved name=%s edges=%d peer=%s", saved.name, saved.edges, ctx.peer)
    return _info(saved)


@mutation.field("loadSnapshot")
def _load_snapshot(_: Any, info: Info, document: str, name: str | None = None) -> dict[str, Any]:
    ctx = _authorized(info)
    keeper = _keeper(ctx)
    try:
        snapshot = snapshotwire.decode_snapshot(document)
    except ValueError as error:  # WireError: what is wrong, and where
        raise _bad_input(f"not a snapshot document: {error}") from None
    name = name or snapshot.name
    if not name:
        raise _bad_input("the document names no snapshot (a JSON export?): give loadSnapshot a name")
    # An auto- name is an automatic snapshot's, whatever the document says: it is pruned as one.
    snapshot = replace(snapshot, name=name, auto=name.startswith("auto-"))
    try:
        saved = keeper.save_snapshot(snapshot)
    except ValueError as error:
        raise _bad_input(str(error)) from None
    log.info("snapshot loaded name=%s edges=%d peer=%s", saved.name, saved.edges, ctx.peer)
    return _info(saved)


@mutation.field("deleteSnapshot")
def _delete_snapshot(_: Any, info: Info, name: str) -> bool:
    ctx = _authorized(info)
    deleted = _keeper(ctx).delete_snapshot(name)
    log.info("snapshot delete name=%s deleted=%s peer=%s", name[:80], deleted, ctx.peer)
    return deleted


def build_schema() -> GraphQLSchema:
    """The executable schema (``schema.graphql`` + these resolvers + the ``Time`` scalar)."""
    return make_executable_schema(
        load_schema_from_path(str(SCHEMA_PATH)),
        query,
        mutation,
        coverage_query,
        coverage_mutation,
        mapped_target,
        mapped_edge,
        time_scalar,
    )
