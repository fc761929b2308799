"""AdmissionReview `admission.k8s.io/v1`: the request the API server sends a mutating webhook, and
what it makes of the webhook's answer.

`webhooks.MutatingWebhooks` builds each request here from the object being created and sends it
over HTTPS; the bytes that come back are checked here as kube-apiserver checks them
(k8s.io/apiserver .../webhook/request/admissionreview.go `VerifyAdmissionResponse`), and a
rejection becomes the `ApiError` kube returns (`webhookerrors.ToStatusErr`). Pure: no I/O.

Errors are `ReviewError`s whose `prefix` says at which stage kube would have failed, so the
caller's "failed calling webhook" message reads as kube-apiserver's does.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from typing import Any

from sandbox.apiserver.discovery import ResourceType
from sandbox.apiserver.errors import ApiError

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"

Obj = dict[str, Any]


class ReviewError(ValueError):
    """A webhook answer kube-apiserver would not accept; a webhook call failure."""

    prefix = "received invalid webhook response"


class UndecodableResponse(ReviewError):
    """The body is not an AdmissionReview at all (kube fails while decoding it)."""

    prefix = "failed to call webhook"


class UndecodablePatch(ReviewError):
    """`response.patch` is not a JSON patch document."""

    prefix = "received undecodable patch in webhook response"


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    patch: bytes  # the JSON patch document, b"" when there is none
    patch_type: str  # "" when there is no patch
    status: Obj  # `response.status`, {} when absent


@dataclass(frozen=True, slots=True)
class User:
    username: str
    groups: tuple[str, ...] = ()


def review_request(uid: str, rt: ResourceType, namespace: str, obj: Obj, user: User) -> Obj:
    """The AdmissionReview for a CREATE of `obj` (already defaulted) in `namespace` ("" if none)."""
    kind = {"group": rt.group, "version": rt.version, "kind": rt.kind}
    resource = {"group": rt.group, "version": rt.version, "resource": rt.plural}
    request: Obj = {
        "uid": uid,
        "kind": kind,
        "resource": resource,
        "requestKind": dict(kind),
        "requestResource": dict(resource),
        "operation": "CREATE",
        "userInfo": {"username": user.username, "groups": list(user.groups)},
        "object": obj,
        "oldObject": None,
        "dryRun": False,
        "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
    }
    # kube omits empty names and namespaces (generateName objects have no name yet at admission).
    name = str(obj.get("metadata", {}).get("name") or "")
    if name:
        request["name"] = name
    if namespace:
        request["namespace"] = namespace
    return {"apiVersion": API_VERSION, "kind": KIND, "request": request}


def new_uid() -> str:
    return str(uuid.uuid4())


def verdict(uid: str, body: bytes) -> Verdict:
    """Decode and check a webhook's answer to the request `uid`."""
    try:
        review = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise UndecodableResponse(f"invalid character in response body: {error}") from None
    if not isinstance(review, dict):
        raise UndecodableResponse("the response body is not a JSON object")
    response = review.get("response")
    if response is None:
        raise ReviewError("webhook response was absent")
    if not isinstance(response, dict):
        raise UndecodableResponse("response is not a JSON object")
    allowed = response.get("allowed", False)
    status = response.get("status") or {}
    if not isinstance(allowed, bool) or not isinstance(status, dict):
        raise UndecodableResponse("response.allowed must be a boolean and response.status an object")
    patch = _patch_bytes(response.get("patch"))
    if response.get("uid") != uid:
        raise ReviewError(f'expected response.uid="{uid}", got "{response.get("uid", "")}"')
    if review.get("apiVersion") != API_VERSION or review.get("kind") != KIND:
        got = f"{review.get('apiVersion', '')}, Kind={review.get('kind', '')}"
        raise ReviewError(f"expected webhook response of {API_VERSION}, Kind={KIND}, got {got}")
    patch_type = response.get("patchType")
    if patch and patch_type is None:
        raise ReviewError("webhook returned response.patch but not response.patchType")
    if not patch and patch_type is not None:
        raise ReviewError("webhook returned response.patchType but not response.patch")
    if patch_type is not None and (not isinstance(patch_type, str) or not patch_type):
        raise ReviewError(f'webhook returned invalid response.patchType of "{patch_type}"')
    return Verdict(allowed, patch, patch_type or "", status)


def _patch_bytes(value: Any) -> bytes:
    # `patch` is a []byte in Go, so JSON carries it base64-encoded.
    if value is None:
        return b""
    if not isinstance(value, str):
        raise UndecodableResponse("response.patch must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise UndecodableResponse(f"illegal base64 data in response.patch: {error}") from None


def patch_operations(patch: bytes) -> list[Any]:
    """The operations of a JSON patch document (applied by `patch.json_patch`)."""
    try:
        operations = json.loads(patch)
    except (ValueError, UnicodeDecodeError) as error:
        raise UndecodablePatch(str(error)) from None
    if not isinstance(operations, list):
        raise UndecodablePatch("a JSON patch must be an array of operations")
    return operations


def rejection(webhook: str, status: Obj) -> ApiError:
    """What the client gets when a webhook answers `allowed: false` (kube's ToStatusErr)."""
    denied = f'admission webhook "{webhook}" denied the request'
    code = status.get("code")
    # Never a success code along with a rejection.
    code = code if isinstance(code, int) and not isinstance(code, bool) and code >= 400 else 400
    message, reason = status.get("message"), status.get("reason")
    if message:
        text = f"{denied}: {message}"
    elif reason:
        text = f"{denied}: {reason}"
    else:
        text = f"{denied} without explanation"
    details = status.get("details") if isinstance(status.get("details"), dict) else None
    return ApiError(code, str(reason or ""), text, details)
