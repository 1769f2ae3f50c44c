"""Every SOP class of Tableau 4 (DB.VI-CS.30) and every Basic Image Review pixel variant
(DB.VI-CS.31) renders in Chromium through the BFF; objects the viewer cannot show are
listed in French instead of silently missing.

The corpus (tests/corpus.py, one study per object) is loaded into the session's Orthanc
and each object is opened in the open-access viewer (one page per object, one browser
for all). An image must fill the viewport canvas with a visible pattern (lit pixels and
several distinct colours, so neither a black nor a uniform canvas passes), its frames
must have come from the BFF, and a multi-frame object must show all its frames
(OHIF's slice count in the overlay). The PDF must be in OHIF's PDF viewport, loaded
from the BFF's bulk data URL.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.conftest import Pacs
from tests.corpus import (
    BIR_VARIANTS,
    SOP_CLASSES,
    UNSUPPORTED,
    CorpusObject,
    palette_rgb,
    write_corpus,
)

pytestmark = pytest.mark.e2e

#: The largest cornerstone canvas: fraction of lit pixels and the number of distinct
#: colours (3 bits a channel) inside the bounding box of the lit pixels.
CANVAS_PATTERN = """() => {
  const canvases = Array.from(document.querySelectorAll('canvas.cornerstone-canvas'));
  if (!canvases.length) return null;
  const c = canvases.sort((a, b) => b.width * b.height - a.width * a.height)[0];
  const probe = document.createElement('canvas');
  probe.width = c.width; probe.height = c.height;
  const ctx = probe.getContext('2d');
  ctx.drawImage(c, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  let lit = 0, x0 = c.width, y0 = c.height, x1 = -1, y1 = -1;
  for (let y = 0; y < c.height; y++) for (let x = 0; x < c.width; x++) {
    const i = 4 * (y * c.width + x);
    if (d[i] + d[i + 1] + d[i + 2] > 30) {
      lit++; x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x); y1 = Math.max(y1, y);
    }
  }
  const colours = new Set();
  for (let y = y0; y <= y1; y += 2) for (let x = x0; x <= x1; x += 2) {
    const i = 4 * (y * c.width + x);
    colours.add((d[i] >> 5) * 64 + (d[i + 1] >> 5) * 8 + (d[i + 2] >> 5));
  }
  return {width: c.width, height: c.height, lit: lit / (c.width * c.height),
          colours: colours.size};
}"""

#: OHIF's bottom-right overlay items of the first viewport (our Tableau 3 overlay).
OVERLAY_BOTTOM_RIGHT = """() => Array.from(document.querySelectorAll(
  '[data-cy="viewport-overlay-bottom-right"] .overlay-item'))
  .map((item) => item.textContent.replace(/\\s+/g, ' ').trim())"""

IMAGES = [s for s in SOP_CLASSES + BIR_VARIANTS if s.kind == "image"]

#: The panel (ohif-config/panel/) looks at OHIF's display sets: it has
#: subscribed to their events, and it looked at those already there when it did (in the
#: same task). Once this holds and the object is on screen, the notice is decided. (Found
#: by the panel's callback among OHIF's listeners: the page gives no other signal.)
PANEL_WATCHES_DISPLAY_SETS = """() => {
  const service = window.services && window.services.displaySetService;
  const added = service && service.listeners[service.EVENTS.DISPLAY_SETS_ADDED];
  return (added || []).some((l) => String(l.callback).includes('unsupportedLines'));
}"""


@pytest.fixture(scope="module")
def corpus(pacs: Pacs, tmp_path_factory: pytest.TempPathFactory) -> dict[str, CorpusObject]:
    objects = write_corpus(tmp_path_factory.mktemp("corpus"), seed=3)
    pacs.process.upload([o.path for o in objects])
    return {o.key: o for o in objects}


def wait_for_pattern(page: Any, timeout: float = 45) -> dict[str, Any]:
    """The canvas once it shows a pattern (AssertionError with the last probe if not)."""
    deadline = time.monotonic() + timeout
    probe: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        probe = page.evaluate(CANVAS_PATTERN)
        if probe and probe["width"] > 300 and probe["lit"] > 0.05 and probe["colours"] >= 2:
            return probe
        page.wait_for_timeout(250)
    raise AssertionError(f"no image with a visible pattern within {timeout} s: {probe}")


@pytest.mark.parametrize("key", [s.key for s in IMAGES])
def test_image_renders(
    key: str, corpus: dict[str, CorpusObject], viewer_url: str, page: Any
) -> None:
    obj = corpus[key]
    frames: list[Any] = []
    page.on(
        "response",
        lambda r: frames.append(r) if f"/instances/{obj.sop_uid}/frames/" in r.url else None,
    )
    page.goto(f"{viewer_url}/viewer?StudyInstanceUIDs={obj.study_uid}")
    probe = wait_for_pattern(page)
    assert probe["colours"] >= 2, probe
    ok = [r for r in frames if r.status == 200]
    assert ok, f"{obj.label}: no frame of {obj.sop_uid} came from the BFF"
    assert all(r.status == 200 for r in frames), [(r.url, r.status) for r in frames]
    if obj.number_of_frames > 1:
        expected = f"Coupe : 1/{obj.number_of_frames}"
        deadline = time.monotonic() + 15
        items: list[str] = page.evaluate(OVERLAY_BOTTOM_RIGHT)
        while not any(i.endswith(f"/{obj.number_of_frames}") for i in items):
            if time.monotonic() > deadline:
                break
            page.wait_for_timeout(250)
            items = page.evaluate(OVERLAY_BOTTOM_RIGHT)
        assert any(
            i.startswith("Coupe : ") and i.endswith(f"/{obj.number_of_frames}") for i in items
        ), (
            expected,
            items,
        )


#: The first viewport's image as cornerstone holds it (decoded pixels, from its image
#: cache) and shows it (the canvas), at image points [row, column].
IMAGE_POINTS = """(points) => {
  const cs = window.cornerstone;
  const [element] = cs ? cs.getEnabledElements() : [];
  const vp = element && element.viewport;
  const imageId = vp && vp.getCurrentImageId && vp.getCurrentImageId();
  const image = imageId && cs.cache.getImage(imageId);
  if (!image) return null;
  const pixels = image.getPixelData();
  const samples = pixels.length / (image.rows * image.columns);
  const canvas = vp.canvas;
  const copy = document.createElement('canvas');
  copy.width = canvas.width; copy.height = canvas.height;
  const ctx = copy.getContext('2d');
  ctx.drawImage(canvas, 0, 0);
  const scale = canvas.width / canvas.clientWidth;
  const {imageData} = vp.getImageData();
  const decoded = points.map(([r, c]) => {
    const i = samples * (r * image.columns + c);
    return [pixels[i], pixels[i + 1], pixels[i + 2]];
  });
  const shown = points.map(([r, c]) => {
    const p = vp.worldToCanvas(imageData.indexToWorld([c, r, 0]));
    const d = ctx.getImageData(Math.round(p[0] * scale), Math.round(p[1] * scale), 1, 1).data;
    return [d[0], d[1], d[2]];
  });
  return {color: image.color, samples, rows: image.rows, columns: image.columns, decoded, shown};
}"""

#: True once cornerstone holds the image and the canvas shows its decoded colours
#: (within 2 levels at every point).
CANVAS_SHOWS_DECODED = (
    "(points) => { const p = (" + IMAGE_POINTS + ")(points); return !!p && p.shown.every((px, i) =>"
    " px.every((v, k) => Math.abs(v - p.decoded[i][k]) <= 2)); }"
)

#: Centres of the 8x8-pixel blocks of the palette objects (tests/corpus.palette_blocks):
#: a diagonal, the corners and a few more, each block its own palette entry.
BLOCK_CENTRES = [
    (8 * r + 3, 8 * c + 4)
    for r, c in [(i, i) for i in range(8)] + [(0, 7), (7, 0), (2, 5), (5, 2), (3, 6), (6, 1)]
]


@pytest.mark.parametrize("key", ["bir-palette-implicit", "bir-palette-segmented"])
def test_palette_image_shows_its_palette_colours(
    key: str, corpus: dict[str, CorpusObject], viewer_url: str, page: Any
) -> None:
    """Issue 14: an implicit-VR palette image (Orthanc leaves its descriptors out of the
    metadata) and one with only segmented tables (which stock OHIF cannot expand) display
    with their palette's colours: cornerstone's decoded image is exactly the palette
    lookup (pydicom's apply_color_lut, 16-bit entries to 8 bits as cornerstone does), the
    canvas shows those colours at the block centres, and the page throws nothing."""
    obj = corpus[key]
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{viewer_url}/viewer?StudyInstanceUIDs={obj.study_uid}")
    wait_for_pattern(page)
    expected = palette_rgb(obj.path)[0]
    want = [[int(v) for v in expected[r, c]] for r, c in BLOCK_CENTRES]
    # The canvas is drawn in an animation frame after the image is decoded: wait (on
    # animation frames, in the page) until it shows the decoded colours; if it never
    # does, the assertions below say how it differs.
    with contextlib.suppress(PlaywrightTimeout):
        page.wait_for_function(CANVAS_SHOWS_DECODED, arg=BLOCK_CENTRES, timeout=15_000)
    probe = page.evaluate(IMAGE_POINTS, BLOCK_CENTRES)
    assert probe is not None, "no image in cornerstone"
    assert probe["color"] and probe["samples"] >= 3, probe
    assert (probe["rows"], probe["columns"]) == expected.shape[:2]
    assert probe["decoded"] == want, (probe["decoded"], want)
    worst = max(
        abs(s - w)
        for shown, px in zip(probe["shown"], want, strict=True)
        for s, w in zip(shown, px, strict=True)
    )
    assert worst <= 2, (probe["shown"], want)
    assert not errors, errors


def test_pdf_is_shown_from_the_bff(
    corpus: dict[str, CorpusObject], viewer_url: str, page: Any
) -> None:
    """OHIF's PDF viewport (an <object type="application/pdf">) shows the document fetched
    through the BFF's bulk data URL of (0042,0011), never from the PACS."""
    obj = corpus["pdf"]
    bulk: list[Any] = []
    hosts: set[str] = set()
    page.on(
        "request", lambda r: hosts.add(r.url.split("/")[2]) if r.url.startswith("http") else None
    )
    page.on("response", lambda r: bulk.append(r) if "/bulk/00420011" in r.url else None)
    page.goto(f"{viewer_url}/viewer?StudyInstanceUIDs={obj.study_uid}")
    pdf = page.locator('object[type="application/pdf"]')
    pdf.wait_for(state="attached", timeout=45_000)
    deadline = time.monotonic() + 20
    while not (pdf.get_attribute("data") or "").startswith("blob:") and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    assert (pdf.get_attribute("data") or "").startswith("blob:")
    assert [r.status for r in bulk] and all(r.status == 200 for r in bulk), bulk
    assert bulk[0].url.startswith(f"{viewer_url}/dicomweb/studies/{obj.study_uid}/")
    size = page.evaluate(
        """async () => { const o = document.querySelector('object[type="application/pdf"]');
           const b = await (await fetch(o.data)).arrayBuffer();
           return [b.byteLength, String.fromCharCode(...new Uint8Array(b.slice(0, 5)))]; }"""
    )
    assert size[1] == "%PDF-", size
    assert hosts == {viewer_url.split("/")[2]}


#: The French line the page shows for each object the viewer cannot show.
EXPLANATIONS = {
    "raw": "Cet objet (Données brutes) ne peut pas être affiché dans la visionneuse.",
    "unserved-syntax": "Cette image (syntaxe de transfert 1.2.840.10008.1.2.4.92) ne peut "
    "pas être affichée dans la visionneuse.",
}


@pytest.mark.parametrize("key", [s.key for s in UNSUPPORTED])
def test_object_that_cannot_be_shown_is_listed_in_french(
    key: str, corpus: dict[str, CorpusObject], viewer_url: str, page: Any
) -> None:
    """Stock OHIF gives raw data a blank viewport and an English tooltip, and an image in
    a syntax nobody decodes a blank viewport: the page lists them, in French (DB.VI-CS.30)."""
    obj = corpus[key]
    page.goto(f"{viewer_url}/viewer?StudyInstanceUIDs={obj.study_uid}")
    notice = page.locator("#drimbox-unsupported")
    notice.wait_for(state="visible", timeout=45_000)
    assert notice.locator("h3").inner_text() == "Objets non affichables"
    items = notice.locator(".drimbox-unsupported-item").all_inner_texts()
    description = {"raw": "Données brutes", "unserved-syntax": "Syntaxe non prise en charge"}
    assert items == [f"{description[key]} : {EXPLANATIONS[key]}"], items


def test_structured_report_is_shown_as_text_and_not_listed(
    corpus: dict[str, CorpusObject], viewer_url: str, page: Any
) -> None:
    """Stock OHIF shows a Basic Text SR as text: not an object to list as unsupported."""
    obj = corpus["sr"]
    page.goto(f"{viewer_url}/viewer?StudyInstanceUIDs={obj.study_uid}")
    page.get_by_text("Examen normal.").first.wait_for(timeout=45_000)
    page.wait_for_function(PANEL_WATCHES_DISPLAY_SETS, timeout=30_000)
    assert page.locator("#drimbox-unsupported").is_hidden()


def test_images_are_not_listed_as_unsupported(
    corpus: dict[str, CorpusObject], viewer_url: str, page: Any
) -> None:
    """The notice is not a blanket warning: a displayable image has none."""
    obj = corpus["ct"]
    page.goto(f"{viewer_url}/viewer?StudyInstanceUIDs={obj.study_uid}")
    wait_for_pattern(page)
    page.wait_for_function(PANEL_WATCHES_DISPLAY_SETS, timeout=30_000)
    assert page.locator("#drimbox-unsupported").count() == 0
