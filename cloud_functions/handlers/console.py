"""The web console's static files: ``GET /`` is ``console/index.html``, ``GET /console/<path>`` any
file under ``cloud_functions/console/`` (``vendor/`` holds the graph libraries the Makefile
installs); ``HEAD`` too. Public: the page signs in with a token the user pastes; the files hold no
data. :class:`~cloud_functions.handlers.CloudApp` answers these paths with :func:`answer` before
routing (so the Lambda and the local server both serve them), not through the API's resolver:
its response validation would re-encode binary and gzipped bodies as text. Other methods on these
paths reach the resolver, which knows no such route (404).

Files are read from the package directory (``Path(__file__)``-relative, so the Lambda's zip carries
them), or from :attr:`~cloud_functions.handlers.CloudSettings.console_dir` when set. A path is
served only when it names a regular file inside that directory once resolved: no ``..`` or ``.``
segments, no hidden names, no backslashes or NULs, no absolute paths, no symlink leading out;
anything else, and a missing file, is a JSON 404 like every unknown route.

Headers: the content type by extension (``.js`` ``text/javascript``); ``Cache-Control`` long for
``vendor/`` (pinned libraries, replaced only by an upgrade) and ``no-cache`` for the console's own
files (always revalidated, so a new version shows at once) with an ``ETag`` answered ``304`` on
``If-None-Match``; gzip when the client accepts it (compressed once per file version, in memory);
``nosniff``, and no framing by other sites.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"
CONSOLE_PREFIX = "/console/"
INDEX = "index.html"
VENDOR = "vendor/"
VENDOR_CACHE = "public, max-age=86400"
OWN_CACHE = "no-cache"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".map": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
}
COMPRESSIBLE = frozenset({".html", ".js", ".mjs", ".css", ".svg", ".json", ".map", ".txt"})
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "frame-ancestors 'none'"}
_MAX_PATH = 1024


def is_console_path(path: str) -> bool:
    """Whether ``path`` (a request's raw path) is one of the console's public pages."""
    return path == "/" or path.startswith(CONSOLE_PREFIX)


@dataclass(frozen=True, slots=True)
class StaticFile:
    """A file as served: its bytes, gzipped bytes (None: not worth compressing), type and ETag."""

    body: bytes
    gzipped: bytes | None
    content_type: str
    etag: str


def resolve(root: Path, relative: str) -> Path | None:
    """The regular file ``relative`` (a ``/``-separated path, percent-decoded) names inside
    ``root``; None when it names nothing there, or something outside it (see the module docstring)."""
    parts = relative.split("/")
    if (
        not relative
        or len(relative) > _MAX_PATH
        or "\\" in relative
        or "\x00" in relative
        or any(not part or part.startswith(".") for part in parts)
    ):
        return None
    base = root.resolve()
    try:
        found = base.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, a symlink loop, a name too long
        return None
    return found if found.is_relative_to(base) and found.is_file() else None


@lru_cache(maxsize=64)
def _loaded(path: Path, version: tuple[int, int]) -> StaticFile:
    """The file at ``path`` as served, once per ``version`` (its mtime and size)."""
    body = path.read_bytes()
    suffix = path.suffix.lower()
    packed = gzip.compress(body, mtime=0) if suffix in COMPRESSIBLE and len(body) > 1024 else None
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return StaticFile(body, packed, CONTENT_TYPES.get(suffix, "application/octet-stream"), etag)


def load(path: Path) -> StaticFile:
    stat = path.stat()
    return _loaded(path, (stat.st_mtime_ns, stat.st_size))


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` value accepts gzip (named, or ``*``, with a weight above 0)."""
    for item in accept_encoding.lower().split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        if coding in ("gzip", "*"):
            weights = [p.removeprefix("q=") for p in params if p.startswith("q=")]
            try:
                return not weights or float(weights[0]) > 0
            except ValueError:
                return False
    return False


def file_response(found: StaticFile, relative: str, headers: Mapping[str, str], head: bool) -> dict[str, Any]:
    """The Lambda proxy response serving ``found`` to a request with ``headers`` (lower-cased
    names); ``head``: without the body. Bodies go base64-encoded (binary-safe). The gzipped form
    has an ETag of its own (``…-gz``: another representation); either revalidates the file."""
    gzipped = found.gzipped is not None and accepts_gzip(str(headers.get("accept-encoding", "")))
    etag = found.etag[:-1] + '-gz"' if gzipped else found.etag
    cache = VENDOR_CACHE if relative.startswith(VENDOR) else OWN_CACHE
    out = {"Cache-Control": cache, "ETag": etag, "Vary": "Accept-Encoding", **SECURITY_HEADERS}
    asked = {tag.strip().removeprefix("W/") for tag in str(headers.get("if-none-match", "")).split(",")}
    if asked & {found.etag, found.etag[:-1] + '-gz"', "*"}:
        return {"statusCode": 304, "headers": out, "body": "", "isBase64Encoded": False}
    body = found.gzipped if gzipped and found.gzipped is not None else found.body
    if gzipped:
        out["Content-Encoding"] = "gzip"
    out["Content-Type"] = found.content_type
    encoded = "" if head else base64.b64encode(body).decode("ascii")
    return {"statusCode": 200, "headers": out, "body": encoded, "isBase64Encoded": not head}


def relative_path(raw_path: str) -> str:
    """The file a request's raw path names, relative to the console directory ("" for none)."""
    if raw_path == "/":
        return INDEX
    try:  # percent-escapes that are not UTF-8 name no file of ours
        return unquote(raw_path.removeprefix(CONSOLE_PREFIX), errors="strict")
    except UnicodeDecodeError:
        return ""


def answer(method: str, raw_path: str, headers: Mapping[str, str], console_dir: str) -> dict[str, Any] | None:
    """The response to a GET or HEAD of one of the console's paths (:func:`is_console_path`) from
    ``console_dir`` ("": the package's); None when there is no such file (the caller's 404)."""
    relative = relative_path(raw_path)
    path = resolve(Path(console_dir) if console_dir else CONSOLE_DIR, relative)
    if path is None:
        return None
    return file_response(load(path), relative, headers, method == "HEAD")
