"""merge_edges, the one merge of two sightings of an edge (the cloud's idempotent one and the mapper's),
and new_edge."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.model import (
    MAX_DETAILS,
    MAX_VALUES,
    Edge,
    HttpResource,
    InternetTarget,
    KafkaTopic,
    Method,
    MethodSeen,
    WorkloadIdentity,
    merge_edges,
    new_edge,
    seen_once,
)

CLIENT = WorkloadIdentity("shop", "frontend", "Deployment")
SERVER = WorkloadIdentity("shop", "cartservice", "Deployment")


def edge(**fields: Any) -> Edge:
    values: dict[str, Any] = {"client": CLIENT, "target": SERVER, "first_seen": 100.0, "last_seen": 200.0}
    return Edge(**(values | fields))


def test_times_are_the_widest_window_and_count_the_maximum() -> None:
    merged = merge_edges(edge(first_seen=50.0, last_seen=150.0, count=9), edge(count=4))
    assert (merged.first_seen, merged.last_seen, merged.count) == (50.0, 200.0, 9)


def test_sets_are_unions_by_name() -> None:
    a = edge(
        methods=frozenset({Method.DNS}),
        http=(HttpResource("/cart", ("POST", "GET")),),
        kafka_topics=(KafkaTopic("orders", ("produce",)),),
        aws_actions=("s3:PutObject",),
    )
    b = edge(
        methods=frozenset({Method.TCP}),
        http=(HttpResource("/health", ("GET",)), HttpResource("/cart", ("GET", "DELETE"))),
        kafka_topics=(KafkaTopic("orders", ("consume",)), KafkaTopic("audit", ())),
        aws_actions=("s3:GetObject", "s3:PutObject"),
    )
    merged = merge_edges(a, b)
    assert merged.methods == {Method.DNS, Method.TCP}
    assert merged.http == (
        HttpResource("/cart", ("DELETE", "GET", "POST")),
        HttpResource("/health", ("GET",)),
    )
    assert merged.kafka_topics == (KafkaTopic("audit", ()), KafkaTopic("orders", ("consume", "produce")))
    assert merged.aws_actions == ("s3:GetObject", "s3:PutObject")


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (("old", 100.0), ("new", 200.0), "new"),
        (("new", 200.0), ("old", 100.0), "new"),  # the newer edge wins whichever side it is on
        (("kept", 200.0), ("", 300.0), "kept"),  # an empty service never replaces one
        (("", 300.0), ("late", 100.0), "late"),
        (("a", 200.0), ("b", 200.0), "b"),  # a tie: the greater name, in either order
        (("b", 200.0), ("a", 200.0), "b"),
    ],
)
def test_target_service_is_the_newest_non_empty(
    a: tuple[str, float], b: tuple[str, float], expected: str
) -> None:
    merged = merge_edges(edge(target_service=a[0], last_seen=a[1]), edge(target_service=b[0], last_seen=b[1]))
    assert merged.target_service == expected


def test_ambiguous_only_while_both_are() -> None:
    assert merge_edges(edge(ambiguous=True), edge(ambiguous=True)).ambiguous
    assert not merge_edges(edge(ambiguous=True), edge(ambiguous=False)).ambiguous


def test_the_result_is_canonical_and_the_inputs_untouched() -> None:
    a = edge(http=(HttpResource("/b", ("PUT", "GET")), HttpResource("/a")), aws_actions=("z", "a", "z"))
    merged = merge_edges(a, a)
    assert merged.http == (HttpResource("/a", ()), HttpResource("/b", ("GET", "PUT")))
    assert merged.aws_actions == ("a", "z")
    assert a.aws_actions == ("z", "a", "z")


def test_edges_with_different_keys_do_not_merge() -> None:
    with pytest.raises(ValueError, match="different keys"):
        merge_edges(edge(), edge(target=InternetTarget("example.com")))


names = st.sampled_from(["a", "b", "c"])
# One per method, sorted by method (as the resolver and the merge give it); often empty (an older edge).
provenances = st.dictionaries(
    st.sampled_from(Method), st.tuples(st.floats(0, 1000), st.floats(1000, 2000), st.integers(0, 50))
).map(lambda seen: tuple(sorted(MethodSeen(m, *v) for m, v in seen.items())))
edges = st.builds(
    edge,
    first_seen=st.floats(0, 1000),
    last_seen=st.floats(1000, 2000),
    count=st.integers(1, 50),
    methods=st.frozensets(st.sampled_from(Method)),
    http=st.lists(
        st.builds(
            HttpResource,
            names,
            st.lists(names).map(tuple),
            st.lists(names).map(tuple),
            st.lists(st.sampled_from([200, 404, 503])).map(tuple),
        )
    ).map(tuple),
    kafka_topics=st.lists(
        st.builds(KafkaTopic, names, st.lists(names).map(tuple), names, st.lists(names).map(tuple))
    ).map(tuple),
    aws_actions=st.lists(names).map(tuple),
    target_service=st.sampled_from(["", "svc-a", "svc-b"]),
    ambiguous=st.booleans(),
    ports=st.frozensets(st.sampled_from([53, 80, 443, 8080])).map(lambda p: tuple(sorted(p))),
    provenance=provenances,
)


@given(edges, edges)
def test_merging_again_changes_nothing(a: Edge, b: Edge) -> None:
    """A retried or re-sent batch is harmless: merging a or b into merge(a, b) again is a no-op."""
    merged = merge_edges(a, b)
    assert merge_edges(merged, b) == merged
    assert merge_edges(merged, merged) == merged
    assert merge_edges(merged, a) == merged
    assert merge_edges(b, a) == merged  # the order does not matter


def test_principals_codes_and_verdicts_are_unions_per_path_and_per_topic_and_principal() -> None:
    alice, bob = "User:CN=alice,O=Example\\, Inc.", "User:CN=bob"
    a = edge(
        http=(HttpResource("/cart", ("GET",), ("spiffe://cluster.local/ns/shop/sa/web",), (200,)),),
        kafka_topics=(KafkaTopic("orders", ("read",), alice), KafkaTopic("orders", (), bob, ("write",))),
    )
    b = edge(
        http=(HttpResource("/cart", ("POST",), ("spiffe://cluster.local/ns/shop/sa/api",), (503, 201)),),
        kafka_topics=(
            KafkaTopic("orders", ("describe",), alice, ("write",)),
            KafkaTopic("orders", ("read",)),
        ),
    )
    merged = merge_edges(a, b)
    web, api = "spiffe://cluster.local/ns/shop/sa/web", "spiffe://cluster.local/ns/shop/sa/api"
    assert merged.http == (HttpResource("/cart", ("GET", "POST"), (api, web), (200, 201, 503)),)
    assert merged.kafka_topics == (  # by (topic, principal): the unknown principal sorts first
        KafkaTopic("orders", ("read",), ""),
        KafkaTopic("orders", ("describe", "read"), alice, ("write",)),
        KafkaTopic("orders", (), bob, ("write",)),
    )
    assert merge_edges(b, a) == merged and merge_edges(merged, a) == merged


def test_new_edge_equals_the_plain_constructor() -> None:
    args = (CLIENT, SERVER, 1.0, 2.0, frozenset({Method.TCP}), 3, (), (), ("s3:GetObject",), "svc", True, 1.5)
    fast, plain = new_edge(*args), Edge(*args)
    assert fast == plain and hash(fast) == hash(plain) and repr(fast) == repr(plain)
    assert new_edge(*args[:-1]) == Edge(*args[:-1])  # target_service_seen defaults as in Edge
    every = (*args, False, (443,), seen_once(Method.TCP, 2.0, 3))
    assert new_edge(*every) == Edge(*every) and new_edge(*every).provenance == (
        MethodSeen(Method.TCP, 2.0, 2.0, 3),
    )
    assert repr(seen_once(Method.DNS, 1.0)) == repr((MethodSeen(Method.DNS, 1.0, 1.0, 1),))


def test_provenance_merges_per_method() -> None:
    dns, tcp = MethodSeen(Method.DNS, 100.0, 150.0, 2), MethodSeen(Method.TCP, 120.0, 130.0, 1)
    a = edge(provenance=(dns, tcp))
    b = edge(provenance=(MethodSeen(Method.DNS, 90.0, 140.0, 5), MethodSeen(Method.AWS, 200.0, 200.0, 1)))
    both = (MethodSeen(Method.AWS, 200.0, 200.0, 1), MethodSeen(Method.DNS, 90.0, 150.0, 5), tcp)
    assert merge_edges(a, b).provenance == both  # the cloud's: counts are the maximum
    summed = (both[0], MethodSeen(Method.DNS, 90.0, 150.0, 7), tcp)
    assert merge_edges(a, b, cumulative=False).provenance == summed  # the mapper's: the sum
    twice = (MethodSeen(Method.DNS, 100.0, 150.0, 4), MethodSeen(Method.TCP, 120.0, 130.0, 2))
    assert merge_edges(a, a, cumulative=False).provenance == twice
    old = edge(methods=frozenset({Method.KAFKA}), count=9)  # written before provenance: none known
    assert merge_edges(a, old).provenance == a.provenance == merge_edges(old, a, cumulative=False).provenance
    assert merge_edges(old, old).provenance == ()  # nothing is derived from its methods


@given(edges, edges, edges)
def test_the_mappers_merge_of_provenance_is_commutative_and_associative(a: Edge, b: Edge, c: Edge) -> None:
    ab = merge_edges(a, b, cumulative=False)
    assert ab.provenance == merge_edges(b, a, cumulative=False).provenance
    left = merge_edges(ab, c, cumulative=False).provenance
    assert left == merge_edges(a, merge_edges(b, c, cumulative=False), cumulative=False).provenance
    assert [s.method for s in left] == sorted({s.method for s in a.provenance + b.provenance + c.provenance})
    for seen in left:  # counts per method add up; times are the widest window
        of = [s for s in a.provenance + b.provenance + c.provenance if s.method == seen.method]
        assert seen.count == sum(s.count for s in of)
        assert (seen.first_seen, seen.last_seen) == (
            min(s.first_seen for s in of),
            max(s.last_seen for s in of),
        )


def test_the_mappers_merge_sums_counts_of_disjoint_sightings() -> None:
    merged = merge_edges(edge(count=2), edge(count=3), cumulative=False)
    assert merged.count == 5
    assert merge_edges(edge(count=2), edge(count=3)).count == 3  # the cloud's: the maximum


def test_the_service_seen_last_wins_even_behind_a_later_sighting_without_one() -> None:
    first = merge_edges(edge(last_seen=10.0, target_service="v1"), edge(last_seen=20.0))
    assert (first.target_service, first.target_service_seen, first.last_seen) == ("v1", 10.0, 20.0)
    second = merge_edges(first, edge(last_seen=15.0, target_service="v2"))
    assert (second.target_service, second.target_service_seen) == ("v2", 15.0)
    newest = merge_edges(second, edge(last_seen=20.0, target_service="v3"))
    assert (newest.target_service, newest.target_service_seen) == ("v3", 0.0)  # 0: at last_seen
    assert merge_edges(second, second) == second  # idempotent


# Paths drawn from many more values than MAX_DETAILS holds, so merges overflow the bound.
many_paths = st.lists(
    st.builds(HttpResource, st.integers(0, 999).map(lambda i: f"/p/{i:03d}"), st.just(("GET",))),
    max_size=MAX_DETAILS,
    unique_by=lambda r: r.path,
).map(lambda rs: tuple(sorted(rs)))
bounded = st.builds(edge, http=many_paths, truncated=st.booleans())


@settings(max_examples=60, deadline=None)
@given(bounded, bounded, bounded)
def test_bounded_details_keep_the_merge_commutative_associative_and_idempotent(
    a: Edge, b: Edge, c: Edge
) -> None:
    ab = merge_edges(a, b)
    assert ab == merge_edges(b, a)
    assert merge_edges(ab, c) == merge_edges(a, merge_edges(b, c))
    assert merge_edges(ab, ab) == ab and merge_edges(ab, a) == ab
    union = sorted({r.path for r in a.http + b.http})
    assert [r.path for r in ab.http] == union[:MAX_DETAILS]
    assert ab.truncated == (a.truncated or b.truncated or len(union) > MAX_DETAILS)


def test_values_of_one_path_are_bounded_too() -> None:
    methods = tuple(f"M{i:02d}" for i in range(MAX_VALUES + 5))
    merged = merge_edges(
        edge(http=(HttpResource("/", methods[:20]),)), edge(http=(HttpResource("/", methods[20:]),))
    )
    assert merged.http == (HttpResource("/", methods[:MAX_VALUES]),) and merged.truncated
