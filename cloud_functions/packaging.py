"""The Lambda deployment zip (``make lambda-zip``, ``python -m cloud_functions.packaging``): what
``terraform/`` deploys as the cloud's function.

Its parts come from three places: the modules the handler (:data:`HANDLER`) imports, found by
reading this source tree's imports (:func:`import_closure`: ``cloud_functions`` and exactly the
``agent`` modules it reaches, never the agent's capture, proxy or Kubernetes code); the console's
static files (``cloud_functions/console``, its ``vendor/`` libraries included, which the function
serves); and the ``cloud`` extra of ``pyproject.toml``, downloaded by pip from its configured index
as wheels for the function's platform (manylinux2014, CPython 3.11, the chosen architecture) and
unpacked. They go to one zip (entries sorted, timestamps fixed, so one input gives one zip) that
must stay under :data:`MAX_ZIP_BYTES`, the Lambda limit on a directly uploaded zip.
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import logging
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
HANDLER = "cloud_functions.handlers.handler"
"""The function's handler (``module.function``), as terraform names it."""
OWN_PACKAGES = ("cloud_functions", "agent")
CONSOLE = Path("cloud_functions") / "console"
CONSOLE_VENDOR_FILE = CONSOLE / "vendor" / "cytoscape.min.js"  # present once `make install` fetched them
FORBIDDEN = frozenset({"scapy", "kubernetes", "mitmproxy", "dnslib", "uvicorn", "starlette", "h11"})
"""Libraries of the in-cluster components (capture, proxy, Kubernetes, the local server): the
function must never import them."""
MAX_ZIP_BYTES = 50 * 1024 * 1024
PYTHON_VERSION = "3.11"
ARCHITECTURES = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}
"""Lambda's architecture names → the wheel platform tag pip downloads for."""
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class PackagingError(Exception):
    """The zip cannot be built as required (a forbidden import, a missing file, too large)."""


@dataclass(frozen=True, slots=True)
class Closure:
    """``modules``: our dotted module names the handler imports (packages as their ``__init__``);
    ``external``: the top-level names of the third-party modules among those imports."""

    modules: frozenset[str]
    external: frozenset[str]


def module_file(root: Path, name: str) -> Path | None:
    """The source file of our module ``name`` under ``root`` (a package: its ``__init__.py``)."""
    base = root.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at module level or inside functions (lazy imports run too), but
    not the ones only type checkers see."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _type_checking_only(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def imported_names(root: Path, name: str, source: str) -> set[str]:
    """The dotted names module ``name`` imports (``from pkg import sub`` names ``pkg.sub`` when
    that is one of our modules, else ``pkg``)."""
    is_package = (root.joinpath(*name.split(".")) / "__init__.py").is_file()
    found: set[str] = set()
    for node in _imports(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            parts = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
            base = ".".join(parts + ([base] if base else []))
        found.add(base)
        for alias in node.names:
            if module_file(root, f"{base}.{alias.name}") is not None:
                found.add(f"{base}.{alias.name}")
    return found


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def import_closure(root: Path, entries: Iterable[str]) -> Closure:
    """The modules of :data:`OWN_PACKAGES` that importing ``entries`` can load (each module's
    parent packages too: importing ``agent.wire`` runs ``agent/__init__.py``), and the third-party
    top-level names they import."""
    modules: set[str] = set()
    external: set[str] = set()
    pending = [parent for entry in entries for parent in _with_parents(entry)]
    while pending:
        name = pending.pop()
        if name in modules:
            continue
        path = module_file(root, name)
        if path is None:
            raise PackagingError(f"{name} is imported but there is no {name.replace('.', '/')}.py")
        modules.add(name)
        for imported in imported_names(root, name, path.read_text(encoding="utf-8")):
            top = imported.split(".")[0]
            if top in OWN_PACKAGES:
                known = [n for n in _with_parents(imported) if module_file(root, n) is not None]
                pending.extend(known)
            elif top not in sys.stdlib_module_names and top != "__future__":
                external.add(top)
    return Closure(frozenset(modules), frozenset(external))


def handler_closure(root: Path = REPO) -> Closure:
    """:func:`import_closure` of the handler's module; :class:`PackagingError` if it reaches a
    :data:`FORBIDDEN` library."""
    closure = import_closure(root, [HANDLER.rpartition(".")[0]])
    if reached := closure.external & FORBIDDEN:
        raise PackagingError(f"the function would import {sorted(reached)}: not in the Lambda")
    return closure


def cloud_requirements(root: Path = REPO) -> list[str]:
    """The ``cloud`` extra of ``pyproject.toml``: the function's own dependencies."""
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements: list[str] = project["optional-dependencies"]["cloud"]
    return requirements


def environment_pins() -> list[str]:
    """``name==version`` of every distribution installed beside this interpreter: as constraints,
    they make the zip carry the versions the tests ran against (pip ignores the ones not needed)."""
    pins = {dist.metadata["Name"].lower(): dist.version for dist in importlib.metadata.distributions()}
    return [f"{name}=={version}" for name, version in sorted(pins.items()) if name]


def download_wheels(requirements: list[str], architecture: str, into: Path, pins: list[str]) -> list[Path]:
    """The wheels of ``requirements`` (and their dependencies) for the function's platform, by pip
    from its configured index."""
    constraints = into / "constraints.txt"
    constraints.write_text("".join(f"{pin}\n" for pin in pins), encoding="utf-8")
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check"]
    command += ["--dest", str(into), "--only-binary=:all:", "--implementation", "cp"]
    command += ["--platform", ARCHITECTURES[architecture], "--python-version", PYTHON_VERSION]
    command += ["--constraint", str(constraints), *requirements]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PackagingError(f"pip download failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return sorted(into.glob("*.whl"))


def unpack_wheel(wheel: Path, into: Path) -> None:
    """A wheel's files as an installer lays them out for a Lambda: ``*.data/purelib`` and
    ``platlib`` at the top, ``*.data/scripts`` left out (command-line tools: the function runs
    none); a wheel installing headers or data files elsewhere is refused."""
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            parts = Path(info.filename).parts
            if parts and parts[0].endswith(".data"):
                if len(parts) >= 2 and parts[1] == "scripts":
                    continue
                if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                    raise PackagingError(f"{wheel.name} installs {info.filename}: not packable")
                target = into.joinpath(*parts[2:])
            else:
                target = into.joinpath(*parts)
            if info.is_dir():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, target.open("wb") as sink:
                shutil.copyfileobj(source, sink)


def own_files(root: Path, closure: Closure) -> list[Path]:
    """Our files in the zip (relative to ``root``): the closure's modules and the console."""
    if not (root / CONSOLE_VENDOR_FILE).is_file():
        raise PackagingError(
            f"{CONSOLE_VENDOR_FILE} is missing: run `make install` (it fetches the console's libraries)"
        )
    files = [module_file(root, name) for name in closure.modules]
    found = [path.relative_to(root) for path in files if path is not None]
    console = [
        path.relative_to(root)
        for path in (root / CONSOLE).rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts)
    ]
    return sorted(found + console)


def _add(archive: zipfile.ZipFile, path: Path, name: str) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    archive.writestr(info, path.read_bytes(), compresslevel=9)


def write_zip(output: Path, own: list[Path], root: Path, libraries: Path) -> None:
    """The zip: our files, then the unpacked libraries (no bytecode caches), each in name order."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for relative in own:
            _add(archive, root / relative, relative.as_posix())
        for path in sorted(libraries.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                _add(archive, path, path.relative_to(libraries).as_posix())
    size = partial.stat().st_size
    if size >= MAX_ZIP_BYTES:
        partial.unlink()
        raise PackagingError(f"the zip is {size} bytes, over Lambda's {MAX_ZIP_BYTES} for a direct upload")
    partial.replace(output)


def build(output: Path, architecture: str = "x86_64", root: Path = REPO) -> Path:
    """Build the zip at ``output`` for ``architecture`` (``x86_64`` or ``arm64``)."""
    if architecture not in ARCHITECTURES:
        raise PackagingError(f"architecture must be one of {sorted(ARCHITECTURES)}, not {architecture!r}")
    closure = handler_closure(root)
    own = own_files(root, closure)
    with tempfile.TemporaryDirectory(prefix="lambda-zip-") as work:
        wheels_dir, libraries = Path(work) / "wheels", Path(work) / "libraries"
        wheels_dir.mkdir()
        wheels = download_wheels(cloud_requirements(root), architecture, wheels_dir, environment_pins())
        for wheel in wheels:
            unpack_wheel(wheel, libraries)
        if clash := {path.parts[0] for path in own} & {p.name for p in libraries.iterdir()}:
            raise PackagingError(f"a library ships {sorted(clash)}, which are our packages")
        write_zip(output, own, root, libraries)
    logger.info("built %s (%d bytes, %d wheels)", output, output.stat().st_size, len(wheels))
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloud_functions.packaging", description=__doc__)
    parser.add_argument("--output", type=Path, default=REPO / "build" / "lambda.zip")
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default="x86_64", help="Lambda architecture")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        build(args.output, args.arch)
    except PackagingError as error:
        logger.error("lambda zip: %s", error)  # noqa: TRY400 - the message is the whole story
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
