"""The Lambda zip, built as ``make lambda-zip`` builds it (``python -m cloud_functions.packaging``)
for this machine's architecture: under 50 MB, holding our modules the handler imports and the
console, never the agent's capture, proxy or Kubernetes code; and, unzipped alone, in an
interpreter that sees nothing of this checkout or its venv (``-I -S``), its handler answers
API Gateway HTTP API v2 events (``tests/data/apigw``) with the store in DynamoDB Local, as the
Lambda would with DynamoDB."""

from __future__ import annotations

import ast
import base64
import gzip
import hashlib
import json
import platform
import secrets
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from cloud_functions import packaging
from tests.cloud.conftest import dynamodb_client, dynamodb_endpoint, dynamodb_table  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "tests" / "data" / "apigw"
ARCHITECTURE = {"x86_64": "x86_64", "aarch64": "arm64"}.get(platform.machine(), "")
NOT_SHIPPED = {"jsonschema"}
"""Third-party imports of the closure the zip leaves out (see test_what_is_left_out_is_never_called)."""

# Runs in the isolated interpreter: argv = unzipped dir, events file; prints the answers and what loaded.
RUNNER = """
import json, sys
root, events_file = sys.argv[1], sys.argv[2]
sys.path.insert(0, root)
import cloud_functions.handlers as handlers
answers = [handlers.handler(event, None) for event in json.load(open(events_file))]
loaded = sorted({m.split(".")[0] for m in sys.modules})
files = sorted({str(getattr(m, "__file__", None) or "") for m in list(sys.modules.values())})
print(json.dumps({"answers": answers, "loaded": loaded, "files": files, "path": sys.path}))
"""


@pytest.fixture(scope="module")
def lambda_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not ARCHITECTURE:
        pytest.fail(f"no Lambda architecture for this machine ({platform.machine()})")
    output = tmp_path_factory.mktemp("lambda") / "lambda.zip"
    done = subprocess.run(
        [sys.executable, "-m", "cloud_functions.packaging", "--arch", ARCHITECTURE, "--output", str(output)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"building the zip failed:\n{done.stdout}{done.stderr}"
    return output


@pytest.fixture(scope="module")
def unzipped(lambda_zip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("unzipped")
    with zipfile.ZipFile(lambda_zip) as archive:
        archive.extractall(root)
    return root


def test_the_zip_is_under_lambdas_50_mb(lambda_zip: Path) -> None:
    assert lambda_zip.stat().st_size < 50 * 1024 * 1024


def test_the_zip_holds_exactly_our_modules_the_handler_imports_and_the_console(lambda_zip: Path) -> None:
    closure = packaging.handler_closure()
    with zipfile.ZipFile(lambda_zip) as archive:
        names = set(archive.namelist())
    ours = {n for n in names if n.split("/")[0] in packaging.OWN_PACKAGES and n.endswith(".py")}
    expected = {
        str(packaging.module_file(REPO, m).relative_to(REPO))  # type: ignore[union-attr]
        for m in closure.modules
    }
    assert ours == expected
    assert "agent/wire.py" in ours and "cloud_functions/handlers/app.py" in ours
    assert not {"agent/sniffer/capture.py", "agent/mapper/kube.py", "cloud_functions/localserver.py"} & ours
    console = REPO / "cloud_functions" / "console"
    files = {p.relative_to(REPO).as_posix() for p in console.rglob("*") if p.is_file()}
    assert "cloud_functions/console/vendor/cytoscape.min.js" in files
    assert files <= names
    assert not {n.split("/")[0] for n in names} & packaging.FORBIDDEN


def test_every_library_the_handler_imports_is_in_the_zip(unzipped: Path) -> None:
    external = packaging.handler_closure().external - NOT_SHIPPED
    assert {"aws_lambda_powertools", "pydantic", "msgspec", "boto3", "botocore", "yaml"} <= external
    for name in external:
        assert (unzipped / name).is_dir() or (unzipped / f"{name}.py").is_file(), name
    assert not any((unzipped / name).exists() for name in NOT_SHIPPED)


def test_what_is_left_out_is_never_called() -> None:
    """jsonschema is imported only inside agent.exports.clientintents.validate (checking exports
    against the CRD: the CLI and tests); no cloud module names ``validate`` from the exports."""
    source = (REPO / "agent" / "exports" / "clientintents.py").read_text(encoding="utf-8")
    importers = {
        node.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef)
        and any(
            isinstance(inner, ast.Import) and inner.names[0].name == "jsonschema" for inner in ast.walk(node)
        )
    }
    assert importers == {"validate"}
    for path in (REPO / "cloud_functions").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("agent.exports"):
                assert "validate" not in {alias.name for alias in node.names}, path
            if isinstance(node, ast.Attribute) and node.attr == "validate":
                owner = node.value.id if isinstance(node.value, ast.Name) else ""
                assert owner not in ("exports", "clientintents"), path


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, source in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(source, encoding="utf-8")
    return root


def test_a_lazy_import_of_capture_code_stops_the_build(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "cloud_functions/__init__.py": "",
            "cloud_functions/handlers/__init__.py": "from agent import sniffer\n",
            "agent/__init__.py": "",
            "agent/sniffer.py": "def capture():\n    import scapy.all\n",
        },
    )
    with pytest.raises(packaging.PackagingError, match="scapy"):
        packaging.handler_closure(root)


def test_imports_only_type_checkers_see_are_not_followed(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "cloud_functions/__init__.py": "",
            "cloud_functions/handlers/__init__.py": (
                "from typing import TYPE_CHECKING\nfrom . import app\n"
                "if TYPE_CHECKING:\n    import kubernetes\n"
            ),
            "cloud_functions/handlers/app.py": "from ..store import base\n",
            "cloud_functions/store/__init__.py": "",
            "cloud_functions/store/base.py": "import msgspec\n",
        },
    )
    closure = packaging.handler_closure(root)
    assert closure.modules == {
        "cloud_functions",
        "cloud_functions.handlers",
        "cloud_functions.handlers.app",
        "cloud_functions.store",
        "cloud_functions.store.base",
    }
    assert closure.external == {"msgspec"}


def _event(name: str, **fill: str) -> dict[str, Any]:
    text = (EVENTS / f"{name}.json").read_text(encoding="utf-8")
    for key, value in fill.items():
        text = text.replace("{{" + key + "}}", value)
    event: dict[str, Any] = json.loads(text)
    return event


def test_the_unzipped_handler_alone_answers_recorded_events(
    unzipped: Path,
    tmp_path: Path,
    dynamodb_endpoint: str,  # noqa: F811 - the fixture imported above
    dynamodb_table: str,  # noqa: F811
    dynamodb_client: Any,  # noqa: F811
) -> None:
    admin = "nm_" + secrets.token_hex(32)
    events = [_event("healthz"), _event("create_tenant", ADMIN_TOKEN=admin), _event("console_vendor")]
    events_file = tmp_path / "events.json"
    events_file.write_text(json.dumps(events), encoding="utf-8")
    env = {  # the function's environment as terraform sets it, plus DynamoDB Local's endpoint
        "CLOUD_STORE": f"dynamodb:{dynamodb_table}",
        "CLOUD_DYNAMODB_ENDPOINT": dynamodb_endpoint,
        "NM_ADMIN_TOKEN_SHA256": hashlib.sha256(admin.encode()).hexdigest(),
        "NM_MAX_BODY_BYTES": "6291456",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "HOME": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", RUNNER, str(unzipped), str(events_file)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])

    # Isolated: nothing of the checkout or a site-packages on the path; everything loaded that is
    # not the standard library came from the unzipped folder.
    assert report["path"][0] == str(unzipped)
    assert not [p for p in report["path"] if "site-packages" in p or p.startswith(str(REPO))]
    stdlib = Path(ast.__file__).parent
    outside = [f for f in report["files"] if f and not f.startswith((str(unzipped), str(stdlib)))]
    assert not outside, outside
    assert not set(report["loaded"]) & (packaging.FORBIDDEN | NOT_SHIPPED)

    health, tenant, script = report["answers"]
    assert (health["statusCode"], json.loads(health["body"])) == (200, {"status": "ok"})
    assert tenant["statusCode"] == 201, tenant
    created = json.loads(tenant["body"])
    assert created["tenantId"].startswith("t_") and created["ownerToken"].startswith("nm_")
    stored = dynamodb_client.get_item(
        TableName=dynamodb_table, Key={"PK": {"S": f"TENANT#{created['tenantId']}"}, "SK": {"S": "META"}}
    )
    assert stored["Item"]["name"] == {"S": "acme"}
    assert script["statusCode"] == 200, script
    body = base64.b64decode(script["body"]) if script.get("isBase64Encoded") else script["body"].encode()
    if script["headers"].get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    assert body == (REPO / "cloud_functions" / "console" / "vendor" / "cytoscape.min.js").read_bytes()
