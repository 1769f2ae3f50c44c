"""A seeded, reproducible display-conformance corpus (DB.VI-CS.30, DB.VI-CS.31).

One small object per SOP class of the spec's Tableau 4 (Encapsulated PDF included), one
per Basic Image Review pixel variant quoted under DB.VI-CS.31 (8/16 bits, MONOCHROME1/2,
RGB planar 0/1, PALETTE COLOR (also implicit VR, and segmented tables), YBR_FULL_422 JPEG
baseline, signed/unsigned, single and multi-frame), and objects the viewer cannot show (a
Structured Report, raw data), each in its own study so that a failure names one object.
Built with pydicom and numpy only.

Images are 64x64 (a few 64x96) with a visible pattern (a ramp, a bright disc that moves
from frame to frame and a dark square), so a rendered image is clearly not blank. UIDs
come from the seed and the object's key: the same seed writes the same files.

``python -m tests.corpus --out DIR [--seed N]`` writes the corpus and lists it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import imagecodecs
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    generate_uid,
)

UID_PREFIX = "1.2.826.0.1.3680043.8.498."
STUDY_DATE = "20250610"
STUDY_TIME = "091500"
ROWS = 64
COLUMNS = 64
FRAMES = 4

Pixels = npt.NDArray[np.floating]


@dataclass(frozen=True)
class CorpusObject:
    """One written object; ``kind`` is 'image', 'pdf' or 'unsupported'."""

    key: str
    label: str
    sop_class_uid: str
    kind: str
    study_uid: str
    series_uid: str
    sop_uid: str
    number_of_frames: int
    transfer_syntax_uid: str
    path: Path


def uid(seed: int, *parts: str) -> str:
    return generate_uid(UID_PREFIX, entropy_srcs=[str(seed), *parts])


def pattern(frame: int, rows: int = ROWS, columns: int = COLUMNS) -> Pixels:
    """Values in [0, 1]: a ramp, a bright disc moving with ``frame``, a dark square."""
    y, x = np.mgrid[0:rows, 0:columns].astype(np.float64)
    image = 0.25 + 0.5 * (x / columns + y / rows) / 2
    cy, cx = rows / 2, columns / 3 + frame * columns / 12
    image[(y - cy) ** 2 + (x - cx) ** 2 < (min(rows, columns) / 5) ** 2] = 1.0
    image[rows // 8 : rows // 4, columns // 8 : columns // 4] = 0.0
    result: Pixels = image
    return result


def grey(
    frames: int, lo: int, hi: int, dtype: str, rows: int = ROWS, columns: int = COLUMNS
) -> npt.NDArray[np.integer]:
    """``frames`` pattern frames scaled to [lo, hi] in ``dtype``, shape (frames, rows, cols)."""
    stack = np.stack([pattern(f, rows, columns) for f in range(frames)])
    return np.rint(lo + stack * (hi - lo)).astype(dtype)


def colour(frames: int, rows: int = ROWS, columns: int = COLUMNS) -> npt.NDArray[np.uint8]:
    """RGB frames (frames, rows, cols, 3): red ramp, green pattern, blue disc."""
    out = np.zeros((frames, rows, columns, 3), np.uint8)
    for f in range(frames):
        p = pattern(f, rows, columns)
        out[f, ..., 0] = np.rint(255 * np.linspace(0, 1, columns))[None, :]
        out[f, ..., 1] = np.rint(200 * p)
        out[f, ..., 2] = np.where(p >= 1.0, 255, 60)
    return out


# -- modules -------------------------------------------------------------------------------


def _base(seed: int, key: str, sop_class_uid: str, modality: str, description: str) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = uid(seed, key, "sop")
    ds.StudyInstanceUID = uid(seed, key, "study")
    ds.SeriesInstanceUID = uid(seed, key, "series")
    ds.FrameOfReferenceUID = uid(seed, key, "frame-of-reference")
    ds.PatientName = "CORPUS^" + key.upper().replace("-", "_")[:40]
    ds.PatientID = "CORPUS-" + key[:50]
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = STUDY_DATE
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = STUDY_TIME
    ds.AccessionNumber = "CORPUS"
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.StudyDescription = "Corpus " + key
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.SeriesDescription = description
    ds.InstanceNumber = 1
    ds.Manufacturer = "DRIMbox corpus"
    ds.InstitutionName = "Clinique des Tests"
    # Type 2 / 2C attributes of the common modules (present, empty when unknown).
    ds.Laterality = ""
    ds.PatientOrientation = ""
    ds.PositionReferenceIndicator = ""
    ds.AcquisitionContextSequence = Sequence([])
    if modality in ("CT", "MR"):
        ds.PatientPosition = "HFS"
    return ds


def _pixels(
    ds: Dataset,
    data: npt.NDArray[np.integer],
    *,
    photometric: str,
    bits_stored: int | None = None,
    planar: int | None = None,
) -> None:
    """Image Pixel module for ``data`` (frames, rows, cols[, 3]) stored native."""
    frames, rows, columns = data.shape[:3]
    samples = 3 if data.ndim == 4 else 1
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = rows, columns
    allocated = 8 * data.dtype.itemsize
    ds.BitsAllocated = allocated
    ds.BitsStored = bits_stored or allocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if data.dtype.kind == "i" else 0
    if samples == 3:
        ds.PlanarConfiguration = planar or 0
        if planar == 1:
            data = np.ascontiguousarray(np.moveaxis(data, -1, 1))  # (f, 3, r, c)
    if frames > 1 or "NumberOfFrames" in ds:
        ds.NumberOfFrames = frames
    raw = data.astype(data.dtype.newbyteorder("<")).tobytes()
    ds.PixelData = raw + (b"\0" if len(raw) % 2 else b"")


def _plane(ds: Dataset, z: float = 0.0) -> None:
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-32.0, -32.0, z]
    ds.PixelSpacing = [1, 1]
    ds.SliceThickness = 2


def _window(ds: Dataset, lo: int, hi: int) -> None:
    ds.WindowCenter = (lo + hi) // 2
    ds.WindowWidth = max(hi - lo, 2)


def _item(**attrs: object) -> Dataset:
    item = Dataset()
    for keyword, value in attrs.items():
        setattr(item, keyword, value)
    return item


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    return _item(CodeValue=value, CodingSchemeDesignator=scheme, CodeMeaning=meaning)


def _enhanced(
    ds: Dataset,
    frames: int,
    *,
    lo: int,
    hi: int,
    rescale: tuple[float, float, str] | None = None,
    frame_type: str = "ORIGINAL\\PRIMARY\\AXIAL\\NONE",
    frame_type_keyword: str = "",
) -> None:
    """Multi-frame functional groups OHIF/cornerstone read: Pixel Measures, Plane
    Orientation (shared), Plane Position, Frame Content (per frame), Frame VOI LUT and
    Pixel Value Transformation; the Multi-frame Dimension module; Enhanced equipment."""
    ds.ImageType = frame_type.split("\\")
    ds.AcquisitionNumber = 1
    ds.AcquisitionDateTime = STUDY_DATE + STUDY_TIME
    ds.AcquisitionDuration = 1.0
    ds.ContentQualification = "PRODUCT"
    ds.ManufacturerModelName = "Corpus"
    ds.DeviceSerialNumber = "0001"
    ds.SoftwareVersions = "1"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.PresentationLUTShape = "IDENTITY"
    ds.PixelPresentation = "TRUE_COLOR" if ds.SamplesPerPixel == 3 else "MONOCHROME"
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = "NONE"
    ds.NumberOfFrames = frames
    dimension_uid = uid(0, str(ds.SOPInstanceUID), "dimension")
    ds.DimensionOrganizationSequence = Sequence([_item(DimensionOrganizationUID=dimension_uid)])
    ds.DimensionIndexSequence = Sequence(
        [
            _item(
                DimensionOrganizationUID=dimension_uid,
                DimensionIndexPointer=0x00209057,  # In-Stack Position Number
                FunctionalGroupPointer=0x00209111,  # Frame Content Sequence
            )
        ]
    )
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([_item(PixelSpacing=[1, 1], SliceThickness=2)])
    shared.PlaneOrientationSequence = Sequence([_item(ImageOrientationPatient=[1, 0, 0, 0, 1, 0])])
    shared.FrameVOILUTSequence = Sequence(
        [_item(WindowCenter=(lo + hi) // 2, WindowWidth=max(hi - lo, 2))]
    )
    if rescale is not None:
        intercept, slope, kind = rescale
        shared.PixelValueTransformationSequence = Sequence(
            [_item(RescaleIntercept=intercept, RescaleSlope=slope, RescaleType=kind)]
        )
    if frame_type_keyword:
        setattr(shared, frame_type_keyword, Sequence([_item(FrameType=ds.ImageType)]))
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for index in range(frames):
        item = Dataset()
        item.FrameContentSequence = Sequence(
            [
                _item(
                    StackID="1",
                    InStackPositionNumber=index + 1,
                    DimensionIndexValues=[index + 1],
                    FrameAcquisitionDateTime=STUDY_DATE + STUDY_TIME,
                    FrameReferenceDateTime=STUDY_DATE + STUDY_TIME,
                    FrameAcquisitionDuration=1.0,
                )
            ]
        )
        item.PlanePositionSequence = Sequence(
            [_item(ImagePositionPatient=[-32.0, -32.0, -2.0 * index])]
        )
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)


def _cine(ds: Dataset, frames: int) -> None:
    ds.NumberOfFrames = frames
    ds.FrameTime = 100.0
    ds.FrameIncrementPointer = 0x00181063  # Frame Time
    ds.CineRate = 10
    ds.RecommendedDisplayFrameRate = 10


def _nm_pet_orientation(ds: Dataset) -> None:
    ds.PatientOrientationCodeSequence = Sequence([_code("F-10450", "SRT", "recumbent")])
    ds.PatientGantryRelationshipCodeSequence = Sequence([_code("F-10470", "SRT", "headfirst")])
    ds.CollimatorType = "NONE"


def _pet(ds: Dataset) -> None:
    _nm_pet_orientation(ds)
    ds.Units = "BQML"
    ds.DecayCorrection = "START"
    ds.CorrectedImage = ["ATTN", "DECY"]
    ds.PatientWeight = 70
    ds.AcquisitionDate = STUDY_DATE
    ds.AcquisitionTime = STUDY_TIME
    ds.RadiopharmaceuticalInformationSequence = Sequence(
        [
            _item(
                Radiopharmaceutical="Fluorodeoxyglucose F^18^",
                RadiopharmaceuticalStartTime="083000",
                RadiopharmaceuticalStartDateTime=STUDY_DATE + "083000",
                RadionuclideTotalDose=3.7e8,
                RadionuclideHalfLife=6586.2,
                RadionuclidePositronFraction=0.97,
                RadionuclideCodeSequence=Sequence([_code("C-111A1", "SRT", "^18^Fluorine")]),
            )
        ]
    )


# -- objects ------------------------------------------------------------------------------

Builder = Callable[[int, str], Dataset]


def _cr(seed: int, key: str) -> Dataset:
    ds = _base(seed, key, "1.2.840.10008.5.1.4.1.1.1", "CR", "CR thorax")
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.PatientOrientation = ["L", "F"]
    del ds.Laterality  # a single-image, paired body part: ImageLaterality is the one
    _pixels(ds, grey(1, 200, 3800, "u2"), photometric="MONOCHROME2", bits_stored=12)
    ds.ImagerPixelSpacing = [0.2, 0.2]
    _window(ds, 200, 3800)
    return ds


def _dx(seed: int, key: str, sop_class_uid: str, modality: str, label: str) -> Dataset:
    ds = _base(seed, key, sop_class_uid, modality, label)
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    del ds.Laterality
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.PatientOrientation = ["A", "R"] if modality == "MG" else ["L", "F"]
    ds.BurnedInAnnotation = "NO"
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    ds.PresentationLUTShape = "INVERSE" if modality == "DX" else "IDENTITY"
    ds.ImagerPixelSpacing = [0.1, 0.1]
    ds.DetectorType = "DIRECT"
    ds.AcquisitionDate, ds.AcquisitionTime = STUDY_DATE, STUDY_TIME
    ds.ViewCodeSequence = Sequence([_code("R-10226", "SRT", "medio-lateral oblique")])
    ds.LossyImageCompression = "00"
    ds.PositionerType = "MAMMOGRAPHIC" if modality == "MG" else "NONE"
    ds.AnatomicRegionSequence = Sequence([_code("T-D3000", "SRT", "Chest")])
    if modality == "MG":
        ds.ImageLaterality = "L"
        ds.BodyPartExamined = "BREAST"
        ds.AnatomicRegionSequence = Sequence([_code("T-04000", "SRT", "Breast")])
        ds.ViewCodeSequence[0].ViewModifierCodeSequence = Sequence([])
        ds.BreastImplantPresent = "NO"
        ds.PartialView = "NO"
        ds.OrganExposed = "BREAST"
        photometric = "MONOCHROME2"
    else:
        ds.BodyPartExamined = "CHEST"
        ds.ImageLaterality = "U"
        photometric = "MONOCHROME1"
    _pixels(ds, grey(1, 100, 4000, "u2"), photometric=photometric, bits_stored=12)
    _window(ds, 100, 4000)
    return ds


def _ct(seed: int, key: str) -> Dataset:
    ds = _base(seed, key, "1.2.840.10008.5.1.4.1.1.2", "CT", "CT crâne")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.KVP = 120
    ds.AcquisitionNumber = 1
    _plane(ds)
    _pixels(ds, grey(1, -1000, 1000, "i2"), photometric="MONOCHROME2")
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "HU"
    _window(ds, -1000, 1000)
    return ds


def _enhanced_image(
    seed: int,
    key: str,
    sop_class_uid: str,
    modality: str,
    label: str,
    *,
    frame_type_keyword: str,
    hu: bool = False,
) -> Dataset:
    ds = _base(seed, key, sop_class_uid, modality, label)
    _pixels(ds, grey(FRAMES, 100, 3000, "u2"), photometric="MONOCHROME2", bits_stored=12)
    rescale = (-1024.0, 1.0, "HU") if hu else (0.0, 1.0, "US")
    lo, hi = (100 - 1024, 3000 - 1024) if hu else (100, 3000)
    _enhanced(ds, FRAMES, lo=lo, hi=hi, rescale=rescale, frame_type_keyword=frame_type_keyword)
    return ds


def _enhanced_ct(seed: int, key: str) -> Dataset:
    return _enhanced_image(
        seed,
        key,
        "1.2.840.10008.5.1.4.1.1.2.1",
        "CT",
        "CT multi-frame",
        frame_type_keyword="CTImageFrameTypeSequence",
        hu=True,
    )


def _enhanced_mr(seed: int, key: str) -> Dataset:
    return _enhanced_image(
        seed,
        key,
        "1.2.840.10008.5.1.4.1.1.4.1",
        "MR",
        "IRM multi-frame",
        frame_type_keyword="MRImageFrameTypeSequence",
    )


def _enhanced_mr_colour(seed: int, key: str) -> Dataset:
    ds = _base(seed, key, "1.2.840.10008.5.1.4.1.1.4.3", "MR", "IRM couleur")
    _pixels(ds, colour(FRAMES), photometric="RGB", planar=0)
    _enhanced(ds, FRAMES, lo=0, hi=255, frame_type_keyword="MRImageFrameTypeSequence")
    del ds.SharedFunctionalGroupsSequence[0].FrameVOILUTSequence
    return ds


def _mr(seed: int, key: str) -> Dataset:
    ds = _base(seed, key, "1.2.840.10008.5.1.4.1.1.4", "MR", "IRM T1")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M"]
    ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "SE", "NONE", ""
    ds.MRAcquisitionType = "2D"
    ds.EchoTime, ds.RepetitionTime, ds.EchoTrainLength = 15, 500, 1
    ds.MagneticFieldStrength = 1.5
    _plane(ds)
    _pixels(ds, grey(1, 0, 4095, "u2"), photometric="MONOCHROME2", bits_stored=12)
    _window(ds, 0, 4095)
    return ds


def _us(seed: int, key: str) -> Dataset:
    ds = _base(seed, key, "1.2.840.10008.5.1.4.1.1.6.1", "US", "Échographie")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL"]
    _pixels(ds, colour(1)[0][None], photometric="RGB", planar=0)
    return ds


def _us_multiframe(seed: int, key: str) -> Dataset:
    ds = _base(seed, key, "1.2.840.10008.5.1.4.1.1.3.1", "US", "Échographie ciné")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL"]
    _cine(ds, FRAMES)
    _pixels(ds, grey(FRAMES, 0, 255, "u1"), photometric="MONOCHROME2")
    return ds


def _enhanced_us_volume(seed: int, key: str) -> Dataset:
    ds = _base(seed, key, "1.2.840.10008.5.1.4.1.1.6.2", "US", "Échographie volume")
    _pixels(ds, grey(FRAMES, 0, 255, "u1"), photometric="MONOCHROME2")
    _enhanced(ds, FRAMES, lo=0, hi=255, frame_type_keyword="USImageDescriptionSequence")
    return ds


def _secondary_capture(seed: int, key: str) -> Dataset:
    ds = _base(seed, key, "1.2.840.10008.5.1.4.1.1.7", "OT", "Capture secondaire")
    ds.ConversionType = "WSD"
    _pixels(ds, grey(1, 0, 255, "u1"), photometric="MONOCHROME2")
    return ds


def _mf_sc(
    seed: int, key: str, sop_class_uid: str, label: str, data: npt.NDArray[np.integer]
) -> Dataset:
    ds = _base(seed, key, sop_class_uid, "OT", label)
    ds.ConversionType = "WSD"
    ds.BurnedInAnnotation = "NO"
    ds.NumberOfFrames = data.shape[0]
    ds.FrameIncrementPointer = 0x00181063
    ds.FrameTime = 100.0
    if data.ndim == 4:
        _pixels(ds, data, photometric="RGB", planar=0)
    else:
        _pixels(ds, data, photometric="MONOCHROME2")
        _grey_sc_rescale(ds)
        if data.dtype == np.uint16:
            _window(ds, 0, 65535)
    return ds


def _grey_sc_rescale(ds: Dataset) -> None:
    """Multi-frame grey Secondary Capture: identity rescale and presentation LUT."""
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    ds.PresentationLUTShape = "IDENTITY"


def _single_bit_sc(seed: int, key: str) -> Dataset:
    ds = _base(seed, key, "1.2.840.10008.5.1.4.1.1.7.1", "OT", "Capture 1 bit")
    ds.ConversionType = "WSD"
    ds.BurnedInAnnotation = "NO"
    ds.NumberOfFrames = FRAMES
    ds.FrameIncrementPointer = 0x00181063
    ds.FrameTime = 100.0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = ROWS, COLUMNS
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 1, 0, 0
    bits = np.stack([pattern(f) >= 0.5 for f in range(FRAMES)]).astype(np.uint8)
    ds.PixelData = np.packbits(bits.reshape(-1), bitorder="little").tobytes()
    return ds


def _xa(seed: int, key: str, sop_class_uid: str, modality: str, label: str) -> Dataset:
    ds = _base(seed, key, sop_class_uid, modality, label)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "SINGLE PLANE"]
    ds.KVP, ds.RadiationSetting = 80, "GR"
    ds.PositionerPrimaryAngle, ds.PositionerSecondaryAngle = 0, 0
    ds.PixelIntensityRelationship = "LIN"
    ds.Exposure, ds.ExposureTime, ds.XRayTubeCurrent = 10, 100, 100
    ds.PositionerMotion = "STATIC"
    _cine(ds, FRAMES)
    _pixels(ds, grey(FRAMES, 0, 255, "u1"), photometric="MONOCHROME2")
    return ds


def _enhanced_xa(seed: int, key: str, sop_class_uid: str, modality: str, label: str) -> Dataset:
    ds = _base(seed, key, sop_class_uid, modality, label)
    _pixels(ds, grey(FRAMES, 100, 1000, "u2"), photometric="MONOCHROME2", bits_stored=10)
    _enhanced(
        ds,
        FRAMES,
        lo=100,
        hi=1000,
        rescale=(0.0, 1.0, "US"),
        frame_type="ORIGINAL\\PRIMARY\\SINGLE PLANE",
        frame_type_keyword="XAXRFFrameCharacteristicsSequence",
    )
    ds.PixelIntensityRelationship = "LIN"
    return ds


def _breast_tomosynthesis(seed: int, key: str) -> Dataset:
    ds = _base(seed, key, "1.2.840.10008.5.1.4.1.1.13.1.3", "MG", "Tomosynthèse")
    ds.ImageLaterality = "L"
    del ds.Laterality
    ds.BreastImplantPresent = "NO"
    ds.ViewCodeSequence = Sequence([_code("R-10242", "SRT", "cranio-caudal")])
    _pixels(ds, grey(FRAMES, 100, 3000, "u2"), photometric="MONOCHROME2", bits_stored=12)
    _enhanced(
        ds,
        FRAMES,
        lo=100,
        hi=3000,
        rescale=(0.0, 1.0, "US"),
        frame_type="ORIGINAL\\PRIMARY\\TOMOSYNTHESIS\\NONE",
        frame_type_keyword="XRay3DFrameTypeSequence",
    )
    return ds


def _nm(seed: int, key: str) -> Dataset:
    ds = _base(seed, key, "1.2.840.10008.5.1.4.1.1.20", "NM", "Scintigraphie")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "STATIC", "EMISSION"]
    ds.NumberOfFrames = FRAMES
    ds.FrameIncrementPointer = [0x00540010, 0x00540020]  # Energy Window, Detector Vector
    ds.EnergyWindowVector = [1] * FRAMES
    ds.NumberOfEnergyWindows = 1
    ds.DetectorVector = list(range(1, FRAMES + 1))
    ds.NumberOfDetectors = FRAMES
    ds.DetectorInformationSequence = Sequence(
        [
            _item(
                ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
                ImagePositionPatient=[-32.0, -32.0, 0.0],
                CollimatorType="PARA",
            )
            for _ in range(FRAMES)
        ]
    )
    ds.ActualFrameDuration = 1000
    ds.CountsAccumulated = 1000
    ds.EnergyWindowInformationSequence = Sequence(
        [
            _item(
                EnergyWindowRangeSequence=Sequence(
                    [_item(EnergyWindowLowerLimit=126, EnergyWindowUpperLimit=154)]
                )
            )
        ]
    )
    ds.RadiopharmaceuticalInformationSequence = Sequence([])
    _nm_pet_orientation(ds)
    ds.PixelSpacing = [1, 1]
    _pixels(ds, grey(FRAMES, 0, 1000, "u2"), photometric="MONOCHROME2")
    _window(ds, 0, 1000)
    return ds


def _pt(seed: int, key: str) -> Dataset:
    ds = _base(seed, key, "1.2.840.10008.5.1.4.1.1.128", "PT", "TEP")
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SeriesType = ["STATIC", "IMAGE"]
    ds.CountsSource, ds.ReconstructionMethod = "EMISSION", "OSEM"
    ds.NumberOfSlices = 1
    ds.ImageIndex = 1
    ds.FrameReferenceTime = 0
    ds.ActualFrameDuration = 1000
    ds.DecayFactor = 1
    _pet(ds)
    _plane(ds)
    _pixels(ds, grey(1, 0, 30000, "u2"), photometric="MONOCHROME2")
    ds.RescaleIntercept, ds.RescaleSlope = 0, 1
    return ds


def _enhanced_pt(seed: int, key: str) -> Dataset:
    ds = _base(seed, key, "1.2.840.10008.5.1.4.1.1.130", "PT", "TEP multi-frame")
    _pet(ds)
    _pixels(ds, grey(FRAMES, 0, 30000, "u2"), photometric="MONOCHROME2")
    _enhanced(
        ds,
        FRAMES,
        lo=0,
        hi=30000,
        rescale=(0.0, 1.0, "BQML"),
        frame_type_keyword="PETFrameTypeSequence",
    )
    return ds


def tiny_pdf(text: str = "DRIMbox corpus") -> bytes:
    """A minimal valid one-page PDF 1.4 (with a correct cross-reference table)."""
    stream = f"BT /F1 24 Tf 40 100 Td ({text}) Tj ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def _pdf(seed: int, key: str) -> Dataset:
    ds = _base(seed, key, "1.2.840.10008.5.1.4.1.1.104.1", "DOC", "Compte rendu PDF")
    del ds.FrameOfReferenceUID
    ds.ConversionType = "WSD"
    ds.BurnedInAnnotation = "NO"
    ds.DocumentTitle = "Compte rendu"
    ds.ConceptNameCodeSequence = Sequence([])
    ds.AcquisitionDateTime = STUDY_DATE + STUDY_TIME
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    pdf = tiny_pdf()
    ds.EncapsulatedDocumentLength = len(pdf)
    ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    return ds


def _basic_text_sr(seed: int, key: str) -> Dataset:
    ds = _base(seed, key, "1.2.840.10008.5.1.4.1.1.88.11", "SR", "Rapport structuré")
    del ds.FrameOfReferenceUID
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.ConceptNameCodeSequence = Sequence([_code("11528-7", "LN", "Radiology Report")])
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "UNVERIFIED"
    ds.ReferencedPerformedProcedureStepSequence = Sequence([])
    ds.PerformedProcedureCodeSequence = Sequence([])
    ds.ContentSequence = Sequence(
        [
            _item(
                RelationshipType="CONTAINS",
                ValueType="TEXT",
                ConceptNameCodeSequence=Sequence([_code("121071", "DCM", "Finding")]),
                TextValue="Examen normal.",
            )
        ]
    )
    return ds


def _raw_data(seed: int, key: str) -> Dataset:
    ds = _base(seed, key, "1.2.840.10008.5.1.4.1.1.66", "OT", "Données brutes")
    ds.AcquisitionDateTime = STUDY_DATE + STUDY_TIME
    ds.CreatorVersionUID = uid(seed, key, "creator")
    return ds


# -- Basic Image Review variants (DB.VI-CS.31), as Secondary Capture --------------------


def _bir(
    label: str,
    data: Callable[[], npt.NDArray[np.integer]],
    photometric: str,
    *,
    bits_stored: int | None = None,
    planar: int | None = None,
    multiframe: bool = False,
) -> Builder:
    def build(seed: int, key: str) -> Dataset:
        sop_class = "1.2.840.10008.5.1.4.1.1.7"
        arr = data()
        if multiframe:
            sop_class = {
                (1, 1): "1.2.840.10008.5.1.4.1.1.7.2",
                (1, 2): "1.2.840.10008.5.1.4.1.1.7.3",
                (3, 1): "1.2.840.10008.5.1.4.1.1.7.4",
            }[(3 if arr.ndim == 4 else 1, arr.dtype.itemsize)]
        ds = _base(seed, key, sop_class, "OT", label)
        ds.ConversionType = "WSD"
        if multiframe:
            ds.BurnedInAnnotation = "NO"
            ds.FrameIncrementPointer = 0x00181063
            ds.FrameTime = 100.0
        _pixels(ds, arr, photometric=photometric, bits_stored=bits_stored, planar=planar)
        if multiframe and arr.ndim == 3:
            _grey_sc_rescale(ds)
        return ds

    return build


def _palette(seed: int, key: str) -> Dataset:
    ds = _base(seed, key, "1.2.840.10008.5.1.4.1.1.7", "OT", "Palette de couleurs")
    ds.ConversionType = "WSD"
    _pixels(ds, grey(1, 0, 255, "u1"), photometric="PALETTE COLOR")
    ramp = np.arange(256, dtype=np.float64) / 255
    luts = {
        "Red": ramp,
        "Green": 1 - ramp,
        "Blue": 0.5 + 0.5 * np.sin(ramp * 2 * np.pi),
    }
    for name, values in luts.items():
        setattr(ds, f"{name}PaletteColorLookupTableDescriptor", [256, 0, 16])
        table = np.rint(values * 65535).astype("<u2").tobytes()
        setattr(ds, f"{name}PaletteColorLookupTableData", table)
    return ds


def palette_blocks(bits: int) -> npt.NDArray[np.integer]:
    """Palette indices (1, 64, 64): 8x8 uniform blocks of 8x8 pixels, each its own entry
    (spread over the table), so a rendered block centre shows exactly one table colour."""
    block = np.arange(64).reshape(8, 8)
    step = 4 if bits == 8 else 1024
    indices = np.kron(block * step + step // 2, np.ones((8, 8), dtype=np.int64))
    return indices[None].astype(f"u{bits // 8}")


def _palette_implicit(seed: int, key: str) -> Dataset:
    """Written implicit VR (tests/corpus.SYNTAXES): the palette descriptors (0028,1101-1103)
    are "US or SS" there, and Orthanc 1.10 leaves them out of its metadata (FACTS 6)."""
    ds = _palette(seed, key)
    ds.SeriesDescription = "Palette VR implicite"
    _pixels(ds, palette_blocks(8), photometric="PALETTE COLOR")
    return ds


def _segment(opcode: int, length: int, *values: int) -> list[int]:
    return [opcode, length, *values]


def _palette_segmented(seed: int, key: str) -> Dataset:
    """16-bit indices over a 65536-entry palette given only as Segmented Palette Color
    Lookup Table Data (0028,1221-1223), with discrete (0), linear (1) and indirect (2)
    segments (PS3.3 C.7.9.2), like the real-world ultrasound that stock OHIF cannot show.
    The indirect segment copies the blue table's first segment (offset 0)."""
    ds = _base(seed, key, "1.2.840.10008.5.1.4.1.1.6.1", "US", "Palette segmentée")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL"]
    _pixels(ds, palette_blocks(16), photometric="PALETTE COLOR")
    segments = {
        "Red": _segment(0, 1, 0) + _segment(1, 65535, 65535),
        "Green": _segment(0, 1, 65535) + _segment(1, 32767, 0) + _segment(1, 32768, 65535),
        "Blue": _segment(0, 4, 0, 20000, 40000, 60000)
        + _segment(1, 32764, 10000)
        + _segment(2, 1, 0, 0)
        + _segment(1, 32764, 65535),
    }
    for name, words in segments.items():
        setattr(ds, f"{name}PaletteColorLookupTableDescriptor", [0, 0, 16])
        setattr(
            ds,
            f"Segmented{name}PaletteColorLookupTableData",
            np.asarray(words, "<u2").tobytes(),
        )
    return ds


def palette_rgb(path: Path) -> npt.NDArray[np.uint8]:
    """The 8-bit RGB frames (frames, rows, cols, 3) a palette object shows: pydicom's
    ``apply_color_lut``, 16-bit table entries taken to 8 bits as cornerstone does (>> 8)."""
    import pydicom
    from pydicom.pixels.processing import apply_color_lut

    ds = pydicom.dcmread(path)
    rgb = apply_color_lut(ds.pixel_array, ds)
    if ds.RedPaletteColorLookupTableDescriptor[2] == 16:
        rgb = rgb >> 8
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    out: npt.NDArray[np.uint8] = rgb.astype(np.uint8).reshape(frames, ds.Rows, ds.Columns, 3)
    return out


def _ybr_jpeg(frames: int) -> Builder:
    def build(seed: int, key: str) -> Dataset:
        multiframe = frames > 1
        sop_class = "1.2.840.10008.5.1.4.1.1.3.1" if multiframe else "1.2.840.10008.5.1.4.1.1.6.1"
        label = "JPEG YBR_FULL_422" + (" multi-frame" if multiframe else "")
        ds = _base(seed, key, sop_class, "US", label)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL"]
        rgb = colour(frames)
        if multiframe:
            _cine(ds, frames)
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 3, "YBR_FULL_422"
        ds.PlanarConfiguration = 0
        ds.Rows, ds.Columns = ROWS, COLUMNS
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = "ISO_10918_1"
        encoded = [
            bytes(imagecodecs.jpeg8_encode(f, level=95, colorspace="RGB", subsampling="422"))
            for f in rgb
        ]
        ds.PixelData = encapsulate(encoded)
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        return ds

    return build


@dataclass(frozen=True)
class Spec:
    key: str
    label: str
    kind: str
    build: Builder


SOP_CLASSES: tuple[Spec, ...] = (
    # Tableau 4 (DB.VI-CS.30), in the table's order.
    Spec("cr", "Computed Radiography", "image", _cr),
    Spec(
        "dx",
        "Digital X-Ray For Presentation",
        "image",
        lambda s, k: _dx(s, k, "1.2.840.10008.5.1.4.1.1.1.1", "DX", "Radiographie"),
    ),
    Spec(
        "mg",
        "Digital Mammography For Presentation",
        "image",
        lambda s, k: _dx(s, k, "1.2.840.10008.5.1.4.1.1.1.2", "MG", "Mammographie"),
    ),
    Spec("ct", "CT", "image", _ct),
    Spec("enhanced-ct", "Enhanced CT", "image", _enhanced_ct),
    Spec("us-multiframe", "Ultrasound Multi-frame", "image", _us_multiframe),
    Spec("mr", "MR", "image", _mr),
    Spec("enhanced-mr", "Enhanced MR", "image", _enhanced_mr),
    Spec("enhanced-mr-color", "Enhanced MR Color", "image", _enhanced_mr_colour),
    Spec("us", "Ultrasound", "image", _us),
    Spec("enhanced-us-volume", "Enhanced US Volume", "image", _enhanced_us_volume),
    Spec("sc", "Secondary Capture", "image", _secondary_capture),
    Spec("mf-sc-single-bit", "Multi-frame Single Bit SC", "image", _single_bit_sc),
    Spec(
        "mf-sc-byte",
        "Multi-frame Grayscale Byte SC",
        "image",
        lambda s, k: _mf_sc(
            s, k, "1.2.840.10008.5.1.4.1.1.7.2", "Capture 8 bits", grey(FRAMES, 0, 255, "u1")
        ),
    ),
    Spec(
        "mf-sc-word",
        "Multi-frame Grayscale Word SC",
        "image",
        lambda s, k: _mf_sc(
            s, k, "1.2.840.10008.5.1.4.1.1.7.3", "Capture 16 bits", grey(FRAMES, 0, 65535, "u2")
        ),
    ),
    Spec(
        "mf-sc-true-color",
        "Multi-frame True Color SC",
        "image",
        lambda s, k: _mf_sc(s, k, "1.2.840.10008.5.1.4.1.1.7.4", "Capture couleur", colour(3)),
    ),
    Spec(
        "xa",
        "X-Ray Angiographic",
        "image",
        lambda s, k: _xa(s, k, "1.2.840.10008.5.1.4.1.1.12.1", "XA", "Angiographie"),
    ),
    Spec(
        "enhanced-xa",
        "Enhanced XA",
        "image",
        lambda s, k: _enhanced_xa(s, k, "1.2.840.10008.5.1.4.1.1.12.1.1", "XA", "Angio multi"),
    ),
    Spec(
        "xrf",
        "X-Ray Radiofluoroscopic",
        "image",
        lambda s, k: _xa(s, k, "1.2.840.10008.5.1.4.1.1.12.2", "RF", "Radioscopie"),
    ),
    Spec(
        "enhanced-xrf",
        "Enhanced XRF",
        "image",
        lambda s, k: _enhanced_xa(s, k, "1.2.840.10008.5.1.4.1.1.12.2.1", "RF", "Scopie multi"),
    ),
    Spec("breast-tomosynthesis", "Breast Tomosynthesis", "image", _breast_tomosynthesis),
    Spec("nm", "Nuclear Medicine", "image", _nm),
    Spec("pdf", "Encapsulated PDF", "pdf", _pdf),
    Spec("pt", "Positron Emission Tomography", "image", _pt),
    Spec("enhanced-pt", "Enhanced PET", "image", _enhanced_pt),
)

BIR_VARIANTS: tuple[Spec, ...] = (
    # Basic Image Review pixel characteristics (DB.VI-CS.31).
    Spec(
        "bir-mono2-8",
        "MONOCHROME2 8 bits",
        "image",
        _bir("MONOCHROME2 8 bits", lambda: grey(1, 0, 255, "u1"), "MONOCHROME2"),
    ),
    Spec(
        "bir-mono2-8-stored-1",
        "MONOCHROME2 8 bits alloués, 1 bit stocké",
        "image",
        _bir(
            "8 alloués 1 stocké",
            lambda: grey(1, 0, 1, "u1"),
            "MONOCHROME2",
            bits_stored=1,
        ),
    ),
    Spec(
        "bir-mono1-8",
        "MONOCHROME1 8 bits",
        "image",
        _bir("MONOCHROME1 8 bits", lambda: grey(1, 0, 255, "u1"), "MONOCHROME1"),
    ),
    Spec(
        "bir-mono2-16-stored-9",
        "MONOCHROME2 16 bits, 9 bits stockés",
        "image",
        _bir("9 bits stockés", lambda: grey(1, 0, 511, "u2"), "MONOCHROME2", bits_stored=9),
    ),
    Spec(
        "bir-mono2-16-signed",
        "MONOCHROME2 16 bits signé",
        "image",
        _bir("16 bits signé", lambda: grey(1, -20000, 20000, "i2"), "MONOCHROME2"),
    ),
    Spec(
        "bir-mono2-12-signed",
        "MONOCHROME2 12 bits stockés signé",
        "image",
        _bir("12 bits signé", lambda: grey(1, -2000, 2000, "i2"), "MONOCHROME2", bits_stored=12),
    ),
    Spec(
        "bir-mono1-16-signed",
        "MONOCHROME1 16 bits signé",
        "image",
        _bir("MONOCHROME1 signé", lambda: grey(1, -1000, 3000, "i2"), "MONOCHROME1"),
    ),
    Spec(
        "bir-mono2-16-multiframe",
        "MONOCHROME2 16 bits multi-frame",
        "image",
        _bir(
            "16 bits multi-frame",
            lambda: grey(FRAMES, 0, 4095, "u2"),
            "MONOCHROME2",
            bits_stored=12,
            multiframe=True,
        ),
    ),
    Spec(
        "bir-rgb-planar-0",
        "RGB PlanarConfiguration 0",
        "image",
        _bir("RGB entrelacé", lambda: colour(1), "RGB", planar=0),
    ),
    Spec(
        "bir-rgb-planar-1",
        "RGB PlanarConfiguration 1",
        "image",
        _bir("RGB par plans", lambda: colour(1), "RGB", planar=1),
    ),
    Spec(
        "bir-rgb-planar-1-multiframe",
        "RGB PlanarConfiguration 1 multi-frame",
        "image",
        _bir("RGB par plans multi", lambda: colour(FRAMES), "RGB", planar=1, multiframe=True),
    ),
    Spec("bir-palette", "PALETTE COLOR", "image", _palette),
    Spec("bir-palette-implicit", "PALETTE COLOR, VR implicite", "image", _palette_implicit),
    Spec("bir-palette-segmented", "PALETTE COLOR segmentée", "image", _palette_segmented),
    Spec("bir-ybr-jpeg", "YBR_FULL_422 JPEG baseline", "image", _ybr_jpeg(1)),
    Spec(
        "bir-ybr-jpeg-multiframe",
        "YBR_FULL_422 JPEG baseline multi-frame",
        "image",
        _ybr_jpeg(FRAMES),
    ),
)


def _unserved_syntax(seed: int, key: str) -> Dataset:
    """An image in JPEG 2000 Part 2 (1.2.840.10008.1.2.4.92): no decoder of the BFF."""
    ds = _secondary_capture(seed, key)
    ds.SeriesDescription = "Syntaxe non prise en charge"
    code = bytes(imagecodecs.jpeg2k_encode(grey(1, 0, 255, "u1")[0], level=0))
    ds.PixelData = encapsulate([code])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return ds


#: Shown by stock OHIF in its own way (the SR as text), not as an image.
OTHER: tuple[Spec, ...] = (Spec("sr", "Basic Text SR", "sr", _basic_text_sr),)

UNSUPPORTED: tuple[Spec, ...] = (
    # Objects the viewer cannot show: listed, in French, never silently missing.
    Spec("raw", "Raw Data", "unsupported", _raw_data),
    Spec("unserved-syntax", "JPEG 2000 Part 2 image", "unsupported", _unserved_syntax),
)

#: Transfer syntax of an object when not explicit VR little endian.
SYNTAXES = {
    "unserved-syntax": "1.2.840.10008.1.2.4.92",
    "bir-palette-implicit": "1.2.840.10008.1.2",
}

ALL: tuple[Spec, ...] = SOP_CLASSES + BIR_VARIANTS + OTHER + UNSUPPORTED


def write_corpus(out_dir: Path, seed: int = 0, specs: tuple[Spec, ...] = ALL) -> list[CorpusObject]:
    """Write every object of ``specs`` to ``out_dir/<key>.dcm`` and describe them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in specs:
        ds = spec.build(seed, spec.key)
        syntax = UID(SYNTAXES.get(spec.key, ExplicitVRLittleEndian))
        if ds.get("PhotometricInterpretation") == "YBR_FULL_422":
            syntax = JPEGBaseline8Bit
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = syntax
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.file_meta = meta
        path = out_dir / f"{spec.key}.dcm"
        ds.save_as(path, enforce_file_format=True)
        written.append(
            CorpusObject(
                key=spec.key,
                label=spec.label,
                sop_class_uid=str(ds.SOPClassUID),
                kind=spec.kind,
                study_uid=str(ds.StudyInstanceUID),
                series_uid=str(ds.SeriesInstanceUID),
                sop_uid=str(ds.SOPInstanceUID),
                number_of_frames=int(ds.get("NumberOfFrames", 1) or 1),
                transfer_syntax_uid=str(syntax),
                path=path,
            )
        )
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for obj in write_corpus(args.out, args.seed):
        print(f"{obj.key:30} {obj.sop_class_uid:32} frames={obj.number_of_frames} {obj.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
