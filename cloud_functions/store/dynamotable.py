"""Access to the DynamoDB store's one table through an injected boto3 client: the calls, and one
graph partition's edges.

Requests come from :mod:`cloud_functions.store.dynamodb` and its migrations, with items built by
:mod:`cloud_functions.store.dynamoitems`; they go to DynamoDB, through :meth:`DynamoTable.call`,
which counts writes and turns botocore's errors into :class:`~cloud_functions.store.base.StoreError`
(a failed condition: :class:`ConditionFailed`). A request DynamoDB throttled (:data:`THROTTLED`, or a
transaction cancelled for ``ThrottlingError``) was not carried out, so it is sent again, with
jittered backoff, for up to :data:`THROTTLE_DEADLINE` seconds: the client is injected, and its own
retries (botocore's: 4 attempts by default for DynamoDB, none for a cancelled transaction) may not
outlast a throttled partition, while one failed put fails a whole ingest.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from cloud_functions.store.base import Conflict, StoreError
from cloud_functions.store.dynamoitems import (
    GROUP_INDEXES,
    Item,
    edge_item,
    edge_sk,
    item_key,
    string,
    text_of,
)
from cloud_functions.store.ingestion import EdgeWrite, StoredText

NEW = "attribute_not_exists(PK)"  # the condition of a write that creates an item
RETRY_DEADLINE = 30.0  # seconds a batch read may keep retrying throttled keys
THROTTLE_DEADLINE = 10.0  # seconds a call may keep being sent again while DynamoDB throttles it
THROTTLED = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
)
"""Error codes of requests DynamoDB refused, unexecuted, for capacity."""
INDEX_DEADLINE = 600.0  # seconds a migration waits for new indexes to fill (then the next open waits on)


class ConditionFailed(StoreError):
    """A condition of a write failed; ``reasons`` are a cancelled transaction's per-item codes."""

    def __init__(self, message: str, reasons: list[str]) -> None:
        super().__init__(message)
        self.reasons = reasons


def group_index(name: str) -> Item:
    """The definition of an index by workload (:data:`~cloud_functions.store.dynamoitems.GROUP_INDEXES`):
    keys only, so that rewriting an edge item (its text changes, its workloads never do) writes
    nothing to it."""
    keys = [
        {"AttributeName": "PK", "KeyType": "HASH"},
        {"AttributeName": GROUP_INDEXES[name], "KeyType": "RANGE"},
    ]
    return {"IndexName": name, "KeySchema": keys, "Projection": {"ProjectionType": "KEYS_ONLY"}}


def key_attributes(*names: str) -> list[Item]:
    return [{"AttributeName": name, "AttributeType": "S"} for name in names]


def create_table(client: Any, table_name: str) -> None:
    """Create the store's table (on-demand billing, ``expires_at`` TTL, the indexes by workload)
    and wait until it is active."""
    client.create_table(
        TableName=table_name,
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
        AttributeDefinitions=key_attributes("PK", "SK", *GROUP_INDEXES.values()),
        GlobalSecondaryIndexes=[group_index(name) for name in GROUP_INDEXES],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    client.update_time_to_live(
        TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
    )


def throttled(error: ClientError) -> bool:
    """Whether DynamoDB refused the request for capacity, so that none of it was carried out."""
    code = str(error.response.get("Error", {}).get("Code", ""))
    reasons = {str(r.get("Code", "")) for r in error.response.get("CancellationReasons", [])}
    return code in THROTTLED or ("ThrottlingError" in reasons and "ConditionalCheckFailed" not in reasons)


class DynamoTable:
    """The table ``name``: consistent reads, paged queries and scans (``page_size`` items a page
    when given: tests), edge puts by ``workers`` threads, and a count of the writes."""

    def __init__(
        self,
        client: Any,
        name: str,
        *,
        workers: int = 8,
        page_size: int | None = None,
        throttle_deadline: float = THROTTLE_DEADLINE,
    ) -> None:
        self.name, self.workers, self._client, self._page_size = name, workers, client, page_size
        self._throttle_deadline = throttle_deadline
        self._writes = 0
        self._count_lock = threading.Lock()

    def writes(self) -> int:
        with self._count_lock:
            return self._writes

    def call(self, operation: str, writes: int = 0, **request: Any) -> dict[str, Any]:
        """One API call, counted as ``writes`` item writes."""
        if operation != "transact_write_items":
            request["TableName"] = self.name
        try:
            answer = self._send(operation, request)
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            reasons = [str(r.get("Code", "")) for r in error.response.get("CancellationReasons", [])]
            if code == "ConditionalCheckFailedException" or "ConditionalCheckFailed" in reasons:
                raise ConditionFailed(f"dynamodb {self.name}: {error}", reasons) from error
            raise StoreError(f"dynamodb {self.name}: {code}: {error}") from error
        except BotoCoreError as error:
            raise StoreError(f"dynamodb {self.name}: {error}") from error
        with self._count_lock:
            self._writes += writes
        return answer

    def _send(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        """The client's call, sent again while it is throttled (full jitter, pauses doubling up to
        1 s), until :data:`THROTTLE_DEADLINE` seconds after the first throttled answer."""
        deadline, pause = 0.0, 0.05
        while True:
            try:
                answer: dict[str, Any] = getattr(self._client, operation)(**request)
            except ClientError as error:
                if not throttled(error):
                    raise
                now = time.monotonic()
                deadline = deadline or now + self._throttle_deadline
                if now >= deadline:
                    raise
                time.sleep(random.uniform(0, pause))  # noqa: S311 - jitter, not secrecy
                pause = min(pause * 2, 1.0)
            else:
                return answer

    def get(self, pk: str, sk: str) -> Item | None:
        item: Item | None = self.call("get_item", Key=item_key(pk, sk), ConsistentRead=True).get("Item")
        return item

    def create(self, item: Item, conflict: str) -> None:
        """Put a new item; :class:`Conflict` (saying ``conflict``) if it exists."""
        try:
            self.call("put_item", 1, Item=item, ConditionExpression=NEW)
        except ConditionFailed as error:
            raise Conflict(conflict) from error

    def transact(self, items: list[Item], failures: Sequence[StoreError | None]) -> None:
        """Run a transaction; a condition failing on item ``i`` raises ``failures[i]``."""
        for item in items:
            next(iter(item.values()))["TableName"] = self.name
        try:
            writes = sum(1 for item in items if "ConditionCheck" not in item)
            self.call("transact_write_items", writes, TransactItems=items)
        except ConditionFailed as error:
            for reason, failure in zip(error.reasons, failures, strict=False):
                if reason == "ConditionalCheckFailed" and failure is not None:
                    raise failure from error
            raise

    def query(self, pk: str, prefix: str, **extra: Any) -> Iterator[Item]:
        """Every item of a partition whose sort key starts with ``prefix``."""
        values = {":pk": string(pk)} | ({":prefix": string(prefix)} if prefix else {})
        values |= extra.pop("ExpressionAttributeValues", {})
        condition = "PK = :pk" + (" AND begins_with(SK, :prefix)" if prefix else "")
        return self._pages(
            "query", KeyConditionExpression=condition, ExpressionAttributeValues=values, **extra
        )

    def query_page(self, request: Item) -> tuple[list[Item], Item | None]:
        """One Query call: its items (at most ``Limit``, and at most 1 MB of them) and where the
        next call starts (``LastEvaluatedKey``; None: nothing is left). The table is read
        consistently; an index cannot be (DynamoDB fills it a moment after the table's write)."""
        request = dict(request)
        if "IndexName" not in request:
            request["ConsistentRead"] = True
        answer = self.call("query", **request)
        return answer.get("Items", []), answer.get("LastEvaluatedKey")

    def indexes(self) -> dict[str, str]:
        """The table's global secondary indexes and their states (``ACTIVE``, ``CREATING`` ...)."""
        table = self.call("describe_table")["Table"]
        return {i["IndexName"]: i["IndexStatus"] for i in table.get("GlobalSecondaryIndexes", [])}

    def add_indexes(self, names: Collection[str]) -> None:
        """Create the indexes by workload among ``names`` the table lacks (one a call: DynamoDB
        creates one at a time), then wait until every index is active; another container creating
        one meanwhile is fine. :class:`StoreError` after :data:`INDEX_DEADLINE`."""
        for name in names:
            if name in self.indexes():
                continue
            create = {"Create": group_index(name)}
            attributes = key_attributes("PK", GROUP_INDEXES[name])
            try:
                self.call(
                    "update_table", AttributeDefinitions=attributes, GlobalSecondaryIndexUpdates=[create]
                )
            except StoreError:
                if name not in self.indexes():  # not another container's creation: a real failure
                    raise
            deadline = time.monotonic() + INDEX_DEADLINE
            while set(self.indexes().values()) - {"ACTIVE"}:
                if time.monotonic() > deadline:
                    raise StoreError(f"dynamodb {self.name}: index {name} not active after {INDEX_DEADLINE}s")
                time.sleep(0.5)

    def scan(self, **request: Any) -> Iterator[Item]:
        """Every item of the table (that ``request``'s filter keeps)."""
        return self._pages("scan", **request)

    def _pages(self, operation: str, **request: Any) -> Iterator[Item]:
        """The items of a query or scan, page after page (a page is at most 1 MB)."""
        request["ConsistentRead"] = True
        if self._page_size and "Limit" not in request:
            request["Limit"] = self._page_size
        while True:
            page = self.call(operation, **request)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def batch_get(self, keys: list[Item]) -> dict[str, Item]:
        """Items by SK (keys of one partition), 100 keys a request, unprocessed keys retried."""
        found: dict[str, Item] = {}
        deadline, pause = time.monotonic() + RETRY_DEADLINE, 0.05
        for start in range(0, len(keys), 100):
            pending: Item = {self.name: {"Keys": keys[start : start + 100], "ConsistentRead": True}}
            while pending:
                try:
                    answer = self._send("batch_get_item", {"RequestItems": pending})
                except (ClientError, BotoCoreError) as error:
                    raise StoreError(f"dynamodb {self.name}: {error}") from error
                for item in answer.get("Responses", {}).get(self.name, []):
                    found[item["SK"]["S"]] = item
                pending = answer.get("UnprocessedKeys") or {}
                if pending and time.monotonic() > deadline:
                    raise StoreError(f"dynamodb {self.name}: reads still throttled after {RETRY_DEADLINE}s")
                if pending:
                    time.sleep(pause)
                    pause = min(pause * 2, 1.0)
        return found


class EdgeItems:
    """:class:`~cloud_functions.store.ingestion.StoredEdges` of one graph partition: batch reads,
    and puts conditional on the version read, by the table's ``workers`` threads (each write
    counted as ``counted``)."""

    def __init__(self, table: DynamoTable, graph: str, *, counted: int = 1) -> None:
        self.table, self._graph, self._counted = table, graph, counted

    def stored(self, keys: Collection[bytes]) -> dict[bytes, StoredText]:
        items = self.table.batch_get([item_key(self._graph, edge_sk(key)) for key in keys])
        return {
            key: StoredText(text_of(item, "edge").encode(), int(item["v"]["N"]))
            for key in keys
            if (item := items.get(edge_sk(key))) is not None
        }

    def put(self, writes: Sequence[EdgeWrite]) -> set[bytes]:
        workers = self.table.workers
        if len(writes) > 1 and workers > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                done = list(pool.map(self._put, writes))
        else:
            done = [self._put(write) for write in writes]
        return {write.record.key for write, ok in zip(writes, done, strict=True) if not ok}

    def _put(self, write: EdgeWrite) -> bool:
        """False when the version it replaces is gone (another writer won a race)."""
        condition: dict[str, Any] = {"ConditionExpression": NEW}
        if write.version is not None:
            version = {":v": {"N": str(write.version)}}
            condition = {"ConditionExpression": "v = :v", "ExpressionAttributeValues": version}
        item = edge_item(self._graph, write.record, (write.version or 0) + 1)
        try:
            self.table.call("put_item", self._counted, Item=item, **condition)
        except ConditionFailed:
            return False
        return True
