"""agent.aws.proxyreports: IAM calls → the bounded collector's keys → ``reportAWSOperation``
mutations, checked against the mapper's schema and turned into observations by the mapper's own
conversion (``agent.mapper.api.mutations.aws_operations``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from graphql import build_schema, parse, validate
from graphql.execution.values import get_variable_values
from graphql.language import OperationDefinitionNode

from agent.aws.proxyreports import (
    MAX_KEYS_PER_MUTATION,
    MUTATION,
    OperationKey,
    client_ip,
    combine,
    mutations_for,
    operation_key,
    operations_for,
)
from agent.mapper.api.mutations import aws_operations
from agent.model import AwsOperation, IamCall
from agent.pending import Batch, Pending
from agent.reporter import Mutation

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = build_schema((ROOT / "agent" / "mapper" / "api" / "schema.graphql").read_text(encoding="utf-8"))
T = 1_714_564_800.123456

OBJECT = "arn:aws:s3:::yak-bucket/reports/2024.csv"
BUCKET = "arn:aws:s3:::yak-bucket"
TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/zebra-orders"

PUT = IamCall("s3", "PutObject", "s3:PutObject", OBJECT, "us-east-1")
GET = IamCall("s3", "GetObject", "s3:GetObject", OBJECT, "us-east-1")
HEAD = IamCall("s3", "HeadObject", "s3:GetObject", OBJECT, "us-east-1")
LIST = IamCall("s3", "ListObjectsV2", "s3:ListBucket", BUCKET, "us-east-1")
PUT_ITEM = IamCall("dynamodb", "PutItem", "dynamodb:PutItem", TABLE, "us-east-1")
WHO = IamCall("sts", "GetCallerIdentity", "sts:GetCallerIdentity", "*", "us-east-1")
UNKNOWN = IamCall("s3", "FrobnicateObject", "s3:FrobnicateObject", OBJECT, "us-east-1", known=False)


def check_against_schema(mutation: Mutation[OperationKey, float]) -> None:
    document = parse(mutation.query)
    assert validate(SCHEMA, document) == []
    operation = document.definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    coerced = get_variable_values(SCHEMA, operation.variable_definitions or [], mutation.variables)
    assert not isinstance(coerced, list), coerced  # GraphQLErrors when a field does not fit


@pytest.mark.parametrize(
    ("peer", "expected"),
    [
        ("10.244.0.27", "10.244.0.27"),
        ("::ffff:10.244.0.27", "10.244.0.27"),  # an IPv4 client seen by a dual-stack listener
        ("fd00:10:244:0:0:0:0:1b", "fd00:10:244::1b"),
        ("fe80::1%eth0", "fe80::1"),
    ],
)
def test_client_ip_is_sent_as_the_mapper_resolves_it(peer: str, expected: str) -> None:
    assert client_ip(peer) == expected


def test_client_ip_refuses_what_is_no_ip() -> None:
    with pytest.raises(ValueError):
        client_ip("pod.example")


def test_a_call_becomes_a_key_without_its_operation_or_region() -> None:
    # HeadObject and GetObject are both s3:GetObject on the object: one key, one report.
    assert operation_key("10.0.0.7", HEAD) == operation_key("10.0.0.7", GET)
    assert operation_key("10.0.0.7", GET) == OperationKey("10.0.0.7", OBJECT, "s3:GetObject")


def test_combine_keeps_the_newest_sighting() -> None:
    assert combine(T, T + 1) == combine(T + 1, T) == T + 1


def test_the_collector_aggregates_by_key_and_drops_new_keys_beyond_its_bound() -> None:
    dropped: list[int] = []
    collector: Pending[OperationKey, float] = Pending(2, combine, on_drop=dropped.append)
    for i, call in enumerate([GET, HEAD, PUT, GET]):  # GET and HEAD share a key
        assert collector.put(operation_key("10.0.0.7", call), T + i, T + i)
    assert len(collector) == 2
    assert not collector.put(operation_key("10.0.0.7", WHO), T, T)  # a third key: dropped
    assert collector.put(operation_key("10.0.0.7", PUT), T + 9, T + 9)  # a known key still updates
    assert dropped == [1]
    batch = collector.drain()
    assert batch.dropped == 1
    assert batch.entries == {
        OperationKey("10.0.0.7", OBJECT, "s3:GetObject"): T + 3,
        OperationKey("10.0.0.7", OBJECT, "s3:PutObject"): T + 9,
    }


def test_operations_group_actions_per_client_and_resource_sorted() -> None:
    keys = {
        operation_key(ip, call): T
        for ip in ("10.0.0.9", "10.0.0.7")
        for call in (PUT, GET, LIST, PUT_ITEM, WHO, UNKNOWN)
        if not (ip == "10.0.0.9" and call in (PUT, LIST, PUT_ITEM, WHO))
    }
    assert operations_for(keys) == [
        {"resource": "*", "actions": ["sts:GetCallerIdentity"], "srcIp": "10.0.0.7"},
        {"resource": TABLE, "actions": ["dynamodb:PutItem"], "srcIp": "10.0.0.7"},
        {"resource": BUCKET, "actions": ["s3:ListBucket"], "srcIp": "10.0.0.7"},
        {
            "resource": OBJECT,
            "actions": ["s3:FrobnicateObject", "s3:GetObject", "s3:PutObject"],
            "srcIp": "10.0.0.7",
        },
        {"resource": OBJECT, "actions": ["s3:FrobnicateObject", "s3:GetObject"], "srcIp": "10.0.0.9"},
    ]


def test_the_mutation_fits_the_schema_and_the_mapper_reads_back_each_action() -> None:
    entries = {operation_key("10.0.0.7", c): T for c in (PUT, GET, WHO, UNKNOWN)}
    [mutation] = mutations_for(Batch(entries))
    assert mutation.field == MUTATION == "reportAWSOperation"
    assert mutation.entries == entries
    check_against_schema(mutation)
    assert "$operation: [AWSOperation!]!" in mutation.query
    converted = aws_operations(mutation.variables["operation"], T)
    assert not converted.skipped
    assert sorted(converted.observations, key=lambda o: (o.resource, o.action)) == [  # type: ignore[union-attr]
        AwsOperation("10.0.0.7", 0, "sts", "GetCallerIdentity", "*", "", T),
        AwsOperation("10.0.0.7", 0, "s3", "FrobnicateObject", OBJECT, "", T),  # unknown: still reported
        AwsOperation("10.0.0.7", 0, "s3", "GetObject", OBJECT, "", T),
        AwsOperation("10.0.0.7", 0, "s3", "PutObject", OBJECT, "", T),
    ]


def test_nothing_but_the_action_resource_and_client_is_sent() -> None:
    [mutation] = mutations_for(Batch({operation_key("10.0.0.7", PUT): T}))
    assert mutation.variables == {
        "operation": [{"resource": OBJECT, "actions": ["s3:PutObject"], "srcIp": "10.0.0.7"}]
    }


def test_an_empty_batch_sends_nothing() -> None:
    assert mutations_for(Batch({})) == []


def test_a_large_batch_is_split_into_bounded_mutations_in_key_order() -> None:
    keys = [
        OperationKey("10.0.0.7", f"arn:aws:s3:::yak-bucket/k{i:05d}", "s3:GetObject")
        for i in range(MAX_KEYS_PER_MUTATION + 1)
    ]
    mutations = mutations_for(Batch({key: T for key in reversed(keys)}))
    assert [len(m.entries) for m in mutations] == [MAX_KEYS_PER_MUTATION, 1]
    assert [key for m in mutations for key in m.entries] == sorted(keys)
    assert mutations[1].variables["operation"] == [
        {"resource": keys[-1].resource, "actions": ["s3:GetObject"], "srcIp": "10.0.0.7"}
    ]
    for mutation in mutations:
        check_against_schema(mutation)
