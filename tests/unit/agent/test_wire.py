"""The one codec: edges ⇄ documents (JSON and MessagePack), keys, canonical form, upload bodies of
both versions, times, and the JSON Schema."""

from __future__ import annotations

import gc
import json
from datetime import timedelta, timezone

import jsonschema
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import wire, wirechecks
from agent.model import (
    AwsTarget,
    Edge,
    HttpResource,
    InternetTarget,
    KafkaTopic,
    Method,
    MethodSeen,
    WorkloadIdentity,
    merge_edges,
)

T0 = 1_764_296_106.918878
FRONTEND = WorkloadIdentity("shop", "frontend", "Deployment")
CART = WorkloadIdentity("shop", "cartservice", "Deployment")

texts = st.text(max_size=8)
identities = st.builds(WorkloadIdentity, texts, texts, texts)
times = st.integers(946_684_800 * 1_000_000, 4_102_444_800 * 1_000_000 - 1).map(lambda us: us / 1_000_000)
# One per method, sorted by method: as the resolver and the merge give it.
provenances = st.dictionaries(
    st.sampled_from(list(Method)), st.tuples(times, times, st.integers(0, wire.MAX_COUNT)), max_size=3
).map(lambda seen: tuple(sorted(MethodSeen(m, *v) for m, v in seen.items())))
edges = st.builds(
    Edge,
    client=identities,
    target=st.one_of(
        identities,
        st.builds(InternetTarget, texts, st.lists(texts, max_size=2).map(tuple), st.integers(0, 65535)),
        st.builds(AwsTarget, texts),
    ),
    first_seen=times,
    last_seen=times,
    methods=st.frozensets(st.sampled_from(list(Method))),
    count=st.integers(0, wire.MAX_COUNT),
    http=st.lists(st.builds(HttpResource, texts, st.lists(texts, max_size=2).map(tuple)), max_size=2).map(
        tuple
    ),
    kafka_topics=st.lists(
        st.builds(KafkaTopic, texts, st.lists(texts, max_size=2).map(tuple)), max_size=2
    ).map(tuple),
    aws_actions=st.lists(texts, max_size=2).map(tuple),
    target_service=texts,
    ambiguous=st.booleans(),
    target_service_seen=st.one_of(st.just(0.0), times),
    truncated=st.booleans(),
    ports=st.frozensets(st.integers(1, 65535), max_size=3).map(lambda p: tuple(sorted(p))),
    provenance=provenances,
)


@settings(max_examples=200, deadline=None)
@given(edges, st.booleans())
def test_every_edge_round_trips_through_json_and_messagepack(edge: Edge, live: bool) -> None:
    doc = wire.to_doc(edge, live)
    assert wire.decode_doc(wire.encode(doc)) == doc
    back = wire.from_doc(doc)
    assert back.key == edge.key and (back.first_seen, back.last_seen, back.count) == (
        edge.first_seen,
        edge.last_seen,
        edge.count,
    )
    assert back.provenance == edge.provenance
    assert wire.unpack_edge(wire.pack_edge(edge)) == back
    assert wire.edge_from_plain(json.loads(wire.encode(doc))) == back
    assert wire.to_doc(back, live) == doc  # a document is canonical once written
    assert wire.key_of(wire.key_for(*edge.key)) == edge.key
    assert wire.key_bytes(doc) == wire.key_for(*edge.key)


@settings(max_examples=200, deadline=None)
@given(edges)
def test_canonical_gives_equal_edges_equal_text_whoever_wrote_them(edge: Edge) -> None:
    written = wire.to_doc(merge_edges(edge, edge))  # what the stores write: merged, so no repeats
    assert wire.canonical(written) == written
    assert wire.canonical(written) is written or written.targetServiceSeen is not None  # that one: checked
    shuffled = msgspec.structs.replace(
        written,
        methods=written.methods[::-1],
        awsActions=written.awsActions[::-1] + written.awsActions,
        http=written.http[::-1] + written.http,
        provenance=written.provenance[::-1] + written.provenance,
        firstSeen=written.firstSeen.astimezone(timezone(timedelta(hours=2))),
    )
    assert wire.encode(wire.canonical(shuffled)) == wire.encode(wire.canonical(written))


def test_a_version_1_upload_body_is_read_and_unknown_versions_are_refused() -> None:
    edge = {"client": {"name": "a", "namespace": "n"}, "target": {"type": "aws", "arn": "*"}}
    edge |= {"firstSeen": "2026-11-28T02:15:06.918878Z", "lastSeen": "2026-11-28T02:15:06.918878Z"}
    old = wire.decode_ingest(json.dumps({"batchId": "b", "anonymized": False, "edges": [edge]}))
    assert old.version == 1 and wire.from_doc(old.edges[0]).target == AwsTarget("*")
    with pytest.raises(wire.WireError, match="version 6"):
        wire.decode_ingest(json.dumps({"version": 6, "batchId": "b", "edges": []}))
    with pytest.raises(wire.WireError, match=r"\$\.edges\[0\]\.target\.type"):
        wire.decode_ingest(json.dumps({"batchId": "b", "edges": [edge | {"target": {"type": "satellite"}}]}))
    with pytest.raises(wire.WireError, match="out of range"):
        wire.from_doc(
            wire.decode_ingest(
                json.dumps({"batchId": "b", "edges": [edge | {"firstSeen": "1969-12-31T23:00:00Z"}]})
            ).edges[0]
        )


def test_times_are_rfc3339_in_utc_and_bounded() -> None:
    assert wire.format_time(T0) == "2025-11-28T02:15:06.918878Z"
    assert wire.parse_time("2025-11-28T04:15:06.918878+02:00") == T0
    assert wire.format_time(946_684_800.0) == "2000-01-01T00:00:00Z"
    for bad in ("2025-11-28T02:15:06", "yesterday", "9999-12-31T23:00:00-05:00", 17, "1999-12-31T23:59:59Z"):
        with pytest.raises(wire.WireError):
            wire.parse_time(bad)


def test_the_bulk_read_restores_the_collector_as_it_found_it() -> None:
    packed = [wire.pack_edge(Edge(FRONTEND, CART, T0, T0))] * 3
    assert gc.isenabled()
    assert wire.unpack_edges(packed) == [Edge(FRONTEND, CART, T0, T0)] * 3
    assert gc.isenabled()
    gc.disable()
    try:
        wire.unpack_edges(packed)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_bulk_read_gives_none_for_each_document_that_no_longer_reads() -> None:
    good = wire.pack_edge(Edge(FRONTEND, CART, T0, T0))
    old = msgspec.msgpack.encode(
        msgspec.structs.replace(
            wire.to_doc(Edge(FRONTEND, CART, T0, T0)), lastSeen=wire.moment(T0).replace(year=2500)
        )
    )
    assert wire.unpack_edges([good, old, b"\xc1", good]) == [
        Edge(FRONTEND, CART, T0, T0),
        None,
        None,
        Edge(FRONTEND, CART, T0, T0),
    ]


def test_problems_name_each_bad_field_and_pass_a_good_document() -> None:
    good = wire.to_doc(
        Edge(FRONTEND, InternetTarget("", ("10.0.0.1",), 443), T0, T0, aws_actions=("s3:GetObject",))
    )
    assert wirechecks.problems(good) == []  # an IP-only target: its dnsName may be empty
    bad = msgspec.structs.replace(
        good,
        client=WorkloadIdentity("", "x" * 254),
        target=wire.InternetTargetDoc(dnsName="a", ips=("10.0.0.1", "999.1.1.1"), port=1),
        awsActions=("",),
        http=(HttpResource("/a", ("GET",), ("p" * 2049,), (200,)), HttpResource("/b", (), (), (200, 42))),
        kafkaTopics=(KafkaTopic("orders", ("read",), "User:" + "x" * 2048),),
    )
    assert wirechecks.problems(bad) == [
        (("client", "namespace"), "must not be empty"),
        (("client", "name"), "longer than 253 characters"),
        (("target", "ips", 1), "not an IP address"),
        (("http", 0), "a value is longer than 2048 characters"),
        (("kafkaTopics", 0), "a value is longer than 2048 characters"),
        (("http", 1, "statuses"), "a response code is not in 100-599"),
        (("awsActions", 0), "must not be empty"),
    ]


@pytest.mark.parametrize("field", ["count", "port", "http"])
def test_the_structs_refuse_what_a_decoder_can_check(field: str) -> None:
    doc = wire.plain(wire.to_doc(Edge(FRONTEND, InternetTarget("a.example", (), 443), T0, T0)))
    if field == "count":
        doc["count"] = 2**53
    elif field == "port":
        doc["target"]["port"] = 65536
    else:
        doc["http"] = [{"path": f"/{i}", "methods": []} for i in range(257)]
    with pytest.raises(wire.WireError, match=field):
        wire.decode_doc(json.dumps(doc))


def test_the_schemas_are_self_contained_and_accept_what_the_codec_writes() -> None:
    edge = Edge(
        FRONTEND,
        InternetTarget("api.example.com", ("1.2.3.4",), 443),
        T0,
        T0,
        frozenset({Method.DNS}),
        provenance=(MethodSeen(Method.DNS, T0, T0, 1),),
    )
    body = wire.IngestBody(version=wire.FORMAT_VERSION, batchId="b", edges=(wire.to_doc(edge, live=True),))
    schema = wire.ingest_schema()
    assert "$ref" not in json.dumps(schema)
    jsonschema.validate(json.loads(wire.encode(body)), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"batchId": "b", "edges": [{"client": {}}]}, schema)
    jsonschema.validate(json.loads(wire.encode(wire.to_doc(edge))), wire.edge_schema())


def test_provenance_is_written_per_method_sorted_and_an_older_document_has_none() -> None:
    seen = (MethodSeen(Method.TCP, T0 + 5, T0 + 9, 3), MethodSeen(Method.DNS, T0, T0 + 9, 2))
    edge = Edge(FRONTEND, CART, T0, T0 + 9, frozenset({Method.DNS, Method.TCP}), 5, provenance=seen)
    doc = wire.plain(wire.to_doc(edge))
    assert doc["provenance"] == [
        {
            "method": "dns",
            "firstSeen": "2025-11-28T02:15:06.918878Z",
            "lastSeen": "2025-11-28T02:15:15.918878Z",
            "count": 2,
        },
        {
            "method": "tcp",
            "firstSeen": "2025-11-28T02:15:11.918878Z",
            "lastSeen": "2025-11-28T02:15:15.918878Z",
            "count": 3,
        },
    ]
    assert wire.edge_from_plain(doc).provenance == seen[::-1]
    # a hand-built edge repeating a method: written once (as the merge would), so still canonical
    repeated = wire.to_doc(
        Edge(
            FRONTEND,
            CART,
            T0,
            T0 + 9,
            provenance=(seen[1], seen[1], MethodSeen(Method.DNS, T0 + 1, T0 + 20, 1)),
        )
    )
    assert [(p.method, p.count, wire.seconds(p.lastSeen)) for p in repeated.provenance] == [
        ("dns", 2, T0 + 20)
    ]
    del doc["provenance"]  # a version 4 writer's document: nothing is derived from its methods
    assert wire.edge_from_plain(doc).provenance == ()
    body = wire.decode_ingest(json.dumps({"version": 4, "batchId": "b", "edges": [doc]}))
    assert wire.from_doc(body.edges[0]).provenance == ()


def test_provenance_times_are_bounded_like_the_edges() -> None:
    doc = wire.to_doc(Edge(FRONTEND, CART, T0, T0, provenance=(MethodSeen(Method.DNS, T0, T0, 1),)))
    late = msgspec.structs.replace(
        doc,
        provenance=(msgspec.structs.replace(doc.provenance[0], lastSeen=wire.moment(T0).replace(year=2500)),),
    )
    assert wirechecks.problems(late) == [(("provenance", 0, "lastSeen"), "time out of range [2000, 2100)")]
    with pytest.raises(wire.WireError, match="out of range"):
        wire.from_doc(late)
    with pytest.raises(wire.WireError, match="out of range"):
        wire.canonical(late)
    with pytest.raises(wire.WireError, match="provenance"):
        wire.decode_doc(
            json.dumps(
                wire.plain(doc)
                | {
                    "provenance": [
                        {
                            "method": "smoke",
                            "firstSeen": "2025-11-28T02:15:06Z",
                            "lastSeen": "2025-11-28T02:15:06Z",
                        }
                    ]
                }
            )
        )
