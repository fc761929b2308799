"""Report mutation inputs → observations (agent.mapper.api.mutations), the extension fields of
``Destination`` in the schema, and the Time scalar as the schema binds it (agent.mapper.api.scalars
over agent.wire's time format)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from graphql import GraphQLInputObjectType, GraphQLScalarType, StringValueNode, print_type

from agent.mapper.api import build_schema, mutations
from agent.model import (
    AwsOperation,
    DnsAnswer,
    IstioRequest,
    KafkaAccess,
    SocketConnection,
    TcpConnection,
    WorkloadIdentity,
)

T0 = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC).timestamp()
SCHEMA = build_schema()
TIME = SCHEMA.type_map["Time"]
assert isinstance(TIME, GraphQLScalarType)
parse_time, format_time = TIME.parse_value, TIME.serialize


def _src(src: str, *destinations: dict, hostname: str = "") -> dict:
    return {"srcIp": src, "srcHostname": hostname, "destinations": list(destinations)}


# --------------------------------------------------------------------------- Time


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-06-01T12:00:00Z", T0),
        ("2024-06-01T12:00:00z", T0),
        ("2024-06-01t12:00:00Z", T0),
        ("2024-06-01T12:00:00.5Z", T0 + 0.5),
        ("2024-06-01T12:00:00.123456789Z", T0 + 0.123456789),  # Go's RFC3339Nano
        ("2024-06-01T12:00:00.1234567890Z", T0 + 0.123457),  # any fraction, rounded to microseconds
        ("2024-06-01T14:00:00+02:00", T0),
        ("2024-06-01T10:30:00.25-01:30", T0 + 0.25),
        ("2024-06-01T12:00:00+00:00", T0),
    ],
)
def test_time_parses_rfc3339(text: str, expected: float) -> None:
    assert parse_time(text) == pytest.approx(expected, abs=1e-6)
    assert TIME.parse_literal(StringValueNode(value=text)) == parse_time(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2024-06-01",
        "2024-06-01T12:00:00",  # no offset
        "2024-06-01T12:00Z",
        "2024-13-01T12:00:00Z",
        "2024-02-30T12:00:00Z",
        "2024-06-01T24:00:00Z",
        "2024-06-01T12:00:60Z",
        "2024-06-01T12:00:00+25:00",
        "2024-06-01T12:00:00.Z",
        " 2024-06-01T12:00:00Z",
        "1717243200",
        "1999-12-31T23:59:59Z",  # before 2000: out of the wire's range
        "9999-12-31T23:00:00-05:00",  # after 2100
    ],
)
def test_time_reads_what_is_not_an_rfc3339_time_in_range_as_nan(text: str) -> None:
    """So the report skips that entry (and counts it) instead of refusing the whole batch."""
    assert math.isnan(parse_time(text))
    assert math.isnan(TIME.parse_literal(StringValueNode(value=text)))


@pytest.mark.parametrize("value", [1717243200, 1.5, None, ["2024-06-01T12:00:00Z"]])
def test_time_rejects_non_strings(value: object) -> None:
    with pytest.raises(ValueError, match="string"):
        parse_time(value)


def test_time_round_trips() -> None:
    assert format_time(T0 + 0.918878) == "2024-06-01T12:00:00.918878Z"
    assert format_time(T0) == "2024-06-01T12:00:00Z"  # a zero fraction is left out
    assert format_time(datetime(2024, 6, 1, 14, tzinfo=UTC)) == "2024-06-01T14:00:00Z"
    assert parse_time(format_time(T0 + 0.918878)) == pytest.approx(T0 + 0.918878, abs=1e-6)


# --------------------------------------------------------------------------- the schema's Destination


def test_destination_keeps_otterizes_fields_and_adds_only_optional_ones() -> None:
    destination = SCHEMA.type_map["Destination"]
    assert isinstance(destination, GraphQLInputObjectType)
    fields = {name: str(field.type) for name, field in destination.fields.items()}
    otterize = {
        "destination": "String!",
        "destinationIP": "String",
        "destinationPort": "Int",
        "TTL": "Int",
        "lastSeen": "Time!",
    }
    assert {name: fields[name] for name in otterize} == otterize
    assert {name: kind for name, kind in fields.items() if name not in otterize} == {
        "srcPort": "Int",
        "dnsServerIP": "String",
        "cnames": "[String!]",
        "clientPodUid": "String",
        "clientPod": "String",
    }
    assert all(
        "network-mapper extension" in (destination.fields[n].description or "")
        for n in fields.keys() - otterize
    )
    assert "srcPort" in print_type(destination)


# --------------------------------------------------------------------------- DNS


def test_capture_results_group_ips_per_source_and_name() -> None:
    results = {
        "results": [
            _src(
                "10.0.0.1",
                {
                    "destination": "cart.shop.svc.cluster.local",
                    "destinationIP": "10.96.0.3",
                    "TTL": 5,
                    "lastSeen": T0,
                },
                {
                    "destination": "cart.shop.svc.cluster.local",
                    "destinationIP": "10.96.0.4",
                    "TTL": 30,
                    "lastSeen": T0 + 2,
                },
                {"destination": "cart.shop.svc.cluster.local", "destinationIP": "10.96.0.3", "lastSeen": T0},
                {"destination": "example.com", "lastSeen": T0 + 1},
            ),
            _src(
                "fd00::1",
                {"destination": "example.com", "destinationIP": "2606:2800::1", "TTL": None, "lastSeen": T0},
            ),
        ]
    }
    converted = mutations.capture_results(results)
    assert converted.skipped.total() == 0
    assert converted.observations == [
        DnsAnswer(
            "10.0.0.1", 0, "", "cart.shop.svc.cluster.local", ("10.96.0.3", "10.96.0.4"), T0 + 2, (), 30
        ),
        DnsAnswer("10.0.0.1", 0, "", "example.com", (), T0 + 1, (), 0),
        DnsAnswer("fd00::1", 0, "", "example.com", ("2606:2800::1",), T0, (), 0),
    ]


def test_capture_results_skip_and_count_entries_that_cannot_be_observations() -> None:
    results = {
        "results": [
            _src(
                "not-an-ip",
                {"destination": "a.com", "lastSeen": T0},
                {"destination": "b.com", "lastSeen": T0},
            ),
            _src(
                "10.0.0.1",
                {"destination": "", "lastSeen": T0},
                {"destination": "c.com", "destinationIP": "garbage", "lastSeen": T0},
                {"destination": "d.com", "destinationIP": "1.2.3.4", "lastSeen": T0},
            ),
        ]
    }
    converted = mutations.capture_results(results)
    assert converted.skipped.total() == 4
    assert "srcIp is not an IP" in converted.first
    assert [o.qname for o in converted.observations if isinstance(o, DnsAnswer)] == ["d.com"]


def test_capture_results_carry_the_sniffers_extension_fields_from_the_newest_entry() -> None:
    sniffed = {"srcPort": 53124, "dnsServerIP": "10.96.0.10", "cnames": ["shop.cdn.net", "edge-3.cdn.net"]}
    results = {
        "results": [
            _src(
                "10.0.0.1",
                {
                    "destination": "shop.example.com",
                    "destinationIP": "1.1.1.1",
                    "TTL": 60,
                    "lastSeen": T0,
                    **sniffed,
                },
                {
                    "destination": "shop.example.com",
                    "destinationIP": "1.1.1.2",
                    "TTL": 60,
                    "lastSeen": T0,
                    **sniffed,
                },
                {
                    "destination": "shop.example.com",
                    "destinationIP": "1.1.1.3",
                    "TTL": 5,
                    "lastSeen": T0 - 30,
                    "srcPort": 40000,
                    "dnsServerIP": "10.96.0.11",
                    "cnames": None,
                },
                {
                    "destination": "old.example.com",
                    "destinationIP": "2.2.2.2",
                    "lastSeen": T0,
                },  # Otterize's shape
            )
        ]
    }
    converted = mutations.capture_results(results)
    assert converted.skipped.total() == 0
    assert converted.observations == [
        DnsAnswer(
            "10.0.0.1",
            53124,
            "10.96.0.10",
            "shop.example.com",
            ("1.1.1.1", "1.1.1.2", "1.1.1.3"),
            T0,
            ("shop.cdn.net", "edge-3.cdn.net"),
            60,
        ),
        DnsAnswer("10.0.0.1", 0, "", "old.example.com", ("2.2.2.2",), T0, (), 0),
    ]


def test_capture_results_skip_entries_whose_extension_fields_are_wrong() -> None:
    results = {
        "results": [
            _src(
                "10.0.0.1",
                {"destination": "a.com", "destinationIP": "1.1.1.1", "lastSeen": T0, "srcPort": 65536},
                {"destination": "b.com", "destinationIP": "1.1.1.2", "lastSeen": T0, "dnsServerIP": "dns"},
                {"destination": "c.com", "destinationIP": "1.1.1.3", "lastSeen": T0, "srcPort": 65535},
            )
        ]
    }
    converted = mutations.capture_results(results)
    assert converted.skipped.total() == 2
    assert converted.first == "srcPort out of range: 65536"
    assert converted.observations == [DnsAnswer("10.0.0.1", 65535, "", "c.com", ("1.1.1.3",), T0, (), 0)]


# --------------------------------------------------------------------------- TCP and socket scan


def test_tcp_results_take_destination_ip_and_port() -> None:
    results = {
        "results": [
            _src(
                "10.0.0.1",
                {"destination": "10.0.0.2", "destinationPort": 6379, "lastSeen": T0},
                {
                    "destination": "ignored-name",
                    "destinationIP": "10.0.0.3",
                    "destinationPort": 80,
                    "lastSeen": T0,
                },
                {"destination": "10.0.0.4", "lastSeen": T0},
                {"destination": "10.0.0.5", "destinationPort": 70000, "lastSeen": T0},
                {"destination": "redis", "destinationPort": 1, "lastSeen": T0},
            )
        ]
    }
    converted = mutations.tcp_results(results)
    assert converted.observations == [
        TcpConnection("10.0.0.1", 0, "10.0.0.2", 6379, T0),
        TcpConnection("10.0.0.1", 0, "10.0.0.3", 80, T0),
        TcpConnection("10.0.0.1", 0, "10.0.0.4", 0, T0),
    ]
    assert converted.skipped.total() == 2


def test_socket_scan_results_carry_the_source_hostname() -> None:
    results = {
        "results": [
            _src(
                "10.0.0.1",
                {"destination": "10.0.0.2", "destinationPort": 443, "lastSeen": T0},
                hostname="frontend-7d4-abc",
            )
        ]
    }
    assert mutations.socket_results(results).observations == [
        SocketConnection("10.0.0.1", 0, "10.0.0.2", 443, T0, "frontend-7d4-abc")
    ]


def test_socket_scan_results_carry_the_client_pod_of_each_destination() -> None:
    uid = "1b2c3d4e-0000-4000-8000-00000000aaaa"
    results = {
        "results": [
            _src(
                "192.168.1.10",
                {"destination": "10.0.0.2", "destinationPort": 443, "lastSeen": T0, "clientPodUid": uid},
                {
                    "destination": "10.0.0.2",
                    "destinationPort": 80,
                    "lastSeen": T0,
                    "clientPod": "mon/agent-x",
                },
                {"destination": "10.0.0.3", "destinationPort": 80, "lastSeen": T0, "clientPod": None},
                {"destination": "10.0.0.4", "destinationPort": 80, "lastSeen": T0, "clientPod": "x" * 3000},
            )
        ]
    }
    converted = mutations.socket_results(results)
    assert converted.observations == [
        SocketConnection("192.168.1.10", 0, "10.0.0.2", 443, T0, "", uid),
        SocketConnection("192.168.1.10", 0, "10.0.0.2", 80, T0, "", "", "mon/agent-x"),
        SocketConnection("192.168.1.10", 0, "10.0.0.3", 80, T0),
    ]
    assert converted.skipped == {"too_long": 1}


def test_tcp_and_socket_results_carry_the_client_port() -> None:
    results = {
        "results": [
            _src(
                "10.0.0.1",
                {"destination": "10.0.0.2", "destinationPort": 6379, "srcPort": 41234, "lastSeen": T0},
                {"destination": "10.0.0.3", "destinationPort": 80, "srcPort": None, "lastSeen": T0},
                {"destination": "10.0.0.4", "destinationPort": 80, "srcPort": -1, "lastSeen": T0},
                hostname="cart-5d8",
            )
        ]
    }
    tcp = mutations.tcp_results(results)
    assert tcp.observations == [
        TcpConnection("10.0.0.1", 41234, "10.0.0.2", 6379, T0),
        TcpConnection("10.0.0.1", 0, "10.0.0.3", 80, T0),
    ]
    assert (tcp.skipped.total(), tcp.first) == (1, "srcPort out of range: -1")
    assert mutations.socket_results(results).observations == [
        SocketConnection("10.0.0.1", 41234, "10.0.0.2", 6379, T0, "cart-5d8"),
        SocketConnection("10.0.0.1", 0, "10.0.0.3", 80, T0, "cart-5d8"),
    ]


# --------------------------------------------------------------------------- Kafka, Istio, AWS


def test_kafka_results_name_the_server_pod_for_the_resolver() -> None:
    results = {
        "results": [
            {
                "srcIp": "10.0.0.1",
                "serverPodName": "kafka-0",
                "serverNamespace": "infra",
                "topic": "orders",
                "operation": "Consume",
                "lastSeen": T0,
            },
            {
                "srcIp": "bad",
                "serverPodName": "kafka-0",
                "serverNamespace": "infra",
                "topic": "orders",
                "operation": "produce",
                "lastSeen": T0,
            },
        ]
    }
    converted = mutations.kafka_results(results)
    assert converted.observations == [
        KafkaAccess("10.0.0.1", WorkloadIdentity("infra", "kafka-0", "Pod"), "orders", "consume", T0)
    ]
    assert converted.skipped.total() == 1


def test_kafka_results_carry_the_principal_and_the_verdict() -> None:
    entry = {"srcIp": "10.0.0.1", "serverPodName": "kafka-0", "serverNamespace": "infra", "topic": "orders"}
    entry |= {"operation": "Read", "lastSeen": T0, "principal": "User:CN=client,O=Example\\, Inc."}
    converted = mutations.kafka_results(
        {"results": [entry, entry | {"allowed": False}, entry | {"allowed": None}]}
    )
    server = WorkloadIdentity("infra", "kafka-0", "Pod")
    principal = "User:CN=client,O=Example\\, Inc."
    assert converted.observations == [
        KafkaAccess("10.0.0.1", server, "orders", "consume", T0, 0, principal, True),
        KafkaAccess("10.0.0.1", server, "orders", "consume", T0, 0, principal, False),
        KafkaAccess(
            "10.0.0.1", server, "orders", "consume", T0, 0, principal, True
        ),  # null: Otterize's default
    ]


def test_istio_results_carry_the_principal_and_the_codes_and_skip_impossible_codes() -> None:
    base = {"srcWorkload": "web", "srcWorkloadNamespace": "shop", "dstWorkload": "cart"}
    base |= {"dstServiceName": "cart", "dstWorkloadNamespace": "shop", "path": "/cart", "lastSeen": T0}
    base |= {"methods": ["GET"], "srcPrincipal": "spiffe://cluster.local/ns/shop/sa/web"}
    converted = mutations.istio_results(
        {"results": [base | {"responseCodes": [200, 503]}, base | {"responseCodes": [200, 99]}]}
    )
    assert converted.observations == [
        IstioRequest(
            "web", "shop", "cart", "shop", "cart", "/cart", "GET", 1, T0, base["srcPrincipal"], (200, 503)
        )
    ]
    assert converted.skipped == {"bad_status": 1}


def test_istio_results_one_request_per_method() -> None:
    base = {
        "srcWorkload": "frontend",
        "srcWorkloadNamespace": "shop",
        "dstWorkload": "cart",
        "dstServiceName": "cartservice",
        "dstWorkloadNamespace": "shop",
        "path": "/cart",
        "lastSeen": T0,
    }
    converted = mutations.istio_results(
        {"results": [{**base, "methods": ["GET", "POST"]}, {**base, "methods": []}]}
    )
    assert converted.observations == [
        IstioRequest("frontend", "shop", "cart", "shop", "cartservice", "/cart", "GET", 1, T0),
        IstioRequest("frontend", "shop", "cart", "shop", "cartservice", "/cart", "POST", 1, T0),
        IstioRequest("frontend", "shop", "cart", "shop", "cartservice", "/cart", "", 1, T0),
    ]


def test_aws_operations_split_actions_and_use_the_clock() -> None:
    ops = [
        {
            "resource": "arn:aws:s3:::bucket/key",
            "actions": ["s3:GetObject", "s3:PutObject"],
            "srcIp": "10.0.0.1",
        },
        {
            "resource": "*",
            "actions": ["ListBuckets"],
            "srcIp": None,
            "iamRole": "r",
            "client": {"name": "a", "namespace": "b"},
        },
        {"resource": "*", "actions": ["s3:ListBuckets"], "srcIp": "nope"},
    ]
    converted = mutations.aws_operations(ops, now=T0)
    assert converted.observations == [
        AwsOperation("10.0.0.1", 0, "s3", "GetObject", "arn:aws:s3:::bucket/key", "", T0),
        AwsOperation("10.0.0.1", 0, "s3", "PutObject", "arn:aws:s3:::bucket/key", "", T0),
        AwsOperation("", 0, "", "ListBuckets", "*", "", T0),
    ]
    assert converted.skipped.total() == 1


def test_split_action() -> None:
    assert mutations.split_action("dynamodb:Query") == ("dynamodb", "Query")
    assert mutations.split_action("Query") == ("", "Query")
