"""The chart's retention values (mapper.retention) reach the mapper's variables, which its settings
read; bad values fail with the schema's message, a prune bound under the retention with the chart's."""

from __future__ import annotations

from typing import Any

import pytest

from agent.mapper.settings import MapperSettings
from agent.settings import load
from tests.support.chart import env, find, rendered

VARIABLES = ("MAPPER_EDGE_RETENTION", "MAPPER_EDGE_PRUNE_AFTER")


def mapper_env(values: dict[str, Any]) -> dict[str, Any]:
    docs, _ = rendered(values)
    deployment = find(docs, "Deployment", "network-mapper")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return env(container)


def test_the_defaults_are_the_mappers_own_and_values_reach_its_settings() -> None:
    defaults = mapper_env({})
    assert (defaults["MAPPER_EDGE_RETENTION"], defaults["MAPPER_EDGE_PRUNE_AFTER"]) == ("2592000", "7776000")
    retention = load(MapperSettings, [], {k: defaults[k] for k in VARIABLES}).retention
    assert retention == MapperSettings().retention
    custom = mapper_env({"mapper": {"retention": {"visibleFor": 60, "pruneAfter": 60}}})
    retention = load(MapperSettings, [], {k: custom[k] for k in VARIABLES}).retention
    assert (retention.visible_for, retention.prune_after) == (60.0, 60.0)


@pytest.mark.parametrize(
    "retention", [{"visibleFor": 0}, {"pruneAfter": 1.5}, {"visibleFor": "30d"}, {"keepFor": 3}]
)
def test_bad_retention_values_fail_with_the_schemas_message(retention: dict[str, Any]) -> None:
    with pytest.raises(Exception, match="retention"):
        rendered({"mapper": {"retention": retention}})


def test_pruning_before_the_retention_fails_the_render() -> None:
    with pytest.raises(
        Exception, match=r"pruneAfter \(60\) must be at least mapper.retention.visibleFor \(120\)"
    ):
        rendered({"mapper": {"retention": {"visibleFor": 120, "pruneAfter": 60}}})
