"""A practice's own patients in a real PACS (DB.VI-CS.32): small instances whose
PatientID is the practice's local id and whose OtherPatientIDsSequence holds the INS
with its issuer OID, as a French practice PACS keeps them (DB.SO.39)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from starlette.applications import Starlette

from bff.access.local_patient_id import LocalPatientIds
from bff.demo.orthanc import OrthancProcess
from bff.dicomweb.upstream import DicomwebUpstream
from bff.services import services_of

INS_NIR_TEST = "1.2.250.1.213.1.4.10"
INS_NIA_TEST = "1.2.250.1.213.1.4.11"


def practice_instance(
    path: Path,
    *,
    local_id: str,
    ins: str,
    ins_oid: str = INS_NIR_TEST,
    issuer: str = "CABINET-DUPONT",
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


DEMO_INS = "279035121518989"  # the demo KOS's (bff/demo/identity.py)
LOCAL_ID = "CAB-000042"
LOCAL_ISSUER = "CABINET-DUPONT"
ALL_INS_OIDS = frozenset({"1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.9", INS_NIR_TEST, INS_NIA_TEST})


@contextmanager
def practice_pacs(work: Path) -> Iterator[OrthancProcess]:
    """A real Orthanc holding the practice's patient CAB-000042, of the demo KOS's INS."""
    path = practice_instance(work / "local.dcm", local_id=LOCAL_ID, ins=DEMO_INS)
    with OrthancProcess(work / "orthanc") as process:
        process.upload([path])
        yield process


@contextmanager
def local_ids_in(app: Starlette, url: str | None) -> Iterator[None]:
    """The running app looks the local patient id up in the PACS at ``url`` (None: off)
    while the block runs. Its client keeps no connection: nothing is left open in the
    app's event loop afterwards."""
    services = services_of(app)
    kept = services.local_patient_ids
    upstream = None
    if url is not None:
        client = httpx.AsyncClient(timeout=5.0, limits=httpx.Limits(max_keepalive_connections=0))
        upstream = DicomwebUpstream(url, origin="practice", client=client)
    object.__setattr__(  # frozen services, test only
        services, "local_patient_ids", LocalPatientIds(upstream, ALL_INS_OIDS, timeout=5.0)
    )
    try:
        yield
    finally:
        object.__setattr__(services, "local_patient_ids", kept)
