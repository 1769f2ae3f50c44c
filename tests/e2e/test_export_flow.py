"""The study download in Chromium (DB.VI-SO.176): a patient opens the report link, the
identity dialog offers "Télécharger l'examen", and the browser saves the PDI ZIP."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import pytest

from bff.settings import PROJECT_ROOT
from tests.e2e.test_source_flow import sign_in
from tests.source_stack import SourceStack

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def _needs_ohif() -> None:
    if not (PROJECT_ROOT / "ohif-dist" / "index.html").is_file():
        pytest.skip("ohif-dist/ is missing: run scripts/fetch-ohif")


def test_patient_downloads_the_exam(source: SourceStack, page: Any, tmp_path: Path) -> None:
    sign_in(page, source.link(), "fcp", "dominique.pat-trois")
    page.wait_for_url("**/viewer?StudyInstanceUIDs=*", timeout=30_000)
    dialog = page.get_by_role("dialog", name="Identité du patient")
    dialog.wait_for(timeout=30_000)
    button = dialog.get_by_role("link", name="Télécharger l'examen")
    button.wait_for(timeout=10_000)
    assert "taille n'est pas connue" in (button.get_attribute("title") or "")
    assert "clé USB" in dialog.inner_text()
    # the same action stays reachable once the dialog is closed
    assert page.locator("#drimbox-download-fixed").count() == 1
    with page.expect_download(timeout=60_000) as info:
        button.click()
    download = info.value
    assert download.suggested_filename == "examen-20250314-ACN101.zip"
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    with zipfile.ZipFile(target) as archive:
        names = archive.namelist()
        assert {"DICOMDIR", "README.TXT", "INDEX.HTM"} <= set(names)
        assert sum(n.startswith("DICOM/") and not n.endswith("/") for n in names) == (
            source.study.n_instances + 1
        )
