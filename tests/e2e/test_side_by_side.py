"""Two series of one exam at once, side by side in one tab (DB.VI-CS.36), in Chromium, on
the Source viewer and on the Consumer: the user picks a 1x2 layout with OHIF's layout
tool ("Changer la disposition"), selects the right-hand viewport and double-clicks the
other series' thumbnail; each viewport then shows its own series (overlay and pixels).
The same way, the exam's report (an Encapsulated PDF) beside its images (DB.VI-CS.35),
shown by Chromium's PDF viewer."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import generate_uid

from bff.settings import PROJECT_ROOT
from tests.conftest import Pacs
from tests.consumer_stack import DrimmStack
from tests.corpus import tiny_pdf
from tests.e2e.test_consumer_flow import handover
from tests.e2e.test_overlays import read_overlays
from tests.e2e.test_series_rules import THUMBNAIL
from tests.e2e.test_two_exams import SHOWN_STUDIES, open_exam
from tests.e2e.test_viewer import wait_for_image
from tests.series_data import Study, add_pdf, add_series, add_text_report
from tests.source_stack import SourceStack
from tests.waiting import poll

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def _needs_ohif() -> None:
    if not (PROJECT_ROOT / "ohif-dist" / "index.html").is_file():
        pytest.skip("ohif-dist/ is missing: run scripts/fetch-ohif")


def keep(page: Any, name: str) -> None:
    """With DRIMBOX_SCREENSHOTS=<dir>, keep what the user sees (docs, reviews)."""
    folder = os.environ.get("DRIMBOX_SCREENSHOTS")
    if folder:
        page.screenshot(path=str(Path(folder) / f"side-{name}.png"))


def choose_one_by_two(page: Any) -> None:
    """OHIF's layout tool: its custom grid, cell (column 1, row 0) is 1 row, 2 columns."""
    page.get_by_role("button", name="Changer la disposition").click()
    page.locator('[data-cy="Layout-1-0"]').click()
    panes = page.locator('[data-cy="viewport-pane"]')
    page.wait_for_function(
        "() => document.querySelectorAll('[data-cy=\"viewport-pane\"]').length === 2",
        timeout=15_000,
    )
    assert panes.count() == 2


def series_side_by_side(page: Any, left: tuple[str, str], right: tuple[str, str]) -> None:
    """In a 1x2 layout, put the series ``left`` (UID, number) in the left-hand viewport and
    ``right`` in the right-hand one, each by selecting its viewport and double-clicking the
    series' thumbnail; check both overlays and both drawn images. (OHIF fills a new
    viewport with the next series itself: the tests ask for the other order.)"""
    choose_one_by_two(page)
    for index, (_, number) in enumerate((left, right)):
        page.locator('[data-cy="viewport-pane"]').nth(index).click()
        page.locator(f'{THUMBNAIL}[data-series="{number}"]').dblclick()

    def each_its_own(overlays: list[dict[str, Any]]) -> bool:
        return (
            len(overlays) == 2
            and f"Série : {left[1]}" in overlays[0]["topLeft"]
            and f"Série : {right[1]}" in overlays[1]["topLeft"]
        )

    overlays = read_overlays(page, each_its_own)
    assert each_its_own(overlays), overlays

    def drawn() -> bool:
        views = sorted(page.evaluate(SHOWN_STUDIES), key=lambda v: v["x"])
        return [v["series"] for v in views] == [left[0], right[0]] and all(
            v["lit"] > 0.01 for v in views
        )

    assert poll(drawn, 60), page.evaluate(SHOWN_STUDIES)


def test_two_series_side_by_side_on_the_source(source: SourceStack, page: Any) -> None:
    """DB.VI-CS.36 on the Source: the exam opens on the topogram (series 1); in a 1x2
    layout, the axial series (2) on the left, the topogram on the right."""
    topogram, axial = source.study.series_uids
    open_exam(page, source.link(), source.study.study_uid)
    series_side_by_side(page, (axial, "2"), (topogram, "1"))
    keep(page, "source-1x2")


def test_two_series_side_by_side_on_the_consumer(drimm: DrimmStack, page: Any) -> None:
    """DB.VI-CS.36 on the Consumer: the same with the exam streamed from the Source."""
    drimm.fake.mode = "ok"
    topogram, axial = drimm.study.series_uids
    page.goto(handover(drimm, drimm.kos_for(drimm.source_api)))
    page.wait_for_url("**/viewer?StudyInstanceUIDs=*", timeout=30_000)
    page.get_by_role("button", name="Voir les images").click(timeout=30_000)
    series_side_by_side(page, (axial, "2"), (topogram, "1"))
    keep(page, "consumer-1x2")


#: The bytes of the document the PDF viewport of the right-hand pane shows (its
#: <object>'s blob: URL), base64; null until it has one.
PDF_SHOWN = """async () => {
  const panes = document.querySelectorAll('[data-cy="viewport-pane"]');
  const object = panes.length === 2 && panes[1].querySelector('object[type="application/pdf"]');
  if (!object || !String(object.data).startsWith('blob:')) return null;
  const bytes = new Uint8Array(await (await fetch(object.data)).arrayBuffer());
  let text = '';
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text);
}"""


#: What the page's Content-Security-Policy refused, recorded from the page's start.
RECORD_REFUSED = """window.__drimboxRefused = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__drimboxRefused.push(e.violatedDirective + ' ' + e.blockedURI));"""


def test_report_beside_the_images(pacs: Pacs, viewer_url: str, page: Any, tmp_path: Path) -> None:
    """DB.VI-CS.35: an exam whose study holds its report as an Encapsulated PDF; in a 1x2
    layout, the images on the left and the report on the right, put there by OHIF (its
    PDF viewport, the document fetched through the BFF's bulk data: the very bytes
    encapsulated), drawn by Chromium's PDF viewer, which the page's policy lets frame it
    (frame-src blob:)."""
    report = tiny_pdf("Compte rendu DRIMbox")
    study = Study(generate_uid(), patient_id=generate_uid())
    images = add_series(study, tmp_path, 1, "Thorax", 3)
    add_pdf(study, tmp_path, 2, "Compte rendu", report)
    pacs.process.upload(study.files)
    page.add_init_script(RECORD_REFUSED)
    page.goto(f"{viewer_url}/viewer?StudyInstanceUIDs={study.study_uid}")
    wait_for_image(page, timeout=60)
    # In a 1x2 layout OHIF puts the next series, the report, in the new viewport. (Once
    # shown, Chromium's PDF viewer takes the clicks in it: OHIF cannot make it active.)
    choose_one_by_two(page)
    page.wait_for_function(PDF_SHOWN, timeout=30_000)
    # The encapsulated value as stored: the PDF, padded to an even length.
    stored = report + b"\0" * (len(report) % 2)
    assert base64.b64decode(page.evaluate(PDF_SHOWN)) == stored
    # Chromium's own PDF viewer shows it, in a frame of that blob: (refused by a policy
    # without frame-src blob:, leaving only the object's fallback text).
    blob = page.evaluate("""() => document.querySelectorAll('[data-cy="viewport-pane"]')[1]
      .querySelector('object[type="application/pdf"]').data""")
    assert poll(lambda: any(f.url == blob for f in page.frames), 30), [f.url for f in page.frames]
    fallback = page.get_by_text("No online PDF viewer installed")
    assert not any(fallback.nth(i).is_visible() for i in range(fallback.count()))
    assert page.evaluate("() => window.__drimboxRefused") == []
    # The images stay on the left, drawn.
    overlays = read_overlays(page, lambda o: len(o) == 1 and "Série : 1" in o[0]["topLeft"])
    assert len(overlays) == 1 and "Description : Thorax" in overlays[0]["topLeft"], overlays

    def drawn() -> bool:
        views = page.evaluate(SHOWN_STUDIES)
        return [v["series"] for v in views] == [images.series_uid] and views[0]["lit"] > 0.01

    assert poll(drawn, 60), page.evaluate(SHOWN_STUDIES)
    # The report is not listed among the objects the viewer cannot show.
    assert not page.locator("#drimbox-unsupported").is_visible()
    keep(page, "report-1x2")


def test_structured_report_beside_the_images(
    pacs: Pacs, viewer_url: str, page: Any, tmp_path: Path
) -> None:
    """DB.VI-CS.35 with a report as a Basic Text SR: in a 1x2 layout, the images on the
    left and the report's text on the right (OHIF's SR viewport)."""
    study = Study(generate_uid(), patient_id=generate_uid())
    images = add_series(study, tmp_path, 1, "Thorax", 3)
    add_text_report(study, tmp_path, 2)
    pacs.process.upload(study.files)
    page.goto(f"{viewer_url}/viewer?StudyInstanceUIDs={study.study_uid}")
    wait_for_image(page, timeout=60)
    # OHIF leaves the new viewport empty here: the user puts the report there.
    choose_one_by_two(page)
    page.locator('[data-cy="viewport-pane"]').nth(1).click()
    page.locator('[data-cy="study-browser-thumbnail-no-image"][data-series="2"]').dblclick()
    page.locator('[data-cy="viewport-pane"]').nth(1).get_by_text("Examen normal.").wait_for()

    def drawn() -> bool:
        views = page.evaluate(SHOWN_STUDIES)
        return [v["series"] for v in views] == [images.series_uid] and views[0]["lit"] > 0.01

    assert poll(drawn, 60), page.evaluate(SHOWN_STUDIES)
    keep(page, "sr-1x2")
