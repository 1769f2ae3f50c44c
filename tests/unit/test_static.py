"""bff.web.static: OHIF served at the origin root (caching, SPA fallback, traversal, gzip)."""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Scope

with warnings.catch_warnings():
    # starlette 1.x asks for the `httpx2` package for its TestClient and warns when it
    # falls back to `httpx` (the locked dependency); the behaviour is the same.
    warnings.filterwarnings("ignore", message=".*install `httpx2`.*")
    from starlette.testclient import TestClient

from bff.settings import PROJECT_ROOT, Settings
from bff.web.static import (
    CACHE_IMMUTABLE,
    CACHE_NO_CACHE,
    CACHE_SHORT,
    PANEL_FILES,
    PANEL_PREFIX,
    compression_middleware,
    static_routes,
)

INDEX = b"<!doctype html><html><body><div id='root'></div></body></html>"
BUNDLE_NAME = "app.bundle.0f6159c501addfe9.js"
BUNDLE = b"console.log('ohif');\n" * 200  # > 1 KiB, compressible
WASM_NAME = "0ddf166f7a343eda.wasm"
WASM = b"\x00asm\x01\x00\x00\x00" + b"\x00" * 64
FRAME = bytes(range(256)) * 16  # 4 KiB of "already compressed" pixel data


def _dist(root: Path) -> Path:
    dist = root / "ohif-dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_bytes(INDEX)
    (dist / BUNDLE_NAME).write_bytes(BUNDLE)
    (dist / WASM_NAME).write_bytes(WASM)
    (dist / "1602.css").write_text("body{color:black}", encoding="utf-8")
    (dist / "assets" / "favicon.ico").write_bytes(b"ico")
    (dist / ".ohif-integrity").write_text("sha512-x\n", encoding="utf-8")
    return dist


def _config(root: Path) -> Path:
    config = root / "ohif-config"
    config.mkdir()
    (config / "app-config.js").write_text("window.config = {};\n", encoding="utf-8")
    return config


async def _frame(request: Request) -> Response:
    return Response(
        FRAME,
        media_type='multipart/related; type="application/octet-stream"; boundary=x',
    )


async def _metadata(request: Request) -> Response:
    return JSONResponse([{"00080018": {"vr": "UI", "Value": ["1.2.3"]}}] * 50)


def _client(dist: Path, config: Path) -> TestClient:
    settings = Settings.from_env({}, ohif_dist=dist, ohif_config=config)
    routes = [
        Route("/dicomweb/studies/1/series/2/instances/3/frames/1", _frame),
        Route("/dicomweb/studies/1/metadata", _metadata),
        *static_routes(settings),  # mounted last
    ]
    return TestClient(Starlette(routes=routes, middleware=[compression_middleware()]))


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    return _client(_dist(tmp_path), _config(tmp_path))


def test_index_at_root_is_no_cache(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert r.content == INDEX
    assert r.headers["cache-control"] == CACHE_NO_CACHE
    assert r.headers["content-type"].startswith("text/html")


def test_hashed_bundle_is_immutable_js(client: TestClient) -> None:
    r = client.get(f"/{BUNDLE_NAME}")
    assert r.status_code == 200
    assert r.content == BUNDLE
    assert r.headers["cache-control"] == CACHE_IMMUTABLE
    assert r.headers["content-type"].startswith("text/javascript")


def test_wasm_is_application_wasm_and_immutable(client: TestClient) -> None:
    r = client.get(f"/{WASM_NAME}")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/wasm"
    assert r.headers["cache-control"] == CACHE_IMMUTABLE
    assert r.content == WASM


def test_unhashed_static_files_get_a_short_max_age(client: TestClient) -> None:
    for path in ("/1602.css", "/assets/favicon.ico"):
        r = client.get(path)
        assert r.status_code == 200, path
        assert r.headers["cache-control"] == CACHE_SHORT, path


def test_etag_revalidation_answers_304(client: TestClient) -> None:
    first = client.get("/")
    again = client.get("/", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["cache-control"] == CACHE_NO_CACHE


def test_head_is_supported(client: TestClient) -> None:
    r = client.head(f"/{BUNDLE_NAME}")
    assert r.status_code == 200
    assert r.content == b""


@pytest.mark.parametrize("path", ["/viewer", "/viewer/", "/segmentation/x", "/notfoundstudy"])
def test_spa_fallback_serves_index(client: TestClient, path: str) -> None:
    r = client.get(path, params={"StudyInstanceUIDs": "1.2.3"})
    assert r.status_code == 200
    assert r.content == INDEX
    assert r.headers["cache-control"] == CACHE_NO_CACHE


@pytest.mark.parametrize(
    "path", ["/missing.js", "/assets/nope.png", "/ab.bundle.0123456789abcdef.js"]
)
def test_unknown_file_like_paths_are_404(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404
    assert r.content != INDEX


@pytest.mark.parametrize("path", ["/dicomweb", "/dicomweb/studies/9/series", "/api/unknown"])
def test_api_prefixes_never_fall_back_to_index(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404
    assert r.content != INDEX


@pytest.mark.parametrize(
    "path",
    [
        "/../settings.py",
        "/%2e%2e/settings.py",
        "/%2E%2E/%2e%2e/bff/settings.py",
        "/assets/..%2f..%2fsecret.txt",
        "/.ohif-integrity",
        "/assets/%5c..%5csecret.txt",
    ],
)
def test_traversal_attempts_are_refused(tmp_path: Path, path: str) -> None:
    dist = _dist(tmp_path)
    (tmp_path / "settings.py").write_text("SECRET = 1\n", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("SECRET\n", encoding="utf-8")
    client = _client(dist, _config(tmp_path))
    r = client.get(path)
    assert r.status_code == 404
    assert b"SECRET" not in r.content
    assert b"sha512" not in r.content


def test_raw_dotdot_path_in_asgi_scope_is_refused(tmp_path: Path) -> None:
    """Bypass client-side URL normalisation: put ``..`` straight into the ASGI scope."""
    dist = _dist(tmp_path)
    (tmp_path / "settings.py").write_text("SECRET = 1\n", encoding="utf-8")
    app = _client(dist, _config(tmp_path)).app
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/assets/../../settings.py",
        "raw_path": b"/assets/../../settings.py",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 1234),
    }
    anyio.run(app, scope, receive, send)
    assert sent[0]["status"] == 404
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert b"SECRET" not in body


def test_symlink_out_of_dist_is_refused(tmp_path: Path) -> None:
    dist = _dist(tmp_path)
    (tmp_path / "secret.txt").write_text("SECRET\n", encoding="utf-8")
    (dist / "leak.txt").symlink_to(tmp_path / "secret.txt")
    r = _client(dist, _config(tmp_path)).get("/leak.txt")
    assert r.status_code == 404
    assert b"SECRET" not in r.content


def test_app_config_is_served_from_ohif_config_no_cache(client: TestClient) -> None:
    r = client.get("/app-config.js")
    assert r.status_code == 200
    assert r.content == b"window.config = {};\n"
    assert r.headers["cache-control"] == CACHE_NO_CACHE
    assert r.headers["content-type"].startswith("text/javascript")


def test_app_config_of_the_dist_is_not_the_one_served(tmp_path: Path) -> None:
    dist = _dist(tmp_path)
    (dist / "app-config.js").write_text("window.config = {stock: true};", encoding="utf-8")
    r = _client(dist, _config(tmp_path)).get("/app-config.js")
    assert b"stock" not in r.content


def _panel_config(root: Path) -> Path:
    """ohif-config/ with two panel files, and files beside them that must never be served."""
    config = _config(root)
    panel = config / "panel"
    panel.mkdir()
    (panel / "main.js").write_text("import './dom.js';\n", encoding="utf-8")
    (panel / "panel.css").write_text("#drimbox-progress{right:12px}\n", encoding="utf-8")
    (panel / "notes.js").write_text("SECRET\n", encoding="utf-8")
    (config / "package.json").write_text('{"SECRET": 1}\n', encoding="utf-8")
    (root / "secret.js").write_text("SECRET\n", encoding="utf-8")
    return config


def test_panel_modules_are_served_no_cache_as_javascript(tmp_path: Path) -> None:
    client = _client(_dist(tmp_path), _panel_config(tmp_path))
    r = client.get(PANEL_PREFIX + "main.js")
    assert r.status_code == 200
    assert r.content == b"import './dom.js';\n"
    assert r.headers["cache-control"] == CACHE_NO_CACHE
    # A module script is refused unless served with a JavaScript MIME type.
    assert r.headers["content-type"].startswith("text/javascript")
    assert r.headers["x-content-type-options"] == "nosniff"
    css = client.get(PANEL_PREFIX + "panel.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert css.headers["cache-control"] == CACHE_NO_CACHE
    assert client.head(PANEL_PREFIX + "main.js").status_code == 200
    # Listed but absent from this ohif-config/: not found.
    assert client.get(PANEL_PREFIX + "tools.js").status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        PANEL_PREFIX + "notes.js",  # in ohif-config/panel/, not listed
        PANEL_PREFIX + "package.json",
        PANEL_PREFIX + "..%2fpackage.json",
        PANEL_PREFIX + "%2e%2e/package.json",
        PANEL_PREFIX + "../../secret.js",
        PANEL_PREFIX + "..%2f..%2fsecret.js",
        "/drimbox/package.json",
        "/drimbox/panel/../../secret.js",
    ],
)
def test_only_listed_panel_files_are_served(tmp_path: Path, path: str) -> None:
    client = _client(_dist(tmp_path), _panel_config(tmp_path))
    r = client.get(path)
    assert r.status_code == 404, path
    assert b"SECRET" not in r.content


def test_the_panel_list_is_the_panel_directory() -> None:
    """Every module and stylesheet of ohif-config/panel/ is served, and only those."""
    panel = PROJECT_ROOT / "ohif-config" / "panel"
    present = {p.name for p in panel.iterdir() if p.suffix in (".js", ".css")}
    assert present == PANEL_FILES


def test_js_is_gzipped(client: TestClient) -> None:
    r = client.get(f"/{BUNDLE_NAME}", headers={"Accept-Encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip"
    assert "Accept-Encoding" in r.headers["vary"]
    assert r.content == BUNDLE  # httpx decodes transparently
    assert int(r.headers["content-length"]) < len(BUNDLE)


def test_dicom_json_is_gzipped(client: TestClient) -> None:
    r = client.get("/dicomweb/studies/1/metadata", headers={"Accept-Encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip"


def test_multipart_frames_are_not_gzipped(client: TestClient) -> None:
    r = client.get(
        "/dicomweb/studies/1/series/2/instances/3/frames/1",
        headers={"Accept-Encoding": "gzip, br"},
    )
    assert r.status_code == 200
    assert "content-encoding" not in r.headers
    assert r.headers["content-length"] == str(len(FRAME))
    assert r.content == FRAME


def test_no_gzip_without_accept_encoding(client: TestClient) -> None:
    r = client.get(f"/{BUNDLE_NAME}", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in r.headers
    assert r.content == BUNDLE


def test_precompressed_sibling_is_preferred(tmp_path: Path) -> None:
    dist = _dist(tmp_path)
    marker = b"console.log('from the .gz sibling');\n" * 100
    (dist / f"{BUNDLE_NAME}.gz").write_bytes(gzip.compress(marker))
    client = _client(dist, _config(tmp_path))
    r = client.get(f"/{BUNDLE_NAME}", headers={"Accept-Encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip"
    assert r.headers["content-type"].startswith("text/javascript")
    assert r.headers["cache-control"] == CACHE_IMMUTABLE
    assert r.content == marker  # decoded once: not gzipped twice
    plain = client.get(f"/{BUNDLE_NAME}", headers={"Accept-Encoding": "identity"})
    assert plain.content == BUNDLE
    refused = client.get(f"/{BUNDLE_NAME}", headers={"Accept-Encoding": "gzip;q=0"})
    assert refused.content == BUNDLE


def test_missing_dist_answers_french_503(tmp_path: Path) -> None:
    client = _client(tmp_path / "nowhere", _config(tmp_path))
    for path in ("/", "/viewer"):
        r = client.get(path)
        assert r.status_code == 503
        assert r.headers["content-type"].startswith("text/html")
        assert "scripts/fetch-ohif" in r.text
        assert 'lang="fr"' in r.text
        assert "Visionneuse indisponible" in r.text
    # API paths keep their own answers even then.
    assert client.get("/dicomweb/unknown").status_code == 404
