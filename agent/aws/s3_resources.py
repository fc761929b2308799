"""What an S3 request names: bucket, access point, account and region from its host; object keys
from its path, its ``x-amz-copy-source`` header and a DeleteObjects body.

Hosts, as botocore and other SDKs address S3 (the host's own ``s3*`` label is found from the right,
so bucket names with dots or ``s3`` in them still split right):

- path-style ``s3.amazonaws.com/bucket/key``, ``s3.<region>.amazonaws.com``, ``s3-<region>``,
  ``s3.dualstack.<region>``, ``s3-fips.<region>``, any non-AWS host (a local stand-in);
- virtual-hosted ``<bucket>.s3[.<region>|-<region>].amazonaws.com[.cn]``;
- access points ``<name>-<account>.s3-accesspoint[.dualstack|-fips].<region>.amazonaws.com``
  (resource ``arn:aws:s3:<region>:<account>:accesspoint/<name>[/object/<key>]``) and S3 Object
  Lambda's ``<name>-<account>.s3-object-lambda.<region>.amazonaws.com``;
- S3 Control ``<account>.s3-control.<region>.amazonaws.com`` (botocore's ``s3control`` model, signed
  as ``s3``), and S3 Express's ``s3express-control.<region>.amazonaws.com``, shared by directory
  bucket operations and S3 Control's (paths ``/v20180820/...``).

Used by :mod:`agent.aws.iam_actions` (pure: strings in, names out; bodies are read, never kept).
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

from agent.aws.arns import names_from_arn
from agent.aws.iamdata import IamService
from agent.aws.operations import Resolved, SignedRequest

S3_FAMILY = frozenset({"s3", "s3-object-lambda", "s3express"})  # signing names routed by the s3 model
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}\Z")
_ACCOUNT = re.compile(r"\d{12}\Z")
_DELETE_OBJECT = re.compile(r"<Object>(.*?)</Object>", re.DOTALL)
_KEY = re.compile(r"<Key>(.*?)</Key>", re.DOTALL)
_VERSION = re.compile(r"<VersionId>(.*?)</VersionId>", re.DOTALL)
MAX_DELETE_KEYS = 1000  # S3's own limit per DeleteObjects request
_COPIES = frozenset({"CopyObject", "UploadPartCopy"})


@dataclass(frozen=True, slots=True)
class S3Host:
    """What an S3 host says. Empty strings where it says nothing."""

    bucket: str = ""  # a virtual-hosted bucket
    access_point: str = ""  # an access point's (or Object Lambda access point's) name
    account: str = ""  # an access point's or S3 Control's account
    region: str = ""
    control: bool = False  # the S3 Control API
    express_control: bool = False  # S3 Express's control endpoint (directory buckets and S3 Control)


def s3_host(host: str) -> S3Host:
    """Parse an S3 ``Host`` (port allowed): see the module docstring for the forms."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    labels = name.lower().rstrip(".").split(".")
    at = next((i for i in range(len(labels) - 1, -1, -1) if _is_s3_label(labels[i])), -1)
    if at < 0:
        return S3Host()
    label, prefix = labels[at], ".".join(labels[:at])
    region = _region_after(labels, at)
    if label.startswith(("s3-accesspoint", "s3-object-lambda")):
        ap_name, _, account = prefix.rpartition("-")
        if ap_name and _ACCOUNT.match(account):
            return S3Host(access_point=ap_name, account=account, region=region)
        return S3Host(region=region)
    if label.startswith("s3-control"):
        return S3Host(account=prefix if _ACCOUNT.match(prefix) else "", region=region, control=True)
    if label.startswith("s3express-control"):
        return S3Host(region=region, express_control=True)
    return S3Host(bucket=prefix, region=region)


def _is_s3_label(label: str) -> bool:
    return label == "s3" or label.startswith(("s3-", "s3express"))


def _region_after(labels: list[str], at: int) -> str:
    own = labels[at][3:]  # s3-us-west-2
    if _REGION.match(own):
        return own
    for label in labels[at + 1 : at + 3]:  # s3.dualstack.us-west-2, s3-accesspoint.us-west-2
        if _REGION.match(label):
            return label
    return ""


def is_control(host: S3Host, path: str) -> bool:
    """Whether a request is S3 Control's (botocore's ``s3control`` model) rather than S3's: by its
    host, or on S3 Express's shared control endpoint by S3 Control's versioned path."""
    return host.control or (host.express_control and path.startswith("/v20180820/"))


def effective_path(host: S3Host, path: str) -> str:
    """The path-style path of a request, so that the model's ``/{Bucket}/{Key+}`` routes match:
    a virtual-hosted (or access point) request's bucket goes in front of its path."""
    name = host.bucket or host.access_point
    if not name:
        return path
    return f"/{name}" if path in ("", "/") else f"/{name}{path if path.startswith('/') else '/' + path}"


def s3_needs(
    found: Resolved, actions: tuple[str, ...], host: S3Host, request: SignedRequest, iam: IamService | None
) -> list[tuple[str, dict[str, str]]]:
    """(action, names) of each thing an S3 request does: one per action on the addressed bucket
    or object (a version's action when ``versionId`` names one), plus s3:GetObject on a copy's
    source, or one per key of a DeleteObjects body."""
    labels = found.labels if found.operation else _path_labels(request.path)
    names, operation = s3_names(host, labels), found.operation
    if operation == "DeleteObjects":
        objects = deleted_objects(request.body)
        per_key = [
            (versioned_action(action, iam) if version else action, {**names, "objectname": key})
            for key, version in objects
            for action in actions
        ]
        return per_key or [(action, names) for action in actions]
    if "versionId" in request.query:
        actions = tuple(versioned_action(action, iam) for action in actions)
    wanted = [(action, names) for action in actions]
    header = request.headers.get("x-amz-copy-source", "")
    source = copy_source(header, iam) if operation in _COPIES and header else None
    if source is not None:
        source_names, version = source
        wanted.append((versioned_action("s3:GetObject", iam) if version else "s3:GetObject", source_names))
    return wanted


def _path_labels(path: str) -> dict[str, str]:
    """Bucket and key of a path-style path no route matched (a browser form upload, an operation
    newer than botocore): an unknown request still names what it touches."""
    bucket, _, key = path.lstrip("/").partition("/")
    return {k: unquote(v) for k, v in (("Bucket", bucket), ("Key", key)) if v}


def s3_names(host: S3Host, labels: Mapping[str, str]) -> dict[str, str]:
    """Names of the bucket / access point and object a routed request addresses."""
    names: dict[str, str] = {}
    if host.access_point:
        names.update(accesspointname=host.access_point, account=host.account)
    elif labels.get("Bucket"):
        names["bucketname"] = labels["Bucket"]
    elif host.account:
        names["account"] = host.account  # S3 Control: the account is the resource's
    if host.region:
        names["region"] = host.region
    if labels.get("Key"):
        names["objectname"] = labels["Key"]
    return names


def versioned_action(action: str, iam: IamService | None) -> str:
    """``s3:GetObject`` → ``s3:GetObjectVersion`` (and ``…Acl`` → ``…VersionAcl``, ``…Tagging`` →
    ``…VersionTagging``, ``DeleteObject`` → ``DeleteObjectVersion``, ...) for a request on one
    object version, where AWS has such an action; else ``action``."""
    prefix, _, name = action.partition(":")
    if iam is None or "Object" not in name or "ObjectVersion" in name:
        return action
    variant = iam.action(name.replace("Object", "ObjectVersion", 1))
    return f"{prefix}:{variant.name}" if variant is not None else action


def copy_source(header: str, iam: IamService | None) -> tuple[dict[str, str], bool] | None:
    """Names of the object an ``x-amz-copy-source`` header reads (``bucket/key?versionId=v``,
    URL-encoded, or an access point's ``arn:...:accesspoint/<name>/object/<key>``), and whether it
    names a version. None when the header names no object."""
    text, _, query = header.partition("?")
    versioned = any(key == "versionId" for key, _ in parse_qsl(query, keep_blank_values=True))
    source = unquote(text).lstrip("/")
    if source.startswith("arn:"):
        names = names_from_arn(source, iam.formats if iam is not None else ())
        return (names, versioned) if "objectname" in names else None
    bucket, _, key = source.partition("/")
    if not bucket or not key:
        return None
    return {"bucketname": bucket, "objectname": key}, versioned


def deleted_objects(body: bytes) -> list[tuple[str, bool]]:
    """(key, names a version) of each object a DeleteObjects body lists, at most S3's limit."""
    text = body.decode("utf-8", errors="replace")
    found = []
    for block in _DELETE_OBJECT.findall(text)[:MAX_DELETE_KEYS]:
        key = _KEY.search(block)
        if key is not None and key.group(1):
            found.append((html.unescape(key.group(1)), _VERSION.search(block) is not None))
    return found
