"""The demo data: phantom, JPEG-LS CT study and its DRIM-M KOS (FACTS.md section 1)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import imagecodecs
import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_frames

from bff.demo.dataset import ANS_TEST_PATIENT, DemoStudy, write_demo_study
from bff.demo.kos import KOS_SOP_CLASS_UID, parse_kos
from bff.demo.phantom import make_ct_slice, make_ct_volume

N_SLICES = 8


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> DemoStudy:
    return write_demo_study(tmp_path_factory.mktemp("demo"), n_slices=N_SLICES, seed=3)


def test_phantom_is_deterministic_per_seed() -> None:
    a = make_ct_volume(3, rows=64, cols=64, seed=7)
    b = make_ct_volume(3, rows=64, cols=64, seed=7)
    c = make_ct_volume(3, rows=64, cols=64, seed=8)
    assert a.dtype == np.int16 and a.shape == (3, 64, 64)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.array_equal(a[1], make_ct_slice(1, 3, 64, 64, seed=7))


def test_phantom_hounsfield_ranges_are_plausible() -> None:
    thorax = make_ct_slice(25, 100)  # upper part: lungs
    abdomen = make_ct_slice(50, 100)  # liver level
    for hu in (thorax, abdomen):
        assert hu.min() >= -1024 and hu.max() <= 3071
        assert (hu == -1024).mean() > 0.1  # outside the reconstruction circle
        assert (np.abs(hu - 40) < 60).mean() > 0.1  # soft tissue
        assert (hu > 600).sum() > 500  # spine, ribs
    assert ((thorax > -950) & (thorax < -750)).sum() > 10_000  # lungs
    assert ((abdomen > -950) & (abdomen < -750)).sum() < 1_000  # no lungs


def test_images_are_jpegls_lossless_and_decode_to_the_phantom(study: DemoStudy) -> None:
    assert study.n_instances == N_SLICES + 2 == len(study.instance_files)
    axial = [pydicom.dcmread(p) for p in study.instance_files if p.parent.name == "S002"]
    assert len(axial) == N_SLICES
    for index, ds in enumerate(sorted(axial, key=lambda d: int(d.InstanceNumber))):
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.80"
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
        assert ds.StudyInstanceUID == study.study_uid
        assert ds.SeriesInstanceUID == study.series_uids[1]
        assert ds.Rows == ds.Columns == 512 and ds.BitsAllocated == 16
        assert float(ds.ImagePositionPatient[2]) == float(ds.SliceLocation)
        assert ds.AccessionNumber == "ACN101"
        assert ds.PatientID == ANS_TEST_PATIENT.ins
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
        assert frame[:4] == b"\xff\xd8\xff\xf7"  # SOI then SOF55, no SPIFF header
        stored = imagecodecs.jpegls_decode(frame).astype(np.int32)
        hu = stored * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
        assert np.array_equal(hu, make_ct_slice(index, N_SLICES, 512, 512, seed=3))
    z = [float(d.ImagePositionPatient[2]) for d in axial]
    assert np.allclose(np.diff(sorted(z)), 1.25)


def test_generation_is_reproducible(study: DemoStudy, tmp_path: Path) -> None:
    again = write_demo_study(tmp_path, n_slices=N_SLICES, seed=3)
    assert again.study_uid == study.study_uid and again.kos_sop_uid == study.kos_sop_uid
    assert again.instance_files[-1].read_bytes() == study.instance_files[-1].read_bytes()


def test_kos_follows_the_drim_m_layout(study: DemoStudy) -> None:
    ds = pydicom.dcmread(study.kos_path)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert ds.SOPClassUID == KOS_SOP_CLASS_UID and ds.Modality == "KO"
    assert ds.SpecificCharacterSet == "ISO_IR 100"
    assert ds.SOPInstanceUID == study.kos_sop_uid
    assert ds.SeriesInstanceUID not in study.series_uids
    assert str(ds.PatientName) == "PAT-TROIS^DOMINIQUE"
    assert [str(v) for v in ds.OtherPatientNames] == ["^DOMINIQUE", "PAT-TROIS^DOMINIQUE"]
    assert ds.PatientID == "279035121518989"
    assert ds.IssuerOfPatientID == "ASIP-SANTE-INS-NIR"
    qualifiers = ds.IssuerOfPatientIDQualifiersSequence[0]
    assert (qualifiers.UniversalEntityID, qualifiers.UniversalEntityIDType) == (
        "1.2.250.1.213.1.4.10",
        "ISO",
    )
    assert ds.OtherPatientIDsSequence[0].PatientID == "279035121518989"
    assert ds.OtherPatientIDsSequence[0].TypeOfPatientID == "TEXT"
    assert (ds.PatientBirthDate, ds.PatientSex) == ("19790328", "F")
    assert ds.PatientComments == "63220"  # birthplace INSEE code
    assert ds.InstitutionName == "Centre de radiologie Ambroise^^^^^^^^^101235555"
    # The accession number is only in the ReferencedRequestSequence.
    assert ds.AccessionNumber == ""
    request = ds.ReferencedRequestSequence[0]
    assert request.AccessionNumber == "ACN101"
    assert request.StudyInstanceUID == study.study_uid
    issuer = request.IssuerOfAccessionNumberSequence[0]
    assert (issuer.UniversalEntityID, issuer.UniversalEntityIDType) == (
        "1.2.250.1.213.4.5.2.5",
        "ISO",
    )
    concept = ds.ConceptNameCodeSequence[0]
    assert (concept.CodeValue, concept.CodingSchemeDesignator) == ("113030", "DCM")
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "2010"

    manifest = parse_kos(ds)
    assert manifest.patient == ANS_TEST_PATIENT
    assert manifest.accession_number == "ACN101" and manifest.top_level_accession_number == ""
    assert "Thorax-abdomen" in manifest.description
    assert [s.series_uid for s in manifest.series] == list(study.series_uids)
    for series in manifest.series:
        assert series.retrieve_url == (
            f"https://db1.localhost/api/source/studies/{study.study_uid}/series/{series.series_uid}"
        )
    referenced = {sop for s in manifest.series for _, sop in s.instances}
    on_disk = {
        str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
        for p in study.instance_files
    }
    assert referenced == on_disk == set(manifest.content_image_sop_uids)


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools not installed")
def test_kos_passes_dciodvfy(study: DemoStudy) -> None:
    result = subprocess.run(
        ["dciodvfy", str(study.kos_path)], capture_output=True, text=True, timeout=60
    )
    report = result.stdout + result.stderr
    assert "KeyObjectSelectionDocument" in report
    assert not [line for line in report.splitlines() if line.startswith("Error")], report
