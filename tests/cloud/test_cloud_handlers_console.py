"""The console's static files: ``GET /`` and ``GET /console/<path>`` from the console directory
(a temporary one through ``CloudSettings.console_dir``, and the package's own ``vendor/``), public,
with content types, cache headers, ETags and gzip; no way out of the directory (``..``, encoded or
not, absolute paths, hidden names, symlinks); a JSON 404 for anything else. Over the local server
too, where the console's files are never rate limited."""

from __future__ import annotations

import gzip
import hashlib
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
from cloud_handler_support import Cloud, cloud_fixture  # noqa: F401

from cloud_functions.gatewayevents import http_event, response_parts
from cloud_functions.handlers import CloudApp
from cloud_functions.handlers.app import is_public
from cloud_functions.handlers.console import CONSOLE_DIR, VENDOR_CACHE, accepts_gzip, resolve
from cloud_functions.local import serve
from cloud_functions.localserver import ServerSettings

PAGE = "<!doctype html><title>console</title>" + "<p>graph</p>" * 200
FILES = {
    "index.html": PAGE,
    "app.js": "export const answer = 42;\n" * 100,
    "style.css": "body { color: black; }\n",
    "icon.svg": "<svg xmlns='http://www.w3.org/2000/svg'/>",
    "data/sample.json": '{"a": 1}',
    "notes.bin": "\x00\x01",
    "vendor/lib.min.js": "window.lib = 1;",
    ".hidden": "secret",
}


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "console"
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    (tmp_path / "outside.txt").write_text("outside", encoding="utf-8")
    (root / "out.txt").symlink_to(tmp_path / "outside.txt")
    (root / "outdir").symlink_to(tmp_path)
    (root / "alias.js").symlink_to(root / "app.js")
    return root


def get(app: CloudApp, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    listed = [("Host", "cloud.test"), *((k.replace("_", "-"), v) for k, v in headers.items())]
    status, pairs, body = response_parts(app(http_event("GET", path, listed, b"", "10.1.2.3"), None))
    return status, {k.lower(): v for k, v in pairs}, body


@pytest.fixture
def app(cloud: Cloud, site: Path) -> CloudApp:
    return CloudApp(cloud.store, replace(cloud.app.settings, console_dir=str(site)))


@pytest.mark.parametrize(
    ("path", "name", "content_type"),
    [
        ("/", "index.html", "text/html; charset=utf-8"),
        ("/console/index.html", "index.html", "text/html; charset=utf-8"),
        ("/console/app.js", "app.js", "text/javascript; charset=utf-8"),
        ("/console/style.css", "style.css", "text/css; charset=utf-8"),
        ("/console/icon.svg", "icon.svg", "image/svg+xml"),
        ("/console/data/sample.json", "data/sample.json", "application/json"),
        ("/console/notes.bin", "notes.bin", "application/octet-stream"),
        ("/console/vendor/lib.min.js", "vendor/lib.min.js", "text/javascript; charset=utf-8"),
        ("/console/alias.js", "app.js", "text/javascript; charset=utf-8"),  # a symlink inside
        ("/console/data%2Fsample.json", "data/sample.json", "application/json"),
    ],
)
def test_files_are_served_with_their_types(
    app: CloudApp, site: Path, path: str, name: str, content_type: str
) -> None:
    status, headers, body = get(app, path)
    assert status == 200, body
    assert headers["content-type"] == content_type
    assert body == (site / name).read_bytes()
    assert headers["x-content-type-options"] == "nosniff"
    assert "content-encoding" not in headers  # the client did not ask for gzip


def test_cache_headers(app: CloudApp) -> None:
    assert get(app, "/")[1]["cache-control"] == "no-cache"
    assert get(app, "/console/app.js")[1]["cache-control"] == "no-cache"
    assert get(app, "/console/vendor/lib.min.js")[1]["cache-control"] == VENDOR_CACHE


def test_head_is_get_without_the_body(app: CloudApp) -> None:
    listed = [("Host", "cloud.test")]
    status, headers, body = response_parts(
        app(http_event("HEAD", "/console/app.js", listed, b"", "10.1.2.3"))
    )
    assert (
        status == 200
        and body == b""
        and headers
        and dict(headers)["Content-Type"].startswith("text/javascript")
    )


def test_etags_answer_304(app: CloudApp, site: Path) -> None:
    _, headers, _ = get(app, "/console/app.js")
    etag = headers["etag"]
    status, again, body = get(app, "/console/app.js", If_None_Match=etag)
    assert status == 304 and body == b"" and again["etag"] == etag
    assert get(app, "/console/app.js", If_None_Match='"other"')[0] == 200
    (site / "app.js").write_text("export const answer = 43;\n", encoding="utf-8")  # a new version
    status, changed, body = get(app, "/console/app.js", If_None_Match=etag)
    assert status == 200 and changed["etag"] != etag and b"43" in body


def test_gzip_when_accepted(app: CloudApp, site: Path) -> None:
    status, headers, body = get(app, "/console/app.js", Accept_Encoding="gzip, deflate, br")
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert gzip.decompress(body) == (site / "app.js").read_bytes()
    assert headers["vary"] == "Accept-Encoding"
    plain_etag = get(app, "/console/app.js")[1]["etag"]
    assert headers["etag"] == plain_etag[:-1] + '-gz"'  # another representation, another tag
    for etag in (plain_etag, headers["etag"], "W/" + headers["etag"]):
        assert get(app, "/console/app.js", Accept_Encoding="gzip", If_None_Match=etag)[0] == 304
    assert "content-encoding" not in get(app, "/console/app.js", Accept_Encoding="gzip;q=0")[1]
    assert "content-encoding" not in get(app, "/console/style.css", Accept_Encoding="gzip")[1]  # tiny
    assert accepts_gzip("br, *;q=0.5") and not accepts_gzip("identity") and not accepts_gzip("gzip;q=x")


@pytest.mark.parametrize(
    "path",
    [
        "/console/missing.js",
        "/console/",
        "/console/data",  # a directory
        "/console/data/",
        "/console/../handlers/app.py",
        "/console/data/../../handlers/app.py",
        "/console/%2e%2e/handlers/app.py",
        "/console/%2E%2E%2Fhandlers%2Fapp.py",
        "/console/./app.js",
        "/console//etc/passwd",
        "/console/%2Fetc%2Fpasswd",
        "/console/..%5Chandlers%5Capp.py",
        "/console/app.js%00.png",
        "/console/%ff%fe",
        "/console/.hidden",
        "/console/out.txt",  # a symlink out
        "/console/outdir/outside.txt",
        "/console/vendor/" + "a" * 2000,
    ],
)
def test_nothing_outside_and_nothing_missing(app: CloudApp, path: str) -> None:
    status, headers, body = get(app, path)
    assert status == 404, (path, body)
    assert headers["content-type"] == "application/json"
    assert b"outside" not in body and b"secret" not in body and b"import" not in body


def test_public_without_a_token_and_whatever_the_token(app: CloudApp, cloud: Cloud) -> None:
    assert is_public("/") and is_public("/console/app.js") and not is_public("/consolex")
    for headers in ({}, {"Authorization": "Bearer junk"}, {"Authorization": f"Bearer {cloud.a.read_token}"}):
        assert get(app, "/console/app.js", **headers)[0] == 200
    posted = app(
        http_event("POST", "/console/app.js", [("Content-Type", "application/json")], b"{}", "1.2.3.4")
    )
    assert posted["statusCode"] == 404  # files are only read
    assert not is_public("/v1/session")
    assert get(app, "/consolex/app.js")[0] == 401  # not the console: a route like any other


def test_the_package_console_serves_the_vendored_libraries(cloud: Cloud) -> None:
    """The default console directory is the package's own (what the Lambda's zip carries)."""
    assert cloud.app.settings.console_dir == ""
    for name in ("cytoscape.min.js", "dagre.min.js", "cytoscape-svg.js"):
        status, headers, body = get(cloud.app, f"/console/vendor/{name}")
        assert status == 200 and headers["content-type"] == "text/javascript; charset=utf-8"
        assert body == (CONSOLE_DIR / "vendor" / name).read_bytes()
        assert headers["cache-control"] == VENDOR_CACHE
        expected = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        assert headers["etag"] == expected
    index = get(cloud.app, "/")
    assert index[0] == (200 if (CONSOLE_DIR / "index.html").is_file() else 404)


def test_resolve() -> None:
    assert resolve(CONSOLE_DIR, "vendor/dagre.min.js") == (CONSOLE_DIR / "vendor" / "dagre.min.js").resolve()
    for bad in ("", "vendor", "vendor/", "/vendor/dagre.min.js", "../console/vendor/dagre.min.js"):
        assert resolve(CONSOLE_DIR, bad) is None, bad


# --------------------------------------------------------------------------- over the local server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    settings = ServerSettings(workers=2, rate=1.0, burst=2)  # a tenant (or a source) gets 2 at once
    running = serve("127.0.0.1:0", tmp_path / "cloud.db", tmp_path / "admin.token", settings)
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{running.server_port}"
    finally:
        running.shutdown()
        running.server_close()
        thread.join(5)


def test_the_local_server_serves_the_console_unlimited(server: str) -> None:
    with requests.Session() as http:
        replies: list[Any] = [http.get(f"{server}/console/vendor/dagre.min.js", timeout=10) for _ in range(6)]
        for reply in replies:
            assert reply.status_code == 200, reply.text[:200]
            assert reply.headers["content-type"] == "text/javascript; charset=utf-8"
            assert reply.headers["content-encoding"] == "gzip"  # requests asks for it, and undoes it
            assert reply.content == (CONSOLE_DIR / "vendor" / "dagre.min.js").read_bytes()
        etag = replies[0].headers["etag"]
        unchanged = http.get(
            f"{server}/console/vendor/dagre.min.js", headers={"If-None-Match": etag}, timeout=10
        )
        assert unchanged.status_code == 304 and unchanged.content == b""
        missing = http.get(f"{server}/console/%2e%2e/handlers/app.py", timeout=10)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        # the API itself stays limited: the same source without a token is refused past its burst
        statuses = [http.get(f"{server}/v1/session", timeout=10).status_code for _ in range(6)]
        assert set(statuses) == {401, 429}
