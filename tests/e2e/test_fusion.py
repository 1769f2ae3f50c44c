"""PET-CT fusion (DB.VI-CS.24) with SUV values (DB.VI-CS.117) in Chromium: a synthetic
PET-CT study (tests/e2e/volumes.py, SUV-computable PET in the CT's frame of reference)
opened in the viewer offers "Fusion TEP-TDM" (ohif-config/panel/), one click
to OHIF's /tmtv mode through the BFF; the fused view renders and a region on the PET
reads in SUV. The BFF guards /tmtv like /viewer (bff/source/routes.py OHIF_MODES).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import Pacs
from tests.e2e import volumes
from tests.e2e.conftest import record_fetches, wait_answered
from tests.e2e.test_source_flow import sign_in
from tests.e2e.test_viewer import wait_for_image
from tests.source_stack import SourceStack
from tests.waiting import poll

pytestmark = pytest.mark.e2e

#: For viewport ``id``: its number of layers (actors), how much of its canvas is lit and
#: how much is coloured (a PET colour map over the grey CT).
FUSED_VIEW = """(viewportId) => {
  const element = window.cornerstone.getEnabledElements()
    .find((e) => e.viewportId === viewportId);
  if (!element) return null;
  const canvas = element.viewport.canvas;
  const copy = document.createElement('canvas');
  copy.width = canvas.width; copy.height = canvas.height;
  const ctx = copy.getContext('2d');
  ctx.drawImage(canvas, 0, 0);
  const d = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let lit = 0, coloured = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i] + d[i + 1] + d[i + 2] > 30) lit++;
    if (Math.abs(d[i] - d[i + 1]) > 20 || Math.abs(d[i + 1] - d[i + 2]) > 20) coloured++;
  }
  const n = canvas.width * canvas.height;
  return {layers: element.viewport.getActors().length, lit: lit / n, coloured: coloured / n};
}"""


#: Whether OHIF has made the viewport ``id`` the active one.
ACTIVE_VIEWPORT = "(id) => window.services.viewportGridService.getActiveViewportId() === id"


@pytest.fixture(scope="module")
def pet_ct_study(pacs: Pacs, tmp_path_factory: pytest.TempPathFactory) -> str:
    ct, pt = volumes.write_pet_ct(tmp_path_factory.mktemp("pet-ct"))
    pacs.process.upload([*ct.paths, *pt.paths])
    return ct.study_uid


def suv_readings(page: Any) -> list[float]:
    texts = page.evaluate(
        "() => Array.from(document.querySelectorAll('svg text')).map((t) => t.textContent)"
    )
    return [float(v) for t in texts for v in re.findall(r"Mean: (-?\d+(?:\.\d+)?) SUV", t)]


def test_fusion_is_one_click_away_and_reads_suv(
    pet_ct_study: str, viewer_url: str, page: Any
) -> None:
    page.goto(f"{viewer_url}/viewer?StudyInstanceUIDs={pet_ct_study}")
    wait_for_image(page, timeout=60)
    fusion = page.get_by_role("link", name="Fusion TEP-TDM")
    fusion.click(timeout=15_000)
    page.wait_for_url(f"**/tmtv?StudyInstanceUIDs={pet_ct_study}", timeout=15_000)

    def fused() -> dict[str, Any] | None:
        view: dict[str, Any] | None = page.evaluate(FUSED_VIEW, "fusionAXIAL")
        ready = view and view["layers"] == 2 and view["lit"] > 0.5 and view["coloured"] > 0.5
        return view if ready else None

    view = poll(fused, 60)
    assert view, page.evaluate(FUSED_VIEW, "fusionAXIAL")
    pet = poll(lambda: (page.evaluate(FUSED_VIEW, "ptAXIAL") or {}).get("lit", 0) > 0.5, 60)
    assert pet, "the PET view did not render"

    # An ellipse on the PET (Mesures -> Ellipse, then drag): its mean in SUV (bw). The
    # first slice is background: 5000 Bq/ml * 70 kg / 350 MBq = SUV 1.
    page.locator('[data-cy="MeasurementTools-split-button-secondary"]').click()
    page.get_by_text("Ellipse", exact=True).click()
    box = page.locator('[data-viewport-uid="ptAXIAL"] canvas.cornerstone-canvas').bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.click(x + 60, y + 60)  # the first click makes the view active
    page.wait_for_function(ACTIVE_VIEWPORT, arg="ptAXIAL", timeout=15_000)
    page.mouse.move(x - 20, y - 20)
    page.mouse.down()
    page.mouse.move(x, y, steps=5)
    page.mouse.move(x + 20, y + 20, steps=5)
    page.mouse.up()
    readings = poll(lambda: suv_readings(page), 15)
    assert readings, "no SUV value shown"
    expected = volumes.PET_BACKGROUND_BQML * volumes.SUV_FACTOR
    assert readings[0] == pytest.approx(expected, abs=0.05), readings

    # And back to the usual viewer in one click.
    page.get_by_role("link", name="Retour à la visionneuse").click()
    page.wait_for_url(f"**/viewer?StudyInstanceUIDs={pet_ct_study}", timeout=15_000)


def test_no_fusion_link_without_pet(pacs: Pacs, viewer_url: str, page: Any, tmp_path: Path) -> None:
    ct_only = volumes.write_dot_ct(tmp_path)
    pacs.process.upload(ct_only.paths)
    record_fetches(page)
    page.goto(f"{viewer_url}/viewer?StudyInstanceUIDs={ct_only.study_uid}")
    wait_for_image(page, timeout=60)
    # The panel decides on the link from the study's series list: once it has read it.
    wait_answered(page, f"/dicomweb/studies/{ct_only.study_uid}/series")
    assert page.locator("#drimbox-fusion").count() == 0


def test_the_fusion_mode_is_guarded_like_the_viewer(source: SourceStack, page: Any) -> None:
    """/tmtv is OHIF like /viewer: only for a session granted the studies it names."""
    parts = urlsplit(source.link())
    base = f"{parts.scheme}://{parts.netloc}"
    study_uid = source.study.study_uid
    # page.goto: Chromium resolves *.localhost, Playwright's own request client does not.
    assert page.goto(f"{base}/tmtv?StudyInstanceUIDs={study_uid}").status == 401
    sign_in(page, source.link(), "fcp", "dominique.pat-trois")
    page.wait_for_url("**/viewer?StudyInstanceUIDs=*", timeout=30_000)
    assert page.goto(f"{base}/tmtv?StudyInstanceUIDs={study_uid}").status == 200
    other = source.other_study.study_uid
    assert page.goto(f"{base}/tmtv?StudyInstanceUIDs={other}").status == 404
