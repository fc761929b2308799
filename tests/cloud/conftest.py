"""Fixtures for the cloud's stores: SQLite in tmp_path, and AWS's DynamoDB Local for real.

DynamoDB Local (a Java jar, installed by ``make install``) is started once per test session on
a free 127.0.0.1 port and killed at the end; each test gets a fresh table. Tests that need it are
skipped, with the reason, only when java or the jar is missing (``DYNAMODB_LOCAL_JAR`` overrides
the jar's path); a jar that does not come up is an error.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from cloud_functions.store.base import GraphStore
from cloud_functions.store.dynamodb import DynamoGraphStore
from cloud_functions.store.dynamotable import create_table
from cloud_functions.store.sqlite import SqliteGraphStore
from tests.support.dynamolocal import JAR, DynamoLocalMissing, dynamodb_local


def _client(endpoint: str) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(max_pool_connections=16, retries={"max_attempts": 3, "mode": "standard"}),
    )


@pytest.fixture(scope="session")
def dynamodb_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a DynamoDB Local process shared by the session (127.0.0.1 only)."""
    jar = Path(os.environ.get("DYNAMODB_LOCAL_JAR", JAR))
    try:
        with dynamodb_local(tmp_path_factory.mktemp("dynamodb"), jar) as endpoint:
            yield endpoint
    except DynamoLocalMissing as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def dynamodb_client(dynamodb_endpoint: str) -> Any:
    return _client(dynamodb_endpoint)


@pytest.fixture
def dynamodb_table(dynamodb_client: Any) -> Iterator[str]:
    """A fresh, empty table for one test (deleted afterwards)."""
    name = f"nm-test-{uuid.uuid4().hex[:12]}"
    create_table(dynamodb_client, name)
    yield name
    dynamodb_client.delete_table(TableName=name)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqliteGraphStore]:
    store = SqliteGraphStore(tmp_path / "cloud.db")
    yield store
    store.close()


@pytest.fixture
def dynamodb_store(dynamodb_client: Any, dynamodb_table: str) -> DynamoGraphStore:
    return DynamoGraphStore(dynamodb_client, dynamodb_table)


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request: pytest.FixtureRequest) -> GraphStore:
    """Each store in turn: the shared suite runs once per implementation."""
    found: GraphStore = request.getfixturevalue(f"{request.param}_store")
    return found


@pytest.fixture(autouse=True)
def _fresh_telemetry_allowance() -> None:
    """The telemetry rate limiter lives as long as the process (a Lambda container): each test
    starts with every source's allowance full."""
    from cloud_functions.handlers.telemetry import limiter

    limiter.clear()
