"""The demo study through the BFF in Chromium: a rendered, non-blank image, in French,
with frames served lossy (HTJ2K) and nothing asked of the PACS by the browser
(DB.VI-CS.01 zero footprint, DB.VI-CS.17, spec 4.3.2)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conftest import Pacs

pytestmark = pytest.mark.e2e

#: Reads every cornerstone viewport canvas (2D, filled from cornerstone's offscreen
#: rendering) and counts the pixels that are not black.
CANVAS_PIXELS = """() => Array.from(document.querySelectorAll('canvas.cornerstone-canvas'))
  .map((c) => {
    const probe = document.createElement('canvas');
    probe.width = c.width; probe.height = c.height;
    const ctx = probe.getContext('2d');
    ctx.drawImage(c, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    let lit = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 30) lit++;
    return {width: c.width, height: c.height, lit};
  })"""


def wait_for_image(page: Any, timeout: float = 90) -> list[dict[str, int]]:
    deadline = time.monotonic() + timeout
    canvases: list[dict[str, int]] = []
    while time.monotonic() < deadline:
        canvases = page.evaluate(CANVAS_PIXELS)
        big = [c for c in canvases if c["width"] > 300]
        if big and big[0]["lit"] > 0.05 * big[0]["width"] * big[0]["height"]:
            return canvases
        page.wait_for_timeout(250)
    raise AssertionError(f"no image rendered within {timeout} s: {canvases}")


def test_demo_study_renders_in_french_with_lossy_frames(
    pacs: Pacs, viewer_url: str, context: Any, page: Any
) -> None:
    study = pacs.study
    ct_series = study.series_uids[-1]
    responses: list[Any] = []
    hosts: set[str] = set()
    context.on("request", lambda r: hosts.add(r.url.split("/")[2]))
    page.on("response", lambda r: responses.append(r) if "/frames/" in r.url else None)

    page.goto(
        f"{viewer_url}/viewer?StudyInstanceUIDs={study.study_uid}"
        f"&initialSeriesInstanceUID={ct_series}"
    )
    wait_for_image(page)

    # French UI on an English-speaking browser: the study panel.
    page.get_by_text("Études", exact=True).first.wait_for(timeout=10_000)
    # No onboarding tour (OHIF's, in English tool jargon, over a modal overlay that
    # repaints the page at every animation frame while it is open: issue 5).
    assert page.locator(".shepherd-element, .shepherd-modal-overlay-container").count() == 0
    # Frames were answered lossy, in the syntax OHIF was configured to ask for.
    frame_responses = [r for r in responses if r.status == 200]
    assert frame_responses, "OHIF fetched no frame"
    for response in frame_responses[:20]:
        # The demo CT (unsigned grey) is served JPEG-LS near-lossless (LOSSY_CODEC=jpegls).
        assert "transfer-syntax=1.2.840.10008.1.2.4.81" in response.headers["content-type"]
    # Zero footprint and no bypass: the browser only ever talks to the BFF.
    assert hosts == {viewer_url.split("/")[2]}
