"""What a frame looks like (from the dataset) and how decoded arrays are made to fit it.

Every decoder returns whatever its library gives; :func:`conform` turns that into the one
layout the encoders expect: ``(rows, columns)`` or ``(rows, columns, samples)``
(interleaved), the dtype that BitsAllocated and PixelRepresentation say, signed values
sign-extended from BitsStored, unused high bits cleared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bff.transcode.errors import CorruptPixelData


@dataclass(frozen=True)
class PixelDescription:
    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    signed: bool  # PixelRepresentation 1
    planar_configuration: int  # 0 = interleaved (R1G1B1...), 1 = planes (RRR...GGG...BBB)
    photometric: str
    number_of_frames: int

    @classmethod
    def from_dataset(cls, ds: Any) -> PixelDescription:
        try:
            rows = int(ds.Rows)
            columns = int(ds.Columns)
            bits_allocated = int(ds.BitsAllocated)
        except (AttributeError, TypeError, ValueError) as exc:
            raise CorruptPixelData("pixel data without Rows/Columns/BitsAllocated") from exc
        spp = int(ds.get("SamplesPerPixel", 1) or 1)
        frames = ds.get("NumberOfFrames", 1)
        desc = cls(
            rows=rows,
            columns=columns,
            samples_per_pixel=spp,
            bits_allocated=bits_allocated,
            bits_stored=int(ds.get("BitsStored", bits_allocated) or bits_allocated),
            signed=int(ds.get("PixelRepresentation", 0) or 0) == 1,
            planar_configuration=int(ds.get("PlanarConfiguration", 0) or 0) if spp > 1 else 0,
            photometric=str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip(),
            number_of_frames=max(1, int(frames or 1)),
        )
        if rows <= 0 or columns <= 0 or bits_allocated not in (1, 8, 16, 32, 64):
            raise CorruptPixelData(f"unusable pixel module {desc}")
        return desc

    @property
    def pixels_per_frame(self) -> int:
        return self.rows * self.columns * self.samples_per_pixel

    @property
    def frame_bits(self) -> int:
        return self.pixels_per_frame * self.bits_allocated

    @property
    def source_pixel_bytes(self) -> int:
        """Uncompressed size of all frames (1-bit frames packed end to end)."""
        return (self.frame_bits * self.number_of_frames + 7) // 8

    @property
    def dtype(self) -> np.dtype[Any]:
        if self.bits_allocated == 1:
            return np.dtype(np.uint8)
        kind = "i" if self.signed else "u"
        return np.dtype(f"{kind}{self.bits_allocated // 8}")

    @property
    def shape(self) -> tuple[int, ...]:
        if self.samples_per_pixel == 1:
            return (self.rows, self.columns)
        return (self.rows, self.columns, self.samples_per_pixel)


def conform(arr: NDArray[Any], desc: PixelDescription) -> NDArray[Any]:
    """Return ``arr`` with the shape, dtype and sign ``desc`` describes."""
    if arr.size != desc.pixels_per_frame:
        raise CorruptPixelData(
            f"decoded frame has {arr.size} samples, expected {desc.pixels_per_frame}"
        )
    spp = desc.samples_per_pixel
    if spp > 1 and arr.ndim == 3 and arr.shape[0] == spp and arr.shape[2] != spp:
        arr = np.moveaxis(arr, 0, -1)  # planar (S, H, W) -> interleaved
    arr = arr.reshape(desc.shape)
    if desc.bits_allocated == 1:
        return arr.astype(np.uint8, copy=False)
    bits = min(desc.bits_stored, desc.bits_allocated)
    target = desc.dtype
    if bits >= 8 * target.itemsize and arr.dtype.itemsize == target.itemsize:
        return np.ascontiguousarray(arr.view(target))  # same width: reinterpret the bits
    wide = arr.astype(np.int64)
    mask = (1 << bits) - 1
    wide &= mask
    if desc.signed:
        sign = 1 << (bits - 1)
        wide = (wide ^ sign) - sign
    return np.ascontiguousarray(wide.astype(target))
