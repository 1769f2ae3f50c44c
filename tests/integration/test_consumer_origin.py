"""Issue 12: a study opened from a KOS on the Consumer is answered by its remote Source
only, on every facade route, and never by the PACS beside the Consumer (the forged-KOS
leak); a Source outside the ANS whitelist is refused with E203 on every route before
anything is fetched (DB.VI-CO.27); and the study downloads as a valid IHE PDI ZIP pulled
from its Source (DB.VI-SO.176 on the Consumer).

The Consumer of these tests runs beside a PACS that holds the very study (the demo
Orthanc): the leak this guards against read it from there."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest

from bff.dicomweb.upstream import DicomwebUpstream
from bff.origins.errors import MESSAGES
from bff.services import services_of
from tests.consumer_stack import CONSUMER_HOST, DrimmStack
from tests.integration.test_consumer import ConsumerBrowser
from tests.integration.test_export import COMPONENT, LOSSLESS, _download, _files, _walk
from tests.integration.test_facade import FRAME_ACCEPT

pytestmark = pytest.mark.integration


class CountingPacs(DicomwebUpstream):
    """The PACS beside the Consumer, counting every request the BFF makes of it."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url, origin=CONSUMER_HOST)
        self.asked: list[str] = []

    async def _get(self, path: str, accept: str, params: Any) -> httpx.Response:
        self.asked.append(path)
        return await super()._get(path, accept, params)

    @asynccontextmanager
    async def stream(
        self, path: str, accept: str
    ) -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
        self.asked.append(path)
        async with super().stream(path, accept) as answer:
            yield answer


@pytest.fixture
def local_pacs(drimm: DrimmStack) -> Iterator[CountingPacs]:
    """The Consumer's own location PACS: the real Orthanc holding the demo study."""
    locations = services_of(drimm.consumer_app).origins.locations
    assert isinstance(locations, dict)
    real = locations[CONSUMER_HOST]
    counting = CountingPacs(real.base_url)
    locations[CONSUMER_HOST] = counting
    try:
        yield counting
    finally:
        locations[CONSUMER_HOST] = real


@pytest.fixture
def browser(drimm: DrimmStack) -> Iterator[ConsumerBrowser]:
    b = ConsumerBrowser(drimm)
    yield b
    b.close()


def first_sop_uid(drimm: DrimmStack, series_uid: str) -> str:
    for path in drimm.study.instance_files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if str(ds.SeriesInstanceUID) == series_uid:
            return str(ds.SOPInstanceUID)
    raise AssertionError(f"no instance in {series_uid}")


def facade_paths(drimm: DrimmStack) -> list[str]:
    study = drimm.study
    series = study.series_uids[-1]
    sop = first_sop_uid(drimm, series)
    base = f"/dicomweb/studies/{study.study_uid}"
    instance = f"{base}/series/{series}/instances/{sop}"
    return [
        f"/dicomweb/studies?StudyInstanceUID={study.study_uid}",
        f"{base}/series",
        f"{base}/instances",
        f"{base}/metadata",
        f"{base}/key-images",
        f"{base}/series/{series}/instances",
        f"{base}/series/{series}/metadata",
        f"{base}/series/{series}/thumbnail",
        f"{instance}/metadata",
        f"{instance}/thumbnail",
        f"{instance}/frames/1",
        f"{instance}/bulk/7fe00010",
        f"{instance}/bulk/00100010",
        f"/api/download/{study.study_uid}",
    ]


def patient_bytes(drimm: DrimmStack) -> list[bytes]:
    ds = pydicom.dcmread(drimm.study.instance_files[0], stop_before_pixels=True)
    return [
        str(ds.PatientName).split("^")[0].encode(),
        str(ds.PatientID).encode(),
        str(ds.PatientBirthDate).encode(),
        drimm.study.study_uid.encode(),
    ]


def test_forged_kos_outside_the_whitelist_reads_nothing_anywhere(
    drimm: DrimmStack, browser: ConsumerBrowser, local_pacs: CountingPacs
) -> None:
    """The issue's scenario: a professional opens a copy of the demo KOS whose Retrieve
    URLs name a host that is not on the ANS whitelist. Every facade route answers E203
    with its French message, no byte of the study, and neither the PACS beside the
    Consumer nor the named host is asked anything."""
    before = len(drimm.fake.requests)
    forged = drimm.fake_api().replace("https://localhost:", "https://127.0.0.1:")
    viewer = browser.open(drimm.kos_for(forged))
    assert viewer.startswith(f"/viewer?StudyInstanceUIDs={drimm.study.study_uid}")
    identity = patient_bytes(drimm)
    for path in facade_paths(drimm):
        answer = browser.get(path, headers={"Accept": FRAME_ACCEPT})
        assert answer.status_code == 502, (path, answer.status_code)
        assert answer.json() == {"code": "E203", "message": MESSAGES["E203"]}, path
        assert not any(value in answer.content for value in identity[:3]), path
    priority = browser.client.post(
        browser.drimm.consumer_url
        + f"/api/priority/{drimm.study.study_uid}/{drimm.study.series_uids[-1]}"
    )
    assert priority.status_code == 502 and priority.json()["code"] == "E203"
    progress = browser.get("/api/progress").json()["series"]
    assert progress and {s["error"]["code"] for s in progress} == {"E203"}
    assert local_pacs.asked == []
    assert len(drimm.fake.requests) == before


def test_whitelisted_source_answers_every_route_and_the_local_pacs_is_never_asked(
    drimm: DrimmStack, browser: ConsumerBrowser, local_pacs: CountingPacs
) -> None:
    browser.open(drimm.kos_for(drimm.source_api))
    study = drimm.study
    series = study.series_uids[-1]
    sop = first_sop_uid(drimm, series)
    base = f"/dicomweb/studies/{study.study_uid}"
    rows = browser.get(f"{base}/series/{series}/instances").json()
    assert sop in {r["00080018"]["Value"][0] for r in rows}
    meta = browser.get(f"{base}/series/{series}/instances/{sop}/metadata")
    assert meta.status_code == 200 and meta.json()[0]["00080018"]["Value"] == [sop]
    uri = meta.json()[0]["7FE00010"]["BulkDataURI"]
    assert uri.startswith(drimm.consumer_url + base)  # never the Source's own URL
    study_meta = browser.get(f"{base}/metadata")
    assert study_meta.status_code == 200 and len(study_meta.json()) == study.n_instances
    frame = browser.get(f"{base}/series/{series}/instances/{sop}/frames/1")
    assert frame.status_code == 200
    # What a Source does not offer is not found, never read from the local PACS.
    assert browser.get(f"{base}/series/{series}/thumbnail").status_code == 404
    assert browser.get(f"{base}/series/{series}/instances/{sop}/bulk/00100010").status_code == 404
    assert local_pacs.asked == []


# -- the study download on the Consumer (issue 12 item 8) ---------------------------------


def test_consumer_download_is_a_valid_pdi_zip_from_the_source(
    drimm: DrimmStack, browser: ConsumerBrowser, local_pacs: CountingPacs, tmp_path: Path
) -> None:
    """Same layout, lossless rule and checks as the Source's export (test_export.py),
    pulled from the remote Source through the study's origin; the KOS is the one the
    Consumer received."""
    kos = drimm.kos_for(drimm.source_api)
    browser.open(kos)
    study = drimm.study
    got = _download(
        browser.client,
        drimm.consumer_url + f"/api/download/{study.study_uid}",
        tmp_path / "exam.zip",
    )
    assert got.headers["content-disposition"].startswith('attachment; filename="examen-')
    assert {"DICOMDIR", "README.TXT", "INDEX.HTM"} <= set(got.names)
    files = _files(got.root)
    assert len(files) == study.n_instances + 1  # every image + the KOS
    for name in (str(p.relative_to(got.root)) for p in files):
        assert all(COMPONENT.match(c) for c in name.split("/")), name
    # The DICOMDIR references every file, and only those.
    dicomdir = pydicom.dcmread(got.root / "DICOMDIR")
    referenced = {
        got.root.joinpath(*r.ReferencedFileID) for r in _walk(dicomdir) if "ReferencedFileID" in r
    }
    assert referenced == set(files)
    # Pixels bit-identical to what the Source's PACS stores, lossless; the KOS as received.
    originals = {
        str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p
        for p in study.instance_files
    }
    received_kos = pydicom.dcmread(pydicom.filebase.DicomBytesIO(kos))
    seen = 0
    for path in files:
        ds = pydicom.dcmread(path)
        if "PixelData" not in ds:
            assert ds == received_kos
            continue
        assert str(ds.file_meta.TransferSyntaxUID) in LOSSLESS
        assert ds.PixelData == pydicom.dcmread(originals[str(ds.SOPInstanceUID)]).PixelData
        seen += 1
    assert seen == study.n_instances
    if shutil.which("dciodvfy") is not None:
        result = subprocess.run(
            ["dciodvfy", str(got.root / "DICOMDIR")], capture_output=True, text=True, timeout=60
        )
        assert "Error" not in result.stdout + result.stderr
    assert local_pacs.asked == []
