"""Policy safety in the sandbox, as a user runs it: export the demo's policies, ``network-mapper check``
them, edit one, check again, apply it (the sandbox enforces NetworkPolicies with nftables, as a CNI
would) and see the same verdict as refused connections; then ``snapshot save`` / ``diff --now``
around a change of the demo's traffic.

Named ``test_zy_`` so it runs after the tests that expect the demo's exact map: the diff test adds
a call to it (and removes it again when done).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.state import StateFile
from sandbox.topology import DEMO_NS, EXPECTED_DEMO_MAP
from sandbox.views import mapper_url, wait_for_demo_map
from tests.e2e.conftest import Sandbox, network_mapper, sandbox_cli

pytestmark = pytest.mark.sandbox

CHECKOUT, PAYMENT = "checkoutservice", "paymentservice"
NEW_CLIENT, NEW_SERVER = "adservice", "currencyservice"  # a call the demo never makes
STOPPED = "recommendationservice"


@pytest.fixture(scope="module")
def sb(sandbox: Sandbox) -> Sandbox:
    complete, _ = wait_for_demo_map(mapper_url(sandbox.state_dir), 120.0)
    assert complete, "the demo map never became complete"
    return sandbox


def _denied(report: str) -> set[tuple[str, str]]:
    """(client, server) names of the denied edges of a ``check --format json`` report."""
    found = set()
    for denial in json.loads(report)["denials"]:
        edge = denial["edge"]
        found.add((edge["client"]["name"], edge["target"].get("name") or edge["target"].get("dnsName", "")))
    return found


def _check(sb: Sandbox, *files: Path) -> subprocess.CompletedProcess[str]:
    return network_mapper(sb, "check", *map(str, files), "--format", "json")


def _export(sb: Sandbox, path: Path, *flags: str) -> list[dict[str, Any]]:
    result = network_mapper(sb, "export", *flags, "-o", str(path))
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_exported_network_policies_deny_nothing_and_an_isolated_payment_denies_exactly_checkout(
    sb: Sandbox, tmp_path: Path
) -> None:
    exported = tmp_path / "networkpolicies.yaml"
    docs, result = _exported_and_checked(sb, exported, "--format", "networkpolicy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _denied(result.stdout) == set()

    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump_all(_isolate(docs, PAYMENT), sort_keys=False))
    result = _check(sb, edited)
    assert result.returncode == 1, result.stdout + result.stderr
    assert _denied(result.stdout) == {(CHECKOUT, PAYMENT)}
    text = network_mapper(sb, "check", str(edited))
    assert text.returncode == 1 and f"{CHECKOUT}" in text.stdout and "access-to-paymentservice" in text.stdout


def test_exported_client_intents_deny_nothing_and_dropping_payment_denies_exactly_checkout(
    sb: Sandbox, tmp_path: Path
) -> None:
    # --protect adds a ProtectedService per server: under Otterize's rules a server that no intent
    # names is open, so without it dropping the only intent to paymentservice would open it instead.
    exported = tmp_path / "clientintents.yaml"
    docs, result = _exported_and_checked(sb, exported, "--format", "yaml", "--protect")
    assert any(d["kind"] == "ProtectedService" and d["spec"]["name"] == PAYMENT for d in docs)
    assert result.returncode == 0, result.stdout + result.stderr

    for doc in docs:
        if doc["kind"] != "ClientIntents":
            continue
        if doc["metadata"]["namespace"] == DEMO_NS and doc["spec"]["workload"]["name"] == CHECKOUT:
            targets = doc["spec"]["targets"]
            doc["spec"]["targets"] = [t for t in targets if PAYMENT not in json.dumps(t)]
            assert len(doc["spec"]["targets"]) == len(targets) - 1
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    result = _check(sb, edited)
    assert result.returncode == 1, result.stdout + result.stderr
    assert _denied(result.stdout) == {(CHECKOUT, PAYMENT)}


def _exported_and_checked(
    sb: Sandbox, path: Path, *flags: str
) -> tuple[list[dict[str, Any]], subprocess.CompletedProcess[str]]:
    """Export, then check the export against the live map. A call first seen between the two (the
    sandbox's other namespaces still starting) is rightly denied: export again until the map holds
    still between the two commands."""
    deadline = time.monotonic() + 60
    while True:
        docs = _export(sb, path, *flags)
        result = _check(sb, path)
        if result.returncode == 0 or time.monotonic() > deadline:
            return docs, result
        time.sleep(1)


def _isolate(docs: list[dict[str, Any]], server: str) -> list[dict[str, Any]]:
    """``docs`` with the ingress policy of ``server`` admitting no client (the pod stays isolated)."""
    hits = [d for d in docs if d["metadata"]["name"] == f"access-to-{server}-from-observed-clients"]
    assert len(hits) == 1, [d["metadata"]["name"] for d in docs]
    hits[0]["spec"]["ingress"] = []
    return docs


def _kubectl(sb: Sandbox, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(sb.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _connects(sb: Sandbox, client: str, server: str) -> bool:
    """Whether ``client``'s pod can open a TCP connection to ``server``'s pod on its first port."""
    client_pod = sb.pod(DEMO_NS, client)
    server_pod = sb.pod(DEMO_NS, server)
    port = server_pod.spec.containers[0].ports[0].container_port
    probe = (
        "import socket,sys\n"
        "try:\n socket.create_connection((sys.argv[1], int(sys.argv[2])), 3).close()\n"
        "except OSError: sys.exit(1)\n"
    )
    netns = f"nm-{client_pod.metadata.name}"[:64]
    run = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", probe, server_pod.status.pod_ip, str(port)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return run.returncode == 0


def _wait(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f} s"
        time.sleep(0.5)


@pytest.fixture
def applied_policy(sb: Sandbox, tmp_path: Path) -> Iterator[Path]:
    exported = tmp_path / "networkpolicies.yaml"
    edited = tmp_path / "edited.yaml"
    edited.write_text(
        yaml.safe_dump_all(_isolate(_export(sb, exported, "--format", "networkpolicy"), PAYMENT))
    )
    applied = _kubectl(sb, "apply", "-f", str(edited))
    assert applied.returncode == 0, applied.stderr
    try:
        yield edited
    finally:
        _kubectl(sb, "delete", "-f", str(edited))
        _wait(lambda: _connects(sb, CHECKOUT, PAYMENT), "checkoutservice reaches paymentservice again")


def test_the_sandbox_refuses_exactly_what_check_denied(sb: Sandbox, applied_policy: Path) -> None:
    _wait(
        lambda: not _connects(sb, CHECKOUT, PAYMENT), "the sandbox refuses checkoutservice → paymentservice"
    )
    refused = {
        (client, server)
        for client, servers in EXPECTED_DEMO_MAP.items()
        for server in servers
        if not _connects(sb, client, server)
    }
    assert refused == {(CHECKOUT, PAYMENT)}
    result = _check(sb, applied_policy)
    assert result.returncode == 1 and _denied(result.stdout) == refused


def _diff(sb: Sandbox, *args: str) -> subprocess.CompletedProcess[str]:
    return network_mapper(sb, "diff", "before", "--now", "--namespace", DEMO_NS, *args)


def test_diff_since_a_snapshot_shows_exactly_the_stopped_and_the_new_call(sb: Sandbox) -> None:
    # The call stops before the snapshot: "gone" means "not seen since the snapshot was taken", and a
    # call made between the save and the stop would be a sighting after it (CI saw that race).
    stopped = sandbox_cli("traffic", "stop", DEMO_NS, STOPPED, state_dir=sb.state_dir)
    try:
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        token = StateFile(sb.state_dir).load().token  # saving is a write: the mapper's token, as for reset
        saved = network_mapper(sb, "--token", token, "snapshot", "save", "before")
        assert saved.returncode == 0, saved.stderr
        assert "before" in network_mapper(sb, "snapshot", "list").stdout
        added = sandbox_cli("traffic", "add", DEMO_NS, NEW_CLIENT, NEW_SERVER, state_dir=sb.state_dir)
        assert added.returncode == 0, added.stdout + added.stderr
        expected = {
            "added": {(NEW_CLIENT, NEW_SERVER)},
            "gone": {(STOPPED, "productcatalogservice")},
            "changed": set(),
        }
        found: dict[str, set[tuple[str, str]]] = {}

        def settled() -> bool:  # every other demo call is seen again after the snapshot
            nonlocal found
            result = _diff(sb, "--format", "json")
            assert result.returncode == 0, result.stderr
            found = _pairs(json.loads(result.stdout))
            return found == expected

        deadline = time.monotonic() + 90
        while not settled():
            assert time.monotonic() < deadline, f"diff before --now: {found}, expected {expected}"
            time.sleep(1)
        markdown = _diff(sb, "--format", "markdown").stdout
        _assert_markdown_table(markdown, rows=2)
    finally:
        sandbox_cli("traffic", "start", DEMO_NS, STOPPED, state_dir=sb.state_dir)
        sandbox_cli("traffic", "remove", DEMO_NS, NEW_CLIENT, NEW_SERVER, state_dir=sb.state_dir)


def _pairs(doc: dict[str, Any]) -> dict[str, set[tuple[str, str]]]:
    def pair(edge: dict[str, Any]) -> tuple[str, str]:
        return edge["client"]["name"], edge["target"].get("name") or edge["target"].get("dnsName", "")

    return {key: {pair(e.get("edge", e)) for e in doc[key]} for key in ("added", "gone", "changed")}


def _assert_markdown_table(text: str, rows: int) -> None:
    """The Markdown renders as one table with ``rows`` body rows (markdown-it, CommonMark + GFM tables)."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    assert [t.type for t in tokens].count("table_open") == 1, text
    assert sum(1 for t in tokens if t.type == "tr_open") == rows + 1, text  # + the header row
