"""Web console at 2,000 workloads / 10,000 edges: first render and filter, aggregated vs all edges.

The local cloud (``python -m cloud_functions.local``) runs as a subprocess on a free port over a
fresh SQLite file; a tenant, a cluster and a read token are made through its API, and a generated
tenant (:mod:`consolegraph`: 2,000 workloads over 40 namespaces, 10,000 edges, pure and seeded) is
uploaded through ``POST /v1/ingest`` with the cluster's ingest token, 500 edges a batch.

The console (``/#token=<read token>``) then opens in Debian's Chromium, headless, through
Playwright, each run in a fresh browser context (a first visit). The figures come from the page's
own timing hooks (the console's DOM contract): ``window.consoleTimings.firstRender`` (ms from
navigation start to the first drawn graph, read once ``data-state`` is ``ready``) and
``.lastFilter`` (ms from a filter change until drawn, read once the ``data-renders`` counter has
moved). The filter is one namespace checked in ``#filter-namespace`` and then unchecked again
(the three biggest), each change a measurement, the page left to settle in between (no request in
flight, no draw for 400 ms: checking a namespace also drills down into it). The hooks are
cross-checked on the page's clock, from the click's input event to the draw counter's move, and
the page's ``consoleTimings.phases`` (layout, apply, draw, list) are printed to show where the
time goes. Each figure is a median of a few runs. The baseline, in the same run, is the
same page with ``#aggregate=off``: every edge fetched and laid out, no server-side aggregation; it
is capped (``--cap``) and printed "> cap" when it takes longer.

Beside them, cytoscape alone (the vendored cytoscape.js and dagre, in a blank page): the dagre
layout and the draw (until drawn and settled) of the aggregated view, of one expanded namespace and
of every node at once (grid positions), on the canvas renderer and on its WebGL mode (SwiftShader).

Last line: ``console: first render <X> s, filter <Y> ms (aggregated; goals 3 s / 300 ms)``.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from consolegraph import Tenant, biggest_namespaces, elements, generate  # bench/: run as a script
from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from agent import wire
from sandbox.cloudsetup import create_demo_tenant

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: its tests/support
from tests.support.console_browser import CloudProcess, launch_chromium

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "cloud_functions" / "console" / "vendor"
GOAL_FIRST_S, GOAL_FILTER_MS = 3.0, 300.0
SEED = 14


# ------------------------------------------------------------------------------------- the cloud


def upload(base: str, ingest_token: str, tenant: Tenant) -> None:
    """Every edge through ``POST /v1/ingest``, 500 a batch (the route's maximum), in order."""
    with requests.Session() as http:
        http.headers["Authorization"] = f"Bearer {ingest_token}"
        for n, batch in enumerate(tenant.batches(500)):
            body = {
                "version": wire.FORMAT_VERSION,
                "batchId": f"bench-{n}",
                "anonymized": False,
                "edges": batch,
            }
            for _ in range(20):  # the per-tenant limit answers 429 with Retry-After
                reply = http.post(f"{base}/v1/ingest", json=body, timeout=60)
                if reply.status_code != 429:
                    break
                time.sleep(float(reply.headers.get("Retry-After", "1")))
            if reply.status_code != 200:
                raise RuntimeError(f"ingest batch {n}: {reply.status_code} {reply.text[:300]}")


def stored_edges(base: str, tenant_id: str, read_token: str) -> int:
    """How many edges the graph route serves the read token (all pages)."""
    count, cursor, headers = 0, None, {"Authorization": f"Bearer {read_token}"}
    while True:
        params = {"limit": "10000"} | ({"cursor": cursor} if cursor else {})
        page = requests.get(
            f"{base}/v1/tenants/{tenant_id}/graph", params=params, headers=headers, timeout=60
        )
        page.raise_for_status()
        count += len(page.json()["edges"])
        if not (cursor := page.json().get("nextCursor")):
            return count


# ------------------------------------------------------------------------------------ the browser

READY = """() => ['ready', 'empty', 'error'].includes(document.documentElement.dataset.state)
    && (document.documentElement.dataset.state !== 'ready'
        || (window.consoleTimings !== undefined && window.consoleTimings.firstRender > 0))"""
DRAWN = """(before) => Number(document.documentElement.dataset.renders || 0) > before
    && window.consoleTimings !== undefined && typeof window.consoleTimings.lastFilter === 'number'"""


WATCH_CLICK = """() => {  // the click's input event, then each draw (time, phases), on the page's clock
    if (window.__benchClick) window.__benchClick.watcher.disconnect();
    const seen = window.__benchClick = {down: null, draws: []};
    const down = e => { seen.down = seen.down ?? e.timeStamp; };
    document.addEventListener('pointerdown', down, {capture: true, once: true});
    seen.watcher = new MutationObserver(() => seen.draws.push(
        {at: performance.now(), phases: JSON.parse(JSON.stringify(window.consoleTimings.phases || {}))}));
    seen.watcher.observe(document.documentElement, {attributes: true, attributeFilter: ['data-renders']});
}"""
COUNT_JOBS = """(() => {  // before the page's scripts: count the jobs posted to its workers (the layout)
    window.__benchJobs = 0;
    const post = Worker.prototype.postMessage;
    Worker.prototype.postMessage = function (...args) {
        if (!this.__benchCounted) {  // one answer per job: the layout worker's protocol
            this.__benchCounted = true;
            this.addEventListener('message', () => { window.__benchJobs -= 1; });
            this.addEventListener('error', () => { window.__benchJobs = 0; });
        }
        window.__benchJobs += 1;
        return post.apply(this, args);
    };
})();"""
QUIET = """(ms) => {  // true once no layout job is out and data-renders has not moved for ms
    const seen = window.__benchQuiet || (window.__benchQuiet = {renders: null, since: 0});
    const renders = document.documentElement.dataset.renders, now = performance.now();
    if (renders !== seen.renders || window.__benchJobs > 0) Object.assign(seen, {renders, since: now});
    return now - seen.since > ms;
}"""

TIMELINE = """(until) => {  // what happened before the first draw: the page's load, its API calls
    const nav = performance.getEntriesByType('navigation')[0];
    const calls = performance.getEntriesByType('resource')
        .filter(r => r.name.includes('/v1/') && r.startTime < until)
        .map(r => new URL(r.name).pathname.replace(/\\/v1\\/tenants\\/[^/]+/, '')
            + ` ${Math.round(r.startTime)}-${Math.round(r.responseEnd)}`);
    const loaded = Math.round(nav.domContentLoadedEventEnd);
    return `DOMContentLoaded ${loaded} ms; API calls (ms): ${calls.join(', ')}`;
}"""


@dataclass
class Mode:
    """What one mode (aggregated, all edges) measured: ms each, None past the cap."""

    renders: list[float | None] = field(default_factory=list)
    filters: list[float | None] = field(default_factory=list)  # the page's lastFilter
    clicks: list[float] = field(default_factory=list)  # from the click's pointerdown to the draw
    drills: list[float] = field(default_factory=list)  # lastFilterComplete: drill-downs finished
    phases: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # consoleTimings.phases
    capped: str = ""  # what the page was doing when a first render hit the cap
    errors: list[str] = field(default_factory=list)  # page errors, console errors, failed requests
    before: str = ""  # the last visit's timeline before its first draw (Navigation/Resource Timing)


class Console:
    """One visit of the console in a fresh browser context (no cache, no localStorage)."""

    def __init__(self, browser: Browser, url: str, errors: list[str]) -> None:
        """``errors`` collects the page's errors, console errors and failed requests."""
        self.context = browser.new_context(viewport={"width": 1280, "height": 800})
        self.context.add_init_script(COUNT_JOBS)
        self.page: Page = self.context.new_page()
        self.page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
        self.page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
        self.page.on(
            "response",
            lambda r: (
                errors.append(f"HTTP {r.status} {r.request.method} {r.url.split('#')[0]}")
                if r.status >= 400
                else None
            ),
        )
        self.inflight = 0
        self.page.on("request", lambda _: self._count(1))
        self.page.on("requestfinished", lambda _: self._count(-1))
        self.page.on("requestfailed", lambda _: self._count(-1))
        self.url = url

    def _count(self, step: int) -> None:
        self.inflight += step

    def settle(self, cap: float) -> None:
        """Until no request is in flight, no layout job is out and no draw happened for 400 ms (the
        drill-down after a filter fetches, lays out and draws again): the next change must not
        overlap this one's work."""
        deadline = time.monotonic() + cap
        while True:
            self.page.wait_for_function(QUIET, arg=400, timeout=cap * 1000, polling=50)
            if self.inflight == 0:
                return
            if time.monotonic() > deadline:
                raise PlaywrightTimeout(f"the console did not settle within {cap:.0f} s")

    def first_render(self, cap: float, mode: Mode) -> float | None:
        """ms to the first drawn graph (the page's hook), None past ``cap`` seconds."""
        self.page.goto(self.url, wait_until="commit")
        try:
            self.page.wait_for_function(READY, timeout=cap * 1000, polling=50)
        except PlaywrightTimeout:
            mode.capped = self.page.evaluate(
                "() => `data-state=${document.documentElement.dataset.state},"
                " data-renders=${document.documentElement.dataset.renders},"
                " #message: ${(document.querySelector('#message') || {}).textContent || ''}`"
            )
            return None
        timings = self.page.evaluate("() => [document.documentElement.dataset.state, window.consoleTimings]")
        if timings[0] != "ready":
            message = self.page.locator("#message").text_content(timeout=1000)
            raise RuntimeError(f"the console is {timings[0]!r}, not ready: {message!r}")
        mode.phases.setdefault("first", []).append(timings[1].get("phases") or {})
        mode.before = self.page.evaluate(TIMELINE, timings[1]["firstRender"])
        self.settle(cap)
        return float(timings[1]["firstRender"])

    def toggle_namespace(self, namespace: str, on: bool, cap: float, mode: Mode) -> bool:
        """Check (or uncheck) one namespace in ``#filter-namespace``; records the page's ms until
        drawn and the ms from the click's input event to the draw counter's move. False past ``cap``."""
        page = self.page
        before = int(page.evaluate("() => Number(document.documentElement.dataset.renders || 0)"))
        page.evaluate(
            "() => Object.assign(window.consoleTimings, {lastFilter: null, lastFilterComplete: null})"
        )
        page.evaluate(WATCH_CLICK)
        try:
            box = page.locator(f'#filter-namespace input[name=namespace][value="{namespace}"]')
            box.set_checked(on, timeout=cap * 1000)
            page.wait_for_function(DRAWN, arg=before, timeout=cap * 1000, polling=10)
            self.settle(cap)
        except PlaywrightTimeout:
            mode.filters.append(None)
            return False
        timings, click = page.evaluate(
            "() => [window.consoleTimings, (({down, draws}) => ({down, draws}))(window.__benchClick)]"
        )
        mode.filters.append(float(timings["lastFilter"]))
        draws = click["draws"]
        if click["down"] is not None and draws and draws[0]["at"] >= click["down"]:
            mode.clicks.append(draws[0]["at"] - click["down"])
        mode.phases.setdefault("filter", []).append(draws[0]["phases"] if draws else {})
        if isinstance(timings.get("lastFilterComplete"), int | float):
            mode.drills.append(float(timings["lastFilterComplete"]))
            drilled = [d["phases"] for d in draws if d["phases"].get("reason") == "change"]
            mode.phases.setdefault("drill", []).append(drilled[-1] if drilled else {})
        return True

    def close(self) -> None:
        self.context.close()


def measure(browser: Browser, url: str, namespaces: list[str], runs: int, cap: float) -> Mode:
    """``runs`` first renders (each a fresh visit; stopped after one past a third of ``cap``) and,
    in the last visit, each of ``namespaces`` checked then unchecked (each change a measurement)."""
    mode = Mode()
    for run in range(runs):
        console = Console(browser, url, mode.errors)
        try:
            mode.renders.append(console.first_render(cap, mode))
            slow = mode.renders[-1] is None or mode.renders[-1] > cap * 1000 / 3
            if mode.renders[-1] is not None and (run == runs - 1 or slow):
                for namespace, on in [(ns, on) for ns in namespaces for on in (True, False)]:
                    if not console.toggle_namespace(namespace, on, cap, mode):
                        break
        finally:
            console.close()
        if slow:
            break
    return mode


DAGRE = """(elements) => {
    const started = performance.now();
    const g = new dagre.graphlib.Graph();
    g.setGraph({rankdir: 'LR', nodesep: 20, ranksep: 60});
    g.setDefaultEdgeLabel(() => ({}));
    for (const e of elements) if (!e.data.source) g.setNode(e.data.id, {width: 60, height: 30});
    for (const e of elements) if (e.data.source && e.data.source !== e.data.target)
        g.setEdge(e.data.source, e.data.target);
    dagre.layout(g);
    const positions = Object.fromEntries(g.nodes().map(id => [id, {x: g.node(id).x, y: g.node(id).y}]));
    return {ms: performance.now() - started, positions};
}"""
DRAW = """async ({elements, positions, webgl}) => {
    // Drawn and settled: from cytoscape() until the page has had 500 ms of smooth frames (no frame
    // over 50 ms): cytoscape draws in animation frames, in passes (WebGL mode emits no 'render').
    const box = document.getElementById('cy');
    const started = performance.now();
    const cy = cytoscape({
        container: box, elements,
        layout: positions ? {name: 'preset', positions} : {name: 'grid'},
        renderer: {name: 'canvas', webgl},
        style: [
            {selector: 'node', style: {label: 'data(label)', 'font-size': 8, width: 20, height: 20}},
            {selector: 'edge', style: {width: 1, 'curve-style': 'bezier', 'target-arrow-shape': 'triangle'}},
        ],
    });
    let last = performance.now(), busyUntil = last;
    while (last - busyUntil < 500 && last - started < 60000) {
        await new Promise(resolve => requestAnimationFrame(resolve));
        const now = performance.now();
        if (now - last > 50) busyUntil = now;
        last = now;
    }
    const probe = document.createElement('canvas');  // something was drawn (2D layers): inked pixels
    probe.width = 128; probe.height = 80;
    const ctx = probe.getContext('2d');
    for (const layer of box.querySelectorAll('canvas')) ctx.drawImage(layer, 0, 0, 128, 80);
    const pixels = ctx.getImageData(0, 0, 128, 80).data;
    let ink = 0;
    for (let i = 3; i < pixels.length; i += 4) ink += pixels[i] ? 1 : 0;
    cy.destroy();
    return {ms: busyUntil - started, ink};
}"""


def cytoscape_alone(browser: Browser, tenant: Tenant) -> list[str]:
    """Lines: dagre's layout, then cytoscape's canvas and WebGL (SwiftShader) draws, in a blank page,
    of the aggregated view, the biggest namespace expanded (dagre positions) and every node at once
    (grid positions: dagre would take minutes)."""
    namespace = biggest_namespaces(tenant)[0]
    views = {
        "aggregated": (elements(tenant), True, 3),
        f"{namespace} expanded": (elements(tenant, namespace), True, 3),
        "every node": (elements(tenant, everything=True), False, 1),
    }
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        page.set_content('<div id="cy" style="width:1280px;height:800px"></div>')
        page.add_script_tag(path=VENDOR / "cytoscape.min.js")
        page.add_script_tag(path=VENDOR / "dagre.min.js")
        lines = []
        for name, (elems, layout, runs) in views.items():
            nodes = sum("source" not in e["data"] for e in elems)
            laid: dict[str, Any] = page.evaluate(DAGRE, elems) if layout else {"ms": 0, "positions": None}
            draws = []
            for webgl in (False, True):
                arg = {"elements": elems, "positions": laid["positions"], "webgl": webgl}
                results = [page.evaluate(DRAW, arg) for _ in range(runs)]
                if not webgl and min(r["ink"] for r in results) == 0:  # WebGL's buffer reads back blank
                    raise RuntimeError(f"cytoscape drew nothing for {name} (webgl={webgl})")
                draws.append(min(r["ms"] for r in results))
            dagre = f"dagre {laid['ms'] / 1000:,.1f} s, " if layout else ""
            lines.append(
                f"cytoscape alone, {name} ({nodes:,} nodes, {len(elems) - nodes:,} edges): {dagre}draw"
                f" {draws[0]:,.0f} ms canvas, {draws[1]:,.0f} ms WebGL (best of {runs})"
            )
        return lines
    finally:
        page.close()


# ------------------------------------------------------------------------------------- the report


def median(values: Sequence[float | None]) -> float | None:
    """The median; None (past the cap) when any run was."""
    return None if not values or None in values else statistics.median(v for v in values if v is not None)


def ratio(fast: float | None, slow: float | None, cap_ms: float) -> str:
    """How many times faster ``fast`` is (a lower bound when ``slow`` hit the cap)."""
    if fast is None:
        return "n/a"
    return f"{slow / fast:.1f}x" if slow is not None else f"> {cap_ms / fast:.1f}x"


def fmt_s(ms: float | None, cap: float) -> str:
    return f"> {cap:.0f} s (cap)" if ms is None else f"{ms / 1000:.1f} s"


def fmt_ms(ms: float | None, cap: float) -> str:
    return f"> {cap * 1000:,.0f} ms (cap)" if ms is None else f"{ms:,.0f} ms"


def console_served(base: str) -> bool:
    page = requests.get(f"{base}/", timeout=10)
    return page.ok and 'id="graph"' in page.text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="first renders per mode (default 3)")
    parser.add_argument("--cap", type=float, default=120.0, help="seconds allowed per measurement (120)")
    parser.add_argument("--seed", type=int, default=SEED, help=f"the generated tenant's seed ({SEED})")
    parser.add_argument("--no-cytoscape", action="store_true", help="skip cytoscape alone in a blank page")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the cloud and browser on the way out

    load_start = os.getloadavg()[0]  # the machine is shared: figures move with its load
    started = time.perf_counter()
    tenant = generate(args.seed, time.time())
    generated = time.perf_counter() - started
    kinds = ", ".join(f"{n:,} {kind}" for kind, n in sorted(tenant.kinds().items()))
    with (
        tempfile.TemporaryDirectory(prefix="bench-console-") as tmp,
        CloudProcess(Path(tmp), workers=None, limits=None) as cloud,  # the local cloud's defaults
    ):
        base = cloud.base
        started = time.perf_counter()
        tenant_id, ingest_token, read_token = create_demo_tenant(base, cloud.admin_token, "bench")
        upload(base, ingest_token, tenant)
        uploaded = time.perf_counter() - started
        stored = stored_edges(base, tenant_id, read_token)
        print(
            f"tenant: {len(tenant.workloads):,} workloads in {len(tenant.namespaces)} namespaces,"
            f" {len(tenant.edges):,} edges ({kinds}); {stored:,} served back"
        )
        print(
            f"seeding: {generated + uploaded:.1f} s (generate {generated:.2f} s, ingest"
            f" {len(tenant.batches()):,} batches of 500 {uploaded:.1f} s)",
            flush=True,
        )
        if stored != len(tenant.edges):
            raise RuntimeError(f"the cloud serves {stored} edges, {len(tenant.edges)} were uploaded")
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            try:
                for line in [] if args.no_cytoscape else cytoscape_alone(browser, tenant):
                    print(line, flush=True)
                if not console_served(base):
                    print("console: not served yet (GET / has no #graph); nothing measured")
                    return 1
                url = f"{base}/#token={read_token}"
                picks = biggest_namespaces(tenant, 3)
                aggregated = measure(browser, url, picks, args.runs, args.cap)
                everything = measure(browser, f"{url}&aggregate=off", picks, args.runs, args.cap)
            finally:
                browser.close()
    load = os.getloadavg()[0]
    print(
        f"machine: {os.cpu_count()} cores, load average {load_start:.1f} at the start, {load:.1f} at the end"
    )
    report(aggregated, everything, args.cap)
    return 0


def phases(entries: list[dict[str, Any]]) -> str:
    """The page's ``consoleTimings.phases`` (what one draw shows and where its time went), median."""
    keys = [k for k in ("layout", "apply", "draw", "list", "total") if any(k in e for e in entries)]
    if not entries or not keys:
        return "no phases reported"

    def mid(key: str) -> float:
        return statistics.median(float(e.get(key) or 0) for e in entries)

    shown = f"{mid('nodes'):,.0f} nodes, {mid('edges'):,.0f} edges shown"
    return shown + "; " + ", ".join(f"{k} {mid(k):,.0f} ms" for k in keys)


def report(aggregated: Mode, everything: Mode, cap: float) -> None:
    first, first_all = median(aggregated.renders), median(everything.renders)
    filt, filt_all = median(aggregated.filters), median(everything.filters or [None])
    print(
        f"first render: {fmt_s(first, cap)} aggregated vs {fmt_s(first_all, cap)} all edges"
        f" ({ratio(first, first_all, cap * 1000)}); goal < {GOAL_FIRST_S:.0f} s"
    )
    runs = [", ".join(fmt_s(v, cap) for v in mode.renders) for mode in (aggregated, everything)]
    print(f"  first renders, each a fresh visit: aggregated {runs[0]}; all edges {runs[1]}")
    for name, mode in (("aggregated", aggregated), ("all edges", everything)):
        if mode.capped:
            print(f"  {name}, at the cap: {' '.join(mode.capped.split())[:200]}")
    print(f"  aggregated first render: {phases(aggregated.phases.get('first', []))}")
    print(f"  before it (last visit): {aggregated.before}")
    if everything.phases.get("first"):
        print(f"  all-edges first render: {phases(everything.phases['first'])}")
    print(
        f"filter: {fmt_ms(filt, cap)} vs {fmt_ms(filt_all, cap)} ({ratio(filt, filt_all, cap * 1000)});"
        f" goal < {GOAL_FILTER_MS:.0f} ms"
    )
    print(
        f"  filter changes (one namespace checked, then unchecked): {len(aggregated.filters)} aggregated,"
        f" {len(everything.filters)} all edges; from the click's input event to the draw:"
        f" {fmt_ms(median(aggregated.clicks), cap)} vs {fmt_ms(median(everything.clicks or [None]), cap)}"
    )
    print(f"  aggregated filter draws: {phases(aggregated.phases.get('filter', []))}")
    if aggregated.drills:
        print(
            f"  drill-down after checking a namespace (its edges fetched, its workloads drawn):"
            f" {fmt_ms(statistics.median(aggregated.drills), cap)} (median of {len(aggregated.drills)});"
            f" its draw: {phases(aggregated.phases.get('drill', []))}"
        )
    for name, mode in (("aggregated", aggregated), ("all edges", everything)):
        shown = "".join(f"\n  {e[:200]}" for e in mode.errors[:6])
        print(f"console errors and failed requests, {name}: {len(mode.errors)}{shown}")
    print(
        f"console: first render {'> cap' if first is None else f'{first / 1000:.1f}'} s,"
        f" filter {'> cap' if filt is None else f'{filt:,.0f}'} ms (aggregated; goals 3 s / 300 ms)"
    )


if __name__ == "__main__":
    sys.exit(main())
