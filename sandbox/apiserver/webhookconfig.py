"""MutatingWebhookConfigurations: their defaulting and validation on every write, and which of their
webhooks a request is sent to.

Objects come in from `admission.check_body` (create, update and patch of a configuration) and,
read back from the store, from `webhooks.MutatingWebhooks` on each CREATE, which gets them here as
`Webhook`s in the order kube-apiserver calls them: configurations by name, then list order.
Pure: no I/O.

Defaults are admissionregistration/v1's: failurePolicy Fail, matchPolicy Equivalent,
reinvocationPolicy Never, timeoutSeconds 10, namespaceSelector and objectSelector `{}`, rule
scope `*`, service port 443. Validation follows pkg/apis/admissionregistration/validation for what
the sandbox uses, first error only. Deviations, on purpose: `admissionReviewVersions` must contain
`v1` (the only version this server sends; kube would also accept a `v1beta1`-only list), and
`matchConditions` (CEL) are refused rather than silently ignored. `matchPolicy` and
`reinvocationPolicy` are validated but have no effect: every resource here has a single version,
and no webhook is called a second time.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sandbox.apiserver.errors import bad_request, invalid
from sandbox.apiserver.selectors import LabelSelector, Requirement

GROUP = "admissionregistration.k8s.io"
KIND = "MutatingWebhookConfiguration"
OPERATIONS = ("CREATE", "UPDATE", "DELETE", "CONNECT", "*")
_SCOPES = ("Cluster", "Namespaced", "*")
_SELECTOR_OPERATORS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

Obj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Rule:
    operations: tuple[str, ...]
    api_groups: tuple[str, ...]
    api_versions: tuple[str, ...]
    resources: tuple[str, ...]
    scope: str


@dataclass(frozen=True, slots=True)
class ServiceRef:
    namespace: str
    name: str
    port: int
    path: str


@dataclass(frozen=True, slots=True)
class Webhook:
    """One webhook of a stored (already defaulted and validated) configuration."""

    name: str
    configuration: str
    url: str | None
    service: ServiceRef | None
    ca_bundle: bytes  # PEM; empty means the system's roots, as in kube
    rules: tuple[Rule, ...]
    failure_policy: str
    timeout_seconds: int
    namespace_selector: LabelSelector
    object_selector: LabelSelector


@dataclass(frozen=True, slots=True)
class Attributes:
    """What a request is, as the rules see it."""

    operation: str
    group: str
    version: str
    resource: str
    subresource: str
    # The object's namespace; "" for cluster-scoped objects, the Namespace's own name for a Namespace.
    namespace: str


# -- validation ----------------------------------------------------------------------------------


class InvalidField(ValueError):
    """One field's problem, in the wording of apimachinery's field errors."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def _required(field: str, what: str = "") -> InvalidField:
    return InvalidField(field, f"Required value{': ' + what if what else ''}")


def _unsupported(field: str, value: Any, supported: Iterable[str]) -> InvalidField:
    choices = ", ".join(f'"{s}"' for s in supported)
    return InvalidField(field, f'Unsupported value: "{value}": supported values: {choices}')


def _default(obj: Obj, field: str, value: Any) -> Any:
    """Set an absent (or null) field to its default; returns the field's value."""
    if obj.get(field) is None:
        obj[field] = value
    return obj[field]


def normalize(obj: Obj) -> None:
    """Default and validate a configuration in place; raises 422 Invalid (or 400 for bad base64)."""
    name = str(obj.get("metadata", {}).get("name", ""))
    if obj.get("webhooks") is None:
        obj.pop("webhooks", None)
        return
    try:
        _normalize_webhooks(obj["webhooks"])
    except InvalidField as error:
        raise invalid(KIND, name, error.field, error.problem, GROUP) from None


def _normalize_webhooks(webhooks: Any) -> None:
    if not isinstance(webhooks, list):
        raise InvalidField("webhooks", "Invalid value: must be a list")
    seen: set[str] = set()
    for index, webhook in enumerate(webhooks):
        _normalize_webhook(f"webhooks[{index}]", webhook, seen)


def _normalize_webhook(at: str, webhook: Any, seen: set[str]) -> None:
    if not isinstance(webhook, dict):
        raise InvalidField(at, "Invalid value: must be an object")
    _check_webhook_name(f"{at}.name", webhook.get("name"), seen)
    _normalize_client_config(f"{at}.clientConfig", webhook.get("clientConfig"))
    versions = webhook.get("admissionReviewVersions")
    if not versions:
        raise _required(f"{at}.admissionReviewVersions", "must specify one of v1, v1beta1")
    if not isinstance(versions, list) or "v1" not in versions:
        raise InvalidField(
            f"{at}.admissionReviewVersions",
            f"Unsupported value: {versions!r}: must include v1 (the only AdmissionReview version "
            "the sandbox API server sends)",
        )
    _normalize_policies(at, webhook)
    for field in ("namespaceSelector", "objectSelector"):
        label_selector(_default(webhook, field, {}), f"{at}.{field}")
    if webhook.get("matchConditions"):
        raise InvalidField(f"{at}.matchConditions", "Forbidden: not supported by the sandbox API server")
    rules = _default(webhook, "rules", [])
    if not isinstance(rules, list):
        raise InvalidField(f"{at}.rules", "Invalid value: must be a list")
    for index, rule in enumerate(rules):
        _normalize_rule(f"{at}.rules[{index}]", rule)


def _normalize_policies(at: str, webhook: Obj) -> None:
    side_effects = webhook.get("sideEffects")
    if not side_effects:
        raise _required(f"{at}.sideEffects", "must specify one of None, NoneOnDryRun")
    if side_effects not in ("None", "NoneOnDryRun"):
        raise _unsupported(f"{at}.sideEffects", side_effects, ("None", "NoneOnDryRun"))
    for field, default, allowed in (
        ("failurePolicy", "Fail", ("Fail", "Ignore")),
        ("matchPolicy", "Equivalent", ("Exact", "Equivalent")),
        ("reinvocationPolicy", "Never", ("Never", "IfNeeded")),
    ):
        value = _default(webhook, field, default)
        if value not in allowed:
            raise _unsupported(f"{at}.{field}", value, allowed)
    timeout = _default(webhook, "timeoutSeconds", 10)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or not 1 <= timeout <= 30:
        raise InvalidField(
            f"{at}.timeoutSeconds",
            f"Invalid value: {timeout!r}: the timeout value must be between 1 and 30 seconds",
        )


def _check_webhook_name(at: str, name: Any, seen: set[str]) -> None:
    if not name:
        raise _required(at)
    if (
        not isinstance(name, str)
        or len(name) > 253
        or not _DNS1123_SUBDOMAIN.match(name)
        or name.count(".") < 2
    ):
        raise InvalidField(
            at, f'Invalid value: "{name}": should be a domain with at least three segments separated by dots'
        )
    if name in seen:
        raise InvalidField(at, f'Duplicate value: "{name}"')
    seen.add(name)


def _normalize_client_config(at: str, config: Any) -> None:
    if not isinstance(config, dict):
        raise _required(at, "exactly one of url or service is required")
    url, service = config.get("url"), config.get("service")
    if bool(url) == bool(service):
        raise _required(at, "exactly one of url or service is required")
    bundle = config.get("caBundle")
    if bundle:
        try:
            base64.b64decode(str(bundle), validate=True)
        except (binascii.Error, ValueError):
            raise bad_request(f"{at}.caBundle: illegal base64 data") from None
    if url:
        _check_url(f"{at}.url", url)
        return
    if not isinstance(service, dict):
        raise InvalidField(f"{at}.service", "Invalid value: must be an object")
    for field in ("namespace", "name"):
        if not service.get(field) or not isinstance(service[field], str):
            raise _required(f"{at}.service.{field}", f"service {field} is required")
    port = _default(service, "port", 443)
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise InvalidField(
            f"{at}.service.port",
            f"Invalid value: {port!r}: port is not valid: must be between 1 and 65535, inclusive",
        )
    path = service.get("path")
    if path is not None and (not isinstance(path, str) or not path.startswith("/")):
        raise InvalidField(f"{at}.service.path", f"Invalid value: {path!r}: must start with a '/'")


def _check_url(at: str, url: Any) -> None:
    if not isinstance(url, str):
        raise InvalidField(at, "Invalid value: must be a string")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as error:
        raise InvalidField(at, f'Invalid value: "{url}": {error}') from None
    for bad, problem in (
        (parts.scheme != "https", "'https' is the only allowed URL scheme"),
        (not parts.hostname, "host must be specified"),
        (bool(parts.username or parts.password), "user information is not permitted in the URL"),
        (bool(parts.fragment), "fragments are not permitted in the URL"),
        (bool(parts.query), "query parameters are not permitted in the URL"),
    ):
        if bad:
            raise InvalidField(at, f'Invalid value: "{url}": {problem}')


def _normalize_rule(at: str, rule: Any) -> None:
    if not isinstance(rule, dict):
        raise InvalidField(at, "Invalid value: must be an object")
    for field in ("operations", "apiGroups", "apiVersions", "resources"):
        values = rule.get(field)
        if not values or not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise _required(f"{at}.{field}")
    for operation in rule["operations"]:
        if operation not in OPERATIONS:
            raise _unsupported(f"{at}.operations", operation, OPERATIONS)
    scope = _default(rule, "scope", "*")
    if scope not in _SCOPES:
        raise _unsupported(f"{at}.scope", scope, _SCOPES)


def label_selector(spec: Any, at: str = "selector") -> LabelSelector:
    """A metav1.LabelSelector (`matchLabels`, `matchExpressions`) as a parsed selector; `{}` matches all.

    Raises `InvalidField` for a malformed one (`normalize` turns it into a 422).
    """
    if not isinstance(spec, Mapping):
        raise InvalidField(at, "Invalid value: must be an object")
    requirements: list[Requirement] = []
    match_labels = spec.get("matchLabels") or {}
    if not isinstance(match_labels, Mapping) or not all(isinstance(v, str) for v in match_labels.values()):
        raise InvalidField(f"{at}.matchLabels", "Invalid value: must map strings to strings")
    requirements.extend(Requirement(str(k), "=", (v,)) for k, v in sorted(match_labels.items()))
    expressions = spec.get("matchExpressions") or []
    if not isinstance(expressions, list):
        raise InvalidField(f"{at}.matchExpressions", "Invalid value: must be a list")
    for index, expression in enumerate(expressions):
        where = f"{at}.matchExpressions[{index}]"
        if not isinstance(expression, Mapping) or not expression.get("key"):
            raise _required(f"{where}.key")
        operator = expression.get("operator")
        if operator not in _SELECTOR_OPERATORS:
            raise _unsupported(f"{where}.operator", operator, _SELECTOR_OPERATORS)
        values = expression.get("values") or []
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise InvalidField(f"{where}.values", "Invalid value: must be a list of strings")
        if operator in ("In", "NotIn") and not values:
            raise _required(f"{where}.values", "must be specified when `operator` is 'In' or 'NotIn'")
        if operator in ("Exists", "DoesNotExist") and values:
            raise InvalidField(
                f"{where}.values",
                "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )
        requirements.append(Requirement(str(expression["key"]), _SELECTOR_OPERATORS[operator], tuple(values)))
    return LabelSelector(tuple(requirements))


# -- reading stored configurations ---------------------------------------------------------------


def webhooks(configurations: Iterable[Obj]) -> list[Webhook]:
    """Every webhook of the stored configurations, in calling order: configuration name, list order."""
    ordered = sorted(configurations, key=lambda c: str(c.get("metadata", {}).get("name", "")))
    return [
        _webhook(str(config["metadata"].get("name", "")), raw)
        for config in ordered
        for raw in config.get("webhooks") or []
    ]


def _webhook(configuration: str, raw: Obj) -> Webhook:
    client = raw["clientConfig"]
    service = client.get("service")
    ref = (
        ServiceRef(
            service["namespace"], service["name"], int(service.get("port", 443)), service.get("path") or "/"
        )
        if service
        else None
    )
    bundle = base64.b64decode(client["caBundle"]) if client.get("caBundle") else b""
    return Webhook(
        name=raw["name"],
        configuration=configuration,
        url=client.get("url") or None,
        service=ref,
        ca_bundle=bundle,
        rules=tuple(
            Rule(
                tuple(r["operations"]),
                tuple(r["apiGroups"]),
                tuple(r["apiVersions"]),
                tuple(r["resources"]),
                r.get("scope", "*"),
            )
            for r in raw.get("rules") or []
        ),
        failure_policy=raw.get("failurePolicy", "Fail"),
        timeout_seconds=int(raw.get("timeoutSeconds", 10)),
        namespace_selector=label_selector(raw.get("namespaceSelector") or {}),
        object_selector=label_selector(raw.get("objectSelector") or {}),
    )


def rules_match(webhook: Webhook, request: Attributes) -> bool:
    """True if any rule covers the request (k8s.io/apiserver .../webhook/predicates/rules)."""
    return any(_rule_matches(rule, request) for rule in webhook.rules)


def _rule_matches(rule: Rule, request: Attributes) -> bool:
    def has(values: tuple[str, ...], value: str) -> bool:
        return "*" in values or value in values

    return (
        has(rule.operations, request.operation)
        and has(rule.api_groups, request.group)
        and has(rule.api_versions, request.version)
        and _resource_matches(rule.resources, request)
        and _scope_matches(rule.scope, request)
    )


def _resource_matches(resources: tuple[str, ...], request: Attributes) -> bool:
    for entry in resources:
        resource, _, subresource = entry.partition("/")
        if resource in ("*", request.resource) and subresource in ("*", request.subresource):
            return True
    return False


def _scope_matches(scope: str, request: Attributes) -> bool:
    # A Namespace is cluster-scoped although the request carries its name as the namespace.
    is_namespace = request.group == "" and request.resource == "namespaces"
    if scope == "Namespaced":
        return not is_namespace and request.namespace != ""
    if scope == "Cluster":
        return is_namespace or request.namespace == ""
    return True
