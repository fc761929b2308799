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
An ingest first reads the cluster and the batch marker (a seen batch writes nothing), then reads
the stored edges (consistent reads), merges with :func:`agent.model.merge_edges` and writes only
the edges that change, each conditioned on the version it read (``v``); a lost race re-reads and
re-merges that edge. The batch marker is written *last*, conditionally: if the process dies
mid-batch the retried batch is not yet marked, so it is applied again, which is harmless because
the merge is idempotent; only then is it marked. Two concurrent deliveries of one batch may both
merge (harmlessly); the one that loses the marker race reports ``stored=False``. A heartbeat
(``seen_at``) is one conditional update of the cluster item (``heartbeat < :h``), so it only rises.
A telemetry payload (up to 1 MB; an item holds 400 KB) is split into items of ``_PART_BYTES``
written in one transaction. Batch markers and telemetry expire by TTL after ``RETENTION_SECONDS``
(a batch retried later than that is merged again, harmlessly). So ``now`` must be the real
clock: DynamoDB (Local too) deletes items whose ``expires_at`` has passed.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from agent.model import Edge
from cloud_functions.store.base import (
    Cluster,
    Conflict,
    IngestResult,
    NotFound,
    StoredEdge,
    StoreError,
    Tenant,
    TokenRecord,
    check_id,
    check_telemetry,
)
from cloud_functions.store.dynamoitems import (
    Item,
    _bool,
    _edge_filter,
    _edge_item,
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
)
from cloud_functions.store.encoding import (
    EncodedEdge,
    coalesce_encodings,
    decode_edge,
    effective,
    encode,
    merged_encoded,
    sort_stored,
)

__all__ = ["RETENTION_SECONDS", "DynamoGraphStore", "create_table"]

RETENTION_SECONDS = 30 * 86400
_MERGE_ATTEMPTS = 10
_RETRY_DEADLINE = 30.0
_NEW = "attribute_not_exists(PK)"


class _ConditionFailed(StoreError):
    """A condition of a write failed; ``reasons`` are a cancelled transaction's per-item codes."""

    def __init__(self, message: str, reasons: list[str]) -> None:
        super().__init__(message)
        self.reasons = reasons


class DynamoGraphStore:
    """:class:`~cloud_functions.store.base.GraphStore` in one DynamoDB table.

    ``workers`` threads write an ingest's changed edges; ``page_size`` limits query pages (tests).
    """

    def __init__(
        self, client: Any, table_name: str, *, workers: int = 8, page_size: int | None = None
    ) -> None:
        self._client, self.table = client, table_name
        self._workers, self._page_size = workers, page_size
        self._writes = 0
        self._count_lock = threading.Lock()

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

    def ingest(
        self, tenant_id: str, cluster_id: str, batch_id: str, edges: Sequence[Edge], now: float
    ) -> IngestResult:
        return self.ingest_encoded(tenant_id, cluster_id, batch_id, [encode(e) for e in edges], now)

    def ingest_encoded(
        self,
        tenant_id: str,
        cluster_id: str,
        batch_id: str,
        edges: Sequence[EncodedEdge],
        now: float,
        *,
        seen_at: float | None = None,
    ) -> IngestResult:
        check_id(batch_id, "batch id")
        graph, marker, cluster = _graph(tenant_id, cluster_id), f"BATCH#{batch_id}", f"CLUSTER#{cluster_id}"
        incoming = coalesce_encodings(edges)
        found = self._batch_get([_key(_tenant(tenant_id), cluster), _key(graph, marker)])
        if cluster not in found:
            raise NotFound(f"no cluster {cluster_id!r} in tenant {tenant_id!r}")
        heartbeat_only = not incoming and seen_at is not None
        if marker in found and not heartbeat_only:
            return IngestResult(stored=False, edges_written=0)
        if seen_at is not None:
            self._raise_heartbeat(_key(_tenant(tenant_id), cluster), seen_at)
        if heartbeat_only:
            return IngestResult(stored=True, edges_written=0)
        stored = self._batch_get([_key(graph, f"EDGE#{key}") for key in incoming])
        jobs = [(key, edge, stored.get(f"EDGE#{key}")) for key, edge in incoming.items()]
        if len(jobs) > 1 and self._workers > 1:
            with ThreadPoolExecutor(max_workers=self._workers) as pool:
                written = sum(pool.map(lambda job: self._merge_edge(graph, *job), jobs))
        else:
            written = sum(self._merge_edge(graph, *job) for job in jobs)
        expires = {"N": str(int(now) + RETENTION_SECONDS)}
        try:
            self._create(_key(graph, marker) | {"received_at": _n(now), "expires_at": expires}, "")
        except Conflict:  # delivered concurrently: the other delivery marked it
            return IngestResult(stored=False, edges_written=written)
        return IngestResult(stored=True, edges_written=written)

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

    def _merge_edge(self, graph: str, key: str, edge: EncodedEdge, stored: Item | None) -> int:
        """Merge one edge into its stored item (version-checked); 1 if it was written, else 0."""
        sk = f"EDGE#{key}"
        for _ in range(_MERGE_ATTEMPTS):
            merged = merged_encoded(
                _text(stored, "edge") if stored else None, edge, _bool(stored, "live") if stored else False
            )
            if merged is None:
                return 0
            version = int(stored["v"]["N"]) if stored else 0
            item = _edge_item(graph, sk, merged, version + 1)
            condition: dict[str, Any] = {"ConditionExpression": _NEW}
            if stored:
                condition = {
                    "ConditionExpression": "v = :v",
                    "ExpressionAttributeValues": {":v": stored["v"]},
                }
            try:
                self._call("put_item", 1, Item=item, **condition)
            except _ConditionFailed:
                stored = self._get(graph, sk)  # lost a race with another writer: merge again
                continue
            return 1
        raise StoreError(f"dynamodb {self.table}: edge {key} kept changing under {_MERGE_ATTEMPTS} merges")

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
        names, values, where = _edge_filter(namespace, workload, method)
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
            for item in self._query(_graph(tenant_id, cluster), "EDGE#", **extra):
                edge = effective(decode_edge(_text(item, "edge")), _bool(item, "live"), heartbeat)
                found.append(StoredEdge(cluster, edge))
        return sort_stored(found)

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
