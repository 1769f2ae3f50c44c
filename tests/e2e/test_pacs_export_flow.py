"""Export to the practice's PACS in Chromium (DB.VI-CO.42): a professional on the Consumer
clicks "Exporter vers le PACS", chooses the destination, sends, sees the progress and the
French result, and the practice's PACS (a second real Orthanc) holds the exam."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest

from bff.settings import PROJECT_ROOT
from tests.consumer_stack import DrimmStack, practice_pacs
from tests.e2e.test_consumer_flow import handover

pytestmark = pytest.mark.e2e

#: Every text the export box's status line shows, recorded as it changes.
RECORD_STATUS = """() => {
  window.__exportTexts = [];
  const status = document.querySelector('#drimbox-pacs-export .drimbox-pacs-export-status');
  new MutationObserver(() => window.__exportTexts.push(status.textContent))
    .observe(status, { childList: true, characterData: true, subtree: true });
}"""


@pytest.fixture(autouse=True)
def _needs_ohif() -> None:
    if not (PROJECT_ROOT / "ohif-dist" / "index.html").is_file():
        pytest.skip("ohif-dist/ is missing: run scripts/fetch-ohif")


def test_professional_exports_the_exam_to_the_practice_pacs(
    drimm: DrimmStack, page: Any, tmp_path: Path
) -> None:
    drimm.fake.mode = "ok"
    with practice_pacs(drimm, tmp_path / "cabinet") as cabinet:
        page.goto(handover(drimm, drimm.kos_for(drimm.source_api)))
        page.wait_for_url("**/viewer?StudyInstanceUIDs=*", timeout=30_000)
        dialog = page.get_by_role("dialog", name="Identité du patient")
        dialog.wait_for(timeout=30_000)
        button = dialog.get_by_role("button", name="Exporter vers le PACS")
        button.wait_for(timeout=10_000)
        assert page.locator("#drimbox-pacs-export-fixed").count() == 1
        button.click()
        box = page.get_by_role("dialog", name="Exporter vers le PACS")
        box.wait_for(timeout=10_000)
        box.get_by_label("Destination").select_option(label="PACS du cabinet")
        images = box.get_by_label("Images")
        # The series on screen is offered first; the user takes the whole exam.
        assert images.input_value() in drimm.study.series_uids
        images.select_option(label="Tout l'examen")
        page.evaluate(RECORD_STATUS)
        box.get_by_role("button", name="Envoyer").click()
        status = box.locator(".drimbox-pacs-export-status")
        page.wait_for_function(
            "() => document.querySelector('#drimbox-pacs-export .drimbox-pacs-export-status')"
            ".dataset.state === 'done'",
            timeout=60_000,
        )
        n = drimm.study.n_instances
        assert status.text_content() == f"Export terminé : {n} images envoyées à PACS du cabinet."
        shown = page.evaluate("window.__exportTexts")
        assert any(t.startswith("Export en cours vers PACS du cabinet : ") for t in shown), shown
        with httpx.Client(base_url=cabinet.base_url, timeout=30) as client:
            found = client.post(
                "/tools/find",
                json={"Level": "Instance", "Query": {"StudyInstanceUID": drimm.study.study_uid}},
            ).json()
            assert len(found) == n
            held = pydicom.dcmread(io.BytesIO(client.get(f"/instances/{found[0]}/file").content))
        assert held.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.80"  # as stored
