"""``agent.mapdiff``: what changed between two maps (added, gone, changed with the values that
changed) and its three renderings; the Markdown one parsed by a Markdown parser (markdown-it-py,
GitHub's table extension) to show it is a table a pull request renders."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from agent.mapdiff import diff, diff_json, diff_markdown, diff_text
from agent.model import (
    AwsTarget,
    Edge,
    HttpResource,
    InternetTarget,
    KafkaTopic,
    Method,
    Snapshot,
    WorkloadIdentity,
)
from agent.wiretime import parse_time

NS = "shop"
T0 = parse_time("2026-12-01T10:00:00Z")  # "before" is taken
T1 = parse_time("2026-12-01T12:00:00Z")  # "after" is taken


def _w(name: str, ns: str = NS) -> WorkloadIdentity:
    return WorkloadIdentity(ns, name, "Deployment")


def _e(client: str, target: object, last_seen: float, **kw: object) -> Edge:
    return Edge(_w(client), target, T0 - 3600, last_seen, frozenset({Method.TCP}), **kw)  # type: ignore[arg-type]


def _snap(name: str, at: float, *edges: Edge) -> Snapshot:
    return Snapshot(name, at, tuple(edges))


def test_added_gone_and_changed() -> None:
    before = _snap(
        "before",
        T0,
        _e("frontend", _w("cartservice"), T0 - 5, ports=(7070,)),
        _e("recommendationservice", _w("productcatalogservice"), T0 - 5, ports=(3550,)),
        _e("frontend", _w("adservice"), T0 - 5),  # still in the store, not seen since: gone
        _e(
            "checkoutservice",
            _w("kafka"),
            T0 - 5,
            kafka_topics=(KafkaTopic("orders", ("produce",)),),
            http=(HttpResource("/old", ("GET",)),),
        ),
    )
    after = _snap(
        "now",
        T1,
        _e("frontend", _w("cartservice"), T1 - 5, ports=(7070,)),  # seen since, same: unchanged
        _e("frontend", _w("adservice"), T0 - 5),
        _e(
            "checkoutservice",
            _w("kafka"),
            T1 - 5,
            kafka_topics=(KafkaTopic("orders", ("describe", "produce")), KafkaTopic("audit", ())),
            http=(HttpResource("/new", ("POST",)),),
            ports=(9092,),
            aws_actions=(),
        ),
        _e("checkoutservice", _w("shippingservice"), T1 - 5, ports=(50051,)),
    )
    d = diff(before, after)
    assert [(e.client.name, e.target) for e in d.added] == [("checkoutservice", _w("shippingservice"))]
    assert [(e.client.name, e.target) for e in d.gone] == [
        ("frontend", _w("adservice")),
        ("recommendationservice", _w("productcatalogservice")),
    ]
    assert len(d.changed) == 1
    assert diff_text(d).splitlines() == [
        "before (2026-12-01T10:00:00Z) → now (2026-12-01T12:00:00Z): 1 added, 2 gone, 1 changed",
        "+ checkoutservice in namespace shop → shippingservice [port 50051]",
        "- frontend in namespace shop → adservice (last seen 2026-12-01T09:59:55Z)",
        "- recommendationservice in namespace shop → productcatalogservice (last seen 2026-12-01T09:59:55Z)",
        "~ checkoutservice in namespace shop → kafka: +port 9092; +HTTP POST /new; +Kafka audit;"
        " +Kafka orders describe; -HTTP GET /old",
    ]


def test_aws_actions_and_removed_ports_and_namespaces() -> None:
    s3 = AwsTarget("arn:aws:s3:::bucket")
    other = _w("billing", "extras")
    before = _snap(
        "a",
        T0,
        _e("audit", s3, T0 - 1, aws_actions=("s3:GetObject",), ports=(443,)),
        _e("frontend", other, T0 - 1),
    )
    after = _snap(
        "b",
        T1,
        _e("audit", s3, T1 - 1, aws_actions=("s3:PutObject",)),
        _e("frontend", other, T1 - 1, ports=(8080,)),
        Edge(_w("job", "batch"), InternetTarget("api.example.com", ("198.51.100.7",), 443), T1 - 9, T1 - 1),
    )
    text = diff_text(diff(before, after)).splitlines()[1:]
    assert text == [
        "+ job in namespace batch → api.example.com:443 (Internet: 198.51.100.7)",
        "~ audit in namespace shop → arn:aws:s3:::bucket (AWS): +AWS s3:PutObject; -port 443;"
        " -AWS s3:GetObject",
        "~ frontend in namespace shop → billing in namespace extras: +port 8080",
    ]
    # a namespace filter keeps edges whose client or workload target is in one of them
    extras = diff(before, after, ["extras"])
    assert [e.client.name for e in extras.added] == []
    assert [c.after.target for c in extras.changed] == [other]
    assert diff_text(extras).splitlines()[0].endswith("(namespaces extras): 0 added, 0 gone, 1 changed")


def test_json_is_stable_and_complete() -> None:
    before = _snap("a", T0, _e("x", _w("y"), T0 - 1, http=(HttpResource("/p", ("GET",)),)))
    after = _snap(
        "b", T1, _e("x", _w("y"), T1 - 1, http=(HttpResource("/p", ("GET", "PUT")),)), _e("x", _w("z"), T1)
    )
    doc = diff_json(diff(before, after))
    assert json.dumps(doc, sort_keys=False) == json.dumps(diff_json(diff(before, after)), sort_keys=False)
    assert doc["kind"] == "MapDiff"
    assert doc["from"] == {"name": "a", "takenAt": "2026-12-01T10:00:00Z"}
    assert [e["target"]["name"] for e in doc["added"]] == ["z"]
    assert doc["gone"] == []
    (changed,) = doc["changed"]
    assert changed["client"]["name"] == "x"
    assert changed["added"] == {
        "ports": [],
        "http": [{"path": "/p", "method": "PUT"}],
        "kafka": [],
        "awsActions": [],
    }
    assert changed["removed"] == {"ports": [], "http": [], "kafka": [], "awsActions": []}


def _table(markdown: str) -> list[list[str]]:
    """The rows of the one table in ``markdown``, as GitHub's table extension parses them."""
    tokens = MarkdownIt("commonmark").enable("table").parse(markdown)
    assert [t.type for t in tokens].count("table_open") == 1
    rows: list[list[str]] = []
    for i, token in enumerate(tokens):
        if token.type == "tr_open":
            rows.append([])
        elif token.type in {"th_open", "td_open"}:
            rows[-1].append(tokens[i + 1].content)
    return rows


def test_markdown_is_a_table_even_with_pipes_in_values() -> None:
    before = _snap("before", T0, _e("frontend", _w("adservice"), T0 - 1))
    after = _snap(
        "now",
        T1,
        _e("frontend", _w("cartservice"), T1, http=(HttpResource("/a|b", ("GET",)),)),
        _e("frontend", _w("adservice"), T1, ports=(9555,)),
    )
    rows = _table(diff_markdown(diff(before, after)))
    assert rows == [
        ["change", "client", "target", "details"],
        ["added", "frontend in namespace shop", "cartservice", "HTTP GET /a|b"],  # one cell: the pipe escaped
        ["changed", "frontend in namespace shop", "adservice", "+port 9555"],
    ]
    # the inline text of the cell renders as the path itself
    html = MarkdownIt("commonmark").enable("table").render(diff_markdown(diff(before, after)))
    assert "<td>HTTP GET /a|b</td>" in html


def test_markdown_without_changes_says_so() -> None:
    same = _snap("a", T0, _e("x", _w("y"), T0))
    text = diff_markdown(diff(same, same))
    assert "No edges added, gone or changed." in text
    assert "table_open" not in [t.type for t in MarkdownIt("commonmark").enable("table").parse(text)]


# --------------------------------------------------------------------------- properties

_names = st.sampled_from(["a", "b", "c"])
_targets = st.one_of(
    st.builds(_w, _names, st.sampled_from([NS, "other"])),
    st.builds(InternetTarget, st.sampled_from(["api.example.com", ""]), st.just(("192.0.2.1",))),
    st.builds(AwsTarget, st.sampled_from(["arn:aws:s3:::x", "*"])),
)
_edges = st.builds(
    lambda client, target, seen, ports, actions, topics: Edge(
        _w(client),
        target,
        T0 - 7200,
        seen,
        frozenset({Method.TCP}),
        ports=tuple(sorted(ports)),
        aws_actions=tuple(sorted(actions)),
        kafka_topics=tuple(KafkaTopic(t, ("consume",)) for t in sorted(topics)),
    ),
    _names,
    _targets,
    st.sampled_from([T0 - 60, T0, T1 - 60]),
    st.frozensets(st.sampled_from([80, 443, 8080]), max_size=2),
    st.frozensets(st.sampled_from(["s3:GetObject", "s3:PutObject"]), max_size=2),
    st.frozensets(st.sampled_from(["orders", "audit"]), max_size=2),
)
_maps = st.lists(_edges, max_size=8).map(lambda es: tuple({e.key: e for e in es}.values()))


@settings(max_examples=200, deadline=None)
@given(_maps)
def test_a_map_against_itself_is_empty(edges: tuple[Edge, ...]) -> None:
    snap = _snap("a", T0, *edges)
    d = diff(snap, snap)
    assert not d
    assert diff_json(d)["added"] == diff_json(d)["gone"] == diff_json(d)["changed"] == []


@settings(max_examples=200, deadline=None)
@given(_maps, _maps)
def test_added_and_gone_swap_with_the_sides(one: tuple[Edge, ...], two: tuple[Edge, ...]) -> None:
    a, b = _snap("a", T0, *one), _snap("b", T1, *two)
    keys_a, keys_b = {e.key for e in one}, {e.key for e in two}
    forward, backward = diff(a, b), diff(b, a)
    only_b = {e.key for e in forward.added}
    assert only_b == keys_b - keys_a == {e.key for e in backward.gone if e.key not in keys_a}
    assert (
        {e.key for e in forward.gone if e.key not in keys_b}
        == keys_a - keys_b
        == {e.key for e in backward.added}
    )
    for change in forward.changed:  # added and removed values never overlap, and something changed
        assert change.added or change.removed
        assert not set(change.added.ports) & set(change.removed.ports)
