"""The mapper's API under generated input, over real HTTP (uvicorn on 127.0.0.1): schemathesis
builds queries and mutations from ``schema.graphql`` itself, hypothesis builds JSON of extreme
shapes (depth, size, numbers) for every way a request carries JSON (the POST body, the GET
``variables``). Zero server errors; the map still reads afterwards. The app is the real one
(token check, limits, the ``Time`` scalar, the report queue) over a real store and resolver."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from agent.mapper.api import create_app
from agent.mapper.api.schema import SCHEMA_PATH
from agent.mapper.cluster import ClusterState
from agent.mapper.resolver import Resolver
from agent.mapper.settings import ApiSettings
from agent.mapper.snapshots import SnapshotStore
from agent.mapper.store import EdgeStore
from agent.model import Edge, InternetTarget, Method, WorkloadIdentity
from tests.support.mapper_app import MapperServer

pytestmark = pytest.mark.slow

TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
schema = schemathesis.graphql.from_file(SCHEMA_PATH.read_text())


class Mapper:
    """The mapper's API app under uvicorn, over a store holding a few edges."""

    def __init__(self, data_dir: Path) -> None:
        self.store = EdgeStore.in_dir(data_dir)
        at = 1_780_000_000.0
        frontend = WorkloadIdentity("shop", "frontend", "Deployment")
        self.store.record(
            [
                Edge(
                    frontend, WorkloadIdentity("shop", "cart", "Deployment"), at, at, frozenset({Method.TCP})
                ),
                Edge(frontend, InternetTarget("api.example.com", ("1.2.3.4",), 443), at, at),
            ]
        )
        state = ClusterState()
        app = create_app(
            ApiSettings(token=TOKEN),
            self.store,
            Resolver(state, "cluster.local"),
            state,
            facts=state,
            snapshots=SnapshotStore(self.store),
        )
        self.server = MapperServer(app).start()
        self.base = f"http://127.0.0.1:{self.server.port}"
        self.http = requests.Session()

    def edges(self) -> int:
        r = self.http.post(f"{self.base}/query", json={"query": "{ edges { count } }"}, timeout=30)
        assert r.status_code == 200, r.text
        return len(r.json()["data"]["edges"])

    def close(self) -> None:
        self.http.close()
        self.server.stop()
        self.store.close()


@pytest.fixture(scope="module")
def mapper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mapper]:
    running = Mapper(tmp_path_factory.mktemp("mapper-fuzz"))
    yield running
    running.close()


@schema.parametrize()
@settings(
    max_examples=10,
    phases=[Phase.explicit, Phase.generate],
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_generated_operations_never_get_a_server_error(case: schemathesis.Case, mapper: Mapper) -> None:
    if case.operation.label.startswith("Mutation.resetCapture"):
        return  # it would empty the map the other operations read
    case.call_and_validate(
        base_url=f"{mapper.base}/query",
        session=mapper.http,
        headers=AUTH,
        checks=[not_a_server_error],
        timeout=30,
    )


def test_the_map_still_reads_after_the_generated_operations(mapper: Mapper) -> None:
    assert mapper.edges() >= 2


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)


def _extreme(value: Any, depth: int, digits: int) -> str:
    """``value`` as JSON inside ``depth`` arrays, beside a number ``digits`` long (0: none)."""
    text = json.dumps(value)
    if digits:
        text = f'{{"n": {"9" * digits}, "v": {text}}}'
    return "[" * depth + text + "]" * depth


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(
    value=json_values,
    depth=st.sampled_from([0, 1, 63, 65, 1000, 100_000]),
    digits=st.sampled_from([0, 50, 101, 5000]),
    query=st.sampled_from(["{ health }", "{ edges { count } }", "mutation { resetCapture }"]),
)
def test_extreme_json_gets_4xx_or_an_answer_never_5xx(
    mapper: Mapper, value: Any, depth: int, digits: int, query: str
) -> None:
    variables = _extreme(value, depth, digits)
    as_body = f'{{"query": {json.dumps(query)}, "variables": {variables}}}'
    posted = mapper.http.post(
        f"{mapper.base}/query", data=as_body, headers={"Content-Type": "application/json"}, timeout=30
    )
    got = mapper.http.get(f"{mapper.base}/query", params={"query": query, "variables": variables}, timeout=30)
    for reply in (posted, got):
        assert reply.status_code < 500, reply.text[:300]
        if depth > 64 or digits > 100:
            assert reply.status_code == 400, reply.text[:300]
    assert mapper.edges() >= 2  # no token: the resetCapture mutations were refused
