"""The web console in Debian's Chromium against the sandbox's local cloud, with the mapper's uploads:
what a user does after ``make demo`` prints the console's URL. Each test saves a screenshot in
``test-output/console/`` (``sandbox-*.png``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Page, expect, sync_playwright

from agent.mapperclient import HttpMapperClient
from sandbox.topology import DEMO_NS, EXPECTED_DEMO_MAP
from sandbox.views import cloud_access, mapper_url, wait_for_demo_map
from tests.e2e.conftest import Sandbox
from tests.e2e.conftest import network_mapper as cli
from tests.support.console_browser import console_url, launch_chromium

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "console"
CHECKOUT = "checkoutservice"


@pytest.fixture(scope="module")
def cloud(sandbox: Sandbox) -> tuple[str, str, str]:
    complete, _ = wait_for_demo_map(mapper_url(sandbox.state_dir), 90.0)
    assert complete
    base, tenant, token = cloud_access(sandbox.state_dir)
    deadline = time.monotonic() + 90
    while CHECKOUT not in _cloud_export(base, tenant, token, namespaces=DEMO_NS):
        assert time.monotonic() < deadline, "the demo never reached the cloud"
        time.sleep(1)  # the mapper uploads every 5 s
    return base, tenant, token


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors  # type: ignore[attr-defined]
    yield page
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"sandbox-{request.node.name}.png"), full_page=True)
    context.close()


def _cloud_export(base: str, tenant: str, token: str, **params: str) -> str:
    """The export route's body, every page joined in order (what the console downloads)."""
    body, cursor = "", None
    while True:
        query = {"format": "clientintents", **params, **({"cursor": cursor} if cursor else {})}
        for _ in range(20):  # the cloud limits requests per tenant: wait as told (429 Retry-After)
            reply = requests.get(
                f"{base}/v1/tenants/{tenant}/export",
                params=query,
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
            if reply.status_code != 429:
                break
            time.sleep(min(float(reply.headers.get("Retry-After") or 1), 5))
        reply.raise_for_status()
        body += reply.text
        cursor = reply.headers.get("X-Next-Cursor")
        if not cursor:
            return body


def _signed_in(page: Page, base: str, token: str) -> None:
    page.goto(console_url(base, token))
    expect(page.locator("html")).to_have_attribute("data-state", "ready", timeout=30_000)


def _only_namespace(page: Page, namespace: str) -> None:
    for box in page.locator("input[name=namespace]").all():
        if box.get_attribute("value") == namespace:
            box.check()
        else:
            box.uncheck()
    # The list re-renders asynchronously: wait until no other namespace's workload is listed.
    others = f"li[data-node-id^='w:']:not([data-node-id^='w:{namespace}/'])"
    expect(page.locator("#graph-list").locator(others)).to_have_count(0)


def _node(namespace: str, name: str) -> str:
    return f"w:{namespace}/{name}"


def test_sign_in_shows_every_demo_workload_and_edge(page: Page, cloud: tuple[str, str, str]) -> None:
    base, _, token = cloud
    _signed_in(page, base, token)
    assert "token=" not in page.url  # the fragment is cleared once read
    _only_namespace(page, DEMO_NS)
    listing = page.locator("#graph-list")
    for client, servers in EXPECTED_DEMO_MAP.items():
        expect(listing.locator(f'li[data-node-id="{_node(DEMO_NS, client)}"]')).to_have_count(1)
        for server in servers:
            edge = f"e:{_node(DEMO_NS, client)}->{_node(DEMO_NS, server)}"
            expect(listing.locator(f'li[data-edge-id="{edge}"]')).to_have_count(1)
    # Filtered to one namespace: no workload of another is shown.
    shown = listing.locator("li[data-node-id^='w:']").evaluate_all("els => els.map(e => e.dataset.nodeId)")
    assert shown and all(n.startswith(f"w:{DEMO_NS}/") for n in shown), shown
    assert page.errors == []  # type: ignore[attr-defined]


def test_checkoutservice_details_list_its_six_servers(page: Page, cloud: tuple[str, str, str]) -> None:
    base, _, token = cloud
    _signed_in(page, base, token)
    _only_namespace(page, DEMO_NS)
    page.locator(f'li[data-node-id="{_node(DEMO_NS, CHECKOUT)}"] button').first.click()
    servers = page.locator("#details .servers li")
    expect(servers).to_have_count(len(EXPECTED_DEMO_MAP[CHECKOUT]))
    texts = " ".join(servers.all_inner_texts())
    assert all(s in texts for s in EXPECTED_DEMO_MAP[CHECKOUT]), texts


def _download(page: Page, button: str) -> str:
    with page.expect_download() as info:
        page.locator(button).click()
    path = info.value.path()
    return Path(path).read_text()


def _upload_caught_up(sb: Sandbox) -> None:
    """Waits until the mapper's uploads have reached every change it had when called."""
    client = HttpMapperClient(mapper_url(sb.state_dir), "", 10.0)
    try:
        query = "{ uploadPosition { changed uploaded } }"
        target = client.execute(query, {})["uploadPosition"]["changed"]
        deadline = time.monotonic() + 60
        while client.execute(query, {})["uploadPosition"]["uploaded"] < target:
            assert time.monotonic() < deadline, "the mapper's uploads did not catch up within 60 s"
            time.sleep(0.5)
    finally:
        client.close()


def test_clientintents_download_equals_the_clouds_export_and_the_clis(
    page: Page, cloud: tuple[str, str, str], sandbox: Sandbox
) -> None:
    base, tenant, token = cloud
    _signed_in(page, base, token)
    _only_namespace(page, DEMO_NS)
    page.locator(f'#graph-list button[data-box-id="nsbox:{DEMO_NS}"]').click()  # select the namespace
    page.locator("#export-scope").select_option("selection")
    downloaded = _download(page, "#export-clientintents")
    assert downloaded == _cloud_export(base, tenant, token, namespaces=DEMO_NS)
    assert f"name: {CHECKOUT}" in downloaded
    # The CLI reads the mapper; once the uploads have reached what it read, the cloud says the same.
    result = cli(sandbox, "export", "--format", "yaml", "-n", DEMO_NS)
    assert result.returncode == 0, result.stderr
    _upload_caught_up(sandbox)
    assert _cloud_export(base, tenant, token, namespaces=DEMO_NS) == result.stdout
    assert _download(page, "#export-clientintents") == result.stdout


def test_a_namespace_collapses_into_one_node_and_expands_again(
    page: Page, cloud: tuple[str, str, str]
) -> None:
    base, _, token = cloud
    _signed_in(page, base, token)
    listing = page.locator("#graph-list")
    toggle = page.locator(f'button[data-toggle-namespace="{DEMO_NS}"]')
    checkout = listing.locator(f'li[data-node-id="{_node(DEMO_NS, CHECKOUT)}"]')
    collapsed = listing.locator(f'li[data-node-id="ns:{DEMO_NS}"]')
    if checkout.count() == 0:  # started collapsed (many workloads): expand first
        toggle.click()
    expect(checkout).to_have_count(1)
    toggle.click()
    expect(collapsed).to_have_count(1)
    expect(checkout).to_have_count(0)
    toggle.click()
    expect(checkout).to_have_count(1)


def test_a_wrong_token_is_told_clearly(page: Page, cloud: tuple[str, str, str]) -> None:
    base, _, _ = cloud
    page.goto(console_url(base, "not-a-token"))
    expect(page.locator("html")).to_have_attribute("data-state", "signed-out", timeout=30_000)
    message = page.locator("#message")
    expect(message).to_have_attribute("data-kind", "error")
    expect(message).to_contain_text("token")


def test_an_api_error_shows_an_error_state_not_a_blank_page(page: Page, cloud: tuple[str, str, str]) -> None:
    base, _, token = cloud

    def fail(route: Any) -> None:
        route.fulfill(status=500, content_type="application/json", body='{"error": {"code": "internal"}}')

    page.route("**/v1/**", fail)
    page.goto(console_url(base, token))
    expect(page.locator("html")).to_have_attribute("data-state", "error", timeout=30_000)
    message = page.locator("#message")
    expect(message).to_have_attribute("data-kind", "error")
    expect(message).to_contain_text("500")
    assert page.locator("body").inner_text().strip()


def test_the_whole_demo_graph(page: Page, cloud: tuple[str, str, str], sandbox: Sandbox) -> None:
    """The first view after sign-in: every namespace of the sandbox (few enough workloads to start
    expanded), Internet names and AWS resources; its screenshot is the whole demo graph."""
    base, _, token = cloud
    _signed_in(page, base, token)
    listing = page.locator("#graph-list")
    for namespace in {w.namespace for w in sandbox_workloads()}:
        expect(listing.locator(f'li[data-node-id^="w:{namespace}/"]').first).to_be_attached()
    expect(listing.locator('li[data-node-id^="aws:arn:aws:"]').first).to_be_attached()
    expect(listing.locator('li[data-node-id^="inet:"]').first).to_be_attached()
    page.locator("#graph").screenshot(path=str(SHOTS / "sandbox-whole-demo-graph-canvas.png"))
    assert page.errors == []  # type: ignore[attr-defined]


def sandbox_workloads() -> list[Any]:
    """The workloads whose pods open connections (the product's own in otterize-system too)."""
    from sandbox.product import WORKLOADS

    return [w for w in WORKLOADS if w.namespace not in {"kube-system"}]
