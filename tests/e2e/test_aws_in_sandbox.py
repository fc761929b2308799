"""AWS visibility in the sandbox, as the chart runs it: the webhook patches the labelled client's pod at
creation, its AWS calls go through the forwarder to the proxy, and the mapper turns them into a
least-privilege IAM policy — exactly the actions used, on their ARNs — through the CLI and the cloud;
the unlabelled client stays invisible. Stopping the proxy fails open; no credential leaks anywhere."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from agent.exports import validate
from sandbox.awsdemo import (
    AWS_DEMO_NS,
    CLIENT,
    CREDENTIALS_SECRET,
    EXPECTED_IAM,
    UNLABELLED_CLIENT,
    VISIBILITY_LABEL,
)
from sandbox.podspec import secret_data
from sandbox.state import StateFile
from sandbox.topology import AGENT_NS, DNS_SERVICE_IP
from sandbox.views import aws_map, cloud_access, mapper_url, wait_for_aws_map
from tests.e2e.conftest import Sandbox
from tests.e2e.conftest import network_mapper as cli

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]
SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
ITERATION = re.compile(r"iteration=(\d+) ok=(\d+) failed=(\d+)")


def policies_by_workload(policies: list[dict[str, Any]]) -> dict[str, dict[str, frozenset[str]]]:
    return {
        p["workload"]["name"]: {
            s["Resource"]: frozenset(s["Action"]) for s in p["policyDocument"]["Statement"]
        }
        for p in policies
        if p["workload"]["namespace"] == AWS_DEMO_NS
    }


@pytest.fixture(scope="module")
def mapped(sandbox: Sandbox) -> Sandbox:
    complete, _ = wait_for_aws_map(mapper_url(sandbox.state_dir), 90.0)
    assert complete, f"the AWS map is {aws_map(mapper_url(sandbox.state_dir))}"
    return sandbox


def test_the_iam_export_lists_exactly_the_actions_aws_client_used_on_their_arns(mapped: Sandbox) -> None:
    result = cli(mapped, "export", "--format", "iam", "-n", AWS_DEMO_NS)
    assert result.returncode == 0, result.stderr
    policies = policies_by_workload(json.loads(result.stdout))
    assert policies == {CLIENT: EXPECTED_IAM}  # and nothing for the unlabelled client
    assert UNLABELLED_CLIENT not in policies


def test_the_clouds_iam_export_is_the_same(mapped: Sandbox) -> None:
    base, tenant, token = cloud_access(mapped.state_dir)
    deadline = time.monotonic() + 60
    while True:
        reply = requests.get(
            f"{base}/v1/tenants/{tenant}/export",
            params={"format": "iam"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert reply.status_code == 200, reply.text
        policies = policies_by_workload(reply.json())
        if policies == {CLIENT: EXPECTED_IAM} or time.monotonic() > deadline:
            break
        time.sleep(1)  # the mapper uploads every few seconds
    assert policies == {CLIENT: EXPECTED_IAM}


def test_list_shows_the_aws_edges_and_clientintents_aws_targets_validate(mapped: Sandbox) -> None:
    listing = cli(mapped, "list", "-n", AWS_DEMO_NS)
    assert listing.returncode == 0, listing.stderr
    for arn in EXPECTED_IAM:
        if arn != "*":
            assert arn in listing.stdout, listing.stdout
    # The unlabelled client's calls reach AWS too, but only as Internet traffic (the sniffer's view):
    # no AWS action or ARN is ever shown for it.
    unlabelled = listing.stdout.split(f"{UNLABELLED_CLIENT} in namespace", 1)[-1].split(" calls:\n", 1)[-1]
    unlabelled = re.split(r"\n\S", unlabelled, maxsplit=1)[0]
    assert "arn:aws" not in unlabelled and "AWS:" not in unlabelled
    result = cli(mapped, "export", "--format", "yaml", "-n", AWS_DEMO_NS)
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    (doc,) = [d for d in docs if d["metadata"]["name"] == CLIENT]
    assert validate(doc, SHARED / "clientintents-crd.yaml") == []
    targets = {t["aws"]["arn"]: frozenset(t["aws"]["actions"]) for t in doc["spec"]["targets"] if "aws" in t}
    assert targets == EXPECTED_IAM


def _resolv(sb: Sandbox, pod_name: str) -> dict[str, list[str]]:
    lines = Path(f"/etc/netns/nm-{pod_name}"[:64], "resolv.conf").read_text().splitlines()
    out: dict[str, list[str]] = {}
    for line in lines:
        key, _, rest = line.partition(" ")
        out.setdefault(key, []).extend(rest.split())
    return out


def test_the_webhook_patched_the_labelled_pod_only_and_kept_its_search_path(sandbox: Sandbox) -> None:
    labelled, unlabelled = sandbox.pod(AWS_DEMO_NS, CLIENT), sandbox.pod(AWS_DEMO_NS, UNLABELLED_CLIENT)
    assert labelled.metadata.labels[VISIBILITY_LABEL] == "true"
    assert labelled.spec.dns_policy == "None"
    assert unlabelled.spec.dns_policy in (None, "ClusterFirst")
    env = {e.name: e.value for e in labelled.spec.containers[0].env}
    assert env["AWS_CA_BUNDLE"].endswith("/ca-bundle.pem")
    assert "AWS_CA_BUNDLE" not in {e.name for e in unlabelled.spec.containers[0].env or ()}
    forwarder = sandbox.core.read_namespaced_service("network-mapper-aws-dns", AGENT_NS).spec.cluster_ip
    patched, plain = _resolv(sandbox, labelled.metadata.name), _resolv(sandbox, unlabelled.metadata.name)
    assert patched["nameserver"] == [forwarder] and plain["nameserver"] == [DNS_SERVICE_IP]
    assert (
        patched["search"]
        == plain["search"]
        == [
            f"{AWS_DEMO_NS}.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local",
        ]
    )
    assert patched["options"] == plain["options"] == ["ndots:5"]


def _iterations(sb: Sandbox, pod_name: str) -> list[tuple[float, int, int]]:
    """(read time, ok, failed) of every iteration line the client has logged."""
    text = sb.core.read_namespaced_pod_log(pod_name, AWS_DEMO_NS)
    return [(time.monotonic(), int(m[2]), int(m[3])) for m in ITERATION.finditer(text)]


def _control(sb: Sandbox, prefix: str, action: str) -> None:
    port = StateFile(sb.state_dir).load().forwards["control"]
    reply = requests.post(f"http://127.0.0.1:{port}/pods/{AGENT_NS}/{prefix}/{action}", timeout=10)
    assert reply.status_code == 200, f"{action} {prefix}: {reply.status_code}"


def _aws_last_seen(sb: Sandbox) -> str:
    from agent.cli.queries import EDGES_QUERY
    from agent.mapperclient import HttpMapperClient

    client = HttpMapperClient(mapper_url(sb.state_dir), "", 10.0)
    try:
        edges = client.execute(EDGES_QUERY, {"namespaces": [AWS_DEMO_NS]})["edges"]
    finally:
        client.close()
    return max(
        str(e["lastSeen"]) for e in edges if e["target"]["type"] == "aws" and e["client"]["name"] == CLIENT
    )


def test_stopping_the_proxy_fails_open_and_starting_it_resumes_observation(mapped: Sandbox) -> None:
    pod = mapped.pod(AWS_DEMO_NS, CLIENT).metadata.name
    _control(mapped, "network-mapper-aws-proxy", "pause")
    try:
        stopped = time.monotonic()
        before = len(_iterations(mapped, pod))
        # The forwarder notices within its health-check interval (2 s) and answers with the real
        # address; clients holding the proxy's answer keep it for its TTL (5 s) and retry.
        deadline = stopped + 45
        clean_in_a_row = 0
        while clean_in_a_row < 5:
            assert time.monotonic() < deadline, (
                f"calls kept failing with the proxy down: {_iterations(mapped, pod)}"
            )
            time.sleep(1)
            recent = _iterations(mapped, pod)[before:]
            clean_in_a_row = 0
            for _, ok, failed in recent:
                clean_in_a_row = clean_in_a_row + 1 if failed == 0 and ok == 7 else 0
        # Every call succeeded: those made as the proxy stopped by their SDK's retries, which
        # outlast the fail-over (the client allows standard mode's backoff 8 attempts).
        assert [it for it in _iterations(mapped, pod)[before:] if it[2]] == []
    finally:
        _control(mapped, "network-mapper-aws-proxy", "resume")
    resumed = time.monotonic()
    seen = _aws_last_seen(mapped)
    while _aws_last_seen(mapped) == seen:
        assert time.monotonic() - resumed < 30, "no AWS observation within 30 s of the proxy's return"
        time.sleep(1)


def test_zz_no_credential_or_signature_reaches_any_log_or_store(mapped: Sandbox) -> None:
    creds = secret_data(
        mapped.core.api_client.sanitize_for_serialization(
            mapped.core.read_namespaced_secret(CREDENTIALS_SECRET, AWS_DEMO_NS)
        )
    )
    assert creds is not None
    needles = {creds["secret-access-key"], creds["session-token"]}
    signatures = mapped.state_dir / "aws-signatures"
    sent = {
        line.strip().encode()
        for f in signatures.glob("*.txt")
        for line in f.read_text().splitlines()
        if line.strip()
    }
    assert len(sent) > 20, "the clients recorded too few signatures for the search to mean anything"
    needles |= sent
    searched = 0
    for where in ("logs", "mapper-data", "cloud"):
        for f in (mapped.state_dir / where).rglob("*"):
            if f.is_file():
                data = f.read_bytes()
                searched += 1
                hits = [n[:8] for n in needles if n in data]
                assert hits == [], f"{f} holds secrets starting {hits}"
    assert searched > 10


def test_secret_volumes_are_mounted_inside_their_pods_only(sandbox: Sandbox) -> None:
    # The kubelet binds each volume in the container's own mount namespace: the proxy reads its CA
    # key there (it serves TLS, so it did), while the machine's directory stays an empty mount point.
    mount_point = Path("/etc/network-mapper/proxy-ca")
    assert mount_point.is_dir() and list(mount_point.iterdir()) == []
    pod = sandbox.pod(AGENT_NS, "network-mapper-aws-proxy")
    assert pod.spec.containers[0].volume_mounts[0].mount_path == str(mount_point)
