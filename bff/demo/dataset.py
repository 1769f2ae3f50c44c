"""The demo study on disk: a JPEG-LS lossless CT with a topogram, and its DRIM-M KOS.

Layout under ``out_dir``::

    S001/I00001.dcm ...   series 1 "Topogramme": frontal and lateral localizers
    S002/I00001.dcm ...   series 2 "Thorax-abdomen": n_slices axial 512x512 slices, 1.25 mm
    KOS.dcm               the IMG-KOS manifest (own series, same study)

Pixels: BitsAllocated 16, BitsStored 16, HighBit 15, PixelRepresentation 0, RescaleIntercept
-1024 (stored value = HU + 1024). BitsStored is 16, not 12, because the JPEG-LS codestream
made by imagecodecs/CharLS always has precision 16 for uint16 input, and the two should
agree (a CT with unsigned 16-bit storage and intercept -1024 is common). The codestream is
stored without CharLS's optional SPIFF header, as scanners write it.

UIDs are derived from the seed (or from ``study_uid`` when given), so reruns give the same
files. ``python -m bff.demo.dataset --out DIR --slices N --seed S`` writes a study.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import imagecodecs
import numpy as np
import numpy.typing as npt
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, JPEGLSLossless, generate_uid

from bff.demo.identity import ANS_TEST_PATIENT, PatientIdentity, add_patient_module
from bff.demo.kos import ReferencedSeries, build_kos
from bff.demo.phantom import FIELD_OF_VIEW_MM, HU_MIN, make_ct_slice, pixel_spacing_mm

__all__ = ["ANS_TEST_PATIENT", "DemoStudy", "PatientIdentity", "write_demo_study"]

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
UID_PREFIX = "1.2.826.0.1.3680043.8.498."  # pydicom's root, for generated demo UIDs
STUDY_DATE = "20250314"
STUDY_TIME = "101500"
KOS_TIME = "103000"
SLICE_THICKNESS_MM = 1.25
FIRST_SLICE_Z_MM = 150.0  # table position of the most cranial slice
STUDY_DESCRIPTION = "TDM THORAX-ABDOMEN-PELVIS"
MANUFACTURER = "DRIMbox demo"
MODEL = "Phantom CT"
RESCALE_INTERCEPT = HU_MIN  # stored value 0 = -1024 HU
TOPOGRAM_SAMPLES = 96  # phantom slices sampled to compute the localizers


@dataclass(frozen=True)
class DemoStudy:
    study_uid: str
    accession_number: str
    accession_issuer: str  # OID
    series_uids: tuple[str, ...]  # (topogram, axial CT)
    instance_files: tuple[Path, ...]  # image files only, series by series
    kos_path: Path
    kos_sop_uid: str
    patient: PatientIdentity
    institution_name: str
    n_instances: int  # number of image instances (the KOS not counted)


@dataclass(frozen=True)
class _Common:
    """Everything the image writer needs besides the pixels (picklable for the pool)."""

    out_dir: Path
    patient: PatientIdentity
    study_uid: str
    accession_number: str
    accession_issuer: str
    institution_name: str
    frame_of_reference_uid: str
    series_uid: str
    series_number: int
    series_description: str
    n_slices: int
    rows: int
    cols: int
    seed: int


def _uid(*parts: object) -> str:
    return str(generate_uid(prefix=UID_PREFIX, entropy_srcs=[str(p) for p in parts]))


def sop_uid_for(series_uid: str, instance_number: int) -> str:
    """Deterministic SOP Instance UID of instance ``instance_number`` (1-based)."""
    return _uid(series_uid, "instance", instance_number)


def _strip_spiff(codestream: bytes) -> bytes:
    """Drop CharLS's optional SPIFF header (APP8 segments right after SOI)."""
    if codestream[:4] != b"\xff\xd8\xff\xe8" or codestream[6:11] != b"SPIFF":
        return codestream
    pos = 2
    while codestream[pos : pos + 2] == b"\xff\xe8":
        pos += 2 + int.from_bytes(codestream[pos + 2 : pos + 4], "big")
    # The SPIFF end-of-directory entry embeds the SOI that starts the JPEG-LS stream.
    if codestream[pos - 2 : pos] != b"\xff\xd8":
        return codestream
    return b"\xff\xd8" + codestream[pos:]


def encode_jpegls(stored: npt.NDArray[np.uint16]) -> bytes:
    """JPEG-LS lossless codestream (precision 16) of one frame."""
    return _strip_spiff(bytes(imagecodecs.jpegls_encode(np.ascontiguousarray(stored))))


def _base_dataset(common: _Common, instance_number: int, sop_uid: str) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = STUDY_DATE
    ds.SeriesDate = STUDY_DATE
    ds.AcquisitionDate = STUDY_DATE
    ds.ContentDate = STUDY_DATE
    ds.StudyTime = STUDY_TIME
    ds.AcquisitionDateTime = f"{STUDY_DATE}{STUDY_TIME}.{instance_number:06d}"
    ds.AccessionNumber = common.accession_number
    issuer = Dataset()
    issuer.UniversalEntityID = common.accession_issuer
    issuer.UniversalEntityIDType = "ISO"
    ds.IssuerOfAccessionNumberSequence = Sequence([issuer])
    ds.Modality = "CT"
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = MODEL
    ds.InstitutionName = common.institution_name
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = STUDY_DESCRIPTION
    ds.SeriesDescription = common.series_description
    add_patient_module(ds, common.patient)
    ds.BodyPartExamined = "CHEST"
    ds.KVP = 120
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = common.study_uid
    ds.SeriesInstanceUID = common.series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = common.series_number
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = instance_number
    ds.FrameOfReferenceUID = common.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = RESCALE_INTERCEPT
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    return ds


def _finish(ds: Dataset, stored: npt.NDArray[np.uint16], path: Path) -> Path:
    ds.Rows, ds.Columns = stored.shape
    ds["PixelData"] = DataElement(
        0x7FE00010, "OB", encapsulate([encode_jpegls(stored)]), is_undefined_length=True
    )
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = JPEGLSLossless
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _slice_z(index: int) -> float:
    return FIRST_SLICE_Z_MM - index * SLICE_THICKNESS_MM


def _write_ct_slice(common: _Common, index: int) -> Path:
    """Write axial slice ``index`` (0-based, cranial first); module-level for the pool."""
    hu = make_ct_slice(index, common.n_slices, common.rows, common.cols, common.seed)
    stored = (hu.astype(np.int32) - RESCALE_INTERCEPT).astype(np.uint16)
    number = index + 1
    ds = _base_dataset(common, number, sop_uid_for(common.series_uid, number))
    spacing = pixel_spacing_mm(common.cols)
    z = _slice_z(index)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SliceThickness = SLICE_THICKNESS_MM
    ds.SpacingBetweenSlices = SLICE_THICKNESS_MM
    ds.PixelSpacing = [spacing, spacing]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [
        round(-(common.cols - 1) / 2.0 * spacing, 4),
        round(-(common.rows - 1) / 2.0 * spacing, 4),
        z,
    ]
    ds.SliceLocation = z
    ds.ConvolutionKernel = "STANDARD"
    ds.WindowCenter = [40, -600]
    ds.WindowWidth = [400, 1500]
    ds.WindowCenterWidthExplanation = ["ABDOMEN", "POUMON"]
    path = common.out_dir / f"S{common.series_number:03d}" / f"I{number:05d}.dcm"
    return _finish(ds, stored, path)


def _write_ct_slice_star(args: tuple[_Common, int]) -> Path:
    return _write_ct_slice(*args)


def _topograms(common: _Common) -> tuple[npt.NDArray[np.uint16], npt.NDArray[np.uint16], float]:
    """Frontal and lateral projections of the phantom (stored values) and their z spacing."""
    size = 128
    samples = min(TOPOGRAM_SAMPLES, max(2, common.n_slices))
    indices = np.linspace(0, common.n_slices - 1, samples).round().astype(int)
    frontal = np.empty((samples, size), dtype=np.float32)
    lateral = np.empty((samples, size), dtype=np.float32)
    step = pixel_spacing_mm(size)
    for row, index in enumerate(indices):
        hu = make_ct_slice(int(index), common.n_slices, size, size, common.seed)
        mu = np.clip(hu.astype(np.float32) + 1000.0, 0.0, None) * np.float32(0.02 / 1000.0)
        frontal[row] = mu.sum(axis=0) * step  # through y (antero-posterior)
        lateral[row] = mu.sum(axis=1) * step  # through x (left-right)
    length = common.n_slices * SLICE_THICKNESS_MM
    out_rows = max(16, round(length / (FIELD_OF_VIEW_MM / 512)))
    z_spacing = length / out_rows
    out: list[npt.NDArray[np.uint16]] = []
    interp_rows = np.linspace(0, samples - 1, out_rows)
    interp_cols = np.linspace(0, size - 1, 512)
    for image in (frontal, lateral):
        by_row = np.array([np.interp(interp_cols, np.arange(size), r) for r in image])
        full = np.array([np.interp(interp_rows, np.arange(samples), c) for c in by_row.T]).T
        scaled = np.clip(full / max(float(full.max()), 1e-6) * 3000.0, 0.0, 4095.0)
        out.append(np.rint(scaled).astype(np.uint16))
    return out[0], out[1], z_spacing


def _write_topograms(common: _Common) -> list[Path]:
    frontal, lateral, z_spacing = _topograms(common)
    x_spacing = FIELD_OF_VIEW_MM / 512
    top = FIRST_SLICE_Z_MM + SLICE_THICKNESS_MM / 2.0
    paths = []
    # (image, row direction, position of the top-left pixel)
    views = (
        (frontal, [1, 0, 0], [-FIELD_OF_VIEW_MM / 2 + x_spacing / 2, 0.0, top]),
        (lateral, [0, 1, 0], [0.0, -FIELD_OF_VIEW_MM / 2 + x_spacing / 2, top]),
    )
    for number, (image, row_dir, position) in enumerate(views, start=1):
        ds = _base_dataset(common, number, sop_uid_for(common.series_uid, number))
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.KVP = 100
        ds.SliceThickness = 1.0
        ds.PixelSpacing = [round(z_spacing, 6), x_spacing]
        ds.ImageOrientationPatient = [*row_dir, 0, 0, -1]
        ds.ImagePositionPatient = position
        ds.WindowCenter = 1500
        ds.WindowWidth = 3000
        ds.RescaleIntercept = 0
        del ds.RescaleType  # projection values, not HU
        path = common.out_dir / f"S{common.series_number:03d}" / f"I{number:05d}.dcm"
        paths.append(_finish(ds, image, path))
    return paths


def _describe(n_topo: int, n_axial: int) -> str:
    total = n_topo + n_axial
    axial = f"Thorax-abdomen, coupes axiales de {SLICE_THICKNESS_MM} mm ({n_axial} images)."
    head = "Scanner thoraco-abdomino-pelvien du 14/03/2025 (données de démonstration synthétiques)."
    if not n_topo:
        return f"{head} 1 série, {total} images : {axial}"
    return f"{head} 2 séries, {total} images : Topogramme ({n_topo} images), {axial}"


def write_demo_study(
    out_dir: Path,
    *,
    n_slices: int = 300,
    seed: int = 0,
    patient: PatientIdentity = ANS_TEST_PATIENT,
    study_uid: str | None = None,
    accession: str = "ACN101",
    accession_issuer: str = "1.2.250.1.213.4.5.2.5",
    institution: str = "Centre de radiologie Ambroise^^^^^^^^^101235555",
    retrieve_base_url: str = "https://db1.localhost/api/source",
    rows: int = 512,
    cols: int = 512,
    workers: int = 1,
    topogram: bool = True,
) -> DemoStudy:
    """Write the demo study (images + KOS) under ``out_dir`` and describe it.

    ``topogram=False`` writes the axial CT series alone (then ``series_uids`` holds only
    the axial series): the performance set is one series, as the ANS reference set."""
    if n_slices < 1:
        raise ValueError("n_slices must be >= 1")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if study_uid is None:
        study_uid = _uid("drimbox-demo", "study", seed, n_slices, rows, cols)
    topo_uid = _uid(study_uid, "series", 1)
    axial_uid = _uid(study_uid, "series", 2)
    kos_series_uid = _uid(study_uid, "series", 100)
    kos_sop_uid = sop_uid_for(kos_series_uid, 1)
    frame_of_reference_uid = _uid(study_uid, "frame-of-reference")

    def common(series_uid: str, number: int, description: str) -> _Common:
        return _Common(
            out_dir,
            patient,
            study_uid,
            accession,
            accession_issuer,
            institution,
            frame_of_reference_uid,
            series_uid,
            number,
            description,
            n_slices,
            rows,
            cols,
            seed,
        )

    topo = common(topo_uid, 1, "Topogramme")
    axial = common(axial_uid, 2, "Thorax-abdomen")
    topo_files = _write_topograms(topo) if topogram else []
    jobs = [(axial, index) for index in range(n_slices)]
    axial_files: list[Path]
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            axial_files = list(pool.map(_write_ct_slice_star, jobs, chunksize=8))
    else:
        axial_files = [_write_ct_slice_star(job) for job in jobs]

    topo_series = ReferencedSeries(
        topo_uid,
        tuple((CT_IMAGE_STORAGE, sop_uid_for(topo_uid, n + 1)) for n in range(len(topo_files))),
    )
    axial_series = ReferencedSeries(
        axial_uid,
        tuple((CT_IMAGE_STORAGE, sop_uid_for(axial_uid, n + 1)) for n in range(n_slices)),
    )
    referenced = (topo_series, axial_series) if topogram else (axial_series,)
    kos = build_kos(
        patient=patient,
        study_uid=study_uid,
        accession_number=accession,
        accession_issuer=accession_issuer,
        institution_name=institution,
        series=referenced,
        retrieve_base_url=retrieve_base_url,
        kos_series_uid=kos_series_uid,
        kos_sop_uid=kos_sop_uid,
        study_date=STUDY_DATE,
        study_time=STUDY_TIME,
        content_date=STUDY_DATE,
        content_time=KOS_TIME,
        description=_describe(len(topo_files), n_slices),
        study_description=STUDY_DESCRIPTION,
        study_id="1",
        manufacturer=MANUFACTURER,
    )
    kos_path = out_dir / "KOS.dcm"
    kos.save_as(kos_path, enforce_file_format=True)
    files = (*topo_files, *axial_files)
    return DemoStudy(
        study_uid=study_uid,
        accession_number=accession,
        accession_issuer=accession_issuer,
        series_uids=(topo_uid, axial_uid) if topogram else (axial_uid,),
        instance_files=files,
        kos_path=kos_path,
        kos_sop_uid=kos_sop_uid,
        patient=patient,
        institution_name=institution,
        n_instances=len(files),
    )


def iter_files(study: DemoStudy) -> Iterator[Path]:
    """Every file of the study, images then KOS (what the demo uploads to the PACS)."""
    yield from study.instance_files
    yield study.kos_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make-demo-data", description="Write the DRIMbox demo CT study and its KOS."
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--slices", type=int, default=300, help="axial slices (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--cols", type=int, default=512)
    parser.add_argument("--study-uid", default=None)
    parser.add_argument("--retrieve-base-url", default="https://db1.localhost/api/source")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all CPUs)"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    study = write_demo_study(
        args.out,
        n_slices=args.slices,
        seed=args.seed,
        study_uid=args.study_uid,
        retrieve_base_url=args.retrieve_base_url,
        rows=args.rows,
        cols=args.cols,
        workers=args.workers,
    )
    elapsed = time.perf_counter() - started
    axial = [p for p in study.instance_files if p.parent.name == "S002"]
    kb = sum(p.stat().st_size for p in axial) / max(1, len(axial)) / 1000.0
    print(
        f"study {study.study_uid}: {study.n_instances} images + KOS in {args.out} "
        f"({elapsed:.1f} s, {kb:.0f} KB per axial slice file)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
