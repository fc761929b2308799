"""POST /v1/metrics: anonymous OTLP/HTTP metrics, protobuf (recorded from the SDK's encoder)
or JSON; the cluster id from the resource, raw payload kept; size and type limits."""

from __future__ import annotations

import base64
import json
from typing import Any

from cloud_handler_support import Cloud, cloud_fixture, event, recorded  # noqa: F401

from cloud_functions.handlers.telemetry import cluster_from_json, cluster_from_protobuf
from cloud_functions.store.base import MAX_TELEMETRY_BYTES


def otlp_json(cluster: object) -> bytes:
    attributes = [{"key": "service.name", "value": {"stringValue": "mapper"}}]
    attributes.append({"key": "cluster.id", "value": {"stringValue": cluster}})
    return json.dumps(
        {"resourceMetrics": [{"resource": {"attributes": attributes}, "scopeMetrics": []}]}
    ).encode()


def test_recorded_protobuf_payload(cloud: Cloud) -> None:
    ev = recorded("metrics_protobuf")
    reply = cloud(ev)
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/x-protobuf" and reply.text == ""
    ((cluster, _, body),) = cloud.store.telemetry(10)
    assert cluster == "3f1c9a0e5b7d2468"
    assert body == base64.b64decode(ev["body"])


def test_json_payload_needs_no_token(cloud: Cloud) -> None:
    reply = cloud.request("POST", "/v1/metrics", raw=otlp_json("abc123"))
    assert reply.status == 200 and reply.json() == {}
    assert cloud.store.telemetry(1)[0][0] == "abc123"


def test_unparseable_payloads_are_kept_as_unknown(cloud: Cloud) -> None:
    assert (
        cloud.request(
            "POST", "/v1/metrics", raw=b"\x0a\xff\xff\xff", content_type="application/x-protobuf"
        ).status
        == 200
    )
    assert cloud.request("POST", "/v1/metrics", raw=b"{not json").status == 200
    assert cloud.request("POST", "/v1/metrics", raw=otlp_json({"nested": 1})).status == 200
    assert cloud.request("POST", "/v1/metrics", raw=otlp_json("has spaces and / slashes")).status == 200
    assert [row[0] for row in cloud.store.telemetry(10)] == ["unknown"] * 4


def test_limits(cloud: Cloud) -> None:
    big = b"\x00" * (MAX_TELEMETRY_BYTES + 1)
    reply = cloud.request("POST", "/v1/metrics", raw=big, content_type="application/x-protobuf")
    assert reply.status == 413 and reply.error_code == "payload_too_large"
    reply = cloud.request("POST", "/v1/metrics", raw=b"counts", content_type="text/plain")
    assert reply.status == 415 and reply.error_code == "unsupported_media_type"
    assert cloud.request("POST", "/v1/metrics").status == 415
    assert cloud.store.telemetry(10) == []


def test_parsers_never_raise() -> None:
    for junk in (b"", b"\x00", b"\xff" * 50, b"[]", b"null", b'{"resourceMetrics": 5}', b"[" * 100_000):
        assert cluster_from_protobuf(junk) == "unknown"
        assert cluster_from_json(junk) == "unknown"


def test_each_source_is_rate_limited(cloud: Cloud) -> None:
    from cloud_functions.handlers.telemetry import PER_MINUTE

    def send(source: str) -> Any:
        ev = event("POST", "/v1/metrics", raw=otlp_json("abc123"))
        ev["requestContext"]["http"]["sourceIp"] = source
        return cloud(ev)

    assert all(send("10.9.9.9").status == 200 for _ in range(PER_MINUTE))
    refused = send("10.9.9.9")
    assert refused.status == 429 and refused.error_code == "rate_limited", refused
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert send("10.9.9.8").status == 200, "another source has its own allowance"
    assert len(cloud.store.telemetry(PER_MINUTE + 10)) == PER_MINUTE + 1


def test_the_sqlite_store_keeps_a_bounded_number_of_telemetry_bytes(tmp_path: Any) -> None:
    """Issue 11, defect 7: anonymous telemetry wrote ~10 GB before pruning; now the oldest payloads
    go once the kept ones would pass MAX_TELEMETRY_KEPT_BYTES."""
    from cloud_functions.store.base import MAX_TELEMETRY_KEPT_BYTES
    from cloud_functions.store.sqlite import TELEMETRY_KEPT, TELEMETRY_PRUNE_EVERY, SqliteGraphStore

    store = SqliteGraphStore(tmp_path / "t.db")
    big = b"\x01" * MAX_TELEMETRY_BYTES
    sent = TELEMETRY_KEPT + 3 * TELEMETRY_PRUNE_EVERY - 1
    for i in range(sent):
        store.record_telemetry(f"c{i}", big, "application/x-protobuf", 1.7e9 + i)
        if i % 97 == 0:  # bounded at any moment, not only after a pruning
            assert (
                len(store.telemetry(limit=10 * TELEMETRY_KEPT)) * MAX_TELEMETRY_BYTES
                <= MAX_TELEMETRY_KEPT_BYTES
            )
    kept = store.telemetry(limit=10 * TELEMETRY_KEPT)
    assert TELEMETRY_KEPT <= len(kept) < TELEMETRY_KEPT + TELEMETRY_PRUNE_EVERY
    assert kept[0][0] == f"c{sent - 1}"  # the newest stay
