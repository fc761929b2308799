"""The DynamoDB store sends again what DynamoDB throttled, on DynamoDB Local.

DynamoDB Local never throttles, so a botocore ``before-send`` hook on the store's client answers
chosen attempts itself, as DynamoDB answers a throttled request (HTTP 400 and the JSON error body),
without reaching DynamoDB Local. The client has botocore's retries off (``max_attempts=1``): every
throttled answer reaches the store, so what retries it here is the store's own retry.
"""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config

from agent import wire
from agent.model import Edge, Method, WorkloadIdentity
from cloud_functions.store.base import StoreError
from cloud_functions.store.dynamodb import DynamoGraphStore
from cloud_functions.store.dynamotable import DynamoTable

T0 = 1764296106.0
THROUGHPUT = {
    "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
    "message": "The level of configured provisioned throughput for the table was exceeded."
    " Consider increasing your provisioning level with the UpdateTable API.",
}
CANCELLED = {
    "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
    "Message": "Transaction cancelled, please refer cancellation reasons for specific reasons"
    " [None, ThrottlingError]",
    "CancellationReasons": [
        {"Code": "None"},
        {"Code": "ThrottlingError", "Message": "Throughput exceeds the current capacity for one or more"},
    ],
}


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Any:
        yield self.data


class Throttler:
    """Answers the first ``times`` attempts of ``operation`` whose body contains ``marker`` with
    ``error``; counts every attempt of it that was let through."""

    def __init__(self, client: Any, operation: str, marker: str, error: dict[str, Any], times: int) -> None:
        self.marker, self.error, self.left = marker.encode(), json.dumps(error).encode(), times
        self.throttled = self.passed = 0
        client.meta.events.register(f"before-send.dynamodb.{operation}", self.send)

    def send(self, request: Any, **_: Any) -> AWSResponse | None:
        if self.marker not in (request.body or b""):
            return None
        if self.left == 0:
            self.passed += 1
            return None
        self.left -= 1
        self.throttled += 1
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "throttled"}
        return AWSResponse(request.url, 400, headers, _Body(self.error))


@pytest.fixture
def bare_client(dynamodb_endpoint: str) -> Any:
    """A client of the session's DynamoDB Local of its own (the hooks stay on it), with botocore's
    retries off."""
    return boto3.client(
        "dynamodb",
        endpoint_url=dynamodb_endpoint,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


def _edge(name: str) -> wire.EdgeDoc:
    client, target = (
        WorkloadIdentity("shop", "frontend", "Deployment"),
        WorkloadIdentity("shop", name, "Deployment"),
    )
    return wire.to_doc(Edge(client, target, T0, T0 + 60, frozenset({Method.TCP})))


def _store(client: Any, table: str) -> DynamoGraphStore:
    store = DynamoGraphStore(client, table)
    store.create_tenant("t1", "tenant", T0)
    return store


def test_a_throttled_edge_put_is_sent_again_and_the_edge_is_readable(
    bare_client: Any, dynamodb_table: str
) -> None:
    store = _store(bare_client, dynamodb_table)
    store.add_cluster("t1", "c1", "cluster", T0)
    throttler = Throttler(bare_client, "PutItem", "cartservice", THROUGHPUT, times=3)

    result = store.ingest("t1", "c1", "b1", [_edge("cartservice"), _edge("adservice")], time.time())

    assert (throttler.throttled, throttler.passed) == (3, 1)
    assert result.stored and result.edges_written == 2
    stored = {s.edge.target for s in store.edges("t1")}
    assert stored == {
        WorkloadIdentity("shop", "cartservice", "Deployment"),
        WorkloadIdentity("shop", "adservice", "Deployment"),
    }


def test_a_transaction_cancelled_for_throttling_is_sent_again(bare_client: Any, dynamodb_table: str) -> None:
    store = _store(bare_client, dynamodb_table)
    throttler = Throttler(bare_client, "TransactWriteItems", "CLUSTER#c2", CANCELLED, times=2)

    store.add_cluster("t1", "c2", "cluster", T0)

    assert (throttler.throttled, throttler.passed) == (2, 1)
    assert [c.id for c in store.clusters("t1")] == ["c2"]


def test_a_throttle_that_outlasts_the_deadline_is_a_store_error(
    bare_client: Any, dynamodb_table: str
) -> None:
    table = DynamoTable(bare_client, dynamodb_table, throttle_deadline=0.3)
    throttler = Throttler(bare_client, "PutItem", "EDGE#forever", THROUGHPUT, times=10_000)
    item = {"PK": {"S": "G#t1#c1"}, "SK": {"S": "EDGE#forever"}}

    started = time.monotonic()
    with pytest.raises(StoreError, match="ProvisionedThroughputExceededException"):
        table.call("put_item", 1, Item=item)

    assert 0.3 <= time.monotonic() - started < 15.0  # kept sending until the deadline, then stopped
    assert throttler.throttled > 1 and throttler.passed == 0
    assert table.writes() == 0
    assert bare_client.get_item(TableName=dynamodb_table, Key=item).get("Item") is None


def test_other_client_errors_are_not_retried(bare_client: Any, dynamodb_table: str) -> None:
    attempts: list[str] = []

    def count(event_name: str, **_: Any) -> None:
        attempts.append(event_name)

    bare_client.meta.events.register("before-send.dynamodb.PutItem", count)
    table = DynamoTable(bare_client, dynamodb_table)

    with pytest.raises(StoreError, match="ValidationException"):
        table.call("put_item", 1, Item={"PK": {"S": "only a partition key"}})

    assert len(attempts) == 1
