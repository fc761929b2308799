"""The Lambda entry, settings, auth primitives, and the public routes (health, OpenAPI)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from cloud_handler_support import Cloud, cloud_fixture, event  # noqa: F401

import cloud_functions.handlers as handlers
from cloud_functions.auth import ApiError, authenticate, bearer_token, hash_token, new_token, require
from cloud_functions.handlers import CloudSettings, open_store
from cloud_functions.store.base import TokenRecord


def test_tokens() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(re.fullmatch(r"nm_[0-9a-f]{64}", t) for t in tokens)
    assert hash_token("nm_x") == hashlib.sha256(b"nm_x").hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", hash_token("nm_x"))
    assert bearer_token("Bearer nm_abc") == "nm_abc"
    assert bearer_token("bearer   nm_abc ") == "nm_abc"
    for header in (None, "", "Basic nm_abc", "Bearer", "Bearer abc", "Bearer nm_" + "a" * 300):
        assert bearer_token(header) is None


def test_require() -> None:
    read = TokenRecord("h", "t_a", "read", "k_1", 0.0)
    assert require(read, "read", tenant_id="t_a") is read
    with pytest.raises(ApiError) as error:
        require(read, "read", tenant_id="t_b")
    assert error.value.status == 403
    with pytest.raises(ApiError) as error:
        require(read, "admin")
    assert error.value.status == 403
    with pytest.raises(ApiError) as error:
        require(None, "read")
    assert error.value.status == 401


def test_admin_by_environment_hash(cloud: Cloud) -> None:
    token = new_token()
    with pytest.raises(ApiError):
        authenticate(cloud.store, f"Bearer {token}")
    record = authenticate(cloud.store, f"Bearer {token}", hash_token(token))
    assert record.role == "admin"


def test_settings_from_environment() -> None:
    settings = CloudSettings.from_environ(
        {"CLOUD_STORE": "dynamodb:graphs", "NM_ADMIN_TOKEN_SHA256": "ABC", "NM_MAX_BODY_BYTES": "10"}
    )
    assert settings == CloudSettings(store="dynamodb:graphs", admin_token_sha256="abc", max_body_bytes=10)
    assert CloudSettings.from_environ({}) == CloudSettings()
    for bad in ("postgres:x", "sqlite:", "nothing"):
        with pytest.raises(ValueError, match="CLOUD_STORE"):
            open_store(CloudSettings(store=bad))


def test_lambda_entry_reads_the_environment_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLOUD_STORE", f"sqlite:{tmp_path / 'lambda.db'}")
    monkeypatch.setattr(handlers, "_default", None)
    reply = handlers.handler(event("GET", "/healthz"), None)
    assert reply["statusCode"] == 200 and json.loads(reply["body"]) == {"status": "ok"}
    first = handlers._default
    monkeypatch.setenv("CLOUD_STORE", "dynamodb:ignored-now")
    assert handlers.lambda_handler(event("GET", "/healthz"), None)["statusCode"] == 200
    assert handlers._default is first
    assert (tmp_path / "lambda.db").exists()


def test_public_routes(cloud: Cloud) -> None:
    assert cloud.request("GET", "/healthz").json() == {"status": "ok"}
    # ``/`` and ``/console/...``: the console's files, tests/cloud/test_cloud_handlers_console.py
    document = cloud.request("GET", "/openapi.json")
    assert document.status == 200
    spec = document.json()
    assert spec["openapi"].startswith("3.") and "/v1/ingest" in spec["paths"]
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    # a bad token on a public route is ignored, not an error
    assert cloud.request("GET", "/healthz", token="junk").status == 200


def test_malformed_events_are_not_tracebacks(cloud: Cloud) -> None:
    for bad in ({}, {"rawPath": "/graph"}, {"version": "2.0", "rawPath": 5, "requestContext": "x"}):
        reply = cloud.app(bad, None)
        assert reply["statusCode"] == 400
        assert "Traceback" not in reply["body"]
        assert set(json.loads(reply["body"])) == {"error"}
