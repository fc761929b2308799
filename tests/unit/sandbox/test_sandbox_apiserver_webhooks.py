"""Pure parts of the sandbox API server's mutating admission: webhook configurations (defaults,
validation, rule and selector matching), AdmissionReview requests and answers, the HTTPS client's
failure wording, and the dispatcher's Service resolution (no network: it fails before dialing)."""

from __future__ import annotations

import base64
import copy
import json
import socket
from typing import Any

import pytest

from sandbox.apiserver import admissionreview, discovery, webhookclient, webhookconfig
from sandbox.apiserver.admissionreview import ReviewError, User
from sandbox.apiserver.errors import ApiError
from sandbox.apiserver.store import Store
from sandbox.apiserver.webhookclient import CallFailed, Endpoint
from sandbox.apiserver.webhookconfig import Attributes
from sandbox.apiserver.webhooks import CONFIGURATIONS, MutatingWebhooks

PODS = discovery.lookup("", "v1", "pods")
assert PODS is not None


def webhook(**overrides: Any) -> dict[str, Any]:
    hook: dict[str, Any] = {
        "name": "hook.example.com",
        "clientConfig": {"service": {"namespace": "hooks", "name": "hook"}},
        "rules": [
            {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}
        ],
        "admissionReviewVersions": ["v1beta1", "v1"],
        "sideEffects": "None",
    }
    hook.update(overrides)
    return hook


def config(*hooks: dict[str, Any], name: str = "config") -> dict[str, Any]:
    return {"metadata": {"name": name}, "webhooks": list(hooks)}


# -- configurations ------------------------------------------------------------------------------


def test_defaults_are_admissionregistration_v1s() -> None:
    obj = config(webhook())
    webhookconfig.normalize(obj)
    [hook] = obj["webhooks"]
    assert hook["failurePolicy"] == "Fail" and hook["matchPolicy"] == "Equivalent"
    assert hook["reinvocationPolicy"] == "Never" and hook["timeoutSeconds"] == 10
    assert hook["namespaceSelector"] == {} and hook["objectSelector"] == {}
    assert hook["clientConfig"]["service"]["port"] == 443 and hook["rules"][0]["scope"] == "*"
    again = copy.deepcopy(obj)
    webhookconfig.normalize(again)
    assert again == obj  # idempotent: an update of a stored configuration changes nothing


INVALID: dict[str, tuple[dict[str, Any], str]] = {
    "no name": (webhook(name=""), "webhooks[0].name: Required value"),
    "two segments": (webhook(name="hook.example"), "should be a domain with at least three segments"),
    "both url and service": (
        webhook(clientConfig={"url": "https://a.b", "service": {"namespace": "n", "name": "s"}}),
        "webhooks[0].clientConfig: Required value: exactly one of url or service is required",
    ),
    "http url": (webhook(clientConfig={"url": "http://a.b/x"}), "'https' is the only allowed URL scheme"),
    "url query": (webhook(clientConfig={"url": "https://a.b/x?y=1"}), "query parameters are not permitted"),
    "no service name": (
        webhook(clientConfig={"service": {"namespace": "n"}}),
        "webhooks[0].clientConfig.service.name: Required value",
    ),
    "port 0": (
        webhook(clientConfig={"service": {"namespace": "n", "name": "s", "port": 0}}),
        "port is not valid",
    ),
    "relative path": (
        webhook(clientConfig={"service": {"namespace": "n", "name": "s", "path": "x"}}),
        "must start with a '/'",
    ),
    "no review versions": (
        webhook(admissionReviewVersions=[]),
        "webhooks[0].admissionReviewVersions: Required value: must specify one of v1, v1beta1",
    ),
    "v1beta1 only": (webhook(admissionReviewVersions=["v1beta1"]), "must include v1"),
    "no side effects": (webhook(sideEffects=None), "webhooks[0].sideEffects: Required value"),
    "some side effects": (
        webhook(sideEffects="Some"),
        'Unsupported value: "Some": supported values: "None", "NoneOnDryRun"',
    ),
    "failure policy": (
        webhook(failurePolicy="Maybe"),
        'webhooks[0].failurePolicy: Unsupported value: "Maybe"',
    ),
    "timeout": (webhook(timeoutSeconds=31), "the timeout value must be between 1 and 30 seconds"),
    "operator": (
        webhook(objectSelector={"matchExpressions": [{"key": "a", "operator": "Is"}]}),
        "webhooks[0].objectSelector.matchExpressions[0].operator: Unsupported value",
    ),
    "In without values": (
        webhook(namespaceSelector={"matchExpressions": [{"key": "a", "operator": "In"}]}),
        "must be specified when `operator` is 'In' or 'NotIn'",
    ),
    "Exists with values": (
        webhook(objectSelector={"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
    ),
    "match conditions": (
        webhook(matchConditions=[{"name": "c", "expression": "true"}]),
        "webhooks[0].matchConditions: Forbidden",
    ),
    "rule without resources": (
        webhook(rules=[{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"]}]),
        "webhooks[0].rules[0].resources: Required value",
    ),
    "operation": (
        webhook(
            rules=[{"operations": ["MAKE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]
        ),
        'webhooks[0].rules[0].operations: Unsupported value: "MAKE"',
    ),
    "scope": (
        webhook(
            rules=[
                {
                    "operations": ["*"],
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "resources": ["pods"],
                    "scope": "Pod",
                }
            ]
        ),
        'webhooks[0].rules[0].scope: Unsupported value: "Pod"',
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_an_invalid_configuration_is_a_422_naming_the_field(case: str) -> None:
    hook, problem = INVALID[case]
    with pytest.raises(ApiError) as raised:
        webhookconfig.normalize(config(hook))
    assert raised.value.code == 422 and raised.value.reason == "Invalid"
    assert raised.value.message.startswith('MutatingWebhookConfiguration "config" is invalid: ')
    assert problem in raised.value.message


def test_duplicate_names_and_bad_ca_bundles_are_refused() -> None:
    with pytest.raises(ApiError) as duplicate:
        webhookconfig.normalize(config(webhook(), webhook()))
    assert 'webhooks[1].name: Duplicate value: "hook.example.com"' in duplicate.value.message
    bad_bundle = webhook(clientConfig={"url": "https://a.b.c/x", "caBundle": "%%%"})
    with pytest.raises(ApiError) as bundle:
        webhookconfig.normalize(config(bad_bundle))
    assert bundle.value.code == 400 and "caBundle" in bundle.value.message


def test_webhooks_come_in_configuration_name_order_then_list_order() -> None:
    first, second, third = (webhook(name=f"{n}.example.com") for n in ("z", "y", "x"))
    configurations = [config(third, name="b"), config(first, second, name="a")]
    for c in configurations:
        webhookconfig.normalize(c)
    hooks = webhookconfig.webhooks(configurations)
    assert [(h.configuration, h.name) for h in hooks] == [
        ("a", "z.example.com"),
        ("a", "y.example.com"),
        ("b", "x.example.com"),
    ]
    assert hooks[0].service == webhookconfig.ServiceRef("hooks", "hook", 443, "/")
    assert hooks[0].url is None and hooks[0].ca_bundle == b""


def rule(**fields: Any) -> webhookconfig.Webhook:
    raw = {
        "operations": ["CREATE"],
        "apiGroups": [""],
        "apiVersions": ["v1"],
        "resources": ["pods"],
        **fields,
    }
    obj = config(webhook(rules=[raw]))
    webhookconfig.normalize(obj)
    return webhookconfig.webhooks([obj])[0]


POD_CREATE = Attributes("CREATE", "", "v1", "pods", "", "apps")


@pytest.mark.parametrize(
    ("fields", "request_", "matches"),
    [
        ({}, POD_CREATE, True),
        ({"operations": ["UPDATE"]}, POD_CREATE, False),
        ({"operations": ["*"]}, POD_CREATE, True),
        ({"apiGroups": ["apps"]}, POD_CREATE, False),
        ({"apiGroups": ["*"], "apiVersions": ["*"]}, POD_CREATE, True),
        ({"apiVersions": ["v2"]}, POD_CREATE, False),
        ({"resources": ["services"]}, POD_CREATE, False),
        ({"resources": ["*"]}, POD_CREATE, True),
        ({"resources": ["pods/status"]}, POD_CREATE, False),
        ({"resources": ["pods/*"]}, POD_CREATE, True),  # "*" matches no subresource too, as in kube's code
        ({"resources": ["*/*"]}, POD_CREATE, True),
        ({"resources": ["pods/status"]}, Attributes("CREATE", "", "v1", "pods", "status", "apps"), True),
        ({"scope": "Namespaced"}, POD_CREATE, True),
        ({"scope": "Cluster"}, POD_CREATE, False),
        (
            {"scope": "Cluster", "resources": ["namespaces"]},
            Attributes("CREATE", "", "v1", "namespaces", "", ""),
            True,
        ),
        (
            {"scope": "Namespaced", "resources": ["*"]},
            Attributes("CREATE", "", "v1", "namespaces", "", "x"),
            False,
        ),
        (
            {"scope": "Cluster", "resources": ["*"], "apiGroups": ["*"]},
            Attributes("CREATE", "g", "v1", "r", "", ""),
            True,
        ),
    ],
)
def test_rules_match_as_kubes_rule_matcher(
    fields: dict[str, Any], request_: Attributes, matches: bool
) -> None:
    assert webhookconfig.rules_match(rule(**fields), request_) is matches


def test_label_selectors_follow_metav1_semantics() -> None:
    selector = webhookconfig.label_selector(
        {
            "matchLabels": {"a": "1"},
            "matchExpressions": [
                {"key": "b", "operator": "NotIn", "values": ["x"]},
                {"key": "c", "operator": "DoesNotExist"},
            ],
        }
    )
    assert selector.matches({"a": "1"})  # an absent label satisfies NotIn
    assert selector.matches({"a": "1", "b": "y"})
    assert not selector.matches({"a": "1", "b": "x"})
    assert not selector.matches({"a": "1", "c": ""})
    assert not selector.matches({"a": "2"})
    assert webhookconfig.label_selector({}).matches({})


# -- AdmissionReview -----------------------------------------------------------------------------


def test_the_review_omits_the_name_of_a_generate_name_object() -> None:
    pod = {"metadata": {"generateName": "web-", "namespace": "apps"}}
    review = admissionreview.review_request("u-1", PODS, "apps", pod, User("system:admin"))
    request = review["request"]
    assert "name" not in request and request["namespace"] == "apps" and request["object"] is pod
    assert request["uid"] == "u-1" and request["oldObject"] is None


def answer(**response: Any) -> bytes:
    return json.dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
    ).encode()


PATCH = base64.b64encode(b'[{"op":"add","path":"/a","value":1}]').decode()


def test_a_valid_answer_gives_its_verdict() -> None:
    verdict = admissionreview.verdict("u", answer(uid="u", allowed=True, patchType="JSONPatch", patch=PATCH))
    assert verdict.allowed and verdict.patch_type == "JSONPatch"
    assert admissionreview.patch_operations(verdict.patch) == [{"op": "add", "path": "/a", "value": 1}]
    denied = admissionreview.verdict("u", answer(uid="u", allowed=False, status={"message": "no"}))
    assert not denied.allowed and denied.status == {"message": "no"} and denied.patch == b""


@pytest.mark.parametrize(
    ("body", "prefix", "reason"),
    [
        (b"{", "failed to call webhook", "invalid character"),
        (b"[]", "failed to call webhook", "not a JSON object"),
        (answer(uid="u", allowed="yes"), "failed to call webhook", "must be a boolean"),
        (
            answer(uid="u", allowed=True, patch="%%", patchType="JSONPatch"),
            "failed to call webhook",
            "base64",
        ),
        (
            json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).encode(),
            None,
            "absent",
        ),
        (answer(uid="other", allowed=True), None, 'expected response.uid="u", got "other"'),
        (
            json.dumps({"apiVersion": "v1", "kind": "AdmissionReview", "response": {"uid": "u"}}).encode(),
            None,
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got v1, Kind=Admission",
        ),
        (answer(uid="u", allowed=True, patch=PATCH), None, "response.patch but not response.patchType"),
        (
            answer(uid="u", allowed=True, patchType="JSONPatch"),
            None,
            "response.patchType but not response.patch",
        ),
        (answer(uid="u", allowed=True, patchType="", patch=PATCH), None, 'invalid response.patchType of ""'),
    ],
)
def test_answers_kube_would_not_accept(body: bytes, prefix: str | None, reason: str) -> None:
    with pytest.raises(ReviewError) as raised:
        admissionreview.verdict("u", body)
    assert raised.value.prefix == (prefix or "received invalid webhook response")
    assert reason in str(raised.value)


def test_an_undecodable_patch() -> None:
    for patch in (b"{", b'{"op": "add"}'):
        with pytest.raises(admissionreview.UndecodablePatch):
            admissionreview.patch_operations(patch)


@pytest.mark.parametrize(
    ("status", "code", "reason", "message"),
    [
        (
            {"code": 403, "reason": "Forbidden", "message": "no"},
            403,
            "Forbidden",
            '"h.e.c" denied the request: no',
        ),
        ({"code": 200, "message": "no"}, 400, "", '"h.e.c" denied the request: no'),
        ({"reason": "NotAllowed"}, 400, "NotAllowed", '"h.e.c" denied the request: NotAllowed'),
        ({}, 400, "", '"h.e.c" denied the request without explanation'),
    ],
)
def test_a_rejection_is_kubes_to_status_err(
    status: dict[str, Any], code: int, reason: str, message: str
) -> None:
    error = admissionreview.rejection("h.e.c", status)
    assert (error.code, error.reason) == (code, reason)
    assert error.message == f"admission webhook {message}"


# -- the HTTPS client's failures, without a network ----------------------------------------------


ENDPOINT = Endpoint("10.96.0.9", 443, "hook.hooks.svc", "/mutate?timeout=1s")


def dial_raising(error: OSError) -> webhookclient.Dial:
    def dial(host: str, port: int, timeout: float) -> socket.socket:
        assert (host, port) == ("10.96.0.9", 443) and 0 < timeout <= 1
        raise error

    return dial


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            ConnectionRefusedError(111, "Connection refused"),
            "dial tcp 10.96.0.9:443: connect: connection refused",
        ),
        (TimeoutError("timed out"), "context deadline exceeded"),
        (OSError(113, "No route to host"), "dial tcp 10.96.0.9:443: No route to host"),
    ],
)
def test_dial_failures_are_worded_like_gos(error: OSError, reason: str) -> None:
    with pytest.raises(CallFailed) as raised:
        webhookclient.post(ENDPOINT, b"{}", b"", 1.0, dial=dial_raising(error))
    assert str(raised.value) == f'Post "https://hook.hooks.svc:443/mutate?timeout=1s": {reason}'


def test_a_ca_bundle_that_is_not_pem_fails_the_call() -> None:
    with pytest.raises(CallFailed, match="unable to load root certificates"):
        webhookclient.post(ENDPOINT, b"{}", b"not a certificate", 1.0, dial=dial_raising(OSError("unused")))


# -- the dispatcher: which webhooks, and where ---------------------------------------------------


def no_dial(host: str, port: int, timeout: float) -> socket.socket:
    raise AssertionError(f"dialed {host}:{port}")


def dispatcher(*hooks: dict[str, Any], services: list[dict[str, Any]] = ()) -> MutatingWebhooks:  # type: ignore[assignment]
    store = Store()
    store.create(
        "namespaces", {"metadata": {"name": "apps", "labels": {"kubernetes.io/metadata.name": "apps"}}}
    )
    for service in services:
        store.create("services", service)
    obj = config(*hooks)
    webhookconfig.normalize(obj)
    store.create(CONFIGURATIONS, obj)
    return MutatingWebhooks(store, dial=no_dial)


def service(spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "hook", "namespace": "hooks"}, "spec": spec}


def pod() -> dict[str, Any]:
    return {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "namespace": "apps"}, "spec": {}}


@pytest.mark.parametrize(
    ("services", "reason"),
    [
        ([], 'service "hook" not found'),
        (
            [service({"clusterIP": "None", "ports": [{"port": 443}]})],
            'cannot route to service with ClusterIP "None"',
        ),
        (
            [service({"clusterIP": "10.96.0.7", "ports": [{"port": 8443}]})],
            'no service port 443 found for service "hook"',
        ),
    ],
)
def test_a_service_that_cannot_be_reached_fails_before_dialing(
    services: list[dict[str, Any]], reason: str
) -> None:
    hooks = dispatcher(webhook(), services=services)
    with pytest.raises(ApiError) as raised:
        hooks.admit_create(PODS, pod(), "apps")
    assert raised.value.code == 500
    assert raised.value.message == (
        'Internal error occurred: failed calling webhook "hook.example.com": failed to call webhook: '
        f'Post "https://hook.hooks.svc:443/?timeout=10s": {reason}'
    )
    ignoring = dispatcher(webhook(failurePolicy="Ignore"), services=services)
    assert ignoring.admit_create(PODS, pod(), "apps") == pod()


def test_webhook_configurations_and_unmatched_objects_are_never_sent() -> None:
    everything = {"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}
    hooks = dispatcher(
        webhook(rules=[everything], namespaceSelector={"matchLabels": {"team": "x"}}),
        services=[service({"clusterIP": "10.96.0.7", "ports": [{"port": 443}]})],
    )
    mwc = discovery.lookup(webhookconfig.GROUP, "v1", "mutatingwebhookconfigurations")
    assert mwc is not None
    assert hooks.admit_create(mwc, config(name="x"), None) == config(name="x")
    # The namespace `apps` lacks team=x: not sent (no_dial would fail the test).
    assert hooks.admit_create(PODS, pod(), "apps") == pod()
