"""Edge retention through the real mapper process (``python -m agent.mapper``) with short bounds
(``--edge-retention 3600 --edge-prune-after 86400``), its store holding edges stamped in the past
before it starts, and uploading to the real cloud (in this process) with a granularity longer than
the retention: the edge past the first bound leaves the user's ``network-mapper list`` and exports
and is uploaded not live; the edge past the second is pruned at startup, logged with the count, and
is gone from the store; the recent edge is everywhere."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.mapper.store import EdgeStore
from agent.model import Edge, Method, WorkloadIdentity
from tests.support.local_cloud import LocalCloud
from tests.support.mapper_process import (
    CART,
    FRONTEND,
    REDIS,
    SHOP,
    Cluster,
    MapperProcess,
    run_cli,
    running_cluster,
    wait_until,
)

HOUR, DAY = 3600.0, 86400.0
GONE = WorkloadIdentity(SHOP, "gone-checkout", "Deployment")  # deleted long ago: only its edges remain
UPLOADS = "{ uploadPosition { changed uploaded } }"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


def seen(client: WorkloadIdentity, target: WorkloadIdentity, at: float) -> Edge:
    return Edge(client, target, at, at, frozenset({Method.TCP}))


def test_old_edges_leave_list_exports_the_live_set_and_then_the_store(
    cluster: Cluster, tmp_path: Path
) -> None:
    now = time.time()
    recent, hidden, pruned = (
        seen(FRONTEND, CART, now),
        seen(GONE, CART, now - 2 * HOUR),
        seen(CART, REDIS, now - 2 * DAY),
    )
    with LocalCloud(tmp_path / "cloud") as cloud:
        args = ["--edge-retention", "3600", "--edge-prune-after", "86400", "--cloud-url", cloud.url]
        args += ["--upload-interval", "1", "--upload-granularity", str(DAY), "--telemetry-enabled=false"]
        mapper = MapperProcess(cluster, tmp_path, args, env={"NETWORK_MAPPER_CLOUD_TOKEN": cloud.token})
        mapper.data_dir.mkdir(parents=True)
        with EdgeStore.in_dir(mapper.data_dir) as store:
            store.record([recent, hidden, pruned])
        with mapper:
            wait_until(
                lambda: "edges pruned count=1 " in mapper.log(), 10, lambda: f"the prune:\n{mapper.log()}"
            )
            mapper_url = ["--mapper-url", mapper.query_url]
            listed = run_cli([*mapper_url, "list"])
            assert listed.returncode == 0, listed.stderr
            assert FRONTEND.name in listed.stdout and CART.name in listed.stdout
            assert GONE.name not in listed.stdout and REDIS.name not in listed.stdout
            exported = run_cli([*mapper_url, "export"])
            assert exported.returncode == 0, exported.stderr
            assert [d["metadata"]["name"] for d in yaml.safe_load_all(exported.stdout)] == [FRONTEND.name]
            as_json = run_cli([*mapper_url, "export", "--format", "json"])
            assert as_json.returncode == 0, as_json.stderr
            assert GONE.name not in as_json.stdout and json.loads(as_json.stdout)

            def uploaded() -> bool:
                position: dict[str, Any] = mapper.client().execute(UPLOADS, {})["uploadPosition"]
                return position["uploaded"] >= position["changed"] > 0 and recent.key in cloud.live()

            wait_until(uploaded, 15, lambda: f"the upload:\n{mapper.log()}", interval=0.2)
            live = cloud.live()
            assert live[recent.key] is True
            assert (
                live[hidden.key] is False
            )  # 2 h old: live under the 1-day granularity but for the retention
            assert live.get(pruned.key) in (None, False)  # pruned before or after its upload: never live
            assert mapper.stop() == 0, mapper.log()
    with EdgeStore.in_dir(mapper.data_dir) as store:
        assert {e.key for e in store.edges()} == {recent.key, hidden.key}  # hidden, kept; pruned, gone
