"""JSON export: the exact document, exact times, round-trip and determinism."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.exports import edges_document, edges_from_document
from agent.model import (
    AwsTarget,
    Edge,
    HttpResource,
    InternetTarget,
    KafkaTopic,
    Method,
    MethodSeen,
    WorkloadIdentity,
)
from agent.wire import WireError, format_time, parse_time

DATA = Path(__file__).resolve().parents[3] / "tests" / "data" / "exports"
T0 = datetime(2026, 11, 28, 2, 15, 6, 918878, tzinfo=UTC).timestamp()


def load_demo() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DATA / "demo-edges.json").read_text(encoding="utf-8"))
    return loaded


def test_exact_document() -> None:
    client = WorkloadIdentity("shop", "frontend", "Deployment")
    edges = [
        Edge(
            client,
            WorkloadIdentity("shop", "productcatalogservice", "Deployment"),
            T0,
            T0 + 60,
            frozenset({Method.TCP, Method.DNS}),
            count=3,
            http=(HttpResource("/products", ("POST", "GET")),),
            target_service="productcatalog",
            ports=(3550,),
            provenance=(MethodSeen(Method.TCP, T0 + 1, T0 + 60, 2), MethodSeen(Method.DNS, T0, T0, 1)),
        ),
        Edge(client, AwsTarget("*"), T0, T0, frozenset({Method.AWS}), aws_actions=("sts:GetCallerIdentity",)),
        Edge(client, InternetTarget("api.example.com", ("1.2.3.4",), 443), T0, T0, ambiguous=True),
    ]
    frontend = {"name": "frontend", "namespace": "shop", "kind": "Deployment"}
    empty = {"http": [], "kafkaTopics": [], "awsActions": [], "targetService": "", "ambiguous": False}
    empty |= {"live": False, "targetServiceSeen": None, "truncated": False, "ports": [], "provenance": []}
    at = "2026-11-28T02:15:06.918878Z"
    assert edges_document(edges) == {
        "apiVersion": "network-mapper/v1",
        "version": 5,
        "edges": [
            {
                "client": frontend,
                "target": {
                    "type": "workload",
                    "name": "productcatalogservice",
                    "namespace": "shop",
                    "kind": "Deployment",
                },
                "methods": ["dns", "tcp"],
                "firstSeen": at,
                "lastSeen": "2026-11-28T02:16:06.918878Z",
                "count": 3,
                **empty,
                "http": [{"path": "/products", "methods": ["GET", "POST"], "principals": [], "statuses": []}],
                "targetService": "productcatalog",
                "ports": [3550],
                "provenance": [  # sorted by method
                    {"method": "dns", "firstSeen": at, "lastSeen": at, "count": 1},
                    {
                        "method": "tcp",
                        "firstSeen": "2026-11-28T02:15:07.918878Z",
                        "lastSeen": "2026-11-28T02:16:06.918878Z",
                        "count": 2,
                    },
                ],
            },
            {
                "client": frontend,
                "target": {"type": "internet", "dnsName": "api.example.com", "ips": ["1.2.3.4"], "port": 443},
                "methods": [],
                "firstSeen": at,
                "lastSeen": at,
                "count": 1,
                **empty,
                "ambiguous": True,
            },
            {
                "client": frontend,
                "target": {"type": "aws", "arn": "*"},
                "methods": ["aws"],
                "firstSeen": at,
                "lastSeen": at,
                "count": 1,
                **empty,
                "awsActions": ["sts:GetCallerIdentity"],
            },
        ],
    }


def test_times_are_exact_to_the_microsecond() -> None:
    assert format_time(T0) == "2026-11-28T02:15:06.918878Z"
    assert parse_time("2026-11-28T02:15:06.918878Z") == T0
    assert parse_time("2026-11-28T04:15:06.9188784+02:00") == T0  # rounded to the microsecond
    assert format_time(946_684_800.0) == "2000-01-01T00:00:00Z"  # a zero fraction is left out
    with pytest.raises(ValueError, match="offset"):
        parse_time("2026-11-28T02:15:06")


def test_demo_fixture_round_trips() -> None:
    document = load_demo()  # written by version 1 (no "version", "live" ...): read as it is
    edges = edges_from_document(document)
    assert len(edges) == 25
    again = edges_document(edges)

    def same_times(edge: dict[str, Any]) -> dict[str, Any]:
        return edge | {"firstSeen": parse_time(edge["firstSeen"]), "lastSeen": parse_time(edge["lastSeen"])}

    def with_new_fields(edge: dict[str, Any]) -> dict[str, Any]:  # what versions 2 to 5 added, defaulted
        http = [{"principals": [], "statuses": []} | r for r in edge["http"]]
        topics = [{"principal": "", "denied": []} | t for t in edge["kafkaTopics"]]
        added = {"live": False, "targetServiceSeen": None, "truncated": False, "ports": [], "provenance": []}
        return same_times(edge) | added | {"http": http, "kafkaTopics": topics}

    assert [same_times(e) for e in again["edges"]] == [with_new_fields(e) for e in document["edges"]]
    assert edges_from_document(json.loads(json.dumps(again))) == edges


def test_same_edges_in_any_order_give_identical_output() -> None:
    edges = edges_from_document(load_demo())
    expected = json.dumps(edges_document(edges))
    for seed in range(5):
        random.Random(seed).shuffle(edges)
        assert json.dumps(edges_document(edges)) == expected


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(apiVersion="v0"), "$.apiVersion"),
        (lambda d: d["edges"][0].update(count="3"), "Expected `int`, got `str` - at `$.edges[0].count`"),
        (
            lambda d: d["edges"][0]["target"].update(type="satellite"),
            "'satellite' - at `$.edges[0].target.type`",
        ),
        (lambda d: d["edges"][0].update(methods=["carrier-pigeon"]), "$.edges[0].methods[0]"),
        (lambda d: d["edges"][0].update(firstSeen="yesterday"), "$.edges[0].firstSeen"),
        (lambda d: d["edges"][0].pop("client"), "missing required field `client` - at `$.edges[0]`"),
        (
            lambda d: d["edges"][0].update(http=[{"path": "/", "methods": "GET"}]),
            "$.edges[0].http[0].methods",
        ),
    ],
)
def test_malformed_documents_are_rejected(mutate: Any, message: str) -> None:
    document = load_demo()
    mutate(document)
    with pytest.raises(WireError, match=re.escape(message)):
        edges_from_document(document)


texts = st.text(max_size=12)
identities = st.builds(WorkloadIdentity, namespace=texts, name=texts, kind=texts)
# times with microsecond precision: what the document keeps
times = st.integers(946_684_800 * 1_000_000, 4_102_444_800 * 1_000_000 - 1).map(lambda us: us / 1_000_000)
canonical_edges = st.builds(
    Edge,
    client=identities,
    target=st.one_of(
        identities,
        st.builds(
            InternetTarget,
            dns_name=texts,
            ips=st.lists(texts, max_size=3).map(tuple),
            port=st.integers(0, 65535),
        ),
        st.builds(AwsTarget, arn=texts),
    ),
    first_seen=times,
    last_seen=times,
    methods=st.frozensets(st.sampled_from(list(Method))),
    count=st.integers(0, 2**53 - 1),
    http=st.lists(
        st.builds(
            HttpResource, path=texts, methods=st.lists(texts, max_size=3).map(lambda m: tuple(sorted(m)))
        ),
        max_size=3,
    ).map(lambda r: tuple(sorted(r))),
    kafka_topics=st.lists(
        st.builds(
            KafkaTopic, name=texts, operations=st.lists(texts, max_size=3).map(lambda o: tuple(sorted(o)))
        ),
        max_size=3,
    ).map(lambda t: tuple(sorted(t))),
    aws_actions=st.lists(texts, max_size=3).map(lambda a: tuple(sorted(a))),
    target_service=texts,
    ambiguous=st.booleans(),
    provenance=st.dictionaries(
        st.sampled_from(list(Method)), st.tuples(times, times, st.integers(0, 2**53 - 1))
    ).map(lambda seen: tuple(sorted(MethodSeen(m, *v) for m, v in seen.items()))),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(canonical_edges, max_size=6))
def test_any_canonical_edges_round_trip_exactly(edges: list[Edge]) -> None:
    document = json.loads(json.dumps(edges_document(edges)))
    back = edges_from_document(document)
    assert Counter(back) == Counter(edges)  # the same edges (a multiset: repr order of sets varies)
    assert edges_document(back) == document


def test_times_outside_2000_to_2100_are_refused_either_way() -> None:
    for text in ("0066-04-12T01:02:03.5Z", "1999-12-31T23:59:59Z", "2099-12-31T23:00:00-05:00"):
        with pytest.raises(WireError, match="out of range"):
            parse_time(text)
    for seconds in (-1.0, 946_684_799.0, 4_102_444_800.0):
        with pytest.raises(WireError, match="out of range"):
            format_time(seconds)
    assert format_time(parse_time("2099-12-31T23:59:59.5Z")) == "2099-12-31T23:59:59.500000Z"
