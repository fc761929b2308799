"""The mapper's uploader sends its snapshots to the real cloud (tests/support/local_cloud.py:
CloudApp over SQLite, on 127.0.0.1) over real HTTP: each snapshot once (oldest first), again only
when replaced under its name, not again after a restart; an outage is retried; a cloud without the
route keeps them queued, and one refused for good is not sent again; anonymized, a snapshot's
edges carry the same hashes as the edge upload and its facts stay in the cluster."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import snapshotwire
from agent.anonymize import Anonymizer
from agent.mapper.snapshots import SnapshotStore
from agent.mapper.store import EdgeStore
from agent.mapper.uploader import CloudUnavailable, HttpCloudClient, Uploader
from agent.model import ClusterFacts, Edge, Method, NamespaceFacts, NodeFacts, WorkloadIdentity
from tests.support.local_cloud import LocalCloud

T0 = 1_780_000_000.0
FRONTEND = WorkloadIdentity("shop", "frontend", "Deployment")
CART = WorkloadIdentity("shop", "cartservice", "Deployment")
FACTS = ClusterFacts(
    namespaces=(NamespaceFacts("shop", (("kubernetes.io/metadata.name", "shop"),)),),
    nodes=(NodeFacts("node-1", ("10.0.0.1",)),),
)


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[LocalCloud]:
    with LocalCloud(tmp_path / "cloud") as running:
        yield running


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EdgeStore]:
    edges = EdgeStore(tmp_path / "mapper.db")
    edges.record([Edge(FRONTEND, CART, T0, T0, frozenset({Method.TCP}), ports=(8080,))])
    yield edges
    edges.close()


def uploader(
    cloud: LocalCloud, store: EdgeStore, snapshots: SnapshotStore, anonymizer: Anonymizer | None = None
) -> Uploader:
    client = HttpCloudClient(cloud.url, cloud.token, timeout=5.0)
    return Uploader(
        store, client, snapshots=snapshots, anonymizer=anonymizer, clock=lambda: T0 + 60, retry_initial=0.01
    )


def in_cloud(cloud: LocalCloud) -> list[str]:
    return [r.name for r in cloud.store.snapshots(cloud.tenant_id, cloud.cluster_id)]


def snapshot_posts(cloud: LocalCloud) -> list[str]:
    return [
        snapshotwire.decode_snapshot(e.body).name
        for e in cloud.exchanges()
        if e.path == "/v1/snapshots" and e.status == 200
    ]


def test_each_snapshot_goes_once_and_again_when_replaced(
    cloud: LocalCloud, store: EdgeStore, tmp_path: Path
) -> None:
    snapshots = SnapshotStore(store)
    snapshots.take("before", FACTS, T0 + 1)
    snapshots.take("auto-20260101T000000Z", FACTS, T0 - 100, auto=True)
    result = uploader(cloud, store, snapshots).upload_once()
    assert result.snapshots == 2
    assert snapshot_posts(cloud) == ["auto-20260101T000000Z", "before"]  # oldest first
    assert in_cloud(cloud) == ["before", "auto-20260101T000000Z"]
    record, document = cloud.store.snapshot(cloud.tenant_id, cloud.cluster_id, "before") or (None, b"")
    assert record is not None and record.edges == 1
    sent = snapshotwire.decode_snapshot(document)
    assert sent.facts == FACTS and sent.edges[0].ports == (8080,)

    # nothing new: nothing sent, also by a new uploader over the same file (a restart)
    assert uploader(cloud, store, snapshots).upload_once().snapshots == 0
    # replaced under its name: sent again; deleted: its mark goes
    snapshots.take("before", ClusterFacts(), T0 + 2)
    snapshots.delete_snapshot("auto-20260101T000000Z")
    assert uploader(cloud, store, snapshots).upload_once().snapshots == 1
    assert snapshot_posts(cloud) == ["auto-20260101T000000Z", "before", "before"]
    stored = cloud.store.snapshot(cloud.tenant_id, cloud.cluster_id, "before")
    assert stored is not None and snapshotwire.decode_snapshot(stored[1]).facts == ClusterFacts()


def test_an_outage_is_retried_and_a_cloud_without_the_route_keeps_them_queued(
    cloud: LocalCloud, store: EdgeStore, caplog: pytest.LogCaptureFixture
) -> None:
    snapshots = SnapshotStore(store)
    up = uploader(cloud, store, snapshots)
    up.upload_once()  # the edges and the heartbeat: the cycles below send snapshots only
    snapshots.take("before", FACTS, T0 + 1)
    cloud.fail_with(503)
    with pytest.raises(CloudUnavailable):
        up.upload_once()
    assert cloud.count(503) == 5  # every attempt of the cycle
    cloud.fail_with(404)  # an older cloud: no such route
    with caplog.at_level(logging.WARNING, logger="agent.mapper.snapshotupload"):
        assert up.upload_once().snapshots == 0
        assert up.upload_once().snapshots == 0
    assert sum("takes no snapshots" in r.message for r in caplog.records) == 1  # said once
    cloud.fail_with(None)
    assert up.upload_once().snapshots == 1
    assert in_cloud(cloud) == ["before"]
    assert up.upload_once().snapshots == 0
    # refused for good (too large for the cloud, say): marked, so not sent every cycle
    snapshots.take("after", FACTS, T0 + 2)
    cloud.fail_with(413)
    assert up.upload_once().snapshots == 1
    cloud.fail_with(None)
    assert up.upload_once().snapshots == 0
    assert in_cloud(cloud) == ["before"]


def test_anonymized_snapshots_carry_the_edge_uploads_hashes_and_no_facts(
    cloud: LocalCloud, store: EdgeStore
) -> None:
    snapshots = SnapshotStore(store)
    snapshots.take("before", FACTS, T0 + 1)
    anonymizer = Anonymizer(b"k" * 32)
    uploader(cloud, store, snapshots, anonymizer).upload_once()
    stored = cloud.store.snapshot(cloud.tenant_id, cloud.cluster_id, "before")
    assert stored is not None
    assert b"frontend" not in stored[1] and b"shop" not in stored[1] and b"node-1" not in stored[1]
    sent = snapshotwire.decode_snapshot(stored[1])
    assert sent.facts == ClusterFacts()
    (graph_edge,) = cloud.edges()  # the same key as the anonymized edge upload's
    assert sent.edges[0].key == graph_edge
