"""agent.aws.iam_actions under hypothesis: whatever a client sends, iam_calls returns IAM calls or
raises RequestError, and nothing else (the proxy forwards every request and must not crash on any).

Two sources: requests made up from parts (real and random methods, hosts, paths, queries, headers,
signing scopes and bodies), and the recorded requests of tests/data/aws/requests/ with one part
mutated (the closest to what a buggy or hostile client sends).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.aws.iam_actions import RequestError, iam_calls
from agent.model import IamCall

DATA = Path(__file__).resolve().parents[2] / "data" / "aws" / "requests"
RECORDED = [
    entry for path in sorted(DATA.glob("*.json")) for entry in json.loads(path.read_text(encoding="utf-8"))
]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SERVICES = [
    "s3",
    "dynamodb",
    "sqs",
    "sns",
    "lambda",
    "secretsmanager",
    "kms",
    "sts",
    "s3-object-lambda",
    "s3express",
    "monitoring",
    "execute-api",
    "iam",
    "madeup-service",
]
REGIONS = ["us-east-1", "us-west-2", "cn-north-1", "us-gov-west-1", "*", "eu-isoe-west-1"]
HOSTS = [
    "s3.amazonaws.com",
    "photos.s3.amazonaws.com",
    "s3.us-west-2.amazonaws.com",
    "my.dotted.bucket.s3.us-east-1.amazonaws.com",
    "ap-123456789012.s3-accesspoint.us-west-2.amazonaws.com",
    "123456789012.s3-control.us-east-1.amazonaws.com",
    "s3express-control.us-east-1.amazonaws.com",
    "dynamodb.us-east-1.amazonaws.com",
    "123456789012.ddb.us-east-1.amazonaws.com",
    "sqs.us-east-1.amazonaws.com",
    "lambda.us-east-1.amazonaws.com",
    "localhost:4566",
    "[::1]:9000",
    "",
]
PATHS = [
    "/",
    "",
    "/photos",
    "/photos/",
    "/photos/a/b%20c.jpg",
    "/v20180820/accesspoint",
    "/123456789012/jobs",
    "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A1%3Afunction%3Af/invocations",
    "/service/x/operation/Y",
    "/%",
    "/%ZZ",
    "//",
    "/a/../b",
]
TARGETS = [
    "DynamoDB_20120810.GetItem",
    "DynamoDBStreams_20120810.GetRecords",
    "AmazonSQS.SendMessage",
    "TrentService.Encrypt",
    "secretsmanager.GetSecretValue",
    "GetItem",
    ".",
    "a.b.c",
    "",
]
JSON_KEYS = [
    "TableName",
    "IndexName",
    "QueueUrl",
    "QueueName",
    "KeyId",
    "SecretId",
    "SecretIdList",
    "RequestItems",
    "TransactItems",
    "Statement",
    "Statements",
    "FunctionName",
    "Role",
    "TopicArn",
    "AliasName",
    "SourceKeyId",
    "DestinationKeyId",
    "Name",
    "Put",
    "Get",
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=40)
    | st.sampled_from(
        ["arn:aws:dynamodb:us-east-1:1:table/t", "arn:aws:iam::1:role/r", "alias/a", "arn:", "arn:a:b:c:d:e"]
    ),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(JSON_KEYS) | st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
bodies = st.one_of(
    st.binary(max_size=200),
    st.dictionaries(st.sampled_from(JSON_KEYS), json_values, max_size=5).map(
        lambda d: json.dumps(d).encode()
    ),
    st.dictionaries(
        st.sampled_from(["Action", "QueueUrl", "RoleArn", "Tags.member.1.Key", "Name"]), st.text(max_size=30)
    ).map(lambda d: urlencode(d).encode()),
    st.just(
        b"<Delete><Object><Key>a&amp;b</Key><VersionId>1</VersionId></Object><Object><Key></Key></Object></Delete>"
    ),
    st.just(b"[" * 5000),
)


@st.composite
def authorizations(draw: st.DrawFn) -> str:
    service = draw(st.sampled_from(SERVICES) | st.text(max_size=12))
    region = draw(st.sampled_from(REGIONS) | st.text(max_size=12))
    date = draw(st.sampled_from(["20240101"]) | st.text(max_size=9))
    algorithm = draw(st.sampled_from(["AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256", "AWS", "Bearer", ""]))
    scope = (
        f"{date}/{service}/aws4_request"
        if algorithm.startswith("AWS4-ECDSA")
        else f"{date}/{region}/{service}/aws4_request"
    )
    tail = draw(st.sampled_from(["", ", SignedHeaders=host, Signature=00", ",,=,"]) | st.text(max_size=20))
    return f"{algorithm} Credential=AKIAIOSFODNN7EXAMPLE/{scope}{tail}"


@st.composite
def made_up_requests(draw: st.DrawFn) -> tuple[str, str, str, str, dict[str, str], bytes]:
    headers: dict[str, str] = {}
    if draw(st.booleans()):
        headers["authorization"] = draw(authorizations() | st.text(max_size=60))
    for name, values in (
        ("x-amz-target", st.sampled_from(TARGETS) | st.text(max_size=30)),
        (
            "content-type",
            st.sampled_from(["application/x-amz-json-1.0", "application/x-www-form-urlencoded"]),
        ),
        (
            "x-amz-copy-source",
            st.sampled_from(["b/k?versionId=1", "/b", "arn:aws:s3:us-east-1:1:accesspoint/a/object/k", "%"]),
        ),
        ("smithy-protocol", st.just("rpc-v2-cbor")),
        ("x-amz-region-set", st.text(max_size=20)),
    ):
        if draw(st.booleans()):
            headers[name] = draw(values)
    query = draw(
        st.one_of(
            st.text(max_size=60),
            st.dictionaries(
                st.sampled_from(
                    [
                        "list-type",
                        "uploads",
                        "versionId",
                        "Action",
                        "X-Amz-Credential",
                        "X-Amz-Algorithm",
                        "AWSAccessKeyId",
                        "Signature",
                        "Expires",
                        "x-id",
                        "Qualifier",
                    ]
                ),
                st.text(max_size=30),
                max_size=5,
            ).map(urlencode),
        )
    )
    method = draw(st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD"]) | st.text(max_size=6))
    host = draw(st.sampled_from(HOSTS) | st.text(max_size=40))
    path = draw(st.sampled_from(PATHS) | st.text(max_size=60))
    return method, host, path, query, headers, draw(bodies)


def check(request: tuple[str, str, str, str, dict[str, str], bytes]) -> None:
    try:
        calls = iam_calls(*request)
    except RequestError:
        return
    assert isinstance(calls, tuple)
    for call in calls:
        assert isinstance(call, IamCall)
        assert ":" in call.action
        assert call.resource == "*" or call.resource.startswith("arn:")
    assert iam_calls(*request) == calls  # pure: the same request, the same answer


@FUZZ
@given(made_up_requests())
def test_made_up_requests_give_calls_or_request_error(
    request: tuple[str, str, str, str, dict[str, str], bytes],
) -> None:
    check(request)


def recorded_parts(entry: dict[str, Any]) -> tuple[str, str, str, str, dict[str, str], bytes]:
    url = urlsplit(entry["url"])
    headers = {name.lower(): value for name, value in entry["headers"].items()}
    body = entry["body"].encode() if "body" in entry else base64.b64decode(entry.get("body_base64", ""))
    return entry["method"], url.netloc, url.path, url.query, headers, body


@st.composite
def mutated_recordings(draw: st.DrawFn) -> tuple[str, str, str, str, dict[str, str], bytes]:
    method, host, path, query, headers, body = recorded_parts(draw(st.sampled_from(RECORDED)))
    what = draw(st.sampled_from(["method", "host", "path", "query", "header", "body", "insert", "truncate"]))
    text = draw(st.text(max_size=40))
    if what == "method":
        method = text
    elif what == "host":
        host = text if draw(st.booleans()) else f"{text}.{host}"
    elif what == "path":
        at = draw(st.integers(0, len(path)))
        path = path[:at] + text + path[at:]
    elif what == "query":
        query = text if draw(st.booleans()) else f"{query}&{text}"
    elif what == "header":
        headers = {**headers, draw(st.sampled_from([*headers, "x-amz-target", "x-amz-copy-source"])): text}
    elif what == "body":
        body = draw(bodies)
    elif what == "insert" and body:
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.binary(min_size=1, max_size=8)) + body[at:]
    elif what == "truncate":
        body = body[: draw(st.integers(0, len(body)))]
    return method, host, path, query, headers, body


@FUZZ
@given(mutated_recordings())
def test_mutated_recorded_requests_give_calls_or_request_error(
    request: tuple[str, str, str, str, dict[str, str], bytes],
) -> None:
    check(request)
