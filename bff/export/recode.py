"""One instance of a study download: keep it as stored, or compress it losslessly.

The rule (DB.VI-SO.176 and its note: instances in a lossless compressed syntax):

* stored lossless compressed (RLE, JPEG lossless 4.57 / 4.70, JPEG-LS 4.80, JPEG 2000
  lossless 4.90, HTJ2K lossless 4.201 / 4.202): the bytes the PACS sent, unchanged;
* stored native with pixel data: JPEG-LS lossless (CharLS through imagecodecs) for
  unsigned 8 to 16-bit samples; RLE lossless for signed and 32-bit samples (PackBits
  through imagecodecs, PS3.5 Annex G); 1-bit and float pixel data have no lossless codec
  in DICOM that fits them: kept native and said so in README.TXT;
* stored lossy (JPEG baseline, JPEG 2000, HTJ2K lossy, JPEG-LS near-lossless, video...):
  kept exactly as the PACS holds it (never decoded, never re-encoded) and said so;
* without pixel data (the KOS, SR, ...): unchanged.

Nothing else in a file changes: patient identity stays what the PACS holds. Runs in a
worker thread (imagecodecs and numpy release the GIL).
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from bff.errors import UpstreamProtocolError
from bff.export.pdi import InstanceFacts
from bff.transcode import registry
from bff.transcode.decoders import native
from bff.transcode.errors import TranscodeError
from bff.transcode.model import (
    EXPLICIT_VR_BE,
    JPEGLS_LOSSLESS,
    LOSSLESS_COMPRESSED,
    NATIVE_SYNTAXES,
    RLE_LOSSLESS,
)
from bff.transcode.pixels import PixelDescription

PATIENT_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")
STUDY_KEYS = ("StudyDate", "StudyTime", "StudyDescription", "StudyID", "AccessionNumber")
SERIES_KEYS = ("Modality", "SeriesNumber", "SeriesDescription")
INSTANCE_KEYS = (
    "InstanceNumber",
    "ContentDate",
    "ContentTime",
    "ConceptNameCodeSequence",
    "CompletionFlag",
    "VerificationFlag",
    "PresentationCreationDate",
    "PresentationCreationTime",
    "ContentLabel",
    "MIMETypeOfEncapsulatedDocument",
    "DocumentTitle",
)


def _read(data: bytes, *, headers_only: bool) -> Dataset:
    try:
        ds = pydicom.dcmread(BytesIO(data), force=True, stop_before_pixels=headers_only)
    except (InvalidDicomError, EOFError, ValueError, OSError, KeyError) as exc:
        raise UpstreamProtocolError(f"unreadable DICOM instance: {exc}") from exc
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        raise UpstreamProtocolError("DICOM instance without a transfer syntax")
    return ds


def _values(ds: Dataset, keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: ds.get(k) for k in keys if k in ds}


def facts_of(ds: Dataset, transfer_syntax_uid: str) -> InstanceFacts:
    sop_class = str(ds.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID", ""))
    return InstanceFacts(
        sop_class_uid=sop_class,
        sop_uid=str(ds.get("SOPInstanceUID", "")),
        transfer_syntax_uid=transfer_syntax_uid,
        series_uid=str(ds.get("SeriesInstanceUID", "")),
        study_uid=str(ds.get("StudyInstanceUID", "")),
        patient=_values(ds, PATIENT_KEYS),
        study=_values(ds, STUDY_KEYS),
        series=_values(ds, SERIES_KEYS),
        instance=_values(ds, INSTANCE_KEYS),
        character_set=ds.get("SpecificCharacterSet"),
        institution=str(ds.get("InstitutionName", "") or ""),
    )


def _is_part10(data: bytes) -> bool:
    return len(data) > 132 and data[128:132] == b"DICM"


def _write(ds: Dataset) -> bytes:
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def prepare_instance(data: bytes) -> tuple[bytes, InstanceFacts]:
    """The file to put in the ZIP for one received instance, and its facts."""
    try:
        return _prepare_instance(data)
    except TranscodeError as exc:  # a codec failure, translated here, at the seam
        raise UpstreamProtocolError(f"instance cannot be prepared: {exc}") from exc


def _prepare_instance(data: bytes) -> tuple[bytes, InstanceFacts]:
    header = _read(data, headers_only=True)
    syntax = str(header.file_meta.TransferSyntaxUID)
    facts = facts_of(header, syntax)
    if syntax not in NATIVE_SYNTAXES:
        lossy_flag = str(header.get("LossyImageCompression", "")).strip() == "01"
        facts.stored_lossy = syntax not in LOSSLESS_COMPRESSED or lossy_flag
        if _is_part10(data):
            return data, facts
        return _write(_read(data, headers_only=False)), facts
    ds = _read(data, headers_only=False)
    facts.stored_lossy = str(ds.get("LossyImageCompression", "")).strip() == "01"
    if "PixelData" not in ds:
        facts.kept_native = any(k in ds for k in ("FloatPixelData", "DoubleFloatPixelData"))
        return (data if _is_part10(data) else _write(ds)), facts
    desc = PixelDescription.from_dataset(ds)
    target = lossless_syntax_for(desc)
    if target is None:
        facts.kept_native = True
        return (data if _is_part10(data) else _write(ds)), facts
    frames = [
        _encode(registry.decode_frame(raw, desc, syntax), desc, target)
        for raw in _native_frames(ds, desc, syntax)
    ]
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    if desc.samples_per_pixel > 1:
        ds.PlanarConfiguration = 0
    ds.file_meta.TransferSyntaxUID = UID(target)
    facts.transfer_syntax_uid = target
    facts.recompressed = True
    return _write(ds), facts


def lossless_syntax_for(desc: PixelDescription) -> str | None:
    """The lossless syntax a native image is compressed to, or None (kept native)."""
    if desc.bits_allocated in (8, 16) and not desc.signed and desc.samples_per_pixel in (1, 3):
        return JPEGLS_LOSSLESS
    if desc.bits_allocated in (8, 16, 32) and desc.samples_per_pixel in (1, 3):
        return RLE_LOSSLESS
    return None


def _native_frames(ds: Dataset, desc: PixelDescription, syntax: str) -> list[bytes]:
    pixel_data = bytes(ds.PixelData)
    if syntax == EXPLICIT_VR_BE and desc.bits_allocated == 8 and ds["PixelData"].VR == "OW":
        pixel_data = np.frombuffer(pixel_data, ">u2").astype("<u2").tobytes()
    if len(pixel_data) < desc.source_pixel_bytes:
        raise UpstreamProtocolError("native pixel data shorter than its description")
    return [native.frame_bytes(pixel_data, desc, i) for i in range(desc.number_of_frames)]


def _encode(arr: NDArray[Any], desc: PixelDescription, target: str) -> bytes:
    if target == JPEGLS_LOSSLESS:
        import imagecodecs

        return bytes(imagecodecs.jpegls_encode(np.ascontiguousarray(arr), level=0))
    return rle_encode(arr, desc)


def rle_encode(arr: NDArray[Any], desc: PixelDescription) -> bytes:
    """DICOM RLE Lossless (PS3.5 Annex G): one PackBits segment per byte plane, most
    significant first, each row encoded on its own (G.3.1)."""
    import imagecodecs

    bytes_per_sample = desc.bits_allocated // 8
    unsigned = np.ascontiguousarray(arr).view(f"u{bytes_per_sample}")
    samples = unsigned.reshape(desc.rows, desc.columns, desc.samples_per_pixel)
    big = samples.astype(f">u{bytes_per_sample}").view(np.uint8)
    planes = big.reshape(desc.rows, desc.columns, desc.samples_per_pixel, bytes_per_sample)
    segments: list[bytes] = []
    for sample in range(desc.samples_per_pixel):
        for byte in range(bytes_per_sample):
            plane = np.ascontiguousarray(planes[:, :, sample, byte])
            segment = b"".join(bytes(imagecodecs.packbits_encode(row.tobytes())) for row in plane)
            if len(segment) % 2:
                segment += b"\x80"  # PackBits no-op: segments have an even length
            segments.append(segment)
    if len(segments) > 15:
        raise ValueError("RLE carries at most 15 segments")
    offsets = []
    position = 64
    for segment in segments:
        offsets.append(position)
        position += len(segment)
    header = np.zeros(16, "<u4")
    header[0] = len(segments)
    header[1 : 1 + len(offsets)] = offsets
    return header.tobytes() + b"".join(segments)
