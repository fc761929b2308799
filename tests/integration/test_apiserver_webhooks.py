"""The sandbox API server calls mutating admission webhooks as kube-apiserver does, and stores Secrets
and MutatingWebhookConfigurations: driven with the real `kubernetes` client, against a real HTTPS
webhook (a test CA, a certificate for `hook.hooks.svc`) reached through the injected dialer, which
maps the webhook Service's ClusterIP to the stand-in's port on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, utils
from kubernetes.client.rest import ApiException

from sandbox import certs
from tests.support.apiserver import RunningApi, running_api

HOOK = "aws-visibility.network-mapper.otterize.com"
LABEL = "network-mapper.otterize.com/aws-visibility"
APPS, HOOKS, EXCLUDED = "apps", "hooks", "excluded"
SECRET_ENV = "do-not-log-this-value"

Answer = Callable[[dict[str, Any]], "dict[str, Any] | bytes | None"]


# -- a test CA and the webhook's serving certificate ----------------------------------------------


@dataclass(frozen=True)
class Ca:
    """A test CA (sandbox.certs): its certificate and key, PEM."""

    pem: bytes
    key_pem: bytes

    @property
    def bundle(self) -> str:
        return base64.b64encode(self.pem).decode()


def make_ca(common_name: str) -> Ca:
    return Ca(*certs.make_ca(common_name))


def serving_files(ca: Ca, names: list[str], directory: Path) -> tuple[Path, Path]:
    cert, key = certs.make_leaf(ca.pem, ca.key_pem, names)
    cert_file = certs.write_pem(directory / "hook.crt", cert)
    return cert_file, certs.write_pem(directory / "hook.key", key, private=True)


# -- the webhook stand-in --------------------------------------------------------------------------


def response(review: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": review["request"]["uid"], **fields},
    }


def patch_of(operations: list[dict[str, Any]]) -> str:
    return base64.b64encode(json.dumps(operations).encode()).decode()


def patching(review: dict[str, Any]) -> dict[str, Any]:
    """What the product's webhook does, in short: an env var in the container, an annotation."""
    operations = [
        {"op": "add", "path": "/metadata/annotations", "value": {"patched-by": "hook"}},
        {
            "op": "add",
            "path": "/spec/containers/0/env/-",
            "value": {"name": "AWS_CA_BUNDLE", "value": "/ca.pem"},
        },
    ]
    return response(review, allowed=True, patchType="JSONPatch", patch=patch_of(operations))


@dataclass
class Hook:
    """An HTTPS admission webhook: records each (path, review) and answers with ``answer``
    (an AdmissionReview, raw bytes, b"" to hang up, or None to never answer)."""

    port: int = 0
    answer: Answer = patching
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


class _HookHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HookServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        hook = self.server.hook
        hook.calls.append((self.path, review))
        answer = hook.answer(review)
        if answer is None:
            hook.release.wait(30)  # a webhook that never answers (until the test ends)
            return
        if answer == b"":
            self.close_connection = True  # hangs up without an answer
            return
        body = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _HookServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, context: ssl.SSLContext, hook: Hook) -> None:
        self.context = context
        self.hook = hook
        super().__init__(("127.0.0.1", 0), _HookHandler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs in the connection's own thread, so a failing one blocks nothing.
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except OSError:
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            tls.close()


@dataclass
class Env:
    api: RunningApi
    hook: Hook
    ca: Ca
    routes: dict[tuple[str, int], tuple[str, int]]
    closed_port: int

    @property
    def core(self) -> client.CoreV1Api:
        return self.api.core

    @property
    def admission(self) -> client.AdmissionregistrationV1Api:
        return client.AdmissionregistrationV1Api(self.api.api)

    def service(self, name: str, port: int = 443, to: int | None = None) -> str:
        """A Service in `hooks`; its ClusterIP:port is routed to `to` (the stand-in by default)."""
        created = self.core.create_namespaced_service(
            HOOKS,
            client.V1Service(
                metadata=client.V1ObjectMeta(name=name),
                spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=port, target_port=8443)]),
            ),
        )
        ip = created.spec.cluster_ip
        self.routes[(ip, port)] = ("127.0.0.1", self.hook.port if to is None else to)
        return str(ip)

    def configure(self, name: str = "aws-visibility", **options: Any) -> None:
        self.admission.create_mutating_webhook_configuration(configuration(name, self.ca, **options))

    def pod(self, name: str, namespace: str = APPS, labelled: bool = True) -> client.V1Pod:
        return self.core.create_namespaced_pod(namespace, pod_body(name, labelled))


def configuration(
    name: str,
    ca: Ca,
    *,
    failure: str = "Fail",
    timeout: int | None = None,
    service: str = "hook",
    path: str = "/mutate",
    url: str | None = None,
    namespace_selector: dict[str, Any] | None = None,
    object_selector: dict[str, Any] | None = None,
) -> dict[str, Any]:
    client_config: dict[str, Any] = {"caBundle": ca.bundle}
    if url:
        client_config["url"] = url
    else:
        client_config["service"] = {"namespace": HOOKS, "name": service, "path": path}
    webhook: dict[str, Any] = {
        "name": HOOK,
        "clientConfig": client_config,
        "rules": [
            {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}
        ],
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": failure,
        "objectSelector": object_selector
        if object_selector is not None
        else {"matchLabels": {LABEL: "true"}},
    }
    if timeout is not None:
        webhook["timeoutSeconds"] = timeout
    if namespace_selector is not None:
        webhook["namespaceSelector"] = namespace_selector
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [webhook],
    }


def pod_body(name: str, labelled: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {LABEL: "true"} if labelled else {"app": name}},
        "spec": {
            "containers": [
                {"name": "main", "image": "client:1.0", "env": [{"name": "TOKEN", "value": SECRET_ENV}]}
            ]
        },
    }


def status_of(error: ApiException) -> dict[str, Any]:
    return dict(json.loads(error.body))


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    ca = make_ca("test webhook CA")
    cert_file, key_file = serving_files(ca, ["hook.hooks.svc", "hook.example.test"], tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    hook = Hook()
    server = _HookServer(context, hook)
    hook.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    with socket.socket() as probe:  # a port nothing listens on: "the webhook is down"
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    routes: dict[tuple[str, int], tuple[str, int]] = {}

    def dial(host: str, port: int, timeout: float) -> socket.socket:
        # Stands for the supervisor's dialer, which connects from the node's network namespace.
        return socket.create_connection(routes.get((host, port), (host, port)), timeout=timeout)

    try:
        with running_api(tmp_path, dial=dial) as api:
            for namespace in (APPS, HOOKS, EXCLUDED):
                api.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
            environment = Env(api, hook, ca, routes, closed_port)
            environment.service("hook")
            yield environment
    finally:
        hook.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# -- admission -------------------------------------------------------------------------------------


def test_a_labelled_pod_is_patched_with_the_review_kube_apiserver_sends(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    env.configure()
    with caplog.at_level(logging.INFO, logger="sandbox.apiserver"):
        env.pod("client")
    stored = env.core.read_namespaced_pod("client", APPS)
    assert stored.metadata.annotations == {"patched-by": "hook"}
    assert [(e.name, e.value) for e in stored.spec.containers[0].env] == [
        ("TOKEN", SECRET_ENV),
        ("AWS_CA_BUNDLE", "/ca.pem"),
    ]
    [(path, review)] = env.hook.calls
    assert path == "/mutate?timeout=10s"
    assert review["apiVersion"] == "admission.k8s.io/v1" and review["kind"] == "AdmissionReview"
    request = review["request"]
    assert len(request["uid"]) == 36
    assert request["kind"] == request["requestKind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert (
        request["resource"]
        == request["requestResource"]
        == {"group": "", "version": "v1", "resource": "pods"}
    )
    assert (request["name"], request["namespace"], request["operation"]) == ("client", APPS, "CREATE")
    assert request["userInfo"]["username"] == "system:admin"
    assert request["oldObject"] is None and request["dryRun"] is False
    assert request["options"] == {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
    # The object is the pod after defaulting, not yet stored.
    obj = request["object"]
    assert obj["metadata"]["namespace"] == APPS and "uid" not in obj["metadata"]
    assert obj["spec"]["dnsPolicy"] == "ClusterFirst" and obj["spec"]["restartPolicy"] == "Always"
    [line] = [r.getMessage() for r in caplog.records if r.name == "sandbox.apiserver.webhooks"]
    assert f"webhook={HOOK}" in line and "object=apps/client" in line
    assert "allowed=true" in line and "patched=true" in line and "ms=" in line
    assert SECRET_ENV not in caplog.text


def test_a_pod_the_object_selector_excludes_is_not_sent(env: Env) -> None:
    env.configure()
    env.pod("plain", labelled=False)
    assert env.hook.calls == []
    assert env.core.read_namespaced_pod("plain", APPS).metadata.annotations is None


def test_a_namespace_the_namespace_selector_excludes_is_not_sent(env: Env) -> None:
    assert env.core.read_namespace(EXCLUDED).metadata.labels["kubernetes.io/metadata.name"] == EXCLUDED
    selector = {
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [EXCLUDED]}
        ]
    }
    env.configure(namespace_selector=selector)
    env.pod("outside", namespace=EXCLUDED)
    assert env.hook.calls == []
    assert env.core.read_namespaced_pod("outside", EXCLUDED).metadata.annotations is None
    env.pod("inside")
    assert [review["request"]["namespace"] for _, review in env.hook.calls] == [APPS]


def test_failure_policy_ignore_with_the_webhook_down_creates_the_pod_unpatched(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    env.service("down", to=env.closed_port)
    env.configure(failure="Ignore", service="down")
    with caplog.at_level(logging.INFO, logger="sandbox.apiserver"):
        env.pod("client")
    assert env.core.read_namespaced_pod("client", APPS).metadata.annotations is None
    [line] = [r.getMessage() for r in caplog.records if r.name == "sandbox.apiserver.webhooks"]
    assert "outcome=failed-open" in line and "connection refused" in line


def test_failure_policy_fail_with_the_webhook_down_fails_the_create_as_kube_does(env: Env) -> None:
    ip = env.service("down", to=env.closed_port)
    env.configure(service="down")
    with pytest.raises(ApiException) as raised:
        env.pod("client")
    assert raised.value.status == 500
    status = status_of(raised.value)
    assert status["reason"] == "InternalError"
    assert status["message"] == (
        f'Internal error occurred: failed calling webhook "{HOOK}": failed to call webhook: '
        f'Post "https://down.hooks.svc:443/mutate?timeout=10s": '
        f"dial tcp {ip}:443: connect: connection refused"
    )
    with pytest.raises(ApiException) as missing:
        env.core.read_namespaced_pod("client", APPS)
    assert missing.value.status == 404


@pytest.mark.parametrize("failure", ["Fail", "Ignore"])
@pytest.mark.parametrize("problem", ["wrong CA", "wrong name"])
def test_a_certificate_that_does_not_verify_is_a_webhook_failure(
    env: Env, failure: str, problem: str
) -> None:
    if problem == "wrong CA":
        env.ca = make_ca("some other CA")
        env.configure(failure=failure)
    else:  # the right CA, but the certificate is not for other.hooks.svc
        env.service("other")
        env.configure(failure=failure, service="other")
    if failure == "Ignore":
        env.pod("client")
        assert env.core.read_namespaced_pod("client", APPS).metadata.annotations is None
    else:
        with pytest.raises(ApiException) as raised:
            env.pod("client")
        assert raised.value.status == 500
        assert "tls: failed to verify certificate" in status_of(raised.value)["message"]
    assert env.hook.calls == []  # the handshake failed: no request reached the webhook


def test_a_denial_rejects_the_create_with_the_webhooks_message(env: Env) -> None:
    env.hook.answer = lambda review: response(
        review, allowed=False, status={"code": 403, "reason": "Forbidden", "message": "no AWS for you"}
    )
    env.configure(failure="Ignore")  # a denial is an answer, not a failure: the policy does not apply
    with pytest.raises(ApiException) as raised:
        env.pod("client")
    assert raised.value.status == 403
    status = status_of(raised.value)
    assert status["message"] == f'admission webhook "{HOOK}" denied the request: no AWS for you'
    assert status["reason"] == "Forbidden"
    env.hook.answer = lambda review: response(review, allowed=False)
    with pytest.raises(ApiException) as bare:
        env.pod("client")
    assert bare.value.status == 400
    assert (
        status_of(bare.value)["message"]
        == f'admission webhook "{HOOK}" denied the request without explanation'
    )


def test_the_webhook_timeout_is_honoured(env: Env) -> None:
    env.hook.answer = lambda review: None
    env.configure(timeout=1)
    started = time.monotonic()
    with pytest.raises(ApiException) as raised:
        env.pod("client")
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 4.0
    assert raised.value.status == 500
    assert status_of(raised.value)["message"].endswith(
        'Post "https://hook.hooks.svc:443/mutate?timeout=1s": context deadline exceeded'
    )
    [(path, _)] = env.hook.calls
    assert path == "/mutate?timeout=1s"


def test_webhooks_run_in_configuration_name_order_each_seeing_the_previous_patch(env: Env) -> None:
    def answer(review: dict[str, Any]) -> dict[str, Any]:
        step = "a" if env.hook.calls[-1][0].startswith("/a") else "b"
        operation = {"op": "add", "path": f"/metadata/labels/step-{step}", "value": "done"}
        return response(review, allowed=True, patchType="JSONPatch", patch=patch_of([operation]))

    env.hook.answer = answer
    env.configure("b-config", path="/b")
    env.configure("a-config", path="/a")
    stored = env.pod("client")
    assert [path for path, _ in env.hook.calls] == ["/a?timeout=10s", "/b?timeout=10s"]
    assert env.hook.calls[1][1]["request"]["object"]["metadata"]["labels"]["step-a"] == "done"
    assert stored.metadata.labels == {LABEL: "true", "step-a": "done", "step-b": "done"}


def test_a_url_client_config_is_called_with_the_urls_host_name(env: Env) -> None:
    env.routes[("hook.example.test", 9443)] = ("127.0.0.1", env.hook.port)
    env.configure(url="https://hook.example.test:9443/inject")
    assert env.pod("client").metadata.annotations == {"patched-by": "hook"}
    assert [path for path, _ in env.hook.calls] == ["/inject?timeout=10s"]


BAD_ANSWERS: dict[str, tuple[Answer, str]] = {
    "wrong uid": (
        lambda review: {**response(review, allowed=True), "response": {"uid": "other", "allowed": True}},
        'received invalid webhook response: expected response.uid="',
    ),
    "not JSON": (lambda review: b"<html>oops</html>", "failed to call webhook: "),
    "hung up": (
        lambda review: b"",
        'failed to call webhook: Post "https://hook.hooks.svc:443/mutate?timeout=10s": EOF',
    ),
    "patch not base64": (
        lambda review: response(review, allowed=True, patchType="JSONPatch", patch="%%%"),
        "failed to call webhook: illegal base64 data",
    ),
    "patch not JSON": (
        lambda review: response(
            review, allowed=True, patchType="JSONPatch", patch=base64.b64encode(b"{").decode()
        ),
        "received undecodable patch in webhook response: ",
    ),
    "merge patch": (
        lambda review: response(review, allowed=True, patchType="MergePatch", patch=patch_of([])),
        'unsupported patch type "MergePatch"',
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_ANSWERS))
def test_an_answer_kube_would_not_accept_is_a_webhook_failure(env: Env, case: str) -> None:
    answer, reason = BAD_ANSWERS[case]
    env.hook.answer = answer
    env.configure("failing")
    with pytest.raises(ApiException) as raised:
        env.pod("client")
    assert raised.value.status == 500
    assert status_of(raised.value)["message"].startswith(
        f'Internal error occurred: failed calling webhook "{HOOK}": {reason}'
    )
    env.admission.delete_mutating_webhook_configuration("failing")
    env.configure("ignoring", failure="Ignore")
    assert env.pod("client").metadata.annotations is None


def test_a_patch_that_does_not_apply_fails_the_create_whatever_the_failure_policy(env: Env) -> None:
    env.hook.answer = lambda review: response(
        review,
        allowed=True,
        patchType="JSONPatch",
        patch=patch_of([{"op": "remove", "path": "/spec/nothing"}]),
    )
    env.configure(failure="Ignore")
    with pytest.raises(ApiException) as raised:
        env.pod("client")
    assert raised.value.status == 500
    status = status_of(raised.value)
    assert status["reason"] == "InternalError"
    assert status["message"].startswith(
        f'Internal error occurred: the patch of admission webhook "{HOOK}" does not apply'
    )


# -- Secrets and MutatingWebhookConfigurations with the real client -------------------------------


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_secrets_round_trip_with_string_data_merged_into_base64_data(env: Env) -> None:
    core = env.core
    created = core.create_namespaced_secret(
        APPS,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="ca"),
            data={"kept": b64("as given"), "both": b64("loses")},
            string_data={"both": "wins", "ca.pem": "-----BEGIN CERTIFICATE-----\n"},
        ),
    )
    expected = {"kept": b64("as given"), "both": b64("wins"), "ca.pem": b64("-----BEGIN CERTIFICATE-----\n")}
    assert created.data == expected and created.string_data is None and created.type == "Opaque"
    read = core.read_namespaced_secret("ca", APPS)
    assert read.data == expected and read.type == "Opaque"
    raw = json.loads(core.read_namespaced_secret("ca", APPS, _preload_content=False).data)
    assert "stringData" not in raw
    read.string_data = {"kept": "replaced"}
    replaced = core.replace_namespaced_secret("ca", APPS, read)
    assert base64.b64decode(replaced.data["kept"]) == b"replaced"
    patched = core.patch_namespaced_secret("ca", APPS, {"stringData": {"new": "value"}})
    assert set(patched.data) == {"kept", "both", "ca.pem", "new"}
    assert [
        s.metadata.name for s in core.list_namespaced_secret(APPS, field_selector="type=Opaque").items
    ] == ["ca"]
    with pytest.raises(ApiException) as immutable:
        core.patch_namespaced_secret("ca", APPS, {"type": "kubernetes.io/tls"})
    assert immutable.value.status == 422
    with pytest.raises(ApiException) as bad:
        core.create_namespaced_secret(
            APPS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bad"}, "data": {"k": "%%%"}}
        )
    assert bad.value.status == 400
    core.delete_namespaced_secret("ca", APPS)
    assert core.list_namespaced_secret(APPS).items == []


def test_webhook_configurations_with_the_real_client(env: Env) -> None:
    admission = env.admission
    body = client.V1MutatingWebhookConfiguration(
        metadata=client.V1ObjectMeta(name="typed"),
        webhooks=[
            client.V1MutatingWebhook(
                name=HOOK,
                client_config=client.AdmissionregistrationV1WebhookClientConfig(
                    service=client.AdmissionregistrationV1ServiceReference(namespace=HOOKS, name="hook"),
                    ca_bundle=env.ca.bundle,
                ),
                rules=[
                    client.V1RuleWithOperations(
                        operations=["CREATE"], api_groups=[""], api_versions=["v1"], resources=["pods"]
                    )
                ],
                admission_review_versions=["v1"],
                side_effects="None",
                failure_policy="Ignore",
                object_selector=client.V1LabelSelector(match_labels={LABEL: "true"}),
            )
        ],
    )
    created = admission.create_mutating_webhook_configuration(body)
    [webhook] = created.webhooks
    assert (webhook.failure_policy, webhook.timeout_seconds, webhook.match_policy) == (
        "Ignore",
        10,
        "Equivalent",
    )
    assert webhook.client_config.service.port == 443 and webhook.rules[0].scope == "*"
    assert webhook.reinvocation_policy == "Never" and webhook.namespace_selector is not None
    utils.create_from_dict(env.api.api, configuration("from-dict", env.ca, failure="Ignore"))
    names = [c.metadata.name for c in admission.list_mutating_webhook_configuration().items]
    assert names == ["from-dict", "typed"]
    # Webhook configurations are never sent to webhooks, even by a rule that matches everything.
    everything = configuration("everything", env.ca)
    everything["webhooks"][0]["rules"][0].update(apiGroups=["*"], apiVersions=["*"], resources=["*"])
    everything["webhooks"][0]["objectSelector"] = {}
    admission.create_mutating_webhook_configuration(everything)
    admission.create_mutating_webhook_configuration(configuration("after", env.ca))
    assert env.hook.calls == []
    for name in ("from-dict", "typed", "everything", "after"):
        admission.delete_mutating_webhook_configuration(name)
    assert admission.list_mutating_webhook_configuration().items == []


def test_an_invalid_webhook_configuration_is_refused_with_the_field_named(env: Env) -> None:
    broken = configuration("broken", env.ca)
    del broken["webhooks"][0]["sideEffects"]
    with pytest.raises(ApiException) as raised:
        env.admission.create_mutating_webhook_configuration(broken)
    assert raised.value.status == 422
    assert status_of(raised.value)["message"] == (
        'MutatingWebhookConfiguration "broken" is invalid: webhooks[0].sideEffects: '
        "Required value: must specify one of None, NoneOnDryRun"
    )
    assert env.admission.list_mutating_webhook_configuration().items == []
