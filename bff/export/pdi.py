"""The IHE PDI layout of a study download and its DICOMDIR (PS3.10, PS3.11 STD-GEN-USB,
PS3.3 Annex F Basic Directory; DB.VI-SO.176).

File IDs: ``DICOM/PAT00001/STU00001/SER00001/IMG00001``: five components (at most 8
allowed), each at most 8 characters of upper-case letters and digits (PS3.10 8.2,
PS3.12), no extension. They are handed out as instances arrive (the ZIP is streamed),
and each instance leaves behind a small :class:`InstanceFacts` (about 3 KB) from
which the DICOMDIR is built at the end of the archive (entry order does not matter in a
ZIP).

The DICOMDIR is encoded by pydicom (Explicit VR Little Endian). Record offsets are byte
positions of each record's item tag in the file; they are found by encoding once with
zero offsets, reading the result back (pydicom records each item's position in
``seq_item_tell``), then encoding again with the offsets set: every offset is a 4-byte
UL, so the second encoding has the same layout, which is checked.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
KOS_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"
SR_PREFIX = "1.2.840.10008.5.1.4.1.1.88."
PR_PREFIX = "1.2.840.10008.5.1.4.1.1.11."
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
ROOT = "DICOM"
IMPLEMENTATION_UID = "1.2.826.0.1.3680043.10.1417.7"  # drimbox-viewer (PS3.7 D.3.3.2)
FILE_SET_ID = "DRIMBOX"


@dataclass
class InstanceFacts:
    """What the DICOMDIR and README need of one instance (kept until the end)."""

    sop_class_uid: str
    sop_uid: str
    transfer_syntax_uid: str
    series_uid: str
    study_uid: str
    patient: dict[str, Any]  # PatientName, PatientID, PatientBirthDate, PatientSex
    study: dict[str, Any]  # StudyDate, StudyTime, StudyDescription, StudyID, AccessionNumber
    series: dict[str, Any]  # Modality, SeriesNumber, SeriesDescription
    instance: dict[str, Any]  # InstanceNumber, ContentDate, ContentTime, ...
    character_set: Any = None  # SpecificCharacterSet as stored
    institution: str = ""
    stored_lossy: bool = False  # kept as the PACS holds it, which is lossy
    kept_native: bool = False  # no lossless codec for this pixel layout
    recompressed: bool = False  # native in the PACS, JPEG-LS / RLE lossless here
    file_id: tuple[str, ...] = ()


@dataclass
class _Series:
    folder: str
    count: int = 0


@dataclass
class PdiLayout:
    """Hands out file IDs as instances arrive and keeps their facts, in arrival order."""

    instances: list[InstanceFacts] = field(default_factory=list)
    study_values: dict[str, dict[str, Any]] = field(default_factory=dict)
    _patients: dict[str, str] = field(default_factory=dict)
    _studies: dict[tuple[str, str], str] = field(default_factory=dict)
    _series: dict[tuple[str, str, str], _Series] = field(default_factory=dict)

    def add(self, facts: InstanceFacts) -> str:
        """Give ``facts`` its file ID; return it as a ZIP path (``/`` separators)."""
        patient_key = str(facts.patient.get("PatientID", ""))
        patient = self._patients.setdefault(patient_key, f"PAT{len(self._patients) + 1:05d}")
        study_key = (patient, facts.study_uid)
        study = self._studies.setdefault(study_key, f"STU{len(self._studies) + 1:05d}")
        series_key = (patient, facts.study_uid, facts.series_uid)
        series = self._series.get(series_key)
        if series is None:
            series = self._series[series_key] = _Series(f"SER{len(self._series) + 1:05d}")
        series.count += 1
        # Study-level values: the first non-empty one of the study's instances (a DRIM-M
        # KOS has an empty top-level AccessionNumber, its images do not).
        merged = self.study_values.setdefault(facts.study_uid, {})
        for key, value in facts.study.items():
            if value not in (None, "") and key not in merged:
                merged[key] = value
        if series.count > 999_999:
            raise ValueError("more than 999999 instances in one series")
        image = f"IMG{series.count:05d}" if series.count <= 99_999 else f"IM{series.count:06d}"
        facts.file_id = (ROOT, patient, study, series.folder, image)
        self.instances.append(facts)
        return "/".join(facts.file_id)


# -- records ------------------------------------------------------------------------------


def _record(kind: str, charset: Any) -> Dataset:
    record = Dataset()
    record.OffsetOfTheNextDirectoryRecord = 0
    record.RecordInUseFlag = 0xFFFF
    record.OffsetOfReferencedLowerLevelDirectoryEntity = 0
    record.DirectoryRecordType = kind
    if charset:
        record.SpecificCharacterSet = charset
    return record


def _patient_record(facts: InstanceFacts) -> Dataset:
    record = _record("PATIENT", facts.character_set)
    record.PatientName = facts.patient.get("PatientName") or ""
    record.PatientID = facts.patient.get("PatientID") or ""
    for keyword in ("PatientBirthDate", "PatientSex"):
        if facts.patient.get(keyword):
            setattr(record, keyword, facts.patient[keyword])
    return record


def _study_record(facts: InstanceFacts, study: dict[str, Any]) -> Dataset:
    record = _record("STUDY", facts.character_set)
    # StudyDate, StudyTime and StudyID are type 1 in the record: when the PACS has none,
    # a stand-in is written in the DICOMDIR only (the files are never changed).
    record.StudyDate = study.get("StudyDate") or facts.instance.get("ContentDate") or "19000101"
    record.StudyTime = study.get("StudyTime") or facts.instance.get("ContentTime") or "000000"
    record.StudyDescription = study.get("StudyDescription") or ""
    record.StudyInstanceUID = facts.study_uid
    record.StudyID = study.get("StudyID") or study.get("AccessionNumber") or "1"
    record.AccessionNumber = study.get("AccessionNumber") or ""
    return record


def _series_record(facts: InstanceFacts) -> Dataset:
    record = _record("SERIES", facts.character_set)
    record.Modality = facts.series.get("Modality") or "OT"
    record.SeriesInstanceUID = facts.series_uid
    record.SeriesNumber = facts.series.get("SeriesNumber")
    if record.SeriesNumber is None or record.SeriesNumber == "":
        record.SeriesNumber = 0
    if facts.series.get("SeriesDescription"):
        record.SeriesDescription = facts.series["SeriesDescription"]
    return record


def record_type(sop_class_uid: str) -> str:
    if sop_class_uid == KOS_SOP_CLASS:
        return "KEY OBJECT DOC"
    if sop_class_uid.startswith(SR_PREFIX):
        return "SR DOCUMENT"
    if sop_class_uid.startswith(PR_PREFIX):
        return "PRESENTATION"
    if sop_class_uid == ENCAPSULATED_PDF:
        return "ENCAP DOC"
    return "IMAGE"


def _instance_record(facts: InstanceFacts, position: int) -> Dataset:
    kind = record_type(facts.sop_class_uid)
    record = _record(kind, facts.character_set)
    record.ReferencedFileID = list(facts.file_id)
    record.ReferencedSOPClassUIDInFile = facts.sop_class_uid
    record.ReferencedSOPInstanceUIDInFile = facts.sop_uid
    record.ReferencedTransferSyntaxUIDInFile = facts.transfer_syntax_uid
    values = facts.instance
    number = values.get("InstanceNumber")
    record.InstanceNumber = number if number not in (None, "") else position
    if kind == "IMAGE":
        return record
    record.ContentDate = values.get("ContentDate") or facts.study.get("StudyDate") or "19000101"
    record.ContentTime = values.get("ContentTime") or facts.study.get("StudyTime") or "000000"
    if kind in ("KEY OBJECT DOC", "SR DOCUMENT", "ENCAP DOC"):
        record.ConceptNameCodeSequence = Sequence(values.get("ConceptNameCodeSequence") or [])
    if kind == "SR DOCUMENT":
        record.CompletionFlag = values.get("CompletionFlag") or "PARTIAL"
        record.VerificationFlag = values.get("VerificationFlag") or "UNVERIFIED"
    if kind == "PRESENTATION":
        record.PresentationCreationDate = values.get("PresentationCreationDate") or (
            record.ContentDate
        )
        record.PresentationCreationTime = values.get("PresentationCreationTime") or (
            record.ContentTime
        )
        record.ContentLabel = values.get("ContentLabel") or "PR"
        record.ReferencedSeriesSequence = Sequence(values.get("ReferencedSeriesSequence") or [])
    if kind == "ENCAP DOC":
        record.MIMETypeOfEncapsulatedDocument = (
            values.get("MIMETypeOfEncapsulatedDocument") or "application/pdf"
        )
        if values.get("DocumentTitle"):
            record.DocumentTitle = values["DocumentTitle"]
    return record


@dataclass
class _Node:
    record: Dataset
    children: list[_Node] = field(default_factory=list)


def _tree(layout: PdiLayout) -> list[_Node]:
    patients: dict[str, _Node] = {}
    studies: dict[str, _Node] = {}
    series: dict[str, _Node] = {}
    for facts in layout.instances:
        patient_dir, study_dir, series_dir = facts.file_id[1:4]
        if patient_dir not in patients:
            patients[patient_dir] = _Node(_patient_record(facts))
        study_key = f"{patient_dir}/{study_dir}"
        if study_key not in studies:
            merged = layout.study_values.get(facts.study_uid, facts.study)
            studies[study_key] = _Node(_study_record(facts, merged))
            patients[patient_dir].children.append(studies[study_key])
        series_key = f"{study_key}/{series_dir}"
        if series_key not in series:
            series[series_key] = _Node(_series_record(facts))
            studies[study_key].children.append(series[series_key])
        node = series[series_key]
        node.children.append(_Node(_instance_record(facts, len(node.children) + 1)))
    return list(patients.values())


def _flatten(nodes: list[_Node]) -> list[_Node]:
    out: list[_Node] = []
    for node in nodes:
        out.append(node)
        out += _flatten(node.children)
    return out


def _encode(ds: Dataset) -> bytes:
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def build_dicomdir(layout: PdiLayout, *, file_set_uid: str | None = None) -> bytes:
    """The DICOMDIR of ``layout`` (a Basic Directory IOD), as PS3.10 file bytes."""
    roots = _tree(layout)
    ordered = _flatten(roots)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(MEDIA_STORAGE_DIRECTORY)
    meta.MediaStorageSOPInstanceUID = UID(file_set_uid or generate_uid())
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(IMPLEMENTATION_UID)
    meta.ImplementationVersionName = "DRIMBOX_EXPORT"
    ds = Dataset()
    ds.file_meta = meta
    ds.FileSetID = FILE_SET_ID
    ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.FileSetConsistencyFlag = 0
    ds.DirectoryRecordSequence = Sequence([node.record for node in ordered])

    first = _encode(ds)
    parsed = pydicom.dcmread(BytesIO(first), force=True)
    offsets = {
        id(node): int(item.seq_item_tell)
        for node, item in zip(ordered, parsed.DirectoryRecordSequence, strict=True)
    }
    for level in _levels(roots):
        for previous, following in itertools.pairwise(level):
            previous.record.OffsetOfTheNextDirectoryRecord = offsets[id(following)]
    for node in ordered:
        if node.children:
            node.record.OffsetOfReferencedLowerLevelDirectoryEntity = offsets[id(node.children[0])]
    if roots:
        ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = offsets[id(roots[0])]
        ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = offsets[id(roots[-1])]
    final = _encode(ds)
    if len(final) != len(first):  # offsets are fixed-size: the layout cannot move
        raise RuntimeError("DICOMDIR layout changed while setting offsets")
    return final


def _levels(roots: list[_Node]) -> list[list[_Node]]:
    """Sibling lists: the root entity, then each node's children."""
    out = [roots]
    for node in _flatten(roots):
        if node.children:
            out.append(node.children)
    return out
