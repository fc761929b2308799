"""Bodies of extreme shapes (issue 11): nesting past any sane depth, integers of thousands of
digits, huge floats, long strings, and media types in any letter case. Every JSON route answers
them with a 4xx, never a 500; the limits are named in a 400 ``bad_request``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cloud_handler_support import Cloud, cloud_fixture  # noqa: F401
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_functions.handlers.app import openapi_document

INGEST_ROUTES = ("/v1/ingest", "/v1/snapshots", "/v1/coverage")  # a cluster's ingest token gets past auth


def json_routes(cloud: Cloud) -> list[tuple[str, str, str]]:
    """Every (method, path, token) of the OpenAPI document that takes a request body, its path
    parameters filled in with tenant ``a``'s ids and the token that gets past auth."""
    cluster = next(iter(cloud.a.clusters))
    routes = []
    for path, operations in json.loads(openapi_document())["paths"].items():
        for method, operation in operations.items():
            if "requestBody" not in operation or path == "/v1/metrics":
                continue
            filled = path.replace("{tenantId}", cloud.a.id).replace("{clusterId}", cluster)
            required = {p["name"] for p in operation.get("parameters", ()) if p.get("required")}
            filled += f"?cluster={cluster}" if "cluster" in required else ""  # the policy check's
            token = cloud.admin_token if path == "/v1/tenants" else cloud.a.owner_token
            token = cloud.a.clusters[cluster] if path in INGEST_ROUTES else token
            routes.append((method.upper(), filled, token))
    return routes


def test_the_document_has_json_routes(cloud: Cloud) -> None:
    paths = {path for _, path, _ in json_routes(cloud)}
    assert {"/v1/ingest", "/v1/tenants", f"/v1/tenants/{cloud.a.id}/clusters"} <= paths
    assert f"/v1/tenants/{cloud.a.id}/tokens" in paths


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        (b"[" * 5000 + b"]" * 5000, "deep"),
        (b'{"name": ' + b"[" * 65 + b"]" * 65 + b"}", "deep"),
        (b'{"name": ' + b"1" * 5000 + b"}", "more than 100 characters"),
        (b'{"batchId": "b", "edges": [], "n": -' + b"9" * 5000 + b"}", "more than 100 characters"),
        (b'{"name": 1.' + b"5" * 5000 + b"}", "more than 100 characters"),
    ],
)
def test_extreme_json_is_a_bad_request_on_every_route(cloud: Cloud, raw: bytes, named: str) -> None:
    for method, path, token in json_routes(cloud):
        reply = cloud.request(method, path, token=token, raw=raw)
        assert reply.status == 400, (path, reply)
        assert reply.error_code == "bad_request"
        assert named in reply.json()["error"]["message"], reply


def test_nesting_within_the_limit_and_strings_of_digits_pass_the_check(cloud: Cloud) -> None:
    name = "1" * 200  # digits inside a string are no number
    reply = cloud.request("POST", "/v1/tenants", token=cloud.admin_token, body={"name": name})
    assert reply.status in (201, 422), reply
    nested: Any = {"name": "ok", "x": [[[["deep enough"]]]]}
    reply = cloud.request("POST", "/v1/tenants", token=cloud.admin_token, body=nested)
    assert reply.status in (201, 422), reply


@pytest.mark.parametrize("content_type", ["APPLICATION/JSON", "Application/Json; charset=UTF-8"])
def test_media_types_are_case_insensitive(cloud: Cloud, content_type: str) -> None:
    reply = cloud.request(
        "POST", "/v1/tenants", token=cloud.admin_token, body={"name": "cased"}, content_type=content_type
    )
    assert reply.status == 201, reply
    cluster = next(iter(cloud.a.clusters))
    body = {"batchId": f"b-{content_type}", "edges": []}
    reply = cloud.request(
        "POST", "/v1/ingest", token=cloud.a.clusters[cluster], body=body, content_type=content_type
    )
    assert reply.status == 200, reply


_LEAVES = st.one_of(
    st.integers(min_value=-(10**4200), max_value=10**4200),  # json.dumps writes up to 4300 digits
    st.floats(allow_nan=False),
    st.text(max_size=5000),
    st.booleans(),
    st.none(),
)


def _extreme_text(value: Any, depth: int, huge: str) -> str:
    """``value`` as JSON, wrapped ``depth`` deep in lists, with a huge number literal beside it
    (one the json module would never write: ``1e999999``, thousands of digits)."""
    text = json.dumps({"name": value, "n": 0}).replace('"n": 0', f'"n": {huge}')
    return "[" * depth + text + "]" * depth


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    value=st.recursive(
        _LEAVES,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=10,
    ),
    depth=st.sampled_from([0, 1, 63, 64, 65, 1000, 20000]),
    huge=st.sampled_from(["0", "1e999999", "-1e-999999", "9" * 4400, "1." + "0" * 5000, "1" * 64]),
)
def test_extreme_shapes_never_answer_5xx(cloud: Cloud, value: Any, depth: int, huge: str) -> None:
    raw = _extreme_text(value, depth, huge).encode()
    for method, path, token in json_routes(cloud):
        reply = cloud.request(method, path, token=token, raw=raw)
        assert 400 <= reply.status < 500, (path, reply.status, reply.text[:200])
