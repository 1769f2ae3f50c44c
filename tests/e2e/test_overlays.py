"""The viewport overlay of Tableau 3 (DB.VI-CS.29), in French, from ohif-config only.

Series built here with pydicom exercise every fallback of the table (Slice Location ->
Table Position -> Image Position (Patient); Acquisition DateTime -> Acquisition Date/Time
-> Content -> Series -> Study; empty Series/Instance Number and no Series Description
hidden); each is opened in the open-access viewer and the text of its overlay is read.
In a reformatted (MPR) view, what belongs to one acquired slice is hidden. Institution
Name comes from the KOS (the BFF rewrites it in the metadata of a session's study), and
the window level readout stays (DB.VI-CS.21).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from tests.conftest import Pacs
from tests.e2e.test_source_flow import sign_in
from tests.e2e.test_viewer import wait_for_image
from tests.source_stack import SourceStack

pytestmark = pytest.mark.e2e

#: Overlay items of each viewport pane, corner by corner (OHIF 3.13.2's DOM: pane
#: data-cy="viewport-pane", corners data-cy="viewport-overlay-<corner>", items
#: .overlay-item; cornerstone's element carries data-viewport-uid).
READ_OVERLAYS = """() => Array.from(document.querySelectorAll('[data-cy="viewport-pane"]'))
  .filter((vp) => vp.querySelector('[data-cy="viewport-overlay-top-left"]'))
  .map((vp) => {
    const element = vp.querySelector('[data-viewport-uid]');
    const corner = (name) => Array.from(
      vp.querySelectorAll(`[data-cy="viewport-overlay-${name}"] .overlay-item`))
      .map((item) => item.textContent.replace(/\\s+/g, ' ').trim());
    return {
      id: element && element.getAttribute('data-viewport-uid'),
      topLeft: corner('top-left'), topRight: corner('top-right'),
      bottomLeft: corner('bottom-left'), bottomRight: corner('bottom-right'),
    };
  })"""

SIZE = 64
WINDOW = "Fenêtre : L 1000 C 500"


@dataclass(frozen=True)
class Case:
    """One series (in its own study) and the overlay it must show on its first image."""

    name: str
    n_slices: int
    attrs: dict[str, Any]  # set on every instance (None: left out)
    per_slice: dict[str, list[Any]] = field(default_factory=dict)
    top_left: list[str] = field(default_factory=list)
    top_right: list[str] = field(default_factory=list)
    bottom_right: list[str] = field(default_factory=list)


CASES = [
    Case(
        "slice_location_and_acquisition_datetime",
        5,
        {"SeriesNumber": 7, "SeriesDescription": "Abdomen portal"},
        {
            "SliceLocation": [-10.0, -12.5, -15.0, -17.5, -20.0],
            "AcquisitionDateTime": [f"2025031410153{i}.250000" for i in range(5)],
        },
        ["Établissement : Clinique des Tests", "Série : 7", "Description : Abdomen portal"],
        ["Acquisition : 14/03/2025 10:15:30"],
        ["Image : 1", "Position de coupe : -10 mm", "Coupe : 1/5"],
    ),
    Case(
        "table_position_acquisition_date_time_empty_numbers",
        1,
        {
            "SeriesNumber": "",
            "InstanceNumber": "",
            "TablePosition": 123.5,
            "AcquisitionDate": "20240102",
            "AcquisitionTime": "0708",
        },
        top_left=["Établissement : Clinique des Tests"],
        top_right=["Acquisition : 02/01/2024 07:08:00"],
        bottom_right=["Position de table : 123,5 mm"],
    ),
    Case(
        "image_position_and_content",
        1,
        {"SeriesNumber": 3, "ContentDate": "20231231", "ContentTime": "235959.999"},
        top_left=["Établissement : Clinique des Tests", "Série : 3"],
        top_right=["Contenu : 31/12/2023 23:59:59"],
        bottom_right=["Image : 1", "Position : -31,5 ; -31,5 ; -10 mm"],
    ),
    Case(
        "series_date_time",
        1,
        {"SeriesNumber": 4, "SeriesDate": "20220615", "SeriesTime": "081500"},
        top_left=["Établissement : Clinique des Tests", "Série : 4"],
        top_right=["Date de la série : 15/06/2022 08:15:00"],
        bottom_right=["Image : 1", "Position : -31,5 ; -31,5 ; -10 mm"],
    ),
    Case(
        "study_date_time_only",
        1,
        {"SeriesNumber": 5, "StudyTime": "141516"},
        top_left=["Établissement : Clinique des Tests", "Série : 5"],
        top_right=["Date de l'examen : 01/02/2021 14:15:16"],
        bottom_right=["Image : 1", "Position : -31,5 ; -31,5 ; -10 mm"],
    ),
]


def write_series(out_dir: Path, case: Case) -> tuple[str, list[Path]]:
    """Small CT series of ``case`` (its own study); returns its study UID and files."""
    study_uid, series_uid, frame_of_reference_uid = (generate_uid() for _ in range(3))
    pixels = np.add.outer(np.arange(SIZE), np.arange(SIZE)).astype(np.uint16) * 15
    paths = []
    for index in range(case.n_slices):
        ds = Dataset()
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.Modality = "CT"
        ds.PatientName = "OVERLAY^TEST"
        ds.PatientID = "OVERLAY-1"
        ds.StudyDate = "20210201"
        ds.InstitutionName = "Clinique des Tests"
        ds.InstanceNumber = index + 1
        ds.FrameOfReferenceUID = frame_of_reference_uid
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-31.5, -31.5, -10.0 - 2.5 * index]
        ds.PixelSpacing = [1, 1]
        ds.SliceThickness = 2.5
        ds.WindowCenter, ds.WindowWidth = 500, 1000
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows = ds.Columns = SIZE
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        for keyword, value in case.attrs.items():
            setattr(ds, keyword, value)
        for keyword, values in case.per_slice.items():
            setattr(ds, keyword, values[index])
        ds.PixelData = pixels.tobytes()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = out_dir / f"{case.name}-{index + 1}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return str(study_uid), paths


@pytest.fixture(scope="module")
def studies(pacs: Pacs, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    out_dir = tmp_path_factory.mktemp("overlay-cases")
    uids = {}
    for case in CASES:
        uids[case.name], paths = write_series(out_dir, case)
        pacs.process.upload(paths)
    return uids


def read_overlays(page: Any, ready: Any, timeout: float = 30) -> list[dict[str, Any]]:
    """The overlays once ``ready(overlays)`` holds (the last ones read on timeout)."""
    deadline = time.monotonic() + timeout
    overlays: list[dict[str, Any]] = page.evaluate(READ_OVERLAYS)
    while not ready(overlays) and time.monotonic() < deadline:
        page.wait_for_timeout(250)
        overlays = page.evaluate(READ_OVERLAYS)
    return overlays


def corners(overlay: dict[str, Any]) -> tuple[list[str], list[str], list[str], list[str]]:
    return overlay["topLeft"], overlay["topRight"], overlay["bottomLeft"], overlay["bottomRight"]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_overlay_shows_tableau_3_with_its_fallbacks(
    case: Case, studies: dict[str, str], viewer_url: str, page: Any
) -> None:
    page.goto(f"{viewer_url}/viewer?StudyInstanceUIDs={studies[case.name]}")
    wait_for_image(page, timeout=60)
    expected = (case.top_left, case.top_right, [WINDOW], case.bottom_right)
    overlays = read_overlays(page, lambda o: len(o) == 1 and corners(o[0]) == expected)
    assert len(overlays) == 1, overlays
    assert corners(overlays[0]) == expected


def test_overlay_follows_the_slice_shown(
    studies: dict[str, str], viewer_url: str, page: Any
) -> None:
    """Per-slice items are those of the image on screen, not of the first one."""
    page.goto(f"{viewer_url}/viewer?StudyInstanceUIDs={studies[CASES[0].name]}")
    wait_for_image(page, timeout=60)
    box = page.locator("canvas.cornerstone-canvas").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, 120)
    page.mouse.wheel(0, 120)
    expected = ["Image : 3", "Position de coupe : -15 mm", "Coupe : 3/5"]
    overlays = read_overlays(page, lambda o: o and o[0]["bottomRight"] == expected)
    assert overlays[0]["bottomRight"] == expected
    assert overlays[0]["topRight"] == ["Acquisition : 14/03/2025 10:15:32"]


def test_mpr_hides_what_belongs_to_one_acquired_slice(
    studies: dict[str, str], viewer_url: str, page: Any
) -> None:
    page.goto(
        f"{viewer_url}/viewer?StudyInstanceUIDs={studies[CASES[0].name]}&hangingProtocolId=mpr"
    )
    series = ["Établissement : Clinique des Tests", "Série : 7", "Description : Abdomen portal"]

    def ready(overlays: list[dict[str, Any]]) -> bool:
        return len(overlays) == 3 and all(
            o["topLeft"] == series and any(i.startswith("Fenêtre") for i in o["bottomLeft"])
            for o in overlays
        )

    overlays = {o["id"]: o for o in read_overlays(page, ready, timeout=60)}
    assert sorted(overlays) == ["mpr-axial", "mpr-coronal", "mpr-sagittal"], overlays
    for viewport_id in ("mpr-sagittal", "mpr-coronal"):
        reformatted = overlays[viewport_id]
        assert reformatted["topLeft"] == series
        assert reformatted["topRight"] == []  # acquisition time of one slice: hidden
        assert all(i.startswith("Coupe : ") for i in reformatted["bottomRight"]), reformatted
    # The acquisition plane, on an acquired slice: that slice's items.
    axial = overlays["mpr-axial"]
    assert axial["topRight"] == ["Acquisition : 14/03/2025 10:15:32"], axial
    assert axial["bottomRight"][:2] == ["Image : 3", "Position de coupe : -15 mm"], axial


def test_institution_name_comes_from_the_kos(source: SourceStack, page: Any) -> None:
    """The demo images say 'Centre de radiologie Ambroise^^^^^^^^^101235555'; the KOS's
    Institution Name (first component) is what the overlay shows."""
    sign_in(page, source.link(), "fcp", "dominique.pat-trois")
    page.get_by_role("button", name="Voir les images").click(timeout=30_000)
    wait_for_image(page)
    expected = "Établissement : Centre de radiologie Ambroise"
    overlays = read_overlays(page, lambda o: bool(o) and expected in o[0]["topLeft"])
    assert overlays and overlays[0]["topLeft"][0] == expected, overlays
