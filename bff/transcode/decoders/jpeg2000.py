"""JPEG 2000 (4.90, 4.91) with imagecodecs' OpenJPEG; also a fallback for HTJ2K.

OpenJPEG 2.5 decodes Part 15 (HT) code-blocks too, slower than OpenJPH. Colour
codestreams with the RCT/ICT come out as RGB.
"""

from __future__ import annotations

from typing import Any

from numpy.typing import NDArray

from bff.transcode.decoders import imagecodecs_has
from bff.transcode.model import (
    HTJ2K_LOSSLESS,
    HTJ2K_LOSSLESS_RPCL,
    HTJ2K_LOSSY,
    JPEG2000,
    JPEG2000_LOSSLESS,
)
from bff.transcode.pixels import PixelDescription

DEPENDENCIES = "imagecodecs (JPEG2K, OpenJPEG)"
TRANSFER_SYNTAXES = frozenset(
    {JPEG2000_LOSSLESS, JPEG2000, HTJ2K_LOSSLESS, HTJ2K_LOSSLESS_RPCL, HTJ2K_LOSSY}
)


def is_available(transfer_syntax_uid: str) -> bool:
    return transfer_syntax_uid in TRANSFER_SYNTAXES and imagecodecs_has("JPEG2K")


def decode_frame(frame: bytes, desc: PixelDescription, transfer_syntax_uid: str) -> NDArray[Any]:
    import imagecodecs

    return imagecodecs.jpeg2k_decode(frame)
