"""Where the ``network-mapper`` command's work ends up: files the user named, and the errors it
reports as one line (:class:`CliError`, exit 1; :class:`UsageError`, exit 2). Used by
:mod:`agent.cli.main` and :mod:`agent.cli.exporting`.
"""

from __future__ import annotations

from pathlib import Path


class CliError(Exception):
    """A user-facing failure: printed as one line, exit status :attr:`status` (1: runtime)."""

    status = 1


class UsageError(CliError):
    """A flag or path the user gave cannot be used: one line, exit 2 like argparse's own errors."""

    status = 2


def mkdir(path: Path, flag: str = "-o/--output") -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # the path's fault, as in write
        raise UsageError(f"argument {flag}: cannot create {path}: {exc.strerror or exc}") from exc


def write(path: Path, data: str | bytes, flag: str = "-o/--output") -> None:
    """Writes ``data`` to the user's output ``path``, creating its directory; an OS refusal
    (read-only place, no space, ...) is the path's fault, so a usage error naming it."""
    mkdir(path.parent)
    try:
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data)
    except OSError as exc:
        raise UsageError(f"argument {flag}: cannot write {path}: {exc.strerror or exc}") from exc
