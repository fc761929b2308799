"""terraform/ agrees with the code it deploys: the API's routes are the app's, the handler and its
environment are the ones ``cloud_functions.handlers`` has and reads, the table is the one the store
creates, and the role grants exactly the DynamoDB actions the store calls (derived from its source
by AST, named through botocore's own operation map and checked against AWS's IAM definitions)."""

from __future__ import annotations

import ast
import importlib
import json
import re
from pathlib import Path
from typing import Any

import boto3
import hcl2
import pytest
from botocore.stub import Stubber
from policy_sentry.querying.actions import get_actions_for_service

from cloud_functions import packaging
from cloud_functions.handlers import CloudSettings, app, console
from cloud_functions.store.dynamoitems import GROUP_INDEXES
from cloud_functions.store.dynamotable import create_table

REPO = Path(__file__).resolve().parents[3]
TERRAFORM_DIR = REPO / "terraform"
STORE_DIR = REPO / "cloud_functions" / "store"
TABLE_ARN = "${aws_dynamodb_table.store.arn}"
TRANSACTION_ACTIONS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem"}
TRANSACTION_ACTIONS["ConditionCheck"] = "ConditionCheckItem"
"""TransactWriteItems is not an IAM action: each of its items is authorized as its own kind."""
PROVISIONING = "create_table"
"""The store's function that makes the table (tests, the sandbox); terraform makes it in AWS."""


def text(value: Any) -> Any:
    """python-hcl2 keeps string literals quoted: the value without its quotes."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, list):
        return [text(v) for v in value]
    return value


def blocks(parsed: dict[str, Any], kind: str) -> dict[tuple[str, str], dict[str, Any]]:
    """``resource``/``data`` blocks by (type, name)."""
    found = {}
    for entry in parsed.get(kind, []):
        for type_, named in entry.items():
            for name, body in named.items():
                found[(text(type_), text(name))] = body
    return found


@pytest.fixture(scope="module")
def module() -> dict[str, Any]:
    """The root module's files merged: resources, data, locals, variables, outputs."""
    merged: dict[str, Any] = {"resource": [], "data": [], "locals": [], "variable": [], "output": []}
    for path in sorted(TERRAFORM_DIR.glob("*.tf")):
        with path.open(encoding="utf-8") as handle:
            for key, value in hcl2.load(handle).items():
                merged.setdefault(key, []).extend(value)
    merged["locals_merged"] = {k: v for entry in merged["locals"] for k, v in entry.items()}
    return merged


def named(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``variable``/``output``/``module`` blocks by name."""
    return {text(name): body for entry in entries for name, body in entry.items()}


def resource(module: dict[str, Any], type_: str, name: str) -> dict[str, Any]:
    return blocks(module, "resource")[(type_, name)]


def local_list(module: dict[str, Any], name: str) -> list[str]:
    return [str(v) for v in text(module["locals_merged"][name])]


# ------------------------------------------------------------------ routes and handler


def app_routes() -> set[str]:
    """What the function answers: the OpenAPI document's operations, the document itself, and the
    console's files (GET and HEAD of ``/`` and ``/console/...``, answered before routing)."""
    document = json.loads(app.openapi_document())
    routes = {f"{method.upper()} {path}" for path, ops in document["paths"].items() for method in ops}
    routes.add("GET /openapi.json")
    assert console.is_console_path("/") and console.is_console_path(console.CONSOLE_PREFIX + "x.js")
    for method in ("GET", "HEAD"):
        routes |= {f"{method} /", f"{method} {console.CONSOLE_PREFIX}{{proxy+}}"}
    return routes


def test_the_api_routes_are_exactly_the_apps(module: dict[str, Any]) -> None:
    routes = local_list(module, "api_routes")
    assert len(routes) == len(set(routes)), "a route is listed twice"
    assert set(routes) == app_routes()
    route = resource(module, "aws_apigatewayv2_route", "app")
    assert text(route["for_each"]) == "${toset(local.api_routes)}"
    assert text(route["target"]) == "integrations/${aws_apigatewayv2_integration.function.id}"


def test_the_openapi_document_is_served_where_terraform_routes_it(tmp_path: Path) -> None:
    from cloud_functions.handlers import CloudApp
    from cloud_functions.store.sqlite import SqliteGraphStore

    store = SqliteGraphStore(tmp_path / "cloud.db")
    try:
        event = {
            "version": "2.0",
            "routeKey": "GET /openapi.json",
            "rawPath": "/openapi.json",
            "rawQueryString": "",
            "headers": {},
            "requestContext": {"http": {"method": "GET", "path": "/openapi.json"}, "stage": "$default"},
            "isBase64Encoded": False,
        }
        answer = CloudApp(store)(event)
    finally:
        store.close()
    assert answer["statusCode"] == 200
    assert json.loads(answer["body"])["paths"]


def test_the_stage_is_default_so_raw_paths_are_routes(module: dict[str, Any]) -> None:
    stage = resource(module, "aws_apigatewayv2_stage", "default")
    assert text(stage["name"]) == "$default"
    (settings,) = stage["default_route_settings"]
    assert text(settings["throttling_rate_limit"]) == "${var.throttling_rate_limit}"
    assert text(settings["throttling_burst_limit"]) == "${var.throttling_burst_limit}"
    (logs,) = stage["access_log_settings"]
    assert text(logs["destination_arn"]) == "${aws_cloudwatch_log_group.api.arn}"


def test_the_handler_named_exists_in_the_runtime_the_zip_is_built_for(module: dict[str, Any]) -> None:
    function = resource(module, "aws_lambda_function", "api")
    handler = text(function["handler"])
    assert handler == packaging.HANDLER
    module_name, _, attribute = handler.rpartition(".")
    assert callable(getattr(importlib.import_module(module_name), attribute))
    assert text(function["runtime"]) == f"python{packaging.PYTHON_VERSION}"
    integration = resource(module, "aws_apigatewayv2_integration", "function")
    assert text(integration["integration_uri"]) == "${aws_lambda_function.api.invoke_arn}"
    assert text(integration["payload_format_version"]) == "2.0"  # the event shape the handler reads


def test_the_architectures_offered_are_the_ones_the_zip_builds_for(module: dict[str, Any]) -> None:
    (validation,) = named(module["variable"])["lambda_architecture"]["validation"]
    assert set(re.findall(r'"([a-z0-9_]+)"', validation["condition"])) == set(packaging.ARCHITECTURES)


def test_the_environment_is_exactly_the_settings_the_handler_reads(module: dict[str, Any]) -> None:
    read: set[str] = set()

    class Recording(dict[str, str]):
        def get(self, key: str, default: Any = None) -> Any:
            read.add(key)
            return default

    CloudSettings.from_environ(Recording())
    function = resource(module, "aws_lambda_function", "api")
    (environment,) = function["environment"]
    variables = {k: text(v) for k, v in environment["variables"].items()}
    # CLOUD_DYNAMODB_ENDPOINT points boto3 at DynamoDB Local (tests); in AWS it stays unset.
    assert set(variables) == read - {"CLOUD_DYNAMODB_ENDPOINT"}
    assert variables["CLOUD_STORE"] == "dynamodb:${aws_dynamodb_table.store.name}"


# ------------------------------------------------------------------ the table


@pytest.fixture(scope="module")
def created_table() -> dict[str, dict[str, Any]]:
    """The requests the store's ``create_table`` sends (through a real botocore client, its
    parameters validated against DynamoDB's model; the answers stubbed), by operation."""
    client = boto3.client(
        "dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    sent: dict[str, dict[str, Any]] = {}
    client.meta.events.register(
        "provide-client-params.dynamodb.*",
        lambda params, model, **_: sent.setdefault(model.name, dict(params)),
    )
    with Stubber(client) as stubber:
        stubber.add_response("create_table", {})
        stubber.add_response("describe_table", {"Table": {"TableStatus": "ACTIVE"}})
        stubber.add_response("update_time_to_live", {})
        create_table(client, "nm-table")
        stubber.assert_no_pending_responses()
    return sent


def test_the_table_has_the_stores_keys_indexes_billing_and_ttl(
    module: dict[str, Any], created_table: dict[str, dict[str, Any]]
) -> None:
    table = resource(module, "aws_dynamodb_table", "store")
    made = created_table["CreateTable"]
    keys = {k["KeyType"]: k["AttributeName"] for k in made["KeySchema"]}
    assert (text(table["hash_key"]), text(table["range_key"])) == (keys["HASH"], keys["RANGE"])
    attributes = {(text(a["name"]), text(a["type"])) for a in table["attribute"]}
    assert attributes == {(a["AttributeName"], a["AttributeType"]) for a in made["AttributeDefinitions"]}
    indexes = {
        text(i["name"]): (text(i["hash_key"]), text(i["range_key"]), text(i["projection_type"]))
        for i in table["global_secondary_index"]
    }
    expected = {}
    for index in made["GlobalSecondaryIndexes"]:
        index_keys = {k["KeyType"]: k["AttributeName"] for k in index["KeySchema"]}
        expected[index["IndexName"]] = (
            index_keys["HASH"],
            index_keys["RANGE"],
            index["Projection"]["ProjectionType"],
        )
    assert indexes == expected
    assert set(indexes) == set(GROUP_INDEXES)
    assert text(table["billing_mode"]) == made["BillingMode"] == "PAY_PER_REQUEST"
    (ttl,) = table["ttl"]
    spec = created_table["UpdateTimeToLive"]["TimeToLiveSpecification"]
    assert (text(ttl["attribute_name"]), ttl["enabled"]) == (spec["AttributeName"], spec["Enabled"])


def test_the_table_is_recoverable_and_encrypted_with_the_modules_key(module: dict[str, Any]) -> None:
    table = resource(module, "aws_dynamodb_table", "store")
    (recovery,) = table["point_in_time_recovery"]
    assert recovery["enabled"] is True
    (encryption,) = table["server_side_encryption"]
    assert encryption["enabled"] is True
    assert text(encryption["kms_key_arn"]) == "${aws_kms_key.this.arn}"


# ------------------------------------------------------------------ the role


def _forwarders(tree: ast.Module) -> set[str]:
    """Methods that pass their first parameter on as ``self.call``'s operation (``_pages``)."""
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef) or len(node.args.args) < 2:
            continue
        parameter = node.args.args[1].arg
        for call in ast.walk(node):
            if (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and call.func.attr == "call"
                and call.args
                and isinstance(call.args[0], ast.Name)
                and call.args[0].id == parameter
            ):
                found.add(node.name)
    return found


def _called_operations() -> tuple[set[str], set[str], set[str]]:
    """From ``cloud_functions/store/*.py``: (the boto3 operations called at run time, the ones only
    :data:`PROVISIONING` calls, the kinds of transaction items written). A call is
    ``<table>.call("op", ...)`` (DynamoTable's one entry, or a method forwarding to it, such as
    ``_pages("scan", ...)``), ``<table>._send("op", ...)`` (the sender under ``call``, re-sending
    throttled requests, which the batch reads use directly) or ``<...client>.op(...)``."""
    runtime: set[str] = set()
    provisioning: set[str] = set()
    kinds: set[str] = set()
    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in sorted(STORE_DIR.glob("*.py"))}
    entries = {"call", "_send"}.union(*(_forwarders(tree) for tree in trees.values()))

    def visit(node: ast.AST, into: set[str]) -> None:
        for child in ast.walk(node):
            if isinstance(child, ast.Dict):
                kinds.update(
                    k.value
                    for k in child.keys
                    if isinstance(k, ast.Constant) and k.value in TRANSACTION_ACTIONS
                )
            if not (isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute)):
                continue
            method, receiver = child.func.attr, child.func.value
            first = child.args[0] if child.args else None
            if method in entries and isinstance(first, ast.Constant) and isinstance(first.value, str):
                into.add(first.value)
            receiver_name = (
                receiver.attr if isinstance(receiver, ast.Attribute) else getattr(receiver, "id", "")
            )
            if receiver_name.endswith("client") and method != "get_waiter":  # a waiter polls DescribeTable
                into.add(method)

    for tree in trees.values():
        for node in tree.body:
            is_provisioning = isinstance(node, ast.FunctionDef) and node.name == PROVISIONING
            visit(node, provisioning if is_provisioning else runtime)
    return runtime, provisioning, kinds


def _iam_actions(operations: set[str], kinds: set[str]) -> set[str]:
    mapping = boto3.client("dynamodb", region_name="us-east-1").meta.method_to_api_mapping
    unknown = operations - set(mapping)
    assert not unknown, f"not DynamoDB operations: {unknown}"
    actions = {f"dynamodb:{mapping[op]}" for op in operations if op != "transact_write_items"}
    if "transact_write_items" in operations:
        actions |= {f"dynamodb:{TRANSACTION_ACTIONS[kind]}" for kind in kinds}
    return actions


def _policy_statements(module: dict[str, Any]) -> dict[str, dict[str, Any]]:
    document = blocks(module, "data")[("aws_iam_policy_document", "function")]
    statements = {}
    for statement in document["statement"]:
        actions = statement["actions"]
        if isinstance(actions, str) and actions.startswith("${local."):
            actions = local_list(module, actions[len("${local.") : -1])
        statements[text(statement["sid"])] = {
            "actions": set(text(actions)),
            "resources": text(statement["resources"]),
        }
    return statements


def test_the_scan_finds_the_stores_calls() -> None:
    runtime, provisioning, kinds = _called_operations()
    # A few the store certainly makes: a scan that found none of them is broken, not the store.
    assert {"get_item", "put_item", "query", "scan", "batch_get_item", "transact_write_items"} <= runtime
    assert provisioning == {"create_table", "update_time_to_live"}
    assert kinds >= {"Put", "ConditionCheck"}


def test_the_role_grants_exactly_the_dynamodb_actions_the_store_calls(module: dict[str, Any]) -> None:
    runtime, _, kinds = _called_operations()
    expected = _iam_actions(runtime, kinds)
    assert expected <= set(get_actions_for_service("dynamodb")), "not IAM actions of DynamoDB"
    statements = _policy_statements(module)
    granted = {a for s in statements.values() for a in s["actions"] if a.startswith("dynamodb:")}
    assert granted == expected
    assert statements["StoreTable"]["actions"] == expected
    assert statements["StoreTable"]["resources"] == [TABLE_ARN]
    # The indexes are read by Query only (paged reads by workload), on exactly the table's indexes.
    assert statements["StoreIndexes"]["actions"] == {"dynamodb:Query"}
    assert set(statements["StoreIndexes"]["resources"]) == {f"{TABLE_ARN}/index/{i}" for i in GROUP_INDEXES}
    # No DynamoDB statement reaches beyond this table.
    for sid, statement in statements.items():
        if any(a.startswith("dynamodb:") for a in statement["actions"]):
            assert all(r.startswith(TABLE_ARN) for r in statement["resources"]), sid


def test_the_provisioning_calls_are_terraforms_job_not_the_roles(module: dict[str, Any]) -> None:
    _, provisioning, _ = _called_operations()
    granted = {a for s in _policy_statements(module).values() for a in s["actions"]}
    assert not _iam_actions(provisioning, set()) & granted


def test_only_x_ray_has_a_wildcard_resource(module: dict[str, Any]) -> None:
    for sid, statement in _policy_statements(module).items():
        if "*" in statement["resources"]:
            assert statement["actions"] == {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}, sid


# ------------------------------------------------------------------ interface


def test_every_variable_is_described_typed_and_validated(module: dict[str, Any]) -> None:
    variables = named(module["variable"])
    assert len(variables) > 5
    for name, body in variables.items():
        assert text(body.get("description", "")), f"variable {name} has no description"
        assert "type" in body, f"variable {name} has no type"
        if text(body["type"]).removeprefix("${").removesuffix("}") not in ("bool", "map(string)"):
            assert body.get("validation"), f"variable {name} has no validation"


def test_the_outputs_name_the_api_url_and_the_table(module: dict[str, Any]) -> None:
    outputs = named(module["output"])
    assert text(outputs["api_url"]["value"]) == "${aws_apigatewayv2_stage.default.invoke_url}"
    assert text(outputs["table_name"]["value"]) == "${aws_dynamodb_table.store.name}"
    assert all(text(body.get("description", "")) for body in outputs.values())


def test_the_example_calls_the_module_with_every_required_variable(module: dict[str, Any]) -> None:
    with (TERRAFORM_DIR / "examples" / "basic" / "main.tf").open(encoding="utf-8") as handle:
        example = hcl2.load(handle)
    (call,) = named(example["module"]).values()
    assert text(call["source"]) == "../.."
    required = {name for name, body in named(module["variable"]).items() if "default" not in body}
    assert required == {"lambda_zip_path", "admin_token_sha256"}
    assert required <= set(call)
    assert text(call["lambda_zip_path"]).endswith("/build/lambda.zip")  # where `make lambda-zip` writes
