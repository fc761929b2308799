"""agent.watchers.paths: query stripping and identifier templating of request paths."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.watchers.paths import TEMPLATE_MARKER, is_identifier, strip_query, template_path


@pytest.mark.parametrize(
    ("path", "stripped"),
    [
        ("/api/orders?id=1", "/api/orders"),
        ("/api/orders?", "/api/orders"),
        ("/search?q=a#results", "/search"),
        ("/doc#section?not-a-query", "/doc"),
        ("/plain", "/plain"),
        ("", ""),
        ("?only=query", ""),
        ("/a%3Fb", "/a%3Fb"),  # an encoded ? is part of the path
    ],
)
def test_strip_query(path: str, stripped: str) -> None:
    assert strip_query(path) == stripped


@pytest.mark.parametrize(
    ("path", "templated"),
    [
        # numbers
        ("/api/orders/1234", "/api/orders/{id}"),
        ("/api/orders/1234/items/7", "/api/orders/{id}/items/{id}"),
        ("/api/orders/1234?expand=items", "/api/orders/{id}"),
        ("/0", "/{id}"),
        # UUIDs, any case
        ("/users/3f2c1a9e-8b7d-4c6e-9f0a-1b2c3d4e5f60/cart", "/users/{id}/cart"),
        ("/users/3F2C1A9E-8B7D-4C6E-9F0A-1B2C3D4E5F60", "/users/{id}"),
        # hashes and hex ids
        ("/blobs/d41d8cd98f00b204e9800998ecf8427e", "/blobs/{id}"),  # md5
        ("/commits/da39a3ee5e6b4b0d3255bfef95601890afd80709", "/commits/{id}"),  # sha1
        ("/docs/507f1f77bcf86cd799439011", "/docs/{id}"),  # Mongo ObjectId
        ("/traces/4bf92f3577b34da6a3ce929d0e0e4736", "/traces/{id}"),
        # opaque tokens
        ("/r/01ARZ3NDEKTSV4RRFFQ69G5FAV", "/r/{id}"),  # ULID
        ("/s/dGhpcyBpcyBhIHRlc3Q9PQ", "/s/{id}"),  # base64
        ("/s/Zm9vYmFyYmF6cXV4MTIz", "/s/{id}"),
        ("/s/k3j5h6g7f8d9s0a1", "/s/{id}"),  # base36
        # words, versions, names: kept
        ("/api/v2/orders", "/api/v2/orders"),
        ("/oauth2-callback-v2-step3", "/oauth2-callback-v2-step3"),
        ("/listAllOrdersForCustomer2024", "/listAllOrdersForCustomer2024"),
        ("/reports/order-2023-summary", "/reports/order-2023-summary"),
        ("/authentication-service/healthz", "/authentication-service/healthz"),
        ("/cafe", "/cafe"),  # hex letters, but short
        # dots: kept whole, never split or truncated
        ("/static/app.v2.js", "/static/app.v2.js"),
        ("/static/app.v2.min.js?v=3", "/static/app.v2.min.js"),
        ("/v1.2/items/5", "/v1.2/items/{id}"),
        ("/files/123.json", "/files/123.json"),
        ("/ubuntu/dists/jammy-security/InRelease", "/ubuntu/dists/jammy-security/InRelease"),
        # shape kept
        ("/", "/"),
        ("/a//1/", "/a//{id}/"),
        ("*", "*"),
        ("/caf%C3%A9/12", "/caf%C3%A9/{id}"),
        ("/٣", "/٣"),  # not ASCII digits
    ],
)
def test_template_path(path: str, templated: str) -> None:
    assert template_path(path) == templated


def test_the_marker_is_the_one_the_exporters_match() -> None:
    assert TEMPLATE_MARKER == "{id}"


@settings(max_examples=500, derandomize=True, database=None, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="/?#"), max_size=30), max_size=8))
def test_templating_keeps_the_segment_count_and_only_ever_writes_the_marker(segments: list[str]) -> None:
    path = "/" + "/".join(segments)
    out = template_path(path).split("/")
    assert len(out) == len(path.split("/"))
    for before, after in zip(path.split("/"), out, strict=True):
        assert after == (TEMPLATE_MARKER if is_identifier(before) else before)
    assert template_path(template_path(path)) == template_path(path)
