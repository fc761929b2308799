"""The AWS cloud store: one DynamoDB table (single-table design), through an injected boto3 client.

Items and keys: :mod:`cloud_functions.store.dynamoitems` (the key schema, and the pure helpers
that build and read items; the table is made by its :func:`create_table`).

Every tenant-scoped key starts with the tenant id, so a tenant's requests cannot reach another's
items; the one unscoped item, ``TOKEN#<hash>``, is how a request finds its tenant. Each cluster's
graph is its own partition (writes of many clusters spread out); edges are read with a Query on
``PK = GRAPH#<tenant>#<cluster>`` and ``begins_with(SK, "EDGE#")``, following
``LastEvaluatedKey`` (pages are at most 1 MB), filters applied server-side on the edge items'
filter attributes.

Writes: tenants, clusters, tokens and batch markers are created with ``attribute_not_exists``
conditions (a token's two items and a cluster with its tenant check go in one transaction).
An ingest is the ingest service's (:mod:`cloud_functions.store.ingestion`), over this store's
port (:meth:`DynamoGraphStore.open_batch`): it reads the cluster and the batch marker in one
batch read (a seen batch writes nothing), then the stored edges (consistent batch reads), merges
with :func:`agent.model.merge_edges` and puts only the edges that change, by ``workers`` threads,
each conditioned on the version it read (``v``); a lost race re-reads and re-merges that edge.
The batch marker is written *last*, conditionally: if the process dies
mid-batch the retried batch is not yet marked, so it is applied again, which is harmless because
the merge is idempotent; only then is it marked. Two concurrent deliveries of one batch may both
merge (harmlessly); the one that loses the marker race reports ``stored=False``. A heartbeat
(``seen_at``) is one conditional update of the cluster item (``heartbeat < :h``), so it only rises.
A telemetry payload (up to 1 MB; an item holds 400 KB) is split into items of ``_PART_BYTES``
written in one transaction. Batch markers and telemetry expire by TTL after ``RETENTION_SECONDS``
(a batch retried later than that is merged again, harmlessly). So ``now`` must be the real
clock: DynamoDB (Local too) deletes items whose ``expires_at`` has passed.

Versions: the ``SCHEMA``/``VERSION`` item records the version of the table's items (no item:
version 1, the items before versions were recorded). Opening the store migrates eagerly, before
it serves anything: each step of :data:`MIGRATIONS` newer than the recorded version runs, and its
version is recorded after it, so a migration cut short resumes at its first unrecorded step; a
newer table is refused. Several Lambda containers may open an old table at once, so every step
must be idempotent and safe to run concurrently (conditional writes of the new form). A step that
must find items it has no key for (the tokens of every tenant) scans the table, once.
To add one: a method taking the table from the previous version, appended to :data:`MIGRATIONS`;
:data:`SCHEMA_VERSION` is the last step's version.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import msgspec
from botocore.exceptions import BotoCoreError, ClientError

from agent import wire
from agent.wire import canonical
from cloud_functions.store.base import (
    Cluster,
    Conflict,
    NotFound,
    StoredEdge,
    StoreError,
    Tenant,
    TokenRecord,
    check_id,
    check_telemetry,
)
from cloud_functions.store.dynamoitems import (
    EDGE_PREFIX,
    VERSION_KEY,
    Item,
    _bool,
    _exists,
    _float,
    _graph,
    _key,
    _n,
    _s,
    _strings,
    _suffix,
    _telemetry_items,
    _tenant,
    _text,
    _token,
    _token_items,
    create_table,
    edge_filter,
    edge_item,
    edge_sk,
    item_version,
    version_item,
)
from cloud_functions.store.ingestion import (
    MERGE_ATTEMPTS,
    EdgeWrite,
    StoredText,
    coalesce,
    ingest_batch,
    merge_stored,
)
from cloud_functions.store.storedform import edge_key, read_back

__all__ = ["MIGRATIONS", "RETENTION_SECONDS", "SCHEMA_VERSION", "DynamoGraphStore", "create_table"]

RETENTION_SECONDS = 30 * 86400
_RETRY_DEADLINE = 30.0
_NEW = "attribute_not_exists(PK)"


class _ConditionFailed(StoreError):
    """A condition of a write failed; ``reasons`` are a cancelled transaction's per-item codes."""

    def __init__(self, message: str, reasons: list[str]) -> None:
        super().__init__(message)
        self.reasons = reasons


class DynamoGraphStore:
    """:class:`~cloud_functions.store.base.GraphStore` in one DynamoDB table; its ingest is the
    service's (:mod:`cloud_functions.store.ingestion`), over :meth:`open_batch`.

    ``workers`` threads write an ingest's changed edges; ``page_size`` limits query pages (tests).
    Opening it migrates an older table (see the module's docstring).
    """

    def __init__(
        self, client: Any, table_name: str, *, workers: int = 8, page_size: int | None = None
    ) -> None:
        self._client, self.table = client, table_name
        self._workers, self._page_size = workers, page_size
        self._writes = 0
        self._count_lock = threading.Lock()
        self._migrate()

    # ------------------------------------------------------------------ low-level

    def _call(self, operation: str, writes: int = 0, **request: Any) -> dict[str, Any]:
        """One API call; failed conditions raise :class:`_ConditionFailed`, the rest StoreError."""
        if operation != "transact_write_items":
            request["TableName"] = self.table
        try:
            answer: dict[str, Any] = getattr(self._client, operation)(**request)
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            reasons = [str(r.get("Code", "")) for r in error.response.get("CancellationReasons", [])]
            if code == "ConditionalCheckFailedException" or "ConditionalCheckFailed" in reasons:
                raise _ConditionFailed(f"dynamodb {self.table}: {error}", reasons) from error
            raise StoreError(f"dynamodb {self.table}: {code}: {error}") from error
        except BotoCoreError as error:
            raise StoreError(f"dynamodb {self.table}: {error}") from error
        with self._count_lock:
            self._writes += writes
        return answer

    def _get(self, pk: str, sk: str) -> Item | None:
        item: Item | None = self._call("get_item", Key=_key(pk, sk), ConsistentRead=True).get("Item")
        return item

    def _create(self, item: Item, conflict: str) -> None:
        try:
            self._call("put_item", 1, Item=item, ConditionExpression=_NEW)
        except _ConditionFailed as error:
            raise Conflict(conflict) from error

    def _transact(self, items: list[Item], failures: Sequence[StoreError | None]) -> None:
        """Run a transaction; a condition failing on item ``i`` raises ``failures[i]``."""
        for item in items:
            next(iter(item.values()))["TableName"] = self.table
        try:
            writes = sum(1 for item in items if "ConditionCheck" not in item)
            self._call("transact_write_items", writes, TransactItems=items)
        except _ConditionFailed as error:
            for reason, failure in zip(error.reasons, failures, strict=False):
                if reason == "ConditionalCheckFailed" and failure is not None:
                    raise failure from error
            raise

    def _query(self, pk: str, prefix: str, **extra: Any) -> Iterator[Item]:
        """Every item of a partition whose sort key starts with ``prefix``, page after page."""
        values = {":pk": _s(pk)} | ({":prefix": _s(prefix)} if prefix else {})
        values |= extra.pop("ExpressionAttributeValues", {})
        request: dict[str, Any] = {
            "KeyConditionExpression": "PK = :pk" + (" AND begins_with(SK, :prefix)" if prefix else ""),
            "ExpressionAttributeValues": values,
            "ConsistentRead": True,
            **extra,
        }
        if self._page_size and "Limit" not in request:
            request["Limit"] = self._page_size
        while True:
            page = self._call("query", **request)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _batch_get(self, keys: list[Item]) -> dict[str, Item]:
        """Items by SK (keys of one partition), 100 keys a request, unprocessed keys retried."""
        found: dict[str, Item] = {}
        deadline, pause = time.monotonic() + _RETRY_DEADLINE, 0.05
        for start in range(0, len(keys), 100):
            pending: Item = {self.table: {"Keys": keys[start : start + 100], "ConsistentRead": True}}
            while pending:
                try:
                    answer = self._client.batch_get_item(RequestItems=pending)
                except (ClientError, BotoCoreError) as error:
                    raise StoreError(f"dynamodb {self.table}: {error}") from error
                for item in answer.get("Responses", {}).get(self.table, []):
                    found[item["SK"]["S"]] = item
                pending = answer.get("UnprocessedKeys") or {}
                if pending and time.monotonic() > deadline:
                    raise StoreError(f"dynamodb {self.table}: reads still throttled after {_RETRY_DEADLINE}s")
                if pending:
                    time.sleep(pause)
                    pause = min(pause * 2, 1.0)
        return found

    # ------------------------------------------------------------------ schema version

    def _migrate(self) -> None:
        """Run each step of ``MIGRATIONS`` newer than the table's version, recording each after it."""
        version = item_version(self._call("get_item", Key=VERSION_KEY, ConsistentRead=True).get("Item"))
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"dynamodb {self.table} has schema version {version}, newer than {SCHEMA_VERSION}"
            )
        for step in MIGRATIONS:
            if step.version > version:
                step.run(self)
                self._record_version(step.version)

    def _record_version(self, version: int) -> None:
        rises = "attribute_not_exists(PK) OR version < :v"
        with contextlib.suppress(_ConditionFailed):  # another container recorded it already
            self._call(
                "put_item",
                Item=version_item(version),
                ConditionExpression=rises,
                ExpressionAttributeValues={":v": {"N": str(version)}},
            )

    def _scan(self, **request: Any) -> Iterator[Item]:
        """Every item of the table (that ``request``'s filter keeps), page after page."""
        request["ConsistentRead"] = True
        if self._page_size:
            request["Limit"] = self._page_size
        while True:
            page = self._call("scan", **request)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _owner_tokens(self) -> None:
        """Version 2: tenant tokens were all ``read`` and administered their tenant; they become
        ``owner`` (both items of each token: ``TOKEN#<hash>`` and ``TOKENID#<id>``)."""
        names, read = {"#role": "role"}, {":read": _s("read")}
        found = self._scan(
            ProjectionExpression="PK, SK",
            FilterExpression="#role = :read",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=read,
        )
        for item in found:
            # The condition keeps a token revoked meanwhile revoked (no half item is created), and
            # makes a second container's pass over the same token a no-op.
            with contextlib.suppress(_ConditionFailed):
                self._call(
                    "update_item",
                    Key=_key(item["PK"]["S"], item["SK"]["S"]),
                    UpdateExpression="SET #role = :owner",
                    ConditionExpression="#role = :read",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=read | {":owner": _s("owner")},
                )

    # ------------------------------------------------------------------ tenants and clusters

    def create_tenant(self, tenant_id: str, name: str, now: float) -> Tenant:
        check_id(tenant_id, "tenant id")
        item = _key(_tenant(tenant_id), "META") | _strings(name=name) | {"created_at": _n(now)}
        self._create(item, f"tenant {tenant_id!r} exists")
        return Tenant(tenant_id, name, now)

    def get_tenant(self, tenant_id: str) -> Tenant | None:
        item = self._get(_tenant(tenant_id), "META")
        return None if item is None else Tenant(tenant_id, _text(item, "name"), _float(item, "created_at"))

    def add_cluster(self, tenant_id: str, cluster_id: str, name: str, now: float) -> Cluster:
        check_id(cluster_id, "cluster id")
        item = (
            _key(_tenant(tenant_id), f"CLUSTER#{cluster_id}") | _strings(name=name) | {"created_at": _n(now)}
        )
        self._transact(
            [_exists(_tenant(tenant_id), "META"), {"Put": {"Item": item, "ConditionExpression": _NEW}}],
            [NotFound(f"no tenant {tenant_id!r}"), Conflict(f"cluster {cluster_id!r} exists")],
        )
        return Cluster(tenant_id, cluster_id, name, now)

    def clusters(self, tenant_id: str) -> list[Cluster]:
        return [
            Cluster(
                tenant_id,
                _suffix(item),
                _text(item, "name"),
                _float(item, "created_at"),
                heartbeat=_float(item, "heartbeat") if "heartbeat" in item else None,
            )
            for item in self._query(_tenant(tenant_id), "CLUSTER#")
        ]

    # ------------------------------------------------------------------ tokens

    def put_token(self, record: TokenRecord) -> None:
        check_id(record.token_id, "token id")
        check_id(record.token_hash, "token hash")
        t = record.tenant_id
        by_hash, by_id = _token_items(record)
        items = [_exists(_tenant(t), "META")]
        items += [{"Put": {"Item": item, "ConditionExpression": _NEW}} for item in (by_hash, by_id)]
        failures: list[StoreError | None] = [NotFound(f"no tenant {t!r}"), Conflict("token hash exists")]
        failures.append(Conflict(f"token {record.token_id!r} exists"))
        if record.cluster_id:
            items.append(_exists(_tenant(t), f"CLUSTER#{record.cluster_id}"))
            failures.append(NotFound(f"no cluster {record.cluster_id!r} in tenant {t!r}"))
        self._transact(items, failures)

    def get_token(self, token_hash: str) -> TokenRecord | None:
        item = self._get(f"TOKEN#{token_hash}", "TOKEN")
        return (
            None if item is None else _token(token_hash, _text(item, "tenant"), _text(item, "token_id"), item)
        )

    def delete_token(self, tenant_id: str, token_id: str) -> None:
        missing = NotFound(f"no token {token_id!r} in tenant {tenant_id!r}")
        item = self._get(_tenant(tenant_id), f"TOKENID#{token_id}")
        if item is None:
            raise missing
        keys = [
            _key(_tenant(tenant_id), f"TOKENID#{token_id}"),
            _key(f"TOKEN#{_text(item, 'token_hash')}", "TOKEN"),
        ]
        deletes = [{"Delete": {"Key": key, "ConditionExpression": "attribute_exists(PK)"}} for key in keys]
        self._transact(deletes, [missing, missing])

    def tokens(self, tenant_id: str) -> list[TokenRecord]:
        return [
            _token(_text(item, "token_hash"), tenant_id, _suffix(item), item)
            for item in self._query(_tenant(tenant_id), "TOKENID#")
        ]

    # ------------------------------------------------------------------ edges

    ingest = ingest_batch  # the one ingest service, over open_batch

    @contextlib.contextmanager
    def open_batch(self, tenant_id: str, cluster_id: str, batch_id: str) -> Iterator[_EdgeBatch]:
        """The cluster's edges for one ingest (the ingest service's port), after one read of the
        cluster item and the batch marker; every write goes to the table at once."""
        graph, cluster = _graph(tenant_id, cluster_id), _key(_tenant(tenant_id), f"CLUSTER#{cluster_id}")
        marker = _key(graph, f"BATCH#{batch_id}")
        found = self._batch_get([cluster, marker])
        if cluster["SK"]["S"] not in found:
            raise NotFound(f"no cluster {cluster_id!r} in tenant {tenant_id!r}")
        yield _EdgeBatch(self, graph, cluster, marker, seen_before=marker["SK"]["S"] in found)

    def has_batch(self, tenant_id: str, cluster_id: str, batch_id: str) -> bool:
        return self._get(_graph(tenant_id, cluster_id), f"BATCH#{batch_id}") is not None

    def _raise_heartbeat(self, key: Item, seen_at: float) -> None:
        """Set the cluster item's heartbeat to ``seen_at`` unless it is that late already."""
        rises = "attribute_exists(PK) AND (attribute_not_exists(heartbeat) OR heartbeat < :h)"
        with contextlib.suppress(_ConditionFailed):  # as late already (or deleted): nothing written
            self._call(
                "update_item",
                1,
                Key=key,
                UpdateExpression="SET heartbeat = :h",
                ConditionExpression=rises,
                ExpressionAttributeValues={":h": _n(seen_at)},
            )

    def _put_edge(self, graph: str, write: EdgeWrite, counted: int) -> bool:
        """Put one edge item, conditional on the version it replaces (none: a new item); False
        when that version is gone (another writer won a race)."""
        condition: dict[str, Any] = {"ConditionExpression": _NEW}
        if write.version is not None:
            version = {":v": {"N": str(write.version)}}
            condition = {"ConditionExpression": "v = :v", "ExpressionAttributeValues": version}
        item = edge_item(graph, write.record, (write.version or 0) + 1)
        try:
            self._call("put_item", counted, Item=item, **condition)
        except _ConditionFailed:
            return False
        return True

    def edges(
        self,
        tenant_id: str,
        *,
        cluster_ids: Iterable[str] | None = None,
        namespace: str | None = None,
        workload: str | None = None,
        method: str | None = None,
        since: float | None = None,
    ) -> list[StoredEdge]:
        known = {c.id: c.heartbeat for c in self.clusters(tenant_id)}
        ids = list(known) if cluster_ids is None else list(dict.fromkeys(cluster_ids))
        if method == "":
            return []
        names, values, where = edge_filter(namespace, workload, method)
        found = []
        for cluster in ids:
            check_id(cluster, "cluster id")
            heartbeat = known.get(cluster)
            conditions, cluster_values = list(where), dict(values)
            if since is not None:
                names["#ls"], cluster_values[":since"] = "last_seen", _n(since)
                if heartbeat is not None and heartbeat >= since:  # live edges count as seen then
                    conditions.append("(#ls >= :since OR #live = :live)")
                    cluster_values[":live"] = {"BOOL": True}
                else:
                    conditions.append("#ls >= :since")
            extra: dict[str, Any] = {"ProjectionExpression": "#e, #live", "ExpressionAttributeNames": names}
            if conditions:
                extra |= {
                    "FilterExpression": " AND ".join(conditions),
                    "ExpressionAttributeValues": cluster_values,
                }
            for item in self._query(_graph(tenant_id, cluster), EDGE_PREFIX, **extra):
                found.append((cluster, _text(item, "edge").encode(), heartbeat))
        return read_back(found)

    def _rekey_edges(self) -> None:
        """Version 3: edge items written before the edge codec (their text the old JSON export
        form, without ``live``; their key a SHA-256 of another JSON) are merged into items under
        their codec key, with the codec's text, and deleted. Idempotent and safe to run
        concurrently: the merge is (conditional puts), and an old item that changed meanwhile is
        merged again before it goes."""
        graphs: dict[str, list[Item]] = {}
        edges = {"ExpressionAttributeValues": {":edge": _s(EDGE_PREFIX)}}
        for item in self._scan(FilterExpression="begins_with(SK, :edge)", **edges):
            graphs.setdefault(item["PK"]["S"], []).append(item)
        for graph, items in graphs.items():
            pending = items
            for _ in range(MERGE_ATTEMPTS):
                docs = wire.decode_docs([_text(item, "edge").encode() for item in pending])
                docs = [
                    canonical(msgspec.structs.replace(doc, live=_bool(item, "live")))
                    for item, doc in zip(pending, docs, strict=True)
                ]
                old = [
                    (i, d) for i, d in zip(pending, docs, strict=True) if i["SK"]["S"] != edge_sk(edge_key(d))
                ]
                merge_stored(_EdgeItems(self, graph, counted=0), coalesce([doc for _, doc in old]))
                pending = [again for item, _ in old if (again := self._delete_edge(item)) is not None]
                if not pending:
                    break
            else:
                raise StoreError(f"dynamodb {self.table}: edges of {graph} kept changing while re-keyed")

    def _delete_edge(self, item: Item) -> Item | None:
        """Delete an edge item of the version read; the item as it is now if it changed meanwhile."""
        try:
            self._call(
                "delete_item",
                Key=_key(item["PK"]["S"], item["SK"]["S"]),
                ConditionExpression="attribute_not_exists(PK) OR v = :v",
                ExpressionAttributeValues={":v": item["v"]},
            )
        except _ConditionFailed:
            return self._get(item["PK"]["S"], item["SK"]["S"])
        return None

    def write_count(self) -> int:
        with self._count_lock:
            return self._writes

    # ------------------------------------------------------------------ telemetry

    def record_telemetry(self, cluster_hash: str, body: bytes, content_type: str, now: float) -> None:
        check_telemetry(body)
        record = f"{now:020.6f}#{uuid.uuid4().hex}"
        items = _telemetry_items(
            record, cluster_hash, body, content_type, now, expires_at=int(now) + RETENTION_SECONDS
        )
        if len(items) == 1:
            self._call("put_item", 1, Item=items[0])
        else:
            self._transact([{"Put": {"Item": item}} for item in items], [])

    def telemetry(self, limit: int = 100) -> list[tuple[str, float, bytes]]:
        """Newest first; the parts of a record arrive together (last part first) and are joined."""
        records: list[tuple[str, float, bytes]] = []
        parts: list[Item] = []
        for item in self._query("TELEMETRY", "", ScanIndexForward=False):
            if len(records) >= limit:
                break
            parts.append(item)
            if item["SK"]["S"].endswith("#00"):
                if len(parts) == int(item["parts"]["N"]):
                    body = b"".join(bytes(p.get("body", {}).get("B", b"")) for p in reversed(parts))
                    records.append((_text(item, "cluster_hash"), _float(item, "received_at"), body))
                parts = []
        return records


class _EdgeItems:
    """:class:`~cloud_functions.store.ingestion.StoredEdges` of one graph partition: batch reads,
    and version-checked puts by ``workers`` threads (each write counted as ``counted``)."""

    def __init__(self, store: DynamoGraphStore, graph: str, *, counted: int = 1) -> None:
        self._store, self._graph, self._counted = store, graph, counted

    def stored(self, keys: Collection[bytes]) -> dict[bytes, StoredText]:
        items = self._store._batch_get([_key(self._graph, edge_sk(key)) for key in keys])
        return {
            key: StoredText(_text(item, "edge").encode(), int(item["v"]["N"]))
            for key in keys
            if (item := items.get(edge_sk(key))) is not None
        }

    def put(self, writes: Sequence[EdgeWrite]) -> set[bytes]:
        store = self._store

        def put(write: EdgeWrite) -> bool:
            return store._put_edge(self._graph, write, self._counted)

        if len(writes) > 1 and store._workers > 1:
            with ThreadPoolExecutor(max_workers=store._workers) as pool:
                done = list(pool.map(put, writes))
        else:
            done = [put(write) for write in writes]
        return {write.record.key for write, ok in zip(writes, done, strict=True) if not ok}


class _EdgeBatch(_EdgeItems):
    """:class:`~cloud_functions.store.ingestion.EdgeBatch` of one ingest (opened by
    :meth:`DynamoGraphStore.open_batch`)."""

    def __init__(
        self, store: DynamoGraphStore, graph: str, cluster: Item, marker: Item, *, seen_before: bool
    ) -> None:
        super().__init__(store, graph)
        self._cluster, self._marker, self.seen_before = cluster, marker, seen_before

    def raise_heartbeat(self, seen_at: float) -> None:
        self._store._raise_heartbeat(self._cluster, seen_at)

    def mark(self, now: float) -> bool:
        expires = {"N": str(int(now) + RETENTION_SECONDS)}
        try:
            self._store._create(self._marker | {"received_at": _n(now), "expires_at": expires}, "")
        except Conflict:  # delivered concurrently: the other delivery marked it
            return False
        return True


# --------------------------------------------------------------------------- versions


@dataclass(frozen=True, slots=True)
class Step:
    """One migration: ``run`` takes the table from version ``version - 1`` to ``version``."""

    version: int
    run: Callable[[DynamoGraphStore], None]
    what: str


MIGRATIONS: tuple[Step, ...] = (
    Step(2, DynamoGraphStore._owner_tokens, "read tokens become owner tokens"),
    Step(3, DynamoGraphStore._rekey_edges, "edges: the edge codec's canonical text (with live) and key"),
)
SCHEMA_VERSION = MIGRATIONS[-1].version
"""The version this code reads and writes: the last migration's."""
