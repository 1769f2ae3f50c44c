"""JPEG-LS (4.80, 4.81) with imagecodecs' CharLS (FACTS: 4.5 ms vs pylibjpeg's 18 ms).

CharLS returns unsigned samples; signed images carry the two's complement bit pattern
truncated to BitsStored, which conform() sign-extends.
"""

from __future__ import annotations

from typing import Any

from numpy.typing import NDArray

from bff.transcode.decoders import imagecodecs_has
from bff.transcode.model import JPEGLS_LOSSLESS, JPEGLS_NEAR_LOSSLESS
from bff.transcode.pixels import PixelDescription

DEPENDENCIES = "imagecodecs (JPEGLS, CharLS)"
TRANSFER_SYNTAXES = frozenset({JPEGLS_LOSSLESS, JPEGLS_NEAR_LOSSLESS})


def is_available(transfer_syntax_uid: str) -> bool:
    return transfer_syntax_uid in TRANSFER_SYNTAXES and imagecodecs_has("JPEGLS")


def decode_frame(frame: bytes, desc: PixelDescription, transfer_syntax_uid: str) -> NDArray[Any]:
    import imagecodecs

    return imagecodecs.jpegls_decode(frame)
