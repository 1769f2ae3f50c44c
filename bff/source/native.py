"""One Part-10 instance rewritten in Explicit VR Little Endian, pixels decoded losslessly.

Used by the Source WADO-RS API when a Consumer does not accept the stored syntax but
accepts 1.2.840.10008.1.2.1 (every DRIM-M Consumer does). The pixels are exactly the
stored ones decoded (our decoders, :mod:`bff.transcode.registry`): nothing is lost on
top of what the stored syntax already lost, and an already-lossy source keeps
LossyImageCompression "01". Colour frames that our decoders hand back as RGB (JPEG
YCbCr, J2K RCT/ICT) are written RGB, interleaved. Video syntaxes (MPEG, H.264, HEVC)
cannot be decoded here: :func:`can_decode` says so.

Runs in a worker thread (CPU bound, pure: bytes in, bytes out).
"""

from __future__ import annotations

from io import BytesIO

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID

from bff.errors import UpstreamProtocolError
from bff.transcode import registry
from bff.transcode.errors import NoDecoder, TranscodeError
from bff.transcode.instance import _native_bytes, _read, _source_frames
from bff.transcode.model import (
    LOSSLESS_SOURCES,
    NATIVE_SYNTAXES,
    RLE_LOSSLESS,
    VIDEO_SYNTAXES,
)
from bff.transcode.pixels import PixelDescription

EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
_REMOVED_WITH_ENCAPSULATION = ("ExtendedOffsetTable", "ExtendedOffsetTableLengths")


def can_decode(transfer_syntax_uid: str) -> bool:
    """Whether :func:`to_explicit_le` can handle an instance stored in this syntax."""
    if transfer_syntax_uid in VIDEO_SYNTAXES:
        return False
    try:
        registry.get_decoder(transfer_syntax_uid)
    except NoDecoder:
        return False
    return True


def to_explicit_le(data: bytes) -> bytes:
    """The instance ``data`` (any decodable syntax) as Explicit VR Little Endian; a codec
    failure is translated here, at the seam (E505)."""
    try:
        return _to_explicit_le(data)
    except TranscodeError as exc:
        raise UpstreamProtocolError(f"instance cannot be rewritten natively: {exc}") from exc


def _to_explicit_le(data: bytes) -> bytes:
    ds = _read(data)
    source_ts = str(ds.file_meta.TransferSyntaxUID)
    if "PixelData" in ds:
        _decode_pixels(ds, source_ts)
    ds.file_meta.TransferSyntaxUID = UID(EXPLICIT_VR_LE)
    out = BytesIO()
    try:
        ds.save_as(out, implicit_vr=False, little_endian=True, enforce_file_format=True)
    except (ValueError, TypeError, AttributeError) as exc:
        raise UpstreamProtocolError(f"instance cannot be rewritten natively: {exc}") from exc
    return out.getvalue()


def _decode_pixels(ds: Dataset, source_ts: str) -> None:
    desc = PixelDescription.from_dataset(ds)
    frames = [
        _native_bytes(registry.decode_frame(raw, desc, source_ts), desc)
        for raw in _source_frames(ds, desc, source_ts)
    ]
    pixel_data = b"".join(frames)
    if len(pixel_data) % 2:
        pixel_data += b"\0"
    encapsulated = source_ts not in NATIVE_SYNTAXES
    ds.PixelData = pixel_data
    ds["PixelData"].VR = "OW" if desc.bits_allocated > 8 else "OB"
    for keyword in _REMOVED_WITH_ENCAPSULATION:
        if keyword in ds:
            del ds[keyword]
    if desc.samples_per_pixel > 1:
        ds.PlanarConfiguration = 0  # decoded frames are interleaved
        if encapsulated and source_ts != RLE_LOSSLESS and desc.photometric != "RGB":
            ds.PhotometricInterpretation = "RGB"  # JPEG / J2K decoders give RGB
    # Decoded from a lossy (or possibly lossy) syntax: say so unless the source says not.
    lossy_source = source_ts not in LOSSLESS_SOURCES and source_ts != RLE_LOSSLESS
    if lossy_source and str(ds.get("LossyImageCompression", "")).strip() != "00":
        ds.LossyImageCompression = "01"


def peek(data: bytes) -> tuple[str, str]:
    """(transfer syntax UID, SOP Instance UID) of a Part-10 instance, pixels not read."""
    try:
        ds = pydicom.dcmread(
            BytesIO(data), stop_before_pixels=True, force=True, specific_tags=["SOPInstanceUID"]
        )
        meta = ds.file_meta
        ts = str(meta.TransferSyntaxUID)
        sop_uid = str(ds.get("SOPInstanceUID") or meta.get("MediaStorageSOPInstanceUID", ""))
    except Exception as exc:  # pydicom raises many types on garbage
        raise UpstreamProtocolError(f"unreadable DICOM part: {type(exc).__name__}") from exc
    if not ts or ts == "None":
        raise UpstreamProtocolError("DICOM part without a transfer syntax")
    return ts, sop_uid
