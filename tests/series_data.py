"""Test studies for the series rules (issue 6: DB.VI-CS.16, DB.VI-SO.170, .171, .189,
.196): image series built with pydicom, Key Image Notes and DRIM-M manifests (KOS)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

KOS_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.88.59"
OF_INTEREST = ("113000", "DCM", "Of Interest")
MANIFEST = ("113030", "DCM", "Manifest")


@dataclass
class Series:
    series_uid: str
    number: int
    description: str
    sop_uids: list[str] = field(default_factory=list)


@dataclass
class Study:
    study_uid: str
    series: list[Series] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    kos_series_uids: list[str] = field(default_factory=list)
    #: OHIF's study list shows every study of the patient: a test that must see only
    #: its own study gives it a patient of its own.
    patient_id: str = "SERIES-1"


def _save(ds: Dataset, path: Path) -> Path:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return path


def _patient(ds: Dataset, study: Study) -> None:
    ds.PatientName = "SERIES^RULES"
    ds.PatientID = study.patient_id
    ds.StudyInstanceUID = study.study_uid
    ds.StudyDate = "20250101"
    ds.StudyTime = "100000"
    ds.AccessionNumber = "ACN-SR"


def add_series(
    study: Study,
    out_dir: Path,
    number: int,
    description: str,
    n_slices: int,
    size: int = 64,
    *,
    seed: int = 0,
) -> Series:
    """A CT series (unsigned 16-bit, lossless native); noise makes it cost to transcode."""
    series = Series(generate_uid(), number, description)
    frame_of_reference_uid = generate_uid()
    rng = np.random.default_rng(seed)
    base = np.add.outer(np.arange(size), np.arange(size)).astype(np.uint16) * (1000 // size)
    for index in range(n_slices):
        ds = Dataset()
        _patient(ds, study)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.SeriesInstanceUID = series.series_uid
        ds.SeriesNumber = number
        ds.SeriesDescription = description
        ds.Modality = "CT"
        ds.InstanceNumber = index + 1
        ds.FrameOfReferenceUID = frame_of_reference_uid
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, -2.5 * index]
        ds.PixelSpacing = [1, 1]
        ds.SliceThickness = 2.5
        ds.WindowCenter, ds.WindowWidth = 500, 1000
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows = ds.Columns = size
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        noise = rng.integers(0, 400, (size, size), dtype=np.uint16)
        ds.PixelData = (base + noise + 40 * index).astype(np.uint16).tobytes()
        study.files.append(_save(ds, out_dir / f"{series.series_uid}-{index + 1}.dcm"))
        series.sop_uids.append(str(ds.SOPInstanceUID))
    study.series.append(series)
    return series


def add_kos(
    study: Study,
    out_dir: Path,
    title: tuple[str, str, str],
    references: list[tuple[str, str, str]],
    *,
    number: int = 900,
) -> str:
    """A Key Object Selection Document in its own KO series; ``references`` are
    (study UID, series UID, SOP UID) listed in the evidence and as content IMAGE items
    (a manifest lists them in the evidence only). Returns the KO series UID."""
    ds = Dataset()
    _patient(ds, study)
    ds.SOPClassUID = KOS_SOP_CLASS_UID
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = number
    ds.Modality = "KO"
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = "20250101", "110000"
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = title
    ds.ConceptNameCodeSequence = Sequence([code])
    template = Dataset()
    template.MappingResource, template.TemplateIdentifier = "DCMR", "2010"
    ds.ContentTemplateSequence = Sequence([template])
    evidence: dict[str, dict[str, list[str]]] = {}
    for study_uid, series_uid, sop_uid in references:
        evidence.setdefault(study_uid, {}).setdefault(series_uid, []).append(sop_uid)
    studies = []
    for study_uid, series_map in evidence.items():
        item = Dataset()
        item.StudyInstanceUID = study_uid
        series_items = []
        for series_uid, sops in series_map.items():
            series_item = Dataset()
            series_item.SeriesInstanceUID = series_uid
            series_item.ReferencedSOPSequence = Sequence([_sop_ref(uid) for uid in sops])
            series_items.append(series_item)
        item.ReferencedSeriesSequence = Sequence(series_items)
        studies.append(item)
    ds.CurrentRequestedProcedureEvidenceSequence = Sequence(studies)
    content = []
    if title != MANIFEST:
        for _, _, sop_uid in references:
            image = Dataset()
            image.RelationshipType, image.ValueType = "CONTAINS", "IMAGE"
            image.ReferencedSOPSequence = Sequence([_sop_ref(sop_uid)])
            content.append(image)
    ds.ContentSequence = Sequence(content)
    _save(ds, out_dir / f"kos-{ds.SOPInstanceUID}.dcm")
    study.files.append(out_dir / f"kos-{ds.SOPInstanceUID}.dcm")
    study.kos_series_uids.append(str(ds.SeriesInstanceUID))
    return str(ds.SeriesInstanceUID)


def _sop_ref(sop_uid: str) -> Dataset:
    ref = Dataset()
    ref.ReferencedSOPClassUID = CTImageStorage
    ref.ReferencedSOPInstanceUID = sop_uid
    return ref


def add_pdf(study: Study, out_dir: Path, number: int, title: str, document: bytes) -> Series:
    """An Encapsulated PDF report (SOP class 1.2.840.10008.5.1.4.1.1.104.1) in its own
    DOC series; ``document`` is the PDF (padded to an even length as DICOM wants)."""
    series = Series(generate_uid(), number, title)
    ds = Dataset()
    _patient(ds, study)
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.104.1"
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = series.series_uid
    ds.SeriesNumber, ds.SeriesDescription, ds.Modality = number, title, "DOC"
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = "20250101", "120000"
    ds.AcquisitionDateTime = "20250101120000"
    ds.ConversionType, ds.BurnedInAnnotation = "WSD", "NO"
    ds.DocumentTitle = title
    ds.ConceptNameCodeSequence = Sequence([])
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(document)
    ds.EncapsulatedDocument = document + b"\0" * (len(document) % 2)
    study.files.append(_save(ds, out_dir / f"pdf-{ds.SOPInstanceUID}.dcm"))
    series.sop_uids.append(str(ds.SOPInstanceUID))
    study.series.append(series)
    return series


def add_text_report(study: Study, out_dir: Path, number: int) -> Series:
    """The corpus's Basic Text SR ("Examen normal."), moved into ``study`` as series
    ``number``."""
    from tests.corpus import _basic_text_sr

    ds = _basic_text_sr(0, "sr-" + study.study_uid[-8:])
    _patient(ds, study)
    series = Series(generate_uid(), number, str(ds.SeriesDescription))
    ds.SeriesInstanceUID, ds.SeriesNumber = series.series_uid, number
    ds.SOPInstanceUID = generate_uid()
    study.files.append(_save(ds, out_dir / f"sr-{ds.SOPInstanceUID}.dcm"))
    series.sop_uids.append(str(ds.SOPInstanceUID))
    study.series.append(series)
    return series
