"""Stores written before the owner role, opened by this code: their tenant tokens (all ``read``
then, and administering their tenant) become ``owner`` tokens at once, the version is recorded,
and nothing else changes.

SQLite: ``tests/data/cloud/store_v3.db``, a real file written by the code of commit 30a1899
(``make_v3_store.py`` beside it regenerates it; its tokens are the constants below). DynamoDB:
token items written raw with boto3 in that code's layout (``TOKEN#<hash>``/``TOKEN`` and
``TENANT#<tenant>``/``TOKENID#<id>``, role ``read``), then the store opened on the table.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from cloud_handler_support import EVENTS, Cloud, Reply, Tenant, event

from cloud_functions.auth import PLATFORM_TENANT, hash_token
from cloud_functions.handlers import CloudApp, CloudSettings
from cloud_functions.store import dynamomigrations, sqliteschema
from cloud_functions.store.base import GraphStore, StoreError, TokenRecord
from cloud_functions.store.dynamodb import DynamoGraphStore
from cloud_functions.store.snapshots import SnapshotRecord
from cloud_functions.store.sqlite import SqliteGraphStore

FIXTURE = EVENTS / "store_v3.db"
T0 = 1764296106.0
TENANT, CLUSTER = "t_fixture00000001", "c_fixture00000001"
ADMIN_TOKEN = "nm_" + "ad" * 32
OLD_READ_TOKEN = "nm_" + "7e" * 32
INGEST_TOKEN = "nm_" + "16" * 32


def roles(store: GraphStore, tenant: str) -> dict[str, str]:
    return {t.token_id: t.role for t in store.tokens(tenant)}


def version_row(path: Path) -> tuple[int, int]:
    """(the schema_version row, PRAGMA user_version) of a closed file."""
    db = sqlite3.connect(path)
    try:
        (row,) = db.execute("SELECT version FROM schema_version").fetchall()
        return int(row[0]), int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


@pytest.fixture
def v3_copy(tmp_path: Path) -> Path:
    """A copy of the old store (opening migrates it in place; the fixture stays as the old code left it)."""
    path = tmp_path / "cloud.db"
    shutil.copyfile(FIXTURE, path)
    return path


# --------------------------------------------------------------------------- SQLite


def test_the_fixture_is_the_old_schema() -> None:
    db = sqlite3.connect(f"file:{FIXTURE}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA user_version").fetchone() == (3,)
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "schema_version" not in tables
        assert sorted(db.execute("SELECT token_id, role FROM tokens")) == [
            ("k_admin0000000001", "admin"),
            ("k_ingest000000001", "ingest"),
            ("k_read00000000001", "read"),
        ]
    finally:
        db.close()


def test_sqlite_read_tokens_become_owner_tokens(v3_copy: Path) -> None:
    store = SqliteGraphStore(v3_copy)
    try:
        assert roles(store, TENANT) == {"k_ingest000000001": "ingest", "k_read00000000001": "owner"}
        assert roles(store, PLATFORM_TENANT) == {"k_admin0000000001": "admin"}
        owner = store.get_token(hash_token(OLD_READ_TOKEN))
        assert owner == TokenRecord(hash_token(OLD_READ_TOKEN), TENANT, "owner", "k_read00000000001", T0)
        ingest = store.get_token(hash_token(INGEST_TOKEN))
        assert ingest is not None and (ingest.role, ingest.cluster_id) == ("ingest", CLUSTER)
        # the rest of the store is as the old code left it
        assert [(c.id, c.name, c.heartbeat) for c in store.clusters(TENANT)] == [(CLUSTER, "prod", T0 + 60)]
        assert store.has_batch(TENANT, CLUSTER, "batch-1")
        pairs = sorted((s.edge.client.name, getattr(s.edge.target, "name", "")) for s in store.edges(TENANT))
        assert pairs == [("cartservice", "redis-cart"), ("frontend", "cartservice")]
        assert [(h, body) for h, _, body in store.telemetry()] == [("0" * 64, b"\x0a\x00")]
        # version 8: the old file keeps snapshots too
        assert store.snapshots(TENANT, CLUSTER) == []
        store.put_snapshot(TENANT, CLUSTER, SnapshotRecord("before", T0, False, 0, T0), b"{}", keep=5)
        assert store.snapshot(TENANT, CLUSTER, "before") == (
            SnapshotRecord("before", T0, False, 0, T0),
            b"{}",
        )
    finally:
        store.close()
    assert version_row(v3_copy) == (sqliteschema.SCHEMA_VERSION, sqliteschema.SCHEMA_VERSION)


def test_sqlite_migration_runs_once(v3_copy: Path) -> None:
    SqliteGraphStore(v3_copy).close()
    db = sqlite3.connect(v3_copy)
    # A read token minted after the migration must stay a read token when the file is opened again.
    db.execute("INSERT INTO tokens VALUES ('later', ?, 'k_later', 'read', '', 0)", (TENANT,))
    db.commit()
    db.close()
    store = SqliteGraphStore(v3_copy)
    try:
        assert roles(store, TENANT)["k_later"] == "read"
        assert roles(store, TENANT)["k_read00000000001"] == "owner"
    finally:
        store.close()


def test_sqlite_refuses_a_newer_file_and_leaves_it_alone(v3_copy: Path) -> None:
    SqliteGraphStore(v3_copy).close()
    newer = sqliteschema.SCHEMA_VERSION + 1
    db = sqlite3.connect(v3_copy)
    db.execute("UPDATE schema_version SET version = ?", (newer,))
    db.commit()
    db.close()
    with pytest.raises(StoreError, match=f"schema version {newer}, newer than"):
        SqliteGraphStore(v3_copy)
    assert version_row(v3_copy)[0] == newer


def test_sqlite_a_failed_migration_changes_nothing(v3_copy: Path) -> None:
    """One transaction: a step that fails leaves the old file (version, tokens) as it was."""
    db = sqlite3.connect(v3_copy)
    db.execute("CREATE TRIGGER no_updates BEFORE UPDATE ON tokens BEGIN SELECT RAISE(ABORT, 'refused'); END")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match=r"migration to version 4 \(.*\) failed: refused"):
        SqliteGraphStore(v3_copy)
    db = sqlite3.connect(v3_copy)
    try:
        assert db.execute("PRAGMA user_version").fetchone() == (3,)
        assert db.execute("SELECT role FROM tokens WHERE token_id = 'k_read00000000001'").fetchone() == (
            "read",
        )
    finally:
        db.close()


def test_a_new_sqlite_file_records_the_version(tmp_path: Path) -> None:
    SqliteGraphStore(tmp_path / "new.db").close()
    assert version_row(tmp_path / "new.db") == (sqliteschema.SCHEMA_VERSION, sqliteschema.SCHEMA_VERSION)


def test_the_migrations_are_one_sequence() -> None:
    for steps in (sqliteschema.MIGRATIONS, dynamomigrations.MIGRATIONS):
        versions = [step.version for step in steps]
        assert versions == list(range(versions[0], versions[0] + len(versions))), "no gaps, no repeats"


def test_the_old_read_token_administers_its_tenant_through_the_api(v3_copy: Path) -> None:
    """What a user holding the tenant's token before the upgrade sees after it: an owner token, which
    can still add clusters and mint tokens, and mint a read token that only reads."""
    store = SqliteGraphStore(v3_copy)
    try:
        app = CloudApp(store, CloudSettings(store=f"sqlite:{v3_copy}"))
        cloud = Cloud(app, store, ADMIN_TOKEN, Tenant("", "", ""), Tenant("", "", ""))
        tenant = f"/v1/tenants/{TENANT}"
        added = cloud.request("POST", f"{tenant}/clusters", token=OLD_READ_TOKEN, body={"name": "staging"})
        assert added.status == 201
        minted = cloud.request("POST", f"{tenant}/tokens", token=OLD_READ_TOKEN)
        assert minted.status == 201 and minted.json()["role"] == "read"
        reader = minted.json()["token"]
        graph: Reply = cloud.request("GET", "/graph", token=reader)
        assert graph.status == 200 and len(graph.json()["edges"]) == 2
        assert cloud.request("POST", f"{tenant}/clusters", token=reader, body={"name": "x"}).status == 403
        assert cloud.request("GET", f"{tenant}/tokens", token=reader).status == 403
        assert cloud(event("GET", "/graph", token=ADMIN_TOKEN)).status == 403, "the admin is still admin"
    finally:
        store.close()


# --------------------------------------------------------------------------- DynamoDB


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _old_token_items(
    token: str, tenant: str, token_id: str, role: str, cluster: str = ""
) -> list[dict[str, Any]]:
    """A token's two items as the code of commit 30a1899 wrote them (its ``_token_items``)."""
    common: dict[str, Any] = {"role": _s(role), "created_at": {"N": repr(T0)}}
    if cluster:
        common["cluster"] = _s(cluster)
    by_hash = {"PK": _s(f"TOKEN#{hash_token(token)}"), "SK": _s("TOKEN"), "tenant": _s(tenant)}
    by_hash |= {"token_id": _s(token_id)} | common
    by_id = {
        "PK": _s(f"TENANT#{tenant}"),
        "SK": _s(f"TOKENID#{token_id}"),
        "token_hash": _s(hash_token(token)),
    }
    return [by_hash, by_id | common]


def write_old_table(client: Any, table: str) -> None:
    """The items of the SQLite fixture's tenants and tokens, raw, in the old layout (no version item)."""
    items: list[dict[str, Any]] = [
        {
            "PK": _s(f"TENANT#{PLATFORM_TENANT}"),
            "SK": _s("META"),
            "name": _s("platform"),
            "created_at": {"N": repr(T0)},
        },
        {
            "PK": _s(f"TENANT#{TENANT}"),
            "SK": _s("META"),
            "name": _s("fixture"),
            "created_at": {"N": repr(T0)},
        },
        {
            "PK": _s(f"TENANT#{TENANT}"),
            "SK": _s(f"CLUSTER#{CLUSTER}"),
            "name": _s("prod"),
            "created_at": {"N": repr(T0)},
        },
    ]
    items += _old_token_items(ADMIN_TOKEN, PLATFORM_TENANT, "k_admin0000000001", "admin")
    items += _old_token_items(OLD_READ_TOKEN, TENANT, "k_read00000000001", "read")
    items += _old_token_items("nm_" + "5e" * 32, TENANT, "k_read00000000002", "read")
    items += _old_token_items(INGEST_TOKEN, TENANT, "k_ingest000000001", "ingest", CLUSTER)
    for item in items:
        client.put_item(TableName=table, Item=item)


def version_item(client: Any, table: str) -> int | None:
    found = client.get_item(
        TableName=table, Key={"PK": _s("SCHEMA"), "SK": _s("VERSION")}, ConsistentRead=True
    )
    return None if "Item" not in found else int(found["Item"]["version"]["N"])


def test_dynamodb_read_tokens_become_owner_tokens(dynamodb_client: Any, dynamodb_table: str) -> None:
    write_old_table(dynamodb_client, dynamodb_table)
    assert version_item(dynamodb_client, dynamodb_table) is None
    store = DynamoGraphStore(dynamodb_client, dynamodb_table, page_size=2)  # the scan takes pages
    assert roles(store, TENANT) == {
        "k_ingest000000001": "ingest",
        "k_read00000000001": "owner",
        "k_read00000000002": "owner",
    }
    assert roles(store, PLATFORM_TENANT) == {"k_admin0000000001": "admin"}
    owner = store.get_token(hash_token(OLD_READ_TOKEN))
    assert owner == TokenRecord(hash_token(OLD_READ_TOKEN), TENANT, "owner", "k_read00000000001", T0)
    ingest = store.get_token(hash_token(INGEST_TOKEN))
    assert ingest is not None and (ingest.role, ingest.cluster_id) == ("ingest", CLUSTER)
    assert [c.id for c in store.clusters(TENANT)] == [CLUSTER]
    assert version_item(dynamodb_client, dynamodb_table) == dynamomigrations.SCHEMA_VERSION
    assert store.write_count() == 0, "the migration's writes are not the store's"


def test_dynamodb_migration_runs_once(dynamodb_client: Any, dynamodb_table: str) -> None:
    write_old_table(dynamodb_client, dynamodb_table)
    store = DynamoGraphStore(dynamodb_client, dynamodb_table)
    later = TokenRecord(hash_token("nm_" + "1a" * 32), TENANT, "read", "k_later", T0)
    store.put_token(later)
    again = DynamoGraphStore(dynamodb_client, dynamodb_table)
    assert again.get_token(later.token_hash) == later, "a read token minted after the migration stays read"
    assert roles(again, TENANT)["k_read00000000001"] == "owner"


def test_dynamodb_refuses_a_newer_table(dynamodb_client: Any, dynamodb_table: str) -> None:
    newer = dynamomigrations.SCHEMA_VERSION + 1
    write_old_table(dynamodb_client, dynamodb_table)
    dynamodb_client.put_item(
        TableName=dynamodb_table,
        Item={"PK": _s("SCHEMA"), "SK": _s("VERSION"), "version": {"N": str(newer)}},
    )
    with pytest.raises(StoreError, match=f"schema version {newer}, newer than"):
        DynamoGraphStore(dynamodb_client, dynamodb_table)
    found = dynamodb_client.get_item(
        TableName=dynamodb_table, Key={"PK": _s(f"TOKEN#{hash_token(OLD_READ_TOKEN)}"), "SK": _s("TOKEN")}
    )
    assert found["Item"]["role"] == _s("read"), "a table it refuses is not touched"


def test_a_new_dynamodb_table_records_the_version(dynamodb_client: Any, dynamodb_table: str) -> None:
    DynamoGraphStore(dynamodb_client, dynamodb_table)
    assert version_item(dynamodb_client, dynamodb_table) == dynamomigrations.SCHEMA_VERSION


# --------------------------------------------------------------------------- both stores


def test_owner_and_read_tokens_round_trip(store: GraphStore) -> None:
    store.create_tenant("t1", "t", T0)
    for role in ("owner", "read"):
        record = TokenRecord(f"hash-{role}", "t1", role, f"k_{role}", T0)  # type: ignore[arg-type]
        store.put_token(record)
        assert store.get_token(f"hash-{role}") == record
    assert roles(store, "t1") == {"k_owner": "owner", "k_read": "read"}
