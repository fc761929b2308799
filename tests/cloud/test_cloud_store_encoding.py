"""encode_struct (of the typed decoding of a batch): the same key hash, text and
filter row as encoding the parsed edge; anything else is left to the parser."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from agent.exports.jsonexport import edge_from_dict
from cloud_functions.store.documents import TypedEdge, decode_batch, encode_struct
from cloud_functions.store.encoding import encode, filter_row


def document(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "client": {"name": "front\u00e9", "namespace": "shop", "kind": "Deployment"},
        "target": {"type": "workload", "name": "cart", "namespace": "shop", "kind": "Deployment"},
        "methods": ["tcp", "dns"],
        "firstSeen": "2026-11-28T02:15:06.918878Z",
        "lastSeen": "2026-11-28T02:16:06.000001Z",
        "count": 3,
        "http": [{"path": "/b", "methods": ["POST", "GET"]}, {"path": "/a", "methods": []}],
        "kafkaTopics": [{"name": "orders", "operations": ["produce", "consume"]}],
        "awsActions": ["s3:Put", "s3:Get"],
        "targetService": 'cart"svc',
        "ambiguous": True,
    }
    doc.update(changes)
    return doc


@pytest.mark.parametrize(
    "doc",
    [
        document(),
        document(http=[], kafkaTopics=[], awsActions=[], methods=[]),
        {k: v for k, v in document().items() if k in ("client", "target", "firstSeen", "lastSeen")},
        document(client={"name": "a", "namespace": "b"}, ambiguous=False, count=0),
        document(methods=["dns", "dns"], http=[{"path": "/a", "methods": ["GET"]}] * 2),
        document(firstSeen="1970-01-01T00:00:00.000000Z", lastSeen="2099-12-31T23:59:59.999999Z"),
    ],
)
def test_a_document_encodes_as_its_parsed_edge(doc: dict[str, Any]) -> None:
    original = copy.deepcopy(doc)
    (typed,) = decode_batch(json.dumps({"batchId": "b", "edges": [doc]}))["edges"]
    assert type(typed) is TypedEdge
    assert typed.plain() == doc
    direct = encode_struct(typed.doc)
    assert direct is not None
    edge = edge_from_dict(doc)
    assert (direct.key_hash, direct.text) == (encode(edge).key_hash, encode(edge).text)
    assert direct.row == filter_row(edge)
    assert encode(direct.edge).text == direct.text
    assert doc == original


@pytest.mark.parametrize(
    "doc",
    [
        document(target={"type": "aws", "arn": "arn:x"}),
        document(firstSeen="2026-11-28T02:15:06Z"),
        document(lastSeen="2026-11-28T02:15:06.918878+00:00"),
        document(lastSeen="1969-12-31T23:59:59.000000Z"),
        document(lastSeen="2026-13-28T02:15:06.918878Z"),
        document(lastSeen="9999-12-31T23:59:59.999999Z"),
        document(methods=["nope"]),
        document(count=True),
        document(count=1.0),
        document(ambiguous=1),
        document(http=[{"methods": []}]),
        document(kafkaTopics=[{"name": "t", "operations": [1]}]),
        document(awsActions="s3:Get"),
        document(targetService=None),
        {"client": {"name": "a", "namespace": "b"}},
        ["not", "a", "dict"],
    ],
)
def test_other_documents_are_left_to_the_parser(doc: Any) -> None:
    body = {"batchId": "b", "edges": [doc]}
    (decoded,) = decode_batch(json.dumps(body))["edges"]
    if type(decoded) is TypedEdge:
        assert encode_struct(decoded.doc) is None
        assert decoded.plain() == doc, "what the careful parser gets instead"
    else:
        assert decoded == doc, "an edge the typed decoder refuses is decoded as plain JSON"


def test_other_bodies_decode_as_plain_json() -> None:
    for body in ({"name": "a tenant"}, {"batchId": "b", "edges": [], "extra": 1}, [1, 2], "text"):
        assert decode_batch(json.dumps(body)) == body
    with pytest.raises(json.JSONDecodeError):
        decode_batch("{not json")
