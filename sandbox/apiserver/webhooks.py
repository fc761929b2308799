"""Mutating admission: on each CREATE, the stored MutatingWebhookConfigurations' webhooks are called
over HTTPS, as kube-apiserver's MutatingAdmissionWebhook plugin calls them, and their patches applied.

The object comes from `handlers.Api._create` (validated and defaulted, not yet stored) and goes
back, patched and re-defaulted, to be stored. Webhook configurations, the namespace's labels and
the Services webhooks are reached through are read from the `Store`; the TCP connection is made by
the injected `Dial` (see `webhookclient`). One log line per webhook call; objects (a pod's env
included) are never logged.

As kube-apiserver (k8s.io/apiserver .../webhook/mutating/dispatcher.go):
* webhooks are called one after another, configurations in name order, then list order, each
  seeing the previous one's result; only those whose rules match the request (operation, group,
  version, resource, scope) and whose namespaceSelector (the Namespace object's labels) and
  objectSelector (the object's labels) match; webhook configurations themselves never are;
* `allowed: false` rejects the create with the webhook's status (`admission webhook "<name>" denied
  the request: <message>`, code ≥ 400);
* a call that fails (unreachable, TLS, timeout, non-2xx, an answer that is not a valid
  AdmissionReview for this request, an undecodable or non-JSONPatch patch) is a webhook failure:
  with failurePolicy Ignore the object goes on unpatched, with Fail the create fails with 500
  `Internal error occurred: failed calling webhook "<name>": <reason>`;
* a patch that decodes but does not apply fails the create with 500 InternalError whatever the
  failurePolicy (kube treats it as its own error, not the webhook's).
Only CREATE is admitted (updates, deletes and connects are not sent to webhooks), and
`reinvocationPolicy: IfNeeded` never calls a webhook a second time.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from sandbox.apiserver import admission, webhookclient, webhookconfig
from sandbox.apiserver.admissionreview import (
    ReviewError,
    User,
    new_uid,
    patch_operations,
    rejection,
    review_request,
    verdict,
)
from sandbox.apiserver.discovery import ResourceType
from sandbox.apiserver.errors import ApiError
from sandbox.apiserver.patch import json_patch
from sandbox.apiserver.store import Obj, Store
from sandbox.apiserver.webhookclient import CallFailed, Dial, Endpoint, tcp_dial
from sandbox.apiserver.webhookconfig import Attributes, Webhook

log = logging.getLogger("sandbox.apiserver.webhooks")

# Who the sandbox's clients are: one administrator (the API server has a single token).
ADMIN = User("system:admin", ("system:masters", "system:authenticated"))
CONFIGURATIONS = f"{webhookconfig.GROUP}/mutatingwebhookconfigurations"


def internal_error(message: str) -> ApiError:
    """apierrors.NewInternalError."""
    return ApiError(
        500, "InternalError", f"Internal error occurred: {message}", {"causes": [{"message": message}]}
    )


class MutatingWebhooks:
    """Calls the matching mutating webhooks for each create and applies what they answer."""

    def __init__(
        self,
        store: Store,
        dial: Dial = tcp_dial,
        user: User = ADMIN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.dial = dial
        self.user = user
        self.clock = clock

    def admit_create(self, rt: ResourceType, obj: Obj, namespace: str | None) -> Obj:
        """`obj` as the webhooks leave it; raises ApiError if one rejects it or fails closed."""
        if rt.group == webhookconfig.GROUP:
            # As kube: a webhook must never be able to block changes to webhook configurations.
            return obj
        request = Attributes("CREATE", rt.group, rt.version, rt.plural, "", namespace or "")
        configurations, _ = self.store.list(CONFIGURATIONS)
        patched = False
        for hook in webhookconfig.webhooks(configurations):
            if not self._should_call(hook, request, obj):
                continue
            result = self._call(hook, rt, request.namespace, obj)
            patched = patched or result is not obj
            obj = result
        if patched:
            # What a webhook made of the object must still be a valid object of its kind.
            obj = admission.check_body(rt, obj, namespace)
        return obj

    def _should_call(self, hook: Webhook, request: Attributes, obj: Obj) -> bool:
        if not webhookconfig.rules_match(hook, request):
            return False
        labels = obj.get("metadata", {}).get("labels") or {}
        if request.group == "" and request.resource == "namespaces":
            namespace_labels = labels  # a Namespace is matched by its own labels
        elif request.namespace:
            namespace_labels = (
                self.store.get("namespaces", "", request.namespace)["metadata"].get("labels") or {}
            )
        else:
            namespace_labels = None  # other cluster-scoped objects are never excluded by namespace
        if namespace_labels is not None and not hook.namespace_selector.matches(namespace_labels):
            return False
        return hook.object_selector.matches(labels)

    def _call(self, hook: Webhook, rt: ResourceType, namespace: str, obj: Obj) -> Obj:
        started = self.clock()
        uid = new_uid()
        body = json.dumps(review_request(uid, rt, namespace, obj, self.user)).encode()
        call = _Call(hook, _object_name(namespace, obj), started, self.clock)
        try:
            answer = webhookclient.post(
                self._endpoint(hook),
                body,
                hook.ca_bundle,
                float(hook.timeout_seconds),
                dial=self.dial,
                clock=self.clock,
            )
        except CallFailed as error:
            return call.failed(obj, f"failed to call webhook: {error}")
        try:
            result = verdict(uid, answer)
            if not result.allowed:
                call.log(allowed=False)
                raise rejection(hook.name, result.status)
            if not result.patch:
                call.log()
                return obj
            if result.patch_type != "JSONPatch":
                return call.failed(obj, f'unsupported patch type "{result.patch_type}"')
            operations = patch_operations(result.patch)
        except ReviewError as error:
            return call.failed(obj, f"{error.prefix}: {error}")
        if not operations:
            call.log()
            return obj
        try:
            patched = json_patch(obj, operations)
        except ApiError as error:
            call.log(outcome="patch-failed")
            raise internal_error(
                f'the patch of admission webhook "{hook.name}" does not apply: {error.message}'
            ) from None
        # As kube: the patched object is defaulted again before the next webhook sees it.
        patched = admission.default_fields(rt, patched)
        call.log(patched=True)
        return patched

    def _endpoint(self, hook: Webhook) -> Endpoint:
        """Where to connect: the URL's host, or the Service's ClusterIP and port (kube's
        ClusterIP service resolver), with the certificate checked for `<name>.<namespace>.svc`."""
        timeout = f"?timeout={hook.timeout_seconds}s"
        if hook.url is not None:
            url = urlsplit(hook.url)
            host, port = url.hostname or "", url.port or 443
            return Endpoint(host, port, host, (url.path or "/") + timeout)
        service = hook.service
        if service is None:  # normalize() guarantees one of url or service
            raise CallFailed("the webhook has neither url nor service")
        dns_name = f"{service.name}.{service.namespace}.svc"
        endpoint = Endpoint(dns_name, service.port, dns_name, service.path + timeout)
        try:
            stored = self.store.get("services", service.namespace, service.name)
        except ApiError:
            raise CallFailed(f'Post "{endpoint.url}": service "{service.name}" not found') from None
        spec = stored.get("spec") or {}
        if spec.get("type") == "ExternalName":
            return Endpoint(str(spec.get("externalName", "")), service.port, dns_name, endpoint.path)
        cluster_ip = spec.get("clusterIP")
        if not cluster_ip or cluster_ip == "None":
            raise CallFailed(f'Post "{endpoint.url}": cannot route to service with ClusterIP "None"')
        if not any(p.get("port") == service.port for p in spec.get("ports") or []):
            raise CallFailed(
                f'Post "{endpoint.url}": no service port {service.port} found for service "{service.name}"'
            )
        return Endpoint(str(cluster_ip), service.port, dns_name, endpoint.path)


def _object_name(namespace: str, obj: Obj) -> str:
    metadata = obj.get("metadata", {})
    # A generateName object has no name yet at admission (as in kube); show the prefix.
    name = metadata.get("name") or f"{metadata.get('generateName', '')}*"
    return f"{namespace}/{name}" if namespace else str(name)


class _Call:
    """One webhook call's log line, and the failure policy applied to it."""

    def __init__(self, hook: Webhook, name: str, started: float, clock: Callable[[], float]) -> None:
        self.hook = hook
        self.name = name
        self.started = started
        self.clock = clock

    def _ms(self) -> float:
        return (self.clock() - self.started) * 1000

    def log(self, *, allowed: bool = True, patched: bool = False, outcome: str = "ok") -> None:
        log.info(
            "webhook=%s configuration=%s object=%s allowed=%s patched=%s outcome=%s ms=%.1f",
            self.hook.name,
            self.hook.configuration,
            self.name,
            str(allowed).lower(),
            str(patched).lower(),
            outcome,
            self._ms(),
        )

    def failed(self, obj: Obj, reason: str) -> Obj:
        """Ignore: `obj` unchanged. Fail: the 500 kube-apiserver returns."""
        ignore = self.hook.failure_policy == "Ignore"
        log.warning(
            "webhook=%s configuration=%s object=%s allowed=%s patched=false outcome=%s ms=%.1f error=%s",
            self.hook.name,
            self.hook.configuration,
            self.name,
            str(ignore).lower(),
            "failed-open" if ignore else "failed-closed",
            self._ms(),
            reason,
        )
        if ignore:
            return obj
        raise internal_error(f'failed calling webhook "{self.hook.name}": {reason}')
