"""Small synthetic volumes with known content, written with pydicom, for the viewer's
tools tests (issue 6): a CT volume with a bright and a dark dot in two slices (MPR,
MIP / MinIP, Hounsfield units), and a PET-CT study whose PET is SUV-computable (fusion,
SUV). Everything is uncompressed Explicit VR Little Endian; the BFF serves it lossy as
it would any exam.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    PositronEmissionTomographyImageStorage,
    generate_uid,
)

#: The dot CT: SIZE x SIZE pixels of 1 mm, N_SLICES slices SLICE_MM apart, z from Z0 up.
SIZE = 64
N_SLICES = 33
SLICE_MM = 2.0
Z0 = -32.0
RESCALE_INTERCEPT = -1024
BACKGROUND_HU = 40
BRIGHT_HU = 3000
DARK_HU = -1000
#: The bright dot: slices, rows and columns (half-open) -- 10 to 14 mm below the middle
#: slice, out of a thin slab around it, inside a 30 mm one.
BRIGHT_SLICES, BRIGHT_ROWS, BRIGHT_COLS = (9, 12), (14, 24), (14, 24)
#: The dark dot: 10 to 14 mm above the middle slice, in the other corner.
DARK_SLICES, DARK_ROWS, DARK_COLS = (21, 24), (40, 50), (40, 50)
MIDDLE_SLICE = N_SLICES // 2

#: PET: SUVbw = activity (Bq/ml) * weight (g) / dose (Bq), injection at the series time.
PATIENT_WEIGHT_KG = 70.0
INJECTED_DOSE_BQ = 350e6
SUV_FACTOR = PATIENT_WEIGHT_KG * 1000 / INJECTED_DOSE_BQ  # 2e-4
PET_BACKGROUND_BQML = 5000  # SUV 1
PET_HOT_BQML = 25000  # SUV 5
PET_SIZE = 32  # 2 mm pixels: same field of view as the CT
PET_SLICES = 17  # 4 mm apart: same extent as the CT


@dataclass(frozen=True)
class Series:
    study_uid: str
    series_uid: str
    paths: list[Path]


def _file_dataset(sop_class_uid: str) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def _common(ds: Dataset, patient: dict[str, str], study_uid: str, series_uid: str) -> None:
    ds.PatientName = patient["name"]
    ds.PatientID = patient["id"]
    ds.PatientBirthDate = "19700101"
    # calculate-suv (OHIF) refuses any PatientSex but F or M: no SUV then.
    ds.PatientSex = "F"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.StudyDate, ds.StudyTime = "20250314", "100000"
    ds.StudyID = "1"
    ds.AccessionNumber = patient.get("accession", "")
    ds.InstitutionName = "Clinique des Tests"
    ds.ReferringPhysicianName = ""
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0


def dot_volume_hu() -> npt.NDArray[np.int32]:
    """The dot CT in Hounsfield units, indexed [slice, row, column]."""
    hu = np.full((N_SLICES, SIZE, SIZE), BACKGROUND_HU, dtype=np.int32)
    hu[slice(*BRIGHT_SLICES), slice(*BRIGHT_ROWS), slice(*BRIGHT_COLS)] = BRIGHT_HU
    hu[slice(*DARK_SLICES), slice(*DARK_ROWS), slice(*DARK_COLS)] = DARK_HU
    return hu


def write_dot_ct(
    out_dir: Path,
    *,
    patient: dict[str, str] | None = None,
    study_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    description: str = "Volume de test (points)",
) -> Series:
    """The dot CT (background BACKGROUND_HU, a bright and a dark dot), its own study
    unless ``study_uid`` is given."""
    patient = patient or {"name": "OUTILS^TEST", "id": "TOOLS-1"}
    study_uid = study_uid or str(generate_uid())
    series_uid = str(generate_uid())
    frame_of_reference_uid = frame_of_reference_uid or str(generate_uid())
    stored = (dot_volume_hu() - RESCALE_INTERCEPT).astype(np.uint16)
    paths = []
    for index in range(N_SLICES):
        ds = _file_dataset(CTImageStorage)
        _common(ds, patient, study_uid, series_uid)
        ds.Modality = "CT"
        ds.SeriesNumber = 2
        ds.SeriesDescription = description
        ds.SeriesDate, ds.SeriesTime = "20250314", "100000"
        ds.InstanceNumber = index + 1
        ds.FrameOfReferenceUID = frame_of_reference_uid
        ds.ImagePositionPatient = [-31.5, -31.5, Z0 + SLICE_MM * index]
        ds.SliceLocation = Z0 + SLICE_MM * index
        ds.PixelSpacing = [1, 1]
        ds.SliceThickness = SLICE_MM
        ds.KVP = 120
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = RESCALE_INTERCEPT, 1, "HU"
        ds.Rows = ds.Columns = SIZE
        ds.PixelData = stored[index].tobytes()
        path = out_dir / f"ct-{series_uid[-12:]}-{index + 1:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return Series(study_uid, series_uid, paths)


def pet_volume_bqml() -> npt.NDArray[np.uint16]:
    """The PET activity (Bq/ml), [slice, row, column]: a hot cube around the bright dot."""
    activity = np.full((PET_SLICES, PET_SIZE, PET_SIZE), PET_BACKGROUND_BQML, dtype=np.uint16)
    activity[3:7, 6:13, 6:13] = PET_HOT_BQML
    return activity


def _radiopharmaceutical(start_time: str) -> Dataset:
    item = Dataset()
    item.Radiopharmaceutical = "Fluorodeoxyglucose F^18^"
    item.RadiopharmaceuticalStartTime = start_time
    item.RadiopharmaceuticalStartDateTime = "20250314" + start_time
    item.RadionuclideTotalDose = INJECTED_DOSE_BQ
    item.RadionuclideHalfLife = 6586.2
    item.RadionuclidePositronFraction = 0.9673
    return item


def write_pet_ct(out_dir: Path) -> tuple[Series, Series]:
    """A PET-CT study: the dot CT and an SUV-computable PET in one frame of reference
    (BQML, decay corrected to the series START, ATTN/DECY, injection at the series time,
    so SUVbw = Bq/ml * SUV_FACTOR)."""
    patient = {"name": "FUSION^TEST", "id": "FUSION-1"}
    study_uid, frame_of_reference_uid = str(generate_uid()), str(generate_uid())
    ct = write_dot_ct(
        out_dir,
        patient=patient,
        study_uid=study_uid,
        frame_of_reference_uid=frame_of_reference_uid,
        description="TDM de la TEP",
    )
    series_uid = str(generate_uid())
    activity = pet_volume_bqml()
    series_time = "101500"
    paths = []
    for index in range(PET_SLICES):
        ds = _file_dataset(PositronEmissionTomographyImageStorage)
        _common(ds, patient, study_uid, series_uid)
        ds.Modality = "PT"
        ds.SeriesNumber = 3
        ds.SeriesDescription = "TEP FDG corrigée"
        ds.SeriesDate, ds.SeriesTime = "20250314", series_time
        ds.AcquisitionDate, ds.AcquisitionTime = "20250314", series_time
        ds.ContentDate, ds.ContentTime = "20250314", series_time
        ds.InstanceNumber = index + 1
        ds.ImageIndex = index + 1
        ds.FrameOfReferenceUID = frame_of_reference_uid
        ds.ImagePositionPatient = [-31.0, -31.0, Z0 + 4.0 * index]
        ds.SliceLocation = Z0 + 4.0 * index
        ds.PixelSpacing = [2, 2]
        ds.SliceThickness = 4.0
        ds.Units = "BQML"
        ds.DecayCorrection = "START"
        ds.CorrectedImage = ["ATTN", "DECY"]
        ds.SeriesType = ["STATIC", "IMAGE"]
        ds.NumberOfSlices = PET_SLICES
        ds.DecayFactor = 1.0
        ds.FrameReferenceTime = 0
        ds.ActualFrameDuration = 600000
        ds.PatientWeight = PATIENT_WEIGHT_KG
        ds.PatientSize = 1.75
        ds.RadiopharmaceuticalInformationSequence = Sequence([_radiopharmaceutical(series_time)])
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.Rows = ds.Columns = PET_SIZE
        ds.PixelData = activity[index].tobytes()
        path = out_dir / f"pt-{series_uid[-12:]}-{index + 1:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return ct, Series(study_uid, series_uid, paths)


def describe() -> dict[str, Any]:
    """The known content, for test messages."""
    return {
        "ct": {"background": BACKGROUND_HU, "bright": (BRIGHT_SLICES, BRIGHT_HU)},
        "pet": {"suv_background": PET_BACKGROUND_BQML * SUV_FACTOR},
    }
