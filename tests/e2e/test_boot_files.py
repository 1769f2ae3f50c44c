"""OHIF's boot files (ohif-config/boot-files.txt, bff/web/boot.py) match what the pinned
OHIF build really loads before its first DICOMweb request, and Chromium uses the
preloads the BFF announces (issue 5: first image within 4 s, DB.VI-SO.37 / DB.VI-CO.39).

``DRIMBOX_WRITE_BOOT_FILES=1 pytest tests/e2e/test_boot_files.py`` rewrites the list
from what this Chromium loads (after an OHIF upgrade).
"""

from __future__ import annotations

import os
import re
from typing import Any

import pytest

from bff.settings import PROJECT_ROOT
from bff.web.boot import BOOT_FILES, load_boot_files
from tests.conftest import Pacs
from tests.e2e.test_viewer import wait_for_image

pytestmark = pytest.mark.e2e

DIST = PROJECT_ROOT / "ohif-dist"
LISTING = PROJECT_ROOT / "ohif-config" / BOOT_FILES
#: Served from ohif-config/ per deployment, no-cache: not worth announcing.
NOT_BOOT = ("app-config.js",)
STATIC = re.compile(r"^/([A-Za-z0-9][A-Za-z0-9._-]*\.(?:js|css|woff2))$")


def _ohif_version() -> str:
    text = (PROJECT_ROOT / "ohif-config" / "ohif-version.env").read_text(encoding="utf-8")
    match = re.search(r"OHIF_VERSION=(\S+)", text)
    return match.group(1) if match else "?"


def test_boot_files_are_what_ohif_loads_and_preloads_are_used(
    pacs: Pacs, viewer_url: str, page: Any
) -> None:
    events: list[tuple[str, str]] = []  # (kind, path) in request order
    origin = viewer_url.rstrip("/")

    def on_request(request: Any) -> None:
        if request.url.startswith(origin):
            events.append(("request", request.url[len(origin) :].split("?")[0]))

    page.on("request", on_request)
    response = page.goto(f"{viewer_url}/viewer?StudyInstanceUIDs={pacs.study.study_uid}")
    assert response is not None and response.status == 200
    link = response.headers.get("link", "")
    wait_for_image(page)

    # Boot = what OHIF loads before it asks for series metadata (its QIDO may start a
    # little earlier; the page script's own requests are not OHIF's boot).
    before_dicomweb: list[str] = []
    for _, path in events:
        if path.startswith("/dicomweb/") and path.endswith("/metadata"):
            break
        match = STATIC.match(path)
        if match and match.group(1) not in (*before_dicomweb, *NOT_BOOT):
            before_dicomweb.append(match.group(1))
    loaded = {m.group(1) for _, p in events if (m := STATIC.match(p))}
    assert "app.bundle" in " ".join(before_dicomweb), events[:20]

    if os.environ.get("DRIMBOX_WRITE_BOOT_FILES") == "1":
        LISTING.write_text(
            f"# OHIF {_ohif_version()}: files /viewer loads before it asks for series\n"
            "# metadata, preloaded by the BFF (bff/web/boot.py). Regenerate with\n"
            "# DRIMBOX_WRITE_BOOT_FILES=1 pytest tests/e2e/test_boot_files.py\n"
            + "".join(f"{name}\n" for name in before_dicomweb),
            encoding="utf-8",
        )
        pytest.skip(f"wrote {len(before_dicomweb)} boot files to {LISTING}")

    listed = load_boot_files(PROJECT_ROOT / "ohif-config", DIST)
    assert len(listed) >= 20, "ohif-config/boot-files.txt lost its entries"
    # Nothing OHIF needs to boot is missing from the list, and nothing listed is unused.
    assert set(before_dicomweb) <= set(listed), set(before_dicomweb) - set(listed)
    assert set(listed) <= loaded, set(listed) - loaded
    # The viewer document announced every one of them ...
    for name in listed:
        assert f"</{name}>; rel=preload" in link, name
    # ... and no file came over the network twice: the page's own load of a boot file is
    # the preload itself or a hit in the HTTP cache the preload filled (a preload with a
    # CORS mode the page does not use would be fetched again, transferSize > 0).
    timings = page.evaluate(
        """() => performance.getEntriesByType('resource')
             .map((e) => [new URL(e.name).pathname, e.transferSize])"""
    )
    transferred = [path for path, size in timings if size > 0]
    twice = [name for name in listed if transferred.count(f"/{name}") > 1]
    assert not twice, twice
    assert all(any(path == f"/{name}" for path, _ in timings) for name in listed)
