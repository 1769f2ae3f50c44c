"""DB.VI-CS.32 in Chromium: a KOS opened on the Consumer shows the practice's local patient
id, found by the KOS's INS in the practice's real PACS (an Orthanc of its own holding
CAB-000042), in the identity panel (with the Source's id beside it) and in the viewport
overlay, in place of the Source's PatientID. Without the look-up, neither shows."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bff.demo.orthanc import OrthancProcess
from bff.settings import PROJECT_ROOT
from tests.consumer_stack import DrimmStack
from tests.e2e.test_consumer_flow import handover
from tests.e2e.test_viewer import wait_for_image
from tests.local_patients import DEMO_INS, LOCAL_ID, LOCAL_ISSUER, local_ids_in, practice_pacs

pytestmark = pytest.mark.e2e

#: The identity dialog's rows, as [label, value] pairs.
IDENTITY_ROWS = """() => Array.from(document.querySelectorAll('#drimbox-identity .drimbox-row'))
  .map((row) => [row.querySelector('dt').textContent, row.querySelector('dd').textContent])"""

#: Whether a top-left overlay item of a viewport reads ``text`` (OHIF 3.13.2's DOM, as
#: tests/e2e/test_overlays.py reads it).
TOP_LEFT_HAS = """(text) => Array.from(
  document.querySelectorAll('[data-cy="viewport-overlay-top-left"] .overlay-item'))
  .some((item) => item.textContent.replace(/\\s+/g, ' ').trim() === text)"""

TOP_LEFT = """() => Array.from(
  document.querySelectorAll('[data-cy="viewport-overlay-top-left"] .overlay-item'))
  .map((item) => item.textContent.replace(/\\s+/g, ' ').trim())"""

INSTITUTION = "Établissement : Centre de radiologie Ambroise"


@pytest.fixture(autouse=True)
def _needs_ohif() -> None:
    if not (PROJECT_ROOT / "ohif-dist" / "index.html").is_file():
        pytest.skip("ohif-dist/ is missing: run scripts/fetch-ohif")


@pytest.fixture(scope="module")
def practice(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancProcess]:
    with practice_pacs(tmp_path_factory.mktemp("practice")) as process:
        yield process


def open_exam(drimm: DrimmStack, page: Any) -> list[list[str]]:
    """Open the demo KOS as the Consumer DRIMbox hands it over; the identity rows shown."""
    drimm.fake.mode = "ok"
    page.goto(handover(drimm, drimm.kos_for(drimm.source_api)))
    page.wait_for_url("**/viewer?StudyInstanceUIDs=*", timeout=30_000)
    page.locator("#drimbox-identity .drimbox-row").first.wait_for(timeout=30_000)
    rows: list[list[str]] = page.evaluate(IDENTITY_ROWS)
    page.get_by_role("button", name="Voir les images").click(timeout=30_000)
    wait_for_image(page)
    return rows


def test_the_local_id_shows_in_the_identity_panel_and_the_overlay(
    drimm: DrimmStack, practice: OrthancProcess, page: Any
) -> None:
    with local_ids_in(drimm.consumer_app, practice.dicomweb_url):
        rows = open_exam(drimm, page)
        shown = f"ID patient local : {LOCAL_ID}"
        page.wait_for_function(TOP_LEFT_HAS, arg=shown, timeout=30_000)
    assert ["Identifiant patient local", f"{LOCAL_ID} ({LOCAL_ISSUER})"] in rows, rows
    assert ["Identifiant à la source", DEMO_INS] in rows, rows
    assert ["Nom de naissance", "PAT-TROIS"] in rows  # the INS traits stay (DB.VI-CS.29)
    top_left = page.evaluate(TOP_LEFT)
    assert top_left[0] == INSTITUTION and shown in top_left, top_left
    assert not any(DEMO_INS in item for item in top_left), top_left


def test_without_the_look_up_neither_shows(drimm: DrimmStack, page: Any) -> None:
    with local_ids_in(drimm.consumer_app, None):
        rows = open_exam(drimm, page)
        # The institution is drawn from the same metadata row as the local id would be.
        page.wait_for_function(TOP_LEFT_HAS, arg=INSTITUTION, timeout=30_000)
    labels = [label for label, _ in rows]
    assert "Identifiant patient local" not in labels and "Identifiant à la source" not in labels
    assert ["Matricule INS", f"{DEMO_INS} (NIR (test))"] in rows, rows
    top_left = page.evaluate(TOP_LEFT)
    assert not any(item.startswith("ID patient") for item in top_left), top_left
