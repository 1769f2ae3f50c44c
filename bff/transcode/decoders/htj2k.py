"""HTJ2K (4.201, 4.202, 4.203) with imagecodecs' OpenJPH.

OpenJPH applies the inverse RCT/ICT itself: colour frames come out as RGB.
"""

from __future__ import annotations

from typing import Any

from numpy.typing import NDArray

from bff.transcode.decoders import imagecodecs_has
from bff.transcode.model import HTJ2K_LOSSLESS, HTJ2K_LOSSLESS_RPCL, HTJ2K_LOSSY
from bff.transcode.pixels import PixelDescription

DEPENDENCIES = "imagecodecs (HTJ2K, OpenJPH)"
TRANSFER_SYNTAXES = frozenset({HTJ2K_LOSSLESS, HTJ2K_LOSSLESS_RPCL, HTJ2K_LOSSY})


def is_available(transfer_syntax_uid: str) -> bool:
    return transfer_syntax_uid in TRANSFER_SYNTAXES and imagecodecs_has("HTJ2K")


def decode_frame(frame: bytes, desc: PixelDescription, transfer_syntax_uid: str) -> NDArray[Any]:
    import imagecodecs

    return imagecodecs.htj2k_decode(frame)
