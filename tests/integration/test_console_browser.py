"""The web console in Debian's Chromium (headless, through Playwright) against the real local cloud
(``python -m cloud_functions.local`` in a subprocess), seeded through its API with a small
realistic graph (:func:`tests.support.console_browser.demo_edges`): sign-in, the graph and its
accessible list, filters and the find expression, details, collapse/expand, exports compared byte
for byte with the export route, the AWS view, error and empty states, keyboard use, live refresh.

Each test saves a screenshot in ``test-output/console/<test name>.png`` and fails on any console
error or uncaught page error, except the HTTP errors a test provokes on purpose."""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Download, Page, Route, expect, sync_playwright

from agent import wire
from agent.model import Edge, WorkloadIdentity
from tests.support.console_browser import (
    ORDERS_ARCHIVE,
    ORDERS_TABLE,
    SENDGRID,
    CloudProcess,
    Tenant,
    console_url,
    demo_edges,
    launch_chromium,
    provision,
    seed_demo,
    upload,
    wide_edges,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-output" / "console"
TIMEOUT_MS = 20_000
HELM = (
    "helm install network-mapper ./helm/network-mapper -n otterize-system --create-namespace "
    "--set cloud.token=<YOUR_CLUSTER_TOKEN> --set cloud.url="
)
CHECKOUT_SERVERS = [
    "cartservice",
    "currencyservice",
    "emailservice",
    "paymentservice",
    "productcatalogservice",
    "shippingservice",
]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudProcess]:
    with CloudProcess(tmp_path_factory.mktemp("console-cloud")) as running:
        yield running


@pytest.fixture(scope="module")
def demo(cloud: CloudProcess) -> Tenant:
    return seed_demo(cloud.base, cloud.admin_token)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Visit:
    """A page in a fresh browser context (no localStorage), with what went wrong in it."""

    page: Page
    name: str
    shot_taken: bool = False
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    http_errors_expected: bool = False

    def shot(self, suffix: str = "") -> None:
        """Save the page as ``test-output/console/<test name>[-suffix].png`` (the teardown saves the
        final page unless the test saved its main moment itself)."""
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{self.name}{'-' + suffix if suffix else ''}.png"))
        self.shot_taken = self.shot_taken or not suffix

    def open(self, url: str, state: str = "ready") -> None:
        self.page.goto(url)
        self.wait_state(state)

    def wait_state(self, state: str) -> None:
        expect(self.page.locator("html")).to_have_attribute("data-state", state, timeout=TIMEOUT_MS)
        if state == "ready":
            self.page.wait_for_function("() => Number(document.documentElement.dataset.renders) > 0")

    def renders(self) -> int:
        return int(self.page.evaluate("() => Number(document.documentElement.dataset.renders || 0)"))

    def wait_render_after(self, before: int) -> None:
        self.page.wait_for_function(
            "(before) => Number(document.documentElement.dataset.renders) > before",
            arg=before,
            timeout=TIMEOUT_MS,
        )

    def fill(self, selector: str, text: str) -> None:
        """Type into a filter field and wait until the page drew the result."""
        before = self.renders()
        self.page.fill(selector, text)
        self.wait_render_after(before)

    def node(self, node_id: str) -> Any:
        return self.page.locator(f'#graph-list li[data-node-id="{node_id}"]')

    def edge(self, edge_id: str) -> Any:
        return self.page.locator(f'#graph-list li[data-edge-id="{edge_id}"]')

    def shown_nodes(self) -> set[str]:
        return set(
            self.page.locator("#graph-list li[data-node-id]").evaluate_all(
                "l => l.map(e => e.dataset.nodeId)"
            )
        )

    def shown_edges(self) -> set[str]:
        return set(
            self.page.locator("#graph-list li[data-edge-id]").evaluate_all(
                "l => l.map(e => e.dataset.edgeId)"
            )
        )

    def canvas_point(self, element_id: str) -> tuple[float, float]:
        """Where ``element_id`` is drawn on the page (the canvas' origin plus its rendered position)."""
        box = self.page.locator("#graph").bounding_box()
        assert box is not None
        point = self.page.evaluate(
            "(id) => window.networkMapper.app.graph.cy.getElementById(id).renderedPosition()", element_id
        )
        return box["x"] + point["x"], box["y"] + point["y"]

    def download(self, button: str) -> tuple[Download, bytes]:
        with self.page.expect_download(timeout=TIMEOUT_MS) as info:
            self.page.click(button)
        saved = info.value.path()
        return info.value, Path(saved).read_bytes()


@pytest.fixture
def visit(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Visit]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    seen = Visit(page, request.node.name)
    page.on(
        "console", lambda m: seen.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None
    )
    page.on("pageerror", lambda error: seen.errors.append(f"page error: {error}"))
    page.on("request", lambda r: seen.requests.append(r.url))
    try:
        yield seen
    finally:
        if not seen.shot_taken:
            seen.shot()
        context.close()
    unexpected = [
        e for e in seen.errors if not (seen.http_errors_expected and "Failed to load resource" in e)
    ]
    assert not unexpected, f"errors in the page: {unexpected}"


def workload(namespace: str, name: str) -> str:
    return f"w:{namespace}/{name}"


def edge_id(source: str, target: str) -> str:
    return f"e:{source}->{target}"


def expected_graph() -> tuple[set[str], set[str]]:
    """The node and edge ids the seeded graph shows fully expanded."""
    nodes, edges = set(), set()
    for e in demo_edges():
        client = workload(e.client.namespace, e.client.name)
        doc = wire.to_doc(e)
        t = doc.target
        if isinstance(t, wire.WorkloadTargetDoc):
            target = workload(t.namespace, t.name)
        elif isinstance(t, wire.InternetTargetDoc):
            target = f"inet:{t.dnsName}"
        else:
            assert isinstance(t, wire.AwsTargetDoc)
            target = f"aws:{t.arn}"
        nodes |= {client, target}
        edges.add(edge_id(client, target))
    return nodes, edges


# --------------------------------------------------------------------------- sign-in and the graph


def test_sign_in_by_fragment_shows_every_workload_and_edge(visit: Visit, demo: Tenant) -> None:
    visit.open(console_url(demo.base, demo.read_token))
    page = visit.page
    assert demo.read_token not in page.url, "the token leaves the address bar"
    assert page.evaluate("() => localStorage.getItem('nm.token')") == demo.read_token
    assert not [url for url in visit.requests if demo.read_token in url], "never in a URL"
    nodes, edges = expected_graph()
    expect(page.locator("#graph-list li[data-edge-id]")).to_have_count(len(edges))
    assert visit.shown_nodes() == nodes
    assert visit.shown_edges() == edges
    assert len(nodes) == 18 and len(edges) == 22
    expect(
        visit.edge(edge_id(workload("shop", "checkoutservice"), workload("shop", "cartservice")))
    ).to_have_text("checkoutservice → cartservice (tcp)")
    expect(visit.edge(edge_id(workload("orders", "order-api"), workload("streaming", "kafka")))).to_have_text(
        "order-api → kafka (kafka)"
    )
    canvas = page.evaluate(
        "() => window.networkMapper.app.graph.shown().filter(e => !e.isParent()).map(e => e.id())"
    )
    assert set(canvas) == nodes | edges, "the canvas shows what the list says"
    timings = page.evaluate("() => window.consoleTimings")
    assert timings["firstRender"] > 0
    expect(page.locator("#message")).to_be_hidden()


def test_sign_in_by_pasting_and_signing_out(visit: Visit, demo: Tenant) -> None:
    page = visit.page
    visit.open(f"{demo.base}/", state="signed-out")
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#token")).to_have_attribute("type", "password")
    page.fill("#token", demo.read_token)
    page.click("#sign-in button[type=submit]")
    visit.wait_state("ready")
    expect(visit.node(workload("shop", "checkoutservice"))).to_be_visible()
    page.click("#sign-out")
    visit.wait_state("signed-out")
    assert page.evaluate("() => localStorage.getItem('nm.token')") is None
    page.reload()
    visit.wait_state("signed-out")


def test_filter_to_one_namespace(visit: Visit, demo: Tenant) -> None:
    visit.open(console_url(demo.base, demo.read_token))
    before = visit.renders()
    visit.page.check('#filter-namespace input[name=namespace][value="orders"]')
    visit.wait_render_after(before)
    api, processor = workload("orders", "order-api"), workload("orders", "order-processor")
    kafka, currency = workload("streaming", "kafka"), workload("shop", "currencyservice")
    expect(visit.page.locator("#graph-list li[data-edge-id]")).to_have_count(5)
    assert visit.shown_edges() == {
        edge_id(api, kafka),
        edge_id(api, currency),
        edge_id(api, f"aws:{ORDERS_TABLE}"),
        edge_id(processor, kafka),
        edge_id(processor, f"aws:{ORDERS_ARCHIVE}"),
    }
    assert visit.shown_nodes() == {
        api,
        processor,
        kafka,
        currency,
        f"aws:{ORDERS_TABLE}",
        f"aws:{ORDERS_ARCHIVE}",
    }
    assert visit.page.evaluate("() => window.consoleTimings.lastFilter") > 0


def test_checkoutservice_click_shows_its_six_servers(visit: Visit, demo: Tenant) -> None:
    visit.open(console_url(demo.base, demo.read_token))
    checkout = workload("shop", "checkoutservice")
    x, y = visit.canvas_point(checkout)
    visit.page.mouse.click(x, y)
    details = visit.page.locator("#details")
    expect(details.locator("h2")).to_have_text("checkoutservice")
    expect(details.locator(".servers li")).to_have_count(6)
    servers = details.locator(".servers li").evaluate_all("l => l.map(e => e.dataset.peerId)")
    assert servers == [workload("shop", s) for s in CHECKOUT_SERVERS]
    expect(details.locator(".clients li")).to_have_count(1)
    expect(details.locator(".clients li")).to_contain_text("frontend")
    expect(details.locator(".servers li").first).to_contain_text("dns, tcp")
    expect(visit.node(checkout).locator("button.node")).to_have_attribute("aria-current", "true")


def test_edge_details_show_kafka_http_and_aws(visit: Visit, demo: Tenant) -> None:
    visit.open(console_url(demo.base, demo.read_token))
    details = visit.page.locator("#details")
    visit.edge(edge_id(workload("shop", "loadgenerator"), workload("shop", "frontend"))).locator(
        "button"
    ).click()
    expect(details).to_contain_text("GET, POST /cart")
    expect(details).to_contain_text("istio, tcp")
    visit.node(workload("orders", "order-processor")).locator("button").click()
    expect(details.locator(".servers li")).to_have_count(2)
    expect(details).to_contain_text("consume, describe")
    expect(details).to_contain_text("s3:GetObject")
    expect(details).to_contain_text(ORDERS_ARCHIVE)
    visit.node(f"inet:{SENDGRID}").locator("button").click()
    expect(details.locator(".clients li")).to_have_count(1)
    expect(details).to_contain_text("443")


def test_clientintents_download_equals_the_export_route(visit: Visit, demo: Tenant) -> None:
    visit.open(console_url(demo.base, demo.read_token))
    page = visit.page
    download, body = visit.download("#export-clientintents")
    assert download.suggested_filename == "clientintents.yaml"
    assert body.decode() == demo.export(format="clientintents")
    for button, fmt, name in (
        ("#export-networkpolicy", "networkpolicy", "networkpolicies.yaml"),
        ("#export-iam", "iam", "iam-policies.json"),
        ("#export-json", "json", "edges.json"),
    ):
        download, body = visit.download(button)
        assert download.suggested_filename == name
        assert body.decode() == demo.export(format=fmt), fmt
    # the selection: checkoutservice, and order-api shift-clicked on the canvas
    visit.node(workload("shop", "checkoutservice")).locator("button").click()
    x, y = visit.canvas_point(workload("orders", "order-api"))
    page.keyboard.down("Shift")
    page.mouse.click(x, y)
    page.keyboard.up("Shift")
    expect(page.locator("#details h2")).to_have_text("2 selected")
    page.select_option("#export-scope", "selection")
    download, body = visit.download("#export-clientintents")
    assert body.decode() == demo.export(
        format="clientintents", workloads="orders/order-api,shop/checkoutservice"
    )
    assert body.decode().count("kind: ClientIntents") == 2
    # a namespace selected (its box in the list): its clients
    page.click('#graph-list button[data-box-id="nsbox:orders"]')
    download, body = visit.download("#export-clientintents")
    assert body.decode() == demo.export(format="clientintents", namespaces="orders")
    assert body.decode().count("kind: ClientIntents") == 2, "order-api and order-processor"


def test_collapse_and_expand_a_namespace(visit: Visit, demo: Tenant) -> None:
    visit.open(console_url(demo.base, demo.read_token))
    page = visit.page
    email, frontend = workload("shop", "emailservice"), workload("shop", "frontend")
    page.click('button[data-toggle-namespace="shop"]')
    expect(visit.node("ns:shop")).to_be_visible()
    expect(page.locator('#graph-list li[data-node-id^="w:shop/"]')).to_have_count(0)
    expect(visit.edge(edge_id("ns:shop", "internet"))).to_have_count(1)
    expect(visit.edge(edge_id(workload("orders", "order-api"), "ns:shop"))).to_have_count(1)
    expect(visit.edge(edge_id("ns:shop", "ns:shop"))).to_contain_text("16 edges")
    expect(visit.node("ns:shop")).to_contain_text("namespace shop")
    visit.shot("collapsed")
    before = visit.renders()
    x, y = visit.canvas_point("ns:shop")
    page.mouse.dblclick(x, y)  # double-click on the namespace node expands it
    visit.wait_render_after(before)
    expect(visit.node(email)).to_be_visible()
    expect(visit.node("ns:shop")).to_have_count(0)
    page.click('button[data-toggle-namespace="orders"]')
    expect(visit.edge(edge_id("ns:orders", workload("shop", "currencyservice")))).to_have_count(1)
    page.click('button[data-toggle-namespace="orders"]')
    expect(visit.node(workload("orders", "order-api"))).to_be_visible()
    assert frontend in visit.shown_nodes()


def test_find_expression(visit: Visit, demo: Tenant) -> None:
    visit.open(console_url(demo.base, demo.read_token))
    page = visit.page
    api, processor, kafka = (
        workload("orders", "order-api"),
        workload("orders", "order-processor"),
        workload("streaming", "kafka"),
    )
    visit.fill("#find", "kind:kafka")
    expect(page.locator("#graph-list li[data-edge-id]")).to_have_count(2)
    assert visit.shown_edges() == {edge_id(api, kafka), edge_id(processor, kafka)}
    visit.fill("#find", "method:socket-scan")
    expect(page.locator("#graph-list li[data-edge-id]")).to_have_count(1)
    assert visit.shown_edges() == {edge_id(processor, kafka)}
    visit.fill("#find", "ns:orders -kind:aws,kafka")
    expect(page.locator("#graph-list li[data-edge-id]")).to_have_count(1)
    assert visit.shown_edges() == {edge_id(api, workload("shop", "currencyservice"))}
    visit.fill("#find", "name:check kind:tcp")
    expect(page.locator("#graph-list li[data-edge-id]")).to_have_count(7)  # its six servers and frontend → it
    visit.fill("#find", "colour:red")
    expect(page.locator("#find")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#find-error")).to_contain_text("unknown key")
    visit.fill("#find", "")
    expect(page.locator("#graph-list li[data-edge-id]")).to_have_count(22)
    parsed = page.evaluate(
        """async () => {
            const s = await import('/console/state.js');
            return s.parseFind('kind:http,kafka -ns:shop cart action:s3:*');
        }"""
    )
    assert parsed["error"] is None
    assert [(t["key"], t["values"], t["negate"]) for t in parsed["terms"]] == [
        ("kind", ["http", "kafka"], False),
        ("ns", ["shop"], True),
        ("name", ["cart"], False),
        ("action", ["s3:*"], False),
    ]


def test_search_and_edge_kind_filters(visit: Visit, demo: Tenant) -> None:
    visit.open(console_url(demo.base, demo.read_token))
    page = visit.page
    visit.fill("#filter-search", "redis")
    expect(page.locator("#graph-list li[data-edge-id]")).to_have_count(1)
    assert visit.shown_nodes() == {workload("shop", "cartservice"), workload("shop", "redis-cart")}
    visit.fill("#filter-search", "")
    for kind in ("tcp", "http", "kafka"):
        page.uncheck(f'input[name=kind][value="{kind}"]')
    expect(page.locator("#graph-list li[data-edge-id]")).to_have_count(3)  # two AWS, one Internet
    kinds = page.locator("#graph-list li[data-edge-id]").evaluate_all("l => l.map(e => e.dataset.kind)")
    assert sorted(kinds) == ["aws", "aws", "internet"]


def test_seen_since_filter(visit: Visit, demo: Tenant) -> None:
    visit.open(console_url(demo.base, demo.read_token))
    page = visit.page
    visit.fill("#filter-since", "2099-01-01T00:00")
    expect(page.locator("#graph-list li[data-edge-id]")).to_have_count(0)
    expect(page.locator("#message")).to_have_attribute("data-kind", "info")
    expect(page.locator("#message")).to_contain_text("No edge was seen since")
    assert any("since=2099-01-01T" in url for url in visit.requests), "the cloud filters by time"
    visit.shot()
    visit.fill("#filter-since", "2001-01-01T00:00")
    expect(page.locator("#graph-list li[data-edge-id]")).to_have_count(22)
    expect(page.locator("#message")).to_be_hidden()


def test_keyboard_navigation(visit: Visit, demo: Tenant) -> None:
    visit.open(console_url(demo.base, demo.read_token))
    page = visit.page
    active = "() => document.activeElement"
    page.keyboard.press("Tab")  # from the top of the page, the skip link comes first
    assert page.evaluate(f"{active}.className") == "skip"
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.closest('#graph-list') !== null")
    assert page.evaluate(f"{active}.textContent") == "namespace orders"
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "the focus is visible"
    page.keyboard.press("Tab")  # its Collapse button
    page.keyboard.press("Tab")  # order-api
    assert page.evaluate(f"{active}.textContent") == "order-api"
    page.keyboard.press("Enter")
    expect(page.locator("#details h2")).to_have_text("order-api")
    expect(page.locator("#details .servers li")).to_have_count(3)
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")  # Collapse orders, from the keyboard
    expect(visit.node("ns:orders")).to_be_visible()
    assert page.evaluate(f"{active}.dataset.toggleNamespace") == "orders", "the focus stays on the toggle"
    page.keyboard.press("Shift+Tab")  # the collapsed namespace itself: Enter drills into it
    assert page.evaluate(f"{active}.textContent") == "namespace orders"
    page.keyboard.press("Enter")
    expect(visit.node(workload("orders", "order-processor"))).to_be_visible()
    expect(page.locator("#details h2")).to_have_text("orders")
    expect(page.locator("#details")).to_contain_text("expanded")
    assert page.evaluate(f"{active}.dataset.boxId") == "nsbox:orders", "the focus follows the namespace"
    page.keyboard.press("/")
    assert page.evaluate(f"{active}.id") == "filter-search"


def test_aws_view(visit: Visit, demo: Tenant) -> None:
    visit.open(console_url(demo.base, demo.read_token))
    page = visit.page
    page.click("#tab-aws")
    view = page.locator("#aws-view")
    expect(view).to_be_visible()
    processor = view.locator('tr[data-workload="orders/order-processor"]')
    expect(processor).to_contain_text(ORDERS_ARCHIVE)
    expect(processor).to_contain_text("s3:GetObject")
    expect(processor).to_contain_text("s3:PutObject")
    expect(view.locator('tr[data-workload="orders/order-api"]')).to_contain_text("dynamodb:PutItem")
    expect(view.locator("section.policy")).to_have_count(2)
    policy = view.locator('section[data-policy-workload="orders/order-api"] pre').text_content()
    assert policy is not None
    expected = {p["workload"]["name"]: p["policyDocument"] for p in json.loads(demo.export(format="iam"))}
    assert json.loads(policy) == expected["order-api"]
    visit.shot()
    page.click("#tab-graph")
    expect(page.locator("#graph")).to_be_visible()


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_graph_json_svg_and_png_downloads(visit: Visit, demo: Tenant) -> None:
    visit.open(console_url(demo.base, demo.read_token))
    page = visit.page
    page.evaluate(
        "() => { const cy = window.networkMapper.app.graph.cy; cy.zoom(3); cy.pan({x: -2000, y: -2000}); }"
    )
    download, body = visit.download("#export-svg")
    assert download.suggested_filename == "graph.svg"
    svg = body.decode()
    assert "<svg" in svg and len(body) > 2000
    assert "checkoutservice" in svg and "api.sendgrid.com" in svg, "the full extent, not the zoomed view"
    download, body = visit.download("#export-png")
    assert download.suggested_filename == "graph.png"
    width, height = png_size(body)
    extent = page.evaluate("() => window.networkMapper.app.graph.shown().boundingBox()")
    assert width >= extent["w"] and height >= extent["h"], (width, height, extent)
    download, body = visit.download("#export-graph-json")
    assert download.suggested_filename == "graph.json"
    graph = json.loads(body)
    nodes, edges = expected_graph()
    assert {n["id"] for n in graph["nodes"] if n["kind"] != "container"} == nodes
    assert {e["id"] for e in graph["edges"]} == edges


# --------------------------------------------------------------------------- errors and empty states


def test_wrong_token_says_it_was_refused(visit: Visit, demo: Tenant) -> None:
    visit.http_errors_expected = True
    visit.open(console_url(demo.base, "nm_" + "0" * 64), state="signed-out")
    message = visit.page.locator("#message")
    expect(message).to_have_attribute("data-kind", "error")
    expect(message).to_contain_text("token was refused")
    expect(message).to_contain_text("read token")
    expect(visit.page.locator("#sign-in")).to_be_visible()
    assert visit.page.evaluate("() => localStorage.getItem('nm.token')") is None


def test_api_error_shows_an_error_state(visit: Visit, demo: Tenant) -> None:
    visit.http_errors_expected = True
    page = visit.page

    def fail(route: Route) -> None:
        body = json.dumps({"error": {"code": "internal", "message": "internal error"}})
        route.fulfill(status=500, content_type="application/json", body=body)

    page.route(re.compile(r".*/v1/.*"), fail)
    visit.open(console_url(demo.base, demo.read_token), state="error")
    message = page.locator("#message")
    expect(message).to_have_attribute("data-kind", "error")
    expect(message).to_contain_text("HTTP 500")
    expect(message).to_contain_text("retries")
    expect(page.locator("#refresh")).to_be_visible()
    visit.shot()
    page.unroute(re.compile(r".*/v1/.*"))
    page.click("#refresh")  # the API is back: the page recovers
    visit.wait_state("ready")
    expect(message).to_be_hidden()


def test_api_error_after_a_render_keeps_the_graph(visit: Visit, demo: Tenant) -> None:
    visit.http_errors_expected = True
    page = visit.page
    visit.open(console_url(demo.base, demo.read_token))
    page.route(re.compile(r".*/v1/.*"), lambda route: route.abort("connectionrefused"))
    page.click("#refresh")
    visit.wait_state("error")
    expect(page.locator("#message")).to_contain_text("Cannot reach the API")
    expect(visit.node(workload("shop", "checkoutservice"))).to_be_visible()


def test_no_cluster_shows_the_helm_command(visit: Visit, cloud: CloudProcess) -> None:
    tenant = provision(cloud.base, cloud.admin_token, "empty", clusters=())
    visit.open(console_url(cloud.base, tenant.read_token), state="empty")
    message = visit.page.locator("#message")
    expect(message).to_have_attribute("data-kind", "empty")
    expect(message).to_contain_text("No cluster is connected")
    expect(message.locator("code")).to_have_text(HELM + cloud.base)


def test_cluster_without_edges_shows_the_helm_command(visit: Visit, cloud: CloudProcess) -> None:
    tenant = provision(cloud.base, cloud.admin_token, "quiet", clusters=("staging",))
    visit.open(console_url(cloud.base, tenant.read_token), state="empty")
    message = visit.page.locator("#message")
    expect(message).to_contain_text("staging")
    expect(message.locator("code")).to_have_text(HELM + cloud.base)


# --------------------------------------------------------------------------- clusters, refresh, aggregation


def test_cluster_choice_is_remembered(visit: Visit, cloud: CloudProcess) -> None:
    tenant = provision(cloud.base, cloud.admin_token, "two", clusters=("prod", "staging"))
    upload(cloud.base, tenant.ingest_token("prod"), demo_edges())
    upload(cloud.base, tenant.ingest_token("staging"), wide_edges(namespaces=2, per_namespace=3))
    visit.open(console_url(cloud.base, tenant.read_token))
    page = visit.page
    expect(page.locator("#graph-list li[data-edge-id]")).to_have_count(22 + 6)
    staging = tenant.clusters["staging"][0]
    page.select_option("#cluster", staging)
    expect(page.locator("#graph-list li[data-edge-id]")).to_have_count(6)
    page.reload()
    visit.wait_state("ready")
    expect(page.locator("#cluster")).to_have_value(staging)
    expect(page.locator("#graph-list li[data-edge-id]")).to_have_count(6)
    assert page.evaluate("() => localStorage.getItem('nm.cluster')") == staging


def test_live_refresh_keeps_zoom_selection_and_positions(visit: Visit, cloud: CloudProcess) -> None:
    tenant = provision(cloud.base, cloud.admin_token, "live")
    upload(cloud.base, tenant.ingest_token(), demo_edges())
    visit.open(console_url(cloud.base, tenant.read_token))
    page = visit.page
    checkout = workload("shop", "checkoutservice")
    visit.node(checkout).locator("button").click()
    keep = """() => { const cy = window.networkMapper.app.graph.cy; return {
        zoom: cy.zoom(), pan: cy.pan(), selected: cy.$(':selected').map(e => e.id()),
        position: cy.getElementById('w:shop/frontend').position() }; }"""
    page.evaluate(
        "() => { const cy = window.networkMapper.app.graph.cy; cy.zoom(1.3); cy.pan({x: 40, y: 25}); }"
    )
    before = page.evaluate(keep)
    checkout_edge = demo_edges()[0]
    fraud = WorkloadIdentity("shop", "fraud-check", "Deployment")
    newcomer = Edge(
        checkout_edge.client, fraud, checkout_edge.first_seen, checkout_edge.last_seen, checkout_edge.methods
    )
    upload(cloud.base, tenant.ingest_token(), [newcomer], batch_prefix="later")
    page.click("#refresh")
    expect(visit.node(workload("shop", "fraud-check"))).to_be_visible()
    after = page.evaluate(keep)
    assert after == before
    expect(page.locator("#details h2")).to_have_text("checkoutservice")


def test_a_large_graph_starts_aggregated_and_drills_down(visit: Visit, cloud: CloudProcess) -> None:
    tenant = provision(cloud.base, cloud.admin_token, "wide")
    upload(cloud.base, tenant.ingest_token(), wide_edges())  # 8 namespaces x 22 workloads: 176 > 150
    visit.open(console_url(cloud.base, tenant.read_token))
    page = visit.page
    assert visit.shown_nodes() == {f"ns:ns-{i}" for i in range(8)}
    assert edge_id("ns:ns-2", "ns:ns-3") in visit.shown_edges()
    assert edge_id("ns:ns-2", "ns:ns-2") in visit.shown_edges()
    graph_requests = [u for u in visit.requests if re.search(r"/graph(\?|$)", u)]
    assert not graph_requests, "only the summary before drilling down"
    assert any("/graph/summary" in u for u in visit.requests)
    page.click('button[data-toggle-namespace="ns-3"]')
    expect(visit.node(workload("ns-3", "svc-3-0"))).to_be_visible()
    assert any(re.search(r"/graph\?.*namespace=ns-3", u) for u in visit.requests)
    shown = visit.shown_edges()
    assert edge_id("ns:ns-2", workload("ns-3", "svc-3-0")) in shown
    assert edge_id(workload("ns-3", "svc-3-0"), "ns:ns-4") in shown
    assert edge_id(workload("ns-3", "svc-3-0"), workload("ns-3", "svc-3-1")) in shown
    assert len([n for n in visit.shown_nodes() if n.startswith("w:")]) == 22
    before = visit.renders()
    page.check('#filter-namespace input[name=namespace][value="ns-5"]')
    visit.wait_render_after(before)
    expect(visit.node(workload("ns-5", "svc-5-21"))).to_be_visible()  # filtered to: loaded and opened
    assert page.evaluate("() => window.consoleTimings.lastFilterComplete") > 0


def test_aggregation_off_fetches_every_edge(visit: Visit, cloud: CloudProcess) -> None:
    tenant = provision(cloud.base, cloud.admin_token, "wide-off")
    upload(cloud.base, tenant.ingest_token(), wide_edges())
    visit.open(console_url(cloud.base, tenant.read_token, aggregate="off"))
    assert "aggregate=off" in visit.page.url and tenant.read_token not in visit.page.url
    expect(visit.page.locator("#graph-list li[data-node-id]")).to_have_count(8 * 22)
    assert not any("/graph/summary" in u for u in visit.requests)
