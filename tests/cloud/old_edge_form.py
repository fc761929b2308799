"""The stored form of an edge before the edge codec (SQLite schema versions 1 to 4, DynamoDB table
versions 1 and 2), written out by hand so that migration tests can plant it.

The text was the JSON of the old export form (the edge document's field names, no ``live``, keys
sorted, no spaces, times always with six fraction digits); the key hash the first 32 hex digits of
the SHA-256 of ``{"client": ..., "target": ...}`` (keys sorted, ``json.dumps``' default spacing).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from agent.model import AwsTarget, Edge, InternetTarget, WorkloadIdentity


def _time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _target(edge: Edge) -> dict[str, Any]:
    t = edge.target
    if isinstance(t, WorkloadIdentity):
        return {"kind": t.kind, "name": t.name, "namespace": t.namespace, "type": "workload"}
    if isinstance(t, InternetTarget):
        return {"dnsName": t.dns_name, "ips": list(t.ips), "port": t.port, "type": "internet"}
    assert isinstance(t, AwsTarget)
    return {"arn": t.arn, "type": "aws"}


def old_form(edge: Edge) -> tuple[str, str]:
    """(old text, old key hash) of an edge."""
    client = {"kind": edge.client.kind, "name": edge.client.name, "namespace": edge.client.namespace}
    target = _target(edge)
    whole = {
        "ambiguous": edge.ambiguous,
        "awsActions": sorted(edge.aws_actions),
        "client": client,
        "count": edge.count,
        "firstSeen": _time(edge.first_seen),
        "http": [{"methods": sorted(r.methods), "path": r.path} for r in sorted(edge.http)],
        "kafkaTopics": [
            {"name": k.name, "operations": sorted(k.operations)} for k in sorted(edge.kafka_topics)
        ],
        "lastSeen": _time(edge.last_seen),
        "methods": sorted(str(m) for m in edge.methods),
        "target": target,
        "targetService": edge.target_service,
    }
    key = json.dumps({"client": client, "target": target}, sort_keys=True)
    text = json.dumps(whole, sort_keys=True, separators=(",", ":"))
    return text, hashlib.sha256(key.encode()).hexdigest()[:32]
