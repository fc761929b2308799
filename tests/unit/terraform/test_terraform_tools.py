"""terraform/ through the real tools that run offline: ``terraform fmt -check`` (the PyPI wrapper's
Terraform 1.0.3), python-hcl2 parsing, and checkov (its own venv, ``.venv-checkov``) with zero
failed checks and a written reason for every skip. These stand in for ``terraform init``/``plan``,
which need the AWS provider (not downloadable here)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest

REPO = Path(__file__).resolve().parents[3]
TERRAFORM_DIR = REPO / "terraform"
TERRAFORM = REPO / ".venv" / "bin" / "terraform"
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"
SKIP = re.compile(r"#\s*checkov:skip=(CKV2?_AWS_\d+)(?::(.*))?")
TF_FILES = sorted(TERRAFORM_DIR.rglob("*.tf"))


def _tool(path: Path) -> str:
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path.relative_to(REPO)} is missing: run `make install`")
    return str(path)


@pytest.fixture(scope="module")
def checkov_report() -> dict[str, Any]:
    command = [_tool(CHECKOV), "-d", str(TERRAFORM_DIR), "--framework", "terraform"]
    # Not --quiet: it drops the passed and skipped checks from the report, which the tests read.
    command += ["--compact", "--skip-download", "-o", "json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.stdout.strip(), f"checkov printed nothing (rc {done.returncode}): {done.stderr[-2000:]}"
    found = json.loads(done.stdout)
    reports = found if isinstance(found, list) else [found]
    (report,) = [r for r in reports if r.get("check_type") == "terraform"]
    assert isinstance(report, dict)
    return report


def test_the_module_and_its_example_exist() -> None:
    names = {path.relative_to(TERRAFORM_DIR).as_posix() for path in TF_FILES}
    assert {"versions.tf", "variables.tf", "outputs.tf", "examples/basic/main.tf"} <= names


def test_terraform_fmt_finds_nothing_to_change() -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/root"),
        "CHECKPOINT_DISABLE": "1",
    }
    done = subprocess.run(
        [_tool(TERRAFORM), "fmt", "-check", "-recursive", "-diff", str(TERRAFORM_DIR)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"terraform fmt would change:\n{done.stdout}{done.stderr}"


@pytest.mark.parametrize("path", TF_FILES, ids=lambda p: p.relative_to(TERRAFORM_DIR).as_posix())
def test_every_file_parses_as_hcl(path: Path) -> None:
    with path.open(encoding="utf-8") as handle:
        parsed = hcl2.load(handle)
    assert parsed, f"{path} parsed to nothing"


def test_checkov_fails_nothing(checkov_report: dict[str, Any]) -> None:
    failed = checkov_report["results"].get("failed_checks", [])
    listed = [f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}" for c in failed]
    assert not failed, "checkov failed:\n" + "\n".join(listed)
    assert checkov_report["summary"]["parsing_errors"] == 0
    # It did look: the table's, the function's and the logs' own checks passed.
    passed = {c["check_id"] for c in checkov_report["results"].get("passed_checks", [])}
    assert {"CKV_AWS_28", "CKV_AWS_119", "CKV_AWS_50", "CKV_AWS_76", "CKV_AWS_158", "CKV_AWS_338"} <= passed


def _written_skips() -> dict[tuple[str, str], str]:
    """(file relative to terraform/, check id) → the reason written after it."""
    skips = {}
    for path in TF_FILES:
        for match in SKIP.finditer(path.read_text(encoding="utf-8")):
            skips[(path.relative_to(TERRAFORM_DIR).as_posix(), match.group(1))] = (
                match.group(2) or ""
            ).strip()
    return skips


def test_every_skip_carries_its_reason_in_the_code() -> None:
    skips = _written_skips()
    assert skips, "no skips found: the pattern no longer matches the files"
    unexplained = [key for key, reason in skips.items() if len(reason) < 20]
    assert not unexplained, f"skips without a reason: {unexplained}"


def test_every_skip_checkov_applied_is_one_written_and_each_written_one_is_used(
    checkov_report: dict[str, Any],
) -> None:
    skipped = checkov_report["results"].get("skipped_checks", [])
    if not skipped and checkov_report["summary"]["skipped"]:
        pytest.fail("checkov counted skips but listed none: the report format changed")
    applied = set()
    for check in skipped:
        # checkov scans the module through examples/basic; its file path is the module's file.
        applied.add((check["file_path"].lstrip("/"), check["check_id"]))
        reason = check["check_result"].get("suppress_comment", "").strip()
        assert reason, f"skip without a reason: {check['check_id']}"
    assert applied == set(_written_skips()), "skips applied by checkov differ from the ones in the code"
