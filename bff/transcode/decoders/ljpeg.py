"""Lossless JPEG (4.57, 4.70) with imagecodecs' liblj92: the fallback for old libjpeg builds."""

from __future__ import annotations

from typing import Any

from numpy.typing import NDArray

from bff.transcode.decoders import imagecodecs_has
from bff.transcode.model import JPEG_LOSSLESS, JPEG_LOSSLESS_SV1
from bff.transcode.pixels import PixelDescription

DEPENDENCIES = "imagecodecs (LJPEG)"
TRANSFER_SYNTAXES = frozenset({JPEG_LOSSLESS, JPEG_LOSSLESS_SV1})


def is_available(transfer_syntax_uid: str) -> bool:
    return transfer_syntax_uid in TRANSFER_SYNTAXES and imagecodecs_has("LJPEG")


def decode_frame(frame: bytes, desc: PixelDescription, transfer_syntax_uid: str) -> NDArray[Any]:
    import imagecodecs

    return imagecodecs.ljpeg_decode(frame)
