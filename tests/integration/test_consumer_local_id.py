"""DB.VI-CS.32 on the Consumer: a KOS opened from the DMP shows the practice's local
patient id, found by the KOS's INS in the practice's real PACS (an Orthanc of its own),
in place of the Source's PatientID: in what /api/session gives the identity panel, in
the series metadata OHIF draws its overlay from, and in the study row. Not found, or the
practice's PACS down: the Source's id, and the images still come."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from typing import Any

import pytest

from bff.demo.orthanc import OrthancProcess
from tests.consumer_stack import DrimmStack
from tests.integration.test_consumer import ConsumerBrowser, axial, metadata
from tests.integration.test_facade import FRAME_ACCEPT
from tests.local_patients import (
    DEMO_INS,
    LOCAL_ID,
    LOCAL_ISSUER,
    local_ids_in,
    practice_pacs,
)
from tests.servers import free_port

pytestmark = pytest.mark.integration

PATIENT_ID = "00100020"
ISSUER = "00100021"
QUALIFIERS = "00100024"
MARK = "00091010"


@pytest.fixture(scope="module")
def practice(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancProcess]:
    with practice_pacs(tmp_path_factory.mktemp("practice")) as process:
        yield process


def first(row: dict[str, Any], tag: str) -> Any:
    return (row.get(tag, {}).get("Value") or [None])[0]


def opened(browser: ConsumerBrowser, drimm: DrimmStack) -> tuple[dict[str, Any], list[Any]]:
    """Open the demo KOS; what the identity panel gets, and the axial series' metadata."""
    browser.open(drimm.kos_for(drimm.source_api))
    info = browser.get("/api/session").json()["studies"][0]
    meta = metadata(browser, drimm.study.study_uid, axial(drimm))
    assert meta.status_code == 200, meta.text
    return info, meta.json()


@pytest.fixture
def browser(drimm: DrimmStack) -> Iterator[ConsumerBrowser]:
    with closing(ConsumerBrowser(drimm)) as b:
        yield b


def test_the_local_id_replaces_the_sources_where_the_viewer_shows_it(
    drimm: DrimmStack, browser: ConsumerBrowser, practice: OrthancProcess
) -> None:
    with local_ids_in(drimm.consumer_app, practice.dicomweb_url):
        info, rows = opened(browser, drimm)
        study = browser.get(f"/dicomweb/studies?StudyInstanceUID={drimm.study.study_uid}")
    # The identity panel: the local id and its issuer, the Source's id beside them.
    assert info["local_patient_id"] == LOCAL_ID
    assert info["local_patient_issuer"] == LOCAL_ISSUER
    assert info["source_patient_id"] == DEMO_INS
    assert info["ins"] == DEMO_INS  # the INS traits stay (DB.VI-CS.29)
    # The metadata (the overlay's data): PatientID replaced, with its own issuer, marked.
    assert rows and all(first(r, PATIENT_ID) == LOCAL_ID for r in rows)
    assert all(first(r, ISSUER) == LOCAL_ISSUER for r in rows)
    assert all(QUALIFIERS not in r and first(r, MARK) == "LOCAL" for r in rows)
    # The INS stays where the Source put it (OtherPatientIDsSequence).
    others = rows[0]["00101002"]["Value"]
    assert DEMO_INS in {first(item, PATIENT_ID) for item in others}
    assert first(study.json()[0], PATIENT_ID) == LOCAL_ID


def test_without_the_look_up_the_sources_id_is_shown(
    drimm: DrimmStack, browser: ConsumerBrowser
) -> None:
    with local_ids_in(drimm.consumer_app, None):
        info, rows = opened(browser, drimm)
    assert "local_patient_id" not in info and "source_patient_id" not in info
    assert all(first(r, PATIENT_ID) == DEMO_INS and MARK not in r for r in rows)


def test_a_practice_pacs_down_never_blocks_the_opening(
    drimm: DrimmStack, browser: ConsumerBrowser
) -> None:
    with local_ids_in(drimm.consumer_app, f"http://127.0.0.1:{free_port()}/dicom-web"):
        info, rows = opened(browser, drimm)
    assert "local_patient_id" not in info
    assert all(first(r, PATIENT_ID) == DEMO_INS for r in rows)
    # The images still come.
    uid = first(rows[0], "00080018")
    frame = browser.get(
        f"/dicomweb/studies/{drimm.study.study_uid}/series/{axial(drimm)}/instances/{uid}/frames/1",
        headers={"Accept": FRAME_ACCEPT},
    )
    assert frame.status_code == 200
