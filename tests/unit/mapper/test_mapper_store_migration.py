"""Edge-store files written by older versions open, keep every edge and upload mark, and the
uploader carries on from them. The files are real: tests/data/mapper/make_stores.py wrote them
with the code of their time (versions 1 and 2 as laid out then, version 3 by that EdgeStore)."""

from __future__ import annotations

import shutil
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from agent import wire
from agent.mapper.store import SCHEMA_VERSION, EdgeStore
from agent.mapper.uploader import IngestResult, Uploader
from agent.mapper.uploadledger import UploadLedger
from agent.model import AwsTarget, Edge, HttpResource, InternetTarget, KafkaTopic, Method, WorkloadIdentity

DATA = Path(__file__).parents[2] / "data" / "mapper"
T0 = 1_780_000_000.0
FRONTEND = WorkloadIdentity("shop", "frontend", "Deployment")
CART = WorkloadIdentity("shop", "cartservice", "Deployment")
KAFKA = WorkloadIdentity("data", "kafka", "StatefulSet")
API = InternetTarget("api.example.com", ("198.51.100.10",), 443)
ORDERS = AwsTarget("arn:aws:s3:::orders")
HTTP = (HttpResource("/cart", ("GET", "POST")),)
ACTIONS = ("s3:GetObject", "s3:PutObject")
EDGES = [  # as make_stores.py recorded them
    Edge(
        FRONTEND, CART, T0, T0 + 5, frozenset({Method.TCP, Method.DNS}), 7, HTTP, target_service="cartservice"
    ),
    Edge(
        CART, KAFKA, T0 + 1, T0 + 2, frozenset({Method.KAFKA}), 2, (), (KafkaTopic("orders", ("produce",)),)
    ),
    Edge(FRONTEND, API, T0, T0 + 3.25, frozenset({Method.DNS}), 1, ambiguous=True),
    Edge(CART, ORDERS, T0 + 0.5, T0 + 0.75, frozenset({Method.AWS}), 3, aws_actions=ACTIONS),
]
GONE = InternetTarget("gone.example.com", (), 443)


class Cloud:
    """Takes every batch (the uploader's side is what is checked here)."""

    def __init__(self) -> None:
        self.sent: list[wire.EdgeDoc] = []

    def ingest(
        self, batch_id: str, anonymized: bool, edges: list[wire.EdgeDoc], seen_at: float | None = None
    ) -> IngestResult:
        self.sent.extend(edges)
        return IngestResult(True, len(edges))


def opened(tmp_path: Path, name: str) -> Path:
    path = tmp_path / "edges.db"
    shutil.copy(DATA / name, path)
    return path


def version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


@pytest.mark.parametrize("name", ["edges-v1.db", "edges-v2.db", "edges-v3.db"])
def test_an_older_file_keeps_every_edge_and_takes_new_ones(tmp_path: Path, name: str) -> None:
    path = opened(tmp_path, name)
    with EdgeStore(path) as store:
        assert Counter(store.edges()) == Counter(EDGES)
        before = max(seq for seq, _ in store.changed_since(0, 100))
        store.record([Edge(KAFKA, ORDERS, T0 + 60, T0 + 60, frozenset({Method.AWS}))])
        assert [seq for seq, _ in store.changed_since(before, 100)] == [before + 1]  # seq goes on
        store.record([EDGES[0]])  # merges into the migrated row
        assert next(e for e in store.edges() if e.key == EDGES[0].key).count == 2 * EDGES[0].count
    assert version(path) == SCHEMA_VERSION
    with EdgeStore(path) as store:  # and opens again as it is
        assert len(store.edges()) == len(EDGES) + 1


def test_version_3_upload_marks_and_cursor_carry_over(tmp_path: Path) -> None:
    with EdgeStore(opened(tmp_path, "edges-v3.db")) as store:
        ledger = UploadLedger(store)
        assert ledger.upload_cursor() == 3
        marks = ledger.upload_marks([EDGES[0].key, EDGES[1].key, EDGES[2].key])
        assert {k: (seen, live) for k, (seen, _, live) in marks.items()} == {
            EDGES[0].key: (T0 + 5, True),
            EDGES[1].key: (T0 + 2, False),
        }
        assert ledger.has_live_uploads()
        # The edge forgotten by the reset is still owed its quiet upload, from its key alone.
        assert ledger.gone_quiet(T0 + 10, 10) == [  # by key
            Edge(CART, GONE, T0 + 9, T0 + 9, frozenset(), 1, ambiguous=True),
            EDGES[0],  # live when sent, not seen since
        ]
        cloud = Cloud()
        Uploader(store, cloud, clock=lambda: T0 + 10, granularity=5.0, retry_initial=0.001).upload_once()
        sent = {(wire.from_doc(d).key, d.live) for d in cloud.sent}
        # The quiet sweep (the two marked live), then the changes past the cursor.
        assert sent == {
            (EDGES[0].key, False),
            ((CART, GONE), False),
            (EDGES[2].key, False),
            (EDGES[3].key, False),
        }
        # A migrated mark's digest matches no document: the edge's next change re-sends it, even
        # one whose times say nothing new (without the cleared digest this would be skipped).
        store.record([EDGES[1]])
        cloud.sent.clear()
        Uploader(store, cloud, clock=lambda: T0 + 10, granularity=5.0).upload_once()
        assert [wire.from_doc(d).key for d in cloud.sent] == [EDGES[1].key]


def test_a_newer_file_is_left_alone(tmp_path: Path) -> None:
    path = opened(tmp_path, "edges-v3.db")
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(Exception, match="left untouched"):
        EdgeStore(path)
    assert path.read_bytes() == before


def test_what_the_codec_refuses_is_left_out_and_the_rest_reads_and_uploads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Version 3 stored an edge last seen in year 10000 (a report's 9999-12-31T23:00-05:00), which
    # once failed every read and upload; the codec refuses such times now.
    with EdgeStore(opened(tmp_path, "edges-v3-bad-time.db")) as store:
        assert store.edges() == [EDGES[0]]
        assert "left out 1 edges and 1 upload marks" in caplog.text
        cloud = Cloud()
        uploader = Uploader(store, cloud, clock=lambda: T0 + 10, granularity=5.0, retry_initial=0.001)
        uploader.upload_once()  # the refused edge's live mark is gone: no quiet upload of it fails
        store.record([EDGES[0]])
        uploader.upload_once()
        assert [wire.from_doc(d).key for d in cloud.sent] == [EDGES[0].key]
