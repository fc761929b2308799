"""Edge retention with the bounds set short (seconds) and edges stamped in the past (the store takes
edges with explicit times; nothing waits for time to pass):

* past the first bound (``visible_for``), an edge leaves what the mapper's API answers — the CLI's
  ``list`` and exports (run as a user runs them, against the real API app over a real store, in this
  process), the Otterize CLI's ``intents`` / ``serviceIntents`` — while the store still holds it; a
  workload that no longer exists, known only from old edges, leaves the exports;
* past the first bound, an edge is never uploaded live, and one the cloud holds live is sent not
  live by the idle sweep, however long the upload granularity;
* past the second (``prune_after``), :meth:`EdgeStore.prune` deletes it: snapshots keep theirs, a
  pruned edge is not uploaded, the upload position still converges, an edge seen again comes back;
  the :class:`Pruner` prunes when started and on its interval, one log line per run;
* the settings: defaults, the check that the second bound is not shorter than the first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.cli import main as cli
from agent.mapper.__main__ import main as mapper_main
from agent.mapper.api import create_app
from agent.mapper.retention import Pruner, RecentEdges
from agent.mapper.settings import DAY, ApiSettings, MapperSettings, RetentionSettings
from agent.mapper.snapshots import SnapshotStore
from agent.mapper.store import EdgeStore
from agent.mapper.uploadledger import UploadLedger
from agent.mapperclient import HttpMapperClient, Transport
from agent.model import ClusterFacts, Edge, Method, WorkloadIdentity
from agent.settings import SettingsError, load
from tests.support.mapper_app import ObservationLog
from tests.support.mapper_process import wait_until
from tests.support.transports import AsgiTransport
from tests.unit.mapper.test_mapper_uploader import HOUR, T0, Clock, FakeCloud, uploader

URL = "http://mapper.in-process:9090/query"
TOKEN = "t"
VISIBLE, PRUNE = 30.0, 90.0  # seconds: the bounds, set short

FRONTEND = WorkloadIdentity("shop", "frontend", "Deployment")
CART = WorkloadIdentity("shop", "cartservice", "Deployment")
REDIS = WorkloadIdentity("shop", "redis-cart", "StatefulSet")
GHOST = WorkloadIdentity("shop", "legacy-checkout", "Deployment")  # deleted: only old edges name it


def seen(client: WorkloadIdentity, target: WorkloadIdentity, at: float) -> Edge:
    return Edge(client, target, at, at, frozenset({Method.TCP}))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EdgeStore]:
    with EdgeStore.in_dir(tmp_path) as s:
        yield s


# ------------------------------------------------------------------ the first bound: the map


@pytest.fixture
def aged(store: EdgeStore) -> Iterator[Transport]:
    """The real API app over ``store`` as the mapper wires it (``RecentEdges`` with the real clock):
    frontend → cart seen a second ago; the deleted workload → cart 45 s ago, frontend → redis 120 s
    ago (both past ``VISIBLE``; the second past ``PRUNE`` too, but not pruned yet)."""
    now = time.time()
    store.record(
        [seen(FRONTEND, CART, now - 1), seen(GHOST, CART, now - 45), seen(FRONTEND, REDIS, now - 120)]
    )
    app = create_app(ApiSettings(token=TOKEN), RecentEdges(store, VISIBLE), ObservationLog())
    transport = AsgiTransport(app).start()
    try:
        yield transport
    finally:
        transport.close()


def run(capsys: pytest.CaptureFixture[str], transport: Transport, *argv: str) -> str:
    status = cli.main(["--mapper-url", URL, *argv], transport=transport)
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return captured.out


def test_an_edge_not_seen_past_the_retention_leaves_list(
    capsys: pytest.CaptureFixture[str], aged: Transport, store: EdgeStore
) -> None:
    listed = run(capsys, aged, "list")
    assert "frontend" in listed and "cartservice" in listed
    assert "legacy-checkout" not in listed and "redis-cart" not in listed
    assert store.count() == 3  # hidden, not deleted


def test_a_deleted_workload_leaves_the_exports_once_its_edges_age_out(
    capsys: pytest.CaptureFixture[str], aged: Transport
) -> None:
    intents = list(yaml.safe_load_all(run(capsys, aged, "export")))
    assert [
        (d["metadata"]["name"], [t["kubernetes"]["name"] for t in d["spec"]["targets"]]) for d in intents
    ] == [("frontend", ["cartservice"])]
    policies = run(capsys, aged, "export", "--format", "networkpolicy")
    assert "frontend" in policies and "legacy-checkout" not in policies and "redis-cart" not in policies
    documents = run(capsys, aged, "export", "--format", "json")
    assert "frontend" in documents and "legacy-checkout" not in documents and "redis-cart" not in documents


def test_the_otterize_queries_answer_only_recent_edges(aged: Transport) -> None:
    client = HttpMapperClient(URL, TOKEN, 5.0, aged)
    answer: dict[str, Any] = client.execute(
        "{ intents { client { name } server { name } } serviceIntents { client { name } intents { name } } }",
        {},
    )
    assert [(i["client"]["name"], i["server"]["name"]) for i in answer["intents"]] == [
        ("frontend", "cartservice")
    ]
    assert [(s["client"]["name"], [i["name"] for i in s["intents"]]) for s in answer["serviceIntents"]] == [
        ("frontend", ["cartservice"])
    ]


def test_recent_edges_filters_on_its_clock_and_passes_writes_through(store: EdgeStore) -> None:
    recent = RecentEdges(store, VISIBLE, clock=Clock(T0))
    assert recent.record([seen(FRONTEND, CART, T0 - VISIBLE), seen(FRONTEND, REDIS, T0 - VISIBLE - 1)]) == 2
    assert [e.target for e in recent.edges()] == [CART]  # exactly VISIBLE old: still shown
    assert [e.target for e in recent.edges(["shop"])] == [CART] and recent.edges(["other"]) == []
    recent.reset()
    assert store.count() == 0


# ------------------------------------------------------------------ the first bound: uploads


def test_an_edge_past_the_retention_is_never_uploaded_live(store: EdgeStore) -> None:
    clock = Clock(T0)
    cloud = FakeCloud(store, granularity=VISIBLE)  # each heartbeat checked against the retention
    store.record([seen(FRONTEND, CART, T0 - 1), seen(GHOST, CART, T0 - 45)])
    up = uploader(store, cloud, granularity=HOUR, visible_for=VISIBLE, clock=clock)
    up.upload_once()
    assert cloud.live == {(FRONTEND, CART): True, (GHOST, CART): False}  # 45 s < HOUR: live without it
    clock.now = T0 + VISIBLE  # frontend → cart is now 31 s old: the sweep takes it out of the live set
    result = up.upload_once()
    assert (result.quiet, cloud.live[(FRONTEND, CART)]) == (1, False)
    assert not UploadLedger(store).has_live_uploads()


def test_the_live_window_is_the_granularity_or_the_retention_if_shorter(store: EdgeStore) -> None:
    def live_for(visible_for: float | None) -> float:
        return uploader(store, FakeCloud(), granularity=HOUR, visible_for=visible_for).live_for

    assert (live_for(None), live_for(30 * DAY), live_for(VISIBLE)) == (HOUR, HOUR, VISIBLE)


# ------------------------------------------------------------------ the second bound: the store


def test_pruning_deletes_edges_past_the_second_bound_and_snapshots_keep_theirs(store: EdgeStore) -> None:
    store.record([seen(FRONTEND, CART, T0 - 1), seen(GHOST, CART, T0 - 45), seen(FRONTEND, REDIS, T0 - 120)])
    snapshots = SnapshotStore(store)
    snapshots.take("before", ClusterFacts(), T0)
    assert store.prune(T0 - PRUNE) == 1
    assert [e.key for e in store.edges()] == [(FRONTEND, CART), (GHOST, CART)]
    kept = snapshots.snapshot("before")
    assert kept is not None and len(kept.edges) == 3
    assert store.prune(T0 - PRUNE) == 0


def test_a_pruned_edge_is_not_uploaded_and_the_upload_position_converges(store: EdgeStore) -> None:
    cloud = FakeCloud()
    store.record([seen(FRONTEND, CART, T0 - 1)])
    store.record([seen(FRONTEND, REDIS, T0 - 120)])  # the newest change, never uploaded
    assert store.positions() == (2, 0)
    assert store.prune(T0 - PRUNE) == 1
    assert store.positions() == (1, 0)  # what is left to upload
    up = uploader(store, cloud, clock=Clock(T0), visible_for=VISIBLE)
    up.upload_once()
    assert cloud.sent_keys() == {(FRONTEND, CART)}
    changed, uploaded = store.positions()
    assert uploaded >= changed
    up.upload_once()
    assert len(cloud.batches) == 1  # nothing more: the pruned edge is gone for good
    store.record([seen(FRONTEND, REDIS, T0)])  # seen again: a new change, uploaded live
    up.upload_once()
    assert cloud.sent_keys() == {(FRONTEND, REDIS)} and cloud.live[(FRONTEND, REDIS)]
    changed, uploaded = store.positions()
    assert uploaded >= changed


def test_an_edge_uploaded_then_pruned_is_not_sent_again(store: EdgeStore) -> None:
    cloud = FakeCloud()
    store.record([seen(FRONTEND, REDIS, T0 - 120)])
    up = uploader(store, cloud, clock=Clock(T0), visible_for=VISIBLE)
    up.upload_once()
    assert cloud.live == {(FRONTEND, REDIS): False}
    store.prune(T0 - PRUNE)
    up.upload_once()
    assert len(cloud.batches) == 1


def test_the_pruner_prunes_when_started_and_every_interval_logging_the_count(
    store: EdgeStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "agent.mapper.retention")
    now = time.time()
    store.record([seen(FRONTEND, CART, now), seen(FRONTEND, REDIS, now - 2 * PRUNE)])
    pruner = Pruner(store, PRUNE, interval=0.05).start()
    try:
        wait_until(lambda: store.count() == 1, 10, "the first prune")
        store.record([seen(GHOST, CART, now - 2 * PRUNE)])
        wait_until(lambda: store.count() == 1, 10, "a later prune")
    finally:
        pruner.stop()
    lines = [r.getMessage() for r in caplog.records if r.name == "agent.mapper.retention"]
    assert lines[0] == "edges pruned count=1 not_seen_for=90s"
    assert "edges pruned count=1 not_seen_for=90s" in lines[1:]
    assert all(line.startswith("edges pruned count=") for line in lines)


# ------------------------------------------------------------------ settings


def test_the_defaults_are_30_and_90_days_pruned_hourly() -> None:
    retention = load(MapperSettings, [], {}).retention
    assert (retention.visible_for, retention.prune_after, retention.prune_interval) == (
        30 * DAY,
        90 * DAY,
        3600,
    )
    short = load(
        MapperSettings, [], {"MAPPER_EDGE_RETENTION": "30", "MAPPER_EDGE_PRUNE_AFTER": "90"}
    ).retention
    assert (short.visible_for, short.prune_after) == (VISIBLE, PRUNE)
    assert (
        load(MapperSettings, ["--edge-retention", "5", "--edge-prune-after", "5"], {}).retention.prune_after
        == 5
    )


@pytest.mark.parametrize(
    ("argv", "environ"),
    [
        (["--edge-prune-after", "60"], {"MAPPER_EDGE_RETENTION": "120"}),
        ([], {"MAPPER_EDGE_PRUNE_AFTER": str(29 * DAY)}),  # under the default retention
    ],
)
def test_pruning_before_the_retention_is_a_settings_error(argv: list[str], environ: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match=r"MAPPER_EDGE_PRUNE_AFTER.*shorter than.*MAPPER_EDGE_RETENTION"):
        load(MapperSettings, argv, environ)
    with pytest.raises(SettingsError, match="must be more than 0"):
        RetentionSettings(visible_for=0)


def test_the_mapper_refuses_to_start_with_pruning_before_the_retention(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert mapper_main(["--edge-retention", "120", "--edge-prune-after", "60"]) == 2
    assert "shorter than --edge-retention" in capsys.readouterr().err
