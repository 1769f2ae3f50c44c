"""Key images on the Consumer (issue 6: DB.VI-CO.197; docs/series.md): the DRIM-M manifest
handed to the Consumer references, besides the image series, a KO series holding a Key
Image Note; the Consumer retrieves it from the Source (this project, mutual TLS, real
Orthanc) like any series and offers its key images as the virtual "Images clés" series,
marked "Image clé" through /key-images, served from the real series' retrieval."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from bff.demo.dataset import ANS_TEST_PATIENT, CT_IMAGE_STORAGE, sop_uid_for, write_demo_study
from bff.demo.identity import add_patient_module
from bff.demo.kos import KOS_SOP_CLASS_UID, ReferencedSeries, build_kos
from bff.demo.stack import DEMO_CDA_ID, publish_demo_kos
from tests.conftest import Pacs
from tests.consumer_stack import SOURCE_LOCATION, DrimmStack
from tests.integration.test_consumer import ConsumerBrowser
from tests.integration.test_facade import FRAME_ACCEPT, read_frame

pytestmark = pytest.mark.integration

SLICES = 6
KEY_SLICES = (5, 2)  # instance numbers of the axial series the KIN selects, in its order


@dataclass(frozen=True)
class KinExam:
    study_uid: str
    axial_uid: str
    kin_series_uid: str
    key_sop_uids: tuple[str, ...]
    manifest: bytes


def _ref(sop_uid: str, sop_class_uid: str = CT_IMAGE_STORAGE) -> Dataset:
    ref = Dataset()
    ref.ReferencedSOPClassUID = sop_class_uid
    ref.ReferencedSOPInstanceUID = sop_uid
    return ref


def write_kin(path: Path, study_uid: str, axial_uid: str, sop_uids: list[str]) -> Dataset:
    """A Key Image Note (113000 Of Interest) of the same patient, in its own KO series."""
    ds = Dataset()
    add_patient_module(ds, ANS_TEST_PATIENT)
    ds.SOPClassUID = KOS_SOP_CLASS_UID
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, generate_uid()
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "20250101", "100000", "ACN197"
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "KO", 50, 1
    ds.ContentDate, ds.ContentTime = "20250101", "110000"
    ds.ValueType, ds.ContinuityOfContent = "CONTAINER", "SEPARATE"
    title = Dataset()
    title.CodeValue, title.CodingSchemeDesignator, title.CodeMeaning = (
        "113000",
        "DCM",
        "Of Interest",
    )
    ds.ConceptNameCodeSequence = Sequence([title])
    series = Dataset()
    series.SeriesInstanceUID = axial_uid
    series.ReferencedSOPSequence = Sequence([_ref(u) for u in sop_uids])
    evidence = Dataset()
    evidence.StudyInstanceUID = study_uid
    evidence.ReferencedSeriesSequence = Sequence([series])
    ds.CurrentRequestedProcedureEvidenceSequence = Sequence([evidence])
    content = []
    for sop_uid in sop_uids:
        item = Dataset()
        item.RelationshipType, item.ValueType = "CONTAINS", "IMAGE"
        item.ReferencedSOPSequence = Sequence([_ref(sop_uid)])
        content.append(item)
    ds.ContentSequence = Sequence(content)
    ds.ensure_file_meta()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return ds


@pytest.fixture(scope="module")
def exam(pacs: Pacs, drimm: DrimmStack, tmp_path_factory: pytest.TempPathFactory) -> KinExam:
    out = tmp_path_factory.mktemp("consumer-kin")
    study = write_demo_study(
        out, n_slices=SLICES, seed=197, accession="ACN197", rows=64, cols=64, topogram=False
    )
    axial_uid = study.series_uids[-1]
    key_sop_uids = [sop_uid_for(axial_uid, n) for n in KEY_SLICES]
    kin = write_kin(out / "kin.dcm", study.study_uid, axial_uid, key_sop_uids)
    pacs.process.upload([*study.instance_files, out / "kin.dcm"])
    # The DRIM-M manifest of the exam lists the image series and the KIN series.
    series = (
        ReferencedSeries(
            axial_uid,
            tuple((CT_IMAGE_STORAGE, sop_uid_for(axial_uid, n + 1)) for n in range(SLICES)),
        ),
        ReferencedSeries(
            str(kin.SeriesInstanceUID), ((KOS_SOP_CLASS_UID, str(kin.SOPInstanceUID)),)
        ),
    )
    manifest = build_kos(
        patient=ANS_TEST_PATIENT,
        study_uid=study.study_uid,
        accession_number="ACN197",
        accession_issuer=study.accession_issuer,
        institution_name="Centre de radiologie Ambroise^^^^^^^^^101235555",
        series=series,
        retrieve_base_url=drimm.source_api,
        kos_series_uid=generate_uid(),
        kos_sop_uid=generate_uid(),
        study_date="20250101",
        study_time="100000",
        content_date="20250101",
        content_time="120000",
        description="Scanner avec images clés",
    )
    path = out / "manifest.dcm"
    manifest.save_as(path, enforce_file_format=True)
    archive_url = f"sqlite:///{drimm.work / 'source-archive.db'}"
    publish_demo_kos(archive_url, path, location=SOURCE_LOCATION, cda_id=DEMO_CDA_ID)
    return KinExam(
        study.study_uid,
        axial_uid,
        str(kin.SeriesInstanceUID),
        tuple(key_sop_uids),
        path.read_bytes(),
    )


@pytest.fixture
def browser(drimm: DrimmStack) -> Iterator[ConsumerBrowser]:
    b = ConsumerBrowser(drimm)
    yield b
    b.close()


def _first(row: dict[str, object], tag: str) -> object:
    return (row.get(tag, {}).get("Value") or [None])[0]  # type: ignore[attr-defined]


def test_the_kin_of_the_manifest_is_the_virtual_key_image_series(
    exam: KinExam, browser: ConsumerBrowser
) -> None:
    """DB.VI-CO.197: viewing only the key images, each marked, from the Source's KIN."""
    viewer = browser.open(exam.manifest)
    assert browser.get(viewer).status_code == 200
    study = exam.study_uid
    rows = browser.get(f"/dicomweb/studies/{study}/series").json()
    by_uid = {_first(r, "0020000E"): r for r in rows}
    # The KO series is not offered as such; its key images are, first (number 0).
    assert set(by_uid) == {exam.axial_uid, exam.kin_series_uid}, rows
    virtual = by_uid[exam.kin_series_uid]
    assert _first(virtual, "0008103E") == "Images clés"
    assert _first(virtual, "00080060") == "CT"
    assert _first(virtual, "00200011") == 0
    assert _first(virtual, "00201209") == len(KEY_SLICES)

    # The marks ("Image clé" in the overlay, app-config.js) in the full series.
    marks = browser.get(f"/dicomweb/studies/{study}/key-images").json()
    assert marks["sop_uids"] == sorted(exam.key_sop_uids)
    assert marks["series"] == [
        {"series_uid": exam.kin_series_uid, "sop_uids": list(exam.key_sop_uids)}
    ]

    # The virtual series' metadata: the key images only, moved into it.
    meta = browser.get(f"/dicomweb/studies/{study}/series/{exam.kin_series_uid}/metadata")
    assert meta.status_code == 200, meta.text
    instances = meta.json()
    assert sorted(str(_first(r, "00080018")) for r in instances) == sorted(exam.key_sop_uids)
    for row in instances:
        assert _first(row, "0020000E") == exam.kin_series_uid
        assert _first(row, "0008103E") == "Images clés"
        assert f"/series/{exam.axial_uid}/" in row["7FE00010"]["BulkDataURI"]

    # Its frames are those of the real series (same retrieval, same cache).
    sop_uid = exam.key_sop_uids[0]
    frames = []
    for series_uid in (exam.kin_series_uid, exam.axial_uid):
        answer = browser.get(
            f"/dicomweb/studies/{study}/series/{series_uid}/instances/{sop_uid}/frames/1",
            headers={"Accept": FRAME_ACCEPT},
        )
        assert answer.status_code == 200, answer.text
        frames.append(read_frame(answer))
    assert frames[0] == frames[1]
    # An image the KIN does not select is not in the virtual series.
    other = sop_uid_for(exam.axial_uid, 1)
    refused = browser.get(
        f"/dicomweb/studies/{study}/series/{exam.kin_series_uid}/instances/{other}/frames/1",
        headers={"Accept": FRAME_ACCEPT},
    )
    assert refused.status_code == 404

    # The KIN arrived from the Source as a Part-10 KO instance: accepted, not an E301.
    progress = browser.get("/api/progress").json()["series"]
    kin_entry = next(s for s in progress if s["series_uid"] == exam.kin_series_uid)
    assert kin_entry["error"] is None, kin_entry
