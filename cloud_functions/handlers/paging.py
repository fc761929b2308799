"""Paged reads over HTTP: the ``limit`` and ``cursor`` query parameters of the graph and export
routes, the one codec of the cursor, and where the next page's cursor goes.

A page comes from the store (:meth:`~cloud_functions.store.base.GraphStore.edges_page`, through
:func:`read_page`); its end (:class:`~cloud_functions.store.base.PagePosition`) becomes the cursor
of the next page (:func:`next_cursor`), which goes to the client in the ``X-Next-Cursor`` header of
every paged response (absent on the last page: :func:`cursor_header`) and, in the graph's JSON
body, as ``nextCursor`` (null on the last page). Export bodies stay the exporters' documents
untouched (YAML streams, the IAM list, the codec's export document), so the header is the one
place every route has. A cursor the client sends back is decoded here into the position the store
reads on after; to walk everything, repeat the request with ``cursor`` set until no cursor comes.

The cursor: URL-safe base64 (unpadded) of MessagePack ``[version, query, cluster id, position]``
and 8 bytes of BLAKE2b over that. ``query`` digests what the page was read with (the route, the
order, the filters: :func:`query_digest`), so a cursor only continues the walk it came from. The
checksum catches a damaged or edited cursor; it is no signature, and need not be one: a position
only says where to read on in the caller's own tenant (the token decides the tenant). Every fault
of a cursor is a 422 ``validation_error`` naming ``cursor``, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Annotated, Any, Unpack

import msgspec
from aws_lambda_powertools.event_handler.openapi.params import Query

from cloud_functions.auth import ApiError
from cloud_functions.store.base import (
    BadPosition,
    EdgeFilters,
    EdgePage,
    GraphStore,
    PageOrder,
    PagePosition,
)

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
"""A Lambda answers at most 6 MB: edges of a 349k-edge tenant averaged 280 bytes of JSON, so 10,000
leave room for edges twice as large (and for YAML), where 20,000 would not."""
MAX_CURSOR = 8192  # characters: a position holds two names of at most 253 characters and a key
CURSOR_VERSION = 1
NEXT_CURSOR = "X-Next-Cursor"
_CHECKSUM_BYTES = 8
_MAX_PARTS = 8  # of a position: stores use at most three

Limit = Annotated[
    int,
    Query(
        ge=1,
        le=MAX_LIMIT,
        description="Edges a page holds at most. A unit the route keeps on one page (an edge merged "
        "across clusters; an export's document) is never split: one larger than this fills a page alone.",
    ),
]
Cursor = Annotated[
    str | None,
    Query(
        max_length=MAX_CURSOR,
        description=f"Where to read on: the `{NEXT_CURSOR}` header (the graph: also `nextCursor`) of "
        "the previous page, sent with the same query. Absent: the first page.",
    ),
]
NEXT_CURSOR_HEADER: dict[str, Any] = {
    NEXT_CURSOR: {
        "description": "The cursor of the next page; absent on the last page.",
        "schema": {"type": "string"},
    }
}
"""The header, as the OpenAPI document's responses name it."""


def query_digest(*parts: object) -> bytes:
    """What a cursor is bound to: the route, the order and the filters a page was read with."""
    return hashlib.blake2b(msgspec.msgpack.encode(parts), digest_size=8).digest()


def _checksum(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=_CHECKSUM_BYTES, person=b"nm-cursor").digest()


def encode_cursor(position: PagePosition, query: bytes) -> str:
    payload = msgspec.msgpack.encode([CURSOR_VERSION, query, position.cluster_id, list(position.at)])
    return base64.urlsafe_b64encode(payload + _checksum(payload)).rstrip(b"=").decode()


def bad_cursor(why: str) -> ApiError:
    detail = {"loc": ["query", "cursor"], "type": "value_error", "msg": why}
    return ApiError(422, "validation_error", f"cursor: {why}", [detail])


def decode_cursor(text: str | None, query: bytes) -> PagePosition | None:
    """The position a cursor names (None: no cursor, the first page); :class:`ApiError` 422
    saying what is wrong with it."""
    if not text:
        return None
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise bad_cursor("not URL-safe base64: send the cursor the last page came with, unchanged") from None
    payload, check = raw[:-_CHECKSUM_BYTES], raw[-_CHECKSUM_BYTES:]
    if not payload or not hmac.compare_digest(check, _checksum(payload)):
        raise bad_cursor("damaged or altered: send the cursor the last page came with, unchanged")
    try:
        value = msgspec.msgpack.decode(payload)
    except msgspec.DecodeError:
        raise bad_cursor("not a cursor of this API") from None
    if not (isinstance(value, list) and len(value) == 4 and value[0] == CURSOR_VERSION):
        raise bad_cursor("not a cursor of this version of the API: start again without one")
    _, bound, cluster_id, at = value
    if bound != query:
        raise bad_cursor(
            "it continues another query (route, merge, format or filters): start again without it"
        )
    parts_ok = isinstance(at, list) and len(at) <= _MAX_PARTS and all(isinstance(p, str | bytes) for p in at)
    if not (isinstance(cluster_id, str) and parts_ok):
        raise bad_cursor("not a cursor of this API")
    return PagePosition(cluster_id, tuple(at))


def read_page(
    store: GraphStore,
    tenant_id: str,
    order: PageOrder,
    *,
    cursor: str | None,
    query: bytes,
    limit: int,
    **filters: Unpack[EdgeFilters],
) -> EdgePage:
    """The page after ``cursor`` (read with ``query``); 422 for a cursor the store cannot use."""
    after = decode_cursor(cursor, query)
    try:
        return store.edges_page(tenant_id, order, after=after, limit=limit, **filters)
    except BadPosition:
        raise bad_cursor("not a position of this store: start again without it") from None


def next_cursor(page: EdgePage, query: bytes) -> str | None:
    """The cursor of the page after ``page`` (None: it is the last)."""
    return None if page.next is None else encode_cursor(page.next, query)


def cursor_header(cursor: str | None) -> dict[str, str]:
    """The response headers that carry ``cursor`` (none on the last page)."""
    return {} if cursor is None else {NEXT_CURSOR: cursor}
