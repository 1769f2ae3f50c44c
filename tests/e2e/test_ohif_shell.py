"""The stock OHIF build boots from our static routes, in French, talking only to us.

Serves ONLY bff.web.static (no DICOMweb: the study query fails and OHIF shows its
not-found page, which is fine here) on a real uvicorn server, then drives Chromium.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from starlette.applications import Starlette

from bff.settings import PROJECT_ROOT, Settings
from bff.web.static import compression_middleware, static_routes
from tests.servers import live_server

pytestmark = pytest.mark.e2e

OHIF_DIST = PROJECT_ROOT / "ohif-dist"
OHIF_CONFIG = PROJECT_ROOT / "ohif-config"
# The shell has no DICOMweb behind it, so OHIF shows its (untranslated) "not available"
# page: the language OHIF's i18next resolved is read from what it stores. French text on
# screen is asserted where a study is shown (tests/e2e/test_viewer.py: "Études").


@pytest.fixture(scope="module")
def shell_url() -> Iterator[str]:
    if not (OHIF_DIST / "index.html").is_file():
        pytest.skip("ohif-dist/ is missing: run scripts/fetch-ohif")
    settings = Settings.from_env(ohif_dist=OHIF_DIST, ohif_config=OHIF_CONFIG)
    app = Starlette(routes=static_routes(settings), middleware=[compression_middleware()])
    with live_server(app) as url:
        yield url


def test_ohif_boots_in_french_from_our_origin_only(shell_url: str, context: Any, page: Any) -> None:
    requests: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    origin = urlsplit(shell_url)

    page.goto(f"{shell_url}/viewer?StudyInstanceUIDs=1.2.3", wait_until="domcontentloaded")

    # OHIF's React root renders (boot takes a few seconds on 2 cores).
    page.wait_for_function(
        "() => { const r = document.getElementById('root'); return r && r.children.length > 0 }",
        timeout=30_000,
    )
    # The UI speaks French although the browser's locale is en-US and no ?lng= was given.
    page.wait_for_function("() => localStorage.getItem('i18nextLng') === 'fr'", timeout=30_000)

    # Our configuration was the one loaded (not the stock one), and OHIF used it: its
    # first DICOMweb query goes to the same-origin facade.
    assert page.evaluate("() => window.config.name") == "drimbox-viewer"
    assert any(urlsplit(u).path.startswith("/dicomweb/studies") for u in requests), requests

    # Nothing but our origin was contacted (no CDN, fonts, analytics, service worker).
    foreign = [
        u
        for u in requests
        if urlsplit(u).scheme not in {"data", "blob"}
        and (urlsplit(u).scheme, urlsplit(u).netloc) != (origin.scheme, origin.netloc)
    ]
    assert foreign == [], foreign


def test_language_chosen_by_the_user_is_kept(shell_url: str, page: Any) -> None:
    """``?lng=`` (and a stored choice) still wins over our French default."""
    page.goto(f"{shell_url}/viewer?StudyInstanceUIDs=1.2.3&lng=en-US")
    page.wait_for_function("() => localStorage.getItem('i18nextLng') === 'en-US'", timeout=30_000)
