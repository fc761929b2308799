"""agent.watchers.kafkareports: topic accesses (parsed from the real fixture lines) → the
``reportKafkaMapperResults`` mutation, checked against the mapper's schema and turned into
observations by the mapper's own conversion (``agent.mapper.api.mutations.kafka_results``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from graphql import build_schema, parse, validate
from graphql.execution.values import get_variable_values
from graphql.language import OperationDefinitionNode

from agent.mapper.api.mutations import KAFKA_SERVER_KIND, kafka_results
from agent.model import KafkaAccess, WorkloadIdentity
from agent.pending import Batch
from agent.reporter import Mutation
from agent.watchers.kafka import TopicAccess, classify_authorizer_line
from agent.watchers.kafkareports import (
    MAX_RESULTS_PER_MUTATION,
    MUTATION,
    AccessKey,
    access_key,
    combine,
    mutations_for,
    normalise_ip,
)
from agent.wire import format_time, parse_time

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = build_schema((ROOT / "agent" / "mapper" / "api" / "schema.graphql").read_text(encoding="utf-8"))
LINES = (ROOT / "tests" / "data" / "kafka" / "aclauthorizer.log").read_text(encoding="utf-8").splitlines()
T = 1_714_564_800.123456


def access(line_number: int) -> TopicAccess:
    result = classify_authorizer_line(LINES[line_number - 1])
    assert isinstance(result, TopicAccess)
    return result


def check_against_schema(mutation: Mutation[AccessKey, float]) -> None:
    document = parse(mutation.query)
    assert validate(SCHEMA, document) == []
    operation = document.definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    coerced = get_variable_values(SCHEMA, operation.variable_definitions or [], mutation.variables)
    assert not isinstance(coerced, list), coerced  # GraphQLErrors when a field does not fit


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("10.244.0.27", "10.244.0.27"),
        ("fd00:10:244:0:0:0:0:1b", "fd00:10:244::1b"),  # Java's uncompressed IPv6
        ("fe80:0:0:0:0:0:0:1%eth0", "fe80::1"),  # the broker's scope means nothing to the mapper
        ("0:0:0:0:0:ffff:a00:1b", "10.0.0.27"),  # IPv4-mapped
        ("0:0:0:0:0:0:0:1", "::1"),
    ],
)
def test_normalise_ip(host: str, expected: str) -> None:
    assert normalise_ip(host) == expected


def test_a_denied_access_and_an_ipv6_client_become_keys() -> None:
    denied = access_key(access(9), "kafka", "kafka-0")
    assert denied == AccessKey("10.244.2.8", "kafka-0", "kafka", "payments-v2", "Write", "User:bob", False)
    ipv6 = access_key(access(21), "kafka", "kafka-0")
    assert (ipv6.client_ip, ipv6.operation) == ("fd00:10:244::1b", "Read")


def test_combine_keeps_the_newest_sighting() -> None:
    assert combine(T, T + 1) == combine(T + 1, T) == T + 1


def test_the_mutation_fits_the_schema_and_the_mapper_reads_back_what_was_seen() -> None:
    allowed, denied = access_key(access(2), "kafka", "kafka-0"), access_key(access(9), "kafka", "kafka-1")
    [mutation] = mutations_for(Batch({denied: T + 1, allowed: T}))
    assert mutation.field == MUTATION == "reportKafkaMapperResults"
    assert mutation.entries == {allowed: T, denied: T + 1}
    check_against_schema(mutation)
    results = mutation.variables["results"]["results"]
    assert results[0] == {
        "srcIp": "10.244.0.27",
        "serverPodName": "kafka-0",
        "serverNamespace": "kafka",
        "topic": "orders.v1-eu_west",
        "operation": "Read",
        "lastSeen": format_time(T),
        "principal": "User:CN=client,OU=Dev Team,O=Example\\, Inc.,C=US",
        "allowed": True,
    }
    # The mapper's conversion, given the variables as its Time scalar parses them.
    as_parsed: dict[str, Any] = {"results": [{**r, "lastSeen": parse_time(r["lastSeen"])} for r in results]}
    converted = kafka_results(as_parsed)
    assert not converted.skipped
    assert converted.observations == [
        KafkaAccess(
            "10.244.0.27",
            WorkloadIdentity("kafka", "kafka-0", KAFKA_SERVER_KIND),
            "orders.v1-eu_west",
            "consume",
            parse_time(format_time(T)),
            0,
            "User:CN=client,OU=Dev Team,O=Example\\, Inc.,C=US",
            True,
        ),
        KafkaAccess(
            "10.244.2.8",
            WorkloadIdentity("kafka", "kafka-1", KAFKA_SERVER_KIND),
            "payments-v2",
            "produce",
            parse_time(format_time(T + 1)),
            0,
            "User:bob",
            False,
        ),
    ]


def test_an_empty_batch_sends_nothing() -> None:
    assert mutations_for(Batch({})) == []


def test_a_large_batch_is_split_into_bounded_mutations_in_key_order() -> None:
    keys = [
        AccessKey(f"10.1.{i // 250}.{i % 250}", "kafka-0", "kafka", "t", "Read", "User:a", True)
        for i in range(MAX_RESULTS_PER_MUTATION + 1)
    ]
    mutations = mutations_for(Batch({key: T for key in reversed(keys)}))
    assert [len(m.entries) for m in mutations] == [MAX_RESULTS_PER_MUTATION, 1]
    sent = [key for m in mutations for key in m.entries]
    assert sent == sorted(keys)
    assert [r["srcIp"] for r in mutations[1].variables["results"]["results"]] == [sorted(keys)[-1].client_ip]
    check_against_schema(mutations[1])
