"""The mapper's ``edges`` query and its answer as :class:`~agent.model.Edge` objects.

The CLI asks the mapper's GraphQL API (our additive ``edges`` query, beside the Otterize
queries) for the map and turns the JSON into model edges (pure), which the list view, the
graph and the exporters in :mod:`agent.exports` consume.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agent.model import (
    AwsTarget,
    Edge,
    HttpResource,
    InternetTarget,
    KafkaTopic,
    Method,
    Target,
    WorkloadIdentity,
)

EDGES_QUERY = """
query Edges($namespaces: [String!]) {
  edges(namespaces: $namespaces) {
    client { name namespace kind }
    target {
      workload { name namespace kind }
      internet { dnsName ips port }
      aws { arn }
    }
    methods firstSeen lastSeen count targetService ambiguous
    httpResources { path methods }
    kafkaTopics { name operations }
    awsActions
  }
}
"""

LABELS_QUERY = """
query Labels($namespaces: [String!]) {
  intents(namespaces: $namespaces, includeAllLabels: true) {
    client { name namespace labels { key value } }
    server { name namespace labels { key value } }
  }
}
"""

RESET_MUTATION = "mutation ResetCapture { resetCapture }"


class EdgeFormatError(ValueError):
    """The mapper's answer does not have the shape this CLI expects (version skew?)."""


def _time(text: str | None) -> float:
    if not text:
        return 0.0
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _identity(raw: dict[str, Any]) -> WorkloadIdentity:
    return WorkloadIdentity(raw["namespace"], raw["name"], raw.get("kind") or "")


def _target(raw: dict[str, Any]) -> Target:
    if raw.get("workload"):
        return _identity(raw["workload"])
    if raw.get("internet"):
        net = raw["internet"]
        return InternetTarget(net.get("dnsName") or "", tuple(net.get("ips") or ()), net.get("port") or 0)
    if raw.get("aws"):
        return AwsTarget(raw["aws"]["arn"])
    raise EdgeFormatError(f"edge target has no known kind: {raw}")


def edge_from_json(raw: dict[str, Any]) -> Edge:
    try:
        return Edge(
            client=_identity(raw["client"]),
            target=_target(raw["target"]),
            first_seen=_time(raw.get("firstSeen")),
            last_seen=_time(raw.get("lastSeen")),
            methods=frozenset(Method(m) for m in raw.get("methods") or ()),
            count=raw.get("count") or 0,
            http=tuple(
                HttpResource(h["path"], tuple(h.get("methods") or ())) for h in raw.get("httpResources") or ()
            ),
            kafka_topics=tuple(
                KafkaTopic(k["name"], tuple(k.get("operations") or ())) for k in raw.get("kafkaTopics") or ()
            ),
            aws_actions=tuple(raw.get("awsActions") or ()),
            target_service=raw.get("targetService") or "",
            ambiguous=bool(raw.get("ambiguous")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise EdgeFormatError(f"unexpected edge from the mapper: {exc}") from exc


def labels_from_intents(intents: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, str]]:
    """``{(namespace, name): labels}`` from an ``intents(includeAllLabels: true)`` answer."""
    found: dict[tuple[str, str], dict[str, str]] = {}
    for intent in intents:
        for side in ("client", "server"):
            who = intent[side]
            found[(who["namespace"], who["name"])] = {
                lab["key"]: lab["value"] for lab in who.get("labels") or ()
            }
    return found
