"""The chart's snapshot values (mapper.snapshots) reach the mapper's variables, which its settings
read; bad values fail with the schema's message."""

from __future__ import annotations

from typing import Any

import pytest

from agent.mapper.settings import MapperSettings
from agent.settings import load
from tests.support.chart import env, find, rendered


def mapper_env(values: dict[str, Any]) -> dict[str, Any]:
    docs, _ = rendered(values)
    deployment = find(docs, "Deployment", "network-mapper")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return env(container)


def test_the_defaults_are_the_mappers_own_and_values_reach_its_settings() -> None:
    defaults = mapper_env({})
    variables = ("MAPPER_SNAPSHOT_LIMIT", "MAPPER_SNAPSHOT_INTERVAL", "MAPPER_AUTO_SNAPSHOTS")
    assert (
        load(MapperSettings, [], {k: defaults[k] for k in variables}).snapshots == MapperSettings().snapshots
    )
    custom = mapper_env({"mapper": {"snapshots": {"limit": 10, "interval": 900, "autoSnapshots": 96}}})
    snapshots = load(MapperSettings, [], {k: custom[k] for k in variables}).snapshots
    assert (snapshots.limit, snapshots.interval, snapshots.auto) == (10, 900.0, 96)


@pytest.mark.parametrize("snapshots", [{"limit": 0}, {"interval": 0}, {"autoSnapshots": "many"}, {"keep": 3}])
def test_bad_snapshot_values_fail_with_the_schemas_message(snapshots: dict[str, Any]) -> None:
    with pytest.raises(Exception, match="snapshots"):
        rendered({"mapper": {"snapshots": snapshots}})
