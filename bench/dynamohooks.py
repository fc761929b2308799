"""botocore event hooks on a DynamoDB client: count the writes that succeed, and throttle some.

Requests come from the cloud's store (:mod:`cloud_functions.store.dynamotable`) through the
client the hooks are registered on; the counts go to the bench that reads :class:`DynamoMeter`.

* ``before-parameter-build``: what a write call would write, from its parameters (items; edge
  items, whose sort key starts with ``EDGE#``), kept in the call's context;
* ``before-send``: with probability ``throttle`` a write attempt is answered here, without reaching
  DynamoDB, with what DynamoDB answers a throttled request: HTTP 400 and the JSON error body of
  ``ProvisionedThroughputExceededException`` (DynamoDB Local itself never throttles). Each attempt
  is drawn anew, so botocore's retries meet the same odds;
* ``after-call``: once per API call, after botocore's retries: a 200 adds the call's writes; the
  throttles the call met count as retried by botocore, but for the last one of a call that still
  ends throttled, which counts as surfaced (to the store, whose own retry, or else the uploader's,
  must deal with it).
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from typing import Any

from botocore.awsrequest import AWSResponse

WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
THROTTLED = json.dumps(
    {
        "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
        "message": "The level of configured provisioned throughput for the table was exceeded."
        " Consider increasing your provisioning level with the UpdateTable API.",
    }
).encode()


class _Body:
    """The raw stream of an :class:`AWSResponse` made here."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Any:
        yield self.data


def _edge_sk(item: dict[str, Any]) -> bool:
    return str(item.get("SK", {}).get("S", "")).startswith("EDGE#")


def planned(operation: str, params: dict[str, Any]) -> tuple[int, int]:
    """(items, edge items) a write call writes if it succeeds."""
    if operation in ("PutItem", "UpdateItem", "DeleteItem"):
        item = params.get("Item") or params.get("Key") or {}
        return 1, int(_edge_sk(item))
    if operation == "TransactWriteItems":
        parts = [next(iter(p.items())) for p in params.get("TransactItems", [])]
        writes = [body for kind, body in parts if kind != "ConditionCheck"]
        return len(writes), sum(_edge_sk(b.get("Item") or b.get("Key") or {}) for b in writes)
    requests = [r for rs in params.get("RequestItems", {}).values() for r in rs]  # BatchWriteItem
    items = [next(iter(r.values())) for r in requests]
    return len(items), sum(_edge_sk(i.get("Item") or i.get("Key") or {}) for i in items)


class DynamoMeter:
    """Hooks on ``client`` (see the module doc); ``throttle``: the share of write attempts answered
    ``ProvisionedThroughputExceededException``."""

    def __init__(self, client: Any, throttle: float = 0.0, seed: int = 18) -> None:
        self.throttle = throttle
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._local = threading.local()
        events = client.meta.events
        events.register("before-parameter-build.dynamodb", self._plan)
        events.register("before-send.dynamodb", self._send)
        events.register("after-call.dynamodb", self._called)

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.counts)

    def _plan(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        if model.name in WRITES:
            context["meter_writes"] = planned(model.name, params)
        self._local.throttled = 0

    def _send(self, request: Any, event_name: str, **_: Any) -> AWSResponse | None:
        if event_name.rpartition(".")[2] not in WRITES or self.throttle <= 0:
            return None
        with self._lock:
            if self._random.random() >= self.throttle:
                return None
            self.counts["throttles injected"] += 1
        self._local.throttled = getattr(self._local, "throttled", 0) + 1
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "injected-throttle"}
        return AWSResponse(request.url, 400, headers, _Body(THROTTLED))

    def _called(
        self, http_response: Any, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any
    ) -> None:
        throttled = getattr(self._local, "throttled", 0)
        self._local.throttled = 0
        ok = http_response is not None and http_response.status_code == 200
        # A call that ends throttled hands its last throttle to the store; the others were retried.
        surfaced = int(parsed.get("Error", {}).get("Code") == "ProvisionedThroughputExceededException")
        with self._lock:
            self.counts["calls"] += 1
            self.counts["throttles retried by botocore"] += throttled - surfaced
            self.counts["throttles surfaced"] += surfaced
            if ok and "meter_writes" in context:
                items, edges = context["meter_writes"]
                self.counts["write calls"] += 1
                self.counts["items written"] += items
                self.counts["edge items written"] += edges
