"""The items of the DynamoDB store's one table (:mod:`cloud_functions.store.dynamodb`).

An item is a dict of DynamoDB attribute values (``{"S": ...}``, ``{"N": ...}``, ``{"BOOL": ...}``,
``{"SS": [...]}``, ``{"B": ...}``), keyed by ``PK`` and ``SK`` (strings; ids never contain ``#``,
see ``check_id``)::

    PK                          SK                   attributes
    TENANT#<tenant>             META                 name, created_at
    TENANT#<tenant>             CLUSTER#<cluster>    name, created_at, heartbeat (latest seen_at)
    TENANT#<tenant>             TOKENID#<token id>   token_hash, role, cluster, created_at
    TOKEN#<token hash>          TOKEN                tenant, token_id, role, cluster, created_at
    GRAPH#<tenant>#<cluster>    EDGE#<key, in hex>   edge (the codec's text), v (version), cns, cname,
                                                     tns, tname, methods (string set), last_seen,
                                                     live (BOOL)
    GRAPH#<tenant>#<cluster>    BATCH#<batch id>     received_at, expires_at (TTL)
    TELEMETRY                   <time>#<uuid>#<part> cluster_hash, content_type, received_at, parts,
                                                     body (bytes, one part), expires_at (TTL)
    SCHEMA                      VERSION              version (of the table's items; no item: 1)

The filter attributes (``cns``, ``cname``, ``tns``, ``tname``) hold ``"=" + value``, so they are
never empty: DynamoDB Local, like AWS before 2020, refuses empty strings; other empty strings are
left out (:func:`_strings`).

The helpers here build and read such items and keys and are pure (no I/O); the one exception is
:func:`create_table`, which creates the table through the boto3 client it is given.
"""

from __future__ import annotations

from typing import Any

from cloud_functions.store.base import TokenRecord, parse_role
from cloud_functions.store.storedform import EdgeRecord, filter_fields

Item = dict[str, Any]
_PART_BYTES = 300_000  # of a telemetry payload per item (an item holds at most 400 KB)


def create_table(client: Any, table_name: str) -> None:
    """Create the store's table (on-demand billing, ``expires_at`` TTL) and wait until it is active."""
    client.create_table(
        TableName=table_name,
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "PK", "AttributeType": "S"},
            {"AttributeName": "SK", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    client.update_time_to_live(
        TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
    )


def _s(value: str) -> Item:
    return {"S": value}


def _n(value: float) -> Item:
    return {"N": repr(float(value))}


def _strings(**values: str) -> Item:
    """String attributes, empty ones left out (DynamoDB Local, like AWS before 2020, refuses "")."""
    return {name: _s(value) for name, value in values.items() if value}


def _text(item: Item, name: str) -> str:
    return str(item.get(name, {}).get("S", ""))


def _float(item: Item, name: str) -> float:
    return float(item[name]["N"])


def _bool(item: Item, name: str) -> bool:
    return bool(item.get(name, {}).get("BOOL", False))


def _suffix(item: Item) -> str:
    """The id in a ``KIND#<id>`` sort key."""
    return str(item["SK"]["S"]).partition("#")[2]


def _tenant(tenant_id: str) -> str:
    return f"TENANT#{tenant_id}"


def _graph(tenant_id: str, cluster_id: str) -> str:
    return f"GRAPH#{tenant_id}#{cluster_id}"


def _key(pk: str, sk: str) -> Item:
    return {"PK": _s(pk), "SK": _s(sk)}


def _exists(pk: str, sk: str) -> Item:
    return {"ConditionCheck": {"Key": _key(pk, sk), "ConditionExpression": "attribute_exists(PK)"}}


EDGE_PREFIX = "EDGE#"


def edge_sk(key: bytes) -> str:
    """The sort key of the edge item of a 16-byte edge key."""
    return EDGE_PREFIX + key.hex()


def edge_item(graph: str, edge: EdgeRecord, version: int) -> Item:
    """An edge's item: its text, version ``v``, ``live`` and its filter attributes."""
    f = filter_fields(edge.doc)
    item: Item = _key(graph, edge_sk(edge.key)) | {
        "edge": _s(edge.text.decode()),
        "v": {"N": str(version)},
        "live": {"BOOL": edge.doc.live},
        "cns": _s("=" + f.client_namespace),
        "cname": _s("=" + f.client_name),
        "last_seen": _n(f.last_seen),
    }
    if f.target_namespace is not None and f.target_name is not None:
        item |= {"tns": _s("=" + f.target_namespace), "tname": _s("=" + f.target_name)}
    if f.methods:
        item["methods"] = {"SS": list(f.methods)}
    return item


def edge_filter(
    namespace: str | None, workload: str | None, method: str | None
) -> tuple[dict[str, str], dict[str, Item], list[str]]:
    """The attribute names, values and conditions (ANDed) that select edges of a workload (either
    side matches every given field: ``namespace``, ``workload``) and with ``method``."""
    names, where = {"#e": "edge", "#live": "live"}, []
    values: dict[str, Item] = {}
    given = [(field, value) for field, value in (("ns", namespace), ("name", workload)) if value is not None]
    if given:  # the client side or the target side matches every given field
        values |= {f":{field}": _s("=" + value) for field, value in given}
        names |= {f"#{side}{field}": f"{side}{field}" for side in "ct" for field, _ in given}
        sides = [" AND ".join(f"#{side}{field} = :{field}" for field, _ in given) for side in "ct"]
        where.append("((" + ") OR (".join(sides) + "))")
    if method is not None:
        names["#m"], values[":m"] = "methods", _s(method)
        where.append("contains(#m, :m)")
    return names, values, where


def _token_items(record: TokenRecord) -> tuple[Item, Item]:
    """A token's two items: ``TOKEN#<hash>`` (how a request finds its tenant) and the tenant's
    ``TOKENID#<id>``."""
    t = record.tenant_id
    common = _strings(role=record.role, cluster=record.cluster_id) | {"created_at": _n(record.created_at)}
    by_hash = _key(f"TOKEN#{record.token_hash}", "TOKEN") | common
    by_hash |= {"tenant": _s(t), "token_id": _s(record.token_id)}
    by_id = _key(_tenant(t), f"TOKENID#{record.token_id}") | common | {"token_hash": _s(record.token_hash)}
    return by_hash, by_id


def _telemetry_items(
    record: str, cluster_hash: str, body: bytes, content_type: str, now: float, *, expires_at: int
) -> list[Item]:
    """A telemetry payload's items: ``record`` (``<time>#<uuid>``) and its parts of ``_PART_BYTES``."""
    chunks = [body[i : i + _PART_BYTES] for i in range(0, len(body), _PART_BYTES)] or [b""]
    common = {"received_at": _n(now), "parts": {"N": str(len(chunks))}}
    common |= {"expires_at": {"N": str(expires_at)}}
    common |= _strings(cluster_hash=cluster_hash, content_type=content_type)
    return [
        _key("TELEMETRY", f"{record}#{part:02d}") | common | ({"body": {"B": chunk}} if chunk else {})
        for part, chunk in enumerate(chunks)
    ]


VERSION_KEY = {"PK": {"S": "SCHEMA"}, "SK": {"S": "VERSION"}}
"""The key of the item recording the table's schema version."""
UNVERSIONED = 1
"""The version of a table without a version item: written before versions were recorded (or new)."""


def version_item(version: int) -> Item:
    return VERSION_KEY | {"version": {"N": str(version)}}


def item_version(item: Item | None) -> int:
    """The version a version item (or its absence) records."""
    return UNVERSIONED if item is None else int(item["version"]["N"])


def _token(token_hash: str, tenant_id: str, token_id: str, item: Item) -> TokenRecord:
    return TokenRecord(
        token_hash,
        tenant_id,
        parse_role(_text(item, "role")),
        token_id,
        _float(item, "created_at"),
        cluster_id=_text(item, "cluster"),
    )
