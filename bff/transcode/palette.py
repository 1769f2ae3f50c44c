"""PALETTE COLOR frames looked up in their own palette, to be served as 8-bit RGB.

Stock OHIF does not display every palette image (issue 14, DB.VI-CS.30/31): Orthanc leaves
the descriptors (0028,1101-1103) of implicit-VR files out of its metadata ("US or SS"),
and cornerstone has no code for segmented tables (0028,1221-1223). The BFF holds each
whole instance (the series retrieval) and so its palette: the lookup is done here, once,
and the browser gets plain colour (:mod:`bff.transcode.plan` says what the metadata
becomes), with no palette to read, fetch or expand.

The Palette Color Lookup Table Module (PS3.3 C.7.6.3.1.5-6, C.7.9): each descriptor holds
the number of entries (0 means 65536), the first input value mapped and the bits of an
entry (8 or 16; 8-bit entries may sit in 16-bit words, told by the data's length); input
values below the first mapped one take the first entry, those past the end the last.
Segmented tables (C.7.9.2: discrete, linear and indirect segments) are expanded with
pydicom's expansion, the one its ``apply_color_lut`` uses (that function itself indexes
8-bit tables through 8-bit positions, wrong past 256 entries). 16-bit entries are taken
to 8 bits by their high byte, as cornerstone does when it shows a palette.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bff.transcode.errors import CorruptPixelData

_COLOURS = ("Red", "Green", "Blue")


@dataclass(frozen=True)
class Palette:
    first_mapped: int
    table: NDArray[np.uint8]  # (entries, 3): R, G, B of each entry

    @classmethod
    def from_dataset(cls, ds: Any) -> Palette:
        """The palette of a pydicom dataset (:class:`CorruptPixelData` if unusable)."""
        try:
            descriptor = [int(v) for v in ds.RedPaletteColorLookupTableDescriptor]
            entries = descriptor[0] % 65536 or 65536  # read as SS, 32768+ entries < 0
            first_mapped, bits = descriptor[1], descriptor[2]
        except (AttributeError, KeyError, TypeError, ValueError, IndexError) as exc:
            raise CorruptPixelData("PALETTE COLOR without a palette descriptor") from exc
        if bits not in (8, 16):
            raise CorruptPixelData(f"palette entries of {bits} bits")
        little = _little_endian(ds)
        channels = [_channel(ds, colour, entries, bits, little) for colour in _COLOURS]
        table = np.stack(channels, axis=-1)
        if bits == 16:
            table = table >> 8
        return cls(first_mapped, np.clip(table, 0, 255).astype(np.uint8))

    def apply(self, indices: NDArray[Any]) -> NDArray[np.uint8]:
        """RGB pixels, interleaved: ``indices.shape + (3,)``."""
        positions = np.clip(indices.astype(np.int64) - self.first_mapped, 0, len(self.table) - 1)
        rgb: NDArray[np.uint8] = self.table[positions]
        return rgb


def _little_endian(ds: Any) -> bool:
    encoding = getattr(ds, "original_encoding", (None, True))
    return encoding[1] is not False


def _channel(ds: Any, colour: str, entries: int, bits: int, little: bool) -> NDArray[np.int64]:
    plain = ds.get(f"{colour}PaletteColorLookupTableData")
    segmented = ds.get(f"Segmented{colour}PaletteColorLookupTableData")
    order = "<" if little else ">"
    if plain is not None:
        values = _words(plain, entries, order)
    elif segmented is not None:
        values = _expand(segmented, bits, order)
    else:
        raise CorruptPixelData(f"PALETTE COLOR without {colour.lower()} table data")
    if len(values) < entries:
        raise CorruptPixelData(f"{colour.lower()} palette has {len(values)} < {entries} entries")
    return values[:entries]


def _words(value: Any, entries: int, order: str) -> NDArray[np.int64]:
    """Plain table data: bytes (OW), 1 or 2 bytes an entry by its length; or numbers."""
    if not isinstance(value, bytes | bytearray):
        return np.atleast_1d(np.asarray(value, dtype=np.int64))
    width = 1 if len(value) < 2 * entries else 2
    return np.frombuffer(value, f"{order}u{width}", len(value) // width).astype(np.int64)


def _expand(value: Any, bits: int, order: str) -> NDArray[np.int64]:
    from pydicom.pixels.processing import _expand_segmented_lut

    if not isinstance(value, bytes | bytearray):
        words = tuple(int(v) for v in np.atleast_1d(np.asarray(value)))
    else:
        width = bits // 8
        words = tuple(np.frombuffer(value, f"{order}u{width}", len(value) // width).tolist())
    fmt = f"{order}{len(words)}{'B' if bits == 8 else 'H'}"
    try:
        return np.asarray(_expand_segmented_lut(words, fmt), dtype=np.int64)
    except (ValueError, IndexError) as exc:
        raise CorruptPixelData(f"bad segmented palette: {exc}") from exc
