"""Istio sidecar scrapes → the HTTP requests they count, and the mapper mutation that reports them
(pure: no I/O, no clock, no settings).

Where the data comes from: each sidecar's (Envoy's) ``GET :15090/stats/prometheus``, the Prometheus
text format, of which only ``istio_requests_total`` is read. Its labels say who called whom
(``source_workload``, ``source_workload_namespace``, ``source_principal``, ``destination_workload``,
``destination_service_name``, ``destination_workload_namespace``), the ``response_code`` and, with
the Telemetry tagOverride the Otterize chart installs, ``request_path`` and ``request_method``.
Where it goes: :mod:`agent.watchers.istiodeltas` keeps each label set's last value and yields the
increases; :func:`request_of` turns an increased label set into a :class:`RequestKey`, pending in an
:class:`agent.pending.Pending` (values combined by :func:`combine`) until :class:`agent.reporter.Reporter`
sends :func:`mutations_for` them: ``reportIstioConnectionResults``.

Parsing: a sidecar's scrape holds hundreds of ``envoy_*`` lines and a few ``istio_requests_total``
ones, so the text is first cut down to the latter (:func:`request_lines`, :func:`select_lines`:
``str.find``, a line at a time; each line's series id is the hash of its label text, valid
within one process since ``str`` hashes are salted per process), then those
lines are parsed by ``prometheus_client``'s text parser (:func:`parse_lines`; :func:`parse_scrape`
does both). Its per-character label parsing is the cost of a scrape (Istio's label sets are
~1.5 KB a line), so the tracker (:mod:`agent.watchers.istiodeltas`) parses only the lines that
changed since the pod's previous scrape. Text the parser refuses raises :class:`ScrapeError`, and
nothing else. At most ``max_series`` series are kept per scrape; which ones does not depend on
the order Envoy prints them in (the ``max_series`` smallest ids), so the same series are kept
scrape after scrape.

Both sidecars of a request count it: the client's with ``reporter="source"``, the server's with
``reporter="destination"``. :func:`request_of` keeps the destination's series, and a source's
only when the destination has no sidecar the watcher scraped this cycle (``meshed`` does not
hold it), so a request is reported once, with the principal the server saw, and is not lost when
the server's sidecar cannot be scraped. Series naming an ``unknown`` (or
empty) source or destination workload or namespace are skipped, as are series with no path (the
tagOverride is missing) and methods the mapper's ``HttpMethod`` enum lacks (``HEAD``): each
skip is counted by :class:`Skip`. Paths lose their query string; identifier segments are
templated (:func:`agent.watchers.paths.template_path`) unless the watcher is told not to.
"""

from __future__ import annotations

import enum
import heapq
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from prometheus_client.parser import text_string_to_metric_families

from agent import pending
from agent.reporter import Mutation, sorted_chunks
from agent.watchers.paths import strip_query, template_path
from agent.wire import format_time

__all__ = [
    "HTTP_METHODS",
    "METRIC",
    "RequestKey",
    "RequestLines",
    "RequestSeen",
    "Scrape",
    "ScrapeError",
    "Series",
    "Skip",
    "combine",
    "mutations_for",
    "parse_lines",
    "parse_scrape",
    "request_lines",
    "request_of",
    "select_lines",
]

METRIC = "istio_requests_total"
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH", "CONNECT"})
"""The mapper's ``HttpMethod`` enum but ``ALL`` (which no request has)."""
UNKNOWN = "unknown"  # what Istio writes for a label it could not fill
MUTATION = "reportIstioConnectionResults"
QUERY = f"mutation {MUTATION}($results: IstioConnectionResults!) {{ {MUTATION}(results: $results) }}"
RESULTS_PER_MUTATION = 500
"""``IstioConnection`` entries per mutation: a request of a few hundred KiB at most."""

_HEADER = f"# TYPE {METRIC} counter\n"
_NAME_LENGTH = len(METRIC)
_AFTER_NAME = frozenset("{ \t")
# What the parser raises on junk is ValueError; it indexes text it has not fully checked, so an
# IndexError or KeyError is caught as well rather than let out of the scrape loop (the fuzz
# tests found none).
_PARSER_ERRORS = (ValueError, IndexError, KeyError)


class ScrapeError(ValueError):
    """The scrape's ``istio_requests_total`` lines are not Prometheus text."""


@dataclass(frozen=True, slots=True)
class Series:
    """One ``istio_requests_total`` sample: its labels, its value, and ``id``, the hash of its
    label text (labels as printed), which names the series across scrapes of one process."""

    id: int
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True, slots=True)
class Scrape:
    """What one scrape said: the series kept, ``over_cap`` series beyond ``max_series`` left out,
    and ``bad_values`` samples whose value is no counter's (negative, NaN, infinite)."""

    series: tuple[Series, ...]
    over_cap: int = 0
    bad_values: int = 0


def request_lines(text: str) -> list[str]:
    """The ``istio_requests_total`` sample lines of a scrape, in order (comments and every other
    family left out). Lines are found with ``str.find``: the rest of the text is never split."""
    lines: list[str] = []
    find, size = text.find, len(text)
    at = find(METRIC)
    while at != -1:
        after = at + _NAME_LENGTH
        if (at == 0 or text[at - 1] == "\n") and after < size and text[after] in _AFTER_NAME:
            end = find("\n", after)
            end = size if end == -1 else end
            lines.append(text[at:end])
            at = find(METRIC, end)
        else:
            at = find(METRIC, after)
    return lines


def _label_text(line: str) -> str:
    """A sample line without its value (and timestamp): what tells one series from another."""
    close = line.rfind("}")
    return line[: close + 1] if close != -1 else line.split(None, 1)[0]


@dataclass(frozen=True, slots=True)
class RequestLines:
    """A scrape's ``istio_requests_total`` sample lines, not parsed yet: at most ``max_series``
    (``over_cap`` more were left out), each with its series id (``ids[i]`` is ``lines[i]``'s)."""

    lines: tuple[str, ...]
    ids: tuple[int, ...]
    over_cap: int = 0


def select_lines(text: str, max_series: int | None = None) -> RequestLines:
    """A scrape's text → its ``istio_requests_total`` lines, at most ``max_series`` of them: the
    ones of smallest id, so that the same series are kept scrape after scrape."""
    lines = request_lines(text)
    ids = [hash(_label_text(line)) for line in lines]
    if max_series is None or len(lines) <= max_series:
        return RequestLines(tuple(lines), tuple(ids))
    kept = sorted(heapq.nsmallest(max_series, range(len(lines)), key=ids.__getitem__))
    return RequestLines(tuple(lines[i] for i in kept), tuple(ids[i] for i in kept), len(lines) - len(kept))


def parse_lines(lines: Sequence[str], ids: Sequence[int]) -> tuple[list[Series], int]:
    """Sample lines (with their ids) → their series, and how many had a value no counter has
    (negative, NaN, infinite: left out); :class:`ScrapeError` when they are not Prometheus text.
    Lines parse alike alone or together (one family, no state between lines), so a caller may
    parse only the lines that changed since a previous scrape."""
    if not lines:
        return [], 0
    try:
        samples = [
            sample
            for family in text_string_to_metric_families(_HEADER + "\n".join(lines) + "\n")
            for sample in family.samples
        ]
    except _PARSER_ERRORS as exc:
        raise ScrapeError(f"{METRIC} lines are not Prometheus text: {exc}"[:300]) from None
    if len(samples) != len(lines) or any(s.name != METRIC for s in samples):
        raise ScrapeError(f"{METRIC} lines parse into other samples than one per line")
    series, bad = [], 0
    for series_id, sample in zip(ids, samples, strict=True):
        value = sample.value
        if isinstance(value, int | float) and math.isfinite(value) and value >= 0:
            series.append(Series(series_id, sample.labels, float(value)))
        else:
            bad += 1
    return series, bad


def parse_scrape(text: str, max_series: int | None = None) -> Scrape:
    """A scrape's text → its ``istio_requests_total`` series, all parsed (:func:`select_lines`,
    then :func:`parse_lines`); :class:`ScrapeError` when those lines are not Prometheus text."""
    selected = select_lines(text, max_series)
    series, bad = parse_lines(selected.lines, selected.ids)
    return Scrape(tuple(series), selected.over_cap, bad)


class Skip(enum.Enum):
    """Why an increased series gives no request."""

    UNKNOWN = "unknown"  # a source or destination workload or namespace is unknown or empty
    NO_PATH = "no_path"  # no request_path (the Telemetry tagOverride is not installed)
    METHOD = "method"  # a method the mapper's HttpMethod enum lacks (HEAD, PROPFIND ...)
    DUPLICATE = "duplicate"  # the client's count of a request the server's sidecar counts too


class RequestKey(NamedTuple):
    """What one ``IstioConnection`` says, but for its time, principals and codes."""

    source_workload: str
    source_namespace: str
    destination_workload: str
    destination_service: str  # "" when unknown
    destination_namespace: str
    path: str
    method: str  # "" when the sidecar reports no request_method


class RequestSeen(NamedTuple):
    """What the increases of one :class:`RequestKey` said: when (the newest scrape), who (the
    source principals) and the response codes (100-599)."""

    last_seen: float
    principals: frozenset[str] = frozenset()
    codes: frozenset[int] = frozenset()


def _known(value: str) -> bool:
    return bool(value) and value != UNKNOWN


def request_of(
    labels: Mapping[str, str],
    *,
    templates: bool = True,
    meshed: Collection[tuple[str, str]] = (),
) -> tuple[RequestKey, frozenset[str], frozenset[int]] | Skip:
    """An increased series' labels → its request key, its principals and its response codes, or
    why it gives none. ``meshed`` holds the ``(namespace, workload)`` of every destination whose
    own sidecar is scraped: a source-reported series to one of them is a :attr:`Skip.DUPLICATE`.
    ``templates`` templates identifier path segments (else only the query string goes)."""
    get = labels.get
    src, src_ns = get("source_workload", ""), get("source_workload_namespace", "")
    dst, dst_ns = get("destination_workload", ""), get("destination_workload_namespace", "")
    if not (_known(src) and _known(src_ns) and _known(dst) and _known(dst_ns)):
        return Skip.UNKNOWN
    if get("reporter") == "source" and (dst_ns, dst) in meshed:
        return Skip.DUPLICATE
    raw_path = get("request_path", "")
    path = template_path(raw_path) if templates else strip_query(raw_path)
    if not _known(raw_path) or not path:
        return Skip.NO_PATH
    method = get("request_method", "").upper()
    if method == UNKNOWN.upper():
        method = ""
    if method and method not in HTTP_METHODS:
        return Skip.METHOD
    service = get("destination_service_name", "")
    key = RequestKey(src, src_ns, dst, service if _known(service) else "", dst_ns, path, method)
    principal = get("source_principal", "")
    code = get("response_code", "")
    codes = frozenset({int(code)}) if code.isdigit() and 100 <= int(code) <= 599 else frozenset()
    return key, frozenset({principal}) if _known(principal) else frozenset(), codes


def combine(a: RequestSeen, b: RequestSeen) -> RequestSeen:
    """The same request key seen twice: the newest time, the union of principals and codes."""
    return RequestSeen(
        max(a.last_seen, b.last_seen),
        a.principals | b.principals if b.principals - a.principals else a.principals,
        a.codes | b.codes if b.codes - a.codes else a.codes,
    )


Batch = pending.Batch[RequestKey, RequestSeen]


def connections(key: RequestKey, seen: RequestSeen) -> list[dict[str, Any]]:
    """One pending entry → its ``IstioConnection`` inputs: one per principal (the input carries
    one), each with every response code; one without ``srcPrincipal`` when none is known."""
    common: dict[str, Any] = {
        "srcWorkload": key.source_workload,
        "srcWorkloadNamespace": key.source_namespace,
        "dstWorkload": key.destination_workload,
        "dstServiceName": key.destination_service,
        "dstWorkloadNamespace": key.destination_namespace,
        "path": key.path,
        "methods": [key.method] if key.method else [],
        "lastSeen": format_time(seen.last_seen),
    }
    if seen.codes:
        common["responseCodes"] = sorted(seen.codes)
    if not seen.principals:
        return [common]
    return [{**common, "srcPrincipal": principal} for principal in sorted(seen.principals)]


def mutations_for(batch: Batch) -> list[Mutation[RequestKey, RequestSeen]]:
    """A drained batch → ``reportIstioConnectionResults`` mutations of at most
    :data:`RESULTS_PER_MUTATION` entries each (sorted, for stable output; none when empty)."""
    mutations = []
    for chunk in sorted_chunks(batch.entries, RESULTS_PER_MUTATION):
        results = [c for key, seen in chunk.items() for c in connections(key, seen)]
        mutations.append(Mutation(MUTATION, QUERY, {"results": {"results": results}}, chunk))
    return mutations
