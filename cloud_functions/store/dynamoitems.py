"""The items of the DynamoDB store's one table: built from records and edge records
(:mod:`cloud_functions.store.storedform`), read back into records; pure (no I/O).

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
                                                     live (BOOL), client_group, server_group
    GRAPH#<tenant>#<cluster>    BATCH#<batch id>     received_at, expires_at (TTL)
    TELEMETRY                   <time>#<uuid>#<part> cluster_hash, content_type, received_at, parts,
                                                     body (bytes, one part), expires_at (TTL)
    SCHEMA                      VERSION              version (of the table's items; no item: 1)

The filter attributes (``cns``, ``cname``, ``tns``, ``tname``) hold ``"=" + value``, so they are
never empty: DynamoDB Local, like AWS before 2020, refuses empty strings; other empty strings are
left out (:func:`strings`).

Two global secondary indexes (:data:`GROUP_INDEXES`, keys only) order a graph partition's edges by
workload, for pages that hold whole workloads: ``by_client`` on ``client_group`` (every edge item),
``by_server`` on ``server_group`` (edges to a workload target only: the index skips the others).
Their values: :func:`group_value`.
"""

from __future__ import annotations

from typing import Any

from cloud_functions.store.base import EdgeFilters, TokenRecord, parse_role
from cloud_functions.store.storedform import EdgeRecord, filter_fields

Item = dict[str, Any]
PART_BYTES = 300_000  # of a telemetry payload per item (an item holds at most 400 KB)
EDGE_PREFIX = "EDGE#"
CLIENT_GROUP, SERVER_GROUP = "client_group", "server_group"
GROUP_INDEXES = {"by_client": CLIENT_GROUP, "by_server": SERVER_GROUP}
"""The indexes by workload: name → the sort key attribute (the partition key is ``PK``)."""
MAX_GROUP_BYTES = 1024  # DynamoDB's limit on an index's sort key
VERSION_KEY = {"PK": {"S": "SCHEMA"}, "SK": {"S": "VERSION"}}


def string(value: str) -> Item:
    return {"S": value}


def number(value: float) -> Item:
    return {"N": repr(float(value))}


def strings(**values: str) -> Item:
    return {name: string(value) for name, value in values.items() if value}


def text_of(item: Item, name: str) -> str:
    return str(item.get(name, {}).get("S", ""))


def float_of(item: Item, name: str) -> float:
    return float(item[name]["N"])


def bool_of(item: Item, name: str) -> bool:
    return bool(item.get(name, {}).get("BOOL", False))


def sk_id(item: Item) -> str:
    """The id in a ``KIND#<id>`` sort key."""
    return str(item["SK"]["S"]).partition("#")[2]


def tenant_pk(tenant_id: str) -> str:
    return f"TENANT#{tenant_id}"


def graph_pk(tenant_id: str, cluster_id: str) -> str:
    return f"GRAPH#{tenant_id}#{cluster_id}"


def item_key(pk: str, sk: str) -> Item:
    return {"PK": string(pk), "SK": string(sk)}


def exists(pk: str, sk: str) -> Item:
    """A transaction's check that the item exists."""
    return {"ConditionCheck": {"Key": item_key(pk, sk), "ConditionExpression": "attribute_exists(PK)"}}


def edge_sk(key: bytes) -> str:
    return EDGE_PREFIX + key.hex()


def sk_key(sk: str) -> bytes:
    """The edge key in an edge item's sort key (:func:`edge_sk`)."""
    return bytes.fromhex(sk.removeprefix(EDGE_PREFIX))


def group_value(namespace: str, name: str) -> str:
    """A workload's value in an index by workload: ``=`` (never empty), the namespace, NUL, the
    name. NUL sorts before every other character, so the values sort as the (namespace, name)
    pairs do, and as the exporters sort workloads. A value beyond :data:`MAX_GROUP_BYTES` is cut:
    workloads sharing so long a start then share one value, and a page holds them together."""
    value = f"={namespace}\x00{name}"
    encoded = value.encode()
    if len(encoded) > MAX_GROUP_BYTES:
        value = encoded[:MAX_GROUP_BYTES].decode(errors="ignore")  # never half a character
    return value


def edge_item(graph: str, edge: EdgeRecord, version: int) -> Item:
    f = filter_fields(edge.doc)
    item: Item = item_key(graph, edge_sk(edge.key)) | {
        "edge": string(edge.text.decode()),
        "v": {"N": str(version)},
        "live": {"BOOL": edge.doc.live},
        "cns": string("=" + f.client_namespace),
        "cname": string("=" + f.client_name),
        "last_seen": number(f.last_seen),
    }
    item[CLIENT_GROUP] = string(group_value(f.client_namespace, f.client_name))
    if f.target_namespace is not None and f.target_name is not None:
        item |= {"tns": string("=" + f.target_namespace), "tname": string("=" + f.target_name)}
        item[SERVER_GROUP] = string(group_value(f.target_namespace, f.target_name))
    if f.methods:
        item["methods"] = {"SS": list(f.methods)}
    return item


MAX_IN_VALUES = 99
"""Values of one ``IN`` (DynamoDB counts at most 100 operands, the left one included)."""


def _one_of(placeholders: list[str]) -> str:
    """The ``{attribute}`` template of "is one of ``placeholders``": ``IN`` lists of at most
    :data:`MAX_IN_VALUES`, ORed."""
    runs = [placeholders[i : i + MAX_IN_VALUES] for i in range(0, len(placeholders), MAX_IN_VALUES)]
    return " OR ".join("{attribute} IN (" + ", ".join(run) + ")" for run in runs)


def _all_of(terms: list[str]) -> str:
    """``terms`` ANDed, an OR among several in parentheses (DynamoDB refuses redundant ones)."""
    if len(terms) == 1:
        return terms[0]
    return " AND ".join(f"({term})" if " OR " in term else term for term in terms)


def matches_nothing(filters: EdgeFilters) -> bool:
    """Whether ``filters`` keep no edge in a way DynamoDB cannot be asked: no method is named ""
    (``contains(methods, "")`` is refused) and ``IN ()`` is no expression."""
    namespaces = filters.get("namespaces")
    return filters.get("method") == "" or (namespaces is not None and not namespaces)


def edge_query(filters: EdgeFilters, heartbeat: float | None) -> dict[str, Any]:
    """The Query parameters (beyond the key condition) that read a graph's edge texts and ``live``
    flags that pass ``filters`` (but ``cluster_ids`` and ``clients``, applied elsewhere; and an
    empty ``namespaces``, which the caller answers with nothing); live edges count as seen at the
    cluster's ``heartbeat``."""
    names, where = {"#e": "edge", "#live": "live"}, []
    values: dict[str, Item] = {}
    namespaces, workload = filters.get("namespaces"), filters.get("workload")
    given = list[tuple[str, str]]()  # (attribute suffix, the term's template over {attribute})
    if namespaces is not None:  # an empty list matches nothing: the store reads nothing then
        listed = sorted(set(namespaces))
        values |= {f":ns{i}": string("=" + value) for i, value in enumerate(listed)}
        given.append(("ns", _one_of([f":ns{i}" for i in range(len(listed))])))
    if workload is not None:
        values[":name"] = string("=" + workload)
        given.append(("name", "{attribute} = :name"))
    if given:  # the client side or the target side matches every given field
        names |= {f"#{side}{field}": f"{side}{field}" for side in "ct" for field, _ in given}
        sides = [_all_of([t.format(attribute=f"#{side}{field}") for field, t in given]) for side in "ct"]
        where.append("((" + ") OR (".join(sides) + "))")
    if (method := filters.get("method")) is not None:
        names["#m"], values[":m"] = "methods", string(method)
        where.append("contains(#m, :m)")
    if (since := filters.get("since")) is not None:
        names["#ls"], values[":since"] = "last_seen", number(since)
        if heartbeat is not None and heartbeat >= since:
            where.append("(#ls >= :since OR #live = :live)")
            values[":live"] = {"BOOL": True}
        else:
            where.append("#ls >= :since")
    query: dict[str, Any] = {"ProjectionExpression": "#e, #live", "ExpressionAttributeNames": names}
    if where:
        query |= {"FilterExpression": " AND ".join(where), "ExpressionAttributeValues": values}
    return query


def token_items(record: TokenRecord) -> tuple[Item, Item]:
    """A token's two items: ``TOKEN#<hash>`` and the tenant's ``TOKENID#<id>``."""
    t = record.tenant_id
    common = strings(role=record.role, cluster=record.cluster_id) | {"created_at": number(record.created_at)}
    by_hash = item_key(f"TOKEN#{record.token_hash}", "TOKEN") | common
    by_hash |= {"tenant": string(t), "token_id": string(record.token_id)}
    by_id = item_key(tenant_pk(t), f"TOKENID#{record.token_id}") | common
    by_id |= {"token_hash": string(record.token_hash)}
    return by_hash, by_id


def token_record(token_hash: str, tenant_id: str, token_id: str, item: Item) -> TokenRecord:
    role = parse_role(text_of(item, "role"))
    created_at = float_of(item, "created_at")
    return TokenRecord(token_hash, tenant_id, role, token_id, created_at, cluster_id=text_of(item, "cluster"))


def telemetry_items(
    record: str, cluster_hash: str, body: bytes, content_type: str, now: float, *, expires_at: int
) -> list[Item]:
    """A telemetry payload's items: ``record`` (``<time>#<uuid>``) and its parts of ``PART_BYTES``."""
    chunks = [body[i : i + PART_BYTES] for i in range(0, len(body), PART_BYTES)] or [b""]
    common = {"received_at": number(now), "parts": {"N": str(len(chunks))}}
    common |= {"expires_at": {"N": str(expires_at)}}
    common |= strings(cluster_hash=cluster_hash, content_type=content_type)
    return [
        item_key("TELEMETRY", f"{record}#{part:02d}") | common | ({"body": {"B": chunk}} if chunk else {})
        for part, chunk in enumerate(chunks)
    ]


def version_item(version: int) -> Item:
    return VERSION_KEY | {"version": {"N": str(version)}}


def item_version(item: Item | None) -> int:
    """The version a version item records; without one, 1 (a new table, or one from before versions)."""
    return 1 if item is None else int(item["version"]["N"])
