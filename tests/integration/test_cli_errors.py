"""The CLI's answer to a bad flag or path: one line on stderr, no traceback, exit 2 (argparse's
usage convention); runtime failures (the mapper unreachable, the key file) keep exit 1.

Each case runs ``python -m agent.cli`` as a real process against a tiny stand-in mapper that
answers every query with no edges, so the output paths are really written (or refused).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.mapper_process import REPO, clean_env, free_port

ANSWER = json.dumps({"data": {"edges": [], "intents": [], "resetCapture": True}}).encode()


class _EmptyMapper(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(ANSWER)))
        self.end_headers()
        self.wfile.write(ANSWER)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EmptyMapper)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/query"
    finally:
        server.shutdown()
        server.server_close()


def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=clean_env(env),
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stderr.splitlines()


def _one_line(code: int, lines: list[str], status: int, *words: str) -> None:
    assert len(lines) == 1, lines
    assert code == status, lines
    for word in words:
        assert word in lines[0], lines


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "1e300", "abc"])
def test_bad_timeout(url: str, value: str) -> None:
    _one_line(*_cli("--mapper-url", url, f"--timeout={value}", "list"), 2, "--timeout", value)


@pytest.mark.parametrize(
    "value", ["127.0.0.1:9090", "", "ftp://x/query", "http://127.0.0.1:99999/query", "http://h:abc/q"]
)
def test_bad_mapper_url(value: str) -> None:
    _one_line(*_cli(f"--mapper-url={value}", "list"), 2, "--mapper-url")


def test_bad_mapper_url_from_the_environment() -> None:
    code, lines = _cli("list", env={"OTTERIZE_MAPPER_API": "localhost:9090"})
    _one_line(code, lines, 2, "OTTERIZE_MAPPER_API")


def test_unreachable_mapper_is_a_runtime_failure() -> None:
    code, lines = _cli("--mapper-url", f"http://127.0.0.1:{free_port()}/query", "list")
    _one_line(code, lines, 1, "cannot reach the mapper")


@pytest.mark.parametrize("value", ["frontend", ".shop", "frontend.", "a.b.Shop"])
def test_bad_server(url: str, value: str) -> None:
    _one_line(*_cli("--mapper-url", url, "export", "--server", value), 2, "--server", value)


def test_server_name_with_dots_is_accepted(url: str) -> None:
    code, lines = _cli("--mapper-url", url, "export", "--server", "my.app.shop")
    assert (code, lines) == (0, [])


@pytest.mark.parametrize(
    ("command", "output", "words"),
    [
        (["export"], "/tmp", ["/tmp", "directory"]),
        (["export"], "/etc/hostname/x.yaml", ["/etc/hostname", "not a directory"]),
        (["export"], "/proc/x.yaml", ["/proc/x.yaml"]),
        (["export", "--distinct-files"], "/etc/hostname", ["/etc/hostname", "not a directory"]),
        (["export", "--distinct-files"], "/proc/new-dir", ["/proc/new-dir"]),
        (["visualize"], "/tmp", ["/tmp", "directory"]),
        (["visualize"], "/etc/hostname/x.png", ["/etc/hostname"]),
        (["visualize"], "/proc/x.png", ["/proc/x.png"]),
        (["visualize"], "/tmp/x.gif", ["/tmp/x.gif", "--format"]),
    ],
)
def test_bad_output(url: str, command: list[str], output: str, words: list[str]) -> None:
    if command == ["visualize"] and output != "/tmp/x.gif" and not shutil.which("dot"):
        pytest.skip("graphviz's dot is not installed")
    _one_line(*_cli("--mapper-url", url, *command, "-o", output), 2, "--output", *words)


def test_deanonymize_bad_output(url: str, tmp_path: Path) -> None:
    (tmp_path / "key").write_bytes(os.urandom(32).hex().encode())
    key = ["deanonymize", "--key-file", str(tmp_path / "key")]
    for output in ["/tmp", "/etc/hostname/x", "/proc/x.yaml"]:
        _one_line(*_cli("--mapper-url", url, *key, "-o", output), 2, "--output", output.split("/x")[0])


def test_deanonymize_bad_inputs(url: str, tmp_path: Path) -> None:
    (tmp_path / "short").write_text("abc")
    (tmp_path / "key").write_bytes(os.urandom(32).hex().encode())
    key = ["--key-file", str(tmp_path / "key")]
    _one_line(*_cli("--mapper-url", url, "deanonymize", "--key-file", "/no/key"), 2, "/no/key")
    _one_line(*_cli("--mapper-url", url, "deanonymize", "--key-file", str(tmp_path / "short")), 2, "short")
    _one_line(*_cli("--mapper-url", url, "deanonymize", *key, "--input", "/no/input"), 2, "/no/input")
    _one_line(*_cli("--mapper-url", url, "deanonymize", *key, "--input", sys.executable), 2, "UTF-8")


def test_visualize_without_dot(url: str, tmp_path: Path) -> None:
    code, lines = _cli(
        "--mapper-url", url, "visualize", "-o", str(tmp_path / "x.png"), env={"PATH": "/nowhere"}
    )
    _one_line(code, lines, 2, "dot")


@pytest.mark.parametrize(
    "args", [[], ["bogus"], ["export", "--format", "nope"], ["visualize"], ["list", "--nope"]]
)
def test_argparse_errors_are_one_line(args: list[str]) -> None:
    _one_line(*_cli(*args), 2, "error")


def test_help_documents_the_exit_codes() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "agent.cli", "--help"], capture_output=True, text=True, cwd=REPO, check=True
    ).stdout
    assert "exit status" in out and "2  a bad flag" in out
