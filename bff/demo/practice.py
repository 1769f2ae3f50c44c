"""The practice's own patient of the demo Consumer (DB.VI-CS.32): one small instance whose
PatientID is the practice's local id and whose OtherPatientIDsSequence holds the INS with
its issuer OID, as a French practice PACS keeps them (DB.SO.39). The demo loads it into
the Orthanc beside the Consumer, so that opening the demo KOS there shows the local id;
the tests build the practice's PACS from it too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

#: The demo practice's local id of the demo patient, and its issuer (assigning authority).
DEMO_LOCAL_ID = "CAB-000042"
DEMO_LOCAL_ISSUER = "CABINET-DUPONT"

INS_NIR_TEST = "1.2.250.1.213.1.4.10"
INS_NIA_TEST = "1.2.250.1.213.1.4.11"


def practice_instance(
    path: Path,
    *,
    local_id: str,
    ins: str,
    ins_oid: str = INS_NIR_TEST,
    issuer: str = DEMO_LOCAL_ISSUER,
    birth_date: str = "19790328",
    name: str = "PAT-TROIS^DOMINIQUE",
    oid_in_issuer: bool = False,
) -> Path:
    """One Secondary Capture instance of the practice's patient ``local_id`` (its own
    study). ``oid_in_issuer``: the INS OID written as the item's IssuerOfPatientID, not in
    its qualifiers (both occur)."""
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.PatientName = name
    ds.PatientID = local_id
    ds.IssuerOfPatientID = issuer
    ds.PatientBirthDate = birth_date
    ds.PatientSex = "F"
    item = Dataset()
    item.PatientID = ins
    item.TypeOfPatientID = "TEXT"
    if oid_in_issuer:
        item.IssuerOfPatientID = ins_oid
    else:
        item.IssuerOfPatientID = "ASIP-SANTE-INS-NIR"
        qualifier = Dataset()
        qualifier.UniversalEntityID = ins_oid
        qualifier.UniversalEntityIDType = "ISO"
        item.IssuerOfPatientIDQualifiersSequence = Sequence([qualifier])
    ds.OtherPatientIDsSequence = Sequence([item])
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = np.zeros((8, 8), np.uint8).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return path
