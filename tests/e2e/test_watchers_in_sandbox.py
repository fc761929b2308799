"""The Kafka and Istio watchers in the sandbox, as the chart runs them: the tutorials' maps through
the Otterize-compatible ``intents`` query, and the exports a user makes of them with the CLI —
ClientIntents with ``kafka`` and ``http`` targets, Istio AuthorizationPolicies, Strimzi KafkaUsers —
each valid against its published CRD, with the broker's denied access shown by ``list`` and never
exported."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.exports import validate
from sandbox.topology import EXPECTED_ISTIO, EXPECTED_KAFKA, ISTIO_NS, KAFKA_DENIED, KAFKA_NS
from sandbox.views import mapper_url, wait_for_watcher_maps, watcher_maps
from tests.e2e.conftest import Sandbox
from tests.e2e.conftest import network_mapper as cli

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]
DATA = Path(__file__).parents[1] / "data" / "exports"
SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def documents(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.fixture(scope="module")
def mapped(sandbox: Sandbox) -> Sandbox:
    complete, _ = wait_for_watcher_maps(mapper_url(sandbox.state_dir), 90.0)
    assert complete, f"the watchers' map is {watcher_maps(mapper_url(sandbox.state_dir))}"
    return sandbox


def test_the_intents_query_gives_the_tutorials_topics_and_paths(mapped: Sandbox) -> None:
    kafka, istio = watcher_maps(mapper_url(mapped.state_dir))
    assert kafka == EXPECTED_KAFKA  # client: mytopic CONSUME+DESCRIBE; client2: DESCRIBE+PRODUCE
    assert istio == EXPECTED_ISTIO  # query strings dropped, order numbers templated as {id}


def test_list_shows_the_denied_access_and_the_clientintents_export_leaves_it_out(mapped: Sandbox) -> None:
    listing = cli(mapped, "list", "-n", KAFKA_NS)
    assert listing.returncode == 0, listing.stderr
    ((client, topics),) = KAFKA_DENIED.items()
    ((topic, ops),) = topics.items()
    line = next(ln for ln in listing.stdout.splitlines() if ln.startswith(f"{client} "))
    section = listing.stdout.split(line, 1)[1]
    assert f"topic {topic} {'/'.join(sorted(op.lower() for op in ops))} (denied)" in section, listing.stdout

    crd = SHARED / "clientintents-crd.yaml"
    docs = documents(cli(mapped, "export", "--format", "yaml", "-n", KAFKA_NS, "-n", ISTIO_NS))
    for doc in docs:
        assert validate(doc, crd) == [], doc
    kafka_targets = {
        d["metadata"]["name"]: [t["kafka"] for t in d["spec"]["targets"] if "kafka" in t]
        for d in docs
        if d["metadata"]["namespace"] == KAFKA_NS
    }
    exported = {
        name: {
            topic["name"]: {op.upper() for op in topic["operations"]}
            for t in targets
            for topic in t["topics"]
        }
        for name, targets in kafka_targets.items()
    }
    assert exported == {c: {t: set(ops) for t, ops in topics.items()} for c, topics in EXPECTED_KAFKA.items()}
    http = {
        (d["metadata"]["name"], t["kubernetes"]["name"]): {
            r["path"]: set(r["methods"]) for r in t["kubernetes"]["http"]
        }
        for d in docs
        if d["metadata"]["namespace"] == ISTIO_NS
        for t in d["spec"]["targets"]
        if "kubernetes" in t and t["kubernetes"].get("http")
    }
    assert {pair for pair in http} == set(EXPECTED_ISTIO)
    assert http[("client", "server")] == {"/api/cart": {"GET"}, "/api/orders/*": {"POST"}}  # what Istio takes


def test_istio_and_kafka_acl_exports_are_valid_and_grant_only_what_was_allowed(mapped: Sandbox) -> None:
    policies = documents(cli(mapped, "export", "--format", "istio", "-n", ISTIO_NS))
    assert [p["metadata"]["name"] for p in policies] == ["access-to-server-from-observed-clients"]
    for policy in policies:
        assert validate(policy, SHARED / "istio-authorizationpolicy-crd.yaml") == [], policy
    principals = {
        p
        for rule in policies[0]["spec"]["rules"]
        for f in rule["from"]
        for p in f["source"].get("principals", ())
    }
    assert principals == {f"cluster.local/ns/{ISTIO_NS}/sa/{c}" for c in ("client", "client2")}
    assert "{id}" not in yaml.safe_dump(policies)

    users = documents(
        cli(mapped, "export", "--format", "kafka-acl", "--kafka-user-version", "v1", "-n", KAFKA_NS)
    )
    for user in users:
        assert validate(user, SHARED / "strimzi-kafkauser-crd.yaml") == [], user
    acls = {
        (u["metadata"]["name"], a["resource"]["name"], op)
        for u in users
        for a in u["spec"]["authorization"]["acls"]
        for op in a["operations"]
    }
    assert acls == {
        ("client", "mytopic", "Read"),
        ("client", "mytopic", "Describe"),
        ("client2", "mytopic", "Write"),
        ("client2", "mytopic", "Describe"),
    }
    commands = cli(mapped, "export", "--format", "kafka-acl-commands", "-n", KAFKA_NS)
    assert commands.returncode == 0, commands.stderr
    assert (
        "payments" not in commands.stdout
        and "--allow-principal 'User:CN=client2,O=Otterize Tutorial'" in (commands.stdout)
    )


def test_the_watchers_keep_reporting_new_traffic(mapped: Sandbox) -> None:
    """lastSeen moves on while the tutorials' clients keep calling (each watcher reports deltas)."""
    from agent.cli.queries import EDGES_QUERY
    from agent.mapperclient import HttpMapperClient

    client = HttpMapperClient(mapper_url(mapped.state_dir), "", 10.0)

    def last_seen() -> dict[tuple[str, str], str]:
        edges = client.execute(EDGES_QUERY, {"namespaces": [KAFKA_NS, ISTIO_NS]})["edges"]
        return {
            (e["client"]["name"], e["target"].get("name") or ""): e["lastSeen"]
            for e in edges
            if {"kafka", "istio"} & set(e["methods"])
        }

    before = last_seen()
    assert {("client", "kafka"), ("client2", "kafka"), ("client", "server"), ("client2", "server")} <= set(
        before
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = last_seen()
        if all(now[k] > before[k] for k in before):
            break
        time.sleep(1)
    else:
        pytest.fail(f"lastSeen did not move on: {before} → {last_seen()}")
    client.close()
