"""Native (uncompressed) pixel data with numpy: little/big endian, deflated, 1 to 32 bits.

Deflated datasets are inflated by pydicom when the file is read, so their pixel data is
plain little endian here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from bff.transcode.model import EXPLICIT_VR_BE, NATIVE_SYNTAXES
from bff.transcode.pixels import PixelDescription

DEPENDENCIES = "numpy (always installed)"
TRANSFER_SYNTAXES = NATIVE_SYNTAXES


def is_available(transfer_syntax_uid: str) -> bool:
    return transfer_syntax_uid in NATIVE_SYNTAXES


def frame_bytes(pixel_data: bytes, desc: PixelDescription, index: int) -> bytes:
    """Bytes of frame ``index`` (0-based); 1-bit frames are realigned to a byte boundary."""
    if desc.bits_allocated != 1:
        size = desc.frame_bits // 8
        return pixel_data[index * size : (index + 1) * size]
    first_bit = index * desc.frame_bits
    start, offset = divmod(first_bit, 8)
    chunk = np.frombuffer(pixel_data, np.uint8, (offset + desc.frame_bits + 7) // 8, start)
    bits = np.unpackbits(chunk, bitorder="little")[offset : offset + desc.frame_bits]
    return np.packbits(bits, bitorder="little").tobytes()


def decode_frame(frame: bytes, desc: PixelDescription, transfer_syntax_uid: str) -> NDArray[Any]:
    if desc.bits_allocated == 1:
        packed = np.frombuffer(frame, np.uint8)
        return np.unpackbits(packed, count=desc.pixels_per_frame, bitorder="little")
    dtype = desc.dtype.newbyteorder(">" if transfer_syntax_uid == EXPLICIT_VR_BE else "<")
    arr = np.frombuffer(frame, dtype, desc.pixels_per_frame).astype(desc.dtype)
    if desc.samples_per_pixel > 1 and desc.planar_configuration == 1:
        return arr.reshape(desc.samples_per_pixel, desc.rows, desc.columns)
    return arr.reshape(desc.shape)
