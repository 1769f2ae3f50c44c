"""One Part-10 instance in, its served frames out (runs in a worker process).

The decision (what to serve) is :func:`bff.transcode.plan.plan`; this module does it.
"""

from __future__ import annotations

from collections.abc import Iterator
from io import BytesIO
from typing import Any

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.errors import InvalidDicomError

from bff.transcode import encoder, registry
from bff.transcode.decoders import native
from bff.transcode.errors import CorruptPixelData
from bff.transcode.fidelity import Fidelity
from bff.transcode.model import (
    EXPLICIT_VR_BE,
    EXPLICIT_VR_LE,
    NATIVE_SYNTAXES,
    VIDEO_SYNTAXES,
    EncodeParams,
    TranscodedInstance,
)
from bff.transcode.palette import Palette
from bff.transcode.pixels import PixelDescription
from bff.transcode.plan import Action, plan

_FLOAT_PIXELS = ("FloatPixelData", "DoubleFloatPixelData")


def transcode_instance(data: bytes, params: EncodeParams) -> TranscodedInstance:
    """Turn a DICOM Part-10 file into the frames the BFF serves (see the module docstring)."""
    ds = _read(data)
    source_ts = str(ds.file_meta.TransferSyntaxUID)
    source_lossy = str(ds.get("LossyImageCompression", "")).strip() == "01"
    source_methods = [str(m) for m in _as_list(ds.get("LossyImageCompressionMethod"))]
    base: dict[str, Any] = {
        "study_uid": str(ds.get("StudyInstanceUID", "")),
        "series_uid": str(ds.get("SeriesInstanceUID", "")),
        "sop_uid": str(ds.get("SOPInstanceUID", "")),
        "sop_class_uid": str(
            ds.get("SOPClassUID", ds.file_meta.get("MediaStorageSOPClassUID", ""))
        ),
        "source_transfer_syntax_uid": source_ts,
    }
    method_before = source_methods[-1] if source_methods else None

    if "PixelData" not in ds:
        if any(k in ds for k in _FLOAT_PIXELS):
            return _float_native(ds, base, source_lossy, method_before)
        return _result(base, source_ts, (), 0, source_lossy, method_before, {})

    desc = PixelDescription.from_dataset(ds)
    pixel_bytes = desc.source_pixel_bytes
    decision = plan(
        source_ts,
        desc,
        source_lossy=source_lossy,
        says_lossless=_says_lossless(ds),
        method_before=method_before,
        serve=params.serve,
        codec=params.codec,
    )

    def result(frames: tuple[bytes, ...]) -> TranscodedInstance:
        return _result(
            base,
            decision.transfer_syntax_uid,
            frames,
            pixel_bytes,
            decision.lossy,
            decision.lossy_method,
            decision.overrides,
        )

    if decision.action is Action.PASS_THROUGH:
        return result(tuple(_encapsulated_frames(ds, desc, source_ts)))
    if decision.action is Action.UNSUPPORTED:
        # No frames, the stored syntax kept: the metadata then names a syntax the BFF
        # does not serve (the page lists the image as not displayable, DB.VI-CS.30) and
        # frame requests end at once (no frame 1), instead of a claim of JPEG-LS/HTJ2K.
        return result(())

    decoded = (
        registry.decode_frame(raw, desc, source_ts) for raw in _source_frames(ds, desc, source_ts)
    )
    if decision.action is Action.HTJ2K_LOSSLESS:
        return result(tuple(encoder.encode_htj2k_lossless(a) for a in decoded))
    if decision.action is Action.PALETTE_RGB:
        palette = Palette.from_dataset(ds)
        return result(
            tuple(encoder.encode_htj2k_lossless(palette.apply(a), rct=True) for a in decoded)
        )
    if decision.action is Action.NATIVE:
        return result(tuple(_native_bytes(a, desc) for a in decoded))

    fidelity = Fidelity.from_dataset(ds, desc.samples_per_pixel)
    out: list[bytes] = []
    for arr in decoded:
        if desc.samples_per_pixel == 3 and desc.photometric == "YBR_FULL":
            arr = _ybr_full_to_rgb(arr)
        step = fidelity.step(params.quality, arr)
        if decision.action is Action.JPEGLS_NEAR:
            out.append(encoder.encode_jpegls_near(arr, step))
        else:
            out.append(encoder.encode_htj2k_lossy(arr, step))
    return result(tuple(out))


def _read(data: bytes) -> Dataset:
    try:
        ds = pydicom.dcmread(BytesIO(data), force=True)
    except (InvalidDicomError, EOFError, ValueError, OSError, KeyError) as exc:
        raise CorruptPixelData(f"unreadable DICOM instance: {exc}") from exc
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", Dataset()):
        raise CorruptPixelData("DICOM instance without a transfer syntax")
    return ds


def _as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, list | tuple | pydicom.multival.MultiValue) else [value]


def _says_lossless(ds: Dataset) -> bool:
    return str(ds.get("LossyImageCompression", "")).strip() == "00"


def _source_frames(ds: Dataset, desc: PixelDescription, ts: str) -> Iterator[bytes]:
    if ts in NATIVE_SYNTAXES:
        pixel_data = bytes(ds.PixelData)
        if ts == EXPLICIT_VR_BE and desc.bits_allocated == 8 and ds["PixelData"].VR == "OW":
            pixel_data = _swap_words(pixel_data)
        needed = desc.source_pixel_bytes
        if len(pixel_data) < needed:
            raise CorruptPixelData(f"native pixel data has {len(pixel_data)} < {needed} B")
        for index in range(desc.number_of_frames):
            yield native.frame_bytes(pixel_data, desc, index)
    else:
        yield from _encapsulated_frames(ds, desc, ts)


def _encapsulated_frames(ds: Dataset, desc: PixelDescription, ts: str) -> Iterator[bytes]:
    if ts in VIDEO_SYNTAXES:  # one bit stream for the clip, however it is fragmented
        yield b"".join(generate_frames(ds.PixelData, number_of_frames=1))
        return
    extended = None
    if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
        extended = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
    try:
        frames = list(
            generate_frames(
                ds.PixelData, number_of_frames=desc.number_of_frames, extended_offsets=extended
            )
        )
    except (ValueError, KeyError, EOFError) as exc:
        raise CorruptPixelData(f"bad encapsulated pixel data: {exc}") from exc
    if len(frames) != desc.number_of_frames:
        raise CorruptPixelData(f"{len(frames)} frames, expected {desc.number_of_frames}")
    yield from frames


def _swap_words(buf: bytes) -> bytes:
    if len(buf) % 2:
        buf += b"\0"
    return np.frombuffer(buf, ">u2").astype("<u2").tobytes()


def _ybr_full_to_rgb(arr: NDArray[Any]) -> NDArray[Any]:
    from pydicom.pixels.processing import convert_color_space

    rgb: NDArray[Any] = convert_color_space(arr, "YBR_FULL", "RGB")
    return rgb


def _native_bytes(arr: NDArray[Any], desc: PixelDescription) -> bytes:
    """Little endian native frame; 1-bit frames packed LSB first, padded to a byte."""
    if desc.bits_allocated == 1:
        return np.packbits(arr.reshape(-1), bitorder="little").tobytes()
    return arr.astype(desc.dtype.newbyteorder("<"), copy=False).tobytes()


def _float_native(
    ds: Dataset, base: dict[str, Any], lossy: bool, method: str | None
) -> TranscodedInstance:
    keyword = next(k for k in _FLOAT_PIXELS if k in ds)
    item = 4 if keyword == "FloatPixelData" else 8
    size = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * item
    count = max(1, int(ds.get("NumberOfFrames", 1) or 1))
    raw = bytes(ds[keyword].value)
    frames = tuple(raw[i * size : (i + 1) * size] for i in range(count))
    return _result(base, EXPLICIT_VR_LE, frames, size * count, lossy, method, {})


def _result(
    base: dict[str, Any],
    ts: str,
    frames: tuple[bytes, ...],
    pixel_bytes: int,
    lossy: bool,
    method: str | None,
    overrides: dict[str, dict[str, Any]],
) -> TranscodedInstance:
    return TranscodedInstance(
        **base,
        transfer_syntax_uid=ts,
        frames=frames,
        source_pixel_bytes=pixel_bytes,
        served_bytes=sum(len(f) for f in frames),
        lossy=lossy,
        lossy_method=method if lossy else None,
        attribute_overrides=overrides,
    )
