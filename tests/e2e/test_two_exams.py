"""Two exams at once (DB.VI-CS.36, .35) in Chromium: a professional opens two report
links in one browser (Source flow) and sees each exam in its own tab, then both side by
side in one tab through "Comparer les deux examens" (ohif-config/panel/, OHIF's
hanging protocol @ohif/hpCompare)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from bff.settings import PROJECT_ROOT
from tests.e2e.conftest import record_fetches, wait_answered
from tests.e2e.test_source_flow import sign_in
from tests.source_stack import LOCATION, OTHER_CDA_ID, SourceStack

pytestmark = pytest.mark.e2e

#: Per cornerstone viewport: the study and series of the image it shows (named by its
#: frame URL), where it sits on screen (x) and how lit its canvas is.
SHOWN_STUDIES = """() => window.cornerstone.getEnabledElements().map((element) => {
  const vp = element.viewport;
  const imageId = (vp.getCurrentImageId && vp.getCurrentImageId()) || '';
  const match = imageId.match(/\\/studies\\/([^/]+)\\//);
  const series = imageId.match(/\\/series\\/([^/]+)\\//);
  const canvas = vp.canvas;
  const copy = document.createElement('canvas');
  copy.width = canvas.width; copy.height = canvas.height;
  const ctx = copy.getContext('2d');
  ctx.drawImage(canvas, 0, 0);
  const d = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let lit = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 30) lit++;
  return {id: element.viewportId, study: match ? match[1] : null,
          series: series ? series[1] : null, x: vp.element.getBoundingClientRect().x,
          lit: lit / (canvas.width * canvas.height)};
})"""


@pytest.fixture(autouse=True)
def _needs_ohif() -> None:
    if not (PROJECT_ROOT / "ohif-dist" / "index.html").is_file():
        pytest.skip("ohif-dist/ is missing: run scripts/fetch-ohif")


def open_exam(page: Any, link: str, study_uid: str) -> None:
    sign_in(page, link, "psc", "dr.radiologue")
    page.wait_for_url(f"**/viewer?StudyInstanceUIDs={study_uid}", timeout=30_000)
    page.get_by_role("button", name="Voir les images").click(timeout=30_000)
    views = shown(page, lambda v: any(i["study"] == study_uid and i["lit"] > 0.01 for i in v))
    assert any(i["study"] == study_uid and i["lit"] > 0.01 for i in views), views


def shown(page: Any, ready: Any, timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    views: list[dict[str, Any]] = page.evaluate(SHOWN_STUDIES)
    while not ready(views) and time.monotonic() < deadline:
        page.wait_for_timeout(250)
        views = page.evaluate(SHOWN_STUDIES)
    return views


def test_two_exams_in_two_tabs_then_side_by_side(
    source: SourceStack, context: Any, page: Any
) -> None:
    first, other = source.study.study_uid, source.other_study.study_uid
    open_exam(page, source.link(), first)
    # The second report link, in a second tab of the same browser.
    second_tab = context.new_page()
    second_link = source.stack.viewer_link(source.other_study, LOCATION, cda_id=OTHER_CDA_ID)
    open_exam(second_tab, second_link, other)
    # DB.VI-CS.29: each tab's identity is that of the exam it shows (here the same patient,
    # two exams: the accession numbers tell them apart).
    assert identity(second_tab).count("N° d'examen") == 1
    assert source.other_study.accession_number in identity(second_tab)
    assert source.study.accession_number not in identity(second_tab)

    # The first tab still shows (and can reload) its exam.
    page.bring_to_front()
    page.reload()
    page.get_by_role("button", name="Voir les images").click(timeout=30_000)
    views = shown(page, lambda v: any(i["study"] == first and i["lit"] > 0.01 for i in v))
    assert {i["study"] for i in views if i["study"]} == {first}, views

    # Side by side in one tab: one click.
    second_tab.bring_to_front()
    second_tab.get_by_role("link", name="Comparer les deux examens").click(timeout=15_000)
    second_tab.wait_for_url("**hangingProtocolId=*hpCompare*", timeout=15_000)
    assert f"StudyInstanceUIDs={other},{first}" in second_tab.url
    second_tab.get_by_role("button", name="Voir les images").click(timeout=30_000)

    def both(views: list[dict[str, Any]]) -> bool:
        lit = [v for v in views if v["lit"] > 0.01]
        return {v["study"] for v in lit} == {first, other}

    views = shown(second_tab, both)
    assert both(views), views
    assert len(views) >= 2, views
    # Side by side: one identity block per exam, in the order of the URL.
    text = identity(second_tab)
    assert "Examen 1 (n° " + source.other_study.accession_number + ")" in text
    assert "Examen 2 (n° " + source.study.accession_number + ")" in text
    second_tab.close()


def identity(page: Any) -> str:
    """The identity blocks of the dialog (not its download buttons, one per granted exam)."""
    blocks = page.locator("#drimbox-identity .drimbox-identities")
    blocks.wait_for(state="attached", timeout=30_000)
    return str(blocks.text_content() or "")


def test_compare_is_not_offered_for_one_exam(source: SourceStack, page: Any) -> None:
    record_fetches(page)
    open_exam(page, source.link(), source.study.study_uid)
    # The panel offers the comparison from the session's exams: once it has read them.
    wait_answered(page, "/api/session")
    assert page.locator("#drimbox-compare").count() == 0
