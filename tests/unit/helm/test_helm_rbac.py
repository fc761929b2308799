"""Least-privilege RBAC, derived from the code: each component's ServiceAccount is granted exactly the
(apiGroup, resource, verb) triples its code's Kubernetes calls need — no more, no less.

The calls come from an AST scan of the modules each component runs: the chart's container command
→ its ``[project.scripts]`` entry point → that module and every ``agent`` module it imports,
transitively. In them:

* kubernetes client methods, as attributes (``api.list_namespaced_pod(...)``) or as strings (the
  mapper's ``KINDS`` table names list methods for ``getattr``; only the kinds ``ClusterWatcher``
  watches by default, ``DEFAULT_KINDS``, count);
* raw API paths handed to ``ApiClient.call_api`` (the Kafka watcher's ``/api/v1/.../pods/{name}/log``),
  with the HTTP method literal of that call.

Each method is mapped to its path and HTTP method by the kubernetes client's own API classes (the
``call_api('/api/v1/...', 'GET', ...)`` line of ``<method>_with_http_info``), and a path and HTTP
method to RBAC's (apiGroup, resource, verb) by the API's conventions. A module that imports
``kubernetes.watch`` watches what it lists. The chart is rendered with every component on, and the
rules of every Role and ClusterRole bound to a component's ServiceAccount are compared with what
its code calls. Components that call nothing get no binding and no token.
"""

from __future__ import annotations

import ast
import inspect
import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest

from agent.aws.settings import AwsWebhookSettings
from agent.mapper.kube import DEFAULT_KINDS
from tests.support.chart import NS, rendered

ROOT = Path(__file__).resolve().parents[3]
VALUES: dict[str, Any] = {
    "aws": {"visibility": {"enabled": True}},
    "kafkawatcher": {"enable": True, "kafkaServers": ["kafka-0.kafka", {"name": "b-*", "namespace": "str*"}]},
    "enableIstioCollection": True,
}
Triple = tuple[str, str, str]  # (apiGroup, resource, verb)
CALL_API = re.compile(r"call_api\(\s*'([^']+)',\s*'([A-Z]+)'")
API_PATH = re.compile(r"^/apis?/")


# -- the kubernetes client: method → (path, HTTP method) → (apiGroup, resource, verb) --------------


@cache
def client_methods() -> dict[str, tuple[str, str]]:
    """Every kubernetes client API method → (path, HTTP method), from the client's own source."""
    found: dict[str, tuple[str, str]] = {}
    for name, cls in vars(kubernetes.client).items():
        if not (name.endswith("Api") and inspect.isclass(cls)):
            continue
        for method, function in vars(cls).items():
            if method.endswith("_with_http_info"):
                match = CALL_API.search(inspect.getsource(function))
                if match:
                    found[method.removesuffix("_with_http_info")] = (match.group(1), match.group(2))
    return found


def rbac(path: str, http: str, watched: bool) -> set[Triple]:
    """What RBAC calls a request: ``GET /api/v1/namespaces/{namespace}/pods`` → ("", "pods", "list")."""
    core = re.match(r"^/api/v1/(.*)$", path)
    named = re.match(r"^/apis/([^/]+)/[^/]+/(.*)$", path)
    group, rest = ("", core.group(1)) if core else (named.group(1), named.group(2)) if named else ("", "")
    assert rest, f"not an API path: {path}"
    if rest.startswith("namespaces/{namespace}/"):
        rest = rest.removeprefix("namespaces/{namespace}/")
    parts = rest.split("/")
    resource = f"{parts[0]}/{parts[2]}" if len(parts) >= 3 else parts[0]
    one = len(parts) >= 2  # .../{name}[/subresource]
    verb = {
        "GET": "get" if one else "list",
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if one else "deletecollection",
    }[http]
    verbs = {verb, "watch"} if verb == "list" and watched else {verb}
    return {(group, resource, v) for v in verbs}


# -- the code: entry point → modules → calls ------------------------------------------------------


def module_file(module: str) -> Path | None:
    """The source of an ``agent`` module (found without importing it), None when it is not one."""
    base = ROOT.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported(tree: ast.AST, module: str) -> set[str]:
    """The ``agent`` modules a module imports (``from agent.x import y`` may name a module y)."""
    out: set[str] = set()
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "agent"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base])
                base = base.rstrip(".")
            if base.split(".")[0] != "agent":
                continue
            parts = base.split(".")
            out |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}  # packages run their __init__
            out |= {f"{base}.{a.name}" for a in node.names if module_file(f"{base}.{a.name}")}
    return out


def closure(entry: str) -> dict[str, ast.Module]:
    """The entry module and every ``agent`` module it imports, transitively, parsed."""
    seen: dict[str, ast.Module] = {}
    todo = [entry]
    while todo:
        module = todo.pop()
        path = module_file(module)
        if module in seen or path is None:
            continue
        seen[module] = ast.parse(path.read_text(encoding="utf-8"))
        todo.extend(imported(seen[module], module) - set(seen))
    return seen


def unused_kind_methods() -> set[str]:
    """The list methods of the mapper's ``KINDS`` table whose kinds it does not watch."""
    tree = ast.parse((ROOT / "agent" / "mapper" / "kube.py").read_text(encoding="utf-8"))
    (table,) = [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name) and n.target.id == "KINDS"
    ]
    assert isinstance(table, ast.Dict)
    out = set()
    for key, spec in zip(table.keys, table.values, strict=True):
        assert isinstance(key, ast.Constant) and isinstance(spec, ast.Call)
        method = spec.args[2]
        assert isinstance(method, ast.Constant) and isinstance(method.value, str)
        if key.value not in DEFAULT_KINDS:
            out.add(method.value)
    return out


def calls(entry: str) -> set[Triple]:
    """What the modules of an entry point call, as (apiGroup, resource, verb)."""
    methods = client_methods()
    unused = unused_kind_methods()
    needed: set[Triple] = set()
    for tree in closure(entry).values():
        names: set[str] = set()
        paths: set[str] = set()
        http: set[str] = set()
        watched = False
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in methods:
                names.add(node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                if node.value in methods and node.value not in unused:
                    names.add(node.value)
                elif API_PATH.match(node.value):
                    paths.add(node.value)
            elif isinstance(node, ast.ImportFrom) and node.module == "kubernetes":
                watched |= any(a.name == "watch" for a in node.names)
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "call_api"
            ):
                http |= {str(a.value) for a in node.args[1:2] if isinstance(a, ast.Constant)}
        for name in names:
            needed |= rbac(*methods[name], watched)
        if paths:
            assert http, "raw API paths without a call_api HTTP method"
        needed |= {t for p in paths for h in http for t in rbac(p, h, watched)}
    return needed


def entry_points() -> dict[str, str]:
    """Console script → module, from pyproject.toml."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    return {name: target.split(":")[0] for name, target in scripts.items()}


# -- the chart -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return rendered(VALUES)[0]


def workloads(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Deployment/DaemonSet name → its pod spec."""
    return {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]
        for d in docs
        if d["kind"] in {"Deployment", "DaemonSet"}
    }


def granted(docs: list[dict[str, Any]], account: str) -> tuple[set[Triple], list[dict[str, Any]]]:
    """The triples the roles bound to a ServiceAccount grant, and those rules."""
    roles = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in docs}
    rules: list[dict[str, Any]] = []
    for binding in docs:
        if binding["kind"] not in {"RoleBinding", "ClusterRoleBinding"}:
            continue
        subject = {"kind": "ServiceAccount", "name": account, "namespace": NS}
        if subject not in binding["subjects"]:
            continue
        ref = binding["roleRef"]
        namespace = binding["metadata"]["namespace"] if ref["kind"] == "Role" else None
        rules += roles[(ref["kind"], namespace, ref["name"])]["rules"]
    triples = {
        (g, r, v)
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    return triples, rules


COMPONENTS = [
    "network-mapper",
    "network-mapper-sniffer",
    "network-mapper-kafka-watcher",
    "network-mapper-istio-watcher",
    "network-mapper-aws-proxy",
    "network-mapper-aws-dns",
    "network-mapper-aws-webhook",
]


def test_every_workload_is_checked(docs: list[dict[str, Any]]) -> None:
    assert set(workloads(docs)) == set(COMPONENTS)


def test_the_mapper_watches_its_default_kinds() -> None:
    """``calls`` counts the KINDS the mapper watches by default: it must not pass other kinds."""
    tree = ast.parse((ROOT / "agent" / "mapper" / "__main__.py").read_text(encoding="utf-8"))
    watchers = [
        n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "ClusterWatcher"
    ]
    assert watchers and all(len(n.args) == 2 and not n.keywords for n in watchers)


def test_the_scan_finds_known_calls() -> None:
    """The derivation itself: calls the code is known to make are found, mapped as RBAC names them."""
    scripts = entry_points()
    assert ("", "pods", "watch") in calls(scripts["network-mapper-mapper"])
    assert ("batch", "cronjobs", "list") in calls(scripts["network-mapper-mapper"])
    assert ("", "pods/log", "get") in calls(scripts["network-mapper-kafka-watcher"])
    assert ("", "configmaps", "update") in calls(scripts["network-mapper-aws-webhook"])
    assert rbac(*client_methods()["list_node"], True) == {("", "nodes", "list"), ("", "nodes", "watch")}
    assert rbac(*client_methods()["patch_mutating_webhook_configuration"], False) == {
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations", "patch")
    }


@pytest.mark.parametrize("name", COMPONENTS)
def test_each_service_account_is_granted_exactly_what_its_code_calls(
    docs: list[dict[str, Any]], name: str
) -> None:
    spec = workloads(docs)[name]
    (container,) = spec["containers"]
    (command,) = container["command"]
    needed = calls(entry_points()[command])
    account = spec["serviceAccountName"]
    assert account == name  # one ServiceAccount per component
    have, rules = granted(docs, account)
    assert have == needed, (
        f"{name}: granted but not called {have - needed}; called but not granted {needed - have}"
    )
    for rule in rules:
        assert "*" not in [*rule["apiGroups"], *rule["resources"], *rule["verbs"]], rule
    (sa,) = [d for d in docs if d["kind"] == "ServiceAccount" and d["metadata"]["name"] == account]
    if not needed:  # no API calls: no token in the pod at all
        assert sa["automountServiceAccountToken"] is False
        assert spec["automountServiceAccountToken"] is False
    else:
        assert spec.get("automountServiceAccountToken", True) is True


def test_the_webhooks_writes_are_limited_to_its_own_objects(docs: list[dict[str, Any]]) -> None:
    """RBAC cannot derive names from code; the webhook's get/update/patch rights name its objects."""
    _, rules = granted(docs, "network-mapper-aws-webhook")
    named = {(r["resources"][0], tuple(r["resourceNames"])) for r in rules if set(r["verbs"]) - {"create"}}
    assert named == {
        ("configmaps", (AwsWebhookSettings().bundle_configmap,)),
        ("services", ("network-mapper-aws-dns",)),
        ("secrets", ("network-mapper-aws-webhook-tls",)),
        ("mutatingwebhookconfigurations", ("network-mapper-aws-visibility",)),
    }
    assert all(not r.get("resourceNames") for r in rules if r["verbs"] == ["create"])


def test_kafka_rights_are_namespaced_unless_a_namespace_is_a_glob() -> None:
    values = {
        "kafkawatcher": {"enable": True, "kafkaServers": ["kafka-0.kafka", {"name": "b", "namespace": "s"}]}
    }
    docs, _ = rendered(values)
    roles = {(d["kind"], d["metadata"].get("namespace")) for d in docs if "kafka" in d["metadata"]["name"]}
    assert ("Role", "kafka") in roles and ("Role", "s") in roles
    assert not {kind for kind, _ in roles} & {"ClusterRole", "ClusterRoleBinding"}
    have, _ = granted(docs, "network-mapper-kafka-watcher")
    assert have == {("", "pods", "list"), ("", "pods/log", "get")}
