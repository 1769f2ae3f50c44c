"""bff.web.boot: OHIF's boot files announced ahead (issue 5, DB.VI-SO.37 first image)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import Route

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*install `httpx2`.*")
    from starlette.testclient import TestClient

from bff.settings import Settings
from bff.web.boot import (
    BOOT_FILES,
    CACHE_PREFIX,
    REGISTER_PATH,
    SERVICE_WORKER_PATH,
    before_viewer_head,
    load_boot_files,
    preload_header,
    service_worker_js,
)
from bff.web.pages import profile_page
from bff.web.static import OhifSite, static_routes

BUNDLE = "app.bundle.0f6159c501addfe9.js"


def _tree(root: Path, listing: str) -> tuple[Path, Path]:
    dist, config = root / "ohif-dist", root / "ohif-config"
    dist.mkdir()
    config.mkdir()
    (dist / "index.html").write_text("<!doctype html><title>OHIF</title>", encoding="utf-8")
    for name in (BUNDLE, "2623.css", "a34f9d1faa5f3315.woff2", "89.bundle.b327bf.js"):
        (dist / name).write_text("x", encoding="utf-8")
    (config / "app-config.js").write_text("window.config = {};", encoding="utf-8")
    (config / BOOT_FILES).write_text(listing, encoding="utf-8")
    return dist, config


def test_only_plain_names_of_files_in_the_build_are_kept(tmp_path: Path) -> None:
    dist, config = _tree(
        tmp_path,
        "# OHIF 3.13.2\n"
        f"{BUNDLE}\n"
        "2623.css\n\n"
        "a34f9d1faa5f3315.woff2\n"
        "gone.bundle.js\n"  # not in this build
        "../secret.js\n"  # not a plain name
        "assets/x.js\n"
        "index.html\n"  # not a boot file kind
        "evil.js>; rel=preload\n"
        f"{BUNDLE}\n",  # once
    )
    assert load_boot_files(config, dist) == (BUNDLE, "2623.css", "a34f9d1faa5f3315.woff2")
    (config / BOOT_FILES).unlink()
    assert load_boot_files(config, dist) == ()


def test_preload_header_and_the_head_before_the_viewer_say_what_each_file_is() -> None:
    names = (BUNDLE, "2623.css", "a34f9d1faa5f3315.woff2")
    assert preload_header(names) == (
        f"</{BUNDLE}>; rel=preload; as=script, </2623.css>; rel=preload; as=style, "
        "</a34f9d1faa5f3315.woff2>; rel=preload; as=font; crossorigin"
    )
    assert preload_header(()) == ""
    tags = before_viewer_head(names).splitlines()
    assert tags == [
        f'<link rel="prefetch" href="/{BUNDLE}" as="script">',
        '<link rel="prefetch" href="/2623.css" as="style">',
        '<link rel="prefetch" href="/a34f9d1faa5f3315.woff2" as="font" crossorigin>',
        f'<script src="{REGISTER_PATH}" async></script>',
    ]
    assert before_viewer_head(()) == ""


def _cache_name(script: str) -> str:
    match = re.search(r"const CACHE = \"(" + CACHE_PREFIX + r"[0-9a-f]{16})\";", script)
    assert match is not None, script[:300]
    return match.group(1)


def test_the_boot_worker_caches_the_listed_files_and_answers_nothing_else() -> None:
    names = (BUNDLE, "2623.css")
    script = service_worker_js(names)
    assert f'const FILES = ["/{BUNDLE}", "/2623.css"];' in script
    # Images, metadata, the API and the login never reach the worker (static routes).
    assert 'const NETWORK_ONLY = ["/dicomweb/*", "/api/*", "/auth/*", "/consumer/*"];' in script
    # Its fetch handler answers only GETs of those exact paths, from its own cache.
    assert "!PATHS.has(url.pathname)" in script and "url.search" in script
    # Another OHIF (another list): another cache; the worker deletes the old ones.
    assert _cache_name(script) == _cache_name(service_worker_js(names))
    assert _cache_name(script) != _cache_name(service_worker_js((BUNDLE,)))
    assert "key.startsWith(" in script and "key !== CACHE" in script


def test_the_boot_worker_and_its_registration_are_served_uncached(tmp_path: Path) -> None:
    dist, config = _tree(tmp_path, f"{BUNDLE}\n2623.css\n")
    settings = Settings.from_env({}, mode="demo", ohif_dist=dist, ohif_config=config)
    app = Starlette(routes=static_routes(settings))
    with TestClient(app) as client:
        worker = client.get(SERVICE_WORKER_PATH)
        register = client.get(REGISTER_PATH)
    for response in (worker, register):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/javascript")
        assert response.headers["cache-control"] == "no-cache"
    assert worker.text == service_worker_js((BUNDLE, "2623.css"))
    assert f"register('{SERVICE_WORKER_PATH}', {{ scope: '/' }})" in register.text


def test_ohif_index_carries_the_preload_header_other_files_do_not(tmp_path: Path) -> None:
    dist, config = _tree(tmp_path, f"{BUNDLE}\n2623.css\n")
    settings = Settings.from_env({}, mode="demo", ohif_dist=dist, ohif_config=config)
    site = OhifSite(settings)
    app = Starlette(routes=[Route("/guarded", site.index), *site.routes()])
    expected = f"</{BUNDLE}>; rel=preload; as=script, </2623.css>; rel=preload; as=style"
    with TestClient(app) as client:
        for path in ("/viewer?StudyInstanceUIDs=1.2.3", "/index.html", "/guarded"):
            response = client.get(path)
            assert response.status_code == 200 and "OHIF" in response.text
            assert response.headers["link"] == expected, path
        assert "link" not in client.get(f"/{BUNDLE}").headers
        assert "link" not in client.get("/app-config.js").headers


def test_profile_page_prefetches_the_viewer_while_the_user_signs_in() -> None:
    head = before_viewer_head((BUNDLE,))
    page = profile_page(csrf_token="t", fc_enabled=False, head=head)
    assert head in page.split("</head>")[0]
    assert "<link rel" not in profile_page(csrf_token="t", fc_enabled=False)
