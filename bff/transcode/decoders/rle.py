"""DICOM RLE Lossless (PS3.5 Annex G) with imagecodecs' PackBits decoder and numpy.

A frame is a 64-byte header (segment count + 15 offsets) then one PackBits segment per
byte plane: for each sample, the most significant byte plane first.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from bff.transcode.decoders import imagecodecs_has
from bff.transcode.errors import CorruptPixelData
from bff.transcode.model import RLE_LOSSLESS
from bff.transcode.pixels import PixelDescription

DEPENDENCIES = "imagecodecs (PackBits)"
TRANSFER_SYNTAXES = frozenset({RLE_LOSSLESS})


def is_available(transfer_syntax_uid: str) -> bool:
    if transfer_syntax_uid != RLE_LOSSLESS:
        return False
    return imagecodecs_has("PACKBITS")


def decode_frame(frame: bytes, desc: PixelDescription, transfer_syntax_uid: str) -> NDArray[Any]:
    import imagecodecs

    header = np.frombuffer(frame, "<u4", 16) if len(frame) >= 64 else np.zeros(0, "<u4")
    bytes_per_sample = max(1, desc.bits_allocated // 8)
    expected = desc.samples_per_pixel * bytes_per_sample
    if header.size != 16 or int(header[0]) != expected:
        raise CorruptPixelData(f"RLE frame with a bad header (expected {expected} segments)")
    offsets = [int(o) for o in header[1 : 1 + expected]] + [len(frame)]
    pixels = desc.rows * desc.columns
    if desc.bits_allocated == 1:
        pixels = (pixels + 7) // 8
    planes = np.empty((desc.samples_per_pixel, bytes_per_sample, pixels), np.uint8)
    for n in range(expected):
        segment = imagecodecs.packbits_decode(frame[offsets[n] : offsets[n + 1]])
        if len(segment) < pixels:
            raise CorruptPixelData("RLE segment shorter than the frame")
        planes[n // bytes_per_sample, n % bytes_per_sample] = np.frombuffer(
            segment, np.uint8, pixels
        )
    if desc.bits_allocated == 1:
        return np.unpackbits(planes[0, 0], count=desc.pixels_per_frame, bitorder="little")
    # Most significant byte plane first -> big-endian words, one plane per sample.
    words = np.ascontiguousarray(planes.transpose(0, 2, 1)).view(np.dtype(f">u{bytes_per_sample}"))
    arr = words.reshape(desc.samples_per_pixel, desc.rows, desc.columns)
    arr = arr.astype(f"u{bytes_per_sample}")  # native order; conform() applies the sign
    return arr[0] if desc.samples_per_pixel == 1 else arr
