"""The DRIM-M IMG-KOS manifest: a writer for the demo and a mirror parser for the tests.

Layout as published by DRIM-M samples (FACTS.md section 1), which the viewer must read:

- Key Object Selection Document (SOP class 1.2.840.10008.5.1.4.1.1.88.59), Modality KO,
  SpecificCharacterSet ISO_IR 100, in its own series of the study it describes;
- patient attributes of :mod:`bff.demo.identity` (INS as PatientID, birthplace in
  PatientComments ...), InstitutionName;
- top-level AccessionNumber present but EMPTY; the accession number and its issuer live in
  the (0040,A370) ReferencedRequestSequence item, with the StudyInstanceUID and the
  placer order number;
- (0040,A375) CurrentRequestedProcedureEvidenceSequence -> study -> ReferencedSeriesSequence,
  each series with (0008,1190) RetrieveURL = ``{base}/studies/{study}/series/{series}``
  (series-level WADO-RS, what a DRIM-M Consumer GETs) and its ReferencedSOPSequence;
- content tree TID 2010: CONTAINER (113030, DCM, "Manifest"), a TEXT (113012, DCM,
  "Key Object Description") in French, then one IMAGE item per referenced instance.

The KOS carries no CDA id: the Source keeps the (KOS, CDA id) link itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian

from bff.demo.identity import PatientIdentity, add_patient_module, read_patient_module

KOS_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.88.59"
MANIFEST_CODE = ("113030", "DCM", "Manifest")
KEY_OBJECT_DESCRIPTION_CODE = ("113012", "DCM", "Key Object Description")


@dataclass(frozen=True)
class ReferencedSeries:
    """One series of the evidence: its UID and its ``(sop_class_uid, sop_uid)`` pairs."""

    series_uid: str
    instances: tuple[tuple[str, str], ...]
    retrieve_url: str = ""  # filled by :func:`parse_kos`; computed by :func:`build_kos`


@dataclass(frozen=True)
class KosManifest:
    """What :func:`parse_kos` reads back from a DRIM-M KOS."""

    sop_uid: str
    study_uid: str
    accession_number: str
    accession_issuer: str
    top_level_accession_number: str
    institution_name: str
    patient: PatientIdentity
    description: str
    series: tuple[ReferencedSeries, ...]
    content_image_sop_uids: tuple[str, ...]


def series_retrieve_url(retrieve_base_url: str, study_uid: str, series_uid: str) -> str:
    """Series-level WADO-RS URL written in (0008,1190) RetrieveURL."""
    return f"{retrieve_base_url.rstrip('/')}/studies/{study_uid}/series/{series_uid}"


def _code(value: str, scheme: str, meaning: str) -> Sequence:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return Sequence([item])


def _issuer_sequence(oid: str) -> Sequence:
    item = Dataset()
    item.UniversalEntityID = oid
    item.UniversalEntityIDType = "ISO"
    return Sequence([item])


def build_kos(
    *,
    patient: PatientIdentity,
    study_uid: str,
    accession_number: str,
    accession_issuer: str,
    institution_name: str,
    series: Iterable[ReferencedSeries],
    retrieve_base_url: str,
    kos_series_uid: str,
    kos_sop_uid: str,
    study_date: str,
    study_time: str,
    content_date: str,
    content_time: str,
    description: str,
    study_description: str = "",
    study_id: str = "",
    referring_physician_name: str = "",
    manufacturer: str = "DRIMbox demo",
    series_number: int = 100,
) -> Dataset:
    """A DRIM-M KOS dataset (with file meta, Explicit VR Little Endian) for ``series``."""
    series = tuple(series)
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = KOS_SOP_CLASS_UID
    ds.SOPInstanceUID = kos_sop_uid
    ds.StudyDate = study_date
    ds.ContentDate = content_date
    ds.StudyTime = study_time
    ds.ContentTime = content_time
    ds.AccessionNumber = ""  # FACTS.md 1: empty here, see ReferencedRequestSequence
    ds.Modality = "KO"
    ds.Manufacturer = manufacturer
    ds.InstitutionName = institution_name
    ds.ReferringPhysicianName = referring_physician_name
    ds.SeriesDescription = "Manifeste DRIM-M"
    ds.ReferencedPerformedProcedureStepSequence = Sequence()
    add_patient_module(ds, patient)
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = kos_series_uid
    ds.StudyID = study_id
    ds.SeriesNumber = series_number
    ds.InstanceNumber = 1
    if study_description:
        ds.StudyDescription = study_description

    # SR Document Content module, root CONTAINER of TID 2010.
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = _code(*MANIFEST_CODE)
    ds.ContinuityOfContent = "SEPARATE"
    template = Dataset()
    template.MappingResource = "DCMR"
    template.TemplateIdentifier = "2010"
    ds.ContentTemplateSequence = Sequence([template])

    request = Dataset()
    request.StudyInstanceUID = study_uid
    request.AccessionNumber = accession_number
    request.IssuerOfAccessionNumberSequence = _issuer_sequence(accession_issuer)
    request.PlacerOrderNumberImagingServiceRequest = accession_number
    request.FillerOrderNumberImagingServiceRequest = accession_number
    request.ReferencedStudySequence = Sequence()
    request.RequestedProcedureID = accession_number
    request.RequestedProcedureDescription = study_description
    request.RequestedProcedureCodeSequence = Sequence()
    ds.ReferencedRequestSequence = Sequence([request])

    evidence_study = Dataset()
    evidence_study.StudyInstanceUID = study_uid
    series_items = []
    for ref in series:
        series_item = Dataset()
        series_item.RetrieveURL = series_retrieve_url(retrieve_base_url, study_uid, ref.series_uid)
        series_item.SeriesInstanceUID = ref.series_uid
        sops = []
        for sop_class_uid, sop_uid in ref.instances:
            sop = Dataset()
            sop.ReferencedSOPClassUID = sop_class_uid
            sop.ReferencedSOPInstanceUID = sop_uid
            sops.append(sop)
        series_item.ReferencedSOPSequence = Sequence(sops)
        series_items.append(series_item)
    evidence_study.ReferencedSeriesSequence = Sequence(series_items)
    ds.CurrentRequestedProcedureEvidenceSequence = Sequence([evidence_study])

    text = Dataset()
    text.RelationshipType = "CONTAINS"
    text.ValueType = "TEXT"
    text.ConceptNameCodeSequence = _code(*KEY_OBJECT_DESCRIPTION_CODE)
    text.TextValue = description
    content = [text]
    for ref in series:
        for sop_class_uid, sop_uid in ref.instances:
            image = Dataset()
            image.RelationshipType = "CONTAINS"
            image.ValueType = "IMAGE"
            sop = Dataset()
            sop.ReferencedSOPClassUID = sop_class_uid
            sop.ReferencedSOPInstanceUID = sop_uid
            image.ReferencedSOPSequence = Sequence([sop])
            content.append(image)
    ds.ContentSequence = Sequence(content)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(KOS_SOP_CLASS_UID)
    meta.MediaStorageSOPInstanceUID = UID(kos_sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    return ds


def parse_kos(ds: Dataset) -> KosManifest:
    """Read back what :func:`build_kos` writes (and what DRIM-M samples hold)."""
    if ds.get("SOPClassUID") != KOS_SOP_CLASS_UID:
        raise ValueError(f"not a Key Object Selection Document: {ds.get('SOPClassUID')}")
    request = ds.ReferencedRequestSequence[0]
    issuer_items = request.get("IssuerOfAccessionNumberSequence", [])
    accession_issuer = str(issuer_items[0].get("UniversalEntityID", "")) if issuer_items else ""
    series: list[ReferencedSeries] = []
    for study in ds.CurrentRequestedProcedureEvidenceSequence:
        for item in study.ReferencedSeriesSequence:
            instances = tuple(
                (str(sop.ReferencedSOPClassUID), str(sop.ReferencedSOPInstanceUID))
                for sop in item.ReferencedSOPSequence
            )
            series.append(
                ReferencedSeries(
                    series_uid=str(item.SeriesInstanceUID),
                    instances=instances,
                    retrieve_url=str(item.get("RetrieveURL", "")),
                )
            )
    description = ""
    images: list[str] = []
    for content in ds.get("ContentSequence", []):
        if content.ValueType == "TEXT":
            code = content.ConceptNameCodeSequence[0]
            if (code.CodeValue, code.CodingSchemeDesignator) == KEY_OBJECT_DESCRIPTION_CODE[:2]:
                description = str(content.TextValue)
        elif content.ValueType == "IMAGE":
            images.append(str(content.ReferencedSOPSequence[0].ReferencedSOPInstanceUID))
    return KosManifest(
        sop_uid=str(ds.SOPInstanceUID),
        study_uid=str(request.get("StudyInstanceUID", ds.StudyInstanceUID)),
        accession_number=str(request.get("AccessionNumber", "")),
        accession_issuer=accession_issuer,
        top_level_accession_number=str(ds.get("AccessionNumber", "")),
        institution_name=str(ds.get("InstitutionName", "")),
        patient=read_patient_module(ds),
        description=description,
        series=tuple(series),
        content_image_sop_uids=tuple(images),
    )


def retarget_kos(data: bytes, retrieve_base_url: str) -> bytes:
    """The same KOS (same SOP Instance UID) with its RetrieveURLs on another Source base:
    the demo and tests run the Source on a loopback port the published KOS cannot know."""
    import io

    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    for study in ds.CurrentRequestedProcedureEvidenceSequence:
        for series in study.ReferencedSeriesSequence:
            series.RetrieveURL = series_retrieve_url(
                retrieve_base_url, study.StudyInstanceUID, series.SeriesInstanceUID
            )
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
