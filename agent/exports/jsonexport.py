"""Edges ⇄ the JSON export: a stable, versioned document of the whole map.

Data comes from the store's edges (``agent.model.Edge``); the document goes to the CLI
(``network-mapper export --format json``, which writes the file), the cloud's export route, and
back (:func:`edges_from_document`: the CLI's de-anonymization, tests). The document is the codec's
(:class:`agent.wire.EdgesDocument`: ``apiVersion``, ``version``, ``edges``, each edge an
:class:`agent.wire.EdgeDoc`); this module only gives it as a JSON value. Pure: no I/O.

Every key is always present, lists are sorted and edges are sorted by key, so equal maps give
byte-equal documents.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agent import wire
from agent.model import Edge

API_VERSION = wire.EXPORT_API_VERSION


def edges_document(edges: Iterable[Edge]) -> dict[str, Any]:
    """The JSON export of ``edges`` (a plain dict, ready for ``json.dumps``)."""
    document: dict[str, Any] = wire.plain(wire.export_document(edges))
    return document


def edges_from_document(document: Any) -> list[Edge]:
    """The edges of a JSON export (as ``json.loads`` gives it); :class:`agent.wire.WireError` on
    another apiVersion or bad data, naming where."""
    return wire.document_from_plain(document)
