"""``network-mapper snapshot save|list|export|load|delete`` and ``network-mapper diff``, run as a
user runs them (``main(argv, transport)``) against a stand-in mapper
(:mod:`tests.unit.cli.standin_mapper`), or on files with no mapper: which maps are compared
(names, files, the live map, ``--since``), the output formats and the exit statuses."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from agent import snapshotwire, wire
from agent.cli import main as cli
from agent.mapperclient import Transport
from agent.model import Edge, HttpResource, Method, Snapshot, WorkloadIdentity
from agent.wiretime import format_time
from tests.unit.cli.standin_mapper import StandInMapper

URL = "http://mapper.in-process:9090/query"
NS = "shop"
NOW = float(int(time.time()))  # whole seconds: times round-trip through documents exactly
BEFORE = NOW - 600  # "before" was taken ten minutes ago


def _w(name: str, ns: str = NS) -> WorkloadIdentity:
    return WorkloadIdentity(ns, name, "Deployment")


def _e(client: str, server: str, last_seen: float, ns: str = NS, **kw: object) -> Edge:
    return Edge(_w(client, ns), _w(server, ns), NOW - 86400, last_seen, frozenset({Method.TCP}), **kw)  # type: ignore[arg-type]


OLD_EDGES = (
    _e("frontend", "cartservice", BEFORE - 5, ports=(7070,)),
    _e("recommendationservice", "productcatalogservice", BEFORE - 5, ports=(3550,)),
    _e("checkoutservice", "emailservice", BEFORE - 5, http=(HttpResource("/send", ("POST",)),)),
)
LIVE_EDGES = [
    _e("frontend", "cartservice", NOW - 5, ports=(7070,)),
    _e("recommendationservice", "productcatalogservice", BEFORE - 5, ports=(3550,)),  # its calls stopped
    _e("checkoutservice", "emailservice", NOW - 5, http=(HttpResource("/send", ("POST",)),), ports=(8080,)),
    _e("adservice", "cartservice", NOW - 5, ports=(7070,)),  # a new call
]
EXPECTED = [
    "+ adservice in namespace shop → cartservice [port 7070]",
    "- recommendationservice in namespace shop → productcatalogservice"
    f" (last seen {format_time(BEFORE - 5)})",
    "~ checkoutservice in namespace shop → emailservice: +port 8080",
]


def run(capsys: pytest.CaptureFixture[str], transport: Transport, *argv: str) -> tuple[int, str, str]:
    """The exit status, stdout and stderr of ``network-mapper --mapper-url URL ARGV...``."""
    try:
        status = cli.main(["--mapper-url", URL, *argv], transport=transport)
    except SystemExit as exc:  # argparse's own usage errors
        status = int(exc.code or 0)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture
def mapper() -> StandInMapper:
    before = Snapshot("before", BEFORE, OLD_EDGES)
    return StandInMapper(list(LIVE_EDGES), snapshots={"before": before}, now=NOW)


# --------------------------------------------------------------------------- snapshot


def test_save_list_export_load_delete(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mapper: StandInMapper
) -> None:
    status, out, _ = run(capsys, mapper, "snapshot", "save", "after-deploy")
    assert (status, out) == (0, f"saved snapshot after-deploy: 4 edges, taken at {format_time(NOW)}\n")
    status, out, _ = run(capsys, mapper, "snapshot", "list")
    assert status == 0
    assert [line.split()[0] for line in out.splitlines()] == [
        "NAME",
        "after-deploy",
        "before",
    ]  # newest first
    exported = tmp_path / "s" / "after.json"
    status, out, _ = run(capsys, mapper, "snapshot", "export", "after-deploy", "-o", str(exported))
    assert (status, out) == (0, f"wrote snapshot after-deploy to {exported}\n")
    assert set(snapshotwire.decode_snapshot(exported.read_text()).edges) == set(LIVE_EDGES)
    status, out, _ = run(capsys, mapper, "snapshot", "delete", "after-deploy")
    assert (status, out) == (0, "deleted snapshot after-deploy\n")
    assert "after-deploy" not in mapper.snapshots
    status, out, _ = run(capsys, mapper, "snapshot", "load", str(exported))
    assert (status, out.split(":")[0]) == (0, "loaded snapshot after-deploy")
    assert set(mapper.snapshots["after-deploy"].edges) == set(LIVE_EDGES)


def test_export_to_stdout_is_the_document(capsys: pytest.CaptureFixture[str], mapper: StandInMapper) -> None:
    status, out, _ = run(capsys, mapper, "snapshot", "export", "before")
    assert status == 0
    read = snapshotwire.snapshot_from_document(json.loads(out))
    assert (read.name, read.taken_at, set(read.edges)) == ("before", BEFORE, set(OLD_EDGES))


def test_load_a_json_export_needs_a_name(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mapper: StandInMapper
) -> None:
    export = tmp_path / "export.json"
    export.write_text(json.dumps(wire.plain(wire.export_document(LIVE_EDGES))))
    status, _, err = run(capsys, mapper, "snapshot", "load", str(export))
    assert status == 2 and "give --name" in err
    assert mapper.requests == []
    status, out, _ = run(capsys, mapper, "snapshot", "load", str(export), "--name", "from-ci")
    assert status == 0 and out.startswith("loaded snapshot from-ci: 4 edges")


@pytest.mark.parametrize(
    "argv",
    [
        ["snapshot", "save", "Bad_Name"],
        ["snapshot", "save", "auto-20261207T000000Z"],
        ["snapshot", "export", "missing"],
        ["snapshot", "delete", "missing"],
        ["snapshot", "load", "/nonexistent/file.json"],
    ],
)
def test_snapshot_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], mapper: StandInMapper, argv: list[str]
) -> None:
    status, out, err = run(capsys, mapper, *argv)
    assert (status, out) == (2, "")
    assert err.count("\n") == 1


def test_an_empty_list_says_how_snapshots_come(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, StandInMapper(), "snapshot", "list")
    assert status == 0 and "MAPPER_SNAPSHOT_INTERVAL" in out


# --------------------------------------------------------------------------- diff


@pytest.mark.parametrize("argv", [["diff", "before", "--now"], ["diff", "before"]])
def test_diff_with_the_live_map(
    capsys: pytest.CaptureFixture[str], mapper: StandInMapper, argv: list[str]
) -> None:
    status, out, _ = run(capsys, mapper, *argv)
    assert status == 0
    head, *lines = out.splitlines()
    assert head.startswith(f"before ({format_time(BEFORE)}) → now (")
    assert head.endswith("1 added, 1 gone, 1 changed")
    assert lines == EXPECTED
    assert mapper.requests == ["Snapshot", "Edges"]


def test_diff_two_names_and_two_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mapper: StandInMapper
) -> None:
    mapper.snapshots["after"] = Snapshot("after", NOW, tuple(LIVE_EDGES))
    status, out, _ = run(capsys, mapper, "diff", "before", "after")
    assert (status, out.splitlines()[1:]) == (0, EXPECTED)
    for name in ("before", "after"):
        (tmp_path / f"{name}.json").write_bytes(snapshotwire.encode_snapshot(mapper.snapshots[name]))
    down = StandInMapper(down=True)
    status, out, _ = run(capsys, down, "diff", str(tmp_path / "before.json"), str(tmp_path / "after.json"))
    assert (status, out.splitlines()[1:]) == (0, EXPECTED)
    assert down.requests == []  # two files need no mapper


def test_diff_since_takes_the_newest_snapshot_old_enough(
    capsys: pytest.CaptureFixture[str], mapper: StandInMapper
) -> None:
    mapper.snapshots["auto-3h"] = Snapshot("auto-3h", NOW - 3 * 3600, (), auto=True)
    mapper.snapshots["auto-4h"] = Snapshot("auto-4h", NOW - 4 * 3600, OLD_EDGES, auto=True)
    status, out, _ = run(capsys, mapper, "diff", "--since", "2h", "--format", "json")
    assert status == 0
    doc = json.loads(out)
    assert doc["from"]["name"] == "auto-3h"  # not "before" (10 minutes old), not the older auto-4h
    assert len(doc["added"]) == len(LIVE_EDGES)


def test_diff_since_with_no_snapshot_old_enough(
    capsys: pytest.CaptureFixture[str], mapper: StandInMapper
) -> None:
    status, out, err = run(capsys, mapper, "diff", "--since", "2h")
    assert (status, out) == (1, "")
    assert "no snapshot was taken at or before" in err and "MAPPER_SNAPSHOT_INTERVAL" in err


def test_diff_as_a_markdown_table(capsys: pytest.CaptureFixture[str], mapper: StandInMapper) -> None:
    status, out, _ = run(capsys, mapper, "diff", "before", "--now", "--format", "markdown")
    assert status == 0
    tokens = MarkdownIt("commonmark").enable("table").parse(out)
    cells = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type in {"th_open", "td_open"}]
    assert cells[:4] == ["change", "client", "target", "details"]
    assert [cells[i] for i in range(4, len(cells), 4)] == ["added", "gone", "changed"]


def test_diff_namespace_filter_and_output_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mapper: StandInMapper
) -> None:
    mapper.edges.append(_e("job", "api", NOW, ns="batch"))
    target = tmp_path / "diff.json"
    status, out, err = run(
        capsys, mapper, "diff", "before", "-n", "batch", "--format", "json", "-o", str(target)
    )
    assert (status, out) == (0, "")
    assert err == f"wrote the diff of before and now to {target}\n"
    doc = json.loads(target.read_text())
    assert [e["client"]["name"] for e in doc["added"]] == ["job"]
    assert doc["gone"] == doc["changed"] == []


@pytest.mark.parametrize(
    "argv",
    [
        ["diff"],
        ["diff", "--since", "2h", "before"],
        ["diff", "before", "after", "--now"],
        ["diff", "missing"],
    ],
)
def test_diff_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], mapper: StandInMapper, argv: list[str]
) -> None:
    status, out, err = run(capsys, mapper, *argv)
    assert (status, out) == (2, "")
    assert err.startswith("network-mapper: error: ")


def test_diff_with_no_mapper_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, StandInMapper(down=True), "diff", "before")
    assert status == 1 and err.startswith(f"network-mapper: cannot reach the mapper at {URL}")
