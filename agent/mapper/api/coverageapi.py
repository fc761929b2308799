"""The coverage fields of the GraphQL API: the ``reportComponentStatus`` mutation (producers'
periodic status, :mod:`agent.statusreport`), the sniffer reports' ``node`` and the ``coverage``
query, all reaching :class:`agent.mapper.coverage.Coverage` through the request's ``ApiState``.

Bound into the executable schema by :func:`agent.mapper.api.schema.build_schema`. A mapper built
without coverage (tests, embedders) accepts status reports and answers an empty coverage.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ariadne import MutationType, QueryType
from graphql import GraphQLError

from agent.mapper.api import mutations
from agent.mapper.coverage import Coverage
from agent.statusreport import COMPONENTS
from agent.wirechecks import MAX_NAME, MAX_TEXT, name_problem

if TYPE_CHECKING:
    from agent.mapper.api.schema import Info, RequestContext

log = logging.getLogger("agent.mapper.api")

MAX_WATCHING = 1_000  # items of a status's `watching` and `counters` kept (a bound on what one pod sends)

coverage_query = QueryType()
coverage_mutation = MutationType()


def _coverage(ctx: RequestContext) -> Coverage | None:
    found: Coverage | None = getattr(ctx.state, "coverage", None)
    return found


def sniffer_node(
    convert: Callable[[Mapping[str, Any]], mutations.Converted],
) -> Callable[[Mapping[str, Any], RequestContext], mutations.Converted]:
    """A sniffer report's converter that first notes the report's ``node`` (its sniffer is alive)."""

    def run(results: Mapping[str, Any], ctx: RequestContext) -> mutations.Converted:
        coverage, node = _coverage(ctx), results.get("node") or ""
        if coverage is not None and node and not name_problem(node, bound=MAX_NAME):
            coverage.node_reported(node)
        return convert(results)

    return run


@coverage_mutation.field("reportComponentStatus")
def _report_status(_: Any, info: Info, status: Mapping[str, Any]) -> bool:
    from agent.mapper.api.schema import BAD_INPUT_CODE, authorized

    ctx = authorized(info)
    component, instance, node = status["component"], status["instance"], status["node"]
    problem = (
        (f"unknown component {component[:64]!r}" if component not in COMPONENTS else "")
        or name_problem(instance, bound=MAX_NAME)
        or name_problem(node, empty=True, bound=MAX_NAME)
    )
    watching = [item[:MAX_TEXT] for item in status["watching"][:MAX_WATCHING]]
    counters = [(c["name"][:MAX_NAME], max(0, int(c["value"]))) for c in status["counters"][:MAX_WATCHING]]
    if problem:
        raise GraphQLError(f"bad status: {problem}", extensions={"code": BAD_INPUT_CODE})
    coverage = _coverage(ctx)
    if coverage is not None:
        coverage.status(component, instance, node, watching, counters)
    log.debug("status component=%s instance=%s node=%s peer=%s", component, instance, node, ctx.peer)
    return True


@coverage_query.field("coverage")
def _coverage_document(_: Any, info: Info) -> dict[str, Any]:
    coverage = _coverage(info.context)
    if coverage is None:  # nothing tracked: a default document says so
        coverage = Coverage(1.0)
    return coverage.document()
