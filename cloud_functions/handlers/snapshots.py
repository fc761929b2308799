"""A cluster's snapshots in the cloud: uploaded by its mapper, listed, read and compared.

* ``POST /v1/snapshots`` (ingest token, like ``/v1/ingest``): the mapper's uploader sends a
  snapshot document (:mod:`agent.snapshotwire`; a ``clusterId`` beside it must be the token's
  cluster, which is where it is kept: the cluster comes from the token). It is checked and
  re-encoded canonically, then kept by the store under its name (the same name replaces;
  :mod:`cloud_functions.store.snapshots` bounds a cluster's count, pruning the oldest);
* ``GET /v1/tenants/{tenantId}/snapshots?cluster=``: the cluster's snapshots, newest first
  (``name``, ``takenAt``, ``auto``, ``edges`` = edge count);
* ``GET /v1/tenants/{tenantId}/snapshots/{name}?cluster=``: the snapshot document;
* ``GET /v1/tenants/{tenantId}/diff?cluster=&from=NAME&to=NAME|now``: :func:`agent.mapdiff.diff`
  of two snapshots, as :func:`agent.mapdiff.diff_json`. ``to=now`` (the default) compares with the
  cluster's graph as it is (liveness applied) and the facts of its newest snapshot, taken now.

Reads need a ``read`` token of the tenant (as the graph's routes: :mod:`cloud_functions.auth`).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import msgspec
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel, Field

from agent import mapdiff, snapshotwire, wire
from agent.model import ClusterFacts, Snapshot
from agent.wire import WireError
from agent.wiretime import format_time
from cloud_functions.auth import SECURITY, ApiError, Caller, Store, require
from cloud_functions.handlers.admin import TenantId
from cloud_functions.handlers.graph import json_response, namespace_list, reader
from cloud_functions.handlers.ingest import check_bounds, detail, invalid
from cloud_functions.store.base import GraphStore
from cloud_functions.store.snapshots import MAX_SNAPSHOTS, SNAPSHOT_NAME, SnapshotRecord, check_name

router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]  # powertools leaves __init__ bare

NOW = "now"
"""``to=now``: the cluster's graph as it is, not a snapshot (so no snapshot named ``now`` can be a
diff's ``to``)."""

ClusterId = Annotated[str, Query(min_length=1, max_length=200, description="The cluster's id.")]
SnapshotName = Annotated[str, Path(pattern=SNAPSHOT_NAME, max_length=63, description="The snapshot's name.")]


def request_schema() -> dict[str, Any]:
    """The OpenAPI request body of ``POST /v1/snapshots``: a snapshot document (its edges the
    codec's edge documents)."""
    names = {"type": "object", "additionalProperties": {"type": "string"}}
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "name", "takenAt"],
        "properties": {
            "apiVersion": {"const": wire.EXPORT_API_VERSION},
            "kind": {"const": "Snapshot"},
            "version": {"type": "integer"},
            "name": {"type": "string", "pattern": SNAPSHOT_NAME},
            "takenAt": {"type": "string", "format": "date-time"},
            "auto": {"type": "boolean"},
            "clusterId": {"type": "string", "description": "The token's cluster, if given."},
            "facts": {
                "type": "object",
                "properties": {
                    "namespaces": {
                        "type": "array",
                        "items": {"type": "object", "properties": {"labels": names}},
                    },
                    "workloads": {
                        "type": "array",
                        "items": {"type": "object", "properties": {"labels": names}},
                    },
                    "nodes": {"type": "array", "items": {"type": "object"}},
                },
            },
            "edges": {"type": "array", "items": wire.edge_schema()},
        },
    }


class SnapshotInfo(BaseModel):
    name: str
    takenAt: str = Field(description="RFC 3339.")
    auto: bool = Field(description="Taken by the mapper's own schedule.")
    edges: int = Field(description="How many edges it holds.")


class SnapshotStored(SnapshotInfo):
    pruned: list[str] = Field(description="The cluster's oldest snapshots deleted to make room.")


class SnapshotList(BaseModel):
    tenantId: str
    clusterId: str
    snapshots: list[SnapshotInfo]


def info(record: SnapshotRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "takenAt": format_time(record.taken_at),
        "auto": record.auto,
        "edges": record.edges,
    }


class _Cluster(msgspec.Struct):
    """The one field of an upload beside the snapshot document."""

    clusterId: str | None = None


def decode_upload(text: str) -> Snapshot:
    """The uploaded snapshot, checked; :class:`ApiError` 422 locating what is wrong."""
    check_bounds(text)
    try:
        snapshot = snapshotwire.decode_snapshot(text)
    except WireError as error:
        raise invalid([detail(error, ["body"])]) from None
    try:
        check_name(snapshot.name)
    except ValueError as error:
        raise invalid([{"loc": ["body", "name"], "type": "value_error", "msg": str(error)}]) from None
    return snapshot


@router.post(
    "/v1/snapshots",
    security=SECURITY,
    tags=["snapshots"],
    summary="Upload a snapshot of the token's cluster",
    description=f"Kept under its name (the same name replaces); a cluster keeps at most {MAX_SNAPSHOTS}, "
    "the oldest pruned.",
)
def upload_snapshot() -> SnapshotStored:
    store: GraphStore = router.context["store"]
    token = require(router.context.get("caller"), "ingest")
    if not token.cluster_id:
        raise ApiError(403, "forbidden", "the ingest token is bound to no cluster")
    text = router.current_event.decoded_body or ""
    snapshot = decode_upload(text)
    named = msgspec.json.decode(text, type=_Cluster).clusterId  # decoded once already: it reads
    if named is not None and named != token.cluster_id:
        raise ApiError(403, "forbidden", "the token uploads for its own cluster only")
    record = SnapshotRecord(snapshot.name, snapshot.taken_at, snapshot.auto, len(snapshot.edges), time.time())
    gone = store.put_snapshot(
        token.tenant_id, token.cluster_id, record, snapshotwire.encode_snapshot(snapshot), keep=MAX_SNAPSHOTS
    )
    return SnapshotStored(**info(record), pruned=gone)


@router.get(
    "/v1/tenants/<tenantId>/snapshots", security=SECURITY, tags=["snapshots"], summary="A cluster's snapshots"
)
def list_snapshots(tenantId: TenantId, store: Store, caller: Caller, cluster: ClusterId) -> SnapshotList:
    tenant = reader(caller, tenantId)
    found = [SnapshotInfo(**info(r)) for r in store.snapshots(tenant, cluster)]
    return SnapshotList(tenantId=tenant, clusterId=cluster, snapshots=found)


def stored_snapshot(store: GraphStore, tenant: str, cluster: str, name: str) -> bytes:
    """A snapshot's document; :class:`ApiError` 404 when the cluster has none of that name."""
    found = store.snapshot(tenant, cluster, name)
    if found is None:
        raise ApiError(404, "not_found", f"no snapshot {name!r} in cluster {cluster!r}")
    return found[1]


@router.get(
    "/v1/tenants/<tenantId>/snapshots/<name>",
    security=SECURITY,
    tags=["snapshots"],
    summary="A snapshot's document",
    responses={
        200: {"description": "The snapshot document", "content": {"application/json": {"schema": {}}}}
    },
)
def get_snapshot(
    tenantId: TenantId, name: SnapshotName, store: Store, caller: Caller, cluster: ClusterId
) -> Response[str]:
    tenant = reader(caller, tenantId)
    return Response(200, "application/json", stored_snapshot(store, tenant, cluster, name).decode())


def latest_facts(store: GraphStore, tenant: str, cluster: str) -> ClusterFacts:
    """The facts of the cluster's newest snapshot (none: nothing known)."""
    for record in store.snapshots(tenant, cluster):
        found = store.snapshot(tenant, cluster, record.name)
        if found is not None:
            return snapshotwire.decode_snapshot(found[1]).facts
    return ClusterFacts()


def live_map(store: GraphStore, tenant: str, cluster: str, since: float | None = None) -> Snapshot:
    """The cluster's graph as it is (liveness applied), with its newest snapshot's facts, taken now."""
    edges = tuple(s.edge for s in store.edges(tenant, cluster_ids=[cluster], since=since))
    return Snapshot(NOW, time.time(), edges, latest_facts(store, tenant, cluster))


def named_snapshot(store: GraphStore, tenant: str, cluster: str, name: str) -> Snapshot:
    try:
        return snapshotwire.decode_snapshot(stored_snapshot(store, tenant, cluster, name))
    except WireError:  # kept by this cloud after its own check: it reads unless damaged
        raise ApiError(409, "conflict", f"snapshot {name!r} no longer reads") from None


@router.get(
    "/v1/tenants/<tenantId>/diff",
    security=SECURITY,
    tags=["snapshots"],
    summary="What changed between two snapshots, or since one",
    responses={200: {"description": "agent.mapdiff's JSON", "content": {"application/json": {"schema": {}}}}},
)
def diff_snapshots(  # noqa: PLR0917 - the route's parameters are the query's
    tenantId: TenantId,
    store: Store,
    caller: Caller,
    cluster: ClusterId,
    from_: Annotated[str, Query(alias="from", max_length=63, description="The older snapshot's name.")],
    to: Annotated[str, Query(max_length=63, description=f"The newer snapshot's name, or `{NOW}`.")] = NOW,
    namespace: Annotated[
        str | None, Query(max_length=8000, description="Namespaces, comma-separated: only their edges.")
    ] = None,
) -> Response[str]:
    tenant = reader(caller, tenantId)
    a = named_snapshot(store, tenant, cluster, from_)
    b = live_map(store, tenant, cluster) if to == NOW else named_snapshot(store, tenant, cluster, to)
    return json_response(mapdiff.diff_json(mapdiff.diff(a, b, namespace_list(namespace))))
