"""What the CLI asks the mapper's GraphQL API, and its answers as model objects (pure).

The CLI sends :data:`EDGES_QUERY` (our additive ``edges`` query, beside the Otterize queries),
whose answer is the codec's edge documents (:mod:`agent.wire`), field for field, and turns them
into :class:`~agent.model.Edge` objects for the list view, the graph and the exporters in
:mod:`agent.exports`; :data:`LABELS_QUERY` gives the workloads' labels for NetworkPolicies.
"""

from __future__ import annotations

from typing import Any

from agent import wire
from agent.model import Edge

EDGES_QUERY = """
query Edges($namespaces: [String!]) {
  edges(namespaces: $namespaces) {
    client { name namespace kind }
    target { type name namespace kind dnsName ips port arn }
    methods firstSeen lastSeen count targetService targetServiceSeen ambiguous live
    http { path methods principals statuses }
    kafkaTopics { name operations principal denied }
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


def edge_from_json(raw: dict[str, Any]) -> Edge:
    """An edge of the ``edges`` answer; :class:`EdgeFormatError` naming what is wrong."""
    try:  # the API answers null for no Service, where the document has ""
        return wire.edge_from_plain({**raw, "targetService": raw.get("targetService") or ""})
    except wire.WireError as exc:
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
