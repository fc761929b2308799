"""The AWS cloud store: :class:`~cloud_functions.store.base.GraphStore` in one DynamoDB table
(single-table design; items: :mod:`cloud_functions.store.dynamoitems`, access:
:mod:`cloud_functions.store.dynamotable`, schema versions: :mod:`cloud_functions.store.dynamomigrations`).

Every tenant-scoped key starts with the tenant id, so a tenant's requests cannot reach another's
items. Each cluster's graph is its own partition (writes of many clusters spread out), read with
a Query on ``begins_with(SK, "EDGE#")``, filtered server-side on the edge items' filter attributes;
read a page at a time (:mod:`cloud_functions.store.dynamopages`) in that order or by workload.

Tenants, clusters, tokens and batch markers are created with ``attribute_not_exists`` conditions
(a token's two items and a cluster with its tenant check go in one transaction). An ingest is the
ingest service's (:mod:`cloud_functions.store.ingestion`) over :meth:`DynamoGraphStore.open_batch`,
whose edge puts are conditional on the version read. Batch markers and telemetry expire by TTL
after :data:`RETENTION_SECONDS`, so ``now`` must be the real clock: DynamoDB (Local too) deletes
items whose ``expires_at`` has passed.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any, Unpack

from cloud_functions.store.base import (
    Cluster,
    Conflict,
    EdgeFilters,
    EdgePage,
    NotFound,
    PageOrder,
    PagePosition,
    StoredEdge,
    StoreError,
    Tenant,
    TokenRecord,
    check_filters,
    check_id,
    check_telemetry,
    selected_edges,
)
from cloud_functions.store.coverage import DynamoCoverage
from cloud_functions.store.dynamoitems import (
    EDGE_PREFIX,
    Item,
    edge_query,
    exists,
    float_of,
    graph_pk,
    item_key,
    matches_nothing,
    number,
    sk_id,
    strings,
    telemetry_items,
    tenant_pk,
    text_of,
    token_items,
    token_record,
)
from cloud_functions.store.dynamomigrations import migrate
from cloud_functions.store.dynamopages import edges_page
from cloud_functions.store.dynamotable import NEW, ConditionFailed, DynamoTable, EdgeItems
from cloud_functions.store.ingestion import ingest_batch
from cloud_functions.store.snapshots import SnapshotRecord, check_name
from cloud_functions.store.snapshotsdynamo import DynamoSnapshots
from cloud_functions.store.storedform import read_back

RETENTION_SECONDS = 30 * 86400


class DynamoGraphStore:
    """The store in table ``table_name``; ``workers`` threads write an ingest's changed edges,
    ``page_size`` limits query pages (tests). Opening it migrates an older table."""

    def __init__(
        self, client: Any, table_name: str, *, workers: int = 8, page_size: int | None = None
    ) -> None:
        self._table = DynamoTable(client, table_name, workers=workers, page_size=page_size)
        self._snapshots = DynamoSnapshots(self._table)
        self._coverage = DynamoCoverage(self._table)
        migrate(self._table)

    # ------------------------------------------------------------------ tenants and clusters

    def create_tenant(self, tenant_id: str, name: str, now: float) -> Tenant:
        check_id(tenant_id, "tenant id")
        item = item_key(tenant_pk(tenant_id), "META") | strings(name=name) | {"created_at": number(now)}
        self._table.create(item, f"tenant {tenant_id!r} exists")
        return Tenant(tenant_id, name, now)

    def get_tenant(self, tenant_id: str) -> Tenant | None:
        item = self._table.get(tenant_pk(tenant_id), "META")
        if item is None:
            return None
        return Tenant(tenant_id, text_of(item, "name"), float_of(item, "created_at"))

    def add_cluster(self, tenant_id: str, cluster_id: str, name: str, now: float) -> Cluster:
        check_id(cluster_id, "cluster id")
        tenant = tenant_pk(tenant_id)
        item = item_key(tenant, f"CLUSTER#{cluster_id}") | strings(name=name) | {"created_at": number(now)}
        self._table.transact(
            [exists(tenant, "META"), {"Put": {"Item": item, "ConditionExpression": NEW}}],
            [NotFound(f"no tenant {tenant_id!r}"), Conflict(f"cluster {cluster_id!r} exists")],
        )
        return Cluster(tenant_id, cluster_id, name, now)

    def clusters(self, tenant_id: str) -> list[Cluster]:
        return [
            Cluster(
                tenant_id,
                sk_id(item),
                text_of(item, "name"),
                float_of(item, "created_at"),
                heartbeat=float_of(item, "heartbeat") if "heartbeat" in item else None,
            )
            for item in self._table.query(tenant_pk(tenant_id), "CLUSTER#")
        ]

    # ------------------------------------------------------------------ tokens

    def put_token(self, record: TokenRecord) -> None:
        check_id(record.token_id, "token id")
        check_id(record.token_hash, "token hash")
        tenant = tenant_pk(record.tenant_id)
        items = [exists(tenant, "META")]
        items += [{"Put": {"Item": item, "ConditionExpression": NEW}} for item in token_items(record)]
        failures: list[StoreError | None] = [NotFound(f"no tenant {record.tenant_id!r}")]
        failures += [Conflict("token hash exists"), Conflict(f"token {record.token_id!r} exists")]
        if record.cluster_id:
            items.append(exists(tenant, f"CLUSTER#{record.cluster_id}"))
            failures.append(NotFound(f"no cluster {record.cluster_id!r} in tenant {record.tenant_id!r}"))
        self._table.transact(items, failures)

    def get_token(self, token_hash: str) -> TokenRecord | None:
        item = self._table.get(f"TOKEN#{token_hash}", "TOKEN")
        if item is None:
            return None
        return token_record(token_hash, text_of(item, "tenant"), text_of(item, "token_id"), item)

    def delete_token(self, tenant_id: str, token_id: str) -> None:
        missing = NotFound(f"no token {token_id!r} in tenant {tenant_id!r}")
        item = self._table.get(tenant_pk(tenant_id), f"TOKENID#{token_id}")
        if item is None:
            raise missing
        keys = [item_key(item["PK"]["S"], item["SK"]["S"])]
        keys.append(item_key(f"TOKEN#{text_of(item, 'token_hash')}", "TOKEN"))
        deletes = [{"Delete": {"Key": key, "ConditionExpression": "attribute_exists(PK)"}} for key in keys]
        self._table.transact(deletes, [missing, missing])

    def tokens(self, tenant_id: str) -> list[TokenRecord]:
        return [
            token_record(text_of(item, "token_hash"), tenant_id, sk_id(item), item)
            for item in self._table.query(tenant_pk(tenant_id), "TOKENID#")
        ]

    # ------------------------------------------------------------------ edges

    ingest = ingest_batch  # the one ingest service, over open_batch

    @contextlib.contextmanager
    def open_batch(self, tenant_id: str, cluster_id: str, batch_id: str) -> Iterator[EdgeBatch]:
        """The cluster's edges for one ingest, after one read of the cluster item and the batch
        marker; every write goes to the table at once."""
        graph = graph_pk(tenant_id, cluster_id)
        cluster = item_key(tenant_pk(tenant_id), f"CLUSTER#{cluster_id}")
        marker = item_key(graph, f"BATCH#{batch_id}")
        found = self._table.batch_get([cluster, marker])
        if cluster["SK"]["S"] not in found:
            raise NotFound(f"no cluster {cluster_id!r} in tenant {tenant_id!r}")
        kept = found.get(marker["SK"]["S"])
        digest = "" if kept is None else text_of(kept, "digest")  # none on markers from before digests
        yield EdgeBatch(self._table, graph, cluster, marker, seen_before=kept is not None, seen_digest=digest)

    def has_batch(self, tenant_id: str, cluster_id: str, batch_id: str) -> bool:
        return self._table.get(graph_pk(tenant_id, cluster_id), f"BATCH#{batch_id}") is not None

    def edges(self, tenant_id: str, **filters: Unpack[EdgeFilters]) -> list[StoredEdge]:
        known = {c.id: c.heartbeat for c in self.clusters(tenant_id)}
        cluster_ids = filters.get("cluster_ids")
        ids = list(known) if cluster_ids is None else list(dict.fromkeys(cluster_ids))
        check_filters(filters)
        if matches_nothing(filters):
            return []
        found = []
        for cluster in ids:
            check_id(cluster, "cluster id")
            heartbeat = known.get(cluster)
            query = edge_query(filters, heartbeat)
            for item in self._table.query(graph_pk(tenant_id, cluster), EDGE_PREFIX, **query):
                found.append((cluster, text_of(item, "edge").encode(), heartbeat))
        return selected_edges(read_back(found), filters)

    def edges_page(
        self,
        tenant_id: str,
        order: PageOrder,
        *,
        after: PagePosition | None = None,
        limit: int,
        **filters: Unpack[EdgeFilters],
    ) -> EdgePage:
        return edges_page(
            self._table, self.clusters(tenant_id), order, after=after, limit=limit, filters=filters
        )

    def write_count(self) -> int:
        return self._table.writes()

    # ------------------------------------------------------------------ snapshots

    def put_snapshot(
        self, tenant_id: str, cluster_id: str, record: SnapshotRecord, document: bytes, *, keep: int
    ) -> list[str]:
        check_name(record.name)
        return self._snapshots.put(tenant_id, cluster_id, record, document, keep)

    def snapshots(self, tenant_id: str, cluster_id: str) -> list[SnapshotRecord]:
        return self._snapshots.records(tenant_id, cluster_id)

    def snapshot(self, tenant_id: str, cluster_id: str, name: str) -> tuple[SnapshotRecord, bytes] | None:
        return self._snapshots.document(tenant_id, cluster_id, name)

    # ------------------------------------------------------------------ coverage

    def put_coverage(self, tenant_id: str, cluster_id: str, received_at: float, document: bytes) -> None:
        self._coverage.put(tenant_id, cluster_id, received_at, document)

    def coverage(self, tenant_id: str, cluster_id: str) -> tuple[float, bytes] | None:
        return self._coverage.get(tenant_id, cluster_id)

    # ------------------------------------------------------------------ telemetry

    def record_telemetry(self, cluster_hash: str, body: bytes, content_type: str, now: float) -> None:
        check_telemetry(body)
        record = f"{now:020.6f}#{uuid.uuid4().hex}"
        expires_at = int(now) + RETENTION_SECONDS
        items = telemetry_items(record, cluster_hash, body, content_type, now, expires_at=expires_at)
        if len(items) == 1:
            self._table.call("put_item", 1, Item=items[0])
        else:
            self._table.transact([{"Put": {"Item": item}} for item in items], [])

    def telemetry(self, limit: int = 100) -> list[tuple[str, float, bytes]]:
        """Newest first; the parts of a record arrive together (last part first) and are joined."""
        records: list[tuple[str, float, bytes]] = []
        parts: list[Item] = []
        for item in self._table.query("TELEMETRY", "", ScanIndexForward=False):
            if len(records) >= limit:
                break
            parts.append(item)
            if item["SK"]["S"].endswith("#00"):
                if len(parts) == int(item["parts"]["N"]):
                    body = b"".join(bytes(p.get("body", {}).get("B", b"")) for p in reversed(parts))
                    records.append((text_of(item, "cluster_hash"), float_of(item, "received_at"), body))
                parts = []
        return records


class EdgeBatch(EdgeItems):
    """:class:`~cloud_functions.store.ingestion.EdgeBatch` of one ingest."""

    def __init__(
        self,
        table: DynamoTable,
        graph: str,
        cluster: Item,
        marker: Item,
        *,
        seen_before: bool,
        seen_digest: str,
    ) -> None:
        super().__init__(table, graph)
        self._cluster, self._marker, self.seen_before = cluster, marker, seen_before
        self.seen_digest = seen_digest  # "" for a marker kept before digests were: matches anything

    def raise_heartbeat(self, seen_at: float) -> None:
        rises = "attribute_exists(PK) AND (attribute_not_exists(heartbeat) OR heartbeat < :h)"
        with contextlib.suppress(ConditionFailed):  # as late already (or deleted): nothing written
            self.table.call(
                "update_item",
                1,
                Key=self._cluster,
                UpdateExpression="SET heartbeat = :h",
                ConditionExpression=rises,
                ExpressionAttributeValues={":h": number(seen_at)},
            )

    def mark(self, now: float, digest: str) -> bool:
        expires = {"N": str(int(now) + RETENTION_SECONDS)}
        kept = {"received_at": number(now), "expires_at": expires, "digest": {"S": digest}}
        try:
            self.table.create(self._marker | kept, "")
        except Conflict:  # delivered concurrently: the other delivery marked it
            return False
        return True
